"""What a microVM boots and how QEMU is told to: the guest kernel on disk, the accelerator, the command line.

`find_kernel` and `probe_accel` only read files; `qemu_argv` is pure.

QEMU is started with its working directory set to the workload's state directory and every path relative to it:
unix socket paths are limited to 108 bytes, and state directories can be deeper than that.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from hypr.errors import Unavailable
from hypr.runtime import handles
from hypr.runtime.base import LaunchSpec

DEFAULT_KERNEL_DIR = Path("/var/lib/hypr/kernel")
QEMU = "qemu-system-x86_64"
# Relative paths inside lib/modules/<version>/kernel, in load order (insmod does not resolve dependencies): each
# after what its `depends=` (modinfo) names. Debian's cloud kernel 6.1: virtio <- virtio_ring; net_failover <-
# failover; virtio_net <- virtio_ring, virtio, net_failover; virtio_console, virtio_blk, virtio_mmio <- virtio,
# virtio_ring; erofs <- libcrc32c (whose soft dependency crc32c is built in); overlay <- nothing. The drivers come
# before virtio_mmio, so its probe finds them and the devices are there when insmod returns.
MODULE_PATHS = {
    "virtio_ring": "drivers/virtio/virtio_ring.ko",
    "virtio": "drivers/virtio/virtio.ko",
    "failover": "net/core/failover.ko",
    "net_failover": "drivers/net/net_failover.ko",
    "virtio_net": "drivers/net/virtio_net.ko",
    "virtio_console": "drivers/char/virtio_console.ko",
    "virtio_blk": "drivers/block/virtio_blk.ko",
    "virtio_mmio": "drivers/virtio/virtio_mmio.ko",
    "libcrc32c": "lib/libcrc32c.ko",
    "erofs": "fs/erofs/erofs.ko",
    "overlay": "fs/overlayfs/overlay.ko",
}
# microvm has 8 virtio-mmio transports: one carries the virtio-serial bus, one the image disk, the rest networks.
MAX_ATTACHMENTS = 6
# Files in the state directory (QEMU's working directory).
INITRD = "initrd"
PIDFILE = "qemu.pid"
CONSOLE = "console.log"
LOG = "log"
EXIT_CODE = handles.EXIT_CODE
AGENT_SOCK = "agent.sock"
CONTROL_SOCK = "ctl.sock"
QMP_SOCK = "qmp.sock"  # QEMU's monitor (QMP): stop / cont for Docker's pause and unpause


@dataclass(frozen=True)
class Kernel:
    vmlinuz: Path
    modules: tuple[Path, ...]  # in load order, as MODULE_PATHS

    @property
    def root(self) -> Path:
        return self.vmlinuz.parent.parent


def kernel_dirs(data_dir: Path | None, env: dict[str, str] | None = None) -> list[Path]:
    """Where to look, first match wins: $HYPR_KERNEL, <data dir>/kernel, the default data dir's kernel."""
    env = dict(os.environ) if env is None else env
    dirs = [Path(env["HYPR_KERNEL"])] if env.get("HYPR_KERNEL") else []
    if data_dir is not None:
        dirs.append(data_dir / "kernel")
    dirs.append(DEFAULT_KERNEL_DIR)
    return dirs


def _version_key(name: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def load_kernel(root: Path) -> Kernel | None:
    """The newest kernel unpacked at `root` (boot/vmlinuz-<v> with lib/modules/<v>), or None."""
    try:
        candidates = sorted((p for p in (root / "boot").glob("vmlinuz-*")), key=lambda p: _version_key(p.name))
    except OSError:
        return None
    for vmlinuz in reversed(candidates):
        moddir = root / "lib" / "modules" / vmlinuz.name.removeprefix("vmlinuz-") / "kernel"
        modules = tuple(moddir / rel for rel in MODULE_PATHS.values())
        if all(m.is_file() for m in modules):
            return Kernel(vmlinuz, modules)
    return None


def find_kernel(data_dir: Path | None, env: dict[str, str] | None = None) -> Kernel:
    dirs = kernel_dirs(data_dir, env)
    for root in dirs:
        kernel = load_kernel(root)
        if kernel is not None:
            return kernel
    where = ", ".join(str(d) for d in dirs)
    raise Unavailable(
        f"no guest kernel for the vm runtime (looked in {where}): run `scripts/fetch-kernel.sh` (part of `make setup`)"
        " or set HYPR_KERNEL to an unpacked Debian cloud kernel"
    )


def cpu_flags_and_khz(cpuinfo: str) -> tuple[set[str], int | None]:
    flags: set[str] = set()
    khz: int | None = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags" and not flags:
            flags = set(value.split())
        elif key == "cpu MHz" and khz is None:
            khz = round(float(value) * 1000)
    return flags, khz


def probe_accel(env: dict[str, str] | None = None) -> tuple[str, int | None]:
    """("kvm" | "tcg", TSC kHz for TCG). KVM needs an openable /dev/kvm and a CPU with vmx/svm: the paravirtual
    /dev/kvm some cloud machines expose lacks them, and stock kernels hang on it. HYPR_VM_ACCEL=kvm|tcg overrides.
    """
    env = dict(os.environ) if env is None else env
    try:
        with open("/proc/cpuinfo") as f:
            flags, khz = cpu_flags_and_khz(f.read())
    except OSError:
        flags, khz = set(), None
    forced = env.get("HYPR_VM_ACCEL", "")
    if forced in ("kvm", "tcg"):
        return forced, khz
    kvm = bool(flags & {"vmx", "svm"}) and os.access("/dev/kvm", os.R_OK | os.W_OK)
    return ("kvm" if kvm else "tcg"), khz


def kernel_cmdline(accel: str, tsc_khz: int | None) -> str:
    # panic=-1 plus -no-reboot: a dying init ends QEMU instead of hanging. Without tsc_early_khz, ~17% of TCG boots
    # hang calibrating the TSC against the PIT.
    parts = ["console=ttyS0", "panic=-1", "quiet", "pci=off", "reboot=t"]
    if accel == "tcg" and tsc_khz:
        parts.append(f"tsc_early_khz={tsc_khz}")
    return " ".join(parts)


def process_name(spec: LaunchSpec) -> str:
    """QEMU's process name for a workload: how a stray QEMU is recognised (see VmRuntime.delete)."""
    return f"hypr-vm-{spec.workload_id[:12]}"


def _option_value(text: str) -> str:
    """A value inside a QEMU `key=value,...` option: commas are doubled."""
    return text.replace(",", ",,")


def qemu_argv(
    spec: LaunchSpec, kernel: Kernel, *, disk: Path, accel: str, tsc_khz: int | None, qemu: str = QEMU
) -> list[str]:
    """The whole QEMU command line for `spec`, booting from the image's read-only `disk` (vm_disk); relative paths
    are inside the state directory."""
    argv = [
        qemu,
        "-name", f"hypr-{spec.name},process={process_name(spec)}",
        "-machine", "microvm",
        "-accel", accel,
        *(["-cpu", "host"] if accel == "kvm" else []),
        "-smp", str(max(1, math.ceil(spec.cpus))),
        "-m", str(spec.memory_mb),
        "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
        "-kernel", str(kernel.vmlinuz),
        "-initrd", INITRD,
        "-append", kernel_cmdline(accel, tsc_khz),
        "-chardev", f"file,id=console,path={CONSOLE},append=on", "-serial", "chardev:console",
        "-device", "virtio-serial-device",
        # The two consoles come up as /dev/hvc0 and /dev/hvc1 in the guest, in this order.
        "-chardev", f"socket,id=agent,path={AGENT_SOCK},server=on,wait=off",
        "-device", "virtconsole,chardev=agent,name=hypr.agent",
        "-chardev", f"socket,id=control,path={CONTROL_SOCK},server=on,wait=off",
        "-device", "virtconsole,chardev=control,name=hypr.control",
        "-chardev", f"file,id=log,path={LOG},append=on", "-device", "virtserialport,chardev=log,name=hypr.log",
        "-chardev", f"file,id=exit,path={EXIT_CODE}", "-device", "virtserialport,chardev=exit,name=hypr.exit",
        # The image: /dev/vda in the guest (the only disk), shared read-only by every VM of the image.
        "-drive", f"file={_option_value(str(disk))},if=none,id=image,format=raw,readonly=on",
        "-device", "virtio-blk-device,drive=image",
        "-qmp", f"unix:{QMP_SOCK},server=on,wait=off",
    ]  # fmt: skip
    for i, att in enumerate(spec.attachments):
        argv += [
            "-netdev", f"tap,id=net{i},ifname={att.host_ifname},script=no,downscript=no",
            "-device", f"virtio-net-device,netdev=net{i},mac={att.mac}",
        ]  # fmt: skip
    return [*argv, "-daemonize", "-pidfile", PIDFILE]
