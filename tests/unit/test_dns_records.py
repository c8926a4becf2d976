"""Lookup rules as tables: (asker, name, type) -> answer. Pure; no sockets."""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv4Network

import pytest

from hypr.dns.records import Found, Outcome, Records, build_records, lookup
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
        (HOST, "web", "A", Outcome.FORWARD),  # the host gets .hypr only
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
        (HOST, "x.1.89.10.in-addr.arpa", "PTR", Outcome.FORWARD),
        # outside names: forwarded, except for internal-only askers and single labels from workloads
        (HOST, "example.com", "A", Outcome.FORWARD),
        ("10.89.1.3", "example.com", "A", Outcome.FORWARD),
        ("10.89.3.2", "example.com", "A", Outcome.NXDOMAIN),
        ("10.89.3.2", "vault", "A", a("10.89.3.2")),
        ("10.89.1.3", "localdomain", "A", Outcome.NXDOMAIN),
        (HOST, "", "NS", Outcome.FORWARD),
    ],
)
def test_lookup(asker: str, qname: str, qtype: str, expected: object) -> None:
    assert lookup(RECORDS, IPv4Address(asker), qname, qtype) == expected


def test_workload_on_internal_and_external_network_forwards() -> None:
    snapshot = Snapshot(
        networks=SNAPSHOT.networks,
        workloads=(VAULT,),
        endpoints=(ep(VAULT, SECRET, "10.89.3.2", 0), ep(VAULT, APP, "10.89.1.20", 1)),
    )
    assert lookup(build_records(snapshot), IPv4Address("10.89.3.2"), "example.com", "A") is Outcome.FORWARD


def test_empty_snapshot_answers_nothing_locally() -> None:
    records = build_records(Snapshot())
    assert lookup(records, IPv4Address("10.0.0.1"), "web.hypr", "A") is Outcome.NXDOMAIN
    assert lookup(records, "10.0.0.1", "example.org", "A") is Outcome.FORWARD


def test_records_are_frozen() -> None:
    with pytest.raises(AttributeError):
        RECORDS.hypr = {}  # type: ignore[misc]
    assert isinstance(RECORDS, Records)


def test_build_is_deterministic() -> None:
    assert build_records(SNAPSHOT) == build_records(SNAPSHOT)
