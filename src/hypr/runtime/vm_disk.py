"""An image's root filesystem as a read-only disk for the vm runtime: one EROFS image per image, built once, shared
by every VM of the image (QEMU opens it read-only; the host's page cache holds one copy of what guests read).

    <cache_dir>/<key>.erofs          the disk; `key` is the image ID's hex for a pulled image (`image_key`), or
                                     `dir-<path digest>-<tree digest>` for a root filesystem directory (`dir_key`)
    <cache_dir>/.<key>.lock          held (flock) while one process builds that disk; removed after a success
    <cache_dir>/.<key>.<random>.tmp  a build in progress; renamed to <key>.erofs when complete

Builders of one key serialize on the lock and the later ones find the disk done: the work happens once. A crashed
build leaves only its .tmp file (never a half disk under the final name), removed by the next builder of that key.

EROFS rather than ext4 (docs/vm.md has the measurements): `mkfs.erofs IMG DIR` needs no size guess, keeps
ownership, modes, timestamps, symlinks, hard links, device nodes, fifos and xattrs, and builds a 187 MB tree about
twice as fast as `mkfs.ext4 -d` into a smaller file; it is read-only by design, which is all a shared lower layer
needs. Uncompressed: decompression would cost guest CPU on every read, and under TCG guest CPU is the scarce thing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from hypr.errors import InvalidParameter, KernelError

MKFS = "mkfs.erofs"
SUFFIX = ".erofs"
FORMAT = "hypr-disk-1"  # part of every directory key: changing how disks are built invalidates those disks
BUILD_TIMEOUT = 1800.0  # seconds; a multi-GB image on a slow disk
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_HEX = re.compile(r"[0-9a-f]{64}\Z")


def image_key(image_id: str) -> str:
    """The cache key of a pulled image: the hex of its ID ("sha256:<hex>")."""
    algo, _, hexdigest = image_id.partition(":")
    if algo != "sha256" or not _HEX.match(hexdigest):
        raise InvalidParameter(f"invalid image ID {image_id!r}: expected sha256:<64 hex digits>")
    return hexdigest


def _tree_digest(root: Path) -> str:
    """A digest of every entry's identity under `root` (not following symlinks): any file written, replaced,
    chmod-ed, chown-ed or given an xattr since changes its ctime, so it changes the digest."""
    h = hashlib.sha256(FORMAT.encode())

    def add(path: str, name: str) -> None:
        st = os.lstat(path)
        ident = (name, st.st_ino, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        h.update(("\0" + "\0".join(map(str, ident))).encode())

    add(str(root), ".")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        h.update(f"\0{dirpath}/".encode())
        for name in sorted(dirnames + filenames):  # symlinks to directories are among dirnames, never walked
            add(os.path.join(dirpath, name), name)
    return h.hexdigest()


def dir_key(root: Path) -> str:
    """The cache key of a root filesystem directory: which directory, and what it holds now. Walks the tree (tens
    of ms for ~8,000 entries), so a changed directory gets a new disk."""
    path_digest = hashlib.sha256(os.fsencode(root.resolve())).hexdigest()[:16]
    try:
        tree = _tree_digest(root)
    except OSError as exc:
        raise KernelError(f"read root filesystem {root}: {exc}") from exc
    return f"dir-{path_digest}-{tree[:24]}"


def disk_path(cache_dir: Path, key: str) -> Path:
    if not _KEY.match(key):
        raise InvalidParameter(f"invalid disk key {key!r}")
    return cache_dir / f"{key}{SUFFIX}"


def _prune_older(cache_dir: Path, key: str) -> None:
    """A directory's earlier disks (same path digest, other tree digest). A VM still running from one keeps it open."""
    if not key.startswith("dir-"):
        return
    prefix = key.rsplit("-", 1)[0] + "-"
    for old in cache_dir.glob(f"{prefix}*{SUFFIX}"):
        if old.name != f"{key}{SUFFIX}":
            old.unlink(missing_ok=True)


def _build(rootfs: Path, target: Path, mkfs: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run(
            [mkfs, "--quiet", tmp, str(rootfs)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=BUILD_TIMEOUT,
        )
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise KernelError(f"build the VM disk of {rootfs}: {mkfs} exited with {done.returncode}: {detail}")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the rename below must never expose a disk whose blocks are not on disk yet
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def ensure_disk(rootfs: Path, key: str, cache_dir: Path, *, mkfs: str = MKFS) -> Path:
    """The read-only disk of `rootfs`, cached as <cache_dir>/<key>.erofs: built the first time (by one process,
    however many ask at once), then returned as is. Raises KernelError when the build fails."""
    target = disk_path(cache_dir, key)
    if target.is_file():
        return target
    if shutil.which(mkfs) is None:
        raise InvalidParameter(f"the vm runtime needs {mkfs} (Debian package erofs-utils)")
    if not rootfs.is_dir():
        raise InvalidParameter(f"no root filesystem directory at {rootfs}")
    lock_path = cache_dir / f".{key}.lock"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise KernelError(f"build the VM disk of {rootfs} in {cache_dir}: {exc}") from exc
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():  # built by whoever held the lock before us
            return target
        for stale in cache_dir.glob(f".{key}.*.tmp"):  # a crashed build's: no one else builds this key now
            stale.unlink(missing_ok=True)
        try:
            _build(rootfs, target, mkfs)
            _prune_older(cache_dir, key)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KernelError(f"build the VM disk of {rootfs} in {cache_dir}: {exc}") from exc
        # Safe while we hold it: a waiter on this inode finds the disk; a newcomer sees the disk before any lock.
        lock_path.unlink(missing_ok=True)
        return target
    finally:
        os.close(lock)


def remove_disk(cache_dir: Path, key: str) -> None:
    """Forget an image's disk (the image was removed). VMs still running from it keep their open file."""
    with contextlib.suppress(FileNotFoundError):
        disk_path(cache_dir, key).unlink()
