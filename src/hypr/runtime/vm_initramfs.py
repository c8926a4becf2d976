"""The guest's initramfs: a reproducible newc cpio built from busybox-static, the guest init and the kernel modules
it loads; cached by a key over every input. It holds nothing of the image: the image is a read-only disk
(vm_disk.py) that the guest init mounts under an overlay, so one base archive serves every image.

A VM boots `base + config`: the cached base archive followed by a tiny per-workload archive holding
/.hypr/config.sh (the kernel unpacks concatenated archives in order). So a new IP, command or user costs one small
archive, never a rebuild.

Reproducible: entries sorted by path, mtime 0, inode numbers assigned in order, no compression (under TCG the
guest would spend longer unpacking gzip than QEMU spends loading the larger file).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hypr.errors import KernelError
from hypr.runtime.base import LaunchSpec
from hypr.runtime.files import render_hosts, render_resolv
from hypr.runtime.users import ROOT, Credentials

FORMAT = "hypr-initramfs-2"
INIT = Path(__file__).with_name("guest") / "init"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's PATH when the image sets none
MODULE_ORDER = ".hypr/modules/order"  # module names, one a line, in load order
_SKELETON = ("dev", "etc", "proc", "root", "run", "sys", "tmp")
# The workload's /dev, as Docker makes it (copied into a tmpfs at boot with one `cp -a`, not node by node: every
# command the guest init runs costs milliseconds under TCG).
_DEV_NODES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
_DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "core": "/proc/kcore",
    "ptmx": "pts/ptmx",
}
_DEV_DIRS = {"pts": 0o755, "shm": 0o1777, "mqueue": 0o1777}
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member. `data` for files, `target` for symlinks, `rdev` for device nodes."""

    path: str  # relative, no leading slash
    mode: int
    data: bytes = b""
    source: Path | None = None  # file contents read at write time (large files are not held in memory twice)
    target: str = ""
    rdev: tuple[int, int] = (0, 0)
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Inputs:
    """Everything the base archive is made of (nothing per image, nothing per workload)."""

    busybox: Path
    applets: tuple[str, ...]  # busybox applet names, linked under /.hypr/bin
    modules: tuple[Path, ...]  # in load order


def _header(
    ino: int, mode: int, uid: int, gid: int, nlink: int, size: int, rdev: tuple[int, int], name: bytes
) -> bytes:
    fields = (ino, mode, uid, gid, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name + b"\0"
    return head + b"\0" * (-len(head) % 4)


def write_cpio(entries: Iterable[Entry]) -> bytes:
    """A newc archive of `entries` in the order given (callers sort), ending with the trailer."""
    chunks: list[bytes] = []
    for ino, e in enumerate(entries, start=1):
        if stat.S_ISLNK(e.mode):
            body = e.target.encode()
        elif stat.S_ISREG(e.mode):
            body = e.source.read_bytes() if e.source is not None else e.data
        else:
            body = b""
        nlink = 2 if stat.S_ISDIR(e.mode) else 1
        chunks.append(_header(ino, e.mode, e.uid, e.gid, nlink, len(body), e.rdev, e.path.encode()))
        chunks.append(body + b"\0" * (-len(body) % 4))
    chunks.append(_header(0, 0, 0, 0, 1, 0, (0, 0), _TRAILER.encode()))
    data = b"".join(chunks)
    return data + b"\0" * (-len(data) % 512)


def module_name(module: Path) -> str:
    return module.name.removesuffix(".ko")


def busybox_applets(busybox: Path) -> tuple[str, ...]:
    try:
        out = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        raise KernelError(f"list the applets of {busybox}: {exc}") from exc
    return tuple(sorted(a for a in out.stdout.split() if a and "/" not in a))


def base_entries(inputs: Inputs) -> list[Entry]:
    """Every member of the base archive, sorted by path (parents before children)."""
    d, f, x = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644, stat.S_IFREG | 0o755
    link = stat.S_IFLNK | 0o777
    by_path = {name: Entry(name, d) for name in _SKELETON}
    by_path["tmp"] = Entry("tmp", stat.S_IFDIR | 0o1777)
    by_path["dev/console"] = Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    by_path[".hypr"] = Entry(".hypr", d)
    by_path[".hypr/bin"] = Entry(".hypr/bin", d)
    by_path[".hypr/modules"] = Entry(".hypr/modules", d)
    by_path[".hypr/busybox"] = Entry(".hypr/busybox", x, source=inputs.busybox)
    by_path["init"] = Entry("init", x, data=INIT.read_bytes())
    for applet in inputs.applets:
        by_path[f".hypr/bin/{applet}"] = Entry(f".hypr/bin/{applet}", link, target="/.hypr/busybox")
    for module in inputs.modules:
        by_path[f".hypr/modules/{module.name}"] = Entry(f".hypr/modules/{module.name}", f, source=module)
    by_path[".hypr/dev"] = Entry(".hypr/dev", d)
    for name, rdev in _DEV_NODES.items():
        by_path[f".hypr/dev/{name}"] = Entry(f".hypr/dev/{name}", stat.S_IFCHR | 0o666, rdev=rdev)
    for name, target in _DEV_LINKS.items():
        by_path[f".hypr/dev/{name}"] = Entry(f".hypr/dev/{name}", link, target=target)
    for name, mode in _DEV_DIRS.items():
        by_path[f".hypr/dev/{name}"] = Entry(f".hypr/dev/{name}", stat.S_IFDIR | mode)
    order = "".join(f"{module_name(m)}\n" for m in inputs.modules)
    by_path[MODULE_ORDER] = Entry(MODULE_ORDER, f, data=order.encode())
    return [by_path[p] for p in sorted(by_path)]


def cache_key(inputs: Inputs) -> str:
    """A digest of every input: file identity by (size, mtime) as make would, the init by content."""
    h = hashlib.sha256(FORMAT.encode())
    h.update(INIT.read_bytes())

    def ident(path: Path) -> None:
        st = path.stat()
        h.update(f"\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode())

    ident(inputs.busybox)
    h.update("\0".join(inputs.applets).encode())
    for module in inputs.modules:
        ident(module)
    return h.hexdigest()[:20]


def ensure_base(inputs: Inputs, cache_dir: Path) -> Path:
    """The cached base archive for `inputs`, built (atomically) when missing. Building one removes the others:
    they belong to earlier inputs (a new kernel, init or busybox; earlier versions also packed each directory
    image into its own archive), and a start copies its base at once, so none is in use for long."""
    target = cache_dir / f"initramfs-{cache_key(inputs)}.cpio"
    if target.exists():
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".initramfs-", dir=cache_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(write_cpio(base_entries(inputs)))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        for old in cache_dir.glob("initramfs-*.cpio"):
            if old != target:
                old.unlink(missing_ok=True)
    except OSError as exc:
        raise KernelError(f"build the VM initramfs in {cache_dir}: {exc}") from exc
    return target


# -- the per-workload part ------------------------------------------------------------------------------------------


def _q(value: str) -> str:
    return shlex.quote(value)


def _words(values: Iterable[str]) -> str:
    """Shell words the guest init turns back into "$@" with `eval "set -- $VAR"`."""
    return " ".join(_q(v) for v in values)


def render_config(spec: LaunchSpec, command: tuple[str, ...], creds: Credentials = ROOT) -> str:
    """/.hypr/config.sh, sourced by the guest init (every value shell-quoted). `creds`: the workload's user,
    resolved against the image's /etc on the host (users.resolve_user); exec uses them too, as docker exec does."""
    nets = "".join(
        f"{att.mac.lower()}|{att.guest_ifname}|{att.ip or ''}|{att.prefixlen if att.ip else ''}|{att.gateway or ''}"
        f"|{att.mtu}"
        f"|{att.ip6 or ''}|{att.prefixlen6 if att.ip6 else ''}\n"
        for att in spec.attachments
    )
    # Each family's default route: via the first attachment (in gateway order) that has that family and is not
    # internal (none for a VM on internal networks only).
    gateway = str(spec.gateway.gateway) if spec.gateway is not None else ""
    gateway6 = str(spec.gateway6.gateway6) if spec.gateway6 is not None else ""
    env: Mapping[str, str] = {"PATH": GUEST_PATH, "HOSTNAME": spec.hostname, "HOME": creds.home, **spec.env}
    return (
        f"HYPR_NETS={_q(nets)}\n"
        f"HYPR_GATEWAY={_q(gateway)}\n"
        f"HYPR_GATEWAY6={_q(gateway6)}\n"
        f"HYPR_HOSTNAME={_q(spec.hostname)}\n"
        f"HYPR_DOMAINNAME={_q(spec.domainname)}\n"
        f"HYPR_HOSTS={_q(render_hosts(spec))}\n"
        f"HYPR_RESOLV={_q(render_resolv(spec))}\n"
        f"HYPR_WORKDIR={_q(spec.workdir or '/')}\n"
        f"HYPR_UID={creds.uid}\n"
        f"HYPR_GID={creds.gid}\n"
        f"HYPR_GROUPS={_q(' '.join(str(g) for g in creds.groups))}\n"
        f"HYPR_ENV={_q(_words(f'{k}={v}' for k, v in env.items()))}\n"
        f"HYPR_ARGV={_q(_words(command))}\n"
    )


def config_archive(config: str) -> bytes:
    return write_cpio([Entry(".hypr/config.sh", stat.S_IFREG | 0o644, data=config.encode())])


def write_initrd(base: Path, config: str, out: Path) -> None:
    """base + per-workload config, written next to the workload's other files."""
    tmp = out.with_name(out.name + ".tmp")
    try:
        shutil.copyfile(base, tmp)
        with open(tmp, "ab") as dst:
            dst.write(config_archive(config))
        os.replace(tmp, out)
    except OSError as exc:
        raise KernelError(f"write initramfs {out}: {exc}") from exc
