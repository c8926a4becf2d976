"""IPAM cost per allocation across a whole /16: the first 1,000 and the last 1,000 of 65,533 endpoints.

Each allocation is what `hypr run` does for one endpoint: pick the address(es), insert the workload and the
endpoint that owns them, commit. `--family` picks the network: `dual` (the default: a /16 and a /64, both
addresses chosen in each transaction, IPv6 compared with IPv4 in the same run), `4` (IPv4 only) or `6` (IPv6
only, `EnableIPv4: false`: the /64 alone, as many endpoints).

A /64 has 2^64 addresses: the allocator must never walk it. Goals: choosing an address is flat (ratio last/first
close to 1) and <= 50 us; choosing an IPv6 address costs about what choosing the IPv4 one does (v6/v4 close to 1).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hypr import ipam, names
from hypr.models import Endpoint, Network, Workload
from hypr.services import network_plan
from hypr.services.addresses import allocate, allocate6
from hypr.services.validation import new_id
from hypr.state import Store

BATCH = 1000
COUNT = 65_533  # a /16's usable addresses


def plan(store: Store, family: str) -> Network:
    body = {
        "Name": "bench",
        "EnableIPv4": family != "6",
        "EnableIPv6": family != "4",
        "IPAM": {"Config": [] if family == "6" else [{"Subnet": "10.200.0.0/16"}]},
    }
    pool6 = ipam.DefaultPool6.parse("fd00:be::/48,64")
    network = network_plan.plan_network_create(body, store.snapshot(), network_plan.HostView(), pool6)
    with store.transaction() as tx:
        store.insert_network(tx, network)
    return network


def run(family: str) -> dict[str, list[float]]:
    """Seconds per allocation: choosing each family's address, and the whole endpoint transaction."""
    series: dict[str, list[float]] = {"choose IPv4": [], "choose IPv6": [], "whole transaction": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "hypr.db")
        network = plan(store, family)
        print(f"allocations: {COUNT} in {' + '.join(str(s) for s in (network.subnet, network.subnet6) if s)}")
        for n in range(COUNT):
            workload_id = new_id()
            start = time.perf_counter()
            with store.transaction() as tx:
                ip = ip6 = None
                if network.ipv4:
                    began = time.perf_counter()
                    ip = allocate(store, network)
                    series["choose IPv4"].append(time.perf_counter() - began)
                if network.ipv6:
                    began = time.perf_counter()
                    ip6 = allocate6(store, network)
                    series["choose IPv6"].append(time.perf_counter() - began)
                store.insert_workload(tx, Workload(id=workload_id, name=f"w{n}", image="host"), {})
                store.insert_endpoint(
                    tx, Endpoint(id=workload_id, workload_id=workload_id, network_id=network.id, ip=ip,
                                 mac="02:42:00:00:00:00", host_ifname=names.host_ifname(workload_id), position=0,
                                 ip6=ip6),
                )  # fmt: skip
            series["whole transaction"].append(time.perf_counter() - start)
        store.close()
    return {label: times for label, times in series.items() if times}


def report(series: dict[str, list[float]]) -> None:
    for label, times in series.items():
        first = statistics.median(times[:BATCH]) * 1e6
        last = statistics.median(times[-BATCH:]) * 1e6
        print(f"{label:>18}: first {BATCH} {first:6.1f} us, last {BATCH} {last:6.1f} us, ratio {last / first:.2f}")
    if "choose IPv4" in series and "choose IPv6" in series:
        ratio = statistics.median(series["choose IPv6"]) / statistics.median(series["choose IPv4"])
        print(f"IPv6 / IPv4 (medians of all, same transactions): {ratio:.2f}")
    print("goal: choosing an address flat and <= 50 us; IPv6 about the cost of IPv4")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("dual", "4", "6"), default="dual")
    report(run(parser.parse_args().family))
    return 0


if __name__ == "__main__":
    sys.exit(main())
