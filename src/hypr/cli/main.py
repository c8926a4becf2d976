"""The `hypr` command line. It talks to hyprd over the API socket only, like `docker` talks to dockerd."""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import NoReturn

import click

from hypr import __version__
from hypr.cli.context import client_of
from hypr.errors import HyprError, Unavailable

# Where each command lives. A command's module (and what it imports) loads only when that command runs, or for
# help and completion of the command list: every `hypr` call pays for what it imports. A command missing here is
# still found (every module is loaded to look for it); tests/unit/test_cli_lazy.py keeps this list complete.
COMMAND_MODULES = {
    **dict.fromkeys(
        (
            "exec",
            "inspect",
            "kill",
            "logs",
            "pause",
            "port",
            "ps",
            "rename",
            "restart",
            "rm",
            "run",
            "start",
            "stop",
            "top",
            "unpause",
            "update",
            "wait",
        ),
        "hypr.cli.workloads",
    ),
    **dict.fromkeys(("image", "images", "pull", "rmi", "tag"), "hypr.cli.images"),
    "network": "hypr.cli.network",
    "node": "hypr.cli.node",
    "stats": "hypr.cli.stats",
    "compose": "hypr.cli.compose",
    "completion": "hypr.cli.completion",
}


def commands_of(module: str) -> dict[str, click.Command]:
    """The top-level commands a CLI module defines: its COMMANDS."""
    commands: tuple[click.Command, ...] = importlib.import_module(module).COMMANDS
    return {command.name: command for command in commands if command.name}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in COMMAND_MODULES:
            command = commands_of(COMMAND_MODULES[name]).get(name)
        if command is None:
            for module in sorted(set(COMMAND_MODULES.values())):
                command = commands_of(module).get(name) or command
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-H", "--host", envvar="HYPR_HOST", help="Daemon socket to connect to (unix:///run/hypr/hypr.sock).")
@click.version_option(__version__, "-v", "--version", prog_name="hypr")
def cli(host: str | None) -> None:
    """hypr: Docker-compatible networking for microVMs."""
    if not gc.isenabled():  # started by hypr.cli.entry, which turned it off for the imports: they are over
        gc.freeze()
        gc.enable()


@cli.command()
@click.pass_context
def version(ctx: click.Context) -> None:
    """Show the client and daemon versions."""
    from hypr.client import API_PREFIX

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
        from hypr.cli.output import echo_json

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


def run() -> int:
    """Run the command in sys.argv; its exit code (Docker's: 125 for a usage error, 1 for the daemon's)."""
    try:
        # prog_name from argv[0], as click does by default, but also on the fork server, where click would take
        # `python -m hypr.cli.forkserver` for the program. main() returns the code given to ctx.exit().
        code = cli.main(prog_name=os.path.basename(sys.argv[0]), standalone_mode=False)
    except click.exceptions.Abort:
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code if exc.exit_code != 1 else 125
    except Unavailable as exc:
        click.echo(exc.message, err=True)
        return 1
    except HyprError as exc:
        click.echo(f"Error response from daemon: {exc.message}", err=True)
        return 1
    return code if isinstance(code, int) else 0


def main() -> NoReturn:
    sys.exit(run())
