"""VM disks of images: cache keys, one build per key however many ask at once, no half disk after a failure."""

from __future__ import annotations

import os
import shutil
import struct
import threading
from pathlib import Path

import pytest

from hypr.errors import InvalidParameter, KernelError
from hypr.runtime import vm_disk

EROFS_MAGIC = 0xE0F5E1E2  # little-endian, at byte 1024 (the superblock)


def fake_mkfs(tmp_path: Path, body: str) -> str:
    """A stand-in for mkfs.erofs (`mkfs --quiet IMG DIR`) that counts its runs in <tmp_path>/runs."""
    script = tmp_path / "fake-mkfs"
    script.write_text(f'#!/bin/sh\necho run >>"{tmp_path}/runs"\n{body}\n')
    script.chmod(0o755)
    return str(script)


def tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "bin").mkdir()
    (root / "bin" / "sh").symlink_to("busybox")
    return root


def test_image_key_is_the_id_hex() -> None:
    assert vm_disk.image_key("sha256:" + "0f" * 32) == "0f" * 32
    for bad in ("0f" * 32, "sha512:" + "0f" * 32, "sha256:../../etc", "sha256:" + "0F" * 32):
        with pytest.raises(InvalidParameter):
            vm_disk.image_key(bad)
    with pytest.raises(InvalidParameter):
        vm_disk.disk_path(Path("/c"), "../x")


def test_dir_key_follows_the_tree(tmp_path: Path) -> None:
    root = tree(tmp_path / "root")
    key = vm_disk.dir_key(root)
    assert key.startswith("dir-") and vm_disk.dir_key(root) == key
    (root / "bin" / "sh").unlink()
    (root / "bin" / "sh").symlink_to("dash")
    retargeted = vm_disk.dir_key(root)
    assert retargeted != key
    (root / "etc" / "passwd").chmod(0o600)
    chmodded = vm_disk.dir_key(root)
    assert chmodded != retargeted
    # another directory with the same contents is another image: the path part differs
    other = tree(tmp_path / "other")
    assert vm_disk.dir_key(other).split("-")[1] != key.split("-")[1]


def test_concurrent_builders_build_once(tmp_path: Path) -> None:
    mkfs = fake_mkfs(tmp_path, 'sleep 0.3; printf disk >"$2"')
    root = tree(tmp_path / "root")
    cache = tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(vm_disk.ensure_disk(root, "k1", cache, mkfs=mkfs))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [cache / "k1.erofs"] * 4
    assert (tmp_path / "runs").read_text() == "run\n"
    assert (cache / "k1.erofs").read_text() == "disk"
    assert oct((cache / "k1.erofs").stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in cache.iterdir()) == ["k1.erofs"]  # no lock, no temporary file
    vm_disk.ensure_disk(root, "k1", cache, mkfs=mkfs)
    assert (tmp_path / "runs").read_text() == "run\n"


def test_a_failed_build_leaves_no_disk(tmp_path: Path) -> None:
    root = tree(tmp_path / "root")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".k2.crashed.tmp").write_text("half a disk from a build that died")
    failing = fake_mkfs(tmp_path, 'printf half >"$2"; echo "no space left" >&2; exit 1')
    with pytest.raises(KernelError, match="no space left"):
        vm_disk.ensure_disk(root, "k2", cache, mkfs=failing)
    assert not (cache / "k2.erofs").exists()
    assert not list(cache.glob("*.tmp"))  # ours removed, and the crashed one's too
    working = fake_mkfs(tmp_path, 'printf disk >"$2"')
    assert vm_disk.ensure_disk(root, "k2", cache, mkfs=working).read_text() == "disk"


def test_a_new_tree_replaces_the_directorys_old_disk(tmp_path: Path) -> None:
    mkfs = fake_mkfs(tmp_path, 'printf disk >"$2"')
    root = tree(tmp_path / "root")
    cache = tmp_path / "cache"
    old = vm_disk.ensure_disk(root, vm_disk.dir_key(root), cache, mkfs=mkfs)
    unrelated = vm_disk.ensure_disk(root, "ab" * 32, cache, mkfs=mkfs)
    (root / "new").write_text("x")
    new = vm_disk.ensure_disk(root, vm_disk.dir_key(root), cache, mkfs=mkfs)
    assert new != old and new.exists() and not old.exists() and unrelated.exists()
    vm_disk.remove_disk(cache, "ab" * 32)
    vm_disk.remove_disk(cache, "ab" * 32)  # idempotent
    assert not unrelated.exists()


def test_missing_tool_or_tree_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="erofs-utils"):
        vm_disk.ensure_disk(tree(tmp_path / "root"), "k", tmp_path / "c", mkfs="no-such-mkfs.erofs")
    with pytest.raises(InvalidParameter, match="no root filesystem"):
        vm_disk.ensure_disk(tmp_path / "missing", "k", tmp_path / "c", mkfs=fake_mkfs(tmp_path, ""))


@pytest.mark.skipif(shutil.which(vm_disk.MKFS) is None, reason="needs erofs-utils")
def test_real_mkfs_makes_an_erofs_image(tmp_path: Path) -> None:
    root = tree(tmp_path / "root")
    (root / "big").write_bytes(os.urandom(100_000))
    disk = vm_disk.ensure_disk(root, "real", tmp_path / "cache")
    with open(disk, "rb") as f:
        f.seek(1024)
        assert struct.unpack("<I", f.read(4))[0] == EROFS_MAGIC
    assert disk.stat().st_size >= 100_000
