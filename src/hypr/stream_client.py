"""The client side of Docker's streams, for the CLI (stdlib only, independent of the HTTP client in client.py).

HTTP/1.1 over the daemon's unix socket for the requests whose answer is a stream: a hijacked attach or exec start
(`Upgrade: tcp`; after the 101 the socket is a raw stream both ways) and the logs (a chunked body). Output without
a TTY is Docker's multiplexed frames (8 bytes: stream 1 stdout or 2 stderr, 3 zero bytes, big-endian length;
then the payload): `Demuxer` splits them. `pump` copies the local stdin to the stream (half-closing it at EOF) and
the stream to the local stdout and stderr, with the local terminal in raw mode for a TTY.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import termios
import threading
import tty as ttymode
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from hypr.client import API_PREFIX
from hypr.errors import HyprError, Unavailable, from_status

HEADER = struct.Struct(">BxxxL")
CHUNK = 65536


class Demuxer:
    """Docker's frames, fed in any pieces, out as (stream, payload)."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buffer += data
        out = []
        while len(self.buffer) >= HEADER.size:
            stream, length = HEADER.unpack_from(self.buffer)
            if len(self.buffer) < HEADER.size + length:
                break
            out.append((stream, self.buffer[HEADER.size : HEADER.size + length]))
            self.buffer = self.buffer[HEADER.size + length :]
        return out


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    sock: socket.socket
    rest: bytes  # bytes read past the head

    def close(self) -> None:
        self.sock.close()

    def error(self) -> HyprError:
        body = self.rest
        with contextlib.suppress(OSError):
            self.sock.settimeout(10)
            while chunk := self.sock.recv(CHUNK):
                body += chunk
        text = _dechunk(body) if self.headers.get("transfer-encoding") == "chunked" else body
        try:
            message = str(json.loads(text)["message"])
        except (ValueError, KeyError, TypeError):
            message = text.decode(errors="replace") or f"HTTP {self.status}"
        return from_status(self.status, message)


def request(
    socket_path: str, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None,
    upgrade: bool = False,
) -> Response:  # fmt: skip
    """Sends one request on a connection of its own; the response's head is read, its body is left on the socket.
    Raises the daemon's error for a status >= 400."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
    except OSError as exc:
        sock.close()
        raise Unavailable(f"Cannot connect to the hypr daemon at unix://{socket_path}. Is hyprd running?") from exc
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    payload = json.dumps(body).encode() if body is not None else b""
    head = [f"{method} {API_PREFIX}{path}{query} HTTP/1.1", "Host: hypr", f"Content-Length: {len(payload)}"]
    if body is not None:
        head.append("Content-Type: application/json")
    if upgrade:
        head += ["Connection: Upgrade", "Upgrade: tcp"]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(CHUNK)
        if not chunk:
            sock.close()
            raise Unavailable("the hypr daemon closed the connection")
        data += chunk
    head_text, _, rest = data.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    response = Response(status, headers, sock, rest)
    if status >= 400:
        try:
            raise response.error()
        finally:
            sock.close()
    return response


def _dechunk(data: bytes) -> bytes:
    out, _ = _chunks(data)
    return b"".join(out)


def _chunks(data: bytes) -> tuple[list[bytes], bytes | None]:
    """Complete chunks of a chunked body, and what is left (None once the last chunk was seen)."""
    out: list[bytes] = []
    while True:
        line, found, rest = data.partition(b"\r\n")
        if not found:
            return out, data
        size = int(line.split(b";")[0] or b"0", 16)
        if size == 0:
            return out, None
        if len(rest) < size + 2:
            return out, data
        out.append(rest[:size])
        data = rest[size + 2 :]


def body(response: Response) -> Iterator[bytes]:
    """The body as it arrives: chunked, by Content-Length, or until the connection closes."""
    sock, data = response.sock, response.rest
    if response.headers.get("transfer-encoding") == "chunked":
        while True:
            out, rest = _chunks(data)
            yield from out
            if rest is None:
                return
            chunk = sock.recv(CHUNK)
            if not chunk:
                return
            data = rest + chunk
    length = int(response.headers["content-length"]) if "content-length" in response.headers else None
    while length is None or length > 0:
        if data:
            yield data if length is None else data[:length]
            length = None if length is None else length - len(data)
        data = sock.recv(CHUNK)
        if not data:
            return


def write_frames(chunks: Iterator[bytes], tty: bool) -> None:
    """Output to the local stdout and stderr: raw with a TTY, demultiplexed without."""
    demux = Demuxer()
    for chunk in chunks:
        for stream, payload in [(1, chunk)] if tty else demux.feed(chunk):
            target = sys.stderr.buffer if stream == 2 else sys.stdout.buffer
            target.write(payload)
            target.flush()


def pump(sock: socket.socket, rest: bytes, tty: bool, stdin: BinaryIO | None) -> None:
    """Copies `stdin` to the hijacked stream and the stream to stdout/stderr until the daemon ends it."""
    demux = Demuxer()
    out = {1: sys.stdout.buffer, 2: sys.stderr.buffer}

    def emit(data: bytes) -> None:
        for stream, payload in [(1, data)] if tty else demux.feed(data):
            out.get(stream, out[1]).write(payload)
            out.get(stream, out[1]).flush()

    emit(rest)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    if stdin is not None:
        try:
            selector.register(stdin, selectors.EVENT_READ)
        except PermissionError:  # a regular file (`-i < file`): epoll refuses one, it is always readable
            threading.Thread(target=send_whole, args=(sock, stdin), daemon=True).start()
            stdin = None
    while True:
        for key, _ in selector.select():
            if key.fileobj is sock:
                data = sock.recv(CHUNK)
                if not data:
                    return
                emit(data)
            else:
                data = os.read(stdin.fileno(), CHUNK) if stdin is not None else b""
                if data:
                    sock.sendall(data)
                else:  # local EOF: half-close, the output keeps coming
                    selector.unregister(key.fileobj)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)


def send_whole(sock: socket.socket, source: BinaryIO) -> None:
    """Copies `source` to the stream, then half-closes it; on a thread of its own, so that the output keeps being
    read meanwhile (a workload echoing its input would fill both directions and stall)."""
    with contextlib.suppress(OSError):
        while data := os.read(source.fileno(), CHUNK):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def raw_terminal(on: bool) -> Iterator[None]:
    """The local terminal in raw mode while a TTY stream runs (keys go to the workload's terminal)."""
    if not (on and sys.stdin.isatty()):
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    ttymode.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size() -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        size = os.get_terminal_size(sys.stdout.fileno())
        return size.lines, size.columns
    return None


def on_resize(resize: Any) -> None:
    """Calls `resize(rows, cols)` now and whenever the local terminal changes size."""
    size = terminal_size()
    if size is None:
        return
    resize(*size)

    def changed(_signum: int, _frame: object) -> None:
        now = terminal_size()
        if now is not None:
            with contextlib.suppress(HyprError):
                resize(*now)

    signal.signal(signal.SIGWINCH, changed)


def quote(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")


def logs(socket_path: str, ref: str, params: Mapping[str, str]) -> Iterator[tuple[int, bytes]]:
    """`GET /containers/{ref}/logs` as (stream, bytes): frames demultiplexed, a TTY's raw stream as stdout."""
    response = request(socket_path, "GET", f"/containers/{quote(ref)}/logs", params=params)
    try:
        raw = response.headers.get("content-type", "") == "application/vnd.docker.raw-stream"
        demux = Demuxer()
        for chunk in body(response):
            yield from [(1, chunk)] if raw else demux.feed(chunk)
    finally:
        response.close()
