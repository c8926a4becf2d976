"""The workload supervisor, run as `python3 -I -S shim.py run <launch.json>` (stdlib only, so it starts fast; the
daemon imports it with `-c` instead, so that its cached bytecode is used, and typing is not imported at all).

Process tree:  daemon --Popen--> launcher (exits at once) --fork--> supervisor (own session, child subreaper)
                 supervisor --spawn--> `crun run --detach` --> the container's init (re-parented to the supervisor)
The supervisor is not the daemon's child, so the workload outlives hyprd. In a private mount namespace it mounts the
workload's root (an overlay of the image, or the host's root read-only), then runs crun on the bundle the daemon
wrote; crun confines the command (docs/sandbox.md). The command's stdout and stderr are the state dir's `log`.
It reports one JSON line on stdout ({"pid", "start_time", "main_pid"} or {"error", "errno"}), also written to
handle.json, forwards SIGTERM/SIGINT/SIGHUP to the container's init, reaps it (its wait status is the exit code:
128+n for a signal), deletes the container (cgroup, crun state) and writes `exit_code`.

`python3 -I -S shim.py exec <json>` is the other entry point: `crun exec` in a running workload with the workload's
own user, capabilities and environment (from its bundle) plus the exec's; its exit code is the command's.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import socket
import sys

TYPE_CHECKING = False  # typing costs the supervisor's start-up milliseconds
if TYPE_CHECKING:
    from typing import Any

try:
    from hypr.runtime import _libc, relay
except ImportError:  # run as a script with -I: the package is not importable, the sibling files are
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _libc  # type: ignore[no-redef,import-not-found]
    import relay  # type: ignore[no-redef,import-not-found]

SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXIT_NOT_FOUND = 127
EXIT_CANNOT_RUN = 126
CRUN_FAILED = 255  # crun's own exit code when it could not run the command
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# crun 1.8 refuses a hybrid cgroup hierarchy in which cgroup v2 holds any controller (this kernel puts hugetlb
# there); the supervisor shows crun, in its own mount namespace only, an empty list, and crun uses the v1 ones.
CGROUP_ROOT = "/sys/fs/cgroup"
_UNIFIED_CONTROLLERS = f"{CGROUP_ROOT}/unified/cgroup.controllers"


class StartFailed(Exception):
    def __init__(self, message: str, code: int, err: int) -> None:
        super().__init__(message)
        self.message, self.code, self.errno = message, code, err


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _crun_binary() -> str:
    for directory in SEARCH_PATH.split(":"):
        candidate = os.path.join(directory, "crun")
        if os.access(candidate, os.X_OK):
            return candidate
    raise StartFailed("crun is not installed (apt-get install crun)", EXIT_CANNOT_RUN, errno.ENOENT)


def _unescape(field: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as octal."""
    return field.encode().decode("unicode_escape").encode("latin-1").decode(errors="surrogateescape")


def _drop_netns_pins(keep: str, pins: str) -> None:
    """Unmount, in our private mount namespace, every namespace file we inherited but the workload's own.

    Otherwise this supervisor would keep every other workload's network namespace alive after its delete().
    `pins` (or ""): the mount holding every workload's pin (netns.mount_pins), detached first in one go; what is
    left (pins made elsewhere, e.g. `ip netns add`'s) goes one by one.
    """
    if pins:
        _detach_pins(pins, keep)
    keep = os.path.realpath(keep)  # mountinfo shows resolved paths
    for target, _, fstype, _, _ in mounts():
        if fstype == "nsfs" and target != keep:
            try:
                _libc.umount2(target, _libc.MNT_DETACH)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOENT):
                    raise


def _detach_pins(pins: str, keep: str) -> None:
    """Detach the pins' mount (a bind of the directory of state dirs onto itself) and every pin in it with one
    umount: one per pin costs an RCU grace period each, ~0.1 s per start with 1000 workloads (bench/sandbox_pins.py).
    The directory beneath shows the same files; the namespace we join (`keep`, under it) is bound at its path again
    from a descriptor held across. EINVAL: the mount went meanwhile (its last pin was removed), nothing to do."""
    inside = keep.startswith(pins.rstrip("/") + "/")
    held = os.open(keep, os.O_RDONLY | os.O_CLOEXEC) if inside else -1
    try:
        try:
            _libc.umount2(pins, _libc.MNT_DETACH)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise
            return
        if inside:
            _libc.mount(f"/proc/self/fd/{held}", keep, None, _libc.MS_BIND)
    finally:
        if inside:
            os.close(held)


def mounts(pid: str = "self") -> list[tuple[str, str, str, str, str]]:
    """(mount point, mount options, fstype, source, super options) of each line of a mountinfo."""
    found = []
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            left, _, right = line.rstrip("\n").partition(" - ")
            fields, (fstype, source, superopts) = left.split(" "), [*right.split(" "), "", "", ""][:3]
            found.append((_unescape(fields[4]), fields[5], fstype, source, superopts))
    return found


def _mount_cgroups_as_pid1() -> None:
    """The cgroup file systems PID 1 has under /sys/fs/cgroup, mounted again here (a bind from another mount
    namespace is not allowed; a second mount of the same hierarchy is the same hierarchy)."""
    wanted = sorted(
        (m for m in mounts("1") if m[0] == CGROUP_ROOT or m[0].startswith(CGROUP_ROOT + "/")),
        key=lambda m: m[0].count("/"),
    )
    for point, options, fstype, source, superopts in wanted:
        flags = _libc.MS_NOSUID | _libc.MS_NODEV | _libc.MS_NOEXEC
        flags |= _libc.MS_RDONLY if "ro" in options.split(",") else 0
        data = ",".join(o for o in superopts.split(",") if o not in ("rw", "ro"))
        os.makedirs(point, exist_ok=True)
        _libc.mount(source, point, fstype, flags, data or None)
        combined = os.path.basename(point)
        if fstype == "cgroup" and "," in combined:  # v1: systemd's links to combined ones (cpu -> cpu,cpuacct)
            for name in combined.split(","):
                with contextlib.suppress(FileExistsError):
                    os.symlink(combined, f"{CGROUP_ROOT}/{name}")


def see_host_cgroups() -> None:
    """crun needs the cgroup hierarchies under /sys/fs/cgroup. A daemon started by `ip netns exec` (a mount
    namespace of its own with a fresh sysfs, / made rslave) sees none, nor do the supervisors it starts: mount PID
    1's, in this mount namespace only. PID 1 having them where we do not proves the namespaces differ (its ns link
    itself may not be readable). The daemon calls this too: it runs `crun exec`/`pause` and reads cgroup counters."""
    if CGROUP_ROOT in {m[0] for m in mounts()} or CGROUP_ROOT not in {m[0] for m in mounts("1")}:
        return
    _libc.mount(None, "/sys", None, _libc.MS_REC | _libc.MS_PRIVATE)  # and nothing of ours propagates anywhere
    _mount_cgroups_as_pid1()


def _cgroup_view() -> None:
    """The host's cgroup hierarchies as crun 1.8 takes them (see _UNIFIED_CONTROLLERS), in our own namespace."""
    see_host_cgroups()
    try:
        with open(_UNIFIED_CONTROLLERS) as f:
            controllers = f.read().strip()
    except OSError:
        return  # cgroup v2 only, or v1 only: crun takes it as it is
    if controllers:
        _libc.mount("/dev/null", _UNIFIED_CONTROLLERS, None, _libc.MS_BIND)


def _mount_root(cfg: dict[str, Any]) -> None:
    """The bundle's root: the image read-only under the workload's own upper dir, or the host's root read-only."""
    state, root = cfg["state_dir"], cfg["rootfs"]
    os.makedirs(root, exist_ok=True)
    if cfg["lower"]:
        for d in ("upper", "work"):
            os.makedirs(f"{state}/{d}", exist_ok=True)
        options = f"lowerdir={cfg['lower']},upperdir={state}/upper,workdir={state}/work"
        _libc.mount("overlay", root, "overlay", 0, options)
    else:
        _libc.mount("/", root, None, _libc.MS_BIND | _libc.MS_REC)
        _libc.mount_setattr_rdonly(root)


def _prepare(cfg: dict[str, Any]) -> None:
    _libc.unshare(_libc.CLONE_NEWNS)
    _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)  # nothing we mount reaches the host
    _drop_netns_pins(cfg["netns"], cfg.get("pins") or "")
    _cgroup_view()
    _mount_root(cfg)


def _spawn(argv: list[str], stdout: int, stderr: int | None = None, stdin: int | None = None) -> int:
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        err = stdout if stderr is None else stderr
        actions = [(os.POSIX_SPAWN_DUP2, null if stdin is None else stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1),
                   (os.POSIX_SPAWN_DUP2, err, 2)]  # fmt: skip
        return os.posix_spawn(argv[0], argv, {"PATH": SEARCH_PATH}, file_actions=actions)
    finally:
        os.close(null)


_reaped: dict[int, int] = {}  # wait statuses of children reaped while waiting for another one


def _wait_for(pid: int) -> int:
    """The exit status of our child `pid`, reaping every other child that ends meanwhile (as a subreaper we are
    the parent of the container's orphans: a pid namespace's init cannot finish exiting while one is a zombie).
    Their statuses are kept: a short-lived init can end before `crun run --detach` does, be re-parented to us as a
    zombie and be reaped while we wait for crun, and its exit code must not be lost."""
    while pid not in _reaped:
        found, status = os.waitpid(-1, 0)
        if len(_reaped) >= 64:  # bounded: any orphan re-parented to us lands here too
            del _reaped[next(iter(_reaped))]
        _reaped[found] = status
    return _reaped.pop(pid)


def crun_error(path: str) -> str:
    """The last error crun logged (JSON lines: {"msg", "level"})."""
    message = ""
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("level") == "error":
                    message = str(entry.get("msg", ""))
    return message


def classify(message: str, argv0: str) -> StartFailed:
    """Docker's codes for a command that never ran: 127 not found, 126 cannot be run."""
    if "executable file" in message and ("not found" in message or "No such file or directory" in message):
        return StartFailed(f'exec: "{argv0}": executable file not found in $PATH', EXIT_NOT_FOUND, errno.ENOENT)
    if "Permission denied" in message and ("executable" in message or "exec" in message):
        return StartFailed(f'exec: "{argv0}": permission denied', EXIT_CANNOT_RUN, errno.EACCES)
    if "open executable" in message and "Operation not permitted" in message:  # crun's words for a directory
        return StartFailed(f'exec: "{argv0}": is a directory', EXIT_CANNOT_RUN, errno.EISDIR)
    return StartFailed(f"start {argv0}: {message or 'crun failed'}", EXIT_CANNOT_RUN, 0)


class Stdio:
    """The workload's ends of its standard streams, and ours (see relay.py). Without a TTY: a pipe each for stdout
    and stderr, and for stdin with OpenStdin (else /dev/null). With one: crun makes a pty in the container and
    hands us its master over a console socket."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.tty = bool(cfg.get("tty"))
        self.theirs: list[int] = []
        self.outputs: list[tuple[int, int]] = []  # (our fd, stream)
        self.stdin: int | None = None  # our end of the workload's stdin
        self.console: socket.socket | None = None
        self.console_dir = ""
        if self.tty:
            self.console_dir = f"/tmp/hypr-console-{os.urandom(8).hex()}"  # short: a socket path has 108 bytes
            os.mkdir(self.console_dir, 0o700)  # (not tempfile: its imports cost every start milliseconds)
            self.console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self.console.bind(self.console_path)
            self.console.listen(1)
            return
        for stream in (relay.STDOUT, relay.STDERR):
            ours, theirs = os.pipe2(os.O_CLOEXEC)
            self.outputs.append((ours, stream))
            self.theirs.append(theirs)
        if cfg.get("open_stdin"):
            theirs, ours = os.pipe2(os.O_CLOEXEC)
            self.stdin = ours
            self.theirs.append(theirs)

    @property
    def console_path(self) -> str:
        return os.path.join(self.console_dir, "console.sock")

    def crun_args(self) -> list[str]:
        return ["--console-socket", self.console_path] if self.tty else []

    def spawn_fds(self) -> tuple[int, int | None, int | None]:
        """crun's stdout, stderr, stdin: with --detach and no terminal it passes them on to the container."""
        if self.tty:
            null = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
            self.theirs.append(null)
            return null, None, None
        return self.theirs[0], self.theirs[1], self.theirs[2] if len(self.theirs) > 2 else None

    def started(self) -> None:
        """crun has exited: let go of the workload's ends; take the pty master crun sent."""
        for fd in self.theirs:
            os.close(fd)
        self.theirs = []
        if self.console is not None:
            self.console.setblocking(False)
            conn, _ = self.console.accept()
            with conn:
                _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
            master = fds[0]
            os.set_inheritable(master, False)
            self.outputs.append((master, relay.STDOUT))
            self.stdin = master
            self.close_console()

    def close_console(self) -> None:
        if self.console is not None:
            self.console.close()
            self.console = None
            with contextlib.suppress(OSError):
                os.unlink(self.console_path)
                os.rmdir(self.console_dir)


def _start_container(cfg: dict[str, Any], stdio: Stdio) -> int:
    """`crun run --detach`; the container's init, re-parented to us once crun has exited."""
    crun, state, container = _crun_binary(), cfg["state_dir"], cfg["id"]
    base = [crun, "--root", cfg["crun_root"]]
    if os.path.isdir(os.path.join(cfg["crun_root"], container)):  # left by a supervisor that was killed
        null = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
        try:
            _wait_for(_spawn([*base, "delete", "--force", container], null))
        finally:
            os.close(null)
    errors, pid_file = f"{state}/crun.log", f"{state}/init.pid"
    for path in (errors, pid_file):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    argv = [*base, f"--log=file:{errors}", "--log-format=json", "run", "--detach", "--no-new-keyring",
            *stdio.crun_args(), "--bundle", cfg["bundle"], "--pid-file", pid_file, container]  # fmt: skip
    status = _wait_for(_spawn(argv, *stdio.spawn_fds()))
    if status != 0:  # crun's own complaint is ours to report (crun.log), not the workload's output
        stdio.close_console()
        raise classify(crun_error(errors), cfg["argv0"])
    stdio.started()
    with open(pid_file) as f:
        return int(f.read().strip())


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _supervise(cfg: dict[str, Any]) -> None:
    os.setsid()
    os.chdir("/")
    _libc.set_child_subreaper()
    state = cfg["state_dir"]
    log_fd = os.open(f"{state}/{relay.LOG}", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    _write_atomic(f"{state}/{relay.LOG_START}", f"{os.fstat(log_fd).st_size}\n")
    try:
        _prepare(cfg)
        streams = relay.Relay(state, log_fd, bool(cfg.get("tty")), bool(cfg.get("stdin_once")))
        stdio = Stdio(cfg)
        init = _start_container(cfg, stdio)
    except (OSError, StartFailed) as exc:
        failure = exc if isinstance(exc, StartFailed) else StartFailed(f"start: {exc}", EXIT_CANNOT_RUN, exc.errno or 0)
        _write_atomic(f"{state}/exit_code", f"{failure.code}\n")
        sys.stdout.write(json.dumps({"error": failure.message, "errno": failure.errno}) + "\n")
        return
    for fd, stream in stdio.outputs:
        streams.add_output(fd, stream)
    if stdio.stdin is not None:
        streams.set_stdin(stdio.stdin)
    me = {"pid": os.getpid(), "start_time": _libc.start_time(os.getpid()), "main_pid": init}
    _write_atomic(f"{state}/handle.json", json.dumps(me))  # adoptable even if the daemon dies before it records it

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, signum)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    wake = relay.wake_on_signals((signal.SIGCHLD,))
    sys.stdout.write(json.dumps(me) + "\n")
    sys.stdout.flush()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)  # let go of the daemon's pipe: it reads until EOF
    try:
        streams.run(wake, lambda: _reap_ready(init))
    except Exception:  # a bug in the relay must not orphan the workload: say why, then wait for it to end
        import traceback

        with open(f"{state}/supervisor.log", "a") as f:
            traceback.print_exc(file=f)
        while not _reap_ready(init):
            select.select([wake], [], [])
            with contextlib.suppress(BlockingIOError):
                os.read(wake, 512)
    code: int | None = None
    if init in _reaped:
        code = _exit_code(_reaped.pop(init))
    else:  # not re-parented to us after all: wait for it to go, its code is lost
        with contextlib.suppress(ProcessLookupError):
            fd = os.pidfd_open(init)
            select.select([fd], [], [])
    crun = _crun_binary()
    _wait_for(_spawn([crun, "--root", cfg["crun_root"], "delete", "--force", cfg["id"]], null))
    _write_atomic(f"{state}/exit_code", "" if code is None else f"{code}\n")


def _reap_ready(init: int) -> bool:
    """Reap every child that has ended (without blocking); True once the init is among them (or is not ours)."""
    while True:
        try:
            found, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if found == 0:
            return init in _reaped
        if len(_reaped) >= 64:
            del _reaped[next(iter(_reaped))]
        _reaped[found] = status


def run(config_path: str) -> None:
    with open(config_path) as f:
        cfg = json.load(f)
    if os.fork() != 0:
        os._exit(0)  # the launcher: the daemon reaps it now, the supervisor is re-parented
    try:
        _supervise(cfg)
    finally:
        sys.stdout.flush()
        os._exit(0)


def exec_process(cfg: dict[str, Any]) -> dict[str, Any]:
    """The workload's own process object with the exec's command, working directory and environment."""
    with open(os.path.join(cfg["bundle"], "config.json")) as f:
        process: dict[str, Any] = json.load(f)["process"]
    process["args"] = cfg["argv"]
    if cfg.get("workdir"):
        process["cwd"] = cfg["workdir"]
    env = dict(item.split("=", 1) for item in process.get("env", []) if "=" in item)
    env.update(cfg.get("env") or {})
    if cfg.get("console_socket") and "TERM" not in env:
        env["TERM"] = "xterm"  # as Docker sets it for `exec -t`
    process["env"] = [f"{k}={v}" for k, v in env.items()]
    if cfg.get("user"):
        process["user"] = cfg["user"]
    if cfg.get("capabilities") is not None:
        caps = cfg["capabilities"]
        process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    process["terminal"] = bool(cfg.get("console_socket"))
    return process


def exec_command(crun: str, cfg: dict[str, Any], process: int, errors: int) -> list[str]:
    """`crun exec` with the process object and crun's log in the inherited descriptors `process` and `errors`."""
    console = ["--tty", "--console-socket", cfg["console_socket"]] if cfg.get("console_socket") else []
    return [crun, "--root", cfg["crun_root"], f"--log=file:/proc/self/fd/{errors}", "--log-format=json", "exec",
            *console, "--process", f"/proc/self/fd/{process}", cfg["id"]]  # fmt: skip


def exec_in(config: str) -> None:
    cfg = json.loads(config)
    argv0 = cfg["argv"][0]
    try:
        crun = _crun_binary()
        spec = os.memfd_create("process", 0)  # inherited by crun, which opens them by /proc/self/fd
        os.write(spec, json.dumps(exec_process(cfg)).encode())
        errors = os.memfd_create("crun-log", 0)
    except (OSError, StartFailed, ValueError, KeyError) as exc:
        sys.stderr.write(f"hypr exec: {exc}\n")
        sys.exit(EXIT_CANNOT_RUN)
    argv = exec_command(crun, cfg, spec, errors)
    child = os.posix_spawn(crun, argv, os.environ)  # stdio: ours, so the command's are the caller's

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    _, status = os.waitpid(child, 0)
    code = _exit_code(status)
    if code == CRUN_FAILED:
        message = crun_error(f"/proc/self/fd/{errors}")
        if message:  # crun's failure, not the command's own 255
            failure = classify(message, argv0)
            if "chdir" in message:
                failure = StartFailed(f"{message}", EXIT_CANNOT_RUN, errno.ENOENT)
            sys.stderr.write(f"hypr exec: {failure.message}\n")
            code = failure.code
    sys.exit(code)


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "run":
        run(argv[2])
    elif len(argv) == 3 and argv[1] == "exec":
        exec_in(argv[2])
    else:
        sys.stderr.write("usage: shim.py run LAUNCH_JSON | exec JSON\n")
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
