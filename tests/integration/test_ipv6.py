"""IPv6 (issue 15), proven with real packets: dual-stack networks, addresses and routes in sandboxes, isolation,
internal networks, NAT66, anti-spoofing of IPv6 sources and neighbour advertisements (needs root)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hypr.errors import InvalidParameter
from tests.integration.conftest import remove_all_workloads
from tests.integration.harness import Hyprd, netns, sh
from tests.integration.topology import CLIENT, HOST_LAN, Case, Topology, check, enter, server, topology

INTERNET6 = "2001:db8:ffff::2"  # the "internet" namespace, behind the host's uplink
HOST_UPLINK6 = "2001:db8:ffff::1"
HOST_LAN6, CLIENT6 = "2001:db8:fffe::1", "2001:db8:fffe::2"  # the host towards the remote client, and the client


@pytest.fixture
def topo(hyprd: Hyprd) -> Iterator[Topology]:
    with topology(hyprd.ns) as made:
        enter(made.host, "ip", "addr", "add", f"{HOST_UPLINK6}/64", "dev", "up0", "nodad")
        enter(made.internet, "ip", "addr", "add", f"{INTERNET6}/64", "dev", "eth0", "nodad")
        enter(made.host, "ip", "-6", "route", "add", "default", "via", INTERNET6)
        enter(made.host, "ip", "addr", "add", f"{HOST_LAN6}/64", "dev", "lan0", "nodad")
        enter(made.client, "ip", "addr", "add", f"{CLIENT6}/64", "dev", "eth0", "nodad")
        # Remote hosts that route our subnets through us must still reach nothing but published ports.
        enter(made.client, "ip", "-6", "route", "add", "fd00::/8", "via", HOST_LAN6)
        enter(made.internet, "ip", "-6", "route", "add", "fd00::/8", "via", HOST_UPLINK6)
        yield made


def create6(hyprd: Hyprd, name: str, subnet6: str | None = None, **extra: Any) -> dict[str, Any]:
    config = [{"Subnet": subnet6}] if subnet6 else []
    with hyprd.client() as client:
        client.create_network({"Name": name, "EnableIPv6": True, "IPAM": {"Config": config}, **extra})
        inspected: dict[str, Any] = client.network(name)
    return inspected


def start(
    hyprd: Hyprd, name: str, network: str, ip6: str | None = None, ports: dict[str, Any] | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {"IPAMConfig": {"IPv6Address": ip6}} if ip6 else {}
    body = {
        "Image": "busybox", "Cmd": ["sleep", "600"],
        "HostConfig": {"NetworkMode": network, "PortBindings": ports or {}},
        "NetworkingConfig": {"EndpointsConfig": {network: config}},
    }  # fmt: skip
    with hyprd.client() as client:
        client.start(client.create_container(body, name))
        info: dict[str, Any] = client.container(name)
    return info


def netns_of(hyprd: Hyprd, info: dict[str, Any]) -> str:
    return str(hyprd.root / "run" / "workloads" / info["Id"] / "netns")


def ip6_of(info: dict[str, Any], network: str) -> str:
    return str(info["NetworkSettings"]["Networks"][network]["GlobalIPv6Address"])


def test_dual_stack_network_inspect_and_static_addresses(hyprd: Hyprd) -> None:
    net = create6(hyprd, "dual")
    [v4, v6] = net["IPAM"]["Config"]
    assert v4["Subnet"].startswith("10.")
    assert net["EnableIPv6"] is True and net["EnableIPv4"] is True
    assert v6["Subnet"].startswith("fd") and v6["Subnet"].endswith("::/64") and v6["Gateway"].endswith("::1")
    prefix = v6["Subnet"].removesuffix("/64")
    addrs = json.loads(enter(hyprd.ns, "ip", "-j", "-6", "addr", "show", "dev", "vbr1").stdout)[0]["addr_info"]
    assert {(a["local"], a["prefixlen"]) for a in addrs if a["scope"] == "global"} == {(v6["Gateway"], 64)}
    a = start(hyprd, "wa", "dual")
    b = start(hyprd, "wb", "dual", ip6=f"{prefix}beef")
    ep_a, ep_b = a["NetworkSettings"]["Networks"]["dual"], b["NetworkSettings"]["Networks"]["dual"]
    assert ep_a["GlobalIPv6Address"] == f"{prefix}2" and ep_a["GlobalIPv6PrefixLen"] == 64
    assert ep_a["IPv6Gateway"] == v6["Gateway"] and ep_a["IPAMConfig"] is None
    # The top-level (deprecated) fields mirror the gateway network for both families, as IPAddress does.
    top = a["NetworkSettings"]
    wanted = {"GlobalIPv6Address": f"{prefix}2", "GlobalIPv6PrefixLen": 64, "IPv6Gateway": v6["Gateway"]}
    assert {k: top[k] for k in wanted} == wanted
    assert ep_b["GlobalIPv6Address"] == f"{prefix}beef" and ep_b["IPAMConfig"] == {"IPv6Address": f"{prefix}beef"}
    with hyprd.client() as client:
        containers = client.network("dual")["Containers"]
        assert containers[b["Id"]]["IPv6Address"] == f"{prefix}beef/64"
        with pytest.raises(InvalidParameter, match="Address already in use"):
            client.create_container(
                {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "dual"},
                 "NetworkingConfig": {"EndpointsConfig": {"dual": {"IPAMConfig": {"IPv6Address": f"{prefix}beef"}}}}},
                "dup",
            )  # fmt: skip
        assert [c["Names"] for c in client.containers(all=True) if c["Names"] == ["/dup"]] == []
        client.remove("wb", force=True)
    c = start(hyprd, "wc", "dual", ip6=f"{prefix}beef")  # released with b: usable again, no leak
    assert ip6_of(c, "dual") == f"{prefix}beef"
    # The address and the default route inside, with the gateway reachable at once.
    routes = enter(netns_of(hyprd, a), "ip", "-6", "route", "show", "default").stdout
    assert f"default via {v6['Gateway']} dev eth0" in routes


@pytest.mark.parametrize("enable_ipv4", [True, False], ids=["dual-stack", "ipv6-only"])
def test_ipv6_between_workloads_isolation_and_nat66(hyprd: Hyprd, topo: Topology, enable_ipv4: bool) -> None:
    """The same matrix on dual-stack and on IPv6-only networks (test_ipv6_only.py)."""
    create6(hyprd, "one", "fd00:1::/64", EnableIPv4=enable_ipv4)
    create6(hyprd, "two", "fd00:2::/64", EnableIPv4=enable_ipv4)
    create6(hyprd, "inside", "fd00:3::/64", Internal=True, EnableIPv4=enable_ipv4)
    a, b = start(hyprd, "wa", "one"), start(hyprd, "wb", "one")
    c, d = start(hyprd, "wc", "two"), start(hyprd, "wd", "inside")
    ns = {w: netns_of(hyprd, info) for w, info in (("a", a), ("b", b), ("c", c), ("d", d))}
    with (
        server(ns["b"], "wb", "80/tcp"),
        server(ns["c"], "wc", "80/tcp"),
        server(ns["d"], "wd", "80/tcp"),
        server(topo.internet, "internet", "80/tcp"),
    ):
        check([
            Case(ns["a"], ("icmp", "fd00:1::3", 0), "pong from fd00:1::3"),  # same network: ping6 and TCP
            Case(ns["a"], ("tcp", "fd00:1::3", 80), "wb 80/tcp from fd00:1::2"),
            Case(ns["a"], ("icmp", "fd00:1::1", 0), "pong from fd00:1::1"),  # the gateway
            Case(ns["a"], ("tcp", "fd00:2::2", 80), None),  # another network: isolated
            Case(ns["c"], ("tcp", "fd00:1::3", 80), None),
            Case(ns["c"], ("tcp", "fd00:3::2", 80), None),  # nor into an internal one
            Case(ns["a"], ("tcp", INTERNET6, 80), f"internet 80/tcp from {HOST_UPLINK6}"),  # NAT66 out
            Case(ns["d"], ("tcp", INTERNET6, 80), None),  # internal: no way out
            Case(ns["d"], ("icmp", "fd00:3::1", 0), "pong from fd00:3::1"),  # ... but its gateway answers
            Case(topo.internet, ("tcp", "fd00:1::3", 80), None),  # nothing in from outside
        ])  # fmt: skip


def test_spoofed_ipv6_source_and_forged_neighbour_advertisement_are_dropped(hyprd: Hyprd) -> None:
    create6(hyprd, "one", "fd00:1::/64")
    a, b = start(hyprd, "wa", "one"), start(hyprd, "wb", "one")
    ns_a, ns_b = netns_of(hyprd, a), netns_of(hyprd, b)
    # A second address on a's interface, not given by IPAM: packets from it must not get out of the port.
    enter(ns_a, "ip", "addr", "add", "fd00:1::99/64", "dev", "eth0", "nodad")
    with server(ns_b, "wb", "80/tcp") as srv:
        # One after the other, not at once: a's kernel takes the source of its neighbour solicitation from the
        # packet that started the resolution (ndisc_solicit), so a spoofed SYN first would send an NS from
        # fd00:1::99, rightly dropped, and hold the honest SYN queued until the NS is retried a second later.
        check([Case(ns_a, ("tcp", "fd00:1::3", 80), "wb 80/tcp from fd00:1::2", source="fd00:1::2")])
        check([Case(ns_a, ("tcp", "fd00:1::3", 80), None, source="fd00:1::99")])
        assert srv.got("probe") and not [line for line in srv.received if "fd00:1::99" in line]
    # A neighbour advertisement from a claiming b's address (unsolicited, override): b's neighbour entry for it
    # would point at a's MAC. The gateway's neighbour table must keep b's own MAC.
    mac_a, mac_b = (w["NetworkSettings"]["Networks"]["one"]["MacAddress"] for w in (a, b))
    forge = _NA.replace("TARGET", "fd00:1::3").replace("MAC", mac_a.replace(":", ""))
    enter(hyprd.ns, "ping", "-6", "-c", "1", "-W", "2", "fd00:1::3")  # the host learns b's real MAC
    enter(ns_a, "python3", "-S", "-c", forge)
    neigh = json.loads(enter(hyprd.ns, "ip", "-j", "-6", "neigh", "show", "fd00:1::3").stdout)
    assert [n["lladdr"] for n in neigh] == [mac_b]
    # a's own address with b's MAC as the link-layer address option (the ARP sender MAC of IPv6): in an
    # advertisement, and in a solicitation for the gateway, each would point the gateway's entry for a at b.
    enter(hyprd.ns, "ping", "-6", "-c", "1", "-W", "2", "fd00:1::2")
    for kind, target, to in (("136", "fd00:1::2", "ff02::1"), ("135", "fd00:1::1", "ff02::1:ff00:1")):
        forged = _ND.replace("_KIND_", kind).replace("_TARGET_", target).replace("_TO_", to)
        enter(ns_a, "python3", "-S", "-c", forged.replace("_MAC_", mac_b.replace(":", "")))
        neigh = json.loads(enter(hyprd.ns, "ip", "-j", "-6", "neigh", "show", "fd00:1::2").stdout)
        assert [n["lladdr"] for n in neigh] == [mac_a], kind


# An unsolicited, overriding neighbour advertisement to all nodes for `target`, with a's own MAC as the target
# link-layer address (RFC 4861 4.4); the kernel fills in the ICMPv6 checksum of a raw ICMPv6 socket.
_NA = r"""
import socket, struct
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
mac = bytes.fromhex("MAC")
body = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, "TARGET")
body += struct.pack("!BB", 2, 1) + mac
s.sendto(body, ("ff02::1", 0, 0, socket.if_nametoindex("eth0")))
"""
# A neighbour solicitation (135, with a source link-layer address option) or an overriding advertisement (136,
# with a target link-layer address option) about _TARGET_, sent to _TO_ from the interface's own address, naming _MAC_.
_ND = r"""
import socket, struct
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
kind = _KIND_
body = struct.pack("!BBHI", kind, 0, 0, 0x20000000 if kind == 136 else 0) + socket.inet_pton(socket.AF_INET6, "_TARGET_")
body += struct.pack("!BB", 2 if kind == 136 else 1, 1) + bytes.fromhex("_MAC_")
s.sendto(body, ("_TO_", 0, 0, socket.if_nametoindex("eth0")))
"""


def dig(ns: str, server: str, *query: str) -> list[str]:
    out = enter(ns, "dig", "+short", "+tries=1", "+time=3", f"@{server}", *query).stdout
    return out.split()


def test_dns_aaaa_and_ptr_over_ipv6_scoped_by_the_askers_v6_source(hyprd: Hyprd) -> None:
    create6(hyprd, "one", "fd00:1::/64")
    create6(hyprd, "two", "fd00:2::/64")
    web, peer, stranger = start(hyprd, "web", "one"), start(hyprd, "peer", "one"), start(hyprd, "stranger", "two")
    ns_peer, ns_stranger = netns_of(hyprd, peer), netns_of(hyprd, stranger)
    assert ip6_of(web, "one") == "fd00:1::2"
    # Asked over IPv6 at the gateway's port 53 (redirected to the server), as over IPv4.
    assert dig(ns_peer, "fd00:1::1", "AAAA", "web") == ["fd00:1::2"]
    assert dig(ns_peer, "fd00:1::1", "A", "web") == [web["NetworkSettings"]["Networks"]["one"]["IPAddress"]]
    assert dig(ns_peer, "fd00:1::1", "AAAA", "web.hypr") == ["fd00:1::2"]
    assert dig(ns_peer, "fd00:1::1", "-x", "fd00:1::2") == ["web.hypr."]
    # Over IPv4 too, and the scope follows the asker: `web` is not a name on network two.
    assert dig(ns_peer, peer["NetworkSettings"]["Networks"]["one"]["Gateway"], "AAAA", "web") == ["fd00:1::2"]
    assert dig(ns_stranger, "fd00:2::1", "AAAA", "web") == []
    status = enter(ns_stranger, "dig", "+tries=1", "+time=3", "@fd00:2::1", "AAAA", "web").stdout
    assert "status: NXDOMAIN" in status
    assert dig(ns_stranger, "fd00:2::1", "AAAA", "web.hypr") == ["fd00:1::2"]


def test_docker_cli_and_docker_py_create_inspect_connect_with_ip6(hyprd: Hyprd) -> None:
    import subprocess

    import docker
    from docker.types import IPAMConfig, IPAMPool

    def cli(*argv: str) -> str:
        return subprocess.run(["docker", "-H", f"unix://{hyprd.socket}", *argv], capture_output=True, text=True,
                              check=True, timeout=60).stdout  # fmt: skip

    cli("network", "create", "--ipv6", "--subnet", "fd00:c1::/64", "--subnet", "10.77.0.0/24", "clinet")
    [inspected] = json.loads(cli("network", "inspect", "clinet"))
    assert inspected["EnableIPv6"] is True
    assert {c["Subnet"] for c in inspected["IPAM"]["Config"]} == {"fd00:c1::/64", "10.77.0.0/24"}
    cli("run", "-d", "--name", "clirun", "--network", "clinet", "--ip6", "fd00:c1::42", "busybox", "sleep", "600")
    settings = json.loads(cli("inspect", "clirun"))[0]["NetworkSettings"]["Networks"]["clinet"]
    assert settings["GlobalIPv6Address"] == "fd00:c1::42" and settings["IPAMConfig"]["IPv6Address"] == "fd00:c1::42"
    cli("network", "create", "--ipv6", "--subnet", "fd00:c2::/64", "clinet2")
    cli("network", "connect", "--ip6", "fd00:c2::9", "clinet2", "clirun")  # the CLI's connect --ip6
    members = json.loads(cli("network", "inspect", "clinet2"))[0]["Containers"]
    assert [m["IPv6Address"] for m in members.values()] == ["fd00:c2::9/64"]
    client = docker.DockerClient(base_url=f"unix://{hyprd.socket}", version="auto")
    try:
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet="fd00:d0::/64", gateway="fd00:d0::fe")])
        net = client.networks.create("pynet6", driver="bridge", enable_ipv6=True, ipam=ipam)
        assert net.attrs["EnableIPv6"] is True
        assert {"Subnet": "fd00:d0::/64", "Gateway": "fd00:d0::fe"} in net.attrs["IPAM"]["Config"]
        net.connect("clirun", ipv6_address="fd00:d0::7")
        container = client.containers.get("clirun")
        endpoint = container.attrs["NetworkSettings"]["Networks"]["pynet6"]
        assert (endpoint["GlobalIPv6Address"], endpoint["IPv6Gateway"]) == ("fd00:d0::7", "fd00:d0::fe")
        ns = str(hyprd.root / "run" / "workloads" / container.id / "netns")
        check([Case(ns, ("icmp", "fd00:d0::fe", 0), "pong from fd00:d0::fe")])  # connected while running
        with pytest.raises(docker.errors.APIError, match="no configured subnet"):
            client.networks.get("clinet").connect(client.containers.create("busybox", "true"), ipv6_address="fd00:9::1")
    finally:
        client.close()


def test_published_ports_answer_over_ipv6(hyprd: Hyprd, topo: Topology) -> None:
    create6(hyprd, "one", "fd00:1::/64")
    create_v4 = {"Name": "plain", "IPAM": {"Config": [{"Subnet": "10.91.0.0/24"}]}}
    with hyprd.client() as client:
        client.create_network(create_v4)
    web = start(hyprd, "web", "one", ports={
        "80/tcp": [{"HostPort": "8080"}, {"HostIp": "::1", "HostPort": "8081"}],
        "81/tcp": [{"HostIp": HOST_LAN6, "HostPort": "8443"}],
        "82/udp": [{"HostPort": "8082"}], "83/tcp": [{"HostPort": ""}],  # UDP, and a port the kernel picks (-P)
    })  # fmt: skip
    [any4, any6] = web["NetworkSettings"]["Ports"]["83/tcp"]
    assert any4["HostPort"] == any6["HostPort"] and any6["HostIp"] == "::"  # the same port on both families
    picked = int(any6["HostPort"])
    old = start(hyprd, "old", "plain", ports={"80/tcp": [{"HostPort": "9090"}, {"HostIp": "::1", "HostPort": "9091"}]})
    assert web["NetworkSettings"]["Ports"]["80/tcp"] == [
        {"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"},
        {"HostIp": "::1", "HostPort": "8081"},
    ]  # fmt: skip
    assert old["NetworkSettings"]["Ports"]["80/tcp"][0] == {"HostIp": "0.0.0.0", "HostPort": "9090"}
    # Held on both families: a host process cannot take [::]:8080, but [::]:9090 is free (old has no IPv6).
    taken = enter(hyprd.ns, "python3", "-c", _BIND6.format(port=8080), rc=None)
    assert "Address already in use" in taken.stderr
    enter(hyprd.ns, "python3", "-c", _BIND6.format(port=9090))
    with hyprd.client() as client, pytest.raises(InvalidParameter, match="has no IPv6"):
        client.create_container(
            {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "plain",
             "PortBindings": {"80/tcp": [{"HostIp": "::", "HostPort": "7070"}]}}}, "nope"
        )  # fmt: skip
    web_ports = ("80/tcp", "81/tcp", "82/udp", "83/tcp")
    with server(netns_of(hyprd, web), "web", *web_ports), server(netns_of(hyprd, old), "old", "80/tcp"):
        check([
            Case(hyprd.ns, ("tcp", "::1", 8081), "web 80/tcp from fd00:1::1"),  # [::1]: relayed (no route_localnet)
            Case(hyprd.ns, ("tcp", "::1", 9091), "old 80/tcp from 10.91.0.1"),  # ... to IPv4 for a v4-only one
            Case(hyprd.ns, ("tcp", "::1", 8080), "web 80/tcp from fd00:1::1"),  # ::1 of [::]:8080 too (curl localhost)
            Case(topo.client, ("tcp", HOST_LAN6, 8080), f"web 80/tcp from {CLIENT6}"),  # a remote host, over IPv6
            Case(topo.client, ("tcp", HOST_LAN, 8080), f"web 80/tcp from {CLIENT}"),  # and over IPv4
            Case(topo.client, ("tcp", HOST_LAN6, 8443), f"web 81/tcp from {CLIENT6}"),  # one IPv6 address only
            Case(topo.client, ("udp", HOST_LAN6, 8082), f"web 82/udp from {CLIENT6}"),
            Case(topo.client, ("tcp", HOST_LAN6, picked), f"web 83/tcp from {CLIENT6}"),
            Case(hyprd.ns, ("tcp", "::1", picked), "web 83/tcp from fd00:1::1"),
            Case(topo.client, ("tcp", HOST_LAN, 8443), None),
            Case(hyprd.ns, ("tcp", HOST_UPLINK6, 8080), "web 80/tcp"),  # the host itself, to one of its addresses
            Case(topo.client, ("tcp", "fd00:1::2", 80), None),  # the workload itself is not reachable from outside
        ])  # fmt: skip
    with hyprd.client() as client:
        client.remove("web", force=True)
    # Released: both families and [::1]. Relayed connections leave TIME_WAIT entries, so bind as servers do.
    reuse = "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind("
    enter(hyprd.ns, "python3", "-c", _BIND6.replace("s.bind(", reuse).format(port=8080))
    enter(hyprd.ns, "python3", "-c", _BIND6.replace('"::"', '"::1"').replace("s.bind(", reuse).format(port=8081))


_BIND6 = """
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind(("::", {port}))
"""


UPSTREAM6 = "2001:db8:53::2"
_UPSTREAM = r"""
import socket, sys
from dnslib import A, QTYPE, RR, DNSRecord
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(4096)
    query = DNSRecord.parse(data)
    reply = query.reply()
    if query.q.qtype == QTYPE.A:
        reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("192.0.2.53"), ttl=60))
    s.sendto(reply.pack(), peer)
"""


def test_names_are_forwarded_to_an_ipv6_upstream(tmp_path: Path) -> None:
    with netns("hyprt") as host, netns("hyprup") as up:
        sh("ip", "-n", host, "link", "add", "up6", "type", "veth", "peer", "name", "eth0", "netns", up)
        sh("ip", "-n", host, "addr", "add", "2001:db8:53::1/64", "dev", "up6", "nodad")
        sh("ip", "-n", up, "addr", "add", f"{UPSTREAM6}/64", "dev", "eth0", "nodad")
        sh("ip", "-n", host, "link", "set", "up6", "up")
        sh("ip", "-n", up, "link", "set", "eth0", "up")
        server = subprocess.Popen(["ip", "netns", "exec", up, sys.executable, "-c", _UPSTREAM, UPSTREAM6],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        daemon = Hyprd(ns=host, root=tmp_path, env_extra={"HYPR_DNS_UPSTREAMS": f"[{UPSTREAM6}]:53"})
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            daemon.start()
            create6(daemon, "one", "fd00:1::/64")
            asker = start(daemon, "asker", "one")
            assert dig(netns_of(daemon, asker), "fd00:1::1", "A", "up.example") == ["192.0.2.53"]
        finally:
            server.kill()
            server.wait()
            remove_all_workloads(daemon)
            daemon.stop()


def test_compose_enable_ipv6_with_an_ipv6_pool_and_ipv6_address(hyprd: Hyprd, tmp_path: Path) -> None:
    file = tmp_path / "hypr-compose.yml"
    file.write_text("""
services:
  db:
    image: busybox
    command: [sleep, "600"]
    networks:
      back: {ipv6_address: "fd00:c0::db"}
  api:
    image: busybox
    command: [sleep, "600"]
    networks: [back]
networks:
  back:
    enable_ipv6: true
    ipam:
      config:
        - subnet: 10.93.0.0/24
        - subnet: fd00:c0::/64
""")
    hyprd.cli("compose", "--progress", "plain", "-f", str(file), "-p", "six", "up", "-d")
    with hyprd.client() as client:
        net = client.network("six_back")
        db = client.container("six-db-1")
    assert net["EnableIPv6"] is True
    assert [c["Subnet"] for c in net["IPAM"]["Config"]] == ["10.93.0.0/24", "fd00:c0::/64"]
    assert ip6_of(db, "six_back") == "fd00:c0::db"
    api_ns = netns_of(hyprd, {"Id": json.loads(hyprd.cli("inspect", "six-api-1").stdout)[0]["Id"]})
    assert dig(api_ns, "fd00:c0::1", "AAAA", "db") == ["fd00:c0::db"]  # the service name, over IPv6
    check([Case(api_ns, ("icmp", "fd00:c0::db", 0), "pong from fd00:c0::db")])
    hyprd.cli("compose", "--progress", "plain", "-f", str(file), "-p", "six", "down")


def test_default_network_is_dual_stack_with_hypr_default_subnet6(tmp_path: Path) -> None:
    with netns("hyprt") as host:
        daemon = Hyprd(ns=host, root=tmp_path, env_extra={"HYPR_DEFAULT_SUBNET6": "fd00:88::/64"})
        try:
            daemon.start()
            with daemon.client() as client:
                bridge = client.network("bridge")
                assert bridge["EnableIPv6"] is True
                assert bridge["IPAM"]["Config"][1] == {"Subnet": "fd00:88::/64", "Gateway": "fd00:88::1"}
            info = start(daemon, "plain", "bridge")
            assert ip6_of(info, "bridge") == "fd00:88::2"
            check([Case(netns_of(daemon, info), ("icmp", "fd00:88::1", 0), "pong from fd00:88::1")])
        finally:
            remove_all_workloads(daemon)
            daemon.stop()


def test_routed_gateway_mode_has_no_nat66_and_opens_only_published_ports(hyprd: Hyprd, topo: Topology) -> None:
    create6(hyprd, "edge", "2001:db8:77::/64", Options={"com.docker.network.bridge.gateway_mode_ipv6": "routed"})
    enter(topo.internet, "ip", "-6", "route", "add", "2001:db8:77::/64", "via", HOST_UPLINK6)
    web = start(hyprd, "web", "edge", ports={"80/tcp": [{"HostPort": "8080"}]})
    ns = netns_of(hyprd, web)
    with server(ns, "web", "80/tcp", "81/tcp"), server(topo.internet, "internet", "80/tcp"):
        check([
            Case(topo.internet, ("tcp", "2001:db8:77::2", 80), f"web 80/tcp from {INTERNET6}"),  # published: open
            Case(topo.internet, ("tcp", "2001:db8:77::2", 81), None),  # not published: closed
            Case(topo.internet, ("icmp", "2001:db8:77::2", 0), "pong from 2001:db8:77::2"),
            Case(ns, ("tcp", INTERNET6, 80), "internet 80/tcp from 2001:db8:77::2"),  # out with its own address
        ])  # fmt: skip


_LISTEN = r"""
import socket, time
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.settimeout(0.2)
print("ready", flush=True)
seen, deadline = set(), time.monotonic() + 4
while time.monotonic() < deadline:
    try:
        seen.add(s.recv(2048)[0])
    except TimeoutError:
        pass
print(sorted(seen), flush=True)
"""
_ADVERTISE = r"""
import socket, struct
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
to = ("ff02::1", 0, 0, socket.if_nametoindex("eth0"))
# A router advertisement (RFC 4861 4.2): hop limit 64, router lifetime 1800 s, no options; then an echo request.
s.sendto(struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0), to)
s.sendto(struct.pack("!BBHHH", 128, 0, 0, 7, 1) + b"control", to)
"""


def test_router_advertisements_from_a_guest_are_dropped(hyprd: Hyprd) -> None:
    create6(hyprd, "one", "fd00:1::/64")
    a, b = start(hyprd, "wa", "one"), start(hyprd, "wb", "one")
    listener = subprocess.Popen(["nsenter", f"--net={netns_of(hyprd, b)}", sys.executable, "-S", "-c", _LISTEN],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        enter(netns_of(hyprd, a), sys.executable, "-S", "-c", _ADVERTISE)
        seen = listener.stdout.readline().strip()
    finally:
        listener.kill()
        listener.wait()
    assert "128" in seen and "134" not in seen  # the echo request crossed the bridge, the advertisement did not


# Reads one address a line and connects to its port 80 at once from SOURCE (a process started in advance: no
# interpreter start-up between `run -d` returning and the first SYN); prints the seconds each connection took.
_CONNECT = r"""
import socket, sys, time
for line in sys.stdin:
    deadline = time.monotonic() + 10
    while True:
        started = time.monotonic()
        try:
            socket.create_connection((line.strip(), 80), timeout=5, source_address=(sys.argv[1], 0)).close()
            break
        except ConnectionRefusedError:  # answered, not listening yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)
    print(f"{time.monotonic() - started:.3f}", flush=True)
"""


def test_a_fresh_workload_answers_over_ipv6_at_once(hyprd: Hyprd) -> None:
    """The first SYN to a workload that `run -d` just started is answered, not held a second. Each workload is the
    first port of its bridge and the SYN comes from a host address that is not on the bridge (as forwarded and
    DNAT'd traffic does): the kernel then solicits the neighbour from the bridge's link-local address, which is
    born with the bridge's carrier, at the first port. It used to be tentative for a second (DAD), and the kernel
    sends no solicitation from a tentative address."""
    enter(hyprd.ns, "ip", "addr", "add", "2001:db8:1::1/128", "dev", "lo", "nodad")
    took = []
    probe = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{hyprd.ns}", sys.executable, "-c", _CONNECT, "2001:db8:1::1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert probe.stdin and probe.stdout
        for i in range(20):
            create6(hyprd, f"n{i}")
            body = {"Image": "busybox", "Cmd": ["httpd", "-f", "-p", "80"], "HostConfig": {"NetworkMode": f"n{i}"}}
            with hyprd.client() as client:
                client.start(client.create_container(body, f"w{i}"))
                probe.stdin.write(ip6_of(client.container(f"w{i}"), f"n{i}") + "\n")
                probe.stdin.flush()
                took.append(float(probe.stdout.readline()))
                client.remove(f"w{i}", force=True)
                client.remove_network(f"n{i}")
    finally:
        probe.kill()
        probe.wait()
    assert [t for t in took if t > 0.5] == [], took  # a lost SYN is retried after 1 s
