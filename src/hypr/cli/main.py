"""The `hypr` command line. It talks to hyprd over the API socket only, like `docker` talks to dockerd."""

from __future__ import annotations

import importlib
import sys

import click

from hypr import __version__
from hypr.cli.context import client_of
from hypr.cli.images import COMMANDS as IMAGE_COMMANDS
from hypr.cli.network import network
from hypr.cli.node import node
from hypr.cli.output import echo_json
from hypr.cli.workloads import COMMANDS
from hypr.client import API_PREFIX
from hypr.errors import HyprError, Unavailable


class LazyGroup(click.Group):
    """Commands with heavy imports (compose: YAML, JSON schema) load only when used: every `hypr` call pays for
    what it imports, and most calls are not compose."""

    lazy = {"compose": "hypr.cli.compose"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            command = getattr(importlib.import_module(self.lazy[name]), name)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-H", "--host", envvar="HYPR_HOST", help="Daemon socket to connect to (unix:///run/hypr/hypr.sock).")
@click.version_option(__version__, "-v", "--version", prog_name="hypr")
def cli(host: str | None) -> None:
    """hypr: Docker-compatible networking for microVMs."""


@cli.command()
@click.pass_context
def version(ctx: click.Context) -> None:
    """Show the client and daemon versions."""
    click.echo("Client:")
    click.echo(f" Version:     {__version__}")
    click.echo(f" API version: {API_PREFIX[2:]}")
    server = client_of(ctx).version()
    click.echo("\nServer: hyprd")
    click.echo(f" Version:     {server['Version']}")
    click.echo(f" API version: {server['ApiVersion']} (minimum version {server['MinAPIVersion']})")
    click.echo(f" OS/Arch:     {server['Os']}/{server['Arch']}")
    click.echo(f" Kernel:      {server['KernelVersion']}")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def info(ctx: click.Context, fmt: str) -> None:
    """Show where hyprd keeps its state and what this host supports."""
    data = client_of(ctx).info()
    if fmt == "json":
        echo_json(data)
        return
    hypr = data["Hypr"]
    click.echo(f"Server Version:   {data['ServerVersion']}")
    click.echo(f"Workloads:        {data['Containers']}")
    click.echo(f"Networks:         {', '.join(data['Networks'])}")
    click.echo(f"Firewall:         {hypr['FirewallBackend']}")
    click.echo(f"DNS port:         {hypr['DnsPort']}")
    click.echo(f"KVM usable:       {'yes' if hypr['KvmUsable'] else 'no (VMs run under TCG)'}")
    click.echo(f"Data dir:         {hypr['DataDir']}")
    click.echo(f"Runtime dir:      {hypr['RuntimeDir']}")
    click.echo(f"Socket:           {hypr['Socket']}")
    click.echo(f"Instance:         {hypr['Instance']}")


cli.add_command(network)
cli.add_command(node)
for command in (*COMMANDS, *IMAGE_COMMANDS):
    cli.add_command(command)


def main() -> None:
    try:
        code = cli.main(standalone_mode=False)  # returns the code given to ctx.exit()
    except click.exceptions.Abort:
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code if exc.exit_code != 1 else 125)
    except Unavailable as exc:
        click.echo(exc.message, err=True)
        sys.exit(1)
    except HyprError as exc:
        click.echo(f"Error response from daemon: {exc.message}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
