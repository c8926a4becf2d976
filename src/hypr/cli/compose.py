"""`hypr compose ...` (placeholder until the compose package lands)."""

from __future__ import annotations

import click


@click.group("compose")
def compose() -> None:
    """Define and run multi-workload stacks (compose files)."""
