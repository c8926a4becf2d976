"""Docker's `/containers/...` routes for workloads, and `/networks/{id}/connect|disconnect`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web

from hypr.api import logfile, schema, shapes, streams
from hypr.api.common import Call, Handler, json_response, query_bool, query_filters, read_object
from hypr.errors import Conflict, InvalidParameter, NotFound
from hypr.images import manifest as mf
from hypr.models import Workload
from hypr.runtime import relay
from hypr.services import workload_plan, workloads
from hypr.services.context import Context

POLL = 0.1  # seconds between looks at a log file or a workload's state while following
GONE_CHECK = 1.0  # seconds between looks at whether a waiting client is still there
LINES_AT_ONCE = 4096  # log lines read per thread hop
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


class ContainerApi:
    def __init__(self, ctx: Context, call: Call, image_garbage: Callable[[], Awaitable[None]] | None = None) -> None:
        self.ctx = ctx
        self.call = call
        self.image_garbage = image_garbage  # the image store's clean-up (ImageApi.collect_garbage)
        self.kick = asyncio.Event()  # set (and replaced) at each start and stop: waiters look again

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
            ("POST", "/containers/{ref}/attach", self.attach),
            ("POST", "/containers/{ref}/resize", self.resize),
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
        waiting = await self.call(workloads.restarting_ids, self.ctx)
        found = workload_plan.list_workloads(
            snapshot, query_filters(request), all_states=query_bool(request, "all"), limit=int(limit),
            restarting=waiting,
        )  # fmt: skip
        now = datetime.now(UTC)
        return json_response([shapes.container_summary(snapshot, w, now, w.id in waiting) for w in found])

    async def create(self, request: web.Request) -> web.Response:
        body = await read_object(request, schema.CONTAINER_CREATE, "ContainerConfigWrapper")
        if request.query.get("platform"):  # docker run --platform: only this host's can run
            mf.check_host_platform(request.query["platform"])
        workload = await self.call(workloads.create, self.ctx, request.query.get("name") or None, body)
        return json_response({"Id": workload.id, "Warnings": workload_plan.create_warnings(body)}, status=201)

    async def inspect(self, request: web.Request) -> web.Response:
        snapshot = await self._snapshot()
        workload = workload_plan.find_workload(snapshot, request.match_info["ref"])
        waiting = await self.call(workloads.restarting_ids, self.ctx)
        return json_response(shapes.container_inspect(snapshot, workload, workload.id in waiting))

    async def start(self, request: web.Request) -> web.Response:
        started = await self.call(workloads.start, self.ctx, request.match_info["ref"])
        self._kicked()
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
        self._kicked()
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
        snapshot = await self._snapshot()
        image_id = workload_plan.find_workload(snapshot, request.match_info["ref"]).image_id
        await self.call(workloads.remove, self.ctx, request.match_info["ref"], force=query_bool(request, "force"))
        if image_id and self.image_garbage is not None and not any(i.id == image_id for i in snapshot.images):
            await self.image_garbage()  # the last user of an image `rmi -f` deleted: its root filesystem goes
        return web.Response(status=204)

    async def wait(self, request: web.Request) -> web.StreamResponse:
        """Docker's wait: 200 and the headers at once, the body once the condition holds: `not-running` (the
        default: now, if it is not running), `next-exit` (the end of the next run), `removed` (gone, as --rm
        does). An --rm workload is held until its exit code is read."""
        condition = request.query.get("condition") or "not-running"
        if condition not in WAIT_CONDITIONS:
            raise InvalidParameter(f"invalid condition: {condition!r}")
        target = await self.call(workloads.stream_target, self.ctx, request.match_info["ref"])
        workload = target.workload
        await self.call(workloads.hold, self.ctx, workload.id)
        held = True
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        request.writer.send_headers()
        try:
            if condition == "not-running" and workload.state != "running":
                code = workload.exit_code
            else:
                since = workload.started_at if condition == "next-exit" else None
                code = await self._next_exit(request, workload, since)
            held = False
            await self.call(workloads.release, self.ctx, workload.id)
            if condition == "removed":
                await self._removed(request, workload.id)
        finally:
            if held:
                await self.call(workloads.release, self.ctx, workload.id)
        await response.write(json.dumps({"StatusCode": code or 0, "Error": None}).encode())
        await response.write_eof()
        return response

    async def _next_exit(self, request: web.Request, workload: Workload, since: str | None) -> int | None:
        """The exit code of the first run that ends, started after `since` (a run's started_at) unless None.
        Looks at each state change: a start (signalled by the start handler) or the supervisor's end (a pidfd).
        A client that has gone away ends the wait (ConnectionResetError)."""
        while _connected(request):
            snapshot = await self._snapshot()
            try:
                now = workload_plan.find_workload(snapshot, workload.id)
            except NotFound:
                return workload.exit_code
            if now.state == "exited" and (since is None or now.started_at != since):
                return now.exit_code
            if now.state == "running" and now.pid is not None:
                # In slices: aiohttp does not cancel a handler whose client left (`docker run -d` leaves its wait
                # at once), and one left waiting for a long-running workload held hyprd's stop for 60 s.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(streams.process_gone(now.pid), GONE_CHECK)
                continue
            await self._changed(POLL)
        return None  # not reached: _connected raises

    async def _removed(self, request: web.Request, workload_id: str) -> None:
        while _connected(request):
            snapshot = await self._snapshot()
            if workload_id not in {w.id for w in snapshot.workloads}:
                return
            await self._changed(POLL)

    async def _changed(self, timeout: float) -> None:
        """Until a start or stop through this API, or `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.kick.wait(), timeout)

    def _kicked(self) -> None:
        self.kick.set()
        self.kick = asyncio.Event()

    async def logs(self, request: web.Request) -> web.StreamResponse:
        """Docker's logs: frames without a TTY, raw with one; `follow` until the workload stops."""
        query = logfile.parse_query(
            query_bool(request, "stdout"), query_bool(request, "stderr"), request.query.get("since", ""),
            request.query.get("until", ""), request.query.get("tail", "all"), query_bool(request, "timestamps"),
        )  # fmt: skip
        target = await self.call(workloads.stream_target, self.ctx, request.match_info["ref"])
        tty = target.workload.stdio.tty
        try:
            handle: BinaryIO | None = open(target.log, "rb")  # noqa: SIM115 - closed in finally, across awaits
        except FileNotFoundError:
            handle = None
        follow = query_bool(request, "follow")
        await self.call(functools.partial(workloads.hold, claim=False), self.ctx, target.workload.id)
        try:
            response = web.StreamResponse(headers={"Content-Type": streams.RAW if tty else streams.MULTIPLEXED})
            await response.prepare(request)
            if handle is not None:
                async for record in self._records(handle, logfile.is_json_log(target.log), query, follow, target):
                    data = logfile.render(record, query)
                    await response.write(data if tty else streams.frame(record.stream, data))
        finally:
            if handle is not None:
                handle.close()
            await self.call(workloads.release, self.ctx, target.workload.id)
        await response.write_eof()
        return response

    async def _records(
        self, handle: BinaryIO, json_log: bool, query: logfile.Query, follow: bool, target: workloads.StreamTarget
    ) -> AsyncIterator[logfile.Record]:
        # File reads run on threads: the event loop also serves every workload's DNS.
        if query.tail is not None:
            await asyncio.to_thread(logfile.seek_to_last_lines, handle, query.tail)
        running = follow
        while True:
            lines = await asyncio.to_thread(logfile.read_lines, handle, LINES_AT_ONCE)
            for line in lines:
                record = logfile.parse(line, json_log)
                if record is not None and query.wants(record):
                    yield record
            if lines:
                continue
            if not running or (query.until and logfile.now_rfc3339() > query.until):
                break
            running = await self._running(target.workload.id)
            if running:
                await asyncio.sleep(POLL)
        rest = await asyncio.to_thread(handle.read)  # a last line without its newline (the writer has ended)
        record = logfile.parse(rest, json_log) if rest else None
        if record is not None and query.wants(record):
            yield record

    async def _running(self, workload_id: str) -> bool:
        snapshot = await self._snapshot()
        try:
            return workload_plan.find_workload(snapshot, workload_id).state == "running"
        except NotFound:
            return False

    # -- attach -------------------------------------------------------------------------------------------------
    async def attach(self, request: web.Request) -> web.StreamResponse:
        """Docker's attach (see api/streams.py). Before the workload starts it waits for the start and then gets
        the run's output from its first byte; an --rm workload is removed only once this stream is done."""
        detach_keys = streams.parse_detach_keys(request.query.get("detachKeys", ""))
        target = await self.call(workloads.stream_target, self.ctx, request.match_info["ref"])
        workload = target.workload
        await self.call(workloads.hold, self.ctx, workload.id)
        try:
            hijack = await streams.Hijack.start(request, workload.stdio.tty)
            try:
                await self._attach(request, hijack, target, detach_keys)
            finally:
                await hijack.close()
        finally:
            await self.call(workloads.release, self.ctx, workload.id)
        return hijack.response

    async def _attach(
        self, request: web.Request, hijack: streams.Hijack, target: workloads.StreamTarget, detach_keys: bytes
    ) -> None:
        wanted = {s for s, key in ((streams.STDOUT, "stdout"), (streams.STDERR, "stderr")) if query_bool(request, key)}
        past, workload = query_bool(request, "logs"), target.workload
        if not query_bool(request, "stream"):
            if past:
                await self._send_log(hijack, target, 0, wanted)
            return
        waited = workload.state != "running"
        if waited:
            lost = asyncio.create_task(hijack.lost.wait())
            try:
                if not await self._until_started(workload, lost):
                    return
            finally:
                lost.cancel()
        replay = "all" if past else ("run" if waited else "none")
        stdin = query_bool(request, "stdin") and workload.stdio.open_stdin
        header = {"stdin": stdin, "stdout": streams.STDOUT in wanted, "stderr": streams.STDERR in wanted,
                  "replay": replay}  # fmt: skip
        link = await streams.open_supervisor(target.attach_socket, header) if target.attach_socket else None
        if link is not None:
            relayed = streams.Relay(hijack, workload.stdio.tty, detach_keys)
            await relayed.run(*link, stdin)
            if relayed.served or relayed.detached or hijack.lost.is_set():
                return
        # No supervisor to talk to (a VM), or it ended before it served us: the run's output is in the log.
        offset = 0 if past else _log_start(target.state_dir) if waited else None
        await self._send_log(hijack, target, offset, wanted, follow=True)

    async def _until_started(self, workload: Workload, lost: asyncio.Task[Any]) -> bool:
        """Until a run that started after we looked has a process (or has already ended); False if the workload
        is removed or the client goes away first."""
        while not lost.done():
            snapshot = await self.call(self.ctx.store.snapshot)
            try:
                now = workload_plan.find_workload(snapshot, workload.id)
            except NotFound:
                return False
            if now.started_at != workload.started_at and (now.pid is not None or now.state == "exited"):
                return True
            await asyncio.wait({lost, asyncio.create_task(self._changed(POLL))}, return_when=asyncio.FIRST_COMPLETED)
        return False

    async def _send_log(
        self, hijack: streams.Hijack, target: workloads.StreamTarget, offset: int | None, wanted: set[int],
        follow: bool = False,
    ) -> None:  # fmt: skip
        """The log from `offset` (None: its end) as this attach's output; following while the workload runs."""
        tty, json_log = target.workload.stdio.tty, logfile.is_json_log(target.log)
        query = logfile.Query(frozenset(wanted))
        try:
            handle = open(target.log, "rb")  # noqa: SIM115 - closed in finally, across awaits
        except FileNotFoundError:
            return
        try:
            handle.seek(0, os.SEEK_END) if offset is None else handle.seek(offset)
            async for record in self._records(handle, json_log, query, follow, target):
                await hijack.write(record.data if tty else streams.frame(record.stream, record.data))
        finally:
            handle.close()

    async def resize(self, request: web.Request) -> web.Response:
        rows, cols = _size(request)
        target = await self.call(workloads.stream_target, self.ctx, request.match_info["ref"])
        if target.workload.state != "running":
            raise Conflict(f"Container {target.workload.id} is not running")
        if not target.workload.stdio.tty:
            return web.Response(status=200)  # Docker accepts it and does nothing without a TTY
        header = {"stdin": False, "stdout": False, "stderr": False, "replay": "none"}
        link = await streams.open_supervisor(target.attach_socket, header) if target.attach_socket else None
        if link is not None:
            link[1].write(streams.message(b"r", f"{rows} {cols}".encode()))
            await link[1].drain()
            link[1].close()
        return web.Response(status=200)

    async def connect(self, request: web.Request) -> web.Response:
        body = await read_object(request, schema.NETWORK_CONNECT, "NetworkConnect")
        ref, config = request.match_info["ref"], body.get("EndpointConfig")
        await self.call(workloads.connect, self.ctx, ref, _container(body), config)
        return web.Response(status=200)

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await read_object(request, schema.NETWORK_DISCONNECT, "NetworkDisconnect")
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


def _connected(request: web.Request) -> bool:
    """True while the client is there; raises ConnectionResetError once it is gone (nobody is left to answer)."""
    if request.transport is None or request.transport.is_closing():
        raise ConnectionResetError("the client went away")
    return True


def _size(request: web.Request) -> tuple[int, int]:
    """`h` and `w` of a resize: Docker's 400 for anything but numbers."""
    try:
        return int(request.query.get("h", "0")), int(request.query.get("w", "0"))
    except ValueError:
        raise InvalidParameter("invalid resize: h and w must be numbers") from None


def _log_start(state_dir: Path) -> int:
    """Where the current run's output begins in the log (written at each start)."""
    try:
        return int((state_dir / relay.LOG_START).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
