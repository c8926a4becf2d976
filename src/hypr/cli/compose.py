"""`hypr compose up/down/ps/logs/ls`: docker compose's words and flags over hypr's API.

Global options come before the command: `hypr compose -f a.yml -f b.yml -p NAME up -d`.
"""

from __future__ import annotations

import functools
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from hypr import stream_client
from hypr.cli.context import client_of
from hypr.cli.output import table
from hypr.cli.workloads import ip_text, ports_text
from hypr.client import Client
from hypr.compose import apply, plan
from hypr.compose.errors import ComposeError
from hypr.compose.model import Project
from hypr.compose.progress import MODES, reporter
from hypr.compose.project import load_project

F = TypeVar("F", bound=Callable[..., Any])


def _errors(func: F) -> F:
    """A compose error is ours, not the daemon's: `Error: ...`, exit 1 (docker compose's code)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ComposeError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            click.get_current_context().exit(1)

    return wrapper  # type: ignore[return-value]


def _options(ctx: click.Context) -> dict[str, Any]:
    group = ctx.find_object(ComposeOptions)
    assert group is not None
    return group.__dict__


class ComposeOptions:
    def __init__(self, files: Sequence[str], project_name: str | None, progress: str) -> None:
        self.files, self.project_name, self.progress = list(files), project_name, progress


def _project(ctx: click.Context) -> Project:
    opts = _options(ctx)
    return load_project(
        opts["files"], name=opts["project_name"], cwd=Path.cwd(), environ=os.environ, warn=_progress(ctx).warn
    )


def _project_name(ctx: click.Context) -> tuple[str, Project | None]:
    """`-p NAME` alone is enough for ps/logs/down (no file needed, as in docker compose)."""
    opts = _options(ctx)
    if opts["project_name"] and not opts["files"]:
        try:
            project = _project(ctx)
        except ComposeError:
            return opts["project_name"], None
        return project.name, project
    project = _project(ctx)
    return project.name, project


def _progress(ctx: click.Context) -> apply.Progress:
    return reporter(_options(ctx)["progress"], sys.stderr)


def _containers(client: Client, project: str, *, all_: bool = True) -> list[dict[str, Any]]:
    return client.containers(all=all_, filters={"label": [f"{plan.PROJECT}={project}"]})


@click.group("compose")
@click.option("-f", "--file", "files", multiple=True, help="Compose file (repeatable; later files override).")
@click.option("-p", "--project-name", help="Project name (default: name: in the file, else the directory name).")
@click.option("--progress", type=click.Choice(MODES), default="auto", show_default=True, help="Progress output.")
@click.pass_context
def compose(ctx: click.Context, files: tuple[str, ...], project_name: str | None, progress: str) -> None:
    """Define and run multi-workload stacks (compose files)."""
    ctx.obj = ComposeOptions(files, project_name, progress)


@compose.command()
@click.option("-d", "--detach", is_flag=True, help="Run in the background.")
@click.option("--force-recreate", is_flag=True, help="Recreate workloads even if their configuration is unchanged.")
@click.option("--remove-orphans", is_flag=True, help="Remove workloads of services no longer in the file.")
@click.pass_context
@_errors
def up(ctx: click.Context, detach: bool, force_recreate: bool, remove_orphans: bool) -> None:
    """Create and start the project's networks and workloads (again: only what changed)."""
    project = _project(ctx)
    client = client_of(ctx)
    up_plan = plan.plan_up(
        project, client.networks(), client.containers(all=True),
        force_recreate=force_recreate, remove_orphans=remove_orphans,
    )  # fmt: skip
    apply.up(client, up_plan, _progress(ctx))
    if detach:
        return
    names = [s.container_name for s in project.services]
    try:
        _follow(ctx, names, follow=True)
    except KeyboardInterrupt:
        click.echo("Gracefully stopping... (press Ctrl+C again to force)", err=True)
        for name in reversed(names):
            client.stop(name)


@compose.command()
@click.option("-v", "--volumes", is_flag=True, help="Accepted for compatibility (hypr has no volumes).")
@click.option("--remove-orphans", is_flag=True, help="Remove workloads of services no longer in the file.")
@click.pass_context
@_errors
def down(ctx: click.Context, volumes: bool, remove_orphans: bool) -> None:
    """Remove the project's workloads and networks (external networks stay)."""
    name, project = _project_name(ctx)
    client = client_of(ctx)
    down_plan = plan.plan_down(
        name, project, client.networks(), _containers(client, name), remove_orphans=remove_orphans
    )
    apply.down(client, down_plan, _progress(ctx))


@compose.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show stopped workloads too.")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs.")
@click.pass_context
@_errors
def ps(ctx: click.Context, all_: bool, quiet: bool) -> None:
    """List the project's workloads: service, state, addresses, published ports."""
    name, _ = _project_name(ctx)
    found = sorted(_containers(client_of(ctx), name, all_=all_), key=lambda c: str(c["Names"][0]))
    if quiet:
        for c in found:
            click.echo(c["Id"])
        return
    rows = [
        (c["Names"][0].lstrip("/"), c["Labels"].get(plan.SERVICE, ""), c["Image"], c["Status"], ports_text(c),
         _networks_text(c))
        for c in found
    ]  # fmt: skip
    click.echo(table(("NAME", "SERVICE", "IMAGE", "STATUS", "PORTS", "NETWORKS"), rows))


def _networks_text(container: dict[str, Any]) -> str:
    nets = container["NetworkSettings"]["Networks"]
    return ", ".join(f"{net}={n['IPAddress']}" for net, n in nets.items()) if nets else ip_text(container)


@compose.command()
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.argument("services", nargs=-1)
@click.pass_context
@_errors
def logs(ctx: click.Context, follow: bool, services: tuple[str, ...]) -> None:
    """Show the output of the project's workloads, each line prefixed with its workload's name."""
    name, _ = _project_name(ctx)
    found = _containers(client_of(ctx), name)
    known = {c["Labels"].get(plan.SERVICE) for c in found}
    for service in services:
        if service not in known:
            raise ComposeError(f"no such service: {service}")
    chosen = [c for c in found if not services or c["Labels"].get(plan.SERVICE) in services]
    _follow(ctx, sorted(c["Names"][0].lstrip("/") for c in chosen), follow=follow)


def _follow(ctx: click.Context, names: Sequence[str], *, follow: bool) -> None:
    """Multiplex the workloads' logs: one reader thread each (own client), lines prefixed `name  | `."""
    host = ctx.find_root().params.get("host")
    width = max((len(n) for n in names), default=0)
    lines: queue.Queue[tuple[str, bytes] | None] = queue.Queue()

    def read(name: str) -> None:
        try:
            with Client(host) as client:
                params = {"stdout": "1", "stderr": "1", "follow": "1" if follow else "0"}
                for line in _lines(data for _, data in stream_client.logs(client.socket, name, params)):
                    lines.put((name, line))
        except Exception as exc:  # a reader must always report its end, or the printer would wait forever
            lines.put((name, f"(logs ended: {exc})\n".encode()))
        finally:
            lines.put(None)

    threads = [threading.Thread(target=read, args=(n,), daemon=True) for n in names]
    for thread in threads:
        thread.start()
    running = len(threads)
    while running:
        item = lines.get()
        if item is None:
            running -= 1
            continue
        name, line = item
        sys.stdout.buffer.write(f"{name:<{width}}  | ".encode() + line)
        sys.stdout.buffer.flush()


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if pending:
        yield pending + b"\n"


@compose.command("ls")
@click.option("-a", "--all", "all_", is_flag=True, help="Show stopped projects too.")
@click.pass_context
def ls(ctx: click.Context, all_: bool) -> None:
    """List projects: name, state counts, config files."""
    projects: dict[str, list[dict[str, Any]]] = {}
    for c in client_of(ctx).containers(all=True, filters={"label": [plan.PROJECT]}):
        projects.setdefault(c["Labels"][plan.PROJECT], []).append(c)
    rows = []
    for name in sorted(projects):
        members = projects[name]
        states: dict[str, int] = {}
        for c in members:
            states[c["State"]] = states.get(c["State"], 0) + 1
        if not all_ and "running" not in states:
            continue
        status = ", ".join(f"{state}({count})" for state, count in sorted(states.items()))
        files = next((c["Labels"].get(plan.CONFIG_FILES, "") for c in members), "")
        rows.append((name, status, files))
    click.echo(table(("NAME", "STATUS", "CONFIG FILES"), rows))


COMMANDS = (compose,)
