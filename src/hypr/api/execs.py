"""Docker's exec API: `POST /containers/{id}/exec`, `POST /exec/{id}/start`, `GET /exec/{id}/json`,
`POST /exec/{id}/resize`.

An exec instance lives in the daemon's memory (the newest MAX_EXECS of them), as Docker keeps them only while the
daemon runs. Start runs the runtime's exec process (`crun exec` itself in a sandbox, the guest agent's client
vmexec.py for a VM) as the daemon's child: without a TTY its stdin, stdout and stderr are pipes relayed over the
hijacked connection as Docker's frames; with one, crun gets `--tty --console-socket` and sends the pty's master
here, and the raw bytes go both ways (resize: TIOCSWINSZ on it). `Detach` starts it and answers at once. The exit
code is the command's; when the command never ran (not found, not executable) it is Docker's 127/126, with the
reason on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import socket
import struct
import tempfile
import termios
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from hypr.api import schema, streams
from hypr.api.common import Call, Handler, json_response, read_object
from hypr.errors import Conflict, InvalidParameter, NotFound
from hypr.runtime.base import ExecOptions, ExecProcess
from hypr.services import validation, workload_plan, workloads
from hypr.services.context import Context

MAX_EXECS = 1024
CONSOLE_TIMEOUT = 30.0  # seconds for crun to send the pty's master
CHUNK = 65536
CREATE_FIELDS = {
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "DetachKeys",
    "Tty",
    "Env",
    "Cmd",
    "Privileged",
    "User",
    "WorkingDir",
    "ConsoleSize",
    "Detach",
    "Container",
}  # fmt: skip; Container: old clients repeat the path
START_FIELDS = {"Detach", "Tty", "ConsoleSize"}


@dataclass
class Exec:
    id: str
    workload_id: str
    argv: tuple[str, ...]
    env: dict[str, str]
    workdir: str | None
    options: ExecOptions  # user and privileged (the console socket is chosen at start)
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool
    detach_keys: bytes
    size: tuple[int, int] | None = None  # (rows, columns) asked for before the pty exists
    started: bool = False
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    master: int | None = None  # the pty's master while it runs
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def inspect(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Running": self.running, "ExitCode": self.exit_code, "ContainerID": self.workload_id,
            "OpenStdin": self.stdin, "OpenStdout": self.stdout, "OpenStderr": self.stderr, "CanRemove": False,
            "DetachKeys": self.detach_keys.decode("latin-1"), "Pid": self.pid,
            "ProcessConfig": {
                "tty": self.tty, "entrypoint": self.argv[0], "arguments": list(self.argv[1:]),
                "privileged": self.options.privileged, "user": self.options.user,
            },
        }  # fmt: skip


def _flag(body: dict[str, Any], key: str) -> bool:
    return validation.flag(body, key)


def _size(value: Any) -> tuple[int, int] | None:
    """Docker's ConsoleSize: [height, width] or null."""
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v >= 0 for v in value)):
        raise InvalidParameter("invalid ConsoleSize: expected [height, width]")
    return value[0], value[1]


def _refuse_unknown(body: dict[str, Any], known: set[str], what: str) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidParameter(f"{what}: {', '.join(unknown)} not supported by hypr")


class ExecApi:
    def __init__(self, ctx: Context, call: Call) -> None:
        self.ctx = ctx
        self.call = call
        self.execs: OrderedDict[str, Exec] = OrderedDict()
        self.background: set[asyncio.Task[None]] = set()  # execs that run on without a client

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/containers/{ref}/exec", self.create),
            ("POST", "/exec/{id}/start", self.start),
            ("GET", "/exec/{id}/json", self.inspect),
            ("POST", "/exec/{id}/resize", self.resize),
        ]

    def _find(self, request: web.Request) -> Exec:
        ident = request.match_info["id"]
        found = self.execs.get(ident) or next((e for i, e in self.execs.items() if i.startswith(ident)), None)
        if found is None or not ident:
            raise NotFound(f"No such exec instance: {ident}")
        return found

    async def create(self, request: web.Request) -> web.Response:
        body = await read_object(request, schema.EXEC_CREATE, "ExecOptions")
        _refuse_unknown(body, CREATE_FIELDS, "exec")
        argv = tuple(validation.strings(body.get("Cmd"), "Cmd"))
        if not argv:
            raise InvalidParameter("No exec command specified")
        user, workdir = body.get("User") or "", body.get("WorkingDir") or None
        for name, value in (("User", user), ("WorkingDir", workdir or "")):
            if not isinstance(value, str) or "\0" in value:
                raise InvalidParameter(f"invalid {name}: expected a string without NUL bytes")
        if workdir and not workdir.startswith("/"):
            raise InvalidParameter(f"the working directory '{workdir}' is invalid, it needs to be an absolute path")
        if any("\0" in arg for arg in argv):
            raise InvalidParameter("invalid Cmd: an argument contains a NUL byte")
        snapshot = await self.call(self.ctx.store.snapshot)
        workload = workload_plan.find_workload(snapshot, request.match_info["ref"])
        if workload.state != "running":
            raise Conflict(f"Container {workload.id} is not running")
        keys = body.get("DetachKeys") or ""
        if not isinstance(keys, str):
            raise InvalidParameter("invalid DetachKeys: expected a string")
        instance = Exec(
            id=validation.new_id(), workload_id=workload.id, argv=argv, env=dict(workload_plan.exec_env(body.get("Env"))),
            workdir=workdir, options=ExecOptions(user=user, privileged=_flag(body, "Privileged")), tty=_flag(body, "Tty"),
            stdin=_flag(body, "AttachStdin"), stdout=_flag(body, "AttachStdout"), stderr=_flag(body, "AttachStderr"),
            detach_keys=streams.parse_detach_keys(keys), size=_size(body.get("ConsoleSize")),
        )  # fmt: skip
        self.execs[instance.id] = instance
        while len(self.execs) > MAX_EXECS:
            oldest = next((i for i, e in self.execs.items() if not e.running), None)
            if oldest is None:
                break
            del self.execs[oldest]
        return json_response({"Id": instance.id}, status=201)

    async def inspect(self, request: web.Request) -> web.Response:
        return json_response(self._find(request).inspect())

    async def resize(self, request: web.Request) -> web.Response:
        instance = self._find(request)
        try:
            rows, cols = int(request.query.get("h", "0")), int(request.query.get("w", "0"))
        except ValueError:
            raise InvalidParameter("invalid resize: h and w must be numbers") from None
        instance.size = (rows, cols)
        if instance.master is not None:
            _set_size(instance.master, rows, cols)
        return web.Response(status=200)

    async def start(self, request: web.Request) -> web.StreamResponse:
        instance = self._find(request)
        body = await read_object(request, schema.EXEC_START, "ExecStartCheck")
        _refuse_unknown(body, START_FIELDS, "exec start")
        if instance.started:
            raise Conflict(f"Exec {instance.id} has already been started")
        size = _size(body.get("ConsoleSize"))
        instance.size = size or instance.size
        instance.started = True
        runner = _Runner(instance, self.background)
        try:
            await runner.spawn(self)
        except BaseException:
            instance.started = False
            raise
        if _flag(body, "Detach"):
            self.background.add(task := asyncio.create_task(runner.finish(None)))
            task.add_done_callback(self.background.discard)
            return web.Response(status=200)
        hijack = await streams.Hijack.start(request, instance.tty)
        try:
            await runner.finish(hijack)
        finally:
            await hijack.close()
        return hijack.response


def _set_size(fd: int, rows: int, cols: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class _Runner:
    """One exec's process and the relay of its streams."""

    def __init__(self, instance: Exec, background: set[asyncio.Task[None]]) -> None:
        self.instance = instance
        self.background = background
        self.process: asyncio.subprocess.Process | None = None
        self.plan: ExecProcess | None = None
        self.console_dir = ""

    async def spawn(self, api: ExecApi) -> None:
        e = self.instance
        options = e.options
        if e.tty:
            self.console_dir = tempfile.mkdtemp(prefix="hypr-exec-")  # short: a socket path has 108 bytes
            options = ExecOptions(e.options.user, e.options.privileged, os.path.join(self.console_dir, "c.sock"))
        try:
            self.plan = await api.call(
                workloads.exec_process, api.ctx, e.workload_id, e.argv, e.env, e.workdir, options
            )
            if e.tty:
                await self._spawn_tty(self.plan, options.console_socket or "")
            else:
                pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
                self.process = await asyncio.create_subprocess_exec(
                    *self.plan.argv, stdin=pipe if e.stdin else null, stdout=pipe if e.stdout else null,
                    stderr=pipe if e.stderr else null, start_new_session=True, pass_fds=self.plan.pass_fds,
                )  # fmt: skip
        except BaseException:
            self._cleanup()
            raise
        e.running, e.pid = True, self.process.pid if self.process else 0

    async def _spawn_tty(self, plan: ExecProcess, path: str) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            listener.bind(path)
            listener.listen(1)
            listener.setblocking(False)
            null = asyncio.subprocess.DEVNULL
            self.process = await asyncio.create_subprocess_exec(
                *plan.argv, stdin=null, stdout=null, stderr=asyncio.subprocess.PIPE, start_new_session=True,
                pass_fds=plan.pass_fds,
            )  # fmt: skip
            loop = asyncio.get_running_loop()
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            ended = asyncio.ensure_future(self.process.wait())
            await asyncio.wait({accept, ended}, timeout=CONSOLE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            if not accept.done():
                accept.cancel()
                ended.cancel()
                return  # the helper failed before it made a pty: finish() tells why (its stderr) and its code
            ended.cancel()
            conn, _ = accept.result()
            with conn:  # blocking again (asyncio's accept made it not): crun may connect before it sends the pty
                conn.settimeout(CONSOLE_TIMEOUT)
                _, fds, _, _ = await asyncio.to_thread(socket.recv_fds, conn, 1024, 1)
            if not fds:
                return  # it hung up without a pty: finish() tells why (the helper's stderr) and its code
            master = fds[0]
            os.set_blocking(master, False)
            if self.instance.size:
                _set_size(master, *self.instance.size)
            self.instance.master = master
        finally:
            listener.close()

    async def finish(self, hijack: streams.Hijack | None) -> None:
        """Relay until the process has ended and its output is drained, then record the exit code. A client that
        detaches or goes away leaves the exec running: it is then finished in the background."""
        e, process = self.instance, self.process
        assert process is not None
        pumps = []
        if e.master is not None:
            pumps.append(asyncio.create_task(self._pty_out(hijack, e.master)))
        else:
            for stream, pipe in ((streams.STDOUT, process.stdout), (streams.STDERR, process.stderr)):
                if pipe is not None:
                    pumps.append(asyncio.create_task(self._pipe_out(hijack, stream, pipe, e.tty)))
        feeder = asyncio.create_task(self._stdin(hijack, process)) if hijack is not None else None
        ended = asyncio.create_task(process.wait())
        watch: set[asyncio.Future[Any]] = {ended}
        if hijack is not None:
            watch.add(asyncio.create_task(hijack.lost.wait()))
        await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
        reap = self._reap(ended, pumps, feeder, hijack)
        if ended.done():
            await reap
        else:
            self.background.add(later := asyncio.create_task(reap))
            later.add_done_callback(self.background.discard)
        for waiter in watch - {ended}:
            waiter.cancel()

    async def _reap(
        self, ended: asyncio.Task[int], pumps: list[asyncio.Task[None]], feeder: asyncio.Task[None] | None,
        hijack: streams.Hijack | None,
    ) -> None:  # fmt: skip
        e = self.instance
        try:
            code = await ended
            if pumps:
                await asyncio.wait(pumps, timeout=5.0)  # output still in the pipes
            for task in [*pumps, *([feeder] if feeder else [])]:
                task.cancel()
            failure = self.plan.failure(code) if self.plan is not None else None
            if failure is not None:  # the command never ran: Docker's code, and why on stderr
                code, message = failure
                if hijack is not None:
                    data = message.encode()
                    await hijack.write(data if e.tty else streams.frame(streams.STDERR, data))
            e.exit_code = code
        finally:
            e.running = False
            e.done.set()
            self._cleanup()

    async def _pipe_out(
        self, hijack: streams.Hijack | None, stream: int, pipe: asyncio.StreamReader, tty: bool
    ) -> None:
        while data := await pipe.read(CHUNK):
            if hijack is not None:
                await hijack.write(data if tty else streams.frame(stream, data))

    async def _pty_out(self, hijack: streams.Hijack | None, master: int) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(master, CHUNK)
            except BlockingIOError:
                return
            except OSError:  # EIO: every holder of the pty's other side is gone
                data = b""
            if not data:
                loop.remove_reader(master)
            queue.put_nowait(data)

        loop.add_reader(master, readable)
        try:
            while data := await queue.get():
                if hijack is not None:
                    await hijack.write(data)
        finally:
            loop.remove_reader(master)

    async def _stdin(self, hijack: streams.Hijack, process: asyncio.subprocess.Process) -> None:
        e = self.instance
        scanner = streams.DetachScanner(e.detach_keys)
        while (data := await hijack.read()) is not None:
            if not e.stdin:
                continue
            detached = False
            if e.tty:
                data, detached = scanner.feed(data)
            await self._feed(process, data)
            if detached:
                await hijack.close()  # the exec runs on
                return
        if e.stdin and process.stdin is not None:
            process.stdin.close()

    async def _feed(self, process: asyncio.subprocess.Process, data: bytes) -> None:
        master = self.instance.master
        if master is not None:
            while data:
                try:
                    data = data[os.write(master, data) :]
                except BlockingIOError:
                    await asyncio.sleep(0.01)
                except OSError:
                    return
        elif process.stdin is not None and data:
            process.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await process.stdin.drain()

    def _cleanup(self) -> None:
        if self.plan is not None and not self.instance.running:
            self.plan.close()
            self.plan = None
        master, self.instance.master = self.instance.master, None
        if master is not None and not self.instance.running:
            os.close(master)
        elif master is not None:
            self.instance.master = master
        if self.console_dir:
            shutil.rmtree(self.console_dir, ignore_errors=True)
            self.console_dir = ""
