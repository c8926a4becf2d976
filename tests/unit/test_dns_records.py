"""Lookup rules as tables: (asker, where the query arrived, name, type) -> answer. Pure; no sockets."""

from __future__ import annotations

import dataclasses
import hashlib
from ipaddress import IPv4Address, IPv4Network

import pytest

from hypr.dns.records import HOST as HOST_SCOPE
from hypr.dns.records import (
    Found,
    Outcome,
    Records,
    build_records,
    lookup,
    scope_for,
    search_domains,
    valid_name,
)
from hypr.models import Endpoint, Network, Resolver, Snapshot, Workload

APP, DATA, SECRET, BRIDGE = "a" * 64, "b" * 64, "c" * 64, "d" * 64


def net(nid: str, name: str, subnet: str, *, internal: bool = False) -> Network:
    sub = IPv4Network(subnet)
    return Network(nid, name, "vbr" + nid[0], sub, sub.network_address + 1, internal=internal)


def wl(name: str, state: str = "running") -> Workload:
    return Workload(id=hashlib.sha256(name.encode()).hexdigest(), name=name, image="img", state=state)  # type: ignore[arg-type]


def ep(workload: Workload, network: str, ip: str, position: int = 0, aliases: tuple[str, ...] = ()) -> Endpoint:
    return Endpoint(
        id=f"{workload.name}-{position}",
        workload_id=workload.id,
        network_id=network,
        ip=IPv4Address(ip),
        mac="02:42:00:00:00:00",
        host_ifname="hv0",
        position=position,
        aliases=aliases,
    )


WEB, DB, API1, API2, VAULT, LONELY, GONE = (
    wl("web"),
    wl("db"),
    wl("api1"),
    wl("api2"),
    wl("vault"),
    wl("lonely"),
    wl("gone", "exited"),
)
SNAPSHOT = Snapshot(
    networks=(
        net(APP, "app", "10.89.1.0/24"),
        net(DATA, "Data-Net", "10.89.2.0/24"),
        net(SECRET, "secret", "10.89.3.0/24", internal=True),
        net(BRIDGE, "bridge", "10.88.0.0/16"),
    ),
    workloads=(WEB, DB, API1, API2, VAULT, LONELY, GONE),
    endpoints=(
        ep(WEB, DATA, "10.89.2.2", 1),
        ep(WEB, APP, "10.89.1.2", 0, ("frontend",)),
        ep(DB, DATA, "10.89.2.3", 0, ("database",)),
        ep(API1, APP, "10.89.1.3", 0, ("api",)),
        ep(API2, APP, "10.89.1.4", 0, ("api",)),
        ep(VAULT, SECRET, "10.89.3.2", 0),
        ep(LONELY, BRIDGE, "10.88.0.2", 0),
        ep(GONE, APP, "10.89.1.9", 0),
    ),
)
RECORDS = build_records(SNAPSHOT)
HOST = "192.168.1.5"  # not an endpoint: the host
GATEWAY = "10.89.1.1"  # a gateway asks as the host too


def a(*ips: str) -> Found:
    return Found(addresses=tuple(IPv4Address(i) for i in ips))


@pytest.mark.parametrize(
    ("asker", "qname", "qtype", "expected"),
    [
        # <name>.hypr: everyone; shared network's address, else the first endpoint's
        (HOST, "web.hypr", "A", a("10.89.1.2")),
        (GATEWAY, "web.hypr.", "A", a("10.89.1.2")),
        ("10.89.2.3", "web.hypr", "A", a("10.89.2.2")),  # db shares only Data-Net with web
        ("10.89.1.3", "web.hypr", "A", a("10.89.1.2")),
        ("10.88.0.2", "db.hypr", "A", a("10.89.2.3")),  # no shared network: first endpoint
        ("10.89.3.2", "web.hypr", "A", a("10.89.1.2")),  # even from an internal network
        (HOST, "WEB.HyPr", "A", a("10.89.1.2")),
        (HOST, "web.hypr", "AAAA", Outcome.NODATA),
        (HOST, "web.hypr", "MX", Outcome.NODATA),
        (HOST, "web.hypr", "ANY", a("10.89.1.2")),
        (HOST, "hypr", "A", Outcome.NODATA),
        (HOST, "nope.hypr", "A", Outcome.NXDOMAIN),
        ("10.89.1.3", "nope.hypr", "A", Outcome.NXDOMAIN),
        (HOST, "web.app.hypr", "A", Outcome.NXDOMAIN),
        (HOST, "gone.hypr", "A", Outcome.NXDOMAIN),  # exited workloads are not published
        # bare names and aliases: only askers sharing a network, that network's address(es)
        ("10.89.1.3", "web", "A", a("10.89.1.2")),
        ("10.89.2.3", "web", "A", a("10.89.2.2")),
        ("10.89.2.2", "db", "A", a("10.89.2.3")),
        ("10.89.2.2", "database", "A", a("10.89.2.3")),
        ("10.89.1.2", "api", "A", a("10.89.1.3", "10.89.1.4")),
        ("10.89.1.3", "Frontend.", "A", a("10.89.1.2")),
        ("10.89.2.3", "frontend", "A", Outcome.NXDOMAIN),  # alias lives on app only; single label: not leaked
        ("10.89.1.3", "db", "A", Outcome.NXDOMAIN),
        ("10.88.0.2", "web", "A", Outcome.NXDOMAIN),
        (HOST, "web", "A", Outcome.NXDOMAIN),  # the host gets .hypr only, and its bare names do not leak
        ("10.89.1.3", "web", "AAAA", Outcome.NODATA),
        ("10.89.1.3", WEB.id[:12], "A", a("10.89.1.2")),
        # <name>.<network>
        ("10.89.1.3", "web.app", "A", a("10.89.1.2")),
        ("10.89.2.3", "web.data-net", "A", a("10.89.2.2")),
        ("10.89.2.3", "web.app", "A", Outcome.FORWARD),  # db is not on app: not ours to answer
        ("10.89.1.3", "frontend.app", "A", a("10.89.1.2")),  # aliases too (compose service names)
        ("10.89.1.2", "api.app", "A", a("10.89.1.3", "10.89.1.4")),
        ("10.89.2.2", "database.data-net", "A", a("10.89.2.3")),
        ("10.89.2.3", "frontend.data-net", "A", Outcome.FORWARD),  # the alias is on app only
        # PTR for every endpoint address, to everyone
        (HOST, "2.1.89.10.in-addr.arpa", "PTR", Found(pointers=("web.hypr",))),
        ("10.88.0.2", "2.2.89.10.in-addr.arpa.", "PTR", Found(pointers=("web.hypr",))),
        (HOST, "2.1.89.10.in-addr.arpa", "A", Outcome.NODATA),
        (HOST, "99.1.89.10.in-addr.arpa", "PTR", Outcome.NXDOMAIN),  # inside a hypr subnet
        (HOST, "9.1.89.10.in-addr.arpa", "PTR", Outcome.NXDOMAIN),  # the exited workload's address
        (HOST, "1.2.0.192.in-addr.arpa", "PTR", Outcome.FORWARD),
        (HOST, "x.1.89.10.in-addr.arpa", "PTR", Outcome.NXDOMAIN),  # below 10.89.1.0/24: ours, nothing there
        (HOST, "1.2.1.89.10.in-addr.arpa", "PTR", Outcome.NXDOMAIN),  # below an address
        (HOST, "01.1.89.10.in-addr.arpa", "PTR", Outcome.NXDOMAIN),  # not an octet: below 1.89.10
        (HOST, "256.1.89.10.in-addr.arpa", "PTR", Outcome.NXDOMAIN),
        (HOST, "1.89.10.in-addr.arpa", "SOA", Outcome.NODATA),  # records below it
        (HOST, "1.89.10.in-addr.arpa", "PTR", Outcome.NODATA),
        (HOST, "3.89.10.in-addr.arpa", "NS", Outcome.NODATA),
        (HOST, "88.10.in-addr.arpa", "SOA", Outcome.NODATA),  # the /16 default network: lonely is below
        (HOST, "7.88.10.in-addr.arpa", "PTR", Outcome.NXDOMAIN),  # inside the /16, nothing below
        (HOST, "5.89.10.in-addr.arpa", "PTR", Outcome.FORWARD),  # 10.89.5.0/24 is not ours
        (HOST, "89.10.in-addr.arpa", "SOA", Outcome.FORWARD),  # 10.89.0.0/16 is larger than our /24s
        (HOST, "10.in-addr.arpa", "SOA", Outcome.FORWARD),
        # outside names: forwarded, except for internal-only askers and single labels from workloads
        (HOST, "example.com", "A", Outcome.FORWARD),
        ("10.89.1.3", "example.com", "A", Outcome.FORWARD),
        ("10.89.3.2", "example.com", "A", Outcome.NXDOMAIN),
        ("10.89.3.2", "vault", "A", a("10.89.3.2")),
        ("10.89.1.3", "localdomain", "A", Outcome.NXDOMAIN),
        (HOST, "localdomain", "A", Outcome.NXDOMAIN),
        (HOST, "", "NS", Outcome.FORWARD),
        ("10.89.1.3", "", "NS", Outcome.FORWARD),  # the root is no bare name: DNSSEC validators ask for it
        ("10.89.3.2", "", "NS", Outcome.NXDOMAIN),
    ],
)
def test_lookup(asker: str, qname: str, qtype: str, expected: object) -> None:
    assert lookup(RECORDS, IPv4Address(asker), None, qname, qtype) == expected


APP_GW, DATA_GW, SECRET_GW, BRIDGE_GW = "10.89.1.1", "10.89.2.1", "10.89.3.1", "10.88.0.1"
NEWCOMER = "10.89.1.50"  # inside app's subnet, no endpoint (yet): a workload being started, a stray veth
SEALED_NEWCOMER = "10.89.3.77"  # inside the internal network's subnet, no endpoint


@pytest.mark.parametrize(
    ("asker", "arrived_on", "qname", "qtype", "expected"),
    [
        # a known asker: its own networks, wherever the query arrived
        ("10.89.1.3", DATA_GW, "web", "A", a("10.89.1.2")),
        ("10.89.1.3", DATA_GW, "db", "A", Outcome.NXDOMAIN),
        ("10.89.3.2", APP_GW, "example.com", "A", Outcome.NXDOMAIN),  # internal-only, whatever it asks
        # an unknown asker on app, asking app's gateway: a member of app (aardvark-dns's fallback)
        (NEWCOMER, APP_GW, "web", "A", a("10.89.1.2")),
        (NEWCOMER, APP_GW, "API", "A", a("10.89.1.3", "10.89.1.4")),
        (NEWCOMER, APP_GW, "web", "AAAA", Outcome.NODATA),
        (NEWCOMER, APP_GW, "web.app", "A", a("10.89.1.2")),
        (NEWCOMER, APP_GW, "db", "A", Outcome.NXDOMAIN),  # db is on Data-Net only: not leaked, not forwarded
        (NEWCOMER, APP_GW, "nope", "A", Outcome.NXDOMAIN),
        (NEWCOMER, APP_GW, "web.hypr", "A", a("10.89.1.2")),
        (NEWCOMER, APP_GW, "db.hypr", "A", a("10.89.2.3")),
        (NEWCOMER, APP_GW, "nope.hypr", "A", Outcome.NXDOMAIN),
        (NEWCOMER, APP_GW, "web.data-net", "A", Outcome.FORWARD),  # not on Data-Net: a dotted name like any
        (NEWCOMER, APP_GW, "example.com", "A", Outcome.FORWARD),
        (NEWCOMER, APP_GW, "", "NS", Outcome.FORWARD),
        (NEWCOMER, APP_GW, "2.1.89.10.in-addr.arpa", "PTR", Found(pointers=("web.hypr",))),
        (NEWCOMER, APP_GW, "50.1.89.10.in-addr.arpa", "PTR", Outcome.NXDOMAIN),
        (NEWCOMER, APP_GW, "1.89.10.in-addr.arpa", "SOA", Outcome.NODATA),
        (NEWCOMER, APP_GW, "1.2.0.192.in-addr.arpa", "PTR", Outcome.FORWARD),
        # an unknown asker on the internal network: its names, nothing forwarded
        (SEALED_NEWCOMER, SECRET_GW, "vault", "A", a("10.89.3.2")),
        (SEALED_NEWCOMER, SECRET_GW, "web", "A", Outcome.NXDOMAIN),
        (SEALED_NEWCOMER, SECRET_GW, "web.hypr", "A", a("10.89.1.2")),
        (SEALED_NEWCOMER, SECRET_GW, "example.com", "A", Outcome.NXDOMAIN),
        (SEALED_NEWCOMER, SECRET_GW, "1.2.0.192.in-addr.arpa", "PTR", Outcome.NXDOMAIN),
        (SEALED_NEWCOMER, SECRET_GW, "2.3.89.10.in-addr.arpa", "PTR", Found(pointers=("vault.hypr",))),
        # the host: its queries to a gateway come from that gateway's address; any address outside the arrival
        # network, and any query on a listener that is no gateway, asks as the host too
        (APP_GW, APP_GW, "web", "A", Outcome.NXDOMAIN),
        (APP_GW, APP_GW, "web.hypr", "A", a("10.89.1.2")),
        (APP_GW, APP_GW, "example.com", "A", Outcome.FORWARD),
        (SECRET_GW, SECRET_GW, "example.com", "A", Outcome.FORWARD),  # the host resolves what it likes
        (SECRET_GW, SECRET_GW, "vault", "A", Outcome.NXDOMAIN),
        (HOST, APP_GW, "web", "A", Outcome.NXDOMAIN),
        ("127.0.0.1", None, "web", "A", Outcome.NXDOMAIN),
        ("127.0.0.1", None, "web.hypr", "A", a("10.89.1.2")),
        ("127.0.0.1", None, "example.com", "A", Outcome.FORWARD),
        ("127.0.0.1", None, "99.1.89.10.in-addr.arpa", "PTR", Outcome.NXDOMAIN),
        (NEWCOMER, DATA_GW, "web", "A", Outcome.NXDOMAIN),  # app's address asking Data-Net's gateway: the host
        (NEWCOMER, DATA_GW, "web.hypr", "A", a("10.89.1.2")),
        (NEWCOMER, "127.0.77.1", "web", "A", Outcome.NXDOMAIN),  # a listener that is no gateway
        ("10.89.1.255", APP_GW, "web", "A", Outcome.NXDOMAIN),  # the broadcast address is nobody's
        ("10.89.1.0", APP_GW, "web", "A", Outcome.NXDOMAIN),
        ("::1", APP_GW, "web", "A", Outcome.NXDOMAIN),
    ],
)
def test_lookup_by_arrival(asker: str, arrived_on: str | None, qname: str, qtype: str, expected: object) -> None:
    assert lookup(RECORDS, asker, arrived_on, qname, qtype) == expected


def test_scope_of_unknown_askers() -> None:
    assert scope_for(RECORDS, NEWCOMER, APP_GW) == frozenset({APP})
    assert scope_for(RECORDS, SEALED_NEWCOMER, SECRET_GW) == frozenset({SECRET})
    assert scope_for(RECORDS, "10.88.200.9", BRIDGE_GW) == frozenset({BRIDGE})
    assert scope_for(RECORDS, "10.89.1.3", DATA_GW) == frozenset({APP})  # known: its own networks
    for asker, arrived_on in [(APP_GW, APP_GW), (DATA_GW, APP_GW), (HOST, APP_GW), (NEWCOMER, None)]:
        assert scope_for(RECORDS, asker, arrived_on) == HOST_SCOPE


@pytest.mark.parametrize("asker", [HOST, NEWCOMER, SEALED_NEWCOMER, APP_GW, "10.89.1.3", "127.0.0.1"])
@pytest.mark.parametrize("arrived_on", [None, APP_GW, DATA_GW, SECRET_GW, BRIDGE_GW])
@pytest.mark.parametrize("qname", ["web", "nope", "api", "x", "web.hypr", "nope.hypr", "deep.web.hypr", "hypr"])
def test_bare_and_hypr_names_are_never_forwarded(asker: str, arrived_on: str | None, qname: str) -> None:
    for qtype in ("A", "AAAA", "TXT", "SRV"):
        assert lookup(RECORDS, asker, arrived_on, qname, qtype) is not Outcome.FORWARD


@pytest.mark.parametrize("asker", [HOST, NEWCOMER, SEALED_NEWCOMER, APP_GW, "10.89.1.3", "10.89.3.2"])
@pytest.mark.parametrize("arrived_on", [None, APP_GW, SECRET_GW])
@pytest.mark.parametrize("address", ["10.89.1.2", "10.89.1.77", "10.89.3.9", "10.88.255.254"])
def test_reverse_names_of_our_subnets_are_never_forwarded(asker: str, arrived_on: str | None, address: str) -> None:
    name = IPv4Address(address).reverse_pointer
    for qname in (name, "x." + name, name.split(".", 1)[1]):
        for qtype in ("PTR", "A", "SOA"):
            assert lookup(RECORDS, asker, arrived_on, qname, qtype) is not Outcome.FORWARD


def test_workload_on_internal_and_external_network_forwards() -> None:
    snapshot = Snapshot(
        networks=SNAPSHOT.networks,
        workloads=(VAULT,),
        endpoints=(ep(VAULT, SECRET, "10.89.3.2", 0), ep(VAULT, APP, "10.89.1.20", 1)),
    )
    assert lookup(build_records(snapshot), IPv4Address("10.89.3.2"), None, "example.com", "A") is Outcome.FORWARD


def test_empty_snapshot_answers_nothing_locally() -> None:
    records = build_records(Snapshot())
    assert lookup(records, IPv4Address("10.0.0.1"), None, "web.hypr", "A") is Outcome.NXDOMAIN
    assert lookup(records, "10.0.0.1", "10.0.0.1", "example.org", "A") is Outcome.FORWARD
    assert lookup(records, "10.0.0.1", None, "web", "A") is Outcome.NXDOMAIN


def test_records_are_frozen() -> None:
    with pytest.raises(AttributeError):
        RECORDS.hypr = {}  # type: ignore[misc]
    assert isinstance(RECORDS, Records)


def test_build_is_deterministic() -> None:
    assert build_records(SNAPSHOT) == build_records(SNAPSHOT)


# -- search domains (field report 4: busybox nslookup asks only `peer.<search domain>`) -------------------------------

HOST_SEARCH = ("Corp.Test.", "example.test")  # the host's resolv.conf: normalised when the records are built
OWN, NONE_OF_ITS_OWN, INTERNAL_OWN = wl("own"), wl("nosearch"), wl("sealed")
SEARCH_SNAPSHOT = Snapshot(
    networks=SNAPSHOT.networks,
    workloads=(
        WEB,
        DB,
        API1,
        API2,
        VAULT,
        dataclasses.replace(OWN, resolver=Resolver(search=("dev.test",))),
        dataclasses.replace(NONE_OF_ITS_OWN, resolver=Resolver(search=())),  # `--dns-search .`
        dataclasses.replace(INTERNAL_OWN, resolver=Resolver(search=("in.test",))),
    ),
    endpoints=(
        *(e for e in SNAPSHOT.endpoints if e.workload_id in {WEB.id, DB.id, API1.id, API2.id, VAULT.id}),
        ep(OWN, APP, "10.89.1.20", 0),
        ep(NONE_OF_ITS_OWN, APP, "10.89.1.21", 0),
        ep(INTERNAL_OWN, SECRET, "10.89.3.20", 0),
    ),
)
SEARCH_RECORDS = build_records(SEARCH_SNAPSHOT, HOST_SEARCH)
API1_IP, OWN_IP, NOSEARCH_IP, SEALED_IP = "10.89.1.3", "10.89.1.20", "10.89.1.21", "10.89.3.20"


@pytest.mark.parametrize(
    ("asker", "arrived_on", "qname", "qtype", "expected"),
    [
        # the host's search list, for a workload without its own: `X.<D>` is X, for every name X it may see
        (API1_IP, None, "web.corp.test", "A", a("10.89.1.2")),
        (API1_IP, None, "WEB.Corp.Test.", "A", a("10.89.1.2")),
        (API1_IP, None, "web.example.test", "A", a("10.89.1.2")),  # every domain of the list
        (API1_IP, None, "api.corp.test", "A", a("10.89.1.3", "10.89.1.4")),  # aliases: all members
        (API1_IP, None, "frontend.corp.test", "A", a("10.89.1.2")),
        (API1_IP, None, "web.app.corp.test", "A", a("10.89.1.2")),  # `name.network` too
        (API1_IP, None, f"{WEB.id[:12]}.corp.test", "A", a("10.89.1.2")),  # the short ID
        (API1_IP, None, "api1.corp.test", "A", a("10.89.1.3")),  # its own name
        (API1_IP, None, "web.corp.test", "AAAA", Outcome.NODATA),  # as X would be: NODATA, not forwarded
        (API1_IP, None, "web.corp.test", "MX", Outcome.NODATA),
        # anything else under D is forwarded as before
        (API1_IP, None, "db.corp.test", "A", Outcome.FORWARD),  # db is on Data-Net, api1 is not
        (API1_IP, None, "intranet.corp.test", "A", Outcome.FORWARD),
        (API1_IP, None, "corp.test", "A", Outcome.FORWARD),
        (API1_IP, None, "x.web.corp.test", "A", Outcome.FORWARD),  # `x.web` is no name of ours
        (API1_IP, None, "web.corp.test.evil", "A", Outcome.FORWARD),  # D must be the end of the name
        (API1_IP, None, "webcorp.test", "A", Outcome.FORWARD),  # ... at a label boundary
        (API1_IP, None, "web.dev.test", "A", Outcome.FORWARD),  # not one of its search domains
        ("10.89.2.3", None, "web.corp.test", "A", a("10.89.2.2")),  # db sees web on Data-Net
        ("10.89.2.3", None, "api.corp.test", "A", Outcome.FORWARD),  # ... but not api
        # its own list replaces the host's (`--dns-search dev.test`)
        (OWN_IP, None, "web.dev.test", "A", a("10.89.1.2")),
        (OWN_IP, None, "web.corp.test", "A", Outcome.FORWARD),
        (OWN_IP, None, "web", "A", a("10.89.1.2")),
        # `--dns-search .`: no search domains at all
        (NOSEARCH_IP, None, "web.corp.test", "A", Outcome.FORWARD),
        (NOSEARCH_IP, None, "web", "A", a("10.89.1.2")),
        # an internal network: its names under its domains, nothing forwarded
        (SEALED_IP, None, "vault.in.test", "A", a("10.89.3.2")),
        (SEALED_IP, None, "web.in.test", "A", Outcome.NXDOMAIN),
        (SEALED_IP, None, "vault.corp.test", "A", Outcome.NXDOMAIN),
        # the host has no names to see: its `X.<D>` is forwarded as any dotted name
        (HOST, None, "web.corp.test", "A", Outcome.FORWARD),
        (APP_GW, APP_GW, "web.corp.test", "A", Outcome.FORWARD),
        # an unknown asker on a bridge is taken for a workload with the host's resolver settings
        (NEWCOMER, APP_GW, "web.corp.test", "A", a("10.89.1.2")),
        (NEWCOMER, APP_GW, "db.corp.test", "A", Outcome.FORWARD),
        (SEALED_NEWCOMER, SECRET_GW, "vault.example.test", "A", a("10.89.3.2")),
        (SEALED_NEWCOMER, SECRET_GW, "web.example.test", "A", Outcome.NXDOMAIN),
        # the rules before still come first
        (API1_IP, None, "web.hypr", "A", a("10.89.1.2")),
        (API1_IP, None, "nope", "A", Outcome.NXDOMAIN),
        (API1_IP, None, "2.1.89.10.in-addr.arpa", "PTR", Found(pointers=("web.hypr",))),
    ],
)
def test_search_domains(asker: str, arrived_on: str | None, qname: str, qtype: str, expected: object) -> None:
    assert lookup(SEARCH_RECORDS, asker, arrived_on, qname, qtype) == expected


@pytest.mark.parametrize("asker", [API1_IP, OWN_IP, SEALED_IP, NEWCOMER, SEALED_NEWCOMER])
def test_our_names_under_a_search_domain_are_never_forwarded(asker: str) -> None:
    """The reverse: `X.<D>` never goes upstream when X is a name the asker sees and D one of its search domains;
    under a domain that is not one of its own, the same name is an ordinary dotted name."""
    arrived_on = {NEWCOMER: APP_GW, SEALED_NEWCOMER: SECRET_GW}.get(asker)
    scope = scope_for(SEARCH_RECORDS, asker, arrived_on)
    visible = {name for network in scope.networks for name in SEARCH_RECORDS.scoped[network]}
    assert visible and scope.search
    for name in visible:
        expected = lookup(SEARCH_RECORDS, asker, arrived_on, name, "A")
        assert isinstance(expected, Found)
        for domain in scope.search:
            for qtype in ("A", "AAAA", "TXT"):
                got = lookup(SEARCH_RECORDS, asker, arrived_on, f"{name}.{domain}", qtype)
                assert got == lookup(SEARCH_RECORDS, asker, arrived_on, name, qtype), (name, domain, qtype)
        if scope.networks - SEARCH_RECORDS.internal:
            assert lookup(SEARCH_RECORDS, asker, arrived_on, f"{name}.elsewhere.test", "A") is Outcome.FORWARD


def test_search_lists_are_normalised_and_part_of_the_scope() -> None:
    assert SEARCH_RECORDS.host_search == ("corp.test", "example.test")
    assert search_domains(["A.Test.", "a.test", "", ".", "x" * 64 + ".test", "bad label.test", "b.test"]) == (
        "a.test",
        "b.test",
    )
    api1, own = scope_for(SEARCH_RECORDS, API1_IP, None), scope_for(SEARCH_RECORDS, OWN_IP, None)
    assert api1.networks == own.networks == frozenset({APP})
    assert (api1.search, own.search) == (("corp.test", "example.test"), ("dev.test",))
    assert api1 != own and hash(api1) != hash(own)  # the server's reply caches tell them apart
    assert scope_for(SEARCH_RECORDS, "10.89.1.4", None) is api1  # the same settings: one scope object
    assert scope_for(SEARCH_RECORDS, NEWCOMER, APP_GW).search == ("corp.test", "example.test")
    assert scope_for(RECORDS, NEWCOMER, APP_GW).search == ()


# -- --dns: the workload's own upstreams ------------------------------------------------------------------------------


def test_own_dns_servers_are_the_scopes_upstreams() -> None:
    snapshot = Snapshot(
        networks=SNAPSHOT.networks,
        workloads=(
            dataclasses.replace(OWN, resolver=Resolver(dns=("198.18.0.5", "2001:db8::53", "198.18.0.5"))),
            dataclasses.replace(NONE_OF_ITS_OWN, resolver=Resolver(dns=(APP_GW,))),  # our gateway: the default
            dataclasses.replace(INTERNAL_OWN, resolver=Resolver(dns=("198.18.0.5",))),
            API1,
        ),
        endpoints=(
            ep(OWN, APP, OWN_IP, 0),
            ep(NONE_OF_ITS_OWN, APP, NOSEARCH_IP, 0),
            ep(INTERNAL_OWN, SECRET, SEALED_IP, 0),
            ep(API1, APP, API1_IP, 0),
        ),
    )
    records = build_records(snapshot)
    own = scope_for(records, OWN_IP, None)
    assert own.upstreams == (("198.18.0.5", 53), ("2001:db8::53", 53))
    assert scope_for(records, NOSEARCH_IP, None).upstreams is None
    assert scope_for(records, API1_IP, None).upstreams is None
    assert own != scope_for(records, API1_IP, None)  # forwarded replies are never shared between the two
    assert lookup(records, OWN_IP, None, "example.com", "A") is Outcome.FORWARD
    # an internal network forwards nothing, whatever its servers
    assert lookup(records, SEALED_IP, None, "example.com", "A") is Outcome.NXDOMAIN


# -- names that cannot be DNS names (issue 13 item 10) ----------------------------------------------------------------

LONG = "l" * 63


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("web", True),
        (LONG, True),
        (LONG + "x", False),  # 64: one label too long
        (".".join([LONG] * 3) + "." + "x" * 61, True),  # 253 characters
        (".".join([LONG] * 3) + "." + "x" * 62, False),  # 254
        ("a" * 300, False),
        ("a.b_c-d", True),
        ("a..b", False),
        (".a", False),
        ("", False),
        ("with space", False),
        ("ünï", False),
        ("a/b", False),
        ("Upper", False),  # names are lower-cased before they are checked
    ],
)
def test_valid_name(name: str, valid: bool) -> None:
    assert valid_name(name) is valid


def test_names_that_cannot_be_dns_names_are_left_out_and_break_nothing_else() -> None:
    long64, long300, dotted = "a" * 64, "b" * 300, "c" * 60 + "." + "d" * 63
    bad_net = Network("e" * 64, "n" * 70, "vbre", IPv4Network("10.89.9.0/24"), IPv4Address("10.89.9.1"))
    w64, w300, wok, wdots = wl(long64), wl(long300), wl("fine"), wl(dotted)
    snapshot = Snapshot(
        networks=(*SNAPSHOT.networks, bad_net),
        workloads=(w64, w300, wok, wdots),
        endpoints=(
            ep(w64, APP, "10.89.1.64", 0, ("alias64", "x" * 64, "sp ace", "ü")),
            ep(w300, APP, "10.89.1.65", 0),
            ep(wok, APP, "10.89.1.66", 0, ("ok",)),
            ep(wok, bad_net.id, "10.89.9.2", 1),
            ep(wdots, APP, "10.89.1.67", 0),
        ),
    )
    records = build_records(snapshot)
    # no `.hypr` name and no PTR for a name that is no DNS name; its address's reverse name is simply unknown
    assert long64 not in records.hypr and long300 not in records.hypr
    assert lookup(records, HOST, None, "64.1.89.10.in-addr.arpa", "PTR") is Outcome.NXDOMAIN
    assert lookup(records, HOST, None, "65.1.89.10.in-addr.arpa", "PTR") is Outcome.NXDOMAIN
    # everything else about those workloads still works: their aliases, short IDs, their own lookups
    asker = "10.89.1.66"
    assert lookup(records, asker, None, "alias64", "A") == a("10.89.1.64")
    assert lookup(records, asker, None, w300.id[:12], "A") == a("10.89.1.65")
    assert lookup(records, "10.89.1.65", None, "fine", "A") == a("10.89.1.66")
    assert lookup(records, "10.89.1.65", None, "fine.hypr", "A") == a("10.89.1.66")
    # a 124-character dotted name is fine: all of its forms (`.hypr`, PTR, `name.network`) are published
    assert lookup(records, asker, None, dotted, "A") == a("10.89.1.67")
    assert lookup(records, HOST, None, "67.1.89.10.in-addr.arpa", "PTR") == Found(pointers=(dotted + ".hypr",))
    assert lookup(records, asker, None, dotted + ".app", "A") == a("10.89.1.67")
    # a network name that is no DNS label gives no `name.network` forms; bare names on it still work
    assert lookup(records, "10.89.9.2", None, "fine", "A") == a("10.89.1.66", "10.89.9.2")
    assert lookup(records, "10.89.9.2", None, "fine." + "n" * 70, "A") is Outcome.FORWARD
    for table in records.scoped.values():
        assert all(valid_name(name) for name in table)
    assert all(valid_name(target) for target in records.reverse.values())


# -- IPv6 ------------------------------------------------------------------------------------------------------------


def _dual_stack() -> Records:
    from ipaddress import IPv6Address, IPv6Network

    app = dataclasses.replace(
        net(APP, "app", "10.89.1.0/24"), subnet6=IPv6Network("fd00:1::/64"), gateway6=IPv6Address("fd00:1::1")
    )
    data = net(DATA, "data", "10.89.2.0/24")
    web, db, other = wl("web"), wl("db"), wl("other")
    endpoints = (
        dataclasses.replace(ep(web, APP, "10.89.1.2"), ip6=IPv6Address("fd00:1::2")),
        dataclasses.replace(ep(db, APP, "10.89.1.3", aliases=("sql",)), ip6=IPv6Address("fd00:1::3")),
        ep(other, DATA, "10.89.2.2"),
    )
    return build_records(Snapshot(networks=(app, data), workloads=(web, db, other), endpoints=endpoints))


@pytest.mark.parametrize(
    ("asker", "arrived_on", "qname", "qtype", "expected"),
    [
        ("fd00:1::2", "fd00:1::1", "db", "AAAA", ("fd00:1::3",)),  # scoped by the v6 source, as for v4
        ("fd00:1::2", "fd00:1::1", "sql", "A", ("10.89.1.3",)),
        ("10.89.1.2", "10.89.1.1", "db", "AAAA", ("fd00:1::3",)),
        ("10.89.2.2", "10.89.2.1", "db", "AAAA", Outcome.NXDOMAIN),  # not on a shared network
        ("10.89.2.2", "10.89.2.1", "db.hypr", "AAAA", ("fd00:1::3",)),  # .hypr answers for everyone
        ("10.89.2.2", "10.89.2.1", "other.hypr", "AAAA", Outcome.NODATA),  # IPv4 only: the name exists
        ("fd00:1::2", "fd00:1::1", "db.hypr", "ANY", ("10.89.1.3",)),
        ("fd00:1::2", "fd00:1::1", "db", "MX", Outcome.NODATA),
        ("fd00:1::9", "fd00:1::1", "db", "AAAA", ("fd00:1::3",)),  # a newcomer on the subnet asks as a member
        ("fd00:9::9", "fd00:1::1", "db", "AAAA", Outcome.NXDOMAIN),  # outside the subnet: the host
    ],
)
def test_aaaa_records_scoped_by_the_askers_ipv6_address(
    asker: str, arrived_on: str, qname: str, qtype: str, expected: tuple[str, ...] | Outcome
) -> None:
    from ipaddress import ip_address

    answer = lookup(_dual_stack(), asker, arrived_on, qname, qtype)
    if isinstance(expected, Outcome):
        assert answer is expected
    else:
        assert answer == Found(addresses=tuple(ip_address(a) for a in expected))


def test_ptr_under_ip6_arpa() -> None:
    from ipaddress import IPv6Address

    records = _dual_stack()
    name = IPv6Address("fd00:1::3").reverse_pointer
    assert lookup(records, "fd00:1::2", None, name, "PTR") == Found(pointers=("db.hypr",))
    assert lookup(records, "fd00:1::2", None, IPv6Address("fd00:1::77").reverse_pointer, "PTR") is Outcome.NXDOMAIN
    assert lookup(records, "fd00:1::2", None, name.split(".", 4)[4], "PTR") is Outcome.NODATA  # inside our /64
    assert lookup(records, "fd00:1::2", None, IPv6Address("2001:db8::1").reverse_pointer, "PTR") is Outcome.FORWARD
