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


def info(ctx: Context) -> dict[str, Any]:
    snapshot = ctx.store.snapshot()
    paths = ctx.settings.paths
    return {
        "ServerVersion": __version__,
        "OperatingSystem": "linux",
        "Driver": "hypr",
        "Name": os.uname().nodename,
        "Containers": len(snapshot.workloads),
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
