"""Fixtures for tests that need root: a throw-away host namespace with its own hyprd, removed afterwards."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    Hyprd,
    leftover_cgroups,
    leftover_containers,
    leftover_mounts,
    leftover_processes,
    netns,
    reap,
)

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root")
        for item in items:
            if "integration" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture
def host_ns() -> Iterator[str]:
    with netns("hyprt") as name:
        yield name


@pytest.fixture
def tmp_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="hyprt-"))
    try:
        yield root
    finally:
        reap(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def hyprd(host_ns: str, tmp_root: Path) -> Iterator[Hyprd]:
    daemon = Hyprd(ns=host_ns, root=tmp_root)
    daemon.start()
    try:
        yield daemon
    finally:
        remove_all_workloads(daemon)
        daemon.stop()
        leaks = [*leftover_processes(tmp_root), *leftover_mounts(tmp_root), *leftover_containers(tmp_root),
                 *leftover_cgroups(tmp_root)]  # fmt: skip
        assert not leaks, f"left behind: {leaks}"


def remove_all_workloads(daemon: Hyprd) -> None:
    """Workloads outlive the daemon by design, so a test's clean-up removes them through the API first."""
    if daemon.proc is None:
        daemon.start()
    with daemon.client() as client:
        for container in client.containers(all=True):
            client.remove(container["Id"], force=True)
