"""Issue 4's firewall behaviours, proven with real packets (needs root).

Each test runs one hyprd in a throw-away namespace with an "internet" and a "remote client" around it
(tests/integration/topology.py) and checks several behaviours against the same workloads, to stay fast: all probes
of one `check()` run at once, so a list of paths that must stay closed costs one probe timeout. Where "no answer"
is the expected result, a control nearby shows the same path answering when it should, or the path opening when
our table is gone: the drop is our rules' doing, not a broken topology.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from ipaddress import IPv4Address
from typing import Any

import pytest

from hypr.errors import Conflict, InvalidParameter
from hypr.names import mac_for
from tests.integration.harness import Hyprd, links
from tests.integration.topology import (
    CLIENT,
    HOST_LAN,
    HOST_UPLINK,
    INTERNET,
    Case,
    Topology,
    Workload,
    check,
    create_network,
    enter,
    nft_json,
    nft_text,
    probe,
    run_workload,
    server,
    start_workloads,
    topology,
    workload_ids,
)

SERVICES = ("80/tcp", "53/udp")  # what every workload serves in these tests


@pytest.fixture
def topo(hyprd: Hyprd) -> Iterator[Topology]:
    with topology(hyprd.ns) as made:
        yield made


def echo(name: str, port: int, proto: str = "tcp", peer: str = "") -> str:
    """The start of what a topology server answers."""
    return f"{name} {port}/{proto} from {peer}"


def pong(address: str) -> str:
    return f"pong from {address}"


def services(src: str, dst: Workload, peer: str = "", *, open: bool) -> list[Case]:
    """TCP, UDP and ICMP from namespace `src` to workload `dst`."""
    return [
        Case(src, ("tcp", dst.ip, 80), echo(dst.name, 80, peer=peer) if open else None),
        Case(src, ("udp", dst.ip, 53), echo(dst.name, 53, "udp", peer) if open else None),
        Case(src, ("icmp", dst.ip, 0), pong(dst.ip) if open else None),
    ]


def both_ways(a: Workload, b: Workload, *, open: bool) -> list[Case]:
    return services(a.netns, b, a.ip, open=open) + services(b.netns, a, b.ip, open=open)


def observable(hyprd: Hyprd) -> tuple[list[str], list[str], str]:
    """What a refused request must leave unchanged: workload IDs, links, our tables."""
    return (workload_ids(hyprd), links(hyprd.ns), nft_text(hyprd))


# --------------------------------------------------------------------------------------------------- tests


def test_egress_isolation_unpublished_ports_and_repair(hyprd: Hyprd, topo: Topology) -> None:
    create_network(hyprd, "other")
    wa, wb, wc = start_workloads(hyprd, ("wa", "bridge"), ("wb", "bridge"), ("wc", "other"))
    with ExitStack() as stack:
        stack.enter_context(server(topo.internet, "internet", "9000/tcp", "9000/udp"))
        for w in (wa, wb, wc):
            stack.enter_context(server(w.netns, w.name, *SERVICES))
        check(
            # Egress from both networks reaches the internet, which sees the host's address.
            [
                case
                for w in (wa, wc)
                for case in (
                    Case(w.netns, ("tcp", INTERNET, 9000), echo("internet", 9000, peer=HOST_UPLINK)),
                    Case(w.netns, ("udp", INTERNET, 9000), echo("internet", 9000, "udp", HOST_UPLINK)),
                    Case(w.netns, ("icmp", INTERNET, 0), pong(INTERNET)),
                )
            ]
            # Same network: open (icc is on by default). Different networks: closed, both ways, every protocol.
            + both_ways(wa, wb, open=True)
            + both_ways(wa, wc, open=False)
            + both_ways(wb, wc, open=False)
            # A remote host that routes our subnets through the host reaches no unpublished port; nor does the
            # internet. Both reach the host itself, and the host reaches the workloads (the listeners are up).
            + [case for outside in (topo.client, topo.internet) for w in (wa, wc) for case in services(outside, w, open=False)]
            + [Case(topo.client, ("icmp", HOST_LAN, 0), pong(HOST_LAN)), Case(topo.internet, ("icmp", HOST_UPLINK, 0), pong(HOST_UPLINK))]
            + [case for w in (wa, wc) for case in services(hyprd.ns, w, open=True)]
        )  # fmt: skip

        # Deleting our table by hand opens the path (so it was our table that closed it); a start repairs it.
        table = nft_text(hyprd)
        enter(hyprd.ns, "nft", "delete", "table", "inet", "hypr")
        check([Case(topo.client, ("tcp", wa.ip, 80), echo("wa", 80, peer=CLIENT))])
        hyprd.stop()
        hyprd.start()
        assert nft_text(hyprd) == table
        check([Case(topo.client, ("tcp", wa.ip, 80), None)])


def test_icc_disabled_and_internal_networks(hyprd: Hyprd, topo: Topology) -> None:
    create_network(hyprd, "noicc", **{"com.docker.network.bridge.enable_icc": "false"})
    create_network(hyprd, "priv", internal=True)
    x, y, p1, p2, normal = start_workloads(
        hyprd, ("ix", "noicc"), ("iy", "noicc"), ("pv1", "priv"), ("pv2", "priv"), ("normal", "bridge"),
        bindings={"ix": {"80/tcp": [{"HostPort": "8080"}]}},
    )  # fmt: skip
    gateway = p1.gateways["priv"]
    with ExitStack() as stack:
        stack.enter_context(server(topo.internet, "internet", "9000/tcp", "9000/udp"))
        for w in (x, y, p1, p2, normal):
            stack.enter_context(server(w.netns, w.name, *SERVICES))

        def internet(src: Workload, *, open: bool) -> list[Case]:
            return [
                Case(src.netns, ("tcp", INTERNET, 9000), echo("internet", 9000) if open else None),
                Case(src.netns, ("udp", INTERNET, 9000), echo("internet", 9000, "udp") if open else None),
                Case(src.netns, ("icmp", INTERNET, 0), pong(INTERNET) if open else None),
            ]

        check(
            # icc off: neighbours cannot talk, but each still reaches its gateway and the internet.
            both_ways(x, y, open=False)
            + internet(x, open=True)
            + internet(y, open=True)
            + [Case(w.netns, ("icmp", w.gateways["noicc"], 0), pong(w.gateways["noicc"])) for w in (x, y)]
            # ... and a port published by one of them is reached by the other through the host, as in Docker.
            + [Case(y.netns, ("tcp", HOST_UPLINK, 8080), echo("ix", 80)), Case(p1.netns, ("tcp", HOST_UPLINK, 8080), None)]
            # Internal: neighbours and the gateway work ...
            + both_ways(p1, p2, open=True)
            + [Case(p1.netns, ("icmp", gateway, 0), pong(gateway))]
            # ... nothing else: not the internet, not other networks, not other host services, in either direction.
            + internet(p1, open=False)
            + [Case(p1.netns, ("icmp", HOST_UPLINK, 0), None), Case(p1.netns, ("tcp", gateway, 41003), None)]
            + [case for outside in (topo.internet, topo.client) for case in services(outside, p1, open=False)]
            + both_ways(p1, normal, open=False)
            + both_ways(p1, x, open=False)
        )  # fmt: skip
        # The gateway's DNS answers on an internal network.
        lookup = hyprd.cli("exec", "pv1", "nslookup", "pv2", gateway, rc=None)
        assert lookup.returncode == 0 and p2.ip in lookup.stdout, lookup

        # A port published by a workload that is only on internal networks is refused, and nothing is created.
        before = observable(hyprd)
        refused = hyprd.cli("run", "-d", "--name", "pub", "--network", "priv", "-p", "8080:80", "busybox", rc=125)
        assert "cannot publish ports" in refused.stderr and "internal" in refused.stderr
        body = {
            "Image": "busybox",
            "HostConfig": {"NetworkMode": "priv", "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}},
        }
        with hyprd.client() as client, pytest.raises(InvalidParameter, match="cannot publish ports") as raised:
            client.create_container(body, "pub")
        assert raised.value.status == 400
        assert observable(hyprd) == before


def test_forged_ip_mac_and_arp_are_dropped(hyprd: Hyprd, topo: Topology) -> None:
    attacker, victim, neighbour = start_workloads(
        hyprd, ("attacker", "bridge"), ("victim", "bridge"), ("neighbour", "bridge")
    )
    with server(neighbour.netns, "neighbour", "9000/udp") as nb, server(topo.internet, "internet", "9000/udp") as net:
        # The attacker knows where its neighbour is, so its own (possibly forged) ARP plays no part in the
        # IP and MAC cases: they show that the data frames themselves are dropped.
        enter(attacker.netns, "ip", "neigh", "replace", neighbour.ip, "lladdr", neighbour.macs["bridge"], "dev", "eth0",
              "nud", "permanent")  # fmt: skip

        def udp(payload: str, *, source: str = "", open: bool) -> list[Case]:
            return [
                Case(attacker.netns, ("udp", dst, 9000), echo(name, 9000, "udp") if open else None, source, payload)
                for dst, name in ((neighbour.ip, "neighbour"), (INTERNET, "internet"))
            ]

        check(udp("honest-1", open=True))

        # Forged source IPv4 (the victim's), set in the guest itself: dropped towards the neighbour (bridged)
        # and towards the host and everything routed beyond it. One-way UDP: the servers would log it.
        # (Set from the namespace's side, as a guest kernel would: a confined sandbox has no NET_ADMIN to do it.)
        enter(attacker.netns, "ip", "addr", "add", f"{victim.ip}/32", "dev", "eth0")
        forged_ping = Case(attacker.netns, ("icmp", neighbour.ip, 0), None, victim.ip)
        check([*udp("forged-ip", source=victim.ip, open=False), forged_ping])

        # Forged ARP: "who has <neighbour>, tell <victim>" from the attacker is neither answered nor learnt.
        forged_arp = hyprd.cli(
            "exec", "attacker", "arping", "-c1", "-w1", "-I", "eth0", "-s", victim.ip, neighbour.ip, rc=None
        )
        assert forged_arp.returncode != 0, forged_arp.stdout
        assert attacker.macs["bridge"] not in enter(neighbour.netns, "ip", "neigh", "show", victim.ip).stdout
        honest_arp = hyprd.cli(
            "exec", "attacker", "arping", "-c1", "-w2", "-I", "eth0", "-s", attacker.ip, neighbour.ip, rc=None
        )
        assert honest_arp.returncode == 0, honest_arp.stdout

        # Forged MAC with the right IPv4 address. A MAC change flushes even permanent neighbour entries: put them
        # back, or the datagrams would wait for ARP and leave later, after the MAC is restored, looking honest.
        enter(attacker.netns, "ip", "link", "set", "eth0", "address", "02:00:00:00:00:99")
        for ip, mac in ((neighbour.ip, neighbour.macs["bridge"]), ("10.88.0.1", mac_for(IPv4Address("10.88.0.1")))):
            enter(attacker.netns, "ip", "neigh", "replace", ip, "lladdr", mac, "dev", "eth0", "nud", "permanent")
        check(udp("forged-mac", open=False))
        enter(attacker.netns, "ip", "link", "set", "eth0", "address", attacker.macs["bridge"])
        check(udp("honest-2", open=True))
        for srv in (nb, net):
            assert not srv.got("forged-ip") and not srv.got("forged-mac"), srv.received

        # Control: without table bridge hypr the forged datagram arrives, so the drop above was ours. A start puts the table back.
        enter(hyprd.ns, "nft", "delete", "table", "bridge", "hypr")
        probe(attacker.netns, [("udp", neighbour.ip, 9000)], source=victim.ip, payload="forged-control")
        nb.wait_for("forged-control")  # (the answer goes to whoever answers ARP for the victim's address)
        hyprd.stop()
        hyprd.start()
        check([Case(attacker.netns, ("udp", neighbour.ip, 9000), None, victim.ip, "forged-again")])
        assert not nb.got("forged-again")


def _map_elements(hyprd: Hyprd) -> list[Any]:
    return [e for obj in nft_json(hyprd) if "map" in obj for e in obj["map"].get("elem", [])]


def test_published_ports_from_everywhere(hyprd: Hyprd, topo: Topology) -> None:
    create_network(hyprd, "other", **{"com.docker.network.bridge.name": "vbrother"})
    web = run_workload(
        hyprd, "web", "-p", "8080:80", "-p", f"{HOST_LAN}:8443:443", "-p", "127.0.0.1:9000:9000", "-p", "5353:53/udp",
        "-p", f"{HOST_UPLINK}::7000", "-p", "80", "-p", "8000-8002:80-82",
    )  # fmt: skip
    neighbour, far = start_workloads(hyprd, ("neighbour", "bridge"), ("far", "other"))
    ports = json.loads(hyprd.cli("inspect", "web").stdout)[0]["NetworkSettings"]["Ports"]  # what users read
    assert {b["HostPort"] for b in ports["80/tcp"]} >= {"8080", "8000"} and len(ports["80/tcp"]) == 3, ports
    random_port = next(int(b["HostPort"]) for b in ports["80/tcp"] if b["HostPort"] not in ("8080", "8000"))
    [uplink_binding] = ports["7000/tcp"]
    assert uplink_binding["HostIp"] == HOST_UPLINK
    on_uplink = int(uplink_binding["HostPort"])
    assert ports["53/udp"] == [{"HostIp": "0.0.0.0", "HostPort": "5353"}]
    assert ports["9000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "9000"}]
    ps = hyprd.cli("ps").stdout
    assert f"0.0.0.0:{random_port}->80/tcp" in ps and f"{HOST_UPLINK}:{on_uplink}->7000/tcp" in ps, ps

    with server(
        web.netns, "web", "80/tcp", "81/tcp", "82/tcp", "443/tcp", "9000/tcp", "7000/tcp", "6000/tcp", "53/udp"
    ):
        client = topo.client
        check(
            # The remote client, through the host's addresses; the workload sees the client's own address.
            [
                Case(client, ("tcp", HOST_LAN, 8080), echo("web", 80, peer=CLIENT)),
                Case(client, ("tcp", HOST_LAN, 8000), echo("web", 80, peer=CLIENT)),
                Case(client, ("tcp", HOST_LAN, 8001), echo("web", 81, peer=CLIENT)),
                Case(client, ("tcp", HOST_LAN, 8002), echo("web", 82, peer=CLIENT)),
                Case(client, ("tcp", HOST_LAN, random_port), echo("web", 80, peer=CLIENT)),
                Case(client, ("tcp", HOST_LAN, 8443), echo("web", 443, peer=CLIENT)),
                Case(client, ("udp", HOST_LAN, 5353), echo("web", 53, "udp", CLIENT)),
                Case(client, ("tcp", HOST_UPLINK, 8080), echo("web", 80, peer=CLIENT)),
                Case(client, ("tcp", HOST_UPLINK, on_uplink), echo("web", 7000, peer=CLIENT)),
                Case(client, ("tcp", HOST_LAN, on_uplink), None),  # published on the uplink address only
                Case(client, ("tcp", HOST_UPLINK, 8443), None),  # published on the LAN address only
                Case(client, ("tcp", HOST_LAN, 9000), None),  # published on 127.0.0.1 only
                Case(client, ("tcp", web.ip, 6000), None),  # unpublished, routed straight at the workload
                Case(client, ("tcp", web.ip, 80), None),  # published ports are reached through the host only
            ]
            # The host itself, via each of its addresses and via localhost.
            + [
                Case(hyprd.ns, ("tcp", "127.0.0.1", 8080), echo("web", 80)),
                Case(hyprd.ns, ("tcp", "127.0.0.1", 9000), echo("web", 9000)),
                Case(hyprd.ns, ("tcp", "127.0.0.1", random_port), echo("web", 80)),
                Case(hyprd.ns, ("tcp", "127.0.0.1", 8001), echo("web", 81)),
                Case(hyprd.ns, ("udp", "127.0.0.1", 5353), echo("web", 53, "udp")),
                Case(hyprd.ns, ("tcp", HOST_UPLINK, 8080), echo("web", 80)),
                Case(hyprd.ns, ("tcp", HOST_LAN, 8002), echo("web", 82)),
                Case(hyprd.ns, ("tcp", web.gateways["bridge"], 8080), echo("web", 80)),
                Case(hyprd.ns, ("udp", HOST_UPLINK, 5353), echo("web", 53, "udp")),
                Case(hyprd.ns, ("tcp", HOST_LAN, 8443), echo("web", 443)),
                Case(hyprd.ns, ("tcp", HOST_UPLINK, on_uplink), echo("web", 7000)),
                Case(hyprd.ns, ("tcp", web.ip, 6000), echo("web", 6000)),
            ]
            # Another workload on the same network, one on another network, and the workload itself (hairpin).
            + [
                case
                for w in (neighbour, far, web)
                for case in (
                    Case(w.netns, ("tcp", HOST_UPLINK, 8080), echo("web", 80)),
                    Case(w.netns, ("tcp", HOST_UPLINK, 8002), echo("web", 82)),
                    Case(w.netns, ("udp", HOST_UPLINK, 5353), echo("web", 53, "udp")),
                    Case(w.netns, ("tcp", HOST_LAN, 8443), echo("web", 443)),
                    Case(w.netns, ("tcp", HOST_UPLINK, on_uplink), echo("web", 7000)),
                )
            ]
        )  # fmt: skip

        # Conflicts, with a host process or another workload's mapping, fail at once and change nothing.
        before = observable(hyprd)
        with server(hyprd.ns, "squatter", "8090/tcp", "8091/udp"):
            refused = hyprd.cli("run", "-d", "--name", "late", "-p", "8080:80", "busybox", "sleep", "600", rc=125)
            assert "Bind for 0.0.0.0:8080 failed: port is already allocated" in refused.stderr, refused.stderr
            with hyprd.client() as api:
                for port, proto in ((8090, "tcp"), (8091, "udp"), (5353, "udp"), (9000, "tcp")):
                    body = {
                        "Image": "busybox",
                        "HostConfig": {"PortBindings": {f"80/{proto}": [{"HostPort": str(port)}]}},
                    }
                    with pytest.raises(Conflict, match=f"Bind for 0.0.0.0:{port} failed: port is already allocated"):
                        api.create_container(body, "late")
        assert observable(hyprd) == before

        # kill -9 and a start converge to the identical table, and the ports keep working.
        hyprd.kill9()
        hyprd.start()
        assert nft_text(hyprd) == before[2]
        check(
            [
                Case(client, ("tcp", HOST_LAN, 8080), echo("web", 80, peer=CLIENT)),
                Case(client, ("udp", HOST_LAN, 5353), echo("web", 53, "udp")),
            ]
        )

        # Removing the workload removes its rules (and frees its ports).
        assert any(web.ip in json.dumps(e) for e in _map_elements(hyprd))
        with hyprd.client() as api:
            api.remove("web", force=True)
        assert not any(web.ip in json.dumps(e) for e in _map_elements(hyprd)), _map_elements(hyprd)
        assert web.ip not in json.dumps(nft_json(hyprd, "bridge"))  # nor its anti-spoofing entries
        check([Case(client, ("tcp", HOST_LAN, 8080), None), Case(client, ("udp", HOST_LAN, 5353), None)])
    with hyprd.client() as api:  # the port was freed
        api.create_container({"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}})
    # Removing a network removes its rules.
    assert "vbrother" in json.dumps(nft_json(hyprd))
    with hyprd.client() as api:
        api.remove("far", force=True)
        api.remove_network("other")
    assert "vbrother" not in json.dumps(nft_json(hyprd)) + json.dumps(nft_json(hyprd, "bridge"))
    assert "vbrother" not in links(hyprd.ns)
