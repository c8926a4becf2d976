"""Docker's `/images/...` routes: pull (streamed JSON progress), list, inspect, history, tag, remove, prune.

A pull runs off the worker thread (registry round trips and unpacking take seconds); only its bookkeeping runs on
the worker. Errors found before the first progress line (bad name, unknown repository or tag, registry down)
answer with their HTTP status, as dockerd's do; later ones travel in the stream as `errorDetail`. Concurrent pulls
of the same name share one pull (a client that joins streams its progress from then on), which is cancelled
(skopeo killed) once every client streaming it went away, as dockerd cancels a pull whose client left (Ctrl-C of
`docker pull`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import platform
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from hypr.api.common import Call, Handler, json_response, query_bool, query_filters
from hypr.errors import HyprError, InvalidParameter, NotFound
from hypr.images import manifest as mf
from hypr.images.reference import is_digest
from hypr.images.registry import Credentials
from hypr.models import BUILTIN_IMAGES, Image, Snapshot
from hypr.services import images
from hypr.services.context import Context

UNSUPPORTED_CREATE = ("fromSrc", "repo", "changes", "message")
DISCONNECT_POLL = 0.2  # seconds between looks at whether a pulling client is still there


@dataclass
class _Pull:
    """One pull in progress and the clients streaming it."""

    future: asyncio.Future[tuple[images.Fetched, bool]] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    queues: list[asyncio.Queue[dict[str, Any]]] = field(default_factory=list)  # one per client streaming it

    def progress(self, message: dict[str, Any]) -> None:
        for queue in self.queues:
            queue.put_nowait(message)


class ImageApi:
    def __init__(self, ctx: Context, call: Call) -> None:
        self.ctx = ctx
        self.call = call
        self.in_flight = images.InFlight()
        self.pulls: dict[tuple[str, str], _Pull] = {}

    def routes(self) -> list[tuple[str, str, Handler]]:
        name = "{name:.+}"  # names have slashes: /images/127.0.0.1:5000/library/nginx/json
        return [
            ("POST", "/images/create", self.create),
            ("GET", "/images/json", self.list),
            ("POST", "/images/prune", self.prune),
            ("GET", f"/images/{name}/json", self.inspect),
            ("GET", f"/images/{name}/history", self.history),
            ("POST", f"/images/{name}/tag", self.tag),
            ("POST", f"/images/{name}/push", self.push),
            ("DELETE", f"/images/{name}", self.remove),
        ]

    async def start_up(self) -> None:
        """At daemon start: the store exists and holds nothing no row owns."""
        await asyncio.to_thread(self.ctx.images.prepare)
        await self.collect_garbage()

    async def collect_garbage(self) -> None:
        found = await self.call(images.garbage, self.ctx, self.in_flight)
        if found.rootfs or found.layout_tags or found.disks:
            await asyncio.to_thread(images.collect_garbage, self.ctx.images, found, self.in_flight)

    # -- pull -----------------------------------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.StreamResponse:
        for key in UNSUPPORTED_CREATE:
            if request.query.get(key):
                raise InvalidParameter(
                    f"POST /images/create with {key} is not supported by hypr: only pulls (fromImage)"
                )
        text = request.query.get("fromImage", "")
        if not text:
            raise InvalidParameter("fromImage is required")
        tag = request.query.get("tag", "")
        if tag:
            text = f"{text}@{tag}" if is_digest(tag) else f"{text}:{tag}"
        platform = request.query.get("platform") or None
        mf.parse_platform(platform)  # a malformed one is a 400 before the registry is asked
        creds = Credentials.from_header(request.headers.get("X-Registry-Auth"))
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        pull = self._pull(text, platform, creds)
        pull.queues.append(queue)
        assert pull.future is not None
        try:
            return await self._stream(request, pull.future, queue)
        finally:
            pull.queues.remove(queue)
            if not pull.queues and not pull.future.done():
                pull.cancel.set()

    async def _stream(
        self,
        request: web.Request,
        task: asyncio.Future[tuple[images.Fetched, bool]],
        queue: asyncio.Queue[dict[str, Any]],
    ) -> web.StreamResponse:
        """Docker's progress stream: each message as it comes, then the final status (or the error)."""
        first = asyncio.ensure_future(queue.get())
        while not (await _either(first, task)):
            if _gone(request):
                first.cancel()
                return web.Response()  # no one reads it
        if not first.done():
            first.cancel()
            task.result()  # raised before any progress: an HTTP error with its status
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if first.done() and not first.cancelled():
            await _send(response, first.result())
        while not task.done() or not queue.empty():
            getter = asyncio.ensure_future(queue.get())
            await _either(getter, task)
            if not getter.done():
                getter.cancel()
            try:
                if getter.done() and not getter.cancelled():
                    await _send(response, getter.result())
            except ConnectionResetError:
                return response  # the client left; the caller cancels the pull if it was the last
            if _gone(request):
                return response
        try:
            fetched, up_to_date = task.result()
            for line in images.status_lines(fetched, up_to_date):
                await _send(response, line)
        except HyprError as exc:
            await _send(response, {"errorDetail": {"message": exc.message}, "error": exc.message})
        await response.write_eof()
        return response

    def _pull(self, text: str, platform: str | None, creds: Credentials | None) -> _Pull:
        """The pull of `text` in progress, or a new one: clients of one name share it (and its progress from then
        on)."""
        key = (text, platform or "")
        running = self.pulls.get(key)
        if running is not None and running.future is not None and not running.future.done():
            return running
        entry = _Pull()
        loop = asyncio.get_running_loop()

        def progress(message: dict[str, Any]) -> None:  # from the pulling thread
            loop.call_soon_threadsafe(entry.progress, message)

        async def pull() -> tuple[images.Fetched, bool]:
            try:
                fetched = await asyncio.to_thread(
                    images.fetch, self.ctx.registry, self.ctx.images, self.in_flight, text,
                    platform=platform, creds=creds, progress=progress, cancel=entry.cancel,
                )  # fmt: skip
                _image, up_to_date = await self.call(images.record, self.ctx, fetched, self.in_flight)
                return fetched, up_to_date
            finally:
                self.pulls.pop(key, None)

        entry.future = asyncio.ensure_future(pull())
        entry.future.add_done_callback(lambda f: f.cancelled() or f.exception())  # a cancelled pull: no reader
        self.pulls[key] = entry
        return entry

    async def push(self, request: web.Request) -> web.Response:
        raise InvalidParameter("pushing images is not supported by hypr")

    # -- read -----------------------------------------------------------------------------------------------------
    async def list(self, request: web.Request) -> web.Response:
        snapshot = await self.call(self.ctx.store.snapshot)
        found = images.list_images(snapshot, query_filters(request))  # `all`: hypr keeps no intermediate images
        return json_response([image_summary(snapshot, i) for i in found])

    async def inspect(self, request: web.Request) -> web.Response:
        snapshot = await self.call(self.ctx.store.snapshot)
        name = request.match_info["name"]
        try:
            return json_response(image_inspect(images.find_image(snapshot, name)))
        except NotFound:
            builtin = builtin_image(name)
            if builtin is None:
                raise
        # Clients inspect an image before they create from it (docker-compose v1 pulls one it cannot inspect).
        return json_response({**image_inspect(builtin), "RepoTags": [f"{name.partition(':')[0]}:latest"]})

    async def history(self, request: web.Request) -> web.Response:
        snapshot = await self.call(self.ctx.store.snapshot)
        return json_response(image_history(images.find_image(snapshot, request.match_info["name"])))

    # -- write ----------------------------------------------------------------------------------------------------
    async def tag(self, request: web.Request) -> web.Response:
        repo = request.query.get("repo", "")
        if not repo:
            raise InvalidParameter("repository name (repo) is required")
        await self.call(images.tag, self.ctx, request.match_info["name"], repo, request.query.get("tag") or None)
        return web.Response(status=201)

    async def remove(self, request: web.Request) -> web.Response:
        report = await self.call(
            images.remove, self.ctx, request.match_info["name"], force=query_bool(request, "force")
        )
        await self.collect_garbage()
        return json_response(report)

    async def prune(self, request: web.Request) -> web.Response:
        report, reclaimed = await self.call(images.prune, self.ctx, query_filters(request))
        await self.collect_garbage()
        return json_response({"ImagesDeleted": report or None, "SpaceReclaimed": reclaimed})


async def _either(*futures: asyncio.Future[Any]) -> bool:
    """Wait until one of `futures` is done or DISCONNECT_POLL passed; whether one is done."""
    done, _pending = await asyncio.wait(futures, timeout=DISCONNECT_POLL, return_when=asyncio.FIRST_COMPLETED)
    return bool(done)


def _gone(request: web.Request) -> bool:
    """The client closed its connection (aiohttp does not cancel the handler: we look)."""
    return request.transport is None or request.transport.is_closing()


async def _send(response: web.StreamResponse, message: dict[str, Any]) -> None:
    await response.write(json.dumps(message).encode() + b"\r\n")


# -- shapes (pure) ----------------------------------------------------------------------------------------------------


def _unix(created: str) -> int:
    """An image config's RFC 3339 timestamp as Unix seconds (Docker's `Created` in lists and history); 0 if none."""
    parsed = images.rfc3339(created)
    return int(parsed.timestamp()) if parsed is not None else 0


def image_summary(snapshot: Snapshot, image: Image) -> dict[str, Any]:
    return {
        "Id": image.id,
        "ParentId": "",
        "RepoTags": [images.familiar(t) for t in image.repo_tags],
        "RepoDigests": [images.familiar(d) for d in image.repo_digests],
        "Created": _unix(image.created),
        "Size": image.size,
        "SharedSize": -1,
        "VirtualSize": image.size,
        "Labels": images.labels(image),
        "Containers": len(images.users_of(snapshot, image.id)),
    }


def image_inspect(image: Image) -> dict[str, Any]:
    run = mf.run_config(dict(image.config))
    config = image.config
    return {
        "Id": image.id,
        "RepoTags": [images.familiar(t) for t in image.repo_tags],
        "RepoDigests": [images.familiar(d) for d in image.repo_digests],
        "Parent": "",
        "Comment": "",
        "Created": image.created or "0001-01-01T00:00:00Z",
        "DockerVersion": "",
        "Author": str(config.get("author") or ""),
        "Config": {
            "Hostname": "",
            "Domainname": "",
            "User": run.user,
            "AttachStdin": False,
            "AttachStdout": False,
            "AttachStderr": False,
            "ExposedPorts": {p: {} for p in run.exposed_ports} or None,
            "Tty": False,
            "OpenStdin": False,
            "StdinOnce": False,
            "Env": list(run.env) or None,
            "Cmd": list(run.cmd) or None,
            "Image": "",
            "Volumes": None,
            "WorkingDir": run.workdir,
            "Entrypoint": list(run.entrypoint) or None,
            "OnBuild": None,
            "Labels": dict(run.labels) or None,
            "StopSignal": run.stop_signal or None,
        },
        "Architecture": str(config.get("architecture") or ""),
        "Variant": str(config.get("variant") or "") or None,
        "Os": str(config.get("os") or ""),
        "Size": image.size,
        "VirtualSize": image.size,
        "GraphDriver": {"Name": "overlay", "Data": None},
        "RootFS": {"Type": "layers", "Layers": list((config.get("rootfs") or {}).get("diff_ids") or [])},
        "Metadata": {"LastTagTime": image.last_tagged or "0001-01-01T00:00:00Z"},
    }


def builtin_image(name: str) -> Image | None:
    """hypr's own images (`busybox`, `host`, with or without `:latest`) as an image inspect shows them: an ID derived
    from the name, busybox's default command `sh`."""
    base, _, tag = name.partition(":")
    if base not in BUILTIN_IMAGES or tag not in ("", "latest"):
        return None
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = {"architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]} if base == "busybox" else {}}
    digest = hashlib.sha256(f"hypr built-in image {base}".encode()).hexdigest()
    return Image(id=f"sha256:{digest}", config=config, size=0, created="", pulled="")


def image_history(image: Image) -> list[dict[str, Any]]:
    entries = [h for h in image.config.get("history") or [] if isinstance(h, dict)]
    shown = [
        {
            "Id": image.id if i == len(entries) - 1 else "<missing>",
            "Created": _unix(str(h.get("created") or "")),
            "CreatedBy": str(h.get("created_by") or ""),
            "Tags": [images.familiar(t) for t in image.repo_tags] if i == len(entries) - 1 else None,
            "Size": 0,
            "Comment": str(h.get("comment") or ""),
        }
        for i, h in enumerate(entries)
    ]
    return list(reversed(shown)) or [
        {"Id": image.id, "Created": _unix(image.created), "CreatedBy": "", "Tags": None, "Size": image.size,
         "Comment": ""}
    ]  # fmt: skip
