"""Image operations: pull (skopeo into the shared OCI layout, umoci unpack), list, inspect, tag, remove, prune.

A pull has two halves. `fetch` does the slow work off the daemon's worker thread (registry round trips, blob
copies, the unpack) and only touches files; `record` then writes the rows on the worker in one transaction. Files
are derived from rows the way kernel objects are: an image exists once its row does, and `collect_garbage`
removes any rootfs or layout entry no row owns (an interrupted pull or removal), at start-up and after removals.

Docker's rules for removal (`docker rmi`) and pruning are followed; messages are Docker's.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from hypr.errors import Conflict, HyprError, InvalidParameter, NotFound
from hypr.images import manifest as mf
from hypr.images import reference
from hypr.images.reference import Reference
from hypr.images.registry import Credentials, Skopeo
from hypr.images.store import ImageStore, hex_of, tree_size
from hypr.models import Image, Snapshot
from hypr.services.validation import label_matches, now_rfc3339, parse_until

if TYPE_CHECKING:
    from hypr.models import Workload
    from hypr.services.context import Context

Progress = Callable[[dict[str, Any]], None]
BLOB_POLL = 0.05  # seconds between looks for finished blobs while skopeo copies


# -- lookup ---------------------------------------------------------------------------------------------------------


def find_image(snapshot: Snapshot, text: str) -> Image:
    """Docker's order: a full or `sha256:`-prefixed ID, a reference (name[:tag] or name@digest), then a unique ID
    prefix. Raises NotFound `No such image: nginx:latest`."""
    if not text:
        raise NotFound("No such image: ")
    with_algo = text if text.startswith("sha256:") else ""
    if with_algo:
        found = [i for i in snapshot.images if i.id.startswith(with_algo)]
        if len(found) == 1:
            return found[0]
    try:
        ref = reference.parse(text)
    except InvalidParameter:
        ref = None
    if ref is not None:
        key = f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"
        for image in snapshot.images:
            if key in (image.repo_tags if not ref.digest else image.repo_digests):
                return image
    if all(c in "0123456789abcdef" for c in text) and len(text) >= 4:
        found = [i for i in snapshot.images if hex_of(i.id).startswith(text)]
        if len(found) == 1:
            return found[0]
    raise NotFound(f"No such image: {ref.tagged if ref is not None and not ref.digest else text}")


def users_of(snapshot: Snapshot, image_id: str) -> list[Workload]:
    return [w for w in snapshot.workloads if w.image_id == image_id]


# -- pull -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """What `fetch` put on disk, for `record` to make an image of."""

    ref: Reference
    image_id: str
    manifest_digest: str
    config: Mapping[str, Any]
    size: int | None  # None: the rootfs was already there (its row may exist too)


@dataclass
class InFlight:
    """Image IDs and layout tags whose files a pull is making: garbage collection leaves them alone until
    `record` ran."""

    ids: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, image_id: str) -> None:
        with self.lock:
            self.ids.add(image_id)

    def discard(self, image_id: str) -> None:
        with self.lock:
            self.ids.discard(image_id)

    def __contains__(self, image_id: object) -> bool:
        with self.lock:
            return image_id in self.ids


def _resolve(
    skopeo: Skopeo, ref: Reference, creds: Credentials | None, wanted: mf.Platform
) -> tuple[Reference, str, dict[str, Any]]:
    """(source, manifest digest, manifest): the registry (docker.io's mirrors first) that has `ref`, and the
    manifest for `wanted` when `ref` names an index."""
    sources = skopeo.config.sources(ref)
    for position, source in enumerate(sources):
        try:
            raw = skopeo.manifest(source, creds)
            break
        except HyprError:
            if position == len(sources) - 1:
                raise
    data = mf.loads(raw, "manifest")
    digest = source.digest or mf.digest_of(raw)
    if mf.is_index(data):
        digest = mf.choose(data, wanted, str(ref))
        raw = skopeo.manifest(source.with_digest(digest), creds)
        data = mf.loads(raw, "manifest")
        if mf.digest_of(raw) != digest:
            raise InvalidParameter(f"manifest for {ref} does not match its digest {digest}")
    return source, digest, data


def _layer_id(digest: str) -> str:
    return hex_of(digest)[:12]


def fetch(
    skopeo: Skopeo,
    store: ImageStore,
    in_flight: InFlight,
    text: str,
    *,
    platform: str | None = None,
    creds: Credentials | None = None,
    progress: Progress = lambda _m: None,
    cancel: threading.Event | None = None,
) -> Fetched:
    """Pull `text` onto disk (not into the database: see `record`). Blocking; never run it on the worker.
    Setting `cancel` stops the blob copy (complete blobs stay for the next pull).

    Raises NotFound (unknown repository, tag or platform), InvalidParameter (bad reference, another architecture,
    a manifest we cannot use), Unavailable (registry down), KernelError (digest mismatch, disk full, unpack),
    Cancelled."""
    ref = reference.parse(text)
    wanted = mf.parse_platform(platform)
    source, digest, data = _resolve(skopeo, ref, creds, wanted)
    # dockerd names the repository's path in its registry: "latest: Pulling from library/nginx"
    progress({"status": f"Pulling from {ref.repository}", "id": ref.digest or ref.tag or ""})
    image_id = mf.config_digest(data)
    layers = mf.layers(data)
    in_flight.add(image_id)
    in_flight.add(hex_of(digest))
    try:
        if store.has_rootfs(image_id):
            for layer, _size in layers:
                progress({"status": "Already exists", "progressDetail": {}, "id": _layer_id(layer)})
            config = mf.loads(store.read_blob(image_id), "image config")
            return Fetched(ref, image_id, digest, config, None)
        config = mf.loads(skopeo.manifest(source.with_digest(digest), creds, config=True), "image config")
        mf.check_platform(config, wanted, str(ref))
        fetched = _copy(skopeo, store, source.with_digest(digest), creds, digest, layers, progress, cancel)
        for layer, size in fetched:  # as docker: a layer that "Already exists" says nothing more
            progress({"status": "Extracting", "progressDetail": {"current": 0, "total": size}, "id": _layer_id(layer)})
        with store.lock:
            rootfs = store.unpack(hex_of(digest), image_id)
        for layer, _size in fetched:
            progress({"status": "Pull complete", "progressDetail": {}, "id": _layer_id(layer)})
        return Fetched(ref, image_id, digest, config, tree_size(rootfs))
    except BaseException:
        in_flight.discard(image_id)
        in_flight.discard(hex_of(digest))
        raise


def _copy(
    skopeo: Skopeo,
    store: ImageStore,
    source: Reference,
    creds: Credentials | None,
    digest: str,
    layers: list[tuple[str, int]],
    progress: Progress,
    cancel: threading.Event | None = None,
) -> list[tuple[str, int]]:
    """skopeo copy, reporting each layer as Docker does: waiting, downloading, complete (seen on disk). Returns the
    layers (digest, size) that were not in the layout already."""
    pending = {}
    for layer, size in layers:
        if store.blob_path(layer).exists():
            progress({"status": "Already exists", "progressDetail": {}, "id": _layer_id(layer)})
        else:
            pending[layer] = size
            progress({"status": "Pulling fs layer", "progressDetail": {}, "id": _layer_id(layer)})
    fetched = list(pending.items())

    def on_line(line: str) -> None:
        words = line.split()
        if len(words) >= 3 and words[:2] == ["Copying", "blob"] and words[2] in pending and "skipped" not in line:
            total = pending[words[2]]
            detail = {"current": 0, "total": total}
            progress({"status": "Downloading", "progressDetail": detail, "id": _layer_id(words[2])})

    done = threading.Event()

    def watch() -> None:  # a blob is renamed into place once it is complete and verified
        while pending and not done.is_set():
            for layer in [lay for lay in pending if store.blob_path(lay).exists()]:
                size = pending.pop(layer)
                detail = {"current": size, "total": size}
                progress({"status": "Download complete", "progressDetail": detail, "id": _layer_id(layer)})
            done.wait(BLOB_POLL)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with store.lock:
            skopeo.copy(source, creds, store.layout, hex_of(digest), on_line, cancel)
    finally:
        done.set()
        watcher.join()
    for layer, size in pending.items():
        detail = {"current": size, "total": size}
        progress({"status": "Download complete", "progressDetail": detail, "id": _layer_id(layer)})
    return fetched


def record(ctx: Context, fetched: Fetched, in_flight: InFlight) -> tuple[Image, bool]:
    """On the worker: the image row, its repository digest and its tag, in one transaction.
    Returns (image, whether the tag already named this image: Docker's "Image is up to date")."""
    try:
        snapshot = ctx.store.snapshot()
        ref = fetched.ref
        tag_ref = f"{ref.name}:{ref.tag}" if ref.tag and not ref.digest else None
        current = next((i for i in snapshot.images if i.id == fetched.image_id), None)
        up_to_date = current is not None and (tag_ref is None or tag_ref in current.repo_tags)
        size = fetched.size
        if size is None and current is None:
            size = tree_size(ctx.images.rootfs(fetched.image_id))
        image = Image(
            id=fetched.image_id,
            config=fetched.config,
            size=size or 0 if current is None else current.size,
            created=str(fetched.config.get("created") or ""),
            pulled=now_rfc3339(),
        )
        with ctx.store.transaction() as tx:
            ctx.store.insert_image(tx, image, hex_of(fetched.manifest_digest), f"{ref.name}@{fetched.manifest_digest}")
            if tag_ref is not None:
                ctx.store.tag_image(tx, tag_ref, image.id, now_rfc3339())
        return find_image(ctx.store.snapshot(), fetched.image_id), up_to_date
    finally:
        in_flight.discard(fetched.image_id)
        in_flight.discard(hex_of(fetched.manifest_digest))


def status_lines(fetched: Fetched, up_to_date: bool) -> list[dict[str, Any]]:
    ref = fetched.ref
    name = (
        ref.tagged
        if not ref.digest
        else str(ref)
        if ref.registry != "docker.io"
        else f"{ref.familiar_name}@{ref.digest}"
    )
    word = "Image is up to date for" if up_to_date else "Downloaded newer image for"
    return [{"status": f"Digest: {fetched.manifest_digest}"}, {"status": f"Status: {word} {name}"}]


# -- tag, remove, prune ---------------------------------------------------------------------------------------------


def tag(ctx: Context, source: str, repo: str, tag_name: str | None) -> None:
    """Docker's `POST /images/{name}/tag?repo=&tag=` (201); a tag already on another image moves."""
    snapshot = ctx.store.snapshot()
    image = find_image(snapshot, source)
    target = reference.parse(f"{repo}:{tag_name}" if tag_name else repo)
    if target.digest:
        raise InvalidParameter("refusing to create a tag with a digest reference")
    with ctx.store.transaction() as tx:
        ctx.store.tag_image(tx, f"{target.name}:{target.tag}", image.id, now_rfc3339())


def _short(image_id: str) -> str:
    return hex_of(image_id)[:12]


def familiar(ref: str) -> str:
    """ "docker.io/library/nginx:latest" -> "nginx:latest" (Docker's display form of a stored reference)."""
    name, at, digest = ref.partition("@")
    if at:
        return f"{reference.parse(name + '@' + digest).familiar_name}@{digest}"
    parsed = reference.parse(ref)
    return f"{parsed.familiar_name}:{parsed.tag}"


def remove(ctx: Context, text: str, *, force: bool = False) -> list[dict[str, str]]:
    """Docker's `DELETE /images/{name}`: untag a reference, and delete the image once nothing names or uses it.
    Returns [{"Untagged": ...}, {"Deleted": ...}]. 409s in Docker's words; files go in `collect_garbage`."""
    snapshot = ctx.store.snapshot()
    image = find_image(snapshot, text)
    users = users_of(snapshot, image.id)
    running = [w for w in users if w.state == "running"]
    by_id = _names_id(image, text)
    report: list[dict[str, str]] = []
    if not by_id:
        ref = reference.parse(text)
        key = f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"
        others = [t for t in image.repo_tags if t != key]
        if users and not others and not force:
            raise Conflict(
                f'conflict: unable to remove repository reference "{text}" (must force) - container '
                f"{users[0].id[:12]} is using its referenced image {_short(image.id)}"
            )
        with ctx.store.transaction() as tx:
            if ref.digest:
                tx.execute("DELETE FROM image_digests WHERE ref=?", (key,))
            else:
                ctx.store.untag_image(tx, key)
            report.append({"Untagged": familiar(key)})
            if others or running or (ref.digest and image.repo_tags):
                return report  # still named, or kept (dangling) for a running workload, as dockerd does
            report += _delete(ctx, tx, image, untagged=key)
        return report
    if running:
        raise Conflict(
            f"conflict: unable to delete {_short(image.id)} (cannot be forced) - image is being used by running"
            f" container {running[0].id[:12]}"
        )
    if users and not force:
        raise Conflict(
            f"conflict: unable to delete {_short(image.id)} (must be forced) - image is being used by stopped"
            f" container {users[0].id[:12]}"
        )
    if len(image.repo_tags) > 1 and not force:
        raise Conflict(
            f"conflict: unable to delete {_short(image.id)} (must be forced) - image is referenced in multiple"
            " repositories"
        )
    with ctx.store.transaction() as tx:
        for ref_text in image.repo_tags:
            ctx.store.untag_image(tx, ref_text)
            report.append({"Untagged": familiar(ref_text)})
        report += _delete(ctx, tx, image)  # forced past stopped workloads: their root stays (see `garbage`)
    return report


def _names_id(image: Image, text: str) -> bool:
    hex_text = hex_of(text)
    return (
        all(c in "0123456789abcdef" for c in hex_text)
        and hex_of(image.id).startswith(hex_text)
        and (text.startswith("sha256:") or not any(familiar(t).startswith(text) for t in image.repo_tags))
    )


def _delete(ctx: Context, tx: sqlite3.Connection, image: Image, *, untagged: str = "") -> list[dict[str, str]]:
    """Delete the image's row; report its digests (but `untagged`, reported already) and its ID as Docker does."""
    report = [{"Untagged": familiar(d)} for d in image.repo_digests if d != untagged]
    ctx.store.delete_image(tx, image.id)
    return [*report, {"Deleted": image.id}]


PRUNE_FILTERS = ("dangling", "label", "until")


def prune(ctx: Context, filters: Mapping[str, list[str]]) -> tuple[list[dict[str, str]], int]:
    """Docker's `POST /images/prune`: dangling images unless `dangling=false` (`-a`: every image no workload
    uses). Returns (ImagesDeleted, SpaceReclaimed)."""
    for key in filters:
        if key not in PRUNE_FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
    dangling_only = [v.lower() for v in filters.get("dangling", ["true"])] != ["false"]
    untils = [parse_until(v, datetime.now(UTC)) for v in filters.get("until", [])]
    snapshot = ctx.store.snapshot()
    doomed = [
        i for i in snapshot.images
        if not users_of(snapshot, i.id)
        and (not dangling_only or not i.repo_tags)
        and all(label_matches(labels(i), v) for v in filters.get("label", []))
        and all(created_at(i) < until for until in untils)
    ]  # fmt: skip
    report: list[dict[str, str]] = []
    with ctx.store.transaction() as tx:
        for image in doomed:
            report += [{"Untagged": familiar(t)} for t in image.repo_tags]
            report += _delete(ctx, tx, image)
    return report, sum(i.size for i in doomed)


def rfc3339(text: str) -> datetime | None:
    """An image config's timestamp (RFC 3339: `Z` or an offset, any number of fraction digits, often nine; Python
    reads six) as an aware datetime; None when it is empty or not RFC 3339."""
    try:
        parsed = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def created_at(image: Image) -> datetime:
    """The image config's `created`, else when it was pulled. Docker's `until`, `before` and `since` and the
    listing's order compare it."""
    return rfc3339(image.created) or rfc3339(image.pulled) or datetime.fromtimestamp(0, UTC)


def labels(image: Image) -> dict[str, str]:
    """The image config's labels (filters, `docker images` output)."""
    return dict(mf.run_config(dict(image.config)).labels)


# -- garbage --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Garbage:
    rootfs: tuple[str, ...]  # image IDs
    layout_tags: tuple[str, ...]
    disks: tuple[str, ...] = ()  # image IDs whose VM disk is left


def garbage(ctx: Context, in_flight: InFlight) -> Garbage:
    """On the worker: files no row owns (read from the directory listing and the layout's index)."""
    snapshot = ctx.store.snapshot()
    # a workload keeps the root filesystem (and VM disk) of an image `rmi -f` deleted, as dockerd keeps the layers
    # under a container: it can still start, and its files go when it does
    known = {i.id for i in snapshot.images} | {w.image_id for w in snapshot.workloads if w.image_id}
    wanted_tags = ctx.store.layout_tags()
    rootfs = tuple(f"sha256:{h}" for h in ctx.images.orphan_rootfs(known) if f"sha256:{h}" not in in_flight)
    tags = tuple(t for t in ctx.images.tags() if t not in wanted_tags and t not in in_flight)
    disks = tuple(f"sha256:{h}" for h in ctx.images.orphan_disks(known))
    return Garbage(rootfs, tags, disks)


def collect_garbage(store: ImageStore, found: Garbage, in_flight: InFlight) -> None:
    """Off the worker: remove what `garbage` found (a pull that started since keeps its files)."""
    with store.lock:
        for image_id in found.rootfs:
            if image_id not in in_flight:
                store.remove_rootfs(image_id)
        for layout_tag in found.layout_tags:
            if layout_tag not in in_flight:
                store.untag(layout_tag)
        if found.layout_tags:
            store.gc()
        for image_id in found.disks:
            store.remove_disk(image_id)


# -- listing --------------------------------------------------------------------------------------------------------

LIST_FILTERS = ("dangling", "reference", "label", "before", "since")


def list_images(snapshot: Snapshot, filters: Mapping[str, list[str]]) -> list[Image]:
    """`docker images`: newest first, Docker's filters (`reference` is a glob over familiar names)."""
    for key in filters:
        if key not in LIST_FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
    chosen = [_narrowed(i, filters.get("reference", [])) for i in snapshot.images if _matches(snapshot, i, filters)]
    return sorted(chosen, key=lambda i: (created_at(i), i.pulled), reverse=True)


def _narrowed(image: Image, patterns: list[str]) -> Image:
    """With a `reference` filter dockerd lists only the tags and digests that match it (`docker images
    myalpha:v2` shows that one row, not every tag of the image)."""
    if not patterns:
        return image
    tags = tuple(t for t in image.repo_tags if any(_reference_matches(p, t) for p in patterns))
    digests = tuple(d for d in image.repo_digests if any(_reference_matches(p, d) for p in patterns))
    return replace(image, repo_tags=tags, repo_digests=digests)


def _matches(snapshot: Snapshot, image: Image, filters: Mapping[str, list[str]]) -> bool:
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidParameter(f"invalid filter 'dangling={value}'")
        if (value.lower() in ("true", "1")) != (not image.repo_tags):
            return False
    refs = filters.get("reference", [])
    named = (*image.repo_tags, *image.repo_digests)
    if refs and not any(_reference_matches(pattern, t) for pattern in refs for t in named):
        return False
    if not all(label_matches(labels(image), v) for v in filters.get("label", [])):
        return False
    for key, newer in (("before", False), ("since", True)):
        for value in filters.get(key, []):
            pivot = find_image(snapshot, value)
            made, pivot_made = created_at(image), created_at(pivot)  # strictly, as dockerd: a twin is neither
            if not (made > pivot_made if newer else made < pivot_made):
                return False
    return True


def _reference_matches(pattern: str, stored: str) -> bool:
    """Docker matches the pattern against the familiar name, with and without the tag or digest."""
    shown = familiar(stored)
    name = shown.split("@")[0] if "@" in shown else shown.rsplit(":", 1)[0]
    return fnmatchcase(shown, pattern) or fnmatchcase(name, pattern)
