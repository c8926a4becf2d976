"""Docker-style text output: tab-aligned tables, natural name order, JSON lines."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import click

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> list[Any]:
    """`net2` before `net10`, the order `docker network ls` uses."""
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(text)]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded like Go's tabwriter with Docker's settings (min width, 3 spaces of padding)."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = ["   ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [headers, *rows]]  # fmt: skip
    return "\n".join(lines)


def echo_json_lines(items: Sequence[Mapping[str, Any]]) -> None:
    for item in items:
        click.echo(json.dumps(item, separators=(",", ":")))


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=4))


def short_id(full: str, no_trunc: bool) -> str:
    return full if no_trunc else full[:12]
