"""`hypr node ls`: the hosts of this daemon's cluster (overlay networks, docs/overlay.md)."""

from __future__ import annotations

import click

from hypr.cli.context import client_of
from hypr.cli.output import echo_json, table


@click.group("node")
def node() -> None:
    """Manage the hosts of the cluster."""


@node.command("ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def ls(ctx: click.Context, fmt: str) -> None:
    """List the hosts of the cluster: name, advertise address, status (ready while its lease lives), last seen."""
    found = client_of(ctx).nodes()
    if fmt == "json":
        echo_json(found)
        return
    rows = [(n["ID"][:12] + (" *" if n["Self"] else ""), n["Name"], n["Addr"], n["Status"], n["LastSeen"])
            for n in found]  # fmt: skip
    click.echo(table(("ID", "HOSTNAME", "ADDRESS", "STATUS", "LAST SEEN"), rows))


COMMANDS = (node,)
