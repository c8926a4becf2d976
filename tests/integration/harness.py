"""Throw-away hosts for integration tests: network namespaces, each optionally running its own hyprd.

Everything made here is removed in `finally` blocks, also when a test fails. Names carry the test process's pid
so that several test runs (and several daemons) can share one machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hypr.client import Client
from hypr.runtime import vm_kernel
from hypr.runtime.oci import CGROUP_PARENT

VENV_BIN = Path(sys.executable).parent
HYPRD = str(VENV_BIN / "hyprd")
HYPR = str(VENV_BIN / "hypr")
_counter = itertools.count()
CGROUP_ROOT = Path("/sys/fs/cgroup")


def sh(
    *argv: str, rc: int | None = 0, timeout: float = 20, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command; check its exit code unless rc is None."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    if rc is not None and proc.returncode != rc:
        raise AssertionError(
            f"{' '.join(argv)} exited {proc.returncode}, wanted {rc}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


def run_in(ns: str, *argv: str, rc: int | None = 0, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run a command inside a namespace (network only; the file system is shared)."""
    return sh("nsenter", f"--net=/run/netns/{ns}", *argv, rc=rc, timeout=timeout)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


@contextmanager
def netns(prefix: str = "hyprt") -> Iterator[str]:
    name = unique_name(prefix)
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        sh("ip", "netns", "del", name, rc=None)


@dataclass
class Hyprd:
    """One daemon, running inside `ns` with its own data and runtime directories."""

    ns: str
    root: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    private_mounts: bool = False  # started as `ip netns exec NS hyprd`: a mount namespace of its own each start

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HYPR_DATA_DIR": str(self.root / "data"),
            "HYPR_RUNTIME_DIR": str(self.root / "run"),
            "HYPR_LOG_LEVEL": "DEBUG",
            "HYPR_CONFIGURE_RESOLVED": "0",
            **self.env_extra,
        }

    @property
    def socket(self) -> Path:
        return self.root / "run" / "hypr.sock"

    @property
    def log(self) -> Path:
        return self.root / "hyprd.log"

    def client(self) -> Client:
        return Client(f"unix://{self.socket}")

    def start(self, *, wait: bool = True) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*self._enter(), HYPRD], env=self.env, stdout=log, stderr=log,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        if wait:
            wait_until(self._ready, f"hyprd in {self.ns} to answer (log: {self.log})")

    def _enter(self) -> list[str]:
        if self.private_mounts:
            return ["ip", "netns", "exec", self.ns]
        return ["nsenter", f"--net=/run/netns/{self.ns}"]

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"hyprd exited with {self.proc.returncode}:\n{self.log.read_text()}")
        if not self.socket.exists():
            return False
        try:  # a call through the worker: it answers once the start-up reconcile and the re-adoption are done
            with self.client() as client:
                client.info()
                return True
        except Exception:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cli(self, *argv: str, rc: int | None = 0, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [HYPR, "-H", f"unix://{self.socket}", *argv], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if rc is not None and proc.returncode != rc:
            raise AssertionError(
                f"hypr {' '.join(argv)} exited {proc.returncode}, wanted {rc}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def docker(self, *argv: str, rc: int | None = 0, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this daemon's socket."""
        return sh("docker", "-H", f"unix://{self.socket}", *argv, rc=rc, timeout=timeout)


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 5) -> None:
    """Ask a helper process to end (`sig`), and kill it when it has not within `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def remove_all_workloads(daemon: Hyprd) -> None:
    """Workloads outlive the daemon by design, so a test's clean-up removes them through the API first."""
    if daemon.proc is None:
        daemon.start()
    with daemon.client() as client:
        for container in client.containers(all=True):
            client.remove(container["Id"], force=True)


@contextmanager
def running_daemon(ns: str, root: Path, env_extra: dict[str, str] | None = None) -> Iterator[Hyprd]:
    """A daemon in `ns` on the directories under `root`, ready; afterwards (also when the test failed) emptied of
    workloads and stopped, and nothing of it may be left: no process and no mount under `root`."""
    daemon = Hyprd(ns=ns, root=root, env_extra=dict(env_extra or {}))
    daemon.start()
    try:
        yield daemon
    finally:
        try:
            remove_all_workloads(daemon)
        finally:
            daemon.stop()
        leaks = [*leftover_processes(root), *leftover_mounts(root), *leftover_containers(root), *leftover_cgroups(root)]
        assert not leaks, f"left behind: {leaks}"


def links(ns: str, kind: str | None = None) -> list[str]:
    argv = ["ip", "-n", ns, "-o", "link", "show"] + (["type", kind] if kind else [])
    return [line.split(":")[1].strip().split("@")[0] for line in sh(*argv).stdout.splitlines()]


def leftover_mounts(root: Path) -> list[str]:
    return [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if str(root) in line.split()[4]
    ]


def leftover_processes(root: Path) -> list[int]:
    """Processes of a test: those with its directories in their environment (hyprd, supervisors, helpers) and
    those in the cgroup of one of its workloads (a container's init has the container's own environment)."""
    groups = tuple(f"{CGROUP_PARENT}/{workload}" for workload in workload_ids(root))
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if str(root) in (entry / "environ").read_bytes().decode(errors="replace") or (
                groups and _in_cgroups((entry / "cgroup").read_text(), groups)
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def _in_cgroups(cgroup_file: str, groups: tuple[str, ...]) -> bool:
    """`/proc/<pid>/cgroup` lines are `id:controllers:/path`; a workload's processes are in /hypr/<id>[/...]."""
    paths = (line.split(":", 2)[2] for line in cgroup_file.splitlines() if line.count(":") >= 2)
    return any(path == group or path.startswith(group + "/") for path in paths for group in groups)


def _state_dirs(root: Path) -> list[Path]:
    """Every workload state dir of the daemons under a test's directory: its own (`root/run`) and those of daemons
    rooted below it (a cluster's `root/<node>/run`, a bench's `root/<name>/hyprd/run`)."""
    patterns = ("run/workloads/*", "*/run/workloads/*", "*/*/run/workloads/*")
    return sorted(path for pattern in patterns for path in root.glob(pattern) if path.is_dir())


def workload_ids(root: Path) -> list[str]:
    """The workloads the test's daemons made (the crun container id is the workload id)."""
    return [path.name for path in _state_dirs(root)]


def leftover_containers(root: Path) -> list[tuple[Path, str]]:
    """(crun root, container id) for every crun container still under the test's directory."""
    found = []
    for state in _state_dirs(root):
        crun_root = state / "crun"
        if crun_root.is_dir():
            found += [(crun_root, entry.name) for entry in crun_root.iterdir() if entry.is_dir()]
    return found


def leftover_cgroups(root: Path) -> list[Path]:
    """The cgroups of the test's workloads still present, in every hierarchy (v1 controllers, the unified one)."""
    ids = workload_ids(root)
    hierarchies = [CGROUP_ROOT, *(path for path in CGROUP_ROOT.iterdir() if path.is_dir())]
    return [group for top in hierarchies for workload in ids if (group := top / "hypr" / workload).is_dir()]


def remove_containers(root: Path) -> None:
    """What a test's daemon could not remove (its supervisor killed, the daemon gone): every crun container under
    the test's runtime dir deleted by force (crun kills what runs in its cgroup), then the cgroups emptied and
    removed (a container whose crun state is gone). Must run before the directory is removed: it holds the ids."""
    for crun_root, container in leftover_containers(root):
        subprocess.run(["crun", "--root", str(crun_root), "delete", "--force", container],
                       capture_output=True, timeout=30, check=False)  # fmt: skip
    for group in sorted(leftover_cgroups(root), key=lambda path: -len(path.parts)):
        for _ in range(50):
            for pid in _cgroup_pids(group):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(FileNotFoundError):
                for child in sorted(group.glob("**/"), key=lambda path: -len(path.parts)):
                    with contextlib.suppress(OSError):
                        child.rmdir()
            if not group.exists():
                break
            time.sleep(0.02)  # a killed process leaves its cgroup when it has been reaped


def reap(root: Path) -> None:
    """Whatever a test left behind under its directory: containers deleted with crun and their cgroups removed
    (first: an init outlives its supervisor, and its crun state goes with the directory), processes killed,
    mounts detached."""
    remove_containers(root)
    for pid in leftover_processes(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for mount in sorted(leftover_mounts(root), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def cli_servers(directory: Path) -> list[int]:
    """The PIDs of the CLI fork servers (hypr.cli.forkserver) with sockets in `directory` (each lock file holds
    its server's PID; a stale one is skipped)."""
    pids = []
    for lock in directory.glob("*.lock"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(lock.read_text())
            if b"hypr.cli.forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
    return pids


def stop_cli_servers(directory: Path) -> None:
    """SIGTERM to each server (it stops taking commands and ends with its last running one), then SIGKILL to
    what is left after 5 s."""
    pids = cli_servers(directory)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while (pids := [pid for pid in pids if Path(f"/proc/{pid}").exists()]) and time.monotonic() < deadline:
            time.sleep(0.05)


def in_terminal(
    argv: list[str], env: dict[str, str], send: list[tuple[bytes, bytes | tuple[int, int]]], timeout: float = 60
) -> tuple[int, bytes]:
    """Runs `argv` on a pty of its own (a CLI wants a terminal for -t), 24x80; for each (wait_for, then), once
    `wait_for` has been seen: types `then`, or sets the window size to `then` = (rows, columns) (the kernel sends
    SIGWINCH). Its exit code and everything it wrote."""
    pid, fd = pty.fork()
    if pid == 0:
        _set_window(0, (24, 80))  # before the exec: no SIGWINCH at start
        os.execvpe(argv[0], argv, env)
    out, steps = b"", list(send)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if steps and steps[0][0] in out:
            then = steps.pop(0)[1]
            if isinstance(then, bytes):
                os.write(fd, then)
            else:
                _set_window(fd, then)
            continue
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    else:
        os.kill(pid, signal.SIGKILL)  # still going at the deadline: the test fails on what it wrote, not hangs
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def _set_window(fd: int, size: tuple[int, int]) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))


@contextmanager
def private_cli_servers() -> Iterator[Path]:
    """`hypr` commands run from this process (with os.environ's XDG_RUNTIME_DIR) get a CLI fork server socket
    directory of their own, in a new temporary directory; the servers started there are stopped at the end."""
    runtime = Path(tempfile.mkdtemp(prefix="hyprt-xdg-"))
    before = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    try:
        yield runtime / "hypr"
    finally:
        stop_cli_servers(runtime / "hypr")
        shutil.rmtree(runtime, ignore_errors=True)
        if before is None:
            del os.environ["XDG_RUNTIME_DIR"]
        else:
            os.environ["XDG_RUNTIME_DIR"] = before


def _cgroup_pids(group: Path) -> list[int]:
    pids: list[int] = []
    for procs in group.glob("**/cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids += [int(pid) for pid in procs.read_text().split()]
    return pids


@contextmanager
def host_server(ns: str, port: int) -> Iterator[None]:
    """An HTTP server in a namespace (busybox httpd in the foreground), stopped afterwards."""
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", "busybox", "httpd", "-f", "-p", str(port)])
    try:
        wait_until(lambda: f":{port} " in run_in(ns, "ss", "-ltnH").stdout, f"httpd on :{port}")
        yield
    finally:
        proc.kill()
        proc.wait()


def vm_marks() -> list[pytest.MarkDecorator]:
    """What a test that boots microVMs needs: root, QEMU and a guest kernel; skipped cleanly without them."""
    return [
        pytest.mark.integration,
        pytest.mark.vm,
        pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
        pytest.mark.skipif(shutil.which(vm_kernel.QEMU) is None, reason="needs qemu-system-x86"),
        pytest.mark.skipif(
            all(vm_kernel.load_kernel(d) is None for d in vm_kernel.kernel_dirs(None)),
            reason="needs a guest kernel (scripts/fetch-kernel.sh)",
        ),
    ]
