"""A sandbox's standard streams, held by its supervisor (stdlib only: shim.py imports it as a sibling script).

The workload's stdout and stderr are two pipes (one pty with a TTY), read here and
- logged to `log.json` in Docker's json-file format, one object a line: {"log": text, "stream": "stdout"|"stderr",
  "time": RFC 3339 with nanoseconds, UTC}; a line is logged when its newline arrives (longer ones in LINE_MAX
  pieces); bytes that are not UTF-8 are kept as lone surrogates (`surrogateescape`), so a reader gets them back;
- relayed to every client attached on `attach.sock` (the daemon's attach and logs streams).

The attach protocol on `attach.sock` (one client a connection):
    client: one JSON line {"stdin": bool, "stdout": bool, "stderr": bool, "replay": "none"|"run"|"all"}
            then messages: 1 byte type, 4 bytes big-endian length, payload:
            b"i" stdin data;  b"c" the client's stdin ended;  b"r" resize, payload b"<rows> <cols>"
    server: Docker's multiplexed frames (1 byte stream: 1 stdout 2 stderr, 3 zero bytes, 4 bytes big-endian length,
            payload): first an empty frame of stream 0 (the header was taken: a client that does not get it was
            not served, and reads the log instead), then the replayed output ("run": since this run started, at
            `log_start`'s offset; "all": the whole log), then live output; closed when the workload has ended and
            its output is drained (clients still connecting then are served first).
stdin is a pipe held here when the workload has OpenStdin (the pty with a TTY): what clients send is written to it;
with StdinOnce it is closed when a client's stdin ends.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import termios
import time
from collections.abc import Callable

LOG = "log.json"
LOG_START = "log_start"  # the byte offset in log.json where the current run's output begins
ATTACH_SOCK = "attach.sock"
STDOUT, STDERR = 1, 2
ACK = 0  # the stream of the empty frame that tells a client its header was taken
NAMES = {STDOUT: "stdout", STDERR: "stderr"}
LINE_MAX = 16384  # bytes of one line logged as one record
CLIENT_BUFFER_MAX = 4 << 20  # output queued for a slow client: past this the workload's output is not read
# (as in Docker, an attached client that reads slowly slows the workload down) until it is half drained
STDIN_BUFFER_MAX = 1 << 20  # stdin queued for a workload that does not read: clients are not read meanwhile
DRAIN_AFTER_EXIT = 2.0  # seconds output may still arrive after the init ended
DRAIN_IDLE = 0.2  # after the init ended: this long without any output ends the drain
HEADER = struct.Struct(">BxxxL")
MESSAGE = struct.Struct(">cL")


def frame(stream: int, data: bytes) -> bytes:
    """Docker's multiplexed stream frame."""
    return HEADER.pack(stream, len(data)) + data


def rfc3339(ns: int) -> str:
    """Docker's RFC3339NanoFixed in UTC: fixed width, so that times compare as strings."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def record(stream: int, data: bytes, ns: int) -> bytes:
    text = data.decode("utf-8", "surrogateescape")
    return json.dumps({"log": text, "stream": NAMES[stream], "time": rfc3339(ns)}).encode() + b"\n"


class LogWriter:
    """Appends json-file records; keeps each stream's unfinished line until its newline (or LINE_MAX) arrives."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.partial = {STDOUT: b"", STDERR: b""}

    def write(self, stream: int, data: bytes) -> None:
        now, out = time.time_ns(), []
        pending = self.partial[stream] + data
        while pending:
            cut = pending.find(b"\n", 0, LINE_MAX)
            if cut < 0 and len(pending) < LINE_MAX:
                break
            end = cut + 1 if cut >= 0 else LINE_MAX
            out.append(record(stream, pending[:end], now))
            pending = pending[end:]
        self.partial[stream] = pending
        if out:
            os.write(self.fd, b"".join(out))

    def flush(self) -> None:
        now = time.time_ns()
        out = [record(s, data, now) for s, data in self.partial.items() if data]
        self.partial = {STDOUT: b"", STDERR: b""}
        if out:
            os.write(self.fd, b"".join(out))


def replay_frames(path: str, offset: int, streams: set[int]) -> bytes:
    """The logged output from `offset` on, as frames of the wanted streams."""
    codes = {name: code for code, name in NAMES.items()}
    out = []
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
        f.seek(offset)
        for line in f:
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(line)
                stream = codes[entry["stream"]]
                if stream in streams:
                    out.append(frame(stream, entry["log"].encode("utf-8", "surrogateescape")))
    return b"".join(out)


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.streams: set[int] | None = None  # None until its header line arrived
        self.stdin = False
        self.inbuf = b""
        self.out = bytearray()


class Relay:
    """The supervisor's event loop over the workload's streams, attached clients and signals (see the module)."""

    def __init__(self, state_dir: str, log_fd: int, tty: bool, stdin_once: bool) -> None:
        self.state_dir = state_dir
        self.log = LogWriter(log_fd)
        self.tty = tty
        self.stdin_once = stdin_once
        self.sel = selectors.DefaultSelector()
        self.outputs: dict[int, int] = {}  # fd -> stream
        self.paused = False  # the outputs are not read while a client has too much queued
        self.stdin_fd: int | None = None
        self.stdin_buf = bytearray()
        self.stdin_closing = False
        self.clients: dict[int, Client] = {}
        self.listener = _listen(state_dir)
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")

    # -- set-up --------------------------------------------------------------------------------------------------
    def add_output(self, fd: int, stream: int) -> None:
        os.set_blocking(fd, False)
        self.outputs[fd] = stream
        self.sel.register(fd, selectors.EVENT_READ, "output")

    def set_stdin(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.stdin_fd = fd

    # -- the loop ------------------------------------------------------------------------------------------------
    def run(self, wake_fd: int, ended: Callable[[], bool]) -> None:
        """Until `ended()` (the init was reaped, checked after each wake-up on `wake_fd`), then while output
        still comes: its pipes close when the last process of the container is gone, but a pty master does not
        always tell (it can stay quiet rather than report the hang-up), so an idle DRAIN_IDLE ends it too, and
        DRAIN_AFTER_EXIT at the latest."""
        os.set_blocking(wake_fd, False)
        self.sel.register(wake_fd, selectors.EVENT_READ, "wake")
        deadline: float | None = None
        while self.outputs or deadline is None:
            if deadline is None and ended():
                deadline = time.monotonic() + DRAIN_AFTER_EXIT
            timeout = None if deadline is None else min(DRAIN_IDLE, deadline - time.monotonic())
            if timeout is not None and timeout <= 0:
                break
            events = self.sel.select(timeout)
            if not events and deadline is not None and not self.paused:
                break
            for key, mask in events:
                self._dispatch(key, mask)
        self.log.flush()
        self._close_all()

    def _dispatch(self, key: selectors.SelectorKey, events: int) -> None:
        kind, fd = key.data, key.fd
        if kind == "wake":
            with contextlib.suppress(BlockingIOError):
                os.read(fd, 512)
        elif kind == "output":
            self._read_output(fd)
        elif kind == "accept":
            self._accept()
        elif kind == "stdin":
            self._write_stdin()
        elif kind == "client":
            client = self.clients.get(fd)
            if client is not None:
                if events & selectors.EVENT_WRITE:
                    self._send(client)
                if events & selectors.EVENT_READ and fd in self.clients:
                    self._read_client(client)

    def _read_output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:  # a pty whose other side is closed answers EIO
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:
            with contextlib.suppress(KeyError):
                self.sel.unregister(fd)
            del self.outputs[fd]
            if fd != self.stdin_fd:
                os.close(fd)
            return
        stream = self.outputs[fd]
        self.log.write(stream, data)
        for client in list(self.clients.values()):
            if client.streams is not None and stream in client.streams:
                self._queue(client, frame(stream, data))

    # -- clients -------------------------------------------------------------------------------------------------
    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            sock, _ = self.listener.accept()
            sock.setblocking(False)
            self.clients[sock.fileno()] = Client(sock)
            self.sel.register(sock, selectors.EVENT_READ, "client")

    def _read_client(self, client: Client) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.inbuf += data
        if client.streams is None:
            line, found, rest = client.inbuf.partition(b"\n")
            if not found:
                return
            client.inbuf = rest
            self._start(client, line)
        self._messages(client)

    def _start(self, client: Client, line: bytes) -> None:
        try:
            header = json.loads(line)
        except ValueError:
            header = {}
        wanted = {s for s, key in ((STDOUT, "stdout"), (STDERR, "stderr")) if header.get(key)}
        client.streams, client.stdin = wanted, bool(header.get("stdin"))
        self._queue(client, frame(ACK, b""))
        replay = header.get("replay", "none")
        if replay in ("run", "all") and wanted:
            offset = 0 if replay == "all" else _log_start(self.state_dir)
            backlog = replay_frames(os.path.join(self.state_dir, LOG), offset, wanted)
            pending = b"".join(frame(s, d) for s, d in self.log.partial.items() if d and s in wanted)
            self._queue(client, backlog + pending)

    def _messages(self, client: Client) -> None:
        buf = client.inbuf
        while len(buf) >= MESSAGE.size:
            kind, length = MESSAGE.unpack_from(buf)
            if len(buf) < MESSAGE.size + length:
                break
            payload, buf = buf[MESSAGE.size : MESSAGE.size + length], buf[MESSAGE.size + length :]
            if kind == b"i" and client.stdin:
                self._feed_stdin(payload)
            elif kind == b"c" and client.stdin and self.stdin_once and not self.tty:
                self.stdin_closing = True
                self._write_stdin()
            elif kind == b"r" and self.tty:
                self._resize(payload)
        client.inbuf = buf

    def _queue(self, client: Client, data: bytes) -> None:
        client.out += data
        self._send(client)

    def _send(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.out) if client.out else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(client)
            return
        del client.out[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.out else 0)
        self.sel.modify(client.sock, events, "client")
        self._flow()

    def _drop(self, client: Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(client.sock)
        client.sock.close()
        self._flow()

    def _flow(self) -> None:
        """Stop reading the workload's output while a client has CLIENT_BUFFER_MAX queued; go on at half."""
        queued = max((len(c.out) for c in self.clients.values()), default=0)
        if not self.paused and queued > CLIENT_BUFFER_MAX:
            self.paused = True
            for fd in self.outputs:
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(fd)
        elif self.paused and queued <= CLIENT_BUFFER_MAX // 2:
            self.paused = False
            for fd in self.outputs:
                self.sel.register(fd, selectors.EVENT_READ, "output")

    def _close_all(self) -> None:
        """Serve the clients still connecting (accepted, or their header read, only now), give every client what
        is queued for it (a moment at most), then close."""
        deadline = time.monotonic() + 2.0
        while True:
            before = len(self.clients)
            self._accept()
            if len(self.clients) == before:
                break
        self.listener.close()
        for client in list(self.clients.values()):
            client.sock.setblocking(True)
            client.sock.settimeout(max(0.01, deadline - time.monotonic()))
            with contextlib.suppress(OSError):
                while client.streams is None and b"\n" not in client.inbuf:
                    data = client.sock.recv(65536)
                    if not data:
                        break
                    client.inbuf += data
                line, found, client.inbuf = client.inbuf.partition(b"\n")
                if client.streams is None and found:
                    self._start(client, line)
                client.sock.setblocking(True)
                client.sock.settimeout(max(0.01, deadline - time.monotonic()))
                client.sock.sendall(client.out)
            self._drop(client)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.state_dir, ATTACH_SOCK))

    # -- stdin ---------------------------------------------------------------------------------------------------
    def _feed_stdin(self, data: bytes) -> None:
        if self.stdin_fd is None or self.stdin_closing:
            return
        self.stdin_buf += data
        self._write_stdin()

    def _write_stdin(self) -> None:
        fd = self.stdin_fd
        if fd is None:
            return
        try:
            written = os.write(fd, self.stdin_buf) if self.stdin_buf else 0
        except BlockingIOError:
            written = 0
        except OSError:  # the workload closed its stdin: what is sent to it goes nowhere, as in Docker
            written = len(self.stdin_buf)
        del self.stdin_buf[:written]
        registered = fd in self.sel.get_map() and self.sel.get_key(fd).data == "stdin"
        if self.stdin_buf and not registered and fd not in self.outputs:
            self.sel.register(fd, selectors.EVENT_WRITE, "stdin")
        elif not self.stdin_buf and registered:
            self.sel.unregister(fd)
        if not self.stdin_buf and self.stdin_closing:
            os.close(fd)
            self.stdin_fd = None

    def _resize(self, payload: bytes) -> None:
        with contextlib.suppress(ValueError, OSError):
            rows, cols = (int(v) for v in payload.split())
            if self.stdin_fd is not None:
                fcntl.ioctl(self.stdin_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _log_start(state_dir: str) -> int:
    try:
        with open(os.path.join(state_dir, LOG_START)) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _listen(state_dir: str) -> socket.socket:
    """attach.sock, bound by a relative name: state directories can be longer than a socket path may be."""
    path = os.path.join(state_dir, ATTACH_SOCK)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(state_dir)
        sock.bind(ATTACH_SOCK)
    finally:
        os.fchdir(here)
        os.close(here)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock


def wake_on_signals(signals: tuple[signal.Signals, ...]) -> int:
    """A pipe that becomes readable whenever one of `signals` arrives (SIGCHLD among them, to reap)."""
    r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    for sig in signals:
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.SIG_IGN, None):
            signal.signal(sig, lambda *_: None)
    return r
