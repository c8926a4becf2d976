"""Apply every golden ruleset to a real kernel, inside throw-away network namespaces (needs root).

The apply itself runs in a child Python started with `ip netns exec`, so libnftables talks to the namespace's
netfilter and never to the host's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "firewall"
SCENARIOS = sorted(p.stem for p in GOLDEN.glob("*.md"))

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

APPLY = """
import sys
from hypr.reconcile import firewall
text = sys.stdin.read()
action = sys.argv[1]
if action == "apply":
    firewall.apply(text)
elif action == "check":
    firewall.apply(text, dry_run=True)
elif action == "remove":
    firewall.remove()
elif action == "foreign":
    print(*firewall.check_foreign_drops(), sep="\\n")
"""


def golden_script(name: str) -> str:
    return (GOLDEN / f"{name}.md").read_text().split("```nft\n", 1)[1].split("```", 1)[0]


def run(argv: list[str], stdin: str = "", rc: int = 0) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == rc, f"{argv}: rc={done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def netns(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"hyprfw-{os.getpid()}-{abs(hash(request.node.nodeid)) % 100000}"
    run(["ip", "netns", "add", name])
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)


def in_ns(ns: str, action: str, text: str = "", rc: int = 0) -> str:
    return run(["ip", "netns", "exec", ns, sys.executable, "-c", APPLY, action], text, rc)


def nft(ns: str, *args: str, rc: int = 0) -> str:
    return run(["ip", "netns", "exec", ns, "nft", *args], rc=rc)


@pytest.mark.parametrize("name", SCENARIOS)
def test_golden_script_applies_and_reapplies(netns: str, name: str) -> None:
    text = golden_script(name)
    in_ns(netns, "check", text)
    in_ns(netns, "apply", text)
    first = nft(netns, "list", "ruleset")
    in_ns(netns, "apply", text)
    assert nft(netns, "list", "ruleset") == first  # idempotent: a re-apply replaces, never appends
    assert "table inet hypr" in nft(netns, "list", "table", "inet", "hypr")
    assert "table bridge hypr" in nft(netns, "list", "table", "bridge", "hypr")


def test_apply_leaves_other_tables_alone(netns: str) -> None:
    nft(netns, "add", "table", "inet", "other")
    nft(netns, "add", "chain", "inet", "other", "c", "{ type filter hook forward priority 0; policy drop; }")
    in_ns(netns, "apply", golden_script("two-networks"))
    in_ns(netns, "remove")
    assert nft(netns, "list", "tables").split() == ["table", "inet", "other"]


def test_foreign_drop_policy_is_detected(netns: str) -> None:
    in_ns(netns, "apply", golden_script("default-only"))
    assert in_ns(netns, "foreign").strip() == ""
    nft(netns, "add", "table", "ip", "filter")  # what Docker leaves with iptables-nft
    nft(netns, "add", "chain", "ip", "filter", "FORWARD", "{ type filter hook forward priority 0; policy drop; }")
    out = in_ns(netns, "foreign")
    assert "table ip filter chain FORWARD (hook forward) has policy drop" in out


def test_remove_is_idempotent(netns: str) -> None:
    in_ns(netns, "apply", golden_script("default-only"))
    in_ns(netns, "remove")
    in_ns(netns, "remove")
    assert nft(netns, "list", "tables") == ""


def test_failed_apply_changes_nothing_and_names_the_line(netns: str) -> None:
    good = golden_script("default-only")
    in_ns(netns, "apply", good)
    before = nft(netns, "list", "ruleset")
    broken = good.replace("masquerade comment", "masqerade comment", 1)
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", APPLY, "apply"],
        input=broken,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode != 0
    assert "KernelError" in out.stderr and "masqerade" in out.stderr
    assert re.search(r"^\s*\d+> .*masqerade", out.stderr, flags=re.MULTILINE), out.stderr
    assert nft(netns, "list", "ruleset") == before  # one transaction: all or nothing


# ------------------------------------------------------------------------------------------- packets
# Topology, all in namespaces made here:   remote (203.0.113.2) --- host (203.0.113.1, vbr0 192.0.2.1/24)
#                                                                    |- hvw1 --- w1 192.0.2.2 (publishes 8080->80)
#                                                                    |- hvw2 --- w2 192.0.2.3

SERVER = """
import socket, sys
listeners = []
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen()
    listeners.append(s)
print("ready", flush=True)
import selectors
sel = selectors.DefaultSelector()
for s in listeners:
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.sendall(b"port %d" % key.fileobj.getsockname()[1])
        conn.close()
"""

CLIENT = """
import socket, sys
host, port, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket()
s.settimeout(1.0)
if source:
    s.bind((source, 0))
try:
    s.connect((host, port))
    print(s.recv(100).decode())
except OSError as exc:
    print(f"failed: {exc}")
"""


def wire(host: str, remote: str, w1: str, w2: str) -> list[list[str]]:
    """ip commands building the topology; every object lives inside one of the four namespaces."""
    cmds = [
        ["ip", "-n", host, "link", "add", "vbr0", "type", "bridge"],
        ["ip", "-n", host, "addr", "add", "192.0.2.1/24", "dev", "vbr0"],
        ["ip", "-n", host, "link", "set", "vbr0", "up"],
        ["ip", "-n", host, "link", "set", "lo", "up"],
        ["ip", "-n", host, "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", remote],
        ["ip", "-n", host, "addr", "add", "203.0.113.1/24", "dev", "uplink"],
        ["ip", "-n", host, "link", "set", "uplink", "up"],
        ["ip", "-n", remote, "addr", "add", "203.0.113.2/24", "dev", "eth0"],
        ["ip", "-n", remote, "link", "set", "eth0", "up"],
        ["ip", "-n", remote, "link", "set", "lo", "up"],
        # The remote host routes our workload subnet through us: unpublished ports must still be unreachable.
        ["ip", "-n", remote, "route", "add", "192.0.2.0/24", "via", "203.0.113.1"],
    ]
    for ns, port, ip, mac in (
        (w1, "hvw1", "192.0.2.2", "02:42:c0:00:02:02"),
        (w2, "hvw2", "192.0.2.3", "02:42:c0:00:02:03"),
    ):
        cmds += [
            ["ip", "-n", host, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns],
            ["ip", "-n", host, "link", "set", port, "master", "vbr0", "up"],
            ["ip", "-n", ns, "link", "set", "eth0", "address", mac],
            ["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"],
            ["ip", "-n", ns, "link", "set", "eth0", "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            ["ip", "-n", ns, "route", "add", "default", "via", "192.0.2.1"],
        ]
    return cmds


def packet_snapshot() -> str:
    from ipaddress import IPv4Address, IPv4Network

    from hypr.models import Endpoint, Network, PortMapping, Snapshot, Workload
    from hypr.reconcile.firewall import render

    net = Network(
        id="0" * 64, name="bridge", bridge="vbr0", subnet=IPv4Network("192.0.2.0/24"), gateway=IPv4Address("192.0.2.1")
    )
    w1, w2 = (Workload(id=f"{i:064x}", name=f"w{i}", image="x") for i in (1, 2))
    endpoints = tuple(
        Endpoint(
            id=w.id,
            workload_id=w.id,
            network_id=net.id,
            ip=IPv4Address(f"192.0.2.{i + 1}"),
            mac=f"02:42:c0:00:02:{i + 1:02x}",
            host_ifname=f"hvw{i}",
            position=0,
        )
        for i, w in ((1, w1), (2, w2))
    )
    ports = (PortMapping(w1.id, IPv4Address("0.0.0.0"), 8080, 80),)
    return render(Snapshot(networks=(net,), workloads=(w1, w2), endpoints=endpoints, ports=ports))


@pytest.fixture
def four_namespaces() -> Iterator[tuple[str, str, str, str]]:
    names = tuple(f"hyprfw-{role}-{os.getpid()}" for role in ("host", "remote", "w1", "w2"))
    made: list[str] = []
    try:
        for name in names:
            run(["ip", "netns", "add", name])
            made.append(name)
        yield names  # type: ignore[misc]
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)


def connect(ns: str, host: str, port: int, source: str = "") -> str:
    return run(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, host, str(port), source]).strip()


def test_packets_published_unpublished_and_spoofed(four_namespaces: tuple[str, str, str, str]) -> None:
    host, remote, w1, w2 = four_namespaces
    for cmd in wire(host, remote, w1, w2):
        run(cmd)
    for path in ("net/ipv4/ip_forward", "net/ipv4/conf/vbr0/route_localnet"):
        run(["ip", "netns", "exec", host, "sysctl", "-qw", f"{path.replace('/', '.')}=1"])
    in_ns(host, "apply", packet_snapshot())
    server = subprocess.Popen(
        ["ip", "netns", "exec", w1, sys.executable, "-c", SERVER, "80", "81"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        assert connect(remote, "203.0.113.1", 8080) == "port 80"  # published, via the host's address
        assert connect(host, "127.0.0.1", 8080) == "port 80"  # from the host itself, via localhost
        assert connect(w2, "203.0.113.1", 8080) == "port 80"  # hairpin from a neighbour
        assert connect(remote, "192.0.2.2", 81).startswith("failed")  # unpublished, routed straight in
        assert connect(remote, "192.0.2.2", 80).startswith("failed")  # not DNAT'd: not in either
        assert connect(w2, "192.0.2.2", 81) == "port 81"  # icc: neighbours reach each other directly
        run(["ip", "-n", w2, "addr", "add", "192.0.2.99/24", "dev", "eth0"])
        assert connect(w2, "192.0.2.2", 81, source="192.0.2.99").startswith("failed")  # forged source IP
        # Controls: the failures above are our rules' doing, not the topology's.
        nft(host, "delete", "table", "bridge", "hypr")
        assert connect(w2, "192.0.2.2", 81, source="192.0.2.99") == "port 81"
        nft(host, "delete", "table", "inet", "hypr")
        assert connect(remote, "192.0.2.2", 81) == "port 81"
    finally:
        server.kill()
        server.wait(timeout=10)
