"""Issue #16: does one network create / rm (chains re-rendered) or connect / disconnect (elements only) cost more
nftables time with 1000 workloads than with 10? Root; runs in a throw-away netns (`unshare -n`).

For 20 networks and N workloads (one endpoint each, every other one publishing a port) the ruleset is rendered by
hypr's own planner and loaded; then the exact update scripts of the four operations are applied through
libnftables, interleaved (both sizes loaded side by side as two tables), and their medians printed per size, with the ratio 1000/10. `check` runs the same
script as a dry run (libnftables parses, fills its cache and evaluates, the kernel commits nothing), so
`apply - check` is about the kernel's commit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from hypr.models import Endpoint, Network, PortMapping, Snapshot, Workload
from hypr.reconcile import firewall, libnft
from hypr.reconcile.nft import update

NETWORKS = 20


def network(k: int) -> Network:
    return Network(id=f"{k:064x}", name=f"net{k}", bridge=f"vbr{k}", subnet=IPv4Network(f"10.{k}.0.0/16"),
                   gateway=IPv4Address(f"10.{k}.0.1"))  # fmt: skip


def endpoint(w: int, k: int, position: int = 0) -> Endpoint:
    ip = IPv4Address(f"10.{k}.0.0") + 2 + w
    return Endpoint(id=f"{w:032x}{k:032x}", workload_id=f"{w:064x}", network_id=f"{k:064x}", ip=ip,
                    mac=f"02:42:{k:02x}:00:{w >> 8:02x}:{w & 255:02x}", host_ifname=f"h{w}n{k}", position=position)  # fmt: skip


def snapshot(workloads: int) -> Snapshot:
    nets = tuple(network(k) for k in range(NETWORKS))
    wls = tuple(Workload(id=f"{w:064x}", name=f"w{w}", image="x", state="running") for w in range(workloads))
    eps = tuple(endpoint(w, w % NETWORKS) for w in range(workloads))
    ports = tuple(PortMapping(f"{w:064x}", IPv4Address("0.0.0.0"), 20000 + w, 80) for w in range(0, workloads, 2))
    return Snapshot(networks=nets, workloads=wls, endpoints=eps, ports=ports)


def scripts(base: Snapshot, settings: firewall.FirewallSettings) -> dict[str, str]:
    """The update scripts of: network create, network rm, connect, disconnect (each undoes the one before)."""
    more = replace(base, networks=(*base.networks, network(NETWORKS)))
    connected = replace(base, endpoints=(*base.endpoints, endpoint(0, NETWORKS - 1, 1)))
    t0, t1, t2 = (firewall.tables(s, settings) for s in (base, more, connected))
    out = {"create": update(t0, t1), "rm": update(t1, t0), "connect": update(t0, t2), "disconnect": update(t2, t0)}
    assert all(out.values()), out
    return out  # type: ignore[return-value]


def timed(text: str, dry_run: bool = False) -> float:
    start = time.perf_counter()
    libnft.run(text, dry_run=dry_run)
    return (time.perf_counter() - start) * 1000


def child(sizes: list[int], runs: int) -> None:
    """Both sizes loaded at once, as two tables (`hypr<size>`) in this netns, and timed in turn."""
    results: dict[tuple[int, str], list[float]] = {}
    texts: dict[int, dict[str, str]] = {}
    for size in sizes:
        settings = firewall.FirewallSettings(table=f"hypr{size}")
        firewall.apply(firewall.render(snapshot(size), settings))
        texts[size] = scripts(snapshot(size), settings)
    for _ in range(runs):
        for name in ("create", "rm", "connect", "disconnect"):
            for size in sizes:
                results.setdefault((size, name + " check"), []).append(timed(texts[size][name], dry_run=True))
                results.setdefault((size, name), []).append(timed(texts[size][name]))
    names = [k for s, k in results if s == sizes[0]]
    print(f"{'operation':<20}" + "".join(f"{s:>10}" for s in sizes) + "   ratio (ms, medians)")
    for name in names:
        meds = [statistics.median(results[(s, name)]) for s in sizes]
        print(f"{name:<20}" + "".join(f"{m:>10.2f}" for m in meds) + f"   {meds[-1] / meds[0]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--sizes", default="10,1000")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        child(sizes, args.runs)
        return
    print(f"load average {os.getloadavg()}")
    cmd = ["unshare", "-n", sys.executable, __file__, "--child", "--runs", str(args.runs), "--sizes", args.sizes]
    subprocess.run(cmd, check=True, timeout=1200)


if __name__ == "__main__":
    main()
