"""What a workload runs and uses: Docker's `top` and `stats`, read from the kernel (cgroup v2 files, /proc).

A sandbox is its cgroup (crun's, found through its init's /proc/<pid>/cgroup); a VM is its QEMU process. Network
counters come from the host end of each endpoint (veth or TAP) in the daemon's namespace, swapped to the workload's
side: what the host end sends, the workload received. Reads only; they run off the worker thread.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypr.errors import Conflict, InvalidParameter, KernelError

CGROUP_ROOT = Path("/sys/fs/cgroup")
NANO = 1_000_000_000
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Target:
    """What to measure, taken from the rows on the worker: the workload's init (sandbox) or QEMU (vm) pid, and its
    endpoints' (guest interface, host interface) names."""

    id: str
    name: str
    runtime: str
    pid: int
    interfaces: tuple[tuple[str, str], ...]
    memory_limit: int = 0  # bytes; 0: none (VMs: the guest's memory)
    pids_limit: int | None = None


@dataclass(frozen=True)
class Cgroup:
    """Where a process's cgroup files are: per cgroup v1 controller (hybrid hosts), and the v2 directory."""

    v1: Mapping[str, Path]
    v2: Path | None

    def file(self, controller: str, v1_name: str, v2_name: str) -> Path | None:
        if controller in self.v1:
            return self.v1[controller] / v1_name
        return self.v2 / v2_name if self.v2 is not None else None


def cgroup_of(pid: int, root: Path = CGROUP_ROOT) -> Cgroup:
    """The cgroups of `pid`, as the daemon sees the hierarchies (/proc/<pid>/cgroup): v1 controllers under
    <root>/<controller> (or the joined name, `cpu,cpuacct`), v2 under <root> or, on hybrid hosts, <root>/unified."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError as exc:
        raise Conflict(f"process {pid} is gone: {exc.strerror}") from None
    v1: dict[str, Path] = {}
    v2 = None
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if hierarchy == "0":
            v2 = root / rel if (root / "cgroup.controllers").exists() else root / "unified" / rel
            continue
        for controller in controllers.split(","):
            for mount in (root / controller, root / controllers):
                if (mount / rel).is_dir():
                    v1[controller] = mount / rel
                    break
    return Cgroup(v1, v2)


def _read(path: Path | None, default: str = "") -> str:
    """A kernel file's text, stripped; `default` when it is not there (or the controller is not: None)."""
    if path is None:
        return default
    try:
        return path.read_text().strip()
    except OSError:
        return default


def _keyed(text: str) -> dict[str, int]:
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            found[key] = int(value)
    return found


def pids_of(target: Target) -> list[int]:
    """Every process of the workload: its cgroup's (sandbox), QEMU itself (vm)."""
    if target.runtime == "vm":
        return [target.pid]
    group = cgroup_of(target.pid)
    procs = group.file("pids", "cgroup.procs", "cgroup.procs")
    return sorted(int(p) for p in _read(procs).split()) if procs is not None else [target.pid]


def top(target: Target, ps_args: str) -> dict[str, Any]:
    """Docker's top: `ps <ps_args>` on the host (default -ef), the rows whose PID is one of the workload's."""
    args = ps_args.split() if ps_args else ["-ef"]
    try:
        done = subprocess.run(["ps", *args], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KernelError(f"ps: {exc}") from exc
    if done.returncode != 0:
        raise InvalidParameter(f"Error running ps: {done.stderr.strip() or done.returncode}")
    return parse_ps(done.stdout, set(pids_of(target)))


def parse_ps(output: str, pids: set[int]) -> dict[str, Any]:
    """Docker's parsePSOutput: the header's fields are the titles; the PID column picks rows; the last column takes
    the rest of the line (a command with spaces)."""
    lines = output.splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidParameter("Couldn't find PID field in ps output")
    index = titles.index("PID")
    processes = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > index and fields[index].isdigit() and int(fields[index]) in pids:
            processes.append(fields)
    return {"Titles": titles, "Processes": processes}


def net_counters(interfaces: Sequence[tuple[str, str]], dev: str = "/proc/self/net/dev") -> dict[str, Any]:
    """Per guest interface, Docker's eight counters from the workload's side (the host end's rx is its tx)."""
    table: dict[str, list[int]] = {}
    for line in _read(Path(dev)).splitlines()[2:]:
        name, _, rest = line.partition(":")
        numbers = [int(x) for x in rest.split()]
        if len(numbers) >= 16:
            table[name.strip()] = numbers
    found = {}
    for guest, host in interfaces:
        n = table.get(host)
        if n is None:
            continue
        # /proc/net/dev: rx bytes packets errs drop ... (8 fields), tx bytes packets errs drop ...
        found[guest] = {
            "rx_bytes": n[8], "rx_packets": n[9], "rx_errors": n[10], "rx_dropped": n[11],
            "tx_bytes": n[0], "tx_packets": n[1], "tx_errors": n[2], "tx_dropped": n[3],
        }  # fmt: skip
    return found


def system_cpu_usage() -> int:
    """All CPUs' time since boot in nanoseconds (/proc/stat's first line), as Docker's system_cpu_usage."""
    words = _read(Path("/proc/stat")).splitlines()[0].split()[1:8]
    return sum(int(w) for w in words) * NANO // _TICKS


def sample(target: Target, read: str) -> dict[str, Any]:
    """One of Docker's stats objects without precpu_stats (the caller pairs two samples). `read`: RFC 3339."""
    if target.runtime == "vm":
        cpu, memory, pids = _qemu_usage(target)
    else:
        cpu, memory, pids = _cgroup_usage(target)
    online = len(os.sched_getaffinity(0))
    return {
        "read": read, "preread": "0001-01-01T00:00:00Z", "id": target.id, "name": "/" + target.name,
        "num_procs": 0, "storage_stats": {},
        "pids_stats": pids,
        "blkio_stats": {k: None for k in ("io_service_bytes_recursive", "io_serviced_recursive",
                                          "io_queue_recursive", "io_service_time_recursive", "io_wait_time_recursive",
                                          "io_merged_recursive", "io_time_recursive", "sectors_recursive")},
        "cpu_stats": {**cpu, "system_cpu_usage": system_cpu_usage(), "online_cpus": online},
        "memory_stats": memory,
        "networks": net_counters(target.interfaces),
    }  # fmt: skip


def _cgroup_usage(target: Target) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Docker's cpu, memory and pids stats from the workload's cgroup (v2 files, or v1's on hybrid hosts)."""
    group = cgroup_of(target.pid)
    if "cpuacct" in group.v1:
        ticks = _keyed(_read(group.v1["cpuacct"] / "cpuacct.stat"))
        usage = {"total_usage": int(_read(group.v1["cpuacct"] / "cpuacct.usage", "0") or 0),
                 "usage_in_kernelmode": ticks.get("system", 0) * NANO // _TICKS,
                 "usage_in_usermode": ticks.get("user", 0) * NANO // _TICKS}  # fmt: skip
        throttle = _keyed(_read(group.v1["cpu"] / "cpu.stat")) if "cpu" in group.v1 else {}
        throttled = throttle.get("throttled_time", 0)
    else:
        cpu = _keyed(_read(group.file("cpu", "", "cpu.stat")))
        usage = {"total_usage": cpu.get("usage_usec", 0) * 1000, "usage_in_kernelmode": cpu.get("system_usec", 0)
                 * 1000, "usage_in_usermode": cpu.get("user_usec", 0) * 1000}  # fmt: skip
        throttle, throttled = cpu, cpu.get("throttled_usec", 0) * 1000
    cpu_stats = {"cpu_usage": usage, "throttling_data": {
        "periods": throttle.get("nr_periods", 0), "throttled_periods": throttle.get("nr_throttled", 0),
        "throttled_time": throttled}}  # fmt: skip
    limit_text = _read(group.file("memory", "memory.limit_in_bytes", "memory.max"), "max")
    host = _host_memory()
    memory = {
        "usage": int(_read(group.file("memory", "memory.usage_in_bytes", "memory.current"), "0") or 0),
        "stats": _keyed(_read(group.file("memory", "memory.stat", "memory.stat"))),
        "limit": min(int(limit_text), host) if limit_text.isdigit() else host,  # v1's "no limit" is 2^63-4096
    }
    pids_max = _read(group.file("pids", "pids.max", "pids.max"), "max")
    pids = {"current": int(_read(group.file("pids", "pids.current", "pids.current"), "0") or 0)}
    if pids_max.isdigit():
        pids["limit"] = int(pids_max)
    return cpu_stats, memory, pids


def _qemu_usage(target: Target) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A VM as Docker would see a container whose only process is QEMU: its CPU time, resident memory, threads."""
    fields = _read(Path(f"/proc/{target.pid}/stat")).rpartition(")")[2].split()
    if len(fields) < 13:
        raise Conflict(f"Container {target.name} is not running")
    user, system = int(fields[11]) * NANO // _TICKS, int(fields[12]) * NANO // _TICKS
    status = {k: v.split() for k, _, v in
              (line.partition(":") for line in _read(Path(f"/proc/{target.pid}/status")).splitlines())}  # fmt: skip
    rss = int(status.get("VmRSS", ["0"])[0]) * 1024
    cpu = {"cpu_usage": {"total_usage": user + system, "usage_in_kernelmode": system, "usage_in_usermode": user},
           "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}  # fmt: skip
    memory = {"usage": rss, "stats": {"rss": rss}, "limit": target.memory_limit or _host_memory()}
    return cpu, memory, {"current": int(status.get("Threads", ["0"])[0])}


def _host_memory() -> int:
    meminfo = {k: v.split() for k, _, v in (line.partition(":") for line in _read(Path("/proc/meminfo")).splitlines())}
    return int(meminfo.get("MemTotal", ["0"])[0]) * 1024


def with_previous(current: dict[str, Any], previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """Docker's pairing: precpu_stats and preread are the previous sample's (empty for the first one)."""
    if previous is None:
        return {**current, "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}}
    return {**current, "precpu_stats": previous["cpu_stats"], "preread": previous["read"]}


def writable_size(state_dir: Path) -> int:
    """Bytes in a workload's own layer (its overlay upper dir), as Docker's SizeRw; 0 when it has none."""
    total = 0
    for root, _dirs, names in os.walk(state_dir / "upper"):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total
