"""Fixtures for tests that pull images: a registry storage filled once per session with the images
tests/integration/registry.py builds, served read-only by a registry inside each test's own host namespace."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import registry as reg
from tests.integration.harness import Hyprd, netns


def fill_storage(names: list[str] | None = None) -> tuple[Path, dict[str, str]]:
    """A registry storage directory holding the named images as <addr>/library/<name>:latest; returns it and
    name -> repository path ("library/<name>")."""
    images = reg.build_images(names)
    root = Path(tempfile.mkdtemp(prefix="hyprt-regstore-"))
    storage = root / "storage"
    with netns("hyprt-reg") as ns, reg.registry(ns, root, storage=storage) as addr:
        reg.push_all(ns, addr, images)
    return storage, {name: f"library/{name}" for name in images}


@pytest.fixture(scope="session")
def small_storage() -> Iterator[tuple[Path, dict[str, str]]]:
    storage, repos = fill_storage()
    try:
        yield storage, repos
    finally:
        shutil.rmtree(storage.parent, ignore_errors=True)


class Registry:
    """A registry serving the session's images inside a test's host namespace."""

    def __init__(self, addr: str, repos: dict[str, str]) -> None:
        self.addr = addr
        self.repos = repos

    def ref(self, name: str, tag: str = "latest") -> str:
        return f"{self.addr}/{self.repos[name]}:{tag}"


@pytest.fixture
def images_registry(hyprd: Hyprd, small_storage: tuple[Path, dict[str, str]]) -> Iterator[Registry]:
    storage, repos = small_storage
    with reg.registry(hyprd.ns, hyprd.root, storage=storage, readonly=True) as addr:
        yield Registry(addr, repos)
