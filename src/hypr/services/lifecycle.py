"""Docker's pause/unpause, update, container prune and legacy-link removal. Runs on the daemon's worker thread."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from hypr.errors import Conflict, InvalidParameter
from hypr.models import Workload
from hypr.runtime import files
from hypr.services import workloads
from hypr.services.context import Context
from hypr.services.network_plan import check_filters
from hypr.services.validation import label_matches, mapping, parse_created, parse_until
from hypr.services.workload_plan import find_workload, restart_policy

PRUNE_FILTERS = ("until", "label", "label!")


def pause(ctx: Context, ref: str, *, paused: bool) -> None:
    """Docker's pause (cgroup freezer) and unpause, with its Conflict messages."""
    snapshot = ctx.store.snapshot()
    workload = find_workload(snapshot, ref)
    handle = workloads.handle_of(workload)
    if workload.state != "running" or handle is None:
        raise Conflict(f"Container {workload.id} is not running")
    if paused and workload.paused:
        raise Conflict(f"Container {workload.id} is already paused")
    if not paused and not workload.paused:
        raise Conflict(f"Container {workload.id} is not paused")
    ctx.runtime(workload.runtime).pause(workloads.launch_spec(ctx, snapshot, workload), handle, paused=paused)
    with ctx.store.transaction() as tx:
        ctx.store.set_paused(tx, workload.id, paused)
    workloads.event(ctx, workload, "pause" if paused else "unpause")


# Docker's UpdateConfig: the client sends every field, at its zero value when not asked for.
_ZERO: tuple[Any, ...] = (None, 0, "", [], {}, False)


def update(ctx: Context, ref: str, body: Any) -> list[str]:
    """Docker's container update: the restart policy (with on-failure's MaximumRetryCount) is honoured; any other
    field set is refused by name (hypr fixes a workload's resources when it is made). Returns Docker's Warnings."""
    if not isinstance(body, Mapping):
        raise InvalidParameter("invalid JSON: expected an object")
    refused = sorted(k for k, v in body.items() if k != "RestartPolicy" and v not in _ZERO)
    if refused:
        raise InvalidParameter(
            f"updating {', '.join(refused)} is not supported by hypr: only the restart policy can be updated; "
            "re-create the container with the new settings"
        )
    workload = find_workload(ctx.store.snapshot(), ref)
    if not mapping(body.get("RestartPolicy"), "RestartPolicy").get("Name"):
        return []
    name, retries = restart_policy(body.get("RestartPolicy"))
    if workload.auto_remove and name != "no":
        raise InvalidParameter("Restart policy cannot be updated because AutoRemove is enabled for the container")
    with ctx.store.transaction() as tx:
        ctx.store.set_settings(tx, replace(workload, restart=name, restart_max=retries))
    workloads.event(ctx, workload, "update")
    return []


def prune_candidates(
    candidates: tuple[Workload, ...], filters: Mapping[str, list[str]], now: datetime
) -> list[Workload]:
    """Docker's container prune: every workload not running, created before each `until`, matching `label` and
    not `label!`. Pure."""
    check_filters(filters, PRUNE_FILTERS)
    untils = [parse_until(v, now) for v in filters.get("until", [])]
    return [
        w for w in candidates
        if w.state != "running"
        and all(parse_created(w.created) < until for until in untils)
        and all(label_matches(w.labels, v) for v in filters.get("label", []))
        and not any(label_matches(w.labels, v) for v in filters.get("label!", []))
    ]  # fmt: skip


def prune(ctx: Context, filters: Mapping[str, list[str]], sizes: Mapping[str, int]) -> dict[str, Any]:
    """`sizes`: each workload's writable layer in bytes, measured off the worker (SpaceReclaimed)."""
    doomed = prune_candidates(ctx.store.snapshot().workloads, filters, datetime.now(UTC))
    deleted = []
    for workload in doomed:
        workloads.remove(ctx, workload.id)
        deleted.append(workload.id)
    ctx.events.emit("container", "prune", "", {"reclaimed": str(sum(sizes.get(i, 0) for i in deleted))})
    return {"ContainersDeleted": deleted or None, "SpaceReclaimed": sum(sizes.get(i, 0) for i in deleted)}


def remove_link(ctx: Context, link: str) -> None:
    """Docker's `rm --link /<container>/<alias>`: the link goes, both workloads stay; /etc/hosts is rewritten."""
    parent, _, alias = link.strip("/").rpartition("/")
    if not parent or not alias:
        raise Conflict("Conflict, cannot remove the default link name of the container")
    snapshot = ctx.store.snapshot()
    workload = find_workload(snapshot, parent)
    kept = tuple(link for link in workload.links if link[1] != alias)
    if kept == workload.links:
        raise InvalidParameter(f"Cannot get parent /{workload.name} for alias {alias}")
    changed = replace(workload, links=kept)
    with ctx.store.transaction() as tx:
        ctx.store.set_settings(tx, changed)
    spec = workloads.launch_spec(ctx, ctx.store.snapshot(), changed)
    if workload.runtime == "sandbox" and spec.state_dir.is_dir():  # in place: a running sandbox sees it at once
        files.write_all(spec)
