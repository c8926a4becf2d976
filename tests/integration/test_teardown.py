"""The tests' own clean-up: what a test leaves when it kills parts of hypr is still removed (harness.reap)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from tests.integration.harness import (
    CGROUP_ROOT,
    Hyprd,
    leftover_cgroups,
    leftover_containers,
    leftover_processes,
    reap,
    wait_until,
)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("below", ["", "node-b"])  # the test's own daemon, or one of a cluster's under its dir
def test_a_container_whose_supervisor_was_killed_is_deleted_with_its_cgroups(host_ns: str, below: str) -> None:
    top = Path(tempfile.mkdtemp(prefix="hyprt-"))
    root = top / below
    root.mkdir(exist_ok=True)
    try:
        daemon = Hyprd(ns=host_ns, root=root)
        daemon.start()
        daemon.cli("run", "-d", "--name", "orphan", "busybox", "sleep", "600")
        found = json.loads(daemon.cli("inspect", "orphan").stdout)[0]
        workload, init = found["Id"], found["State"]["Pid"]
        supervisor = json.loads((root / "run" / "workloads" / workload / "handle.json").read_text())["pid"]
        daemon.kill9()
        os.kill(supervisor, signal.SIGKILL)
        wait_until(lambda: _gone(supervisor), "the supervisor to die")
        # The init outlives it, with the container's environment (nothing of the test's in it): found by its cgroup.
        assert not _gone(init)
        assert str(root) not in Path(f"/proc/{init}/environ").read_bytes().decode(errors="replace")
        assert init in leftover_processes(top)
        assert leftover_containers(top) and leftover_cgroups(top)
        reap(top)
        assert _gone(init)
        assert not leftover_containers(top) and not leftover_cgroups(top)
    finally:
        reap(top)
        shutil.rmtree(top, ignore_errors=True)
    assert not list(CGROUP_ROOT.glob(f"*/hypr/{workload}")) and not (CGROUP_ROOT / "hypr" / workload).exists()
