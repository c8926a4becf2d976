"""IPv6 IPAM cost per allocation on a dual-stack network (/16 + /64): the first 1,000 and the last 1,000 of 20,000,
against the IPv4 choice measured in the same run, in the same transactions.

A /64 has 2^64 addresses: the allocator must never walk it. Goal: choosing an IPv6 address is flat (ratio last/first
close to 1) and costs about what choosing the IPv4 one does (ratio v6/v4 close to 1).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from hypr import ipam, names
from hypr.models import Endpoint, Workload
from hypr.services import network_plan
from hypr.services.addresses import allocate, allocate6
from hypr.services.validation import new_id
from hypr.state import Store

BATCH = 1000
COUNT = 20_000


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "hypr.db")
        network = network_plan.plan_network_create(
            {"Name": "bench", "EnableIPv6": True, "IPAM": {"Config": [{"Subnet": "10.200.0.0/16"}]}},
            store.snapshot(),
            network_plan.HostView(),
            ipam.DefaultPool6.parse("fd00:be::/48,64"),
        )
        with store.transaction() as tx:
            store.insert_network(tx, network)
        v4: list[float] = []
        v6: list[float] = []
        for n in range(COUNT):
            workload_id = new_id()
            with store.transaction() as tx:
                start = time.perf_counter()
                ip = allocate(store, network)
                middle = time.perf_counter()
                ip6 = allocate6(store, network)
                v6.append(time.perf_counter() - middle)
                v4.append(middle - start)
                store.insert_workload(tx, Workload(id=workload_id, name=f"w{n}", image="host"), {})
                store.insert_endpoint(
                    tx, Endpoint(id=workload_id, workload_id=workload_id, network_id=network.id, ip=ip,
                                 mac="02:42:00:00:00:00", host_ifname=names.host_ifname(workload_id), position=0,
                                 ip6=ip6),
                )  # fmt: skip
        print(f"allocations: {COUNT} in {network.subnet} + {network.subnet6}")
        for label, series in (("IPv4", v4), ("IPv6", v6)):
            first = statistics.median(series[:BATCH]) * 1e6
            last = statistics.median(series[-BATCH:]) * 1e6
            print(
                f"choose {label}: first {BATCH} {first:6.1f} us, last {BATCH} {last:6.1f} us, ratio {last / first:.2f}"
            )
        print(f"IPv6 / IPv4 (medians of all): {statistics.median(v6) / statistics.median(v4):.2f}")
        print("goal: IPv6 flat, and about the cost of IPv4")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
