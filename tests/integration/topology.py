"""A small internet around one hyprd, and tools to move real packets through it (needs root).

    internet ns 198.18.0.2 ──veth── host ns (the daemon's) 198.18.0.1 | 198.18.1.1 ──veth── client ns 198.18.1.2
                                     default route via 198.18.0.2        vbr0, vbr1, ... (hypr's bridges)

Every link is made with `ip -n` inside the namespaces of this module or the daemon's; nothing touches the initial
namespace. Deleting the internet and client namespaces removes both veths.

Packets are sent and answered by tiny stdlib-only Python programs started with `nsenter --net=` in whichever
namespace (host, internet, client, or a workload's own) plays the part. A server answers every TCP connection and
UDP datagram with one line naming itself, the port and the peer it saw, and reports what it received on its
stdout. A probe sends many connections or datagrams at once (threads) and prints one answer per target, so a
test waits for several failing probes only once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.harness import Hyprd, netns, sh, wait_until

INTERNET = "198.18.0.2"
HOST_UPLINK = "198.18.0.1"  # the host's address towards the internet (its masquerade source)
HOST_LAN = "198.18.1.1"  # the host's address towards the remote client
CLIENT = "198.18.1.2"
WORKLOAD_ROUTE = "10.0.0.0/8"  # hypr's auto subnets; the internet and the client route them through the host

PROBE_TIMEOUT = 1.0  # seconds a probe waits for an answer; all probes of one call run in parallel
FAILED = "failed"

Target = tuple[str, str, int]  # (tcp|udp|icmp, address, port)

_SERVER = r"""
import selectors, socket, sys
name, specs = sys.argv[1], sys.argv[2:]
sel = selectors.DefaultSelector()
for spec in specs:
    port, proto = spec.split("/")
    for family, any_address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((any_address, int(port)))
        except OSError:  # no IPv6 in this namespace
            s.close()
            continue
        if proto == "tcp":
            s.listen(64)
        sel.register(s, selectors.EVENT_READ, (int(port), proto))
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        port, proto = key.data
        if proto == "tcp":
            conn, peer = key.fileobj.accept()
            conn.settimeout(2)
            try:
                conn.sendall(f"{name} {port}/tcp from {peer[0]}\n".encode())
                payload = conn.recv(200).decode(errors="replace").strip()
            except OSError:
                payload = ""
            conn.close()
        else:
            data, peer = key.fileobj.recvfrom(2048)
            payload = data.decode(errors="replace").strip()
            key.fileobj.sendto(f"{name} {port}/udp from {peer[0]}\n".encode(), peer)
        print(f"{port}/{proto} {peer[0]} {payload}", flush=True)
"""

_PROBE = r"""
import json, os, socket, struct, sys, threading, time
timeout, source, payload = float(sys.argv[1]), sys.argv[2], sys.argv[3]
targets = json.loads(sys.argv[4])
answers = ["failed"] * len(targets)

def checksum(data):
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF

def ping(s, host, ident):
    v6 = ":" in host  # ICMPv6: echo 128/129, no IP header on receive, the kernel fills the checksum in
    header = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, 1) + payload.encode()
    s.sendto(header if v6 else header[:2] + struct.pack("!H", checksum(header)) + header[4:], (host, 0))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(deadline - time.monotonic(), 0.001))
        data, peer = s.recvfrom(2048)
        icmp = data if v6 else data[(data[0] & 15) * 4:]
        if icmp[0] == (129 if v6 else 0) and struct.unpack("!H", icmp[4:6])[0] == ident and peer[0] == host:
            return f"pong from {peer[0]}"
    raise TimeoutError("timed out")

def probe(i, proto, host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if proto == "icmp":
        s = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if ":" in host else socket.IPPROTO_ICMP)
    else:
        s = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        if source:
            s.bind((source, 0))
        if proto == "icmp":
            answers[i] = ping(s, host, (os.getpid() * 64 + i) & 0xFFFF)
        elif proto == "tcp":
            s.connect((host, port))
            s.sendall(payload.encode() + b"\n")
            answers[i] = s.recv(200).decode(errors="replace").strip() or "failed: empty"
        else:
            s.sendto(payload.encode() + b"\n", (host, port))
            answers[i] = s.recv(200).decode(errors="replace").strip() or "failed: empty"
    except OSError as exc:
        answers[i] = f"failed: {exc}"
    except Exception as exc:
        answers[i] = f"probe error: {exc!r}"  # neither an answer nor a failure: check() reports it
    finally:
        s.close()

threads = [threading.Thread(target=probe, args=(i, *t)) for i, t in enumerate(targets)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(answers))
"""


def ns_path(ns: str) -> str:
    """A namespace's file from its `ip netns` name; workloads' files are paths already."""
    return ns if ns.startswith("/") else f"/run/netns/{ns}"


def enter(ns: str, *argv: str, rc: int | None = 0, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run a command in a network namespace given by name or by path."""
    return sh("nsenter", f"--net={ns_path(ns)}", *argv, rc=rc, timeout=timeout)


def probe(
    ns: str, targets: Sequence[Target], *, source: str = "", payload: str = "probe", timeout: float = PROBE_TIMEOUT
) -> list[str]:
    """Connect to (TCP), send one datagram to (UDP) or ping (ICMP, port ignored) every target from `ns`, in
    parallel; each answer is the server's line (`pong from ADDRESS` for ICMP), or `failed: <reason>`."""
    argv = [sys.executable, "-S", "-c", _PROBE, str(timeout), source, payload, json.dumps(list(targets))]
    out = enter(ns, *argv, timeout=timeout + 20).stdout
    answers: list[str] = json.loads(out)
    return answers


@dataclass(frozen=True)
class Case:
    """From namespace `ns`, `target` answers with a line starting `expect`, or (None) does not answer."""

    ns: str
    target: Target
    expect: str | None
    source: str = ""
    payload: str = "probe"


def check(cases: Sequence[Case]) -> None:
    """Run every case, one probe process per namespace, all at once; fail listing every case that disagrees."""
    groups: dict[tuple[str, str, str], list[Case]] = {}
    for case in cases:
        groups.setdefault((case.ns, case.source, case.payload), []).append(case)

    def run(key: tuple[str, str, str]) -> list[str]:
        ns, source, payload = key
        return probe(ns, [c.target for c in groups[key]], source=source, payload=payload)

    with ThreadPoolExecutor(max_workers=len(groups) or 1) as pool:
        results = dict(zip(groups, pool.map(run, groups), strict=True))
    problems = [
        f"{c.ns.rsplit('/', 2)[-2] if c.ns.startswith('/') else c.ns} -> {c.target}"
        f"{' from ' + c.source if c.source else ''}: got {answer!r}, wanted "
        f"{'no answer' if c.expect is None else repr(c.expect)}"
        for key, group in groups.items()
        for c, answer in zip(group, results[key], strict=True)
        if (c.expect is None) != answer.startswith(FAILED) or (c.expect is not None and not answer.startswith(c.expect))
    ]
    assert not problems, "\n".join(problems)


@dataclass
class Server:
    """A line-answering TCP/UDP server in a namespace; `received` collects what reached it, as
    `PORT/PROTO PEER PAYLOAD` lines."""

    name: str
    proc: subprocess.Popen[str]
    received: list[str] = field(default_factory=list)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.received.append(line.strip())

    def got(self, payload: str) -> list[str]:
        return [line for line in self.received if line.endswith(f" {payload}")]

    def wait_for(self, payload: str, timeout: float = 5.0) -> str:
        wait_until(lambda: bool(self.got(payload)), f"{self.name} to receive {payload!r}", timeout=timeout)
        return self.got(payload)[0]


@contextmanager
def server(ns: str, name: str, *specs: str) -> Iterator[Server]:
    """Serve `specs` (`80/tcp`, `53/udp`) on all addresses of `ns` until the block ends."""
    proc = subprocess.Popen(
        ["nsenter", f"--net={ns_path(ns)}", sys.executable, "-S", "-u", "-c", _SERVER, name, *specs],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        if first != "ready":
            proc.kill()
            raise AssertionError(f"server {name} in {ns} did not start: {first} {proc.communicate()[1]}")
        srv = Server(name, proc)
        threading.Thread(target=srv._read, daemon=True).start()
        yield srv
    finally:
        proc.kill()
        proc.wait(timeout=10)


@dataclass(frozen=True)
class Topology:
    host: str  # the daemon's namespace
    internet: str
    client: str


def _wire(host: str, internet: str, client: str) -> list[list[str]]:
    return [
        ["ip", "-n", host, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", internet],
        ["ip", "-n", host, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", client],
        ["ip", "-n", host, "addr", "add", f"{HOST_UPLINK}/24", "dev", "up0"],
        ["ip", "-n", host, "addr", "add", f"{HOST_LAN}/24", "dev", "lan0"],
        ["ip", "-n", host, "link", "set", "up0", "up"],
        ["ip", "-n", host, "link", "set", "lan0", "up"],
        ["ip", "-n", host, "route", "add", "default", "via", INTERNET],
        ["ip", "-n", internet, "addr", "add", f"{INTERNET}/24", "dev", "eth0"],
        ["ip", "-n", internet, "link", "set", "eth0", "up"],
        ["ip", "-n", internet, "route", "add", WORKLOAD_ROUTE, "via", HOST_UPLINK],
        ["ip", "-n", client, "addr", "add", f"{CLIENT}/24", "dev", "eth0"],
        ["ip", "-n", client, "link", "set", "eth0", "up"],
        ["ip", "-n", client, "route", "add", "default", "via", HOST_LAN],
        # A remote host that routes our subnets through us must still reach nothing but published ports.
        ["ip", "-n", client, "route", "add", WORKLOAD_ROUTE, "via", HOST_LAN],
    ]


@contextmanager
def topology(host: str) -> Iterator[Topology]:
    """The internet and the remote client around `host`; both namespaces (and so both veths) go in `finally`."""
    with ExitStack() as stack:
        internet = stack.enter_context(netns("hyprnet"))
        client = stack.enter_context(netns("hyprcli"))
        for argv in _wire(host, internet, client):
            sh(*argv)
        yield Topology(host=host, internet=internet, client=client)


# ------------------------------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    name: str
    id: str
    netns: str  # path of its network namespace file
    ips: dict[str, str]  # network name -> address
    macs: dict[str, str]
    gateways: dict[str, str]

    @property
    def ip(self) -> str:
        return next(iter(self.ips.values()))


def workload(hyprd: Hyprd, name: str) -> Workload:
    with hyprd.client() as client:
        info = client.container(name)
    nets: dict[str, Any] = info["NetworkSettings"]["Networks"]
    return Workload(
        name=name,
        id=info["Id"],
        netns=str(Path(hyprd.root) / "run" / "workloads" / info["Id"] / "netns"),
        ips={k: v["IPAddress"] for k, v in nets.items()},
        macs={k: v["MacAddress"] for k, v in nets.items()},
        gateways={k: v["Gateway"] for k, v in nets.items()},
    )


def run_workload(hyprd: Hyprd, name: str, *options: str, command: Sequence[str] = ("sleep", "600")) -> Workload:
    """`hypr run -d` through the CLI, for the options it parses (`-p`)."""
    hyprd.cli("run", "-d", "--name", name, *options, "busybox", *command)
    return workload(hyprd, name)


def start_workloads(
    hyprd: Hyprd, *specs: tuple[str, str], bindings: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Workload]:
    """(name, network) pairs started at once through the API, each running `sleep`; `bindings`: Docker's
    PortBindings by workload name."""

    def start(spec: tuple[str, str]) -> Workload:
        name, network = spec
        host_config = {"NetworkMode": network, "PortBindings": dict((bindings or {}).get(name, {}))}
        body = {"Image": "busybox", "Cmd": ["sleep", "600"], "HostConfig": host_config}
        with hyprd.client() as client:
            client.start(client.create_container(body, name))
        return workload(hyprd, name)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(start, specs))


def create_network(hyprd: Hyprd, name: str, *, internal: bool = False, **options: str) -> None:
    """`hypr network create` through the API (the CLI costs a Python start-up per call)."""
    with hyprd.client() as client:
        client.create_network({"Name": name, "Internal": internal, "Options": options})


def workload_ids(hyprd: Hyprd) -> list[str]:
    with hyprd.client() as client:
        return sorted(c["Id"] for c in client.containers(all=True))


def nft_json(hyprd: Hyprd, family: str = "inet") -> list[dict[str, Any]]:
    """`nft -j list table FAMILY hypr` in the daemon's namespace, as the list of its objects."""
    out = enter(hyprd.ns, "nft", "-j", "list", "table", family, "hypr").stdout
    objects: list[dict[str, Any]] = json.loads(out)["nftables"]
    return objects


def nft_text(hyprd: Hyprd) -> str:
    return "".join(enter(hyprd.ns, "nft", "list", "table", family, "hypr").stdout for family in ("inet", "bridge"))
