"""DNS behaviour (issue 5) with real resolvers: busybox nslookup inside workloads, dig in workload and host namespaces.

One shared topology (module scope, read-only) answers the lookup questions; tests that change state (workload
lifecycle, daemon restart, new networks) get their own daemon. Fake upstream servers live in an "internet"
namespace (see dns_topology.py) and log every query they receive, so "never forwarded" is checked, not assumed.

    app     10.40.0.0/24   web (alias www), web2 (alias www), cli       + a stranger at .250 (no endpoint)
    other   10.41.0.0/24   far, gl (the host's image: glibc's resolver)
    sealed  10.42.0.0/24   hermit              (--internal)         + a stranger at .250 (no endpoint)

Large answers (field report 1) get their own daemon: 60 workloads sharing aliases on one network.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from hypr.dns.upstream import FORWARD_DEADLINE
from hypr.names import DNS_PORT
from tests.integration.dns_topology import (
    BLACKHOLES,
    HOST_SIDE,
    OUTSIDE_ADDRESS,
    SECOND_ADDRESS,
    SECOND_ZONE,
    SLOW,
    ZONE_SERVER,
    Dig,
    Internet,
    create_network,
    dig,
    dns_daemon,
    ip_of,
    nslookup_addresses,
    run_workload,
    stranger,
    workload_netns,
)
from tests.integration.harness import Hyprd, run_in, sh, wait_until

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
        run_workload(hyprd, "gl", "other", image="host")  # glibc's resolver (getent)
        networks = {"web": "app", "web2": "app", "cli": "app", "far": "other", "hermit": "sealed", "gl": "other"}
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
    # The host has no network scope: its bare names are NXDOMAIN, and never go upstream either (field report 2).
    host = topo.dig_from("host", "web2")
    assert host.status == "NXDOMAIN" and "aa" in host.flags, host.text
    assert topo.internet.asked("web2") == []


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


def test_forwarded_answers_larger_than_the_asker_takes_are_clean_tc_replies(topo: Topology) -> None:
    """Field report 1, forwarded: ~3 kB of TXT from upstream. Over UDP the asker gets a whole message (TC, the
    question, no records) whenever the answer exceeds its size, then all 40 records over TCP."""
    for args in (["+noedns"], ["+bufsize=1232"], ["+bufsize=512"]):
        raw = topo.dig_from("cli", *args, "+ignore", "TXT", "big.example.test")  # +ignore: no TCP retry
        assert raw.status == "NOERROR" and "tc" in raw.flags and raw.answers == (), f"{args}\n{raw.text}"
        assert 0 < raw.size <= 512 and "Warning" not in raw.text and "bad" not in raw.text, raw.text
        full = topo.dig_from("cli", *args, "TXT", "big.example.test")
        assert "Truncated, retrying in TCP mode" in full.text and len(full.answers) == 40, full.text
    out = topo.hyprd.cli("exec", "cli", "nslookup", "-type=txt", "big.example.test", rc=None).stdout
    assert "Parse error" not in out, out  # busybox: UDP only, 512 bytes; it now gets a valid TC reply


def test_forwarded_a_aaaa_and_ptr_answers_of_every_size_reach_dig_busybox_and_glibc(topo: Topology) -> None:
    """Field report 1, forwarded, in the asked type: 100 A, 60 AAAA, 30 long PTR names (1.6-2.3 kB) from upstream.
    Over UDP each asker gets the whole answer when it fits its size (EDNS 4096, or above: capped at 4096), else a
    whole TC message without records; dig then has them all over TCP, glibc too (A and PTR: its AAAA queries wait
    for an IPv6 address, AI_ADDRCONFIG), and busybox never a parse error."""
    ptr_name = "7.100.51.198.in-addr.arpa"
    for qtype, name, count in (("A", "many.example.test", 100), ("AAAA", "many.example.test", 60),
                               ("PTR", ptr_name, 30)):  # fmt: skip
        for args in (["+noedns"], ["+bufsize=512"], ["+bufsize=1232"], ["+bufsize=4096"], ["+bufsize=8192"]):
            raw = topo.dig_from("cli", *args, "+ignore", qtype, name)
            fits = args[0] in ("+bufsize=4096", "+bufsize=8192")
            assert raw.status == "NOERROR" and ("tc" in raw.flags) != fits, f"{qtype} {args}\n{raw.text}"
            assert len(raw.answers) == (count if fits else 0) and "Warning" not in raw.text, raw.text
            assert raw.size <= (4096 if fits else int(args[0].partition("=")[2] or 512)), raw.text
            full = topo.dig_from("cli", *args, qtype, name)
            assert len(full.answers) == count and full.status == "NOERROR", f"{qtype} {args}\n{full.text}"
    glibc = topo.hyprd.cli("exec", "gl", "getent", "ahostsv4", "many.example.test").stdout
    assert len({line.split()[0] for line in glibc.splitlines()}) == 100, glibc
    reverse = topo.hyprd.cli("exec", "gl", "getent", "hosts", "198.51.100.7").stdout.split()
    assert reverse[:2] == ["198.51.100.7", "host-01-" + "x" * 40 + ".example.test"], reverse
    for args in (["many.example.test"], ["-type=aaaa", "many.example.test"], ["198.51.100.7"]):
        out = topo.hyprd.cli("exec", "cli", "nslookup", *args, rc=None).stdout
        assert "Parse error" not in out and "bad" not in out, out


def test_upstream_reply_cut_short_over_udp_is_fetched_again_over_tcp(topo: Topology) -> None:
    """An upstream UDP reply cut at 512 bytes without TC (a middlebox) is never relayed: hypr asks over TCP."""
    got = topo.dig_from("cli", "+bufsize=4096", "TXT", "cut.example.test")
    assert got.status == "NOERROR" and len(got.answers) == 40 and "tc" not in got.flags, got.text
    assert topo.internet.asked("cut.example.test") == ["udp cut.example.test TXT", "tcp cut.example.test TXT"]
    small = topo.dig_from("cli", "+noedns", "+ignore", "TXT", "cut.example.test")  # from the cache: too big
    assert "tc" in small.flags and small.answers == () and small.status == "NOERROR", small.text


def test_internal_network_does_not_forward(topo: Topology) -> None:
    got = topo.dig_from("hermit", "inside.example.test")
    assert got.status == "NXDOMAIN" and got.answers == (), got.text
    assert "NXDOMAIN" in topo.nslookup("hermit", "inside2.example.test", rc=None)
    assert topo.internet.asked("inside.example.test") == [] and topo.internet.asked("inside2.example.test") == []


# -- askers hypr does not know (field report 2) ------------------------------------------------------------------------

STRANGER, SEALED_STRANGER = "10.40.0.250", "10.42.0.250"


def test_unknown_asker_on_a_bridge_gets_its_networks_names_and_nothing_leaks(topo: Topology) -> None:
    """An address on app's bridge without an endpoint (a workload whose record does not exist yet, anything else
    plugged into the bridge) asks as a member of app: app's names, NXDOMAIN for other bare names, nothing
    forwarded but dotted names outside `.hypr` and our reverse zones."""
    web, web2, far = topo.ips["web"], topo.ips["web2"], topo.ips["far"]
    with stranger(topo.hyprd, APP_GW, STRANGER) as ns:
        for port in (53, DNS_PORT):
            got = dig(ns, APP_GW, "web", port=port)
            assert (got.status, got.data) == ("NOERROR", [web]) and "aa" in got.flags, got.text
        assert dig(ns, APP_GW, "+tcp", "web").data == [web]  # over TCP the listener tells the network too
        assert sorted(dig(ns, APP_GW, "www").data) == sorted([web, web2])
        assert dig(ns, APP_GW, "WEB.app").data == [web]
        assert dig(ns, APP_GW, "web.hypr").data == [web] and dig(ns, APP_GW, "far.hypr").data == [far]
        for name in ("far", "hermit", "stray1", "stray2.hypr", "deep.web.hypr"):
            got = dig(ns, APP_GW, name)
            assert got.status == "NXDOMAIN" and "aa" in got.flags, f"{name}\n{got.text}"
        assert dig(ns, APP_GW, "AAAA", "stray3").status == "NXDOMAIN"
        assert dig(ns, APP_GW, "-x", far).data == ["far.hypr."]
        assert dig(ns, APP_GW, "-x", "10.40.0.200").status == "NXDOMAIN"
        zone = dig(ns, APP_GW, "SOA", "0.40.10.in-addr.arpa")
        assert (zone.status, zone.answers) == ("NOERROR", ()), zone.text
        assert dig(ns, APP_GW, "stranger1.example.test").data == [OUTSIDE_ADDRESS]  # dotted: forwarded
        busybox = run_in(ns, "busybox", "nslookup", "web2", APP_GW).stdout
        assert nslookup_addresses(busybox) == [web2], busybox
    asked = [q.split()[1] for q in topo.internet.queries()]
    for name in ("web", "www", "far", "hermit", "stray1", "stray3", "web2", "200.0.40.10.in-addr.arpa"):
        assert name not in asked
    assert not [n for n in asked if n.endswith(".hypr") or n.endswith("40.10.in-addr.arpa")], asked
    assert topo.internet.asked("stranger1.example.test") == ["udp stranger1.example.test A"]


def test_unknown_asker_on_an_internal_network_is_never_forwarded(topo: Topology) -> None:
    with stranger(topo.hyprd, SEALED_GW, SEALED_STRANGER) as ns:
        assert dig(ns, SEALED_GW, "hermit").data == [topo.ips["hermit"]]
        assert dig(ns, SEALED_GW, "web.hypr").data == [topo.ips["web"]]
        for args in (["web"], ["stranger2.example.test"], ["-x", "192.0.2.1"], ["+tcp", "stranger3.example.test"]):
            got = dig(ns, SEALED_GW, *args)
            assert got.status == "NXDOMAIN" and got.answers == (), f"{args}\n{got.text}"
    asked = [q.split()[1] for q in topo.internet.queries()]
    assert not {"stranger2.example.test", "stranger3.example.test", "1.2.0.192.in-addr.arpa"} & set(asked)


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
        # Each keeps its chance until the deadline (a slow server is not a dead one), well inside dig's 5 s.
        deadline = FORWARD_DEADLINE * 1000
        assert deadline - 100 < got.msec < deadline + 1000, f"SERVFAIL took {got.msec} ms"
        assert len(net.asked("lost.example.test")) == 2
        assert dig(hyprd.ns, DEFAULT_GW, "nope.hypr").status == "NXDOMAIN"  # local answers do not wait


def test_a_slow_upstream_is_waited_for_and_a_faster_one_asked_meanwhile() -> None:
    """An upstream slower than the hedge still answers, from the host and from workloads (busybox, glibc);
    with a second server, that one is asked after the hedge and the first good answer wins."""
    with dns_daemon(f"{ZONE_SERVER}:53") as (hyprd, net):
        got = dig(hyprd.ns, DEFAULT_GW, "slow.one.example.test")
        assert got.data == [OUTSIDE_ADDRESS] and SLOW * 1000 - 100 < got.msec < FORWARD_DEADLINE * 1000, got.text
        assert len(net.asked("slow.one.example.test")) == 1
        create_network(hyprd, "s1", "10.49.0.0/24")
        run_workload(hyprd, "bb", "s1")
        run_workload(hyprd, "gl", "s1", image="host")
        out = hyprd.cli("exec", "bb", "nslookup", "slow.two.example.test", rc=None).stdout
        assert nslookup_addresses(out) == [OUTSIDE_ADDRESS], out
        out = hyprd.cli("exec", "gl", "getent", "hosts", "slow.three.example.test").stdout
        assert out.split()[:1] == [OUTSIDE_ADDRESS]
    with dns_daemon(f"{ZONE_SERVER}:53,{SECOND_ZONE}:53") as (hyprd, net):
        got = dig(hyprd.ns, DEFAULT_GW, "slow.four.example.test")
        assert got.data == [SECOND_ADDRESS] and 300 < got.msec < SLOW * 1000, got.text
        assert [len(net.asked("slow.four.example.test", server)) for server in (ZONE_SERVER, SECOND_ZONE)] == [1, 1]


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


# -- answers larger than the asker's UDP size (field report 1) ------------------------------------------------------

POOLS = {"pool29": 29, "pool30": 30, "pool": 31, "pool60": 60}  # alias -> members: m0..m(N-1) carry it
POOL_GW = "10.45.0.1"


def full_size(alias: str, members: int, edns: bool) -> int:
    """Header + question + N A records (+ OPT): the whole answer as one message."""
    return 12 + len(alias) + 2 + 4 + 16 * members + (11 if edns else 0)


def getent_addresses(output: str) -> list[str]:
    return sorted({line.split()[0] for line in output.splitlines() if line.strip()})


def test_large_alias_pools_reach_dig_nslookup_and_getent_inside_workloads() -> None:
    """31 workloads sharing `--network-alias pool` made nslookup say "Parse error", dig "bad label type" and getent
    print nothing. Every real resolver must now get all N addresses (TC, then TCP, when N is past its UDP size),
    for N = 29, 30, 31 and 60. busybox nslookup cannot: it only speaks UDP and reads 512 bytes at most, so past
    512 bytes it gets a valid TC reply without addresses, never a parse error."""
    with dns_daemon() as (hyprd, _net):
        create_network(hyprd, "n2", "10.45.0.0/24")

        def start(i: int) -> None:
            run_workload(hyprd, f"m{i}", "n2", *[alias for alias, n in POOLS.items() if i < n])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(start, range(max(POOLS.values()))))
        run_workload(hyprd, "gl", "n2", image="host")  # the host's glibc, its own resolv.conf (the gateway)
        with hyprd.client() as client:
            ips = {c["Names"][0].lstrip("/"): c["NetworkSettings"]["Networks"]["n2"]["IPAddress"]
                   for c in client.containers()}  # fmt: skip
        asker = workload_netns(hyprd, "m0")  # dig from a pool member's own namespace (its own source address)

        def check(alias: str) -> None:
            members = POOLS[alias]
            want = sorted(ips[f"m{i}"] for i in range(members))
            for args, limit in [(["+noedns"], 512), (["+bufsize=512"], 512), (["+bufsize=900"], 900), ([], 1232)]:
                edns = "+noedns" not in args
                truncated = full_size(alias, members, edns) > limit
                raw = dig(asker, POOL_GW, *args, "+ignore", alias)  # the UDP reply itself, no TCP retry
                assert raw.status == "NOERROR" and ("tc" in raw.flags) == truncated, f"{alias} {args}\n{raw.text}"
                assert 0 < raw.size <= limit and "Warning" not in raw.text, raw.text
                assert sorted(raw.data) == ([] if truncated else want), raw.text
                got = dig(asker, POOL_GW, *args, alias)
                assert sorted(got.data) == want, f"{alias} {args}\n{got.text}"
                assert ("Truncated, retrying in TCP mode" in got.text) == truncated, got.text
            out = hyprd.cli("exec", "m0", "nslookup", alias, rc=None).stdout
            assert "Parse error" not in out, out
            fits = full_size(alias, members, edns=False) <= 512
            assert sorted(nslookup_addresses(out)) == (want if fits else []), out
            for env in ([], ["-e", "RES_OPTIONS=edns0"]):  # glibc: 512 bytes, or EDNS with 1200
                out = hyprd.cli("exec", *env, "gl", "getent", "ahostsv4", alias).stdout
                assert getent_addresses(out) == want, f"{alias} {env}\n{out}"

        with ThreadPoolExecutor(len(POOLS)) as pool:
            list(pool.map(check, POOLS))


# -- the workload's resolver configuration (field report 4): search domains ------------------------------------------

SEARCH_GW = "10.46.0.1"


def resolv_of(hyprd: Hyprd, *run_args: str) -> str:
    return hyprd.cli("run", "--rm", *run_args, "busybox", "cat", "/etc/resolv.conf").stdout


def test_peers_under_search_domains_for_busybox_and_glibc() -> None:
    """With search domains in a workload's resolv.conf, busybox nslookup asks only `peer.<domain>` for a bare
    `peer` (and glibc does so first with ndots above 0). Those names are answered as the peer, for the host's
    search list (no flag) and for `--dns-search`, and never forwarded; other names under the domains still are."""
    conf = f"nameserver {ZONE_SERVER}\nsearch corp.test example.test\n"
    with dns_daemon(resolv_conf=conf) as (hyprd, net):
        create_network(hyprd, "n1", "10.46.0.0/24")
        create_network(hyprd, "n2", "10.47.0.0/24")
        run_workload(hyprd, "pa1", "n1", "svc")
        run_workload(hyprd, "far", "n2")
        run_workload(hyprd, "mine", "n1", DnsSearch=["own.test"])  # --dns-search, for dig from its namespace
        pa1 = ip_of(hyprd, "pa1", "n1")
        assert "search corp.test example.test\n" in resolv_of(hyprd, "--network", "n1")
        assert "search own.test\n" in resolv_of(hyprd, "--network", "n1", "--dns-search", "own.test")

        def nslookup(name: str, *run_args: str) -> list[str]:
            out = hyprd.cli("run", "--rm", "--network", "n1", *run_args, "busybox", "nslookup", name, rc=None).stdout
            return list(dict.fromkeys(nslookup_addresses(out)))  # one answer per search domain: the same peer

        def getent(name: str, *run_args: str, db: str = "hosts") -> str:
            out = hyprd.cli("run", "--rm", "--network", "n1", *run_args, "host", "getent", db, name, rc=None)
            return out.stdout

        # busybox nslookup: the host's search list, then --dns-search, then none at all
        assert nslookup("pa1") == [pa1]
        assert nslookup("svc") == [pa1]  # aliases too
        assert nslookup("pa1", "--dns-search", "other.test") == [pa1]
        assert nslookup("pa1", "--dns-search", "other.test", "--dns-search", "corp.test") == [pa1]
        assert nslookup("pa1", "--dns-search", ".") == [pa1]  # asked as it is
        # glibc: ndots:2 makes it try the search list first; ndots:0 (hypr's default) asks `pa1` as it is first
        for args in ((), ("--dns-option", "ndots:2"), ("--dns-search", "other.test", "--dns-option", "ndots:2")):
            assert getent("pa1", *args).split()[:1] == [pa1], args
            assert getent("svc", *args, db="ahostsv4").split()[:1] == [pa1], args
        assert getent("pa1.corp.test").split()[:1] == [pa1]
        assert getent("pa1.other.test", "--dns-search", "other.test").split()[:1] == [pa1]
        # dig from workloads' own namespaces: each asker's own list, or the host's
        asker = workload_netns(hyprd, "mine")
        assert dig(asker, SEARCH_GW, "pa1.own.test").data == [pa1]
        assert dig(asker, SEARCH_GW, "+tcp", "SVC.Own.Test").data == [pa1]
        assert dig(asker, SEARCH_GW, "AAAA", "pa1.own.test").status == "NOERROR"  # NODATA, as `pa1` has
        assert dig(workload_netns(hyprd, "pa1"), SEARCH_GW, "pa1.corp.test").data == [pa1]
        assert dig(workload_netns(hyprd, "pa1"), SEARCH_GW, "pa1.own.test").status == "NXDOMAIN"  # forwarded
        # an unknown asker on the bridge is taken for a workload with the host's list
        with stranger(hyprd, SEARCH_GW, "10.46.0.250") as ns:
            assert dig(ns, SEARCH_GW, "pa1.example.test").data == [pa1]
        # other names under the domains are forwarded as before; a peer of another network is no name of ours
        assert OUTSIDE_ADDRESS in nslookup("intranet")  # intranet.example.test, from the zone server
        assert net.asked("intranet.corp.test") and net.asked("intranet.example.test")
        assert nslookup("far") == [OUTSIDE_ADDRESS]  # far.example.test from upstream: far is on n2, not ours to give
        assert net.asked("far.corp.test") and net.asked("far.example.test")
        never = {f"{n}.{d}" for n in ("pa1", "svc") for d in ("corp.test", "example.test", "other.test")}
        asked = {q.split()[1] for q in net.queries()}
        assert not (never | {"svc.own.test"}) & asked, sorted(never & asked)
        assert "pa1.own.test" in asked  # asked by pa1 itself, whose domains do not include own.test

        # The host's resolv.conf changes: DNS follows it at once, as new workloads' resolv.conf does.
        (hyprd.root / "resolv.conf").write_text(f"nameserver {ZONE_SERVER}\nsearch new.test\n")
        wait_until(lambda: dig(workload_netns(hyprd, "pa1"), SEARCH_GW, "pa1.new.test").data == [pa1], "new.test")
        forwarded_before = len(net.asked("pa1.new.test"))  # while the daemon had not seen the change yet
        assert "search new.test\n" in resolv_of(hyprd, "--network", "n1")
        assert nslookup("pa1") == [pa1]
        assert dig(workload_netns(hyprd, "pa1"), SEARCH_GW, "pa1.corp.test").status == "NXDOMAIN"  # forwarded now
        assert dig(asker, SEARCH_GW, "pa1.own.test").data == [pa1]  # its own list does not change
        assert len(net.asked("pa1.new.test")) == forwarded_before


# -- --dns: the servers the gateway forwards a workload's outside names to ---------------------------------------------

FWD_GW = "10.48.0.1"


def test_dns_flag_sends_that_workloads_outside_names_to_its_own_servers() -> None:
    """`--dns X` (HostConfig.Dns, compose `dns:`): hypr's gateway stays the only nameserver, so peers and `.hypr`
    keep working, and the outside names of that workload go to X instead of the daemon's upstreams, with failover
    and a cache of their own; a workload without --dns still uses the daemon's."""
    with dns_daemon() as (hyprd, net):
        create_network(hyprd, "f1", "10.48.0.0/24")
        run_workload(hyprd, "own", "f1", Dns=[SECOND_ZONE])
        run_workload(hyprd, "plain", "f1")
        run_workload(hyprd, "gl", "f1", image="host", Dns=[SECOND_ZONE])
        run_workload(hyprd, "fo", "f1", Dns=[BLACKHOLES[0], SECOND_ZONE])
        own, plain, fo = (workload_netns(hyprd, n) for n in ("own", "plain", "fo"))
        resolv = hyprd.cli("exec", "own", "cat", "/etc/resolv.conf").stdout
        assert f"nameserver {FWD_GW}\n" in resolv and SECOND_ZONE not in resolv

        def busybox(who: str, name: str) -> list[str]:
            return nslookup_addresses(hyprd.cli("exec", who, "nslookup", name, rc=None).stdout)

        for _ in range(2):  # the second time from hypr's cache: still each asker's own upstream's answer
            assert busybox("own", "b1.example.test") == [SECOND_ADDRESS]
            assert busybox("plain", "b1.example.test") == [OUTSIDE_ADDRESS]
            assert dig(own, FWD_GW, "b1.example.test").data == [SECOND_ADDRESS]
            assert dig(own, FWD_GW, "+tcp", "b1.example.test").data == [SECOND_ADDRESS]
            assert dig(plain, FWD_GW, "+tcp", "b1.example.test").data == [OUTSIDE_ADDRESS]
            assert dig(hyprd.ns, FWD_GW, "b1.example.test").data == [OUTSIDE_ADDRESS]  # the host: the daemon's
        assert net.asked("b1.example.test", SECOND_ZONE) and net.asked("b1.example.test", ZONE_SERVER)
        assert hyprd.cli("exec", "gl", "getent", "hosts", "b2.example.test").stdout.split()[:1] == [SECOND_ADDRESS]
        assert dig(own, FWD_GW, "only2.example.test").data == [SECOND_ADDRESS]
        assert net.asked("b2.example.test", ZONE_SERVER) == [] and net.asked("only2.example.test", ZONE_SERVER) == []
        # local names are hypr's whatever the workload's servers: peers, .hypr, reverse names
        assert busybox("own", "plain") == [ip_of(hyprd, "plain", "f1")]
        assert dig(own, FWD_GW, "plain.hypr").data == [ip_of(hyprd, "plain", "f1")]
        assert not net.asked("plain", SECOND_ZONE) and not net.asked("plain.hypr", SECOND_ZONE)
        # failover between its own servers: the dead first one costs one timeout, then is tried last
        first = dig(fo, FWD_GW, "b3.example.test")
        assert first.data == [SECOND_ADDRESS] and first.msec < 800, first.text
        later = dig(fo, FWD_GW, "b4.example.test")
        assert later.data == [SECOND_ADDRESS] and later.msec < 350, later.text
        assert net.asked("b3.example.test", BLACKHOLES[0]) and not net.asked("b4.example.test", BLACKHOLES[0])
        assert net.asked("b3.example.test", ZONE_SERVER) == [] and net.asked("b4.example.test", ZONE_SERVER) == []
        # the CLI flag, for a workload's first instruction
        out = hyprd.cli(
            "run", "--rm", "--network", "f1", "--dns", SECOND_ZONE, "busybox", "nslookup", "b5.example.test"
        )
        assert nslookup_addresses(out.stdout) == [SECOND_ADDRESS] and not net.asked("b5.example.test", ZONE_SERVER)
        out = hyprd.cli("run", "--rm", "--network", "f1", "busybox", "nslookup", "b5.example.test")
        assert nslookup_addresses(out.stdout) == [OUTSIDE_ADDRESS]
