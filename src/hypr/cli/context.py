"""What every CLI command shares: the client for `-H`, and the key=value parsers."""

from __future__ import annotations

from collections.abc import Iterable

import click

from hypr.client import Client


def client_of(ctx: click.Context) -> Client:
    root = ctx.find_root()
    if not isinstance(root.obj, Client):
        root.obj = Client(root.params.get("host"))
        root.call_on_close(root.obj.close)
    return root.obj


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
