"""Docker's `/containers/...` routes for workloads, and `/networks/{id}/connect|disconnect`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from hypr.api import shapes
from hypr.api.common import Call, Handler, json_response, query_bool, query_filters, read_json
from hypr.errors import InvalidParameter, NotFound
from hypr.services import workload_plan, workloads
from hypr.services.context import Context

POLL = 0.1  # seconds between looks at a log file or a workload's state while following


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
        found = workload_plan.list_workloads(snapshot, query_filters(request), all_states=query_bool(request, "all"))
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
        stopped = await self.call(workloads.stop, self.ctx, request.match_info["ref"], _timeout(request))
        return web.Response(status=204 if stopped else 304)

    async def restart(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        await self.call(workloads.stop, self.ctx, ref, _timeout(request))
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
        path = await self.call(workloads.log_path, self.ctx, ref)
        response = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream"})
        await response.prepare(request)
        async for chunk in self._log_chunks(ref, path, request):
            await response.write(chunk)
        await response.write_eof()
        return response

    async def _log_chunks(self, ref: str, path: Path, request: web.Request) -> AsyncIterator[bytes]:
        follow = query_bool(request, "follow")
        tail = request.query.get("tail", "all")
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed in finally, across awaits
        except FileNotFoundError:
            return
        try:
            yield _tail(handle.read(), tail)
            while follow:
                chunk = handle.read(65536)
                if chunk:
                    yield chunk
                    continue
                snapshot = await self._snapshot()
                try:
                    running = workload_plan.find_workload(snapshot, ref).state == "running"
                except NotFound:
                    running = False
                if not running:
                    yield handle.read()
                    return
                await asyncio.sleep(POLL)
        finally:
            handle.close()

    async def exec_argv(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        cmd = tuple(body.get("Cmd") or ())
        env = dict(item.partition("=")[::2] for item in body.get("Env") or ())
        argv = await self.call(
            workloads.exec_argv, self.ctx, request.match_info["ref"], cmd, env, body.get("WorkingDir") or None
        )
        return json_response({"Argv": argv})

    async def connect(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        config = body.get("EndpointConfig") or {}
        ip = (config.get("IPAMConfig") or {}).get("IPv4Address") or None
        aliases = tuple(config.get("Aliases") or ())
        await self.call(workloads.connect, self.ctx, request.match_info["ref"], _container(body), ip, aliases)
        return web.Response(status=200)

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        force = bool(body.get("Force"))
        await self.call(workloads.disconnect, self.ctx, request.match_info["ref"], _container(body), force=force)
        return web.Response(status=200)


def _container(body: Any) -> str:
    ref = body.get("Container") if isinstance(body, dict) else None
    if not isinstance(ref, str) or not ref:
        raise InvalidParameter("Container is required")
    return ref


def _timeout(request: web.Request) -> float:
    try:
        return float(request.query.get("t", "10"))
    except ValueError:
        raise InvalidParameter(f"invalid stop timeout: {request.query['t']}") from None


def _tail(data: bytes, tail: str) -> bytes:
    if tail == "all":
        return data
    try:
        count = int(tail)
    except ValueError:
        raise InvalidParameter(f"invalid tail value: {tail}") from None
    if count <= 0:
        return b""
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-count:])
