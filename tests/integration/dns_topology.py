"""DNS test topology: a daemon with its own "internet" namespace of fake upstream servers, and `dig` parsing.

    host netns (hyprd.ns)                      internet netns
      vbr*  gateways :41003 (and :53)            eth0 198.18.0.2  zone server (answers *.example.test)
      inet0 198.18.0.1/24  <── veth ──>              198.18.0.3  blackhole (reads queries, never answers)
                                                     198.18.0.4  blackhole
                                                     198.18.0.5  second zone server (answers differently)

The fake servers run in a subprocess inside the internet namespace (`python -m tests.integration.dns_topology`)
and append one line per query they receive (`udp|tcp <name> <type> <server>`) to a log file, so tests can assert
what was forwarded, to which server, and what never left hypr. `stranger()` plugs a namespace of our own into a network's bridge: an asker
hypr has no endpoint for. Everything is removed in `finally`, also when a test fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.harness import Hyprd, netns, run_in, running_daemon, sh, stop_process, wait_until

ZONE_SERVER = "198.18.0.2"
BLACKHOLES = ("198.18.0.3", "198.18.0.4")
SECOND_ZONE = "198.18.0.5"  # another upstream, for `--dns`: the same zone, other answers
HOST_SIDE = "198.18.0.1"
OUTSIDE_ADDRESS = "198.51.100.7"  # what the zone server answers for *.example.test
MANY_PTR_ZONE = "100.51.198.in-addr.arpa"  # PTR queries here get 30 long names (hypr.dns.testing.MANY)
SECOND_ADDRESS = "198.51.100.8"  # what the second zone server answers for *.example.test
SLOW = 1.2  # seconds the zone servers take to answer slow.* over UDP: more than hypr's hedge (0.4 s)
REPO = Path(__file__).resolve().parents[2]


# -- dig --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dig:
    status: str  # NOERROR, NXDOMAIN, SERVFAIL, ... ("" when no reply arrived)
    flags: frozenset[str]
    answers: tuple[tuple[str, int, str, str], ...]  # (name, ttl, type, data) in the order received
    msec: int  # dig's own "Query time"
    size: int  # "MSG SIZE rcvd"
    text: str

    @property
    def data(self) -> list[str]:
        return [a[3] for a in self.answers]


_ANSWER = re.compile(r"^(\S+)\s+(\d+)\s+IN\s+(\S+)\s+(.*)$")


def parse_dig(text: str) -> Dig:
    status = re.search(r"status: (\w+)", text)
    flags = re.search(r";; flags: ([a-z ]*);", text)
    msec = re.search(r"Query time: (\d+) msec", text)
    size = re.search(r"MSG SIZE\s+rcvd: (\d+)", text)
    answers = []
    section = text.split(";; ANSWER SECTION:\n", 1)
    if len(section) == 2:
        for line in section[1].split("\n\n", 1)[0].splitlines():
            m = _ANSWER.match(line)
            if m:
                answers.append((m[1], int(m[2]), m[3], m[4].strip('"')))
    return Dig(
        status=status[1] if status else "",
        flags=frozenset(flags[1].split()) if flags else frozenset(),
        answers=tuple(answers),
        msec=int(msec[1]) if msec else -1,
        size=int(size[1]) if size else -1,
        text=text,
    )


def enter(ns: str | None) -> list[str]:
    """The argv prefix that runs a command in a network namespace: a name under /run/netns, a path to a netns
    file (a workload's), or None for this one."""
    if ns is None:
        return []
    return ["nsenter", f"--net={ns if ns.startswith('/') else f'/run/netns/{ns}'}"]


def python_in(ns: str | None, module: str, *args: str, **popen: Any) -> subprocess.Popen[Any]:
    """`python -m MODULE ARGS` from this checkout (a helper program of the tests) inside a namespace (`enter`)."""
    argv = [*enter(ns), sys.executable, "-m", module, *args]
    return subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, **popen)


def dig(ns: str, server: str, *args: str, port: int = 53, timeout: float = 10) -> Dig:
    """`dig` run in a namespace (a name under /run/netns, or a path to a netns file) against `server`."""
    argv = [*enter(ns), "dig", f"@{server}", "-p", str(port), "+tries=1", "+time=3", *args]
    return parse_dig(sh(*argv, rc=None, timeout=timeout).stdout)


def workload_netns(hyprd: Hyprd, name: str) -> str:
    """The netns file of a running workload: `dig` entered there asks with the workload's own source address."""
    with hyprd.client() as client:
        return str(hyprd.root / "run" / "workloads" / client.container(name)["Id"] / "netns")


def ip_of(hyprd: Hyprd, name: str, network: str) -> str:
    with hyprd.client() as client:
        return str(client.container(name)["NetworkSettings"]["Networks"][network]["IPAddress"])


def run_workload(
    hyprd: Hyprd, name: str, network: str, *aliases: str, image: str = "busybox", **host_config: object
) -> None:
    """`hypr run -d --name NAME --network NETWORK [--network-alias A]... busybox sleep 600`, through the API
    (no CLI process to start: the shared topology is set up several times faster). `image="host"` gives a
    workload with the host's file system, hence glibc's resolver (`getent`), and its own /etc/resolv.conf.
    `host_config`: more HostConfig fields (`Dns=[...]`, `DnsSearch=[...]`, `DnsOptions=[...]`)."""
    body = {
        "Image": image,
        "Cmd": ["sleep", "600"],
        "HostConfig": {"NetworkMode": network, **host_config},
        "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": list(aliases)}}},
    }
    with hyprd.client() as client:
        client.start(client.create_container(body, name))


def create_network(hyprd: Hyprd, name: str, subnet: str, *, internal: bool = False) -> None:
    with hyprd.client() as client:
        client.create_network({"Name": name, "Internal": internal, "IPAM": {"Config": [{"Subnet": subnet}]}})


def bridge_of(hyprd: Hyprd, gateway: str) -> str:
    """The bridge that holds a network's gateway address."""
    for line in run_in(hyprd.ns, "ip", "-o", "-4", "addr", "show").stdout.splitlines():
        fields = line.split()
        if fields[3].split("/")[0] == gateway:
            return fields[1]
    raise AssertionError(f"no link holds {gateway}")


@contextmanager
def stranger(hyprd: Hyprd, gateway: str, address: str, prefix: int = 24) -> Iterator[str]:
    """A namespace plugged into the bridge of `gateway` by a veth of our own, with `address` (inside that network's
    subnet, `prefix` bits) but no endpoint: hypr has never heard of it, like a workload whose record does not exist
    yet. Yields the namespace's name; everything is removed afterwards."""
    bridge = bridge_of(hyprd, gateway)
    with netns("hyprstr") as ns:
        host_end = f"hs{os.getpid() % 100000}{address.rsplit('.', 1)[1]}"[:15]
        try:
            sh("ip", "-n", hyprd.ns, "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", hyprd.ns, "link", "set", host_end, "master", bridge, "up")
            sh("ip", "-n", ns, "addr", "add", f"{address}/{prefix}", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            wait_until(
                lambda: run_in(ns, "ping", "-c1", "-W1", gateway, rc=None).returncode == 0, "the stranger's veth"
            )
            yield ns
        finally:
            sh("ip", "-n", hyprd.ns, "link", "del", host_end, rc=None)


def nslookup_addresses(output: str) -> list[str]:
    """The addresses busybox nslookup printed after the server block, in order."""
    body = output.split("\n\n", 1)[1] if "\n\n" in output else ""
    return re.findall(r"^Address: (\S+)$", body, re.M)


# -- the internet namespace -------------------------------------------------------------------------------------


@dataclass
class Internet:
    ns: str
    log: Path

    def queries(self, server: str | None = None) -> list[str]:
        """`udp|tcp name type` for every query the fake servers (or the one at `server`) received, in order."""
        lines = [line.split() for line in self.log.read_text().splitlines() if line != "ready"]
        return [" ".join(f[:3]) for f in lines if server is None or f[3] == server]

    def asked(self, name: str, server: str | None = None) -> list[str]:
        return [q for q in self.queries(server) if q.split()[1] == name]


@contextmanager
def internet(host_ns: str) -> Iterator[Internet]:
    """A namespace with the fake upstreams, joined to `host_ns` by a veth (198.18.0.1 <-> 198.18.0.2/.3/.4)."""
    with netns("hyprinet") as ns, tempfile.TemporaryDirectory(prefix="hyprinet-") as tmp:
        log = Path(tmp) / "queries.log"
        log.touch()
        proc: subprocess.Popen[bytes] | None = None
        try:
            sh("ip", "-n", host_ns, "link", "add", "inet0", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", host_ns, "addr", "add", f"{HOST_SIDE}/24", "dev", "inet0")
            sh("ip", "-n", host_ns, "link", "set", "inet0", "up")
            for address in (ZONE_SERVER, *BLACKHOLES, SECOND_ZONE):
                sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            servers = [f"{ZONE_SERVER}=zone", *(f"{b}=blackhole" for b in BLACKHOLES), f"{SECOND_ZONE}=second"]
            proc = python_in(ns, __name__, *servers, "--log", str(log), stdin=subprocess.DEVNULL)

            def ready() -> bool:
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(f"fake upstreams exited with {proc.returncode}")
                return "ready" in log.read_text()

            wait_until(ready, "the fake upstreams to listen")
            # Addresses on a fresh veth may still be tentative for a moment: poll until the route works.
            wait_until(lambda: run_in(host_ns, "ping", "-c1", "-W1", ZONE_SERVER, rc=None).returncode == 0, "veth up")
            yield Internet(ns=ns, log=log)
        finally:
            if proc is not None:
                stop_process(proc)
            sh("ip", "-n", host_ns, "link", "del", "inet0", rc=None)


@contextmanager
def dns_daemon(
    upstreams: str = f"{ZONE_SERVER}:53", resolv_conf: str | None = None
) -> Iterator[tuple[Hyprd, Internet]]:
    """A daemon whose upstream list (HYPR_DNS_UPSTREAMS) points into a fresh internet namespace. `resolv_conf`:
    the text of the host's resolv.conf it reads (HYPR_RESOLV_CONF; its search list reaches workloads and DNS),
    in `<root>/resolv.conf`; by default the real /etc/resolv.conf."""
    with netns("hyprt") as ns, internet(ns) as net, tempfile.TemporaryDirectory(prefix="hyprt-") as tmp:
        root = Path(tmp)
        env = {"HYPR_DNS_UPSTREAMS": upstreams}
        if resolv_conf is not None:
            (root / "resolv.conf").write_text(resolv_conf)
            env["HYPR_RESOLV_CONF"] = str(root / "resolv.conf")
        with running_daemon(ns, root, env) as daemon:
            yield daemon, net


# -- the fake servers (the subprocess) ---------------------------------------------------------------------------


def _serve(listen: list[tuple[str, str]], log_path: Path) -> None:
    from dnslib import QTYPE, RCODE, DNSRecord

    from hypr.dns.testing import FakeUpstream, Mode, fake_answer

    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    class Zone(FakeUpstream):
        """By name: tc.* truncated over UDP, big.* ~3 kB of TXT, cut.* the same cut at 512 bytes over UDP without TC
        (a middlebox that drops the rest), many.* and the PTR names of 198.51.100.0/24 1.6-2.3 kB of records of
        the asked type (A, AAAA, PTR), *.example.test A (other types: no answer), else NXDOMAIN. The second
        zone server answers *.example.test A with SECOND_ADDRESS instead. The first zone server answers slow.* over
        UDP after SLOW seconds (a cold name at a recursive resolver, a resolver across a VPN)."""

        def delay_of(self, data: bytes) -> float:
            slow = self.host == ZONE_SERVER and str(DNSRecord.parse(data).q.qname).lower().startswith("slow.")
            return SLOW if slow else 0.0

        def reply(self, data: bytes, *, over_tcp: bool) -> bytes | None:
            query = DNSRecord.parse(data)
            name = str(query.q.qname).lower().rstrip(".")
            log.write(f"{'tcp' if over_tcp else 'udp'} {name} {QTYPE[query.q.qtype]} {self.host}\n")
            if self.mode == "blackhole":
                return None
            mode: Mode = "answer"
            if name.startswith("many.") or name.endswith(MANY_PTR_ZONE):
                return fake_answer(data, "many", over_tcp=over_tcp)
            if name.startswith("cut."):
                full = fake_answer(data, "big", over_tcp=over_tcp)
                return full if over_tcp else full[:512]
            if name.startswith("tc."):
                mode = "truncate"
            elif name.startswith("big."):
                mode = "big"
            elif not (name == "example.test" or name.endswith(".example.test")) or query.q.qtype != QTYPE.A:
                out = query.reply()  # NXDOMAIN outside the zone; NODATA for other types inside it
                if not name.endswith("example.test"):
                    out.header.rcode = RCODE.NXDOMAIN
                packed: bytes = out.pack()
                return packed
            address = SECOND_ADDRESS if self.address == SECOND_ADDRESS else OUTSIDE_ADDRESS
            return fake_answer(data, mode, over_tcp=over_tcp, address=address)

    async def main() -> None:
        for host, mode in listen:
            address = SECOND_ADDRESS if mode == "second" else OUTSIDE_ADDRESS
            await Zone(host, 53, "blackhole" if mode == "blackhole" else "answer", address).start()
        log.write("ready\n")
        await asyncio.Event().wait()

    asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="fake upstream DNS servers for the DNS integration tests")
    parser.add_argument("listen", nargs="+", help="ADDRESS=zone|second|blackhole")
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    _serve([(address, mode) for address, _, mode in (item.partition("=") for item in args.listen)], args.log)
