"""Median ms to create a sandbox's network (netns + veth on the bridge + address + routes) at 10 and at 500
workloads on one bridge, against one `ip` process per step, measured in the same run.

Runs as root inside a throw-away "host" namespace `hyprbench-<pid>` with one bridge; removes everything after.
    .venv/bin/python bench/attach.py [--samples 25] [--big 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

from hypr.runtime import _libc
from hypr.runtime.base import Attachment, LaunchSpec
from hypr.runtime.sandbox import SandboxRuntime

BRIDGE = "vbr0"
GATEWAY = IPv4Address("10.96.0.1")


def spec_for(root: Path, n: int) -> LaunchSpec:
    ip = GATEWAY + 1 + n
    att = Attachment(f"hvb{n}", BRIDGE, "eth0", ip, 16, GATEWAY, "02:42:" + ":".join(f"{b:02x}" for b in ip.packed))
    return LaunchSpec(f"w{n}", f"w{n}", f"w{n}", "host", ("true",), {}, (att,), GATEWAY, root / f"w{n}", "hypr:bench")


def ip_per_step(host: str, n: int) -> None:
    """The baseline: what a shell script would do, one `ip` process per step."""
    ns, addr = f"{host}-ip{n}", GATEWAY + 60000 + n
    for argv in (
        ["netns", "add", ns],
        ["link", "add", f"hvi{n}", "type", "veth", "peer", "name", "eth0", "netns", ns],
        ["link", "set", f"hvi{n}", "master", BRIDGE, "up"],
        ["-n", ns, "addr", "add", f"{addr}/16", "dev", "eth0"],
        ["-n", ns, "link", "set", "eth0", "up"],
        ["-n", ns, "link", "set", "lo", "up"],
        ["-n", ns, "route", "add", "default", "via", str(GATEWAY)],
    ):
        subprocess.run(["ip", *argv], check=True)


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


class Bench:
    def __init__(self, host: str, root: Path) -> None:
        self.host, self.root = host, root
        self.runtime = SandboxRuntime(image_cache=root / "images")
        self.specs: list[LaunchSpec] = []
        self.ip_made: list[int] = []

    def add(self) -> float:
        spec = spec_for(self.root, len(self.specs))
        self.specs.append(spec)
        return timed(lambda: self.runtime.create(spec))

    def add_ip(self) -> float:
        n = len(self.ip_made)
        self.ip_made.append(n)
        return timed(lambda: ip_per_step(self.host, n))

    def measure_at(self, population: int, samples: int) -> tuple[float, float]:
        while len(self.specs) < population:
            self.add()
        ours = statistics.median(self.add() for _ in range(samples))
        baseline = statistics.median(self.add_ip() for _ in range(samples))
        return ours, baseline

    def cleanup(self) -> None:
        for spec in self.specs:
            self.runtime.delete(spec)
        for n in self.ip_made:
            subprocess.run(["ip", "netns", "delete", f"{self.host}-ip{n}"], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=25)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--big", type=int, default=500)
    args = parser.parse_args()
    host = f"hyprbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", host], check=True)
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    bench = Bench(host, Path(tempfile.mkdtemp(prefix="hypr-bench-")))
    try:
        subprocess.run(
            ["ip", "-n", host, "-batch", "-"],
            input=f"link add {BRIDGE} type bridge\naddr add {GATEWAY}/16 dev {BRIDGE}\nlink set {BRIDGE} up\n",
            text=True,
            check=True,
        )
        target = os.open(f"/run/netns/{host}", os.O_RDONLY)
        _libc.setns(target, _libc.CLONE_NEWNET)
        os.close(target)
        small = bench.measure_at(args.small, args.samples)
        big = bench.measure_at(args.big, args.samples)
        print(f"{'workloads':>10} {'hypr ms':>9} {'ip/step ms':>11} {'speed-up':>9}")
        for population, (ours, baseline) in ((args.small, small), (args.big, big)):
            print(f"{population:>10} {ours:>9.2f} {baseline:>11.2f} {baseline / ours:>8.1f}x")
        print(f"ratio {args.big}/{args.small}: hypr {big[0] / small[0]:.2f}, ip/step {big[1] / small[1]:.2f}")
    finally:
        try:
            bench.cleanup()
        finally:
            _libc.setns(back, _libc.CLONE_NEWNET)
            subprocess.run(["ip", "netns", "delete", host], check=False)
            subprocess.run(["rm", "-rf", str(bench.root)], check=False)


if __name__ == "__main__":
    main()
