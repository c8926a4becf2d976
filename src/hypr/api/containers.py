"""Docker's `/containers/...` routes for workloads, and `/networks/{id}/connect|disconnect`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web

from hypr.api import shapes
from hypr.api.common import Call, Handler, json_response, query_bool, query_filters, read_json, read_object
from hypr.errors import Conflict, InvalidParameter, NotFound
from hypr.services import validation, workload_plan, workloads
from hypr.services.context import Context

POLL = 0.1  # seconds between looks at a log file or a workload's state while following
CHUNK = 65536


class ContainerApi:
    def __init__(self, ctx: Context, call: Call) -> None:
        self.ctx = ctx
        self.call = call

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/containers/json", self.list),
            ("POST", "/containers/create", self.create),
            ("GET", "/containers/{ref}/json", self.inspect),
            ("POST", "/containers/{ref}/start", self.start),
            ("POST", "/containers/{ref}/stop", self.stop),
            ("POST", "/containers/{ref}/restart", self.restart),
            ("POST", "/containers/{ref}/kill", self.kill),
            ("POST", "/containers/{ref}/wait", self.wait),
            ("GET", "/containers/{ref}/logs", self.logs),
            ("POST", "/containers/{ref}/hypr-exec", self.exec_argv),
            ("POST", "/containers/{ref}/rename", self.rename),
            ("DELETE", "/containers/{ref}", self.remove),
            ("POST", "/networks/{ref}/connect", self.connect),
            ("POST", "/networks/{ref}/disconnect", self.disconnect),
        ]

    async def _snapshot(self) -> Any:
        await self.call(workloads.refresh, self.ctx)
        return await self.call(self.ctx.store.snapshot)

    async def list(self, request: web.Request) -> web.Response:
        snapshot = await self._snapshot()
        limit = request.query.get("limit", "-1")
        if not limit.lstrip("-").isdigit():
            raise InvalidParameter(f"invalid limit: {limit}")
        found = workload_plan.list_workloads(
            snapshot, query_filters(request), all_states=query_bool(request, "all"), limit=int(limit)
        )
        now = datetime.now(UTC)
        return json_response([shapes.container_summary(snapshot, w, now) for w in found])

    async def create(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        workload = await self.call(workloads.create, self.ctx, request.query.get("name") or None, body)
        return json_response({"Id": workload.id, "Warnings": []}, status=201)

    async def inspect(self, request: web.Request) -> web.Response:
        snapshot = await self._snapshot()
        workload = workload_plan.find_workload(snapshot, request.match_info["ref"])
        return json_response(shapes.container_inspect(snapshot, workload))

    async def start(self, request: web.Request) -> web.Response:
        started = await self.call(workloads.start, self.ctx, request.match_info["ref"])
        return web.Response(status=204 if started else 304)

    async def stop(self, request: web.Request) -> web.Response:
        stopped = await self._stop(request.match_info["ref"], _timeout(request))
        return web.Response(status=204 if stopped else 304)

    async def _stop(self, ref: str, timeout: float) -> bool:
        """Find it on the worker, wait for it on a thread of its own, record the exit on the worker."""
        stopping = await self.call(workloads.stop_target, self.ctx, ref)
        if stopping is None:
            return False
        code = await asyncio.to_thread(stopping.wait, timeout)
        await self.call(workloads.mark_stopped, self.ctx, stopping.workload_id, code)
        return True

    async def restart(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        await self._stop(ref, _timeout(request))
        await self.call(workloads.start, self.ctx, ref)
        return web.Response(status=204)

    async def kill(self, request: web.Request) -> web.Response:
        await self.call(workloads.kill, self.ctx, request.match_info["ref"], request.query.get("signal", "KILL"))
        return web.Response(status=204)

    async def rename(self, request: web.Request) -> web.Response:
        new_name = request.query.get("name", "")
        if not new_name:
            raise InvalidParameter("name is required")
        await self.call(workloads.rename, self.ctx, request.match_info["ref"], new_name)
        return web.Response(status=204)

    async def remove(self, request: web.Request) -> web.Response:
        if query_bool(request, "link"):  # `rm --link` names /<container>/<alias> (api/system.py); this is no link
            raise Conflict("Conflict, cannot remove the default link name of the container")
        await self.call(workloads.remove, self.ctx, request.match_info["ref"], force=query_bool(request, "force"))
        return web.Response(status=204)

    async def wait(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        while True:
            snapshot = await self._snapshot()
            workload = workload_plan.find_workload(snapshot, ref)
            if workload.state != "running":
                return json_response({"StatusCode": workload.exit_code or 0, "Error": None})
            await asyncio.sleep(POLL)

    async def logs(self, request: web.Request) -> web.StreamResponse:
        ref = request.match_info["ref"]
        _tail_count(request.query.get("tail", "all"))  # a bad value is a 400 before the stream starts
        path = await self.call(workloads.log_path, self.ctx, ref)
        response = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream"})
        await response.prepare(request)
        async for chunk in self._log_chunks(ref, path, request):
            await response.write(chunk)
        await response.write_eof()
        return response

    async def _log_chunks(self, ref: str, path: Path, request: web.Request) -> AsyncIterator[bytes]:
        follow = query_bool(request, "follow")
        lines = _tail_count(request.query.get("tail", "all"))
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed in finally, across awaits
        except FileNotFoundError:
            return
        try:
            # File reads run on threads: the event loop also serves every workload's DNS.
            if lines is not None:
                await asyncio.to_thread(_seek_to_last_lines, handle, lines)
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk
            while follow:
                chunk = await asyncio.to_thread(handle.read, CHUNK)
                if chunk:
                    yield chunk
                    continue
                snapshot = await self._snapshot()
                try:
                    running = workload_plan.find_workload(snapshot, ref).state == "running"
                except NotFound:
                    running = False
                if not running:
                    yield await asyncio.to_thread(handle.read)
                    return
                await asyncio.sleep(POLL)
        finally:
            handle.close()

    async def exec_argv(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        cmd = tuple(validation.strings(body.get("Cmd"), "Cmd"))
        env = workload_plan.exec_env(body.get("Env"))
        workdir = body.get("WorkingDir") or None
        if workdir is not None and not isinstance(workdir, str):
            raise InvalidParameter("invalid WorkingDir: expected a string")
        argv = await self.call(workloads.exec_argv, self.ctx, request.match_info["ref"], cmd, env, workdir)
        return json_response({"Argv": argv})

    async def connect(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        ref, config = request.match_info["ref"], body.get("EndpointConfig")
        await self.call(workloads.connect, self.ctx, ref, _container(body), config)
        return web.Response(status=200)

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        force = bool(body.get("Force"))
        await self.call(workloads.disconnect, self.ctx, request.match_info["ref"], _container(body), force=force)
        return web.Response(status=200)


def _container(body: Any) -> str:
    ref = body.get("Container") if isinstance(body, dict) else None
    if not isinstance(ref, str) or not ref:
        raise InvalidParameter("Container is required")
    return ref


def _timeout(request: web.Request) -> float:
    """Seconds before SIGKILL; Docker's -1 means wait for as long as it takes."""
    try:
        seconds = float(request.query.get("t", "10"))
    except ValueError:
        raise InvalidParameter(f"invalid stop timeout: {request.query['t']}") from None
    return float("inf") if seconds < 0 else seconds


def _tail_count(tail: str) -> int | None:
    """Docker's `tail`: "all" (None) or a number of lines."""
    if tail == "all":
        return None
    try:
        return max(0, int(tail))
    except ValueError:
        raise InvalidParameter(f"invalid tail value: {tail}") from None


def _seek_to_last_lines(handle: BinaryIO, count: int) -> None:
    """Position `handle` at the start of its last `count` lines, reading backwards block by block: a log can be
    large, its tail is not."""
    end = handle.seek(0, os.SEEK_END)
    if count == 0:
        return
    position, data = end, b""
    while position > 0:
        step = min(CHUNK, position)
        position -= step
        handle.seek(position)
        data = handle.read(step) + data
        if data[:-1].count(b"\n") >= count:  # the final newline ends the last line, it does not start one
            break
    cut = len(data) - 1
    for _ in range(count):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            handle.seek(position)
            return
    handle.seek(position + cut + 1)
