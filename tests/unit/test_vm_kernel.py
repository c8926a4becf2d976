"""The vm runtime's pure parts: kernel lookup, accelerator choice, the QEMU command line, validation, exec script."""

from __future__ import annotations

import os
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hypr.errors import InvalidParameter, Unavailable
from hypr.runtime import _libc, vm_kernel, vm_tap, vmexec
from hypr.runtime.base import Attachment, Handle, LaunchSpec
from hypr.runtime.vm import VmRuntime

ATT = Attachment("htabc", "vbr0", "eth0", IPv4Address("192.0.2.5"), 24, IPv4Address("192.0.2.1"), "02:42:c0:00:02:05")
ATT1 = Attachment(
    "htdef", "vbr1", "eth1", IPv4Address("198.51.100.7"), 24, IPv4Address("198.51.100.1"), "02:42:00:00:00:07"
)


def spec(**kw: object) -> LaunchSpec:
    values: dict[str, object] = dict(
        workload_id="0123456789abcdef",
        name="web",
        hostname="web",
        image="busybox",
        command=("httpd", "-f"),
        env={},
        attachments=(ATT, ATT1),
        nameserver=IPv4Address("192.0.2.1"),
        state_dir=Path("/nonexistent"),
        owner_alias="hypr:x",
    )
    values.update(kw)
    return LaunchSpec(**values)  # type: ignore[arg-type]


def fake_kernel(root: Path, version: str, *, modules: bool = True) -> None:
    (root / "boot").mkdir(parents=True, exist_ok=True)
    (root / "boot" / f"vmlinuz-{version}").write_bytes(b"k")
    if modules:
        for rel in vm_kernel.MODULE_PATHS.values():
            path = root / "lib" / "modules" / version / "kernel" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"m")


def test_kernel_lookup_takes_the_newest_complete_kernel(tmp_path: Path) -> None:
    fake_kernel(tmp_path, "6.1.0-9-cloud-amd64")
    fake_kernel(tmp_path, "6.1.0-10-cloud-amd64")
    fake_kernel(tmp_path, "6.1.0-11-cloud-amd64", modules=False)
    kernel = vm_kernel.load_kernel(tmp_path)
    assert kernel is not None and kernel.vmlinuz.name == "vmlinuz-6.1.0-10-cloud-amd64"
    assert [m.name for m in kernel.modules] == [f"{name}.ko" for name in vm_kernel.MODULE_PATHS]
    assert vm_kernel.kernel_dirs(tmp_path / "data", {"HYPR_KERNEL": str(tmp_path)})[:2] == [
        tmp_path,
        tmp_path / "data" / "kernel",
    ]
    assert vm_kernel.find_kernel(None, {"HYPR_KERNEL": str(tmp_path)}) == kernel


def test_missing_kernel_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm_kernel, "DEFAULT_KERNEL_DIR", tmp_path / "none")
    with pytest.raises(Unavailable, match="fetch-kernel.sh"):
        vm_kernel.find_kernel(tmp_path, {})


def test_cpuinfo_and_accel_override() -> None:
    flags, khz = vm_kernel.cpu_flags_and_khz("processor : 0\ncpu MHz\t\t: 2100.000\nflags\t\t: fpu vmx sse\n\n")
    assert flags == {"fpu", "vmx", "sse"} and khz == 2100000
    assert vm_kernel.probe_accel({"HYPR_VM_ACCEL": "tcg"})[0] == "tcg"


DISK = Path("/data/images/vm/disks/ab12.erofs")


def test_qemu_command_line() -> None:
    kernel = vm_kernel.Kernel(Path("/k/boot/vmlinuz-1"), ())
    argv = vm_kernel.qemu_argv(spec(cpus=1.5, memory_mb=300), kernel, disk=DISK, accel="tcg", tsc_khz=2100000)
    text = " ".join(argv)
    assert argv[0] == "qemu-system-x86_64" and "-machine microvm -accel tcg" in text and "-cpu" not in argv
    assert "-smp 2 -m 300" in text and "tsc_early_khz=2100000" in text
    assert "-netdev tap,id=net0,ifname=htabc,script=no,downscript=no" in text
    assert "-device virtio-net-device,netdev=net1,mac=02:42:00:00:00:07" in text
    # the image: one read-only raw virtio-blk disk on the microvm's virtio-mmio bus
    assert f"-drive file={DISK},if=none,id=image,format=raw,readonly=on -device virtio-blk-device,drive=image" in text
    assert argv.count("-drive") == 1
    assert argv[-3:] == ["-daemonize", "-pidfile", "qemu.pid"]
    assert all(not a.startswith("/nonexistent") for a in argv)  # relative to the state dir: short socket paths
    kvm = vm_kernel.qemu_argv(spec(), kernel, disk=DISK, accel="kvm", tsc_khz=2100000)
    assert "-cpu" in kvm and "tsc_early_khz" not in " ".join(kvm)
    odd = vm_kernel.qemu_argv(spec(), kernel, disk=Path("/a,b/x.erofs"), accel="tcg", tsc_khz=None)
    assert "file=/a,,b/x.erofs,if=none" in " ".join(odd)  # QEMU's option syntax: commas doubled


def test_virtio_transports_cover_serial_disk_and_every_network() -> None:
    """microvm has 8 virtio-mmio transports: the serial bus, the image disk, and MAX_ATTACHMENTS networks."""
    kernel = vm_kernel.Kernel(Path("/k/boot/vmlinuz-1"), ())
    atts = tuple(replace(ATT, host_ifname=f"ht{i}", mac=f"02:42:00:00:00:{i:02x}") for i in range(6))
    argv = vm_kernel.qemu_argv(spec(attachments=atts), kernel, disk=DISK, accel="tcg", tsc_khz=None)
    devices = [argv[i + 1].split(",")[0] for i, a in enumerate(argv) if a == "-device"]
    virtio = [d for d in devices if d.startswith("virtio-") and d.endswith("-device")]
    assert vm_kernel.MAX_ATTACHMENTS == 6 and len(virtio) == 8


def test_modules_load_after_their_dependencies() -> None:
    """Each module after what its modinfo `depends=` names (Debian cloud 6.1); the drivers before virtio_mmio."""
    depends = {
        "virtio": ["virtio_ring"],
        "net_failover": ["failover"],
        "virtio_net": ["virtio_ring", "virtio", "net_failover"],
        "virtio_console": ["virtio", "virtio_ring"],
        "virtio_blk": ["virtio", "virtio_ring"],
        "virtio_mmio": ["virtio", "virtio_ring", "virtio_net", "virtio_console", "virtio_blk"],
        "erofs": ["libcrc32c"],
    }
    order = list(vm_kernel.MODULE_PATHS)
    assert {"virtio_blk", "erofs", "overlay", "libcrc32c"} <= set(order)
    for module, deps in depends.items():
        assert all(order.index(d) < order.index(module) for d in deps), module


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": "host"}, "cannot run in a VM"),
        ({"image": "nginx:latest"}, "unsupported image"),
        ({"attachments": (ATT,) * 7}, "at most 6 networks"),
        ({"memory_mb": 16}, "at least 64 MB"),
        ({"env": {"BAD=NAME": "x"}}, "BAD=NAME"),
        ({"hostname": ""}, "invalid hostname"),
    ],
)
def test_validate_refuses_what_a_vm_cannot_run(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        VmRuntime(image_cache=tmp_path).validate(spec(**change))


def test_tap_port_plan_enslaves_then_configures() -> None:
    plan = vm_tap.port_plan(ATT, bridge_index=7, alias="hypr:x")
    assert [r.what for r in plan] == ["attach htabc to its bridge", "configure bridge port htabc"]


def test_exec_script_enters_the_image_with_env_and_workdir() -> None:
    text = vmexec.script(["sh", "-c", "echo $X"], {"X": "a b"}, "/tmp")
    assert text == "exec /.hypr/busybox sh /init enter /tmp 'X=a b' -- sh -c 'echo $X'\n"
    assert vmexec.script(["true"], {}, None) == "exec /.hypr/busybox sh /init enter '' -- true\n"


def test_exec_refuses_env_names_the_guest_cannot_pass(tmp_path: Path) -> None:
    runtime = VmRuntime(image_cache=tmp_path)
    handle = Handle(os.getpid(), _libc.start_time(os.getpid()) or 0, os.getpid())
    with pytest.raises(InvalidParameter, match="A=B"):
        runtime.exec_argv(spec(), handle, ("true",), {"A=B": "x"}, None)


def test_validate_resolves_the_user_against_the_image(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    pulled = {"image": "app:1", "rootfs": rootfs, "image_id": "sha256:" + "ab" * 32}
    runtime = VmRuntime(image_cache=tmp_path / "cache")
    with pytest.raises(InvalidParameter, match="unable to find user nobody"):
        runtime.validate(spec(user="nobody", **pulled))
    with pytest.raises(InvalidParameter, match="invalid image ID"):
        runtime.validate(spec(**{**pulled, "image_id": "sha256:xyz"}))
    with pytest.raises(InvalidParameter, match="No command"):
        runtime.validate(spec(command=(), **pulled))  # a pulled image's command is final: no default here
    with pytest.raises(InvalidParameter, match="absolute path"):
        runtime.validate(spec(workdir="srv", **pulled))


def test_taps_are_numbered_from_tap0_taking_the_lowest_name_nobody_holds() -> None:
    """The networking page's tap0, tap1, ...: a freed number is taken again only once no endpoint (and no other
    interface on the host, e.g. OpenVPN's) holds it."""
    from hypr import names

    assert names.tap_name(set()) == "tap0"
    assert names.tap_name({"tap0", "tap1"}) == "tap2"
    assert names.tap_name({"tap0", "tap2", "hv123", "vbr0"}) == "tap1"
