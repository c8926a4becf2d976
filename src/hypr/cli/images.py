"""`hypr pull/images/rmi/tag` and `hypr image ...`: Docker's words, flags, output and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from hypr.cli.context import client_of, inspect_each, parse_filters
from hypr.cli.output import echo_json_lines, table
from hypr.errors import HyprError

if TYPE_CHECKING:
    from hypr.client import Client


def pull_image(client: Client, ref: str, *, platform: str | None = None, quiet: bool = False) -> None:
    """Pull with Docker's output: per-layer bars on a terminal, plain lines otherwise, only the name with -q."""
    messages = client.pull(ref, platform=platform)
    if quiet:
        for _ in messages:
            pass
    elif sys.stdout.isatty():
        _render_bars(messages)
    else:
        for message in messages:
            click.echo(_line(message))
    click.echo(_qualified(ref))


def _qualified(ref: str) -> str:
    """What docker pull prints last: the fully qualified name it pulled."""
    from hypr.images.reference import parse

    parsed = parse(ref)
    return str(parsed)


def _line(message: dict[str, Any]) -> str:
    status = str(message.get("status", ""))
    return f"{message['id']}: {status}" if message.get("id") else status


def _render_bars(messages: Iterator[dict[str, Any]]) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn  # only on a terminal: rich is heavy

    columns = (TextColumn("{task.fields[layer]}"), TextColumn("{task.description:<16}"), BarColumn(), DownloadColumn())
    with Progress(*columns, transient=False) as bars:
        tasks: dict[str, Any] = {}
        for message in messages:
            layer, status = str(message.get("id") or ""), str(message.get("status", ""))
            detail = message.get("progressDetail") or {}
            if not layer or status.startswith("Pulling from"):
                bars.console.print(_line(message), highlight=False, markup=False)
                continue
            if layer not in tasks:
                tasks[layer] = bars.add_task(status, layer=layer, total=detail.get("total") or None)
            bars.update(
                tasks[layer], description=status, total=detail.get("total") or bars.tasks[tasks[layer]].total,
                completed=detail.get("current", 0) if status not in ("Pull complete", "Already exists") else
                (bars.tasks[tasks[layer]].total or 1),
            )  # fmt: skip


@click.command("pull")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output (print only the name).")
@click.option("--platform", help="Pull for this platform (os[/arch[/variant]]), default this host's.")
@click.argument("ref")
@click.pass_context
def pull(ctx: click.Context, quiet: bool, platform: str | None, ref: str) -> None:
    """Pull an image from a registry."""
    if not quiet and "@" not in ref and ":" not in ref.rsplit("/", 1)[-1]:
        click.echo("Using default tag: latest")  # as the docker CLI
    pull_image(client_of(ctx), ref, platform=platform, quiet=quiet)


def human_size(size: float) -> str:
    """Docker's HumanSizeWithPrecision (decimal units, 3 significant digits)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000:
            return f"{size:.3g}{unit}"
        size /= 1000
    return f"{size:.3g}PB"


def _ago(created: int) -> str:
    from hypr.api.shapes import human_duration

    if not created:
        return "N/A"
    return human_duration(datetime.now(UTC) - datetime.fromtimestamp(created, UTC)) + " ago"


def _at(created: int) -> str:
    """The docker CLI's CreatedAt (Go's time.Time.String(), in UTC)."""
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def _rows(found: Iterable[dict[str, Any]], digests: bool, no_trunc: bool) -> list[dict[str, str]]:
    """The docker CLI's rows: one per tag (per tag and digest with --digests), then the repositories named only
    by a digest (a pull by digest) with TAG <none>; `<none> <none>` for an image nothing names."""
    rows = []
    for image in found:
        short = image["Id"] if no_trunc else image["Id"].removeprefix("sha256:")[:12]
        created, size = image.get("Created", 0), human_size(image.get("Size", 0))
        common = {"ID": short, "CreatedSince": _ago(created), "Size": size, "Containers": "N/A",
                  "CreatedAt": _at(created), "SharedSize": "N/A", "UniqueSize": "N/A", "VirtualSize": size}  # fmt: skip
        tags: dict[str, list[str]] = {}
        for tagged in image.get("RepoTags") or []:
            repo, _, tag_name = tagged.rpartition(":")
            tags.setdefault(repo, []).append(tag_name)
        by_repo: dict[str, list[str]] = {}
        for named in image.get("RepoDigests") or []:
            repo, _, digest = named.partition("@")
            by_repo.setdefault(repo, []).append(digest)
        pairs = [
            (repo, tag_name, digest)
            for repo, repo_tags in tags.items()
            for tag_name in repo_tags
            for digest in ((by_repo.get(repo) or ["<none>"]) if digests else ["<none>"])
        ]
        for repo, repo_digests in by_repo.items():
            if repo not in tags:
                pairs += [(repo, "<none>", d) for d in repo_digests] if digests else [(repo, "<none>", "<none>")]
        for repo, tag_name, digest in pairs or [("<none>", "<none>", "<none>")]:
            rows.append({"Repository": repo, "Tag": tag_name, "Digest": digest, **common})
    return rows


@click.command("images")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (intermediate ones too: hypr has none).")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--digests", is_flag=True, help="Show digests.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter: dangling=true|false, reference=, label=.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.argument("reference", required=False)
@click.pass_context
def images(ctx: click.Context, all_: bool, quiet: bool, digests: bool, no_trunc: bool, filters: tuple[str, ...],
           fmt: str, reference: str | None) -> None:  # fmt: skip
    """List images."""
    wanted = parse_filters(filters)
    if reference:
        wanted.setdefault("reference", []).append(reference)
    found = client_of(ctx).images(filters=wanted, all=all_)
    rows = _rows(found, digests, no_trunc)
    if quiet:
        seen: list[str] = []
        for row in rows:
            if row["ID"] not in seen:
                seen.append(row["ID"])
                click.echo(row["ID"])
        return
    if fmt == "json":  # the docker CLI's keys, sorted as Go marshals a map
        echo_json_lines([dict(sorted(r.items())) for r in rows])
        return
    headers = ["Repository", "Tag", *(["Digest"] if digests else []), "ID", "CreatedSince", "Size"]
    titles = {"ID": "IMAGE ID", "CreatedSince": "CREATED"}
    click.echo(table([titles.get(h, h.upper()) for h in headers], [[r[h] for h in headers] for r in rows]))


@click.command("rmi")
@click.option("-f", "--force", is_flag=True, help="Force removal of the image.")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def rmi(ctx: click.Context, force: bool, refs: tuple[str, ...]) -> None:
    """Remove one or more images."""
    failed = False
    for ref in refs:
        try:
            for entry in client_of(ctx).remove_image(ref, force=force):
                for key, value in entry.items():
                    click.echo(f"{key}: {value}")
        except HyprError as exc:
            click.echo(f"Error response from daemon: {exc.message}", err=True)
            failed = True
    if failed:
        ctx.exit(1)


@click.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag(ctx: click.Context, source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    repo, _, tag_name = target.rpartition(":") if ":" in target.rsplit("/", 1)[-1] else (target, "", "")
    client_of(ctx).tag_image(source, repo, tag_name or None)


@click.command("inspect")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def image_inspect(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Display detailed information on one or more images."""
    inspect_each(ctx, refs, client_of(ctx).image)


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all images no workload uses, not just dangling ones.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Filter: label=, until=.")
@click.pass_context
def image_prune(ctx: click.Context, all_: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused images."""
    if not force:  # the docker CLI's prompt
        click.echo(
            "WARNING! This will remove all images without at least one container associated to them."
            if all_
            else "WARNING! This will remove all dangling images."
        )
        if not click.confirm("Are you sure you want to continue?", default=False):
            return
    wanted = parse_filters(filters)
    if all_:
        wanted["dangling"] = ["false"]
    result = client_of(ctx).prune_images(wanted)
    deleted = result.get("ImagesDeleted") or []
    if deleted:
        click.echo("Deleted Images:")
        for entry in deleted:
            for key, value in entry.items():
                click.echo(f"{key.lower()}: {value}")
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed', 0))}")


@click.command("history")
@click.argument("ref")
@click.pass_context
def image_history(ctx: click.Context, ref: str) -> None:
    """Show the history of an image."""
    rows = [
        [h["Id"].removeprefix("sha256:")[:12] if h["Id"] != "<missing>" else h["Id"], _ago(h["Created"]),
         h["CreatedBy"][:45], human_size(h["Size"]), h["Comment"]]
        for h in client_of(ctx).image_history(ref)
    ]  # fmt: skip
    click.echo(table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows))


@click.group("image")
def image() -> None:
    """Manage images."""


image.add_command(pull)
image.add_command(images, "ls")
image.add_command(rmi, "rm")
image.add_command(tag)
image.add_command(image_inspect)
image.add_command(image_prune)
image.add_command(image_history)

COMMANDS = (pull, images, rmi, tag, image)
