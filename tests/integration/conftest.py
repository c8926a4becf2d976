"""Fixtures for tests that need root: a throw-away host namespace with its own hyprd, removed afterwards."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (  # noqa: F401 - remove_all_workloads: imported from here by tests
    Hyprd,
    netns,
    reap,
    remove_all_workloads,
    running_daemon,
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
    with running_daemon(host_ns, tmp_root) as daemon:
        yield daemon
