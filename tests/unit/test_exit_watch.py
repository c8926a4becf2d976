"""The refresher's exit watch names the workloads whose process ended, and only those (one poll over pidfds)."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Iterator

import pytest

from hypr.reconcile.ports import HIGH_FD
from hypr.runtime import _libc
from hypr.runtime.base import Handle
from hypr.services.exits import ExitWatch


def handle_of(proc: subprocess.Popen[bytes]) -> Handle:
    fields = _libc.proc_stat(proc.pid)
    assert fields is not None
    return Handle(pid=proc.pid, start_time=int(fields[19]), main_pid=proc.pid)


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
        running = {"alive": handle_of(alive), "doomed": handle_of(doomed)}
        assert watch.candidates(running) == set()
        assert all(fd >= HIGH_FD for _handle, fd in watch.watched.values())  # never where select() users look
        doomed.kill()
        doomed.wait()
        assert watch.candidates(running) == {"doomed"}
        # a handle whose start time does not match (a recycled pid) is never trusted to a pidfd
        stale = {"stale": Handle(pid=alive.pid, start_time=handle_of(alive).start_time + 1, main_pid=alive.pid)}
        assert watch.candidates(stale) == {"stale"}
        assert set(watch.watched) == set()  # workloads no longer running are forgotten (their pidfds closed)
    finally:
        alive.kill()
        alive.wait()
        watch.close()
