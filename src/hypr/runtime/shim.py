"""The workload supervisor, run as `python3 -I -S shim.py run <launch.json>` (stdlib only, so it starts fast).

Process tree:  daemon --Popen--> launcher (exits at once) --fork--> supervisor (own session) --fork--> command
The supervisor is not the daemon's child, so the workload outlives hyprd. It reports one JSON line on stdout
({"pid", "start_time", "main_pid"} or {"error", "errno"}), forwards SIGTERM/SIGINT/SIGHUP to the command's process
group, and when the command ends kills what is left of that group and writes its exit code to `exit_code`.

The command's side enters the namespaces just before exec: network (the pinned netns file), then fresh UTS and
mount namespaces, hostname, private /etc/hosts and /etc/resolv.conf, and for a rootfs image an overlay root
(lower: the image, upper: the workload's state dir) entered with pivot_root.

`python3 -I -S shim.py exec <json>` is the other entry point: join a running workload's namespaces and root,
then exec a command there (the argv `Runtime.exec_argv` returns).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import sys
from typing import Any

try:
    from hypr.runtime import _libc
except ImportError:  # run as a script with -I: the package is not importable, the sibling file is
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _libc  # type: ignore[no-redef,import-not-found]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXIT_NOT_FOUND = 127
EXIT_CANNOT_RUN = 126
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")


class _ExecFailed(OSError):
    """The namespaces were ready but exec itself failed (not found, not executable)."""


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _unescape(field: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as octal."""
    return field.encode().decode("unicode_escape").encode("latin-1").decode(errors="surrogateescape")


def _drop_netns_pins() -> None:
    """Unmount, in our private mount namespace, every namespace file we inherited.

    Otherwise this workload would keep every other workload's namespace alive after its delete().
    """
    with open("/proc/self/mountinfo") as f:
        lines = f.read().splitlines()
    for line in lines:
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "nsfs":
            try:
                _libc.umount2(_unescape(left.split(" ")[4]), _libc.MNT_DETACH)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOENT):
                    raise


def _bind_file(source: str, target: str) -> None:
    if not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
    _libc.mount(source, target, None, _libc.MS_BIND)


def _mount_dev(root: str) -> None:
    dev = f"{root}/dev"
    os.makedirs(dev, exist_ok=True)
    _libc.mount("tmpfs", dev, "tmpfs", _libc.MS_NOSUID | _libc.MS_NOEXEC, "mode=755")
    for node in _DEV_NODES:
        _bind_file(f"/dev/{node}", f"{dev}/{node}")
    os.makedirs(f"{dev}/shm")
    _libc.mount("tmpfs", f"{dev}/shm", "tmpfs", _libc.MS_NOSUID | _libc.MS_NODEV, "mode=1777")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        os.symlink(target, f"{dev}/{name}")
    os.symlink("/proc/self/fd/2", f"{dev}/stderr")


def _enter_rootfs(cfg: dict[str, Any]) -> None:
    state, root = cfg["state_dir"], cfg["state_dir"] + "/rootfs"
    for d in ("rootfs", "upper", "work"):
        os.makedirs(f"{state}/{d}", exist_ok=True)
    options = f"lowerdir={cfg['rootfs']},upperdir={state}/upper,workdir={state}/work"
    _libc.mount("overlay", root, "overlay", 0, options)
    for d in ("proc", "sys"):
        os.makedirs(f"{root}/{d}", exist_ok=True)
    plain = _libc.MS_NOSUID | _libc.MS_NODEV | _libc.MS_NOEXEC
    _libc.mount("proc", f"{root}/proc", "proc", plain)
    # A fresh sysfs shows this namespace's interfaces (a bind of the host's /sys would show the host's).
    _libc.mount("sysfs", f"{root}/sys", "sysfs", plain | _libc.MS_RDONLY)
    _mount_dev(root)
    for name in ("hosts", "resolv.conf", "hostname"):
        _bind_file(f"{state}/{name}", f"{root}/etc/{name}")
    os.makedirs(f"{root}/tmp", mode=0o1777, exist_ok=True)
    os.chdir(root)
    _libc.pivot_root(".", ".")  # the old root ends up stacked under the new one; detach it
    _libc.umount2(".", _libc.MNT_DETACH)
    os.chdir("/")


def _enter_host_fs(cfg: dict[str, Any]) -> None:
    state = cfg["state_dir"]
    _libc.mount(f"{state}/hosts", "/etc/hosts", None, _libc.MS_BIND)
    _libc.mount(f"{state}/resolv.conf", "/etc/resolv.conf", None, _libc.MS_BIND)
    _libc.mount("sysfs", "/sys", "sysfs", _libc.MS_NOSUID | _libc.MS_NODEV | _libc.MS_NOEXEC | _libc.MS_RDONLY)
    _drop_netns_pins()


def _command_env(cfg: dict[str, Any]) -> dict[str, str]:
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": cfg["hostname"], "HOME": cfg.get("home") or "/root"}
    env.update(cfg["env"])
    return env


def _enter_workdir(workdir: str) -> None:
    """Docker creates a missing working directory (as root, before dropping to the user)."""
    os.makedirs(workdir or "/", exist_ok=True)
    os.chdir(workdir or "/")


def _become_user(cfg: dict[str, Any]) -> None:
    """Groups first, then gid, then uid: once the uid is not 0 nothing else may change."""
    os.setgroups(cfg.get("groups") or [])
    os.setgid(cfg.get("gid", 0))
    os.setuid(cfg.get("uid", 0))


def _become_workload(cfg: dict[str, Any], log_fd: int) -> None:
    """In the command's process: namespaces, filesystem, stdio, then exec. Only returns by raising."""
    os.setpgid(0, 0)
    for sig in (*_FORWARDED, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)  # Python ignores SIGPIPE; exec keeps ignored signals ignored
    ns_fd = os.open(cfg["netns"], os.O_RDONLY)
    _libc.setns(ns_fd, _libc.CLONE_NEWNET)
    os.close(ns_fd)
    _libc.unshare(_libc.CLONE_NEWUTS | _libc.CLONE_NEWNS)
    socket.sethostname(cfg["hostname"])
    if cfg.get("domainname"):  # the UTS namespace is ours: this is the workload's domain name only
        with open("/proc/sys/kernel/domainname", "w") as f:
            f.write(cfg["domainname"])
    _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
    if cfg["rootfs"]:
        _enter_rootfs(cfg)
    else:
        _enter_host_fs(cfg)
    _enter_workdir(cfg["workdir"])
    _become_user(cfg)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    argv = cfg["command"]
    try:
        os.execvpe(argv[0], argv, _command_env(cfg))
    except OSError as exc:
        raise _ExecFailed(exc.errno, exc.strerror, exc.filename) from exc


def _failure_report(argv0: str, exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(exit code, report) for a command that never ran: 127 not found, 126 cannot run (Docker's codes)."""
    err = exc.errno if isinstance(exc, OSError) and exc.errno else 0
    if isinstance(exc, _ExecFailed) and err == errno.ENOENT:
        return EXIT_NOT_FOUND, {"error": f'exec: "{argv0}": executable file not found in $PATH', "errno": err}
    return EXIT_CANNOT_RUN, {"error": f"start {argv0}: {exc}", "errno": err}


def _run_command(cfg: dict[str, Any], log_fd: int, report_w: int) -> None:
    code = EXIT_NOT_FOUND
    try:
        _become_workload(cfg, log_fd)
    except BaseException as exc:
        code, report = _failure_report(cfg["command"][0], exc)
        os.write(report_w, json.dumps(report).encode())
    os._exit(code)


def _await_exec(report_r: int) -> dict[str, Any] | None:
    """The command's report pipe is close-on-exec: EOF with no data means exec succeeded."""
    data = b""
    while chunk := os.read(report_r, 4096):
        data += chunk
    os.close(report_r)
    return json.loads(data) if data else None


def _supervise(cfg: dict[str, Any]) -> None:
    os.setsid()
    state = cfg["state_dir"]
    log_fd = os.open(f"{state}/log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    main: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        for group in main:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signum)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(report_r)
        _run_command(cfg, log_fd, report_w)
    os.close(report_w)
    main.append(pid)
    failure = _await_exec(report_r)
    me = {"pid": os.getpid(), "start_time": _libc.start_time(os.getpid()), "main_pid": pid}
    sys.stdout.write(json.dumps(failure or me) + "\n")
    sys.stdout.flush()
    null = os.open("/dev/null", os.O_RDWR)
    for fd, target in ((0, null), (1, log_fd), (2, log_fd)):
        os.dup2(target, fd)  # let go of the daemon's pipe: it reads until EOF
    _, status = os.waitpid(pid, 0)
    # The workload ends with its main command, as in Docker: nothing of its group may linger.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _write_atomic(f"{state}/exit_code", f"{_exit_code(status)}\n")


def run(config_path: str) -> None:
    with open(config_path) as f:
        cfg = json.load(f)
    if os.fork() != 0:
        os._exit(0)  # the launcher: the daemon reaps it now, the supervisor is re-parented
    try:
        _supervise(cfg)
    finally:
        os._exit(0)


def _join(cfg: dict[str, Any]) -> None:
    pid = cfg["pid"]
    fds = {kind: os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY) for kind in ("net", "uts", "mnt")}
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
    with open(f"/proc/{pid}/environ", "rb") as f:
        inherited = dict(
            item.decode(errors="surrogateescape").split("=", 1) for item in f.read().split(b"\0") if b"=" in item
        )
    if _libc.start_time(pid) != cfg["start_time"]:
        raise ProcessLookupError(errno.ESRCH, "the workload is not running")
    flags = {"net": _libc.CLONE_NEWNET, "uts": _libc.CLONE_NEWUTS, "mnt": _libc.CLONE_NEWNS}
    for kind, fd in fds.items():
        _libc.setns(fd, flags[kind])
    os.fchdir(root)
    os.chroot(".")
    os.chdir(cfg["workdir"] or inherited.get("PWD") or "/")
    _become_user(cfg)
    inherited.update(cfg["env"])
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvpe(cfg["argv"][0], cfg["argv"], inherited)
    except OSError as exc:
        raise _ExecFailed(exc.errno, exc.strerror, exc.filename) from exc


def exec_in(config: str) -> None:
    cfg = json.loads(config)
    try:
        _join(cfg)
    except OSError as exc:
        code, report = _failure_report(cfg["argv"][0], exc)
        sys.stderr.write(f"hypr exec: {report['error']}\n")
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
