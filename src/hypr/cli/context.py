"""What every CLI command shares: the client for `-H`, and the key=value parsers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click

from hypr.cli.output import echo_json
from hypr.client import Client
from hypr.errors import HyprError, Unavailable


def client_of(ctx: click.Context) -> Client:
    root = ctx.find_root()
    if not isinstance(root.obj, Client):
        root.obj = Client(root.params.get("host"))
        root.call_on_close(root.obj.close)
    return root.obj


def _matching(names: Iterable[str], incomplete: str) -> list[str]:
    return sorted({name for name in names if name.startswith(incomplete)})


def workload_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion: every workload's name (running or not), as docker completes container names. Nothing
    when the daemon cannot be asked: completion must never print an error into the shell."""
    try:
        found = client_of(ctx).containers(all=True)
    except HyprError:
        return []
    return _matching((c["Names"][0].lstrip("/") for c in found if c.get("Names")), incomplete)


def network_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion: every network's name."""
    try:
        found = client_of(ctx).networks()
    except HyprError:
        return []
    return _matching((n["Name"] for n in found), incomplete)


def parse_pairs(what: str, items: Iterable[str], *, allow_empty: bool = False) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or (not sep and not allow_empty):
            raise click.BadParameter(f"invalid {what} {item!r}: expected key=value", param_hint=f"--{what}")
        pairs[key] = value
    return pairs


def parse_filters(items: Iterable[str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"bad format of filter (expected name=value): {item}", param_hint="--filter")
        filters.setdefault(key, []).append(value)  # `label!=k` arrives as key `label!`, as Docker sends it
    return filters


def for_each(ctx: click.Context, refs: Iterable[str], action: Callable[[str], object], *, echo: bool = True) -> None:
    """Docker's multi-name commands (rm, stop, ...): act on each, echo it (unless the action prints its own answer),
    report failures, exit 1 if any failed."""
    failed = False
    for ref in refs:
        try:
            action(ref)
            if echo:
                click.echo(ref)
        except Unavailable:
            raise
        except HyprError as exc:
            click.echo(f"Error response from daemon: {exc.message}", err=True)
            failed = True
    if failed:
        ctx.exit(1)


def inspect_each(ctx: click.Context, refs: Iterable[str], fetch: Callable[[str], dict[str, Any]]) -> None:
    """Docker's `inspect`: one JSON array of what was found, then an error line per reference that was not."""
    found, errors = [], []
    for ref in refs:
        try:
            found.append(fetch(ref))
        except Unavailable:
            raise
        except HyprError as exc:
            errors.append(exc.message)
    echo_json(found)
    for message in errors:
        click.echo(f"Error response from daemon: {message}", err=True)
    if errors:
        ctx.exit(1)
