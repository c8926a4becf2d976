"""TCP throughput to a workload through its published port vs directly to its IP, in one run (root).

Goal (issue 4): published / direct >= 0.95, i.e. DNAT costs at most 5 %.

A real hyprd runs in a throw-away namespace (the test harness's), with a remote client namespace behind a veth
(tests/integration/topology.py). One busybox workload publishes `15201:5201`; iperf3 serves in its namespace.
From the daemon's namespace, iperf3 measures, alternating so that drift in machine load hits both alike:

- direct:    host -> workload IP:5201         (routed over the bridge, no NAT)
- published: host -> 198.18.1.1:15201          (the host's own address: output-hook DNAT, same path otherwise)

and, for the record, the remote client -> 198.18.1.1:15201 (prerouting DNAT + forward; one more veth hop, so it
is reported but not part of the ratio). Medians of RUNS runs of SECONDS each; the ratio is given from the medians
and as the median of per-pair ratios (each published run right after its direct run cancels slow load drift).

    sudo .venv/bin/python bench/ports.py [--runs 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package: harness and topology

from tests.integration.harness import Hyprd, netns, wait_until
from tests.integration.topology import HOST_LAN, enter, start_workloads, topology

GUEST_PORT = 5201
HOST_PORT = 15201


def iperf(ns: str, address: str, port: int, seconds: float) -> float:
    """Gbit/s received by the server in one iperf3 run from namespace `ns`."""
    out = enter(ns, "iperf3", "-J", "-c", address, "-p", str(port), "-t", str(seconds), timeout=seconds + 30).stdout
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    root = Path(tempfile.mkdtemp(prefix="hypr-bench-ports-"))
    with netns("hyprbench") as host, topology(host) as topo:
        daemon = Hyprd(ns=host, root=root)
        daemon.start()
        server: subprocess.Popen[bytes] | None = None
        try:
            bindings = {"iperf": {f"{GUEST_PORT}/tcp": [{"HostPort": str(HOST_PORT)}]}}
            [workload] = start_workloads(daemon, ("iperf", "bridge"), bindings=bindings)
            server = subprocess.Popen(
                ["nsenter", f"--net={workload.netns}", "iperf3", "-s", "-p", str(GUEST_PORT)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_until(lambda: f":{GUEST_PORT} " in enter(workload.netns, "ss", "-Htln").stdout, "iperf3 to listen", 10)
            results: dict[str, list[float]] = {"direct": [], "published": [], "remote published": []}
            for _ in range(args.runs):
                results["direct"].append(iperf(host, workload.ip, GUEST_PORT, args.seconds))
                results["published"].append(iperf(host, HOST_LAN, HOST_PORT, args.seconds))
                results["remote published"].append(iperf(topo.client, HOST_LAN, HOST_PORT, args.seconds))
        finally:
            if server is not None:
                server.kill()
                server.wait()
            with daemon.client() as client:
                for container in client.containers(all=True):
                    client.remove(container["Id"], force=True)
            daemon.stop()
            shutil.rmtree(root, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in results.items()}
    for name, values in results.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:>17}: median {medians[name]:6.2f} Gbit/s   runs: {runs}")
    ratio = medians["published"] / medians["direct"]
    # Each published run follows its direct run within seconds: the ratio per pair cancels slow load drift.
    paired = statistics.median(p / d for p, d in zip(results["published"], results["direct"], strict=True))
    print(
        f"published / direct = {ratio:.3f} (medians), {paired:.3f} (median of paired runs); goal >= 0.95: "
        f"{'met' if min(ratio, paired) >= 0.95 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
