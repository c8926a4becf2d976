"""IPv6-only networks (issue 15: `--ipv4=false --ipv6`, `EnableIPv4: false`), proven with real packets: no IPv4 in
the sandbox, ping6 and TCP between workloads, isolation, internal networks, DNS (AAAA, and an empty A), published
ports on IPv6 only, `network connect` to a dual-stack workload, the docker CLI and docker-py (needs root)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from hypr.errors import InvalidParameter
from tests.integration import test_ipv6
from tests.integration.harness import Hyprd
from tests.integration.test_ipv6 import (
    _BIND6,
    CLIENT6,
    HOST_LAN6,
    create6,
    dig,
    ip6_of,
    netns_of,
    start,
)
from tests.integration.topology import HOST_LAN, Case, Topology, check, enter, server

topo = test_ipv6.topo  # the small internet around the daemon, with IPv6


def create_only6(hyprd: Hyprd, name: str, subnet6: str, **extra: Any) -> dict[str, Any]:
    return create6(hyprd, name, subnet6, EnableIPv4=False, **extra)


def test_inspect_shows_ipv6_alone_and_the_sandbox_has_no_ipv4(hyprd: Hyprd) -> None:
    net = create_only6(hyprd, "only6", "fd00:6::/64")
    assert net["EnableIPv4"] is False and net["EnableIPv6"] is True
    assert net["IPAM"]["Config"] == [{"Subnet": "fd00:6::/64", "Gateway": "fd00:6::1"}]  # Docker: the v6 config only
    info = start(hyprd, "web", "only6")
    endpoint = info["NetworkSettings"]["Networks"]["only6"]
    assert (endpoint["IPAddress"], endpoint["IPPrefixLen"], endpoint["Gateway"]) == ("", 0, "")
    assert (endpoint["GlobalIPv6Address"], endpoint["IPv6Gateway"]) == ("fd00:6::2", "fd00:6::1")
    with hyprd.client() as client:
        member = client.network("only6")["Containers"][info["Id"]]
        assert (member["IPv4Address"], member["IPv6Address"]) == ("", "fd00:6::2/64")
        with pytest.raises(InvalidParameter, match="IPv6-only"):  # --ip on a network without IPv4
            client.create_container(
                {"Image": "busybox", "HostConfig": {"NetworkMode": "only6"},
                 "NetworkingConfig": {"EndpointsConfig": {"only6": {"IPAMConfig": {"IPv4Address": "10.1.2.3"}}}}},
                "nope",
            )  # fmt: skip
    ns = netns_of(hyprd, info)
    assert json.loads(enter(ns, "ip", "-j", "-4", "addr", "show", "dev", "eth0").stdout) == []
    assert enter(ns, "ip", "-4", "route").stdout == ""
    assert "default via fd00:6::1 dev eth0" in enter(ns, "ip", "-6", "route", "show", "default").stdout
    bridge = json.loads(enter(hyprd.ns, "ip", "-j", "-4", "addr", "show", "dev", "vbr1").stdout)
    assert bridge == [] or bridge[0]["addr_info"] == []  # no IPv4 on the bridge either
    resolv = (hyprd.root / "run" / "workloads" / info["Id"] / "resolv.conf").read_text()
    assert "nameserver fd00:6::1" in resolv  # the DNS server on the IPv6 gateway
    hyprd.cli("run", "-d", "--network", "only6", "--add-host", "gw:host-gateway", "--name", "hg", "busybox", "true")
    with hyprd.client() as client:
        ident = client.container("hg")["Id"]
    hosts = (hyprd.root / "run" / "workloads" / ident / "hosts").read_text()
    assert "fd00:6::1\tgw\n" in hosts and "fd00:6::3\thg\n" in hosts  # host-gateway and its own name: IPv6


def test_dns_aaaa_and_an_empty_a(hyprd: Hyprd) -> None:
    """Packets, isolation and internal networks: test_ipv6.py's matrix, run on IPv6-only networks too."""
    create_only6(hyprd, "one", "fd00:1::/64")
    create_only6(hyprd, "two", "fd00:2::/64")
    create_only6(hyprd, "inside", "fd00:3::/64", Internal=True)
    a, _ = start(hyprd, "wa", "one"), start(hyprd, "wb", "one")
    c, d = start(hyprd, "wc", "two"), start(hyprd, "wd", "inside")
    ns = {w: netns_of(hyprd, info) for w, info in (("a", a), ("c", c), ("d", d))}
    # DNS on the IPv6 gateway: AAAA answers, A is NOERROR with no answer (the name exists, not in IPv4).
    assert dig(ns["a"], "fd00:1::1", "AAAA", "wb") == ["fd00:1::3"]
    assert dig(ns["a"], "fd00:1::1", "AAAA", "wb.hypr") == ["fd00:1::3"]
    empty_a = enter(ns["a"], "dig", "+tries=1", "+time=3", "@fd00:1::1", "A", "wb").stdout
    assert "status: NOERROR" in empty_a and "ANSWER: 0" in empty_a
    assert dig(ns["a"], "fd00:1::1", "-x", "fd00:1::3") == ["wb.hypr."]
    assert dig(ns["d"], "fd00:3::1", "AAAA", "wd") == ["fd00:3::2"]  # internal: the gateway still answers
    assert dig(ns["c"], "fd00:2::1", "AAAA", "wb") == []  # not a name on network two


def test_published_ports_are_ipv6_only(hyprd: Hyprd, topo: Topology) -> None:
    """Docker 28: a mapping on every address (`-p 8080:80`) of a workload without IPv4 is published on `[::]`
    alone (IPv4's 0.0.0.0:8080 stays free); a specific IPv4 host address is refused (Docker proxies it in user
    space to the IPv6 address; hypr does not)."""
    create_only6(hyprd, "only6", "fd00:6::/64")
    web = start(hyprd, "web", "only6", ports={"80/tcp": [{"HostPort": "8080"}]})
    assert web["NetworkSettings"]["Ports"]["80/tcp"] == [{"HostIp": "::", "HostPort": "8080"}]
    enter(hyprd.ns, "python3", "-c", "import socket; socket.socket().bind(('0.0.0.0', 8080))")  # IPv4: free
    taken = enter(hyprd.ns, "python3", "-c", _BIND6.format(port=8080), rc=None)
    assert "Address already in use" in taken.stderr  # IPv6: held
    with hyprd.client() as client, pytest.raises(InvalidParameter, match="is IPv6-only"):
        client.create_container(
            {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "only6",
             "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "7070"}]}}}, "nope"
        )  # fmt: skip
    with server(netns_of(hyprd, web), "web", "80/tcp"):
        check([
            Case(topo.client, ("tcp", HOST_LAN6, 8080), f"web 80/tcp from {CLIENT6}"),  # a remote host over IPv6
            Case(topo.client, ("tcp", HOST_LAN, 8080), None),  # not over IPv4
            Case(hyprd.ns, ("tcp", "::1", 8080), "web 80/tcp from fd00:6::1"),  # ::1 of [::]: relayed, as Docker
        ])  # fmt: skip


def test_connect_an_ipv6_only_network_to_a_dual_stack_workload(hyprd: Hyprd) -> None:
    create6(hyprd, "dual", "fd00:d::/64")
    create_only6(hyprd, "only6", "fd00:6::/64")
    info = start(hyprd, "app", "dual")
    peer = start(hyprd, "peer", "only6")
    with hyprd.client() as client:
        client.connect("only6", "app")
        settings = client.container("app")["NetworkSettings"]["Networks"]
    assert settings["only6"]["IPAddress"] == "" and settings["only6"]["GlobalIPv6Address"] == "fd00:6::3"
    ns = netns_of(hyprd, info)
    assert json.loads(enter(ns, "ip", "-j", "-4", "addr", "show", "dev", "eth1").stdout) in ([], [{"addr_info": []}])
    # Each family keeps its default route on the dual-stack network (the first in gateway order).
    assert "default via " + settings["dual"]["Gateway"] in enter(ns, "ip", "-4", "route").stdout
    assert "default via fd00:d::1 dev eth0" in enter(ns, "ip", "-6", "route", "show", "default").stdout
    with server(netns_of(hyprd, peer), "peer", "80/tcp"):
        check([Case(ns, ("tcp", "fd00:6::2", 80), "peer 80/tcp from fd00:6::3")])  # over the new interface
    # The other way round: an IPv6-only workload connected to a dual-stack network takes its IPv4 default route
    # there (no IPv4 gateway before), and its IPv6 one follows the gateway order (`dual` sorts before `only6`).
    with hyprd.client() as client:
        client.connect("dual", "peer")
        dual = client.container("peer")["NetworkSettings"]["Networks"]["dual"]
    peer_ns = netns_of(hyprd, peer)
    assert f"default via {dual['Gateway']} dev eth1" in enter(peer_ns, "ip", "-4", "route").stdout
    assert "default via fd00:d::1 dev eth1" in enter(peer_ns, "ip", "-6", "route", "show", "default").stdout


def test_bad_combinations_get_dockers_errors(hyprd: Hyprd) -> None:
    out = hyprd.cli("network", "create", "--ipv4=false", "nope", rc=None)
    assert out.returncode != 0 and "IPv4 or IPv6 must be enabled" in out.stderr
    out = hyprd.cli("network", "create", "--ipv4=false", "--ipv6", "--subnet", "10.9.0.0/24", "nope", rc=None)
    assert out.returncode != 0 and "IPv4 is disabled" in out.stderr
    assert "nope" not in hyprd.cli("network", "ls").stdout
    # The default bridge stays IPv4.
    with hyprd.client() as client:
        bridge = client.network("bridge")
    assert (bridge["EnableIPv4"], bridge["EnableIPv6"]) == (True, False)


def test_docker_cli_and_docker_py_ipv6_only(hyprd: Hyprd) -> None:
    import docker
    from docker.types import IPAMConfig, IPAMPool

    def cli(*argv: str) -> str:
        return subprocess.run(["docker", "-H", f"unix://{hyprd.socket}", *argv], capture_output=True, text=True,
                              check=True, timeout=60).stdout  # fmt: skip

    cli("network", "create", "--ipv4=false", "--ipv6", "--subnet", "fd00:c6::/64", "cli6")
    [inspected] = json.loads(cli("network", "inspect", "cli6"))
    assert (inspected["EnableIPv4"], inspected["EnableIPv6"]) == (False, True)
    assert [c["Subnet"] for c in inspected["IPAM"]["Config"]] == ["fd00:c6::/64"]
    cli("run", "-d", "--name", "c6", "--network", "cli6", "--ip6", "fd00:c6::42", "busybox", "sleep", "600")
    settings = json.loads(cli("inspect", "c6"))[0]["NetworkSettings"]["Networks"]["cli6"]
    assert (settings["IPAddress"], settings["GlobalIPv6Address"]) == ("", "fd00:c6::42")
    client = docker.DockerClient(base_url=f"unix://{hyprd.socket}", version="auto")
    try:
        # docker-py 7.2 has no enable_ipv4 argument: it creates dual-stack networks; the body goes as the API has it.
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet="fd00:c7::/64")])
        assert client.networks.create("py46", enable_ipv6=True, ipam=ipam).attrs["EnableIPv4"] is True
        client.networks.get("py46").remove()
        body = {
            "Name": "py6",
            "EnableIPv4": False,
            "EnableIPv6": True,
            "IPAM": {"Config": [{"Subnet": "fd00:c7::/64"}]},
        }
        created = client.api._result(client.api._post_json(client.api._url("/networks/create"), data=body), json=True)
        py6 = client.networks.get(created["Id"])
        assert (py6.attrs["EnableIPv4"], py6.attrs["IPAM"]["Config"]) == (
            False,
            [{"Subnet": "fd00:c7::/64", "Gateway": "fd00:c7::1"}],
        )
        py6.connect("c6", ipv6_address="fd00:c7::7")
        endpoint = client.containers.get("c6").attrs["NetworkSettings"]["Networks"]["py6"]
        assert (endpoint["IPAddress"], endpoint["GlobalIPv6Address"]) == ("", "fd00:c7::7")
    finally:
        client.close()


def test_an_ipv6_only_workload_survives_a_daemon_restart(hyprd: Hyprd) -> None:
    """An IPv6-only network and its workload come back after a daemon restart (rows read back with NULL IPv4)."""
    create_only6(hyprd, "only6", "fd00:6::/64")
    info = start(hyprd, "web", "only6")
    hyprd.restart()
    with hyprd.client() as client:
        again = client.container("web")
    assert ip6_of(again, "only6") == ip6_of(info, "only6") == "fd00:6::2"
    ns = netns_of(hyprd, info)
    check([Case(ns, ("icmp", "fd00:6::1", 0), "pong from fd00:6::1")])
