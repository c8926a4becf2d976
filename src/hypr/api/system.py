"""Docker's lifecycle and system routes for workloads: events, top, stats, pause/unpause, update, container prune,
legacy-link removal, system df."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from hypr.api import schema, shapes
from hypr.api.common import Call, Handler, json_response, query_bool, query_filters, read_object
from hypr.api.images import image_summary
from hypr.errors import Conflict, HyprError, InvalidParameter
from hypr.models import Snapshot, Workload
from hypr.services import events, lifecycle, stats, workloads
from hypr.services.context import Context
from hypr.services.validation import parse_until
from hypr.services.workload_plan import find_workload

STATS_INTERVAL = 1.0  # seconds between samples, as Docker's collector
ZERO_TIME = "0001-01-01T00:00:00Z"


class SystemApi:
    def __init__(self, ctx: Context, call: Call) -> None:
        self.ctx = ctx
        self.call = call

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/events", self.events),
            ("GET", "/system/df", self.df),
            ("POST", "/build/prune", self.build_prune),
            ("POST", "/containers/prune", self.prune),
            ("GET", "/containers/{ref}/top", self.top),
            ("GET", "/containers/{ref}/stats", self.stats),
            ("POST", "/containers/{ref}/pause", self.pause),
            ("POST", "/containers/{ref}/unpause", self.unpause),
            ("POST", "/containers/{ref}/update", self.update),
            # `docker rm --link /web/db`: the link's name (<container>/<alias>) after /containers/
            ("DELETE", r"/containers/{link:/?[^/]+/[^/]+}", self.remove_link),
        ]

    async def _snapshot(self) -> Snapshot:
        await self.call(workloads.refresh, self.ctx)
        snapshot: Snapshot = await self.call(self.ctx.store.snapshot)
        return snapshot

    # -- events --------------------------------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Past events from `since` (kept in memory), then live ones until `until` (or for as long as the client
        stays); without `since`, only live ones. One JSON object per line, each flushed as it happens."""
        filters = query_filters(request)
        events.check_filters(filters)
        now = datetime.now(UTC)
        since = _stamp(request.query.get("since"), now)
        until = _stamp(request.query.get("until"), now)
        loop = asyncio.get_running_loop()
        subscriber, past = self.ctx.events.subscribe(loop)
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            kept = [e for e in past if since is not None and since <= e.time_nano <= (until or e.time_nano)]
            for old in kept:
                if events.matches(old, filters):
                    await response.write(_line(old))
            while until is None or time_ns() < until:
                timeout = None if until is None else max(0.0, (until - time_ns()) / 1e9)
                try:
                    event: events.Event | None = await asyncio.wait_for(subscriber.queue.get(), timeout)
                except TimeoutError:
                    break
                if event is None:  # too far behind: dropped
                    break
                if (until is None or event.time_nano <= until) and events.matches(event, filters):
                    await response.write(_line(event))
            await response.write_eof()
            return response
        finally:
            self.ctx.events.unsubscribe(subscriber)

    # -- top / stats ----------------------------------------------------------------------------------------------

    async def _target(self, ref: str) -> stats.Target | None:
        snapshot = await self._snapshot()
        return target_of(snapshot, find_workload(snapshot, ref))

    async def top(self, request: web.Request) -> web.Response:
        target = await self._target(request.match_info["ref"])
        if target is None:
            workload = find_workload(await self._snapshot(), request.match_info["ref"])
            raise Conflict(f"Container {workload.id} is not running")
        return json_response(await asyncio.to_thread(stats.top, target, request.query.get("ps_args", "")))

    async def stats(self, request: web.Request) -> web.StreamResponse:
        """Docker's stats: `stream` (default) sends a sample every second, each paired with the one before;
        `stream=false` sends one, paired with a sample taken a second earlier unless `one-shot`."""
        ref = request.match_info["ref"]
        stream = request.query.get("stream", "1").lower() not in ("0", "false", "no")
        one_shot = query_bool(request, "one-shot")
        if one_shot and stream:
            raise InvalidParameter("cannot have stream=true and one-shot=true")
        previous = None if one_shot or stream else await self._sample(ref)
        if not stream:
            if previous is not None:
                await asyncio.sleep(STATS_INTERVAL)
            return json_response(stats.with_previous(await self._sample(ref), previous))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        while True:
            try:
                current = await self._sample(ref)
            except HyprError:  # removed (or gone) while streaming: the stream ends, as Docker's does
                await response.write_eof()
                return response
            await response.write(json.dumps(stats.with_previous(current, previous)).encode() + b"\n")
            previous = current
            await asyncio.sleep(STATS_INTERVAL)

    async def _sample(self, ref: str) -> dict[str, Any]:
        snapshot = await self._snapshot()
        workload = find_workload(snapshot, ref)
        target = target_of(snapshot, workload)
        if target is None:  # not running: Docker's zeroed sample
            return {"read": ZERO_TIME, "preread": ZERO_TIME, "id": workload.id, "name": "/" + workload.name,
                    "pids_stats": {}, "cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
                    "memory_stats": {}, "blkio_stats": {}, "num_procs": 0, "storage_stats": {}, "networks": {}}  # fmt: skip
        read = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return await asyncio.to_thread(stats.sample, target, read)

    # -- pause / update / prune / links ---------------------------------------------------------------------------

    async def pause(self, request: web.Request) -> web.Response:
        await self.call(lifecycle.pause, self.ctx, request.match_info["ref"], paused=True)
        return web.Response(status=204)

    async def unpause(self, request: web.Request) -> web.Response:
        await self.call(lifecycle.pause, self.ctx, request.match_info["ref"], paused=False)
        return web.Response(status=204)

    async def update(self, request: web.Request) -> web.Response:
        body = await read_object(request, schema.CONTAINER_UPDATE, "UpdateConfig")
        warnings = await self.call(lifecycle.update, self.ctx, request.match_info["ref"], body)
        return json_response({"Warnings": warnings})

    async def prune(self, request: web.Request) -> web.Response:
        filters = query_filters(request)
        snapshot = await self._snapshot()
        doomed = lifecycle.prune_candidates(snapshot.workloads, filters, datetime.now(UTC))
        sizes = await asyncio.to_thread(self._sizes, doomed)
        return json_response(await self.call(lifecycle.prune, self.ctx, filters, sizes))

    def _sizes(self, chosen: list[Workload] | tuple[Workload, ...]) -> dict[str, int]:
        base = self.ctx.settings.paths.workloads
        return {w.id: stats.writable_size(base / w.id) for w in chosen}

    async def remove_link(self, request: web.Request) -> web.Response:
        if not query_bool(request, "link"):
            raise InvalidParameter(f"No such container: {request.match_info['link']}")
        await self.call(lifecycle.remove_link, self.ctx, request.match_info["link"])
        return web.Response(status=204)

    async def build_prune(self, request: web.Request) -> web.Response:
        """hypr builds no images, so it has no build cache: nothing to prune (`docker system prune` asks)."""
        return json_response({"CachesDeleted": None, "SpaceReclaimed": 0})

    # -- system df ---------------------------------------------------------------------------------------------

    async def df(self, request: web.Request) -> web.Response:
        """Docker's disk usage: images (their unpacked size), containers (their own layer), no volumes and no
        build cache (hypr has neither)."""
        kinds = request.query.getall("type", []) or ["container", "image", "volume", "build-cache"]
        for kind in kinds:
            if kind not in ("container", "image", "volume", "build-cache"):
                raise InvalidParameter(f"unknown object type: {kind}")
        snapshot = await self._snapshot()
        sizes = await asyncio.to_thread(self._sizes, snapshot.workloads) if "container" in kinds else {}
        now = datetime.now(UTC)
        images = [image_summary(snapshot, i) for i in snapshot.images] if "image" in kinds else None
        containers = [
            {**shapes.container_summary(snapshot, w, now), "SizeRw": sizes.get(w.id, 0),
             "SizeRootFs": sizes.get(w.id, 0) + _image_size(snapshot, w)}
            for w in snapshot.workloads
        ] if "container" in kinds else None  # fmt: skip
        return json_response({
            "LayersSize": sum(i.size for i in snapshot.images), "Images": images, "Containers": containers,
            "Volumes": [] if "volume" in kinds else None, "BuildCache": [] if "build-cache" in kinds else None,
        })  # fmt: skip


def target_of(snapshot: Snapshot, workload: Workload) -> stats.Target | None:
    """What to measure for a running workload; None when it does not run."""
    if workload.state != "running" or workload.main_pid is None:
        return None
    return stats.Target(
        id=workload.id, name=workload.name, runtime=workload.runtime, pid=workload.main_pid,
        interfaces=tuple((f"eth{e.position}", e.host_ifname) for e in snapshot.endpoints_of(workload.id)),
        memory_limit=workload.confinement.memory or (workload.memory_mb * 2**20 if workload.runtime == "vm" else 0),
    )  # fmt: skip


def _image_size(snapshot: Snapshot, workload: Workload) -> int:
    return next((i.size for i in snapshot.images if i.id == workload.image_id), 0)


def time_ns() -> int:
    return int(datetime.now(UTC).timestamp() * 1e9)


def _stamp(text: str | None, now: datetime) -> int | None:
    """Docker's since/until: a unix time (with fractions), RFC 3339, or a duration back from now; nanoseconds."""
    if not text:
        return None
    return int(parse_until(text, now).timestamp() * 1e9)


def _line(event: events.Event) -> bytes:
    return json.dumps(event.message()).encode() + b"\n"
