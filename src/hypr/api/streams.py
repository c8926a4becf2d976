"""Docker's hijacked streams on the API socket: attach and exec start take over the HTTP connection.

The client asks with `Connection: Upgrade` and `Upgrade: tcp`; it gets `101 UPGRADED` (or `200 OK` with the same
stream when it did not ask), then the connection is a raw stream both ways: stdin from the client (its half-close
ends stdin, while output keeps flowing), output to it as Docker's multiplexed frames without a TTY (8 bytes: stream
1 stdout or 2 stderr, 3 zero bytes, big-endian length; then the payload) or raw bytes with one.

`detach_keys` (Docker's `detachKeys`, default ctrl-p,ctrl-q): when the client types them on the stdin of a TTY
the stream ends and the workload keeps running (without a TTY, as in Docker, stdin is passed on as it is).
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
from pathlib import Path
from typing import Any

from aiohttp import web

from hypr.errors import InvalidParameter

HEADER = struct.Struct(">BxxxL")
STDOUT, STDERR = 1, 2
ACK = 0  # runtime/relay.py: the supervisor took the attach header
RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
DEFAULT_DETACH = b"\x10\x11"  # ctrl-p, ctrl-q
_CTRL = {**{f"ctrl-{c}": ord(c) - ord("a") + 1 for c in "abcdefghijklmnopqrstuvwxyz"},
         "ctrl-@": 0, "ctrl-[": 27, "ctrl-\\": 28, "ctrl-]": 29, "ctrl-^": 30, "ctrl-_": 31}  # fmt: skip


def frame(stream: int, data: bytes) -> bytes:
    return HEADER.pack(stream, len(data)) + data


def parse_detach_keys(text: str) -> bytes:
    """Docker's `--detach-keys`: comma-separated `ctrl-<x>` or single characters; "" is the default."""
    if not text:
        return DEFAULT_DETACH
    keys = []
    for part in text.split(","):
        if part in _CTRL:
            keys.append(_CTRL[part])
        elif len(part) == 1:
            keys.append(ord(part))
        else:
            raise InvalidParameter(f"Invalid detach keys ({text}) provided")
    return bytes(keys)


class DetachScanner:
    """Finds the detach sequence in stdin. Bytes that might start it are held back until it is clear they do not
    (as Docker's escape proxy does)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to pass on, whether the sequence was typed)."""
        out = bytearray()
        for byte in data:
            self.held += bytes([byte])
            if self.keys.startswith(self.held):
                if self.held == self.keys:
                    return bytes(out), True
                continue
            out += self.held
            self.held = b""
        return bytes(out), False


class _Hijacked(asyncio.Protocol):
    """Takes the transport over from aiohttp's protocol: stdin bytes into a queue (None at EOF), a half-close keeps
    the connection open for output; flow control and the connection's end still reach aiohttp's protocol."""

    def __init__(self, original: Any, queue: asyncio.Queue[bytes | None]) -> None:
        self.original = original
        self.queue = queue
        self.closed = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.queue.put_nowait(data)

    def eof_received(self) -> bool:
        self.queue.put_nowait(None)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)
        self.closed.set()
        self.original.connection_lost(exc)

    def pause_writing(self) -> None:
        self.original.pause_writing()

    def resume_writing(self) -> None:
        self.original.resume_writing()


class _RawResponse(web.StreamResponse):
    """A response whose body is whatever is written, as is (no chunked encoding), as aiohttp's WebSocketResponse."""

    _length_check = False


class Hijack:
    """A hijacked connection. `read()` gives stdin (None at its end), `write()` sends output."""

    def __init__(self, request: web.Request, response: _RawResponse, protocol: _Hijacked) -> None:
        self.request = request
        self.response = response
        self.queue = protocol.queue
        self.lost = protocol.closed  # set when the client's connection is gone
        self.stdin_ended = False

    @classmethod
    async def start(cls, request: web.Request, tty: bool) -> Hijack:
        """The 101 (or 200) and headers, sent at once; from here on the connection is ours."""
        upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
        headers = {"Content-Type": RAW if tty else MULTIPLEXED}
        if upgrade:
            headers.update({"Connection": "Upgrade", "Upgrade": "tcp"})
        response = _RawResponse(status=101 if upgrade else 200, reason="UPGRADED" if upgrade else "OK", headers=headers)
        response.force_close()
        await response.prepare(request)
        writer = request.writer
        writer.send_headers()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        protocol = request.protocol
        transport = request.transport
        assert transport is not None
        tail = getattr(protocol, "_message_tail", b"")  # stdin that came with the request head
        if tail:
            queue.put_nowait(tail)
            protocol._message_tail = b""
        hijacked = _Hijacked(protocol, queue)
        transport.set_protocol(hijacked)
        return cls(request, response, hijacked)

    async def read(self) -> bytes | None:
        if self.stdin_ended:
            return None
        data = await self.queue.get()
        if data is None:
            self.stdin_ended = True
        return data

    async def write(self, data: bytes) -> None:
        """Sends `data`; a client that went away is not an error (nobody is left to tell)."""
        if data and not self.lost.is_set():
            try:
                await self.response.write(data)
            except ConnectionError:
                self.lost.set()

    async def close(self) -> None:
        transport = self.request.transport
        if transport is not None and not transport.is_closing():
            transport.close()


# -- the supervisor's side (runtime/relay.py's attach protocol) --------------------------------------------------------

MESSAGE = struct.Struct(">cL")


def message(kind: bytes, payload: bytes = b"") -> bytes:
    """One client message to the supervisor: b"i" stdin, b"c" stdin ended, b"r" resize."""
    return MESSAGE.pack(kind, len(payload)) + payload


async def open_supervisor(
    socket_path: Path, header: dict[str, Any]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A connection to the workload's supervisor, its header sent; None when none listens (the run has ended)."""
    try:
        directory = os.open(socket_path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:  # through the directory: a state directory may be longer than a socket path may be
        reader, writer = await asyncio.open_unix_connection(f"/proc/self/fd/{directory}/{socket_path.name}")
    except OSError:
        return None
    finally:
        os.close(directory)
    writer.write(json.dumps(header).encode() + b"\n")
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    """The next multiplexed frame; None at the end."""
    try:
        head = await reader.readexactly(HEADER.size)
        stream, length = HEADER.unpack(head)
        return stream, await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


async def process_gone(pid: int) -> None:
    """Returns once process `pid` has ended (a pidfd becomes readable then; it need not be our child)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone = loop.create_future()

    def ended() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, ended)
    try:
        await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class Relay:
    """One attach: the supervisor's frames to the client (headers stripped with a TTY), the client's stdin to the
    supervisor (watching for the detach keys). Ends when the supervisor closes (the workload ended), the client
    detaches, or the client goes away."""

    def __init__(self, hijack: Hijack, tty: bool, detach_keys: bytes) -> None:
        self.hijack = hijack
        self.tty = tty
        self.scanner = DetachScanner(detach_keys)
        self.detached = False
        self.served = False  # the supervisor took our header (its empty frame of stream 0 came)

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stdin: bool) -> None:
        output = asyncio.create_task(self._output(reader))
        lost = asyncio.create_task(self.hijack.lost.wait())
        tasks = {output, lost, asyncio.create_task(self._input(writer, stdin))}
        try:
            while output in tasks and lost in tasks and not self.detached:
                done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        finally:
            for task in tasks:
                task.cancel()
            writer.close()

    async def _output(self, reader: asyncio.StreamReader) -> None:
        while (item := await read_frame(reader)) is not None and not self.hijack.lost.is_set():
            stream, data = item
            if stream == ACK:
                self.served = True
                continue
            await self.hijack.write(data if self.tty else frame(stream, data))

    async def _input(self, writer: asyncio.StreamWriter, stdin: bool) -> None:
        while (data := await self.hijack.read()) is not None:
            if not stdin:
                continue
            if self.tty:  # as Docker: the detach keys are looked for only on a TTY
                data, self.detached = self.scanner.feed(data)
            if data:
                writer.write(message(b"i", data))
                await writer.drain()
            if self.detached:
                return
        if stdin:
            writer.write(message(b"c"))
            await writer.drain()
