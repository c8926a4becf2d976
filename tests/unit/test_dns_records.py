"""Lookup rules as tables: (asker, where the query arrived, name, type) -> answer. Pure; no sockets."""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv4Network

import pytest

from hypr.dns.records import HOST as HOST_SCOPE
from hypr.dns.records import Found, Outcome, Records, build_records, lookup, scope_for
from hypr.models import Endpoint, Network, Snapshot, Workload

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
