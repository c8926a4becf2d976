"""The image store on disk, under `<data dir>/images/`:

    oci/                 one OCI image layout shared by every image: blobs/sha256/<hex> are stored once however
                         many images use them; index.json names each pulled manifest by its registry digest's hex
    rootfs/<hex>/        the unpacked root filesystem of image sha256:<hex> (umoci: whiteouts, opaque dirs, hard
                         links, ownership); only ever a read-only lower layer for workloads
    tmp/                 unpacks in progress and per-pull credential files; emptied at start-up
    vm/disks/<hex>.erofs the image as a VM's read-only disk, built at its first VM start (runtime/vm_disk.py)

A rootfs appears under its final name by one rename, after the unpack finished; the image row is written after
that (services/images.py), so an interrupted pull never shows a half image, and the next pull reuses whatever
blobs and rootfs were already complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from hypr.errors import KernelError
from hypr.images.tools import run_tool

UMOCI = "umoci"
UNPACK_TIMEOUT = 3600.0


def hex_of(digest: str) -> str:
    return digest.removeprefix("sha256:")


class ImageStore:
    def __init__(self, root: Path, *, umoci: str = UMOCI) -> None:
        self.root = root
        self.layout = root / "oci"
        self.rootfs_dir = root / "rootfs"
        self.tmp = root / "tmp"
        self.vm_disks = root / "vm" / "disks"  # <hex>.erofs: an image as a VM's read-only disk (runtime/vm_disk.py)
        self.umoci = umoci
        # skopeo and umoci each rewrite the layout's index.json: one writer at a time (one daemon per data dir).
        self.lock = threading.Lock()

    def prepare(self) -> None:
        """At start-up: the directories exist, root-only; leftovers of interrupted unpacks are removed."""
        for d in (self.root, self.rootfs_dir, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        for leftover in self.tmp.iterdir():
            _remove_tree(leftover)
        if not (self.layout / "oci-layout").exists():
            self._umoci("init", "--layout", str(self.layout))

    def rootfs(self, image_id: str) -> Path:
        return self.rootfs_dir / hex_of(image_id)

    def has_rootfs(self, image_id: str) -> bool:
        return self.rootfs(image_id).is_dir()

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def blob_path(self, digest: str) -> Path:
        return self.layout / "blobs" / "sha256" / hex_of(digest)

    def unpack(self, tag: str, image_id: str) -> Path:
        """Unpack the manifest tagged `tag` into rootfs/<hex of image_id>, atomically; a no-op when present."""
        target = self.rootfs(image_id)
        if target.is_dir():
            return target
        self.tmp.mkdir(parents=True, exist_ok=True)
        bundle = Path(tempfile.mkdtemp(prefix="unpack-", dir=self.tmp))
        try:
            _remove_tree(bundle)  # umoci wants to create the bundle directory itself
            self._umoci("unpack", "--image", f"{self.layout}:{tag}", str(bundle), timeout=UNPACK_TIMEOUT)
            os.rename(bundle / "rootfs", target)
        except OSError as exc:
            raise KernelError(f"unpack image {image_id[:19]}: {exc}") from exc
        finally:
            _remove_tree(bundle)
        return target

    def untag(self, tag: str) -> None:
        """Forget one manifest name in the layout (its blobs go at the next gc)."""
        index = self.layout / "index.json"
        try:
            data: dict[str, Any] = json.loads(index.read_text())
        except (OSError, ValueError):
            return
        keep = [
            m
            for m in (data.get("manifests") or [])
            if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") != tag
        ]
        if len(keep) != len(data.get("manifests") or []):
            data["manifests"] = keep
            tmp = index.with_name("index.json.tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, index)

    def tags(self) -> set[str]:
        try:
            data = json.loads((self.layout / "index.json").read_text())
        except (OSError, ValueError):
            return set()
        return {
            str((m.get("annotations") or {}).get("org.opencontainers.image.ref.name"))
            for m in (data.get("manifests") or [])
        }

    def gc(self) -> None:
        """Remove blobs no manifest in the layout references."""
        self._umoci("gc", "--layout", str(self.layout))

    def remove_rootfs(self, image_id: str) -> None:
        _remove_tree(self.rootfs(image_id))

    def orphan_rootfs(self, known: set[str]) -> list[str]:
        """Hex names of unpacked roots no image row owns (a pull killed between unpack and commit)."""
        try:
            return [p.name for p in self.rootfs_dir.iterdir() if f"sha256:{p.name}" not in known]
        except OSError:
            return []

    def orphan_disks(self, known: set[str]) -> list[str]:
        """Hex names of VM disks of images no row owns any more (disks of rootfs directories are not ours here)."""
        try:
            stems = [p.stem for p in self.vm_disks.glob("*.erofs")]
        except OSError:
            return []
        return [
            s for s in stems if len(s) == 64 and all(c in "0123456789abcdef" for c in s) and f"sha256:{s}" not in known
        ]

    def remove_disk(self, image_id: str) -> None:
        (self.vm_disks / f"{hex_of(image_id)}.erofs").unlink(missing_ok=True)

    def _umoci(self, *argv: str, timeout: float = 120.0) -> None:
        late = KernelError(f"umoci {argv[0]} timed out")
        done = run_tool([self.umoci, *argv], timeout=timeout, package="umoci", timed_out=late)
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip().splitlines()
            message = detail[-1] if detail else f"exit code {done.returncode}"
            if "no space left" in message.lower():
                raise KernelError(f"umoci {argv[0]}: no space left on device: {message}")
            raise KernelError(f"umoci {argv[0]}: {message}")


def tree_size(root: Path) -> int:
    """Bytes of file data under `root`, each hard-linked inode counted once (Docker's image Size)."""
    seen: set[int] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if st.st_nlink > 1:
                if st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
            total += st.st_size
    return total


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():  # read-only directories inside an image: make them writable, then try again
            for dirpath, dirs, _files in os.walk(path):
                for d in dirs:
                    os.chmod(os.path.join(dirpath, d), 0o700)
            os.chmod(path, 0o700)
            shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
