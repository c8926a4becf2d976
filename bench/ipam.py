"""IPAM cost per allocation across a whole /16: the first 1,000 and the last 1,000 of 65,533.

Each allocation is what `hypr run` does for one endpoint: pick the address, insert the workload and the endpoint
that owns it, commit. Goal: flat (ratio last/first close to 1) and <= 50 us each.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from hypr import names
from hypr.models import Endpoint, Workload
from hypr.services import network_plan
from hypr.services.addresses import allocate
from hypr.services.validation import new_id
from hypr.state import Store

BATCH = 1000


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "hypr.db")
        network = network_plan.plan_network_create(
            {"Name": "bench", "IPAM": {"Config": [{"Subnet": "10.200.0.0/16"}]}},
            store.snapshot(),
            network_plan.HostView(),
        )
        with store.transaction() as tx:
            store.insert_network(tx, network)
        capacity = network.subnet.num_addresses - 3
        timings: list[float] = []  # the whole endpoint transaction
        choosing: list[float] = []  # choosing the address alone (the IPAM part)
        for n in range(capacity):
            workload_id = new_id()
            start = time.perf_counter()
            with store.transaction() as tx:
                chose = time.perf_counter()
                ip = allocate(store, network)
                choosing.append(time.perf_counter() - chose)
                store.insert_workload(tx, Workload(id=workload_id, name=f"w{n}", image="host"), {})
                store.insert_endpoint(
                    tx, Endpoint(id=workload_id, workload_id=workload_id, network_id=network.id, ip=ip,
                                 mac="02:42:00:00:00:00", host_ifname=names.host_ifname(workload_id), position=0),
                )  # fmt: skip
            timings.append(time.perf_counter() - start)
        print(f"allocations: {capacity} in {network.subnet}")
        for label, series in (("choose address", choosing), ("whole endpoint transaction", timings)):
            first = statistics.median(series[:BATCH]) * 1e6
            last = statistics.median(series[-BATCH:]) * 1e6
            print(f"{label:>27}: first {BATCH} {first:6.1f} us, last {BATCH} {last:6.1f} us, ratio {last / first:.2f}")
        print("goal: choosing an address flat and <= 50 us")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
