"""The `hypr` console script: a command run by the CLI fork server, or here, started and ended the quick way.

A `hypr` command is a fresh interpreter whose start-up and exit are most of its cost (docs/performance.md).

**On the fork server** (hypr.cli.forkserver), when one runs for this user: this process imports nothing but C
modules (`_socket`, `_signal`), passes its argv, environment, working directory, umask and stdin/stdout/stderr
(SCM_RIGHTS) to the server, which forks a child with click and every command already imported, then forwards the
signals it gets (Ctrl-C, window size changes, hang-up; Ctrl-Z stops both) and ends as the child ended. The same
idea as Mercurial's chg and Emacs' server. When no server answers, the command runs here and a server is started
for the next ones. HYPR_CLI_SERVER=0 turns that off.

**Here:**
- the cyclic garbage collector is off while click and the command's module are imported: they make tens of
  thousands of long-lived objects and no garbage, and the collections that those allocations trigger cost ~3 ms.
  The group's callback (`hypr.cli.main.cli`), which runs once the command is found, freezes what was imported
  (later collections skip it) and turns the collector back on for the command itself;
- the process ends with `os._exit` once stdout and stderr are flushed: an interpreter's normal exit tears down
  every module and object one by one (~7 ms here), for memory the kernel frees at once. No command leaves
  anything for that exit to do: no atexit handlers, threads only as daemons, files closed by their `with`.

This module's `main` is the console script's target, not `hypr.cli.main`'s, so that importing the CLI elsewhere
(tests, the bench) keeps the collector and the normal exit.

Fork server protocol (AF_UNIX SOCK_SEQPACKET, one message each): the request is NUL-separated fields `hypr-cli-1`,
cwd, umask (octal), the argv count, argv..., then KEY=VALUE environment entries, with fds 0, 1 and 2 attached. The
server answers `pid N` once the child runs and `exit STATUS` (a wait status) when it ends; anything else instead
of `pid` (`stale`, `busy`, nothing) means "run it yourself".
"""

from __future__ import annotations

import _socket  # C modules: the socket and signal modules import enum and more (~7 ms each)
import gc
import os
import sys

TYPE_CHECKING = False  # not typing's (~5 ms of imports)
if TYPE_CHECKING:
    import signal as _signal
    from typing import NoReturn
else:
    import _signal

MAGIC = b"hypr-cli-1"
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGWINCH", "SIGUSR1", "SIGUSR2", "SIGCONT")
REPLY_TIMEOUT = 5.0  # seconds for a server to fork the command; a wedged one is not waited for
IDLE = "600"  # seconds a server waits for its next command before it exits (HYPR_CLI_SERVER_IDLE)
# The environment a server starts with: what decides which code it runs and how it decodes text. Each command gets
# its client's whole environment. Part of the server's key, with the interpreter, this installation, the network
# namespace and the root directory: a command never runs with another of these than its client's.
SERVER_ENV_PREFIXES = ("PYTHON", "LANG", "LC_", "VIRTUAL_ENV")


def main() -> NoReturn:
    gc.disable()
    path = socket_path() if os.environ.get("HYPR_CLI_SERVER", "1") != "0" and stdio_open() else None
    if path is not None:
        code = run_on_server(path)
        if code is not None:
            os._exit(code)
        start_server(path)
    from hypr.cli.main import run

    finish(run())


def finish(code: int) -> NoReturn:
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except OSError:  # e.g. `hypr ps | head -1`: the ordinary exit reports it as it always did
        sys.exit(code)
    os._exit(code)


def stdio_open() -> bool:
    """Whether stdin, stdout and stderr are open: a closed one cannot be passed to the server (and the client's
    socket would take its number), so the command runs here, as it would without the server."""
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        return False
    return True


# -- where the server is ----------------------------------------------------------------------------------------


def socket_path() -> str | None:
    """This client's server socket: `cli-KEY.sock` in the user's private directory (`$XDG_RUNTIME_DIR/hypr`,
    else `/run/hypr-cli` for root, `/tmp/hypr-cli-UID` for others; made 0700 if missing). None when that
    directory is not private to this user (owned by another, open to others)."""
    uid = os.geteuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    directory = os.path.join(runtime, "hypr") if runtime else "/run/hypr-cli" if uid == 0 else f"/tmp/hypr-cli-{uid}"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        found = os.lstat(directory)
        key = server_key()
    except OSError:
        return None
    if found.st_uid != uid or (found.st_mode & 0o170077) != 0o040000:
        return None
    return os.path.join(directory, f"cli-{key}.sock")


def server_key() -> str:
    """A short hash (zlib's CRC: a C module, no hashlib import) of what must match between a client and the
    server that runs its command."""
    import zlib

    root = os.stat("/")
    parts = [sys.executable, __file__, os.readlink("/proc/self/ns/net"), f"{root.st_dev}:{root.st_ino}"]
    parts += sorted(f"{key}={value}" for key, value in os.environ.items() if key.startswith(SERVER_ENV_PREFIXES))
    return f"{zlib.crc32(chr(0).join(parts).encode(errors='surrogateescape')):08x}"


# -- the client -------------------------------------------------------------------------------------------------


def run_on_server(path: str) -> int | None:
    """Run this process's command (sys.argv) on the server at `path`: its exit code, or None if no server ran it
    (none there, a wedged one, or it said to run it here)."""
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    try:
        conn.settimeout(REPLY_TIMEOUT)
        conn.connect(path)
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
        conn.sendmsg([request()], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        first = conn.recv(64)
    except (OSError, ValueError):  # no server (ENOENT, ECONNREFUSED), a wedged one (timeout), a cwd gone
        conn.close()
        return None
    if not first.startswith(b"pid "):
        conn.close()
        return None
    conn.settimeout(None)
    forward_signals(int(first[4:]))
    try:
        last = conn.recv(64)
    except OSError:  # ECONNRESET: a server killed
        last = b""
    finally:
        conn.close()
    if not last.startswith(b"exit "):
        os.write(2, b"hypr: the CLI server went away during the command (HYPR_CLI_SERVER=0 runs commands without it)\n")
        return 1
    return exit_code(int(last[5:]))


def request() -> bytes:
    umask = os.umask(0o022)
    os.umask(umask)
    argv = [os.fsencode(arg) for arg in sys.argv]
    fields = [MAGIC, os.getcwdb(), b"%o" % umask, b"%d" % len(argv), *argv]
    fields += [key + b"=" + value for key, value in os.environb.items()]
    return b"\0".join(fields)


def forward_signals(child: int) -> None:
    """The signals the terminal or a user sends to this process go to the child; Ctrl-Z stops both (the child
    with SIGSTOP: its process group, the server's, is orphaned, and the kernel drops a SIGTSTP sent to one)."""

    def forward(signum: int, _frame: object) -> None:
        try:  # noqa: SIM105 - contextlib costs ~3 ms of imports here
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    def suspend(_signum: int, _frame: object) -> None:
        try:  # noqa: SIM105
            os.kill(child, _signal.SIGSTOP)
        except ProcessLookupError:
            pass
        _signal.signal(_signal.SIGTSTP, _signal.SIG_DFL)
        os.kill(os.getpid(), _signal.SIGTSTP)  # stops here; the SIGCONT that resumes us is forwarded to the child
        _signal.signal(_signal.SIGTSTP, suspend)

    # A signal this process was started ignoring (`nohup`, a background job of a script) stays ignored, as a
    # command run here would ignore it.
    for signum, handler in [*((getattr(_signal, name), forward) for name in FORWARDED), (_signal.SIGTSTP, suspend)]:
        if _signal.getsignal(signum) != _signal.SIG_IGN:
            _signal.signal(signum, handler)


def exit_code(status: int) -> int:
    """End as the child ended: with its code, or killed by the same signal (as a shell reports it: 128 + N)."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        _signal.signal(signum, _signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return 128 + signum
    return os.waitstatus_to_exitcode(status)


def start_server(path: str) -> None:
    """Start a server for the next commands: a session of its own, stdio on /dev/null (a `$(hypr ps)` must not wait
    for it), an environment of only SERVER_ENV_PREFIXES and PATH, every signal at its default and none blocked
    (whatever this client was started with: the commands of the next clients would get it). Of two clients that
    start one at once, the second's finds the lock taken and exits."""
    env = {key: value for key, value in os.environ.items() if key.startswith(SERVER_ENV_PREFIXES)}
    env["PATH"] = os.environ.get("PATH", os.defpath)
    idle = os.environ.get("HYPR_CLI_SERVER_IDLE", IDLE)
    null = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    try:  # noqa: SIM105
        os.posix_spawn(sys.executable, [sys.executable, "-m", "hypr.cli.forkserver", path, idle], env,
                       file_actions=null, setsid=True, setsigdef=_signal.valid_signals(), setsigmask=())  # fmt: skip
    except OSError:
        pass  # the command runs here all the same; the next one tries again
