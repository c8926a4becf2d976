"""Which images a sandbox can run, and the built-in `busybox` root filesystem.

`resolve` is pure (it only reads the name); `ensure_busybox` builds the rootfs once per cache directory.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypr.errors import InvalidParameter, KernelError

HOST = "host"
BUSYBOX = "busybox"
BUSYBOX_BINARY = Path("/bin/busybox")  # Debian busybox-static: no shared libraries needed in the rootfs
SUPPORTED = f"supported images are {HOST!r}, {BUSYBOX!r} or an absolute path to a root filesystem directory"
_DEFAULT_COMMAND = ("sh",)
_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var/tmp")
_ETC = {
    "passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "group": "root:x:0:\nnogroup:x:65534:\n",
    "hosts": "",  # mount points for the per-workload files
    "resolv.conf": "",
}


@dataclass(frozen=True)
class Image:
    rootfs: Path | None  # None: the host's own filesystem
    builtin: str | None  # name of a built-in image the runtime has to build first

    @property
    def default_command(self) -> tuple[str, ...]:
        return _DEFAULT_COMMAND if self.builtin is not None or self.rootfs is None else ()


def resolve(image: str, cache_dir: Path, rootfs: Path | None = None) -> Image:
    """`rootfs`: a pulled image's unpacked root (LaunchSpec.rootfs), which wins over the name."""
    if rootfs is not None:
        if not rootfs.is_dir():
            raise InvalidParameter(f"image {image}: its root filesystem {rootfs} is missing; pull it again")
        return Image(rootfs, None)
    if image == HOST:
        return Image(None, None)
    if image == BUSYBOX:
        return Image(cache_dir / BUSYBOX, BUSYBOX)
    if image.startswith("/"):
        path = Path(image)
        if not path.is_dir():
            raise InvalidParameter(f"image {image}: no such root filesystem directory; {SUPPORTED}")
        return Image(path, None)
    raise InvalidParameter(f"unsupported image {image!r}: {SUPPORTED}")


def _applets() -> list[str]:
    try:
        out = subprocess.run([str(BUSYBOX_BINARY), "--list-full"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise KernelError(f"build busybox image: {BUSYBOX_BINARY} --list-full failed: {exc}") from exc
    return [line for line in out.stdout.split() if line and not line.startswith("/")]


def _populate(root: Path) -> None:
    for d in _DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX_BINARY, root / "bin" / "busybox")
    for applet in _applets():
        link = root / applet
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to("/bin/busybox")
    for name, text in _ETC.items():
        (root / "etc" / name).write_text(text)


def ensure_busybox(cache_dir: Path) -> Path:
    """The busybox rootfs, built once: in a temporary directory, then renamed into place atomically."""
    target = cache_dir / BUSYBOX
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".busybox-", dir=cache_dir))
    try:
        _populate(tmp)
        os.chmod(tmp, 0o755)
        tmp.rename(target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        # Another start built it at the same moment: its copy is as good as ours.
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not target.is_dir():
            raise KernelError(f"build busybox image in {cache_dir}: {exc}") from exc
    return target
