"""The CLI fork server: `hypr` commands forked from an interpreter that has click and every command imported.

`python -m hypr.cli.forkserver SOCKET IDLE`, started by a `hypr` command that found no server (hypr.cli.entry,
which also has the client's side and the protocol). One per user and key (the socket's name); it:

- answers its own user only (SO_PEERCRED; the socket's directory is 0700 too);
- runs a command only for a client with its own credentials and namespaces (groups, capabilities, confinement,
  mount namespace...): another runs it itself;
- forks a child per command, which takes on its client's stdio, working directory, umask, environment and argv,
  then runs the command as `hypr` would; the child's wait status goes back to the client (pidfd);
- kills a command whose client went away (as it would have died with the client);
- refuses a command and exits when one of its modules changed on disk (an upgrade, an edit): the client runs it
  itself and starts a fresh server;
- exits after IDLE seconds without commands, and at SIGTERM once the running commands have ended (a new server
  can start meanwhile).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import importlib
import io
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import time
import traceback

from hypr.cli.entry import MAGIC
from hypr.runtime import _libc

# Imported before the first command, beside every command's module: what the commands import when they run.
PRELOAD = ("hypr.client", "hypr.stream_client", "hypr.ports", "hypr.models", "hypr.images.reference", "json", "csv")


def serve(path: str, idle: float) -> None:
    """Serve commands on `path` until `idle` seconds pass without one, a module changes on disk, or SIGTERM. The
    lock file beside the socket holds the server's PID; a second server for the same path exits at once."""
    os.chdir("/")
    # What the starting client inherited and did not mark close-on-exec (a script's `exec 9>lock; flock 9`, a
    # make jobserver's pipe, a runner's output pipe) must not stay open for the server's life, nor reach commands.
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another client started one first
    os.ftruncate(lock, 0)
    os.write(lock, b"%d\n" % os.getpid())
    gc.disable()  # off for good here, as in a command's imports (hypr.cli.entry); each command turns it on
    preload()
    gc.freeze()
    Server(path, lock, idle).run()


def preload() -> None:
    from hypr.cli.main import COMMAND_MODULES

    for module in (*sorted(set(COMMAND_MODULES.values())), *PRELOAD):
        importlib.import_module(module)


class Server:
    def __init__(self, path: str, lock: int, idle: float) -> None:
        self.path, self.lock, self.idle, self.pid = path, lock, idle, os.getpid()
        self.stamps = module_stamps()
        # A command never runs with more than its client may do (`setpriv --clear-groups hypr ...`, a systemd
        # unit's capabilities, PrivateTmp), nor fails where its client would not (a group the user got since).
        self.credentials = credentials("self")
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a dead server's: the lock says none runs
        self.listener.bind(path)
        self.listener.listen(128)
        self.inode = os.stat(path).st_ino
        self.selector.register(self.listener, selectors.EVENT_READ, self.accept)
        self.children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, the client's connection)
        # Commands it runs at once: each holds 2 fds here (pidfd, connection), and a request takes 4 more while it
        # is read; beyond that the clients run their commands themselves (an accept or pidfd_open failing for lack
        # of fds would end the server, or leave a command running that its client runs again).
        self.capacity = (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 32) // 2
        # SIGTERM wakes the loop through a pipe (the C handler writes to it) instead of interrupting it anywhere.
        self.wakeup, self.wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wakeup_w)
        signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
        self.selector.register(self.wakeup, selectors.EVENT_READ, self.terminated)

    def run(self) -> None:
        while self.listener is not None or self.children:
            events = self.selector.select(None if self.children else self.idle)
            if not events:
                break  # idle
            for key, _mask in events:
                # A handler earlier in this batch may have dropped this key (a command that ended as its client
                # went: reap closed the connection that client_gone would look up) or reused its fd number.
                if self.selector.get_map().get(key.fd) is key:
                    key.data(key.fileobj)
        self.close()

    def terminated(self, wakeup: int) -> None:
        """SIGTERM: stop taking commands; the running ones finish. (The pipe carries the numbers of the signals.)"""
        with contextlib.suppress(BlockingIOError):
            if signal.SIGTERM in os.read(wakeup, 64):
                self.close()

    def close(self) -> None:
        """Stop taking commands. The socket goes if it is still ours (a newer server may have replaced it), then
        the lock: a new server can start while the running commands end here (a `logs -f` may run for days)."""
        if self.listener is None:
            return
        self.selector.unregister(self.listener)
        self.listener.close()
        self.listener = None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        os.close(self.lock)
        self.lock = -1

    def accept(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        fds: list[int] = []
        handed = False  # to a child: the connection is then the server's until the child ends
        try:
            conn.settimeout(1.0)
            pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            if uid != os.geteuid():
                raise ValueError("another user")
            message, fds, flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
            fields = message.split(b"\0")
            cut = flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)  # never run a command with what is left of one
            if cut or len(fds) != 3 or len(fields) < 4 or fields[0] != MAGIC:
                raise ValueError("not a hypr CLI request")
            if module_stamps() != self.stamps:
                conn.send(b"stale")
                self.close()
            elif not os.path.isdir(fields[1]) or credentials(pid) != self.credentials or self.full():
                # a working directory or credentials this server has not, or no room for one more: the client runs it
                conn.send(b"busy")
            elif gone(conn):
                pass  # it gave up waiting (a server stalled for REPLY_TIMEOUT) and runs the command itself
            else:
                self.fork(conn, fields, fds)
                handed = True
        except (OSError, ValueError):
            pass
        finally:
            for fd in fds:
                os.close(fd)
            if not handed:
                conn.close()

    def full(self) -> bool:
        return len(self.children) >= self.capacity

    def fork(self, conn: socket.socket, fields: list[bytes], fds: list[int]) -> None:
        pid = os.fork()
        if pid == 0:
            self.run_child(conn, fields, fds)
        try:
            pidfd = os.pidfd_open(pid)  # a child that already ended is a zombie until reaped: its pidfd works
        except OSError:  # the client runs it when told nothing: never both (this one is killed before it got far)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        conn.settimeout(None)
        self.children[pidfd] = (pid, conn)
        self.selector.register(pidfd, selectors.EVENT_READ, self.reap)
        self.selector.register(conn, selectors.EVENT_READ, self.client_gone)
        with contextlib.suppress(OSError):
            conn.send(b"pid %d" % pid)

    def reap(self, pidfd: int) -> None:
        pid, conn = self.children.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        with contextlib.suppress(KeyError):
            self.selector.unregister(conn)
        _, status = os.waitpid(pid, 0)
        with contextlib.suppress(OSError):  # the client is gone
            conn.send(b"exit %d" % status)
        conn.close()

    def client_gone(self, conn: socket.socket) -> None:
        """A client that went away (killed) takes its command with it, as it would have if the command ran in it."""
        self.selector.unregister(conn)  # the child's end comes through its pidfd
        for pid, known in self.children.values():
            if known is conn:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def run_child(self, conn: socket.socket, fields: list[bytes], fds: list[int]) -> None:
        """In the forked child: take on the client's process state, run the command, end. Never returns."""
        code = 1
        try:
            self.leave_server(conn)
            become_client(fields, fds)
            from hypr.cli.main import run

            code = run()
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BrokenPipeError:
            code = 120  # what the interpreter's exit gives when it cannot flush stdout
        except BaseException:  # the child must end here, never return into the server's loop
            traceback.print_exc()
        finally:
            os._exit(code)

    def leave_server(self, conn: socket.socket) -> None:
        """Drop what is the server's: its signal handlers, socket, lock (a long command must not keep a new server
        from starting) and the other commands' connections. A command dies with the server (killed, it cannot
        report the exit any more: its client says so and exits 1), also one stopped by Ctrl-Z."""
        _libc.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != self.pid:  # the server died before that took effect
            os._exit(1)
        # The server starts with every signal at its default (hypr.cli.entry.start_server), Python's SIGINT handler,
        # and SIGTERM its own: that one goes back to the default.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for fd in (self.lock, self.wakeup, self.wakeup_w):
            if fd >= 0:
                os.close(fd)
        if self.listener is not None:
            self.listener.close()
        for pidfd, (_pid, other) in self.children.items():
            os.close(pidfd)
            other.close()
        self.selector.close()
        conn.close()


# What a process may do beyond its uid, from /proc/PID/status: its groups, capabilities, no_new_privs, seccomp.
CREDENTIALS = (b"Uid:", b"Gid:", b"Groups:", b"CapInh:", b"CapPrm:", b"CapEff:", b"CapBnd:", b"CapAmb:",
               b"NoNewPrivs:", b"Seccomp:")  # fmt: skip
NAMESPACES = ("mnt", "user", "pid", "uts", "ipc", "cgroup")  # the network namespace is in the socket's key


def credentials(pid: int | str) -> tuple[object, ...] | None:
    """What decides what process `pid` may do beyond its uid, and which file a path names: its ids, groups,
    capabilities and confinement (no_new_privs, seccomp, the LSM label) and its namespaces. None if unreadable."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            lines = [line for line in status if line.startswith(CREDENTIALS)]
        namespaces = [os.stat(f"/proc/{pid}/ns/{ns}").st_ino for ns in NAMESPACES]
    except OSError:
        return None
    try:
        with open(f"/proc/{pid}/attr/current", "rb") as attr:
            label = attr.read()
    except OSError:  # no LSM
        label = b""
    return (*lines, *namespaces, label)


def gone(conn: socket.socket) -> bool:
    """True if the client closed its end: its request read, nothing more will come but the end (a peek of 0 bytes)."""
    timeout = conn.gettimeout()
    conn.setblocking(False)  # MSG_DONTWAIT alone: Python would first wait out the socket's timeout for data
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    finally:
        conn.settimeout(timeout)


def become_client(fields: list[bytes], fds: list[int]) -> None:
    """Take on the client's stdio, working directory, umask, environment and argv (the request's fields)."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds) - {0, 1, 2}:  # passed copies: the command has the client's fds 0-2 and nothing more
        os.close(fd)
    cwd, umask, count = fields[1], int(fields[2], 8), int(fields[3])
    os.chdir(cwd)
    os.umask(umask)
    os.environb.clear()
    for entry in fields[4 + count :]:
        key, sep, value = entry.partition(b"=")
        if sep:
            os.environb[key] = value
    sys.argv = [os.fsdecode(arg) for arg in fields[4 : 4 + count]]
    time.tzset()  # local time in the client's TZ (the C library read the server's once)
    reopen_stdio()


def reopen_stdio() -> None:
    """sys.stdin/stdout/stderr on fds 0-2 (now the client's), built as the interpreter builds them at start:
    line-buffered on a terminal (stderr always), with the encodings this interpreter chose."""
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        like = getattr(sys, f"__{name}__")
        raw = open(fd, mode + "b", closefd=False)  # noqa: SIM115 - it lives as long as the process
        line_buffering = name == "stderr" or os.isatty(fd)
        stream = io.TextIOWrapper(raw, encoding=like.encoding, errors=like.errors, line_buffering=line_buffering)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def module_stamps(roots: tuple[str, ...] = ()) -> dict[str, int]:
    """Modification times of the loaded modules under `roots` (default: where hypr and click are installed)."""
    if not roots:
        import click

        roots = tuple(
            {os.path.dirname(os.path.dirname(module.__file__ or "")) for module in (sys.modules["hypr"], click)}
        )
    stamps = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.startswith(roots):
            try:
                stamps[path] = os.stat(path).st_mtime_ns
            except OSError:
                stamps[path] = -1
    return stamps


if __name__ == "__main__":
    serve(sys.argv[1], float(sys.argv[2]))
