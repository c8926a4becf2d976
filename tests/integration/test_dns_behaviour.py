"""DNS behaviour (issue 5) with real resolvers: busybox nslookup inside workloads, dig in workload and host namespaces.

One shared topology (module scope, read-only) answers the lookup questions; tests that change state (workload
lifecycle, daemon restart, new networks) get their own daemon. Fake upstream servers live in an "internet"
namespace (see dns_topology.py) and log every query they receive, so "never forwarded" is checked, not assumed.

    app     10.40.0.0/24   web (alias www), web2 (alias www), cli
    other   10.41.0.0/24   far
    sealed  10.42.0.0/24   hermit              (--internal)
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.dns_topology import (
    BLACKHOLES,
    HOST_SIDE,
    OUTSIDE_ADDRESS,
    ZONE_SERVER,
    Dig,
    Internet,
    create_network,
    dig,
    dns_daemon,
    ip_of,
    nslookup_addresses,
    run_workload,
    workload_netns,
)
from tests.integration.harness import Hyprd, run_in, sh

DNS_PORT = 41003
APP_GW, OTHER_GW, SEALED_GW, DEFAULT_GW = "10.40.0.1", "10.41.0.1", "10.42.0.1", "10.88.0.1"
SLEEP = ("busybox", "sleep", "600")


@dataclass(frozen=True)
class Topology:
    hyprd: Hyprd
    internet: Internet
    ips: dict[str, str]  # workload -> address on its (first) network
    netns: dict[str, str]  # workload -> netns file, for dig with the workload's source address

    def dig_from(self, who: str, *args: str, server: str | None = None) -> Dig:
        if who == "host":
            return dig(self.hyprd.ns, server or APP_GW, *args)
        gateway = {"cli": APP_GW, "web": APP_GW, "web2": APP_GW, "far": OTHER_GW, "hermit": SEALED_GW}[who]
        return dig(self.netns[who], server or gateway, *args)

    def nslookup(self, who: str, name: str, rc: int | None = 0) -> str:
        return self.hyprd.cli("exec", who, "nslookup", name, rc=rc).stdout


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with dns_daemon() as (hyprd, net):
        create_network(hyprd, "app", "10.40.0.0/24")
        create_network(hyprd, "other", "10.41.0.0/24")
        create_network(hyprd, "sealed", "10.42.0.0/24", internal=True)
        run_workload(hyprd, "web", "app", "www")
        run_workload(hyprd, "web2", "app", "www")
        run_workload(hyprd, "cli", "app")
        run_workload(hyprd, "far", "other")
        run_workload(hyprd, "hermit", "sealed")
        networks = {"web": "app", "web2": "app", "cli": "app", "far": "other", "hermit": "sealed"}
        yield Topology(
            hyprd=hyprd,
            internet=net,
            ips={name: ip_of(hyprd, name, network) for name, network in networks.items()},
            netns={name: workload_netns(hyprd, name) for name in networks},
        )


# -- local names --------------------------------------------------------------------------------------------------


def test_hypr_name_from_the_host_and_from_a_workload_on_another_network(topo: Topology) -> None:
    web = topo.ips["web"]
    for server, port in [(APP_GW, DNS_PORT), (APP_GW, 53), (DEFAULT_GW, 53), (OTHER_GW, DNS_PORT)]:
        got = dig(topo.hyprd.ns, server, "web.hypr", port=port)
        assert (got.status, got.data) == ("NOERROR", [web]), f"{server}:{port}\n{got.text}"
        assert "aa" in got.flags and got.answers[0][1] == 5  # authoritative, TTL 5 s (docs/dns.md)
    assert nslookup_addresses(topo.nslookup("far", "web.hypr")) == [web]
    assert topo.dig_from("far", "WeB.HyPr").data == [web]  # case-insensitive
    assert topo.dig_from("hermit", "web.hypr").data == [web]  # `.hypr` works on internal networks too


def test_bare_name_only_for_askers_that_share_a_network(topo: Topology) -> None:
    assert nslookup_addresses(topo.nslookup("cli", "web")) == [topo.ips["web"]]
    assert nslookup_addresses(topo.nslookup("cli", "web2")) == [topo.ips["web2"]]
    far = topo.dig_from("far", "web")
    assert far.status == "NXDOMAIN" and far.answers == (), far.text
    assert "server can't find web" in topo.nslookup("far", "web", rc=None)
    assert topo.internet.asked("web") == []  # a short name never leaves hypr (compose#3185)
    # The host has no network scope: its bare names go upstream (its own resolver decided to send them to us).
    assert topo.dig_from("host", "web2").status == "NXDOMAIN"
    assert topo.internet.asked("web2") == ["udp web2 A"]


def test_alias_gives_every_address_in_rotating_order(topo: Topology) -> None:
    both = {topo.ips["web"], topo.ips["web2"]}
    seen = [nslookup_addresses(topo.nslookup("cli", "www")) for _ in range(2)]
    assert all(set(order) == both and len(order) == 2 for order in seen), seen
    assert seen[0] != seen[1], f"nslookup saw the same order twice: {seen}"
    digs = [topo.dig_from("cli", "www").data for _ in range(2)]  # dig: a new EDNS cookie every run
    assert all(set(order) == both for order in digs), digs
    assert digs[0] != digs[1], f"dig saw the same order twice: {digs}"
    assert topo.dig_from("far", "www").status == "NXDOMAIN"


def test_ptr_for_every_hypr_address(topo: Topology) -> None:
    for name in ("web", "far", "hermit"):
        got = topo.dig_from("host", "-x", topo.ips[name])
        assert (got.status, got.data) == ("NOERROR", [f"{name}.hypr."]), got.text
    assert "name = web.hypr" in topo.nslookup("cli", topo.ips["web"])
    unknown = topo.dig_from("host", "-x", "10.40.0.200")
    assert unknown.status == "NXDOMAIN" and "aa" in unknown.flags
    assert topo.internet.asked("200.0.40.10.in-addr.arpa") == []  # private reverse names do not leak


def test_other_types_for_our_names_are_nodata(topo: Topology) -> None:
    for qtype in ("AAAA", "MX", "TXT"):
        for who, name in [("host", "web.hypr"), ("cli", "web"), ("cli", "www")]:
            got = topo.dig_from(who, qtype, name)
            assert (got.status, got.answers) == ("NOERROR", ()), f"{who} {qtype} {name}\n{got.text}"
            assert "aa" in got.flags
    assert not [q for q in topo.internet.queries() if q.split()[1] in ("web", "www") or q.split()[1].endswith("hypr")]


def test_unknown_hypr_names_are_nxdomain_and_never_forwarded(topo: Topology) -> None:
    for who in ("host", "cli", "far", "hermit"):
        got = topo.dig_from(who, "nope.hypr")
        assert got.status == "NXDOMAIN" and "aa" in got.flags, f"{who}\n{got.text}"
    assert "NXDOMAIN" in topo.nslookup("cli", "nope.hypr", rc=None)
    assert topo.dig_from("host", "deep.web.hypr").status == "NXDOMAIN"
    assert not [q for q in topo.internet.queries() if q.split()[1].endswith("hypr")]


def test_compose_style_name_dot_network(topo: Topology) -> None:
    assert nslookup_addresses(topo.nslookup("cli", "web.app")) == [topo.ips["web"]]
    assert sorted(topo.dig_from("cli", "WWW.App").data) == sorted([topo.ips["web"], topo.ips["web2"]])
    assert topo.dig_from("cli", "www.app").data != []  # aliases too: compose service names are aliases
    far = topo.dig_from("far", "web.app")  # not on `app`: not answered locally (forwarded, upstream says no)
    assert far.status == "NXDOMAIN" and far.answers == ()
    assert topo.internet.asked("web.app") == ["udp web.app A"]
    assert topo.internet.asked("www.app") == []


# -- forwarding ---------------------------------------------------------------------------------------------------


def test_outside_names_are_forwarded_to_the_upstream(topo: Topology) -> None:
    got = topo.dig_from("host", "fwd1.example.test")
    assert (got.status, got.data) == ("NOERROR", [OUTSIDE_ADDRESS]) and got.answers[0][1] == 60, got.text
    assert nslookup_addresses(topo.nslookup("cli", "fwd2.example.test")) == [OUTSIDE_ADDRESS]
    assert topo.dig_from("far", "fwd3.example.test").data == [OUTSIDE_ADDRESS]
    assert topo.internet.asked("fwd1.example.test") == ["udp fwd1.example.test A"]
    assert topo.dig_from("host", "nothing.invalid").status == "NXDOMAIN"  # upstream's NXDOMAIN relayed
    # A second ask is answered from hypr's cache: the upstream sees the name once.
    assert topo.dig_from("host", "fwd1.example.test").data == [OUTSIDE_ADDRESS]
    assert topo.internet.asked("fwd1.example.test") == ["udp fwd1.example.test A"]


def test_truncated_upstream_answer_is_retried_over_tcp(topo: Topology) -> None:
    got = topo.dig_from("cli", "tc.example.test")
    assert (got.status, got.data) == ("NOERROR", [OUTSIDE_ADDRESS]) and "tc" not in got.flags, got.text
    assert topo.internet.asked("tc.example.test") == ["udp tc.example.test A", "tcp tc.example.test A"]


def test_large_edns_answer_passes_intact_and_small_clients_get_tc(topo: Topology) -> None:
    big = topo.dig_from("host", "+bufsize=4096", "TXT", "big.example.test")
    assert big.status == "NOERROR" and len(big.answers) == 40 and big.size > 2500, big.text
    assert [a[3][:3] for a in big.answers] == [f"{i:02d}-" for i in range(40)]
    plain = topo.dig_from("host", "+noedns", "TXT", "big.example.test")
    assert "Truncated, retrying in TCP mode" in plain.text and len(plain.answers) == 40, plain.text


def test_internal_network_does_not_forward(topo: Topology) -> None:
    got = topo.dig_from("hermit", "inside.example.test")
    assert got.status == "NXDOMAIN" and got.answers == (), got.text
    assert "NXDOMAIN" in topo.nslookup("hermit", "inside2.example.test", rc=None)
    assert topo.internet.asked("inside.example.test") == [] and topo.internet.asked("inside2.example.test") == []


def test_tcp_listener_on_every_gateway(topo: Topology) -> None:
    for gateway in (APP_GW, OTHER_GW, SEALED_GW, DEFAULT_GW):
        out = run_in(topo.hyprd.ns, "nc", "-vz", "-w", "2", gateway, str(DNS_PORT))
        assert "succeeded" in out.stderr
        got = dig(topo.hyprd.ns, gateway, "+tcp", "web.hypr", port=DNS_PORT)
        assert got.data == [topo.ips["web"]], got.text
    assert topo.dig_from("cli", "+tcp", "www").status == "NOERROR"  # through the :53 redirect, over TCP
    listening = run_in(topo.hyprd.ns, "ss", "-Hlnut").stdout
    assert f"0.0.0.0:{DNS_PORT}" not in listening and f"*:{DNS_PORT}" not in listening


def test_first_upstream_dead_answer_still_quick() -> None:
    with dns_daemon(f"{BLACKHOLES[0]}:53,{ZONE_SERVER}:53") as (hyprd, net):
        first = dig(hyprd.ns, DEFAULT_GW, "quick1.example.test")
        assert first.data == [OUTSIDE_ADDRESS], first.text
        assert first.msec < 800, f"first answer took {first.msec} ms with a dead first upstream"
        later = [dig(hyprd.ns, DEFAULT_GW, f"quick{n}.example.test") for n in range(2, 5)]
        assert all(d.data == [OUTSIDE_ADDRESS] for d in later)
        # The dead one is now tried last: below the 400 ms it would cost to time out on it again.
        assert max(d.msec for d in later) < 350, [d.msec for d in later]
        assert len(net.asked("quick1.example.test")) == 2  # the dead server once, then the live one
        assert all(len(net.asked(f"quick{n}.example.test")) == 1 for n in range(2, 5))


def test_all_upstreams_dead_gives_servfail() -> None:
    with dns_daemon(",".join(f"{b}:53" for b in BLACKHOLES)) as (hyprd, net):
        got = dig(hyprd.ns, DEFAULT_GW, "lost.example.test")
        assert got.status == "SERVFAIL", got.text
        assert got.msec < 1500, f"SERVFAIL took {got.msec} ms"
        assert len(net.asked("lost.example.test")) == 2
        assert dig(hyprd.ns, DEFAULT_GW, "nope.hypr").status == "NXDOMAIN"  # local answers do not wait


# -- changes --------------------------------------------------------------------------------------------------------


def test_remove_is_reflected_at_once(hyprd: Hyprd) -> None:
    hyprd.cli("run", "-d", "--name", "web", *SLEEP)
    hyprd.cli("run", "-d", "--name", "cli", *SLEEP)
    web = ip_of(hyprd, "web", "bridge")
    assert dig(hyprd.ns, DEFAULT_GW, "web.hypr").data == [web]
    assert nslookup_addresses(hyprd.cli("exec", "cli", "nslookup", "web").stdout) == [web]
    hyprd.cli("rm", "-f", "web")
    assert dig(hyprd.ns, DEFAULT_GW, "web.hypr").status == "NXDOMAIN"  # no waiting: the reply cache went too
    assert dig(hyprd.ns, DEFAULT_GW, "-x", web).status == "NXDOMAIN"
    assert "NXDOMAIN" in hyprd.cli("exec", "cli", "nslookup", "web", rc=None).stdout


def test_stop_start_and_exit_are_reflected_at_once(hyprd: Hyprd) -> None:
    hyprd.cli("run", "-d", "--name", "web", *SLEEP)
    hyprd.cli("run", "-d", "--name", "cli", *SLEEP)
    web = ip_of(hyprd, "web", "bridge")
    assert dig(hyprd.ns, DEFAULT_GW, "web.hypr").data == [web]
    hyprd.cli("stop", "-t", "0", "web")
    stopped = dig(hyprd.ns, DEFAULT_GW, "web.hypr")
    assert stopped.status == "NXDOMAIN", stopped.text
    assert "NXDOMAIN" in hyprd.cli("exec", "cli", "nslookup", "web", rc=None).stdout
    hyprd.cli("start", "web")
    assert dig(hyprd.ns, DEFAULT_GW, "web.hypr").data == [web]
    assert nslookup_addresses(hyprd.cli("exec", "cli", "nslookup", "web").stdout) == [web]
    hyprd.cli("kill", "web")
    assert dig(hyprd.ns, DEFAULT_GW, "web.hypr").status == "NXDOMAIN"


def test_rename_is_reflected_at_once(hyprd: Hyprd) -> None:
    hyprd.cli("run", "-d", "--name", "web", *SLEEP)
    web = ip_of(hyprd, "web", "bridge")
    hyprd.cli("rename", "web", "site")
    assert dig(hyprd.ns, DEFAULT_GW, "site.hypr").data == [web]
    assert dig(hyprd.ns, DEFAULT_GW, "web.hypr").status == "NXDOMAIN"
    assert hyprd.cli("exec", "site", "hostname").stdout.strip() == "web"  # like docker: the hostname stays


def test_daemon_restart_keeps_answering(hyprd: Hyprd) -> None:
    hyprd.cli("run", "-d", "--name", "web", *SLEEP)
    web = ip_of(hyprd, "web", "bridge")
    assert dig(hyprd.ns, DEFAULT_GW, "web.hypr").data == [web]
    hyprd.restart()
    got = dig(hyprd.ns, DEFAULT_GW, "web.hypr")  # no waiting: ready means answering
    assert got.data == [web], got.text
    assert nslookup_addresses(hyprd.cli("exec", "web", "nslookup", "web").stdout) == [web]


def test_new_network_gets_its_listener_and_resolver_hint_is_logged_once(hyprd: Hyprd, tmp_path: Path) -> None:
    queries = tmp_path / "queries.txt"
    queries.write_text("bridge.hypr A\nnope.hypr A\n")
    # Queries keep flowing while networks come and go: records are swapped, sockets never re-bound (aardvark#389).
    load = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{hyprd.ns}", "dnsperf", "-s", DEFAULT_GW, "-p", str(DNS_PORT),
         "-d", str(queries), "-l", "3", "-Q", "500", "-t", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    hyprd.cli("network", "create", "later", "--subnet", "10.43.0.0/24")
    run_in(hyprd.ns, "nc", "-vz", "-w", "2", "10.43.0.1", str(DNS_PORT))  # no restart, no waiting
    hyprd.cli("run", "-d", "--name", "late", "--network", "later", *SLEEP)
    assert dig(hyprd.ns, "10.43.0.1", "late.hypr", port=DNS_PORT).data == [ip_of(hyprd, "late", "later")]
    assert nslookup_addresses(hyprd.cli("exec", "late", "nslookup", "late").stdout) != []
    hyprd.cli("network", "create", "later2", "--subnet", "10.44.0.0/24")
    hyprd.cli("network", "rm", "-f", "later2")
    refused = run_in(hyprd.ns, "nc", "-vz", "-w", "2", "10.44.0.1", str(DNS_PORT), rc=None)
    assert refused.returncode != 0
    out, _ = load.communicate(timeout=30)
    assert re.search(r"Queries lost:\s+0 ", out) and "Queries completed:" in out, out
    log = hyprd.log.read_text()
    hints = re.findall(r"systemd-resolved not found.*", log)
    assert len(hints) == 1, hints
    assert "resolvectl domain vbr0 ~hypr" in hints[0] and "resolvectl dns vbr0 10.88.0.1" in hints[0]


def test_the_server_is_not_open_to_other_hosts() -> None:
    """Linux accepts traffic for a local address on any interface; the firewall keeps 41003 to bridges and lo."""
    with dns_daemon() as (hyprd, net):
        sh("ip", "-n", net.ns, "route", "add", "10.88.0.0/16", "via", HOST_SIDE)
        assert dig(hyprd.ns, DEFAULT_GW, "nope.hypr", port=41003).status == "NXDOMAIN"  # the host itself: yes
        outside = subprocess.run(
            ["nsenter", f"--net=/run/netns/{net.ns}", "dig", "+tries=1", "+timeout=1", "-p", "41003", f"@{DEFAULT_GW}", "x.hypr"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        assert "timed out" in outside.stdout, outside.stdout
