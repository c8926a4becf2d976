"""Cost per operation as workloads grow (goal: flat), start-up at scale, and the daemon's memory.

Runs two hyprd side by side, each in a throw-away namespace with its own directories (tests/integration/harness.py):
one with `--base` workloads (one published port each) on one network, one with `--size` workloads on `--networks`
networks. It measures the median wall time of: run -d + rm -f of a sandbox (`busybox sleep`), the same with `-p`,
network create + rm, and connect + disconnect, taking the samples of the two daemons in turns (small, big, big,
small, ...) so that both halves of a ratio see the same load on a shared machine. Then it restarts the big one under
a ping flood between two workloads, timing until `_ping` answers and every workload's name resolves, and reads the
RSS of hyprd and of the supervisors.
    .venv/bin/python bench/scale.py [--size 1000] [--networks 20] [--base 10] [--samples 9] [--profile FILE]
Populating 1000 sandboxes takes minutes on a small machine: develop with --size 100.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from goals import goal_line

from hypr.client import Client
from hypr.dns import wire
from hypr.runtime import _libc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.harness import HYPRD, Hyprd, netns, wait_until

RATIO_GOAL = 1.3  # operation latency at --size vs at --base
STARTUP_GOAL = 3.0  # seconds from exec to _ping + every name resolving
RSS_GOAL = 150 * 1024  # kB at --size (the goal is stated for 1000 workloads)
FIRST_PORT = 20000
PROFILER = Path(__file__).with_name("_profiled_hyprd.py")


class BenchDaemon(Hyprd):
    """The harness daemon, optionally under the worker-thread profiler, quiet (INFO) as in production."""

    profile: str = ""

    @property
    def env(self) -> dict[str, str]:
        extra = {"HYPR_PROFILE": self.profile} if self.profile else {}
        return {**super().env, "HYPR_LOG_LEVEL": "INFO", **extra}

    def start(self, *, wait: bool = True) -> None:
        argv = [sys.executable, str(PROFILER)] if self.profile else [HYPRD]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*self._enter(), *argv], env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        if wait:
            wait_until(self._ready, f"hyprd to answer /_ping (log: {self.log})", timeout=120)

    def pid(self) -> int:
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0]) if children else self.proc.pid  # nsenter execs hyprd: usually the same pid


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def run_body(network: str, port: int | None = None) -> dict[str, object]:
    host: dict[str, object] = {"NetworkMode": network}
    body: dict[str, object] = {"Image": "busybox", "Cmd": ["sleep", "100000"], "HostConfig": host}
    if port is not None:
        body["ExposedPorts"] = {"80/tcp": {}}
        host["PortBindings"] = {"80/tcp": [{"HostIp": "", "HostPort": str(port)}]}
    return body


def populate(client: Client, have: int, want: int, networks: int) -> None:
    """Workloads w<have>..w<want-1>, round-robin over net0..net<networks-1>, each publishing one port."""
    existing = {n["Name"] for n in client.networks()}
    for k in range(networks):
        if f"net{k}" not in existing:
            client.create_network({"Name": f"net{k}"})
    began = time.monotonic()
    for i in range(have, want):
        client.start(client.create_container(run_body(f"net{i % networks}", FIRST_PORT + i), f"w{i}"))
        if (i + 1) % 100 == 0:
            print(f"  {i + 1} workloads ({time.monotonic() - began:.0f} s)", flush=True)


def operations(client: Client) -> dict[str, Callable[[int], None]]:
    client.start(client.create_container(run_body("net0"), "probe"))
    if not any(n["Name"] == "side" for n in client.networks()):
        client.create_network({"Name": "side"})

    def run_rm(i: int) -> None:
        client.start(client.create_container(run_body("net0"), f"m{i}"))
        client.remove(f"m{i}", force=True)

    def run_p_rm(i: int) -> None:
        client.start(client.create_container(run_body("net0", FIRST_PORT - 1), f"p{i}"))
        client.remove(f"p{i}", force=True)

    def network_create_rm(i: int) -> None:
        client.create_network({"Name": f"extra{i}"})
        client.remove_network(f"extra{i}")

    def connect_disconnect(i: int) -> None:
        client.connect("side", "probe")
        client.disconnect("side", "probe")

    return {"run+rm": run_rm, "run -p+rm": run_p_rm, "network create+rm": network_create_rm,
            "connect+disconnect": connect_disconnect}  # fmt: skip


def measure(clients: tuple[Client, Client], samples: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median ms of each operation on each daemon, (small, big). Samples alternate between the daemons, the one
    going first changing every round, so that both see the same moments of a noisy machine."""
    ops = [operations(client) for client in clients]
    times: list[dict[str, list[float]]] = [{name: [] for name in ops[0]}, {name: [] for name in ops[0]}]
    for name in ops[0]:
        for i in range(samples + 1):  # the first round warms caches: not counted
            for side in (0, 1) if i % 2 else (1, 0):
                began = time.perf_counter()
                ops[side][name](i)
                if i:
                    times[side][name].append((time.perf_counter() - began) * 1000)
    for client in clients:
        client.remove("probe", force=True)
    small, big = ({name: statistics.median(t) for name, t in side.items()} for side in times)
    return small, big


def goal(what: str, value: float, limit: float, unit: str = "x", note: str = "") -> None:
    """One GOAL line (bench/goals.py), with what the figure is made of after it."""
    line = goal_line(what, value, limit, unit=unit)
    print(f"{line}  [{note}]" if note else line, flush=True)


def in_netns(ns: str) -> int:
    """Enter `ns` (this thread); returns a descriptor of the namespace we came from."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    _libc.setns(fd, _libc.CLONE_NEWNET)
    os.close(fd)
    return back


def names_resolve(gateways: dict[str, str], size: int, networks: int) -> bool:
    """Every w<i>.hypr answered with an address, asked from the host at its network's gateway."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        for i in range(size):
            # id, RD, one question; A IN (bench/dns.py's dnspython would shadow this script's `dns` import)
            query = struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + wire.encode_name(f"w{i}.hypr") + b"\0\1\0\1"
            try:
                sock.sendto(query, (gateways[f"net{i % networks}"], 53))
                reply = sock.recv(4096)
            except OSError:
                return False
            if wire.rcode_of(reply) != 0 or struct.unpack("!H", reply[6:8])[0] == 0:
                return False
    return True


def restart_under_flood(daemon: BenchDaemon, client: Client, size: int, networks: int) -> tuple[float, str]:
    """Seconds from exec to `_ping` + every name resolving; the flood's transmitted/received between two
    workloads across the restart (stop with SIGKILL: nothing cleans up on the way out)."""
    a, b = client.container("w0"), client.container(f"w{networks}")  # both on net0
    b_ip = b["NetworkSettings"]["Networks"]["net0"]["IPAddress"]
    gateways = {n["Name"]: n["IPAM"]["Config"][0]["Gateway"] for n in client.networks() if n["Name"].startswith("net")}
    flood = subprocess.Popen(
        ["nsenter", f"--net=/proc/{a['State']['Pid']}/ns/net", "ping", "-q", "-i", "0.002", "-c", "4000", "-W", "2",
         b_ip],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1)  # the flood is under way before the daemon goes
    daemon.stop(signal.SIGKILL)
    began = time.monotonic()
    daemon.start(wait=False)
    back = in_netns(daemon.ns)
    try:
        wait_until(daemon._ready, "hyprd to answer /_ping", timeout=120, interval=0.01)
        print(f"  restart: _ping after {time.monotonic() - began:.2f} s", flush=True)
        wait_until(lambda: names_resolve(gateways, size, networks), "every name to resolve", timeout=120, interval=0.01)
    finally:
        _libc.setns(back, _libc.CLONE_NEWNET)
        os.close(back)
    took = time.monotonic() - began
    for line in daemon.log.read_text().splitlines()[-400:]:
        if any(what in line for what in ("full reconcile", "re-adopted", "hyprd ready", "starting", "database read")):
            print("  hyprd:", line, flush=True)
    out, _ = flood.communicate(timeout=120)
    stats = next((line for line in out.splitlines() if "transmitted" in line), out.strip())
    return took, stats


def supervisor_memory(client: Client) -> tuple[float, float]:
    """Median RSS and PSS (kB) of the per-sandbox supervisors (the parent of each workload's main process): PSS
    shares the interpreter's pages among them, so it is what each one really adds."""
    rss, pss = [], []
    for summary in client.containers()[:20]:
        pid = client.container(summary["Id"])["State"]["Pid"]
        status = Path(f"/proc/{pid}/status").read_text()
        ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        rss.append(rss_kb(ppid))
        rollup = Path(f"/proc/{ppid}/smaps_rollup").read_text().splitlines()
        pss.append(next(int(line.split()[1]) for line in rollup if line.startswith("Pss:")))
    return (statistics.median(rss), statistics.median(pss)) if rss else (0.0, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--networks", type=int, default=20)
    parser.add_argument("--base", type=int, default=10)
    parser.add_argument("--samples", type=int, default=9)
    parser.add_argument("--profile", default="", help="write the worker thread's cProfile stats here")
    parser.add_argument("--no-restart", action="store_true", help="skip the restart under a ping flood")
    args = parser.parse_args()
    roots = [Path(tempfile.mkdtemp(prefix="hypr-scale-")) for _ in range(2)]
    socket.setdefaulttimeout(None)
    try:
        with netns("hyprscale") as small_ns, netns("hyprscale") as big_ns:
            small_daemon, daemon = BenchDaemon(ns=small_ns, root=roots[0]), BenchDaemon(ns=big_ns, root=roots[1])
            daemon.profile = args.profile
            try:
                small_daemon.start()
                daemon.start()
                with Client(f"unix://{small_daemon.socket}", timeout=600) as small_client, \
                        Client(f"unix://{daemon.socket}", timeout=600) as client:  # fmt: skip
                    populate(small_client, 0, args.base, 1)
                    print(f"populating {args.size} workloads on {args.networks} networks", flush=True)
                    populate(client, 0, args.size, args.networks)
                    small, big = measure((small_client, client), args.samples)
                    rss_small, rss_big = rss_kb(small_daemon.pid()), rss_kb(daemon.pid())
                    shim_rss, shim_pss = supervisor_memory(client)
                    for name in small:
                        goal(f"scale: {name}, {args.size} vs {args.base} workloads (median)", big[name] / small[name],
                             RATIO_GOAL, note=f"{small[name]:.0f} -> {big[name]:.0f} ms")  # fmt: skip
                    per = (rss_big - rss_small) / (args.size - args.base)
                    goal(f"scale: hyprd RSS at {args.size} workloads", rss_big / 1024, RSS_GOAL / 1024, "MB",
                         f"{per:.1f} kB per workload; supervisor RSS {shim_rss / 1024:.1f} MB, PSS {shim_pss / 1024:.1f} MB each")  # fmt: skip
                    for i in range(args.base):
                        small_client.remove(f"w{i}", force=True)
                    small_daemon.stop()
                    if not args.no_restart and not args.profile:
                        took, stats = restart_under_flood(daemon, client, args.size, args.networks)
                        lost = _lost(stats)
                        goal(f"scale: restart at {args.size} workloads to _ping + every name", took, STARTUP_GOAL,
                             " s", f"flood: {stats}")  # fmt: skip
                        goal("scale: ping flood packets lost across the restart", lost, 0, "", stats)
                    for i in range(args.size):
                        client.remove(f"w{i}", force=True)
            finally:
                small_daemon.stop()
                daemon.stop()
    finally:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


def _lost(stats: str) -> int:
    """Packets lost, from ping's `N packets transmitted, M received` (no such line counts as all lost)."""
    try:
        sent, received = (int(part.split()[0]) for part in stats.split(",")[:2])
    except (ValueError, IndexError):
        return 10**9
    return sent - received


if __name__ == "__main__":
    main()
