"""hypr's DNS server against dnsmasq, same 200 names, same machine, one run: dnsperf on loopback.

    .venv/bin/python bench/dns.py [--seconds 10] [--clients 4] [--rounds 3]

Prints queries per second and p99 latency for both, the ratio hypr/dnsmasq for local names, and hypr's qps for
forwarded names answered from its cache (a fake upstream on loopback), measured in every round alongside the
local names. Goals (issue #16): qps >= 1.0x dnsmasq's with p99 <= dnsmasq's; forwarded names from the cache
within 10% of local names. Also the server's CPU time per answered
query (user + system, from /proc): on a shared machine qps swing with the load, CPU per query much less. As root,
also hypr asked from a workload's address: bare names, and names under the host's search domain (`w001.corp.test`,
answered as `w001`).
Needs dnsperf and dnsmasq. As root it runs in a private network namespace of its own (`unshare --net`), so the
host's namespace is never touched; otherwise it uses 127.0.77.0/24 on the current one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from dnslib import DNSRecord
from goals import report

from hypr.dns import DnsServer, build_records
from hypr.dns.testing import FakeUpstream
from hypr.models import Endpoint, Network, Snapshot, Workload

NAMES = 200
SUBNET = IPv4Network("10.77.0.0/16")
HYPR_ADDR, DNSMASQ_ADDR, UPSTREAM_ADDR = "127.0.77.1", "127.0.77.2", "127.0.77.3"
PORT = 41053
HOST_SEARCH = ("corp.test",)  # the host's search list, as the daemon reads it from resolv.conf


def names() -> list[str]:
    return [f"w{i:03d}" for i in range(NAMES)]


def address(i: int) -> IPv4Address:
    return SUBNET.network_address + 2 + i


def snapshot() -> Snapshot:
    network = Network("b" * 64, "bench", "vbr9", SUBNET, SUBNET.network_address + 1)
    workloads = tuple(Workload(f"{i:064x}", name, "img", state="running") for i, name in enumerate(names()))
    endpoints = tuple(
        Endpoint(f"{i:064x}", w.id, network.id, address(i), "02:00:00:00:00:00", "hv", 0)
        for i, w in enumerate(workloads)
    )
    return Snapshot(networks=(network,), workloads=workloads, endpoints=endpoints)


# -- the hypr server, in its own process (as hyprd would run it) ---------------------------------------------


async def serve() -> None:
    fake = await FakeUpstream(UPSTREAM_ADDR, PORT, "answer").start()
    server = DnsServer([(UPSTREAM_ADDR, PORT)])
    await server.set_records(build_records(snapshot(), HOST_SEARCH))
    await server.set_listen_addresses({IPv4Address(HYPR_ADDR)}, PORT)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()
        await fake.close()


def run_server(use_uvloop: bool) -> None:
    if use_uvloop:
        import uvloop

        uvloop.run(serve())
    else:
        asyncio.run(serve())


# -- measuring ---------------------------------------------------------------------------------------------------


@dataclass
class Result:
    qps: float
    p99_ms: float
    lost: int
    cpu_us: float = float("nan")  # the server's CPU time per completed query
    completed: int = 0


def cpu_seconds(pid: int) -> float:
    """User + system time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, host: str, datafile: Path, seconds: int, clients: int, source: str | None = None) -> Result:
    before = cpu_seconds(pid)
    result = dnsperf(host, datafile, seconds, clients, source)
    used = cpu_seconds(pid) - before
    result.cpu_us = used / max(1, result.completed) * 1e6
    return result


def wait_ready(host: str, name: str, deadline: float) -> None:
    # dnslib, not dnspython: this file is named dns.py and would shadow the `dns` package.
    while time.monotonic() < deadline:
        try:
            reply = DNSRecord.parse(DNSRecord.question(name).send(host, PORT, timeout=0.2))
            if reply.header.rcode == 0 and reply.rr:
                return
        except (TimeoutError, ConnectionRefusedError):
            continue  # not up yet: ask again until the deadline
    raise RuntimeError(f"{host}:{PORT} did not answer {name}")


def dnsperf(host: str, datafile: Path, seconds: int, clients: int, source: str | None = None) -> Result:
    out = subprocess.run(
        [
            "dnsperf",
            *(["-a", source] if source else []),
            "-s",
            host,
            "-p",
            str(PORT),
            "-d",
            str(datafile),
            "-l",
            str(seconds),
            "-c",
            str(clients),
            "-q",
            "100",
            "-v",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    # -v prints one line per answer ending in its latency in seconds
    latencies = sorted(float(m) for m in re.findall(r"^> \S+ \S+ \S+ ([\d.]+)$", out, re.M))
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")
    result = Result(qps, p99, lost)
    result.completed = completed
    return result


def median(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.qps)[len(results) // 2]


def query_file(directory: Path, suffix: str, prefix: str = "") -> Path:
    path = directory / f"queries{suffix}.txt"
    path.write_text("".join(f"{prefix}{n}{suffix} A\n" for n in names()))
    return path


def start_dnsmasq(directory: Path) -> subprocess.Popen[bytes]:
    hosts = directory / "hosts"
    hosts.write_text("".join(f"{address(i)} {n}.hypr\n" for i, n in enumerate(names())))
    argv = [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        f"--addn-hosts={hosts}",
        f"--listen-address={DNSMASQ_ADDR}",
        "--bind-interfaces",
        f"--port={PORT}",
        "--local-ttl=5",
        "--cache-size=10000",
        "--pid-file=",
        "--user=root",
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run_server(not args.no_uvloop)
        return
    if os.geteuid() == 0 and os.environ.get("HYPR_BENCH_ISOLATED") != "1":
        # A private network namespace that vanishes with us: nothing is bound on the host's loopback.
        script = 'ip link set lo up && exec "$@"'
        argv = ["unshare", "--net", "sh", "-c", script, "sh", sys.executable, __file__, *sys.argv[1:]]
        sys.exit(subprocess.run(argv, env={**os.environ, "HYPR_BENCH_ISOLATED": "1"}, check=False).returncode)
    for tool in ("dnsperf", "dnsmasq"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    extra = ["--no-uvloop"] if args.no_uvloop else []
    with tempfile.TemporaryDirectory(prefix="hypr-bench-") as tmp:
        directory = Path(tmp)
        local, forwarded = query_file(directory, ".hypr"), query_file(directory, ".example", "ext-")
        hypr = subprocess.Popen([sys.executable, __file__, "--serve", *extra], env=dict(os.environ))
        dnsmasq = start_dnsmasq(directory)
        try:
            deadline = time.monotonic() + 10
            wait_ready(HYPR_ADDR, "w000.hypr", deadline)
            wait_ready(DNSMASQ_ADDR, "w000.hypr", deadline)
            for name in names():  # warm hypr's forward cache, as a running daemon's would be
                wait_ready(HYPR_ADDR, f"ext-{name}.example", deadline + 10)
            # Alternating rounds, medians: the machine is shared, and one noisy burst must not decide the ratio.
            rounds = [
                (
                    measured(hypr.pid, HYPR_ADDR, local, args.seconds, args.clients),
                    measured(dnsmasq.pid, DNSMASQ_ADDR, local, args.seconds, args.clients),
                    measured(hypr.pid, HYPR_ADDR, forwarded, args.seconds, args.clients),
                )
                for _ in range(args.rounds)
            ]
            ours, theirs = median([r[0] for r in rounds]), median([r[1] for r in rounds])
            cached = median([r[2] for r in rounds])
            from_workload: list[tuple[str, Result]] = []
            if os.environ.get("HYPR_BENCH_ISOLATED") == "1":  # our own namespace: a workload's address on lo
                source = str(address(0))
                subprocess.run(["ip", "addr", "add", f"{source}/32", "dev", "lo"], check=True)
                bare, searched = query_file(directory, ""), query_file(directory, "." + HOST_SEARCH[0])
                for label, datafile in (("bare names", bare), (f"name.{HOST_SEARCH[0]}", searched)):
                    from_workload.append(
                        (label, measured(hypr.pid, HYPR_ADDR, datafile, args.seconds, args.clients, source))
                    )
        finally:
            stop(hypr)
            stop(dnsmasq)
    # Each round measures hypr and dnsmasq back to back: their ratio within a round is what load shifts least.
    qps = statistics.median(a.qps / b.qps for a, b, _ in rounds)
    p99 = statistics.median(a.p99_ms / b.p99_ms for a, b, _ in rounds)
    forwarded = statistics.median(c.qps / a.qps for a, _, c in rounds)
    loop = "asyncio" if args.no_uvloop else "uvloop"
    print(f"local names ({NAMES}, {args.rounds} x {args.seconds}s each, {args.clients} clients, hypr on {loop}):")
    for i, (a, b, c) in enumerate(rounds):
        print(
            f"  round {i + 1}: hypr {a.qps:8.0f} qps ({a.cpu_us:.1f} us cpu/q), "
            f"dnsmasq {b.qps:8.0f} qps ({b.cpu_us:.1f} us cpu/q), hypr forwarded from cache {c.qps:8.0f} qps"
        )
    cpu = sorted(r[0].cpu_us for r in rounds)[len(rounds) // 2], sorted(r[1].cpu_us for r in rounds)[len(rounds) // 2]
    print(f"  hypr     {ours.qps:10.0f} qps  p99 {ours.p99_ms:6.2f} ms  lost {ours.lost}  cpu {cpu[0]:.1f} us/q")
    print(f"  dnsmasq  {theirs.qps:10.0f} qps  p99 {theirs.p99_ms:6.2f} ms  lost {theirs.lost}  cpu {cpu[1]:.1f} us/q")
    print(
        f"  ratio hypr/dnsmasq: {qps:.2f} (qps, median of rounds), {cpu[1] / cpu[0]:.2f} (dnsmasq's cpu per query / ours)"
    )
    print(
        f"forwarded names, from hypr's cache: {cached.qps:.0f} qps  p99 {cached.p99_ms:.2f} ms  lost {cached.lost}"
        f"  cpu {cached.cpu_us:.1f} us/q"
    )
    for label, result in from_workload:
        print(
            f"from a workload, {label}: {result.qps:.0f} qps  p99 {result.p99_ms:.2f} ms  lost {result.lost}"
            f"  cpu {result.cpu_us:.1f} us/q"
        )
    report("dns: local names, hypr qps / dnsmasq qps (median of rounds)", qps, 1.0, at_least=True)
    report("dns: local names, hypr p99 / dnsmasq p99 (median of rounds)", p99, 1.0)
    report("dns: forwarded names from cache, qps / local names' qps", forwarded, 0.9, at_least=True)


if __name__ == "__main__":
    main()
