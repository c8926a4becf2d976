"""The refresher's exit watch names the workloads whose process ended, and only those (one poll over pidfds)."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Iterator

import pytest

from hypr.models import Snapshot, Workload
from hypr.reconcile.ports import HIGH_FD
from hypr.runtime import _libc
from hypr.runtime.base import Handle
from hypr.services.exits import ExitWatch


def workload_of(name: str, proc: subprocess.Popen[bytes] | None, pid_start: int | None = None) -> Workload:
    if proc is None:
        return Workload(id=name, name=name, image="busybox", state="exited")
    fields = _libc.proc_stat(proc.pid)
    assert fields is not None
    start = int(fields[19]) if pid_start is None else pid_start
    return Workload(id=name, name=name, image="busybox", state="running", pid=proc.pid, pid_start=start)


def handle_of(workload: Workload) -> Handle | None:
    if workload.pid is None or workload.pid_start is None:
        return None
    return Handle(pid=workload.pid, start_time=workload.pid_start, main_pid=workload.pid)


@pytest.fixture(autouse=True)
def high_descriptors() -> Iterator[None]:
    """Descriptors up to 1024 and above, as hyprd raises its limit (raise_open_files_limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= HIGH_FD:
        pytest.skip(f"the open-files limit ({hard}) leaves no descriptor at or above {HIGH_FD}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_only_ended_processes_are_candidates() -> None:
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    doomed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    watch = ExitWatch()
    try:
        snapshot = Snapshot(workloads=(workload_of("alive", alive), workload_of("doomed", doomed)))
        assert watch.candidates(snapshot, handle_of) == set()
        assert all(fd >= HIGH_FD for _handle, fd in watch.watched.values())  # never where select() users look
        doomed.kill()
        doomed.wait()
        assert watch.candidates(snapshot, handle_of) == {"doomed"}
        # recorded as exited: no longer watched
        snapshot = Snapshot(workloads=(snapshot.workloads[0], workload_of("doomed", None)))
        assert watch.candidates(snapshot, handle_of) == set() and set(watch.watched) == {"alive"}
        # a handle whose start time does not match (a recycled pid) is never trusted to a pidfd
        stale = workload_of("stale", alive, pid_start=handle_of(snapshot.workloads[0]).start_time + 1)  # type: ignore[union-attr]
        snapshot = Snapshot(workloads=(*snapshot.workloads, stale))
        assert watch.candidates(snapshot, handle_of) == {"stale"}
        assert watch.candidates(snapshot, handle_of) == {"stale"}  # asked about at every look
    finally:
        alive.kill()
        alive.wait()
        watch.close()
