"""Time to apply the firewall with 10, 100 and 1000 published ports (root; runs in a throw-away netns).

Goal (issue 4): 1000 ports apply in < 1 s, and one more port costs the same however many exist already.
Each size is rendered once and applied RUNS times from inside the namespace; we report the median, and the
marginal cost per port between sizes (flat marginal cost = apply cost does not grow per rule).

    sudo .venv/bin/python bench/rules.py [--runs 11]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
from ipaddress import IPv4Network

from hypr.models import Endpoint, Network, PortMapping, Snapshot, Workload
from hypr.reconcile.firewall import render

SIZES = (10, 100, 1000)
FIRST_PORT = 20000

CHILD = """
import json, sys, time
from hypr.reconcile import firewall
text, runs = sys.stdin.read(), int(sys.argv[1])
times = []
for _ in range(runs):
    start = time.perf_counter()
    firewall.apply(text)
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def snapshot(ports: int) -> Snapshot:
    """One network, 50 workloads, `ports` published ports spread over them."""
    subnet = IPv4Network("192.0.2.0/24")
    net = Network(id="0" * 64, name="bridge", bridge="vbr0", subnet=subnet, gateway=subnet.network_address + 1)
    workloads = tuple(Workload(id=f"{i:064x}", name=f"w{i}", image="alpine") for i in range(1, 51))
    endpoints = tuple(
        Endpoint(
            id=w.id,
            workload_id=w.id,
            network_id=net.id,
            ip=subnet.network_address + 1 + i,
            mac=f"02:42:c0:00:02:{1 + i:02x}",
            host_ifname=f"hv{i:04d}",
            position=0,
        )
        for i, w in enumerate(workloads, start=1)
    )
    mappings = tuple(
        PortMapping(workloads[i % len(workloads)].id, subnet.network_address, FIRST_PORT + i, 80) for i in range(ports)
    )
    return Snapshot(networks=(net,), workloads=workloads, endpoints=endpoints, ports=mappings)


def apply_times(text: str, runs: int) -> list[float]:
    ns = f"hyprfw-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", CHILD, str(runs)],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        times: list[float] = json.loads(done.stdout)
        return times
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False, timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    medians: dict[int, float] = {}
    print(f"{'ports':>6} {'script lines':>12} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for size in SIZES:
        text = render(snapshot(size))
        times = apply_times(text, args.runs)
        medians[size] = statistics.median(times)
        print(
            f"{size:>6} {text.count(chr(10)):>12} {medians[size] * 1e3:>10.2f}"
            f" {min(times) * 1e3:>8.2f} {max(times) * 1e3:>8.2f}"
        )
    for low, high in itertools.pairwise(SIZES):
        marginal = (medians[high] - medians[low]) / (high - low)
        print(f"marginal cost per port, {low}->{high}: {marginal * 1e6:.1f} us")
    verdict = "PASS" if medians[SIZES[-1]] < 1.0 else "FAIL"
    print(f"{SIZES[-1]} ports in {medians[SIZES[-1]] * 1e3:.1f} ms: {verdict} (goal < 1000 ms)")


if __name__ == "__main__":
    main()
