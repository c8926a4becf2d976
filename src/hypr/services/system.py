"""What `hypr info` shows: where things are and what this host can do."""

from __future__ import annotations

import os
from typing import Any

from hypr import __version__
from hypr.services.context import Context


def kvm_usable() -> bool:
    """A cheap probe: the device opens read-write and the CPU advertises hardware virtualisation.

    Some hosts expose a /dev/kvm that stock guest kernels cannot use; the vm runtime makes the final call by
    booting, this only says whether trying is worthwhile."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return False
    return " vmx" in flags or " svm" in flags


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "linux"


def _mem_total() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def info(ctx: Context) -> dict[str, Any]:
    """Docker's `GET /info`, told truthfully for this host (counts, CPUs, memory, kernel, runtimes, forwarding,
    Swarm inactive), plus hypr's own section."""
    snapshot = ctx.store.snapshot()
    paths = ctx.settings.paths
    states = [w.state for w in snapshot.workloads]
    uname = os.uname()
    registry = ctx.settings.registry
    return {
        "ID": ctx.reconciler.alias.removeprefix("hypr:"),
        "ServerVersion": __version__,
        "OperatingSystem": _os_name(),
        "OSType": "linux",
        "Architecture": uname.machine,
        "KernelVersion": uname.release,
        "Driver": "overlay",
        "Name": uname.nodename,
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "Containers": len(states),
        "ContainersRunning": states.count("running"),
        "ContainersPaused": 0,
        "ContainersStopped": len(states) - states.count("running"),
        "Images": len(snapshot.images),
        "DockerRootDir": str(paths.data_dir),
        "IPv4Forwarding": _read("/proc/sys/net/ipv4/ip_forward").strip() == "1",
        "Runtimes": {"sandbox": {"path": "hypr-sandbox"}, "vm": {"path": "qemu-system-x86_64"}},
        "DefaultRuntime": "sandbox",
        "LoggingDriver": "json-file",
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": False,
            "Error": "",
            "RemoteManagers": None,
        },
        "RegistryConfig": {
            "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"],
            "IndexConfigs": {r: {"Name": r, "Secure": False, "Mirrors": []} for r in registry.insecure},
            "Mirrors": list(registry.mirrors),
        },
        "Networks": [n.name for n in snapshot.networks],
        "Hypr": {
            "DataDir": str(paths.data_dir),
            "RuntimeDir": str(paths.runtime_dir),
            "Database": str(paths.db),
            "Socket": str(paths.socket),
            "Instance": ctx.reconciler.alias,
            "FirewallBackend": "nftables (table inet hypr, table bridge hypr)",
            "KvmUsable": kvm_usable(),
            "DnsPort": 41003,
        },
    }
