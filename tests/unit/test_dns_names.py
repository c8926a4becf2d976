"""Names as DNS limits them (issue 13 item 10): any workload name, alias, network name or search domain, and any
question about them, gets a whole, well-formed reply, and the server never raises.

A 64-character workload name used to give malformed PTR replies (a 64-byte "label") and a 300-character one made
every PTR query raise in the UDP callback, logging 1.3 kB per query. Hypothesis draws names of every length and
alphabet (dots, empty labels, spaces, non-ASCII, 63/64/253/254/300 characters), builds the records, and asks about
them: first through the pure reply builders, then through the real server on loopback over UDP and TCP. Every reply
must parse with dnslib and dnspython, echo the question, and the loop must report no exception.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network

import dns.message
import pytest
from dnslib import DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypr.dns import DnsServer, build_records, wire
from hypr.dns.records import Found, Outcome, Records, RecordsBuilder, lookup, valid_name
from hypr.dns.server import _Turn, tcp_reply, udp_reply
from hypr.dns.testing import LoopThread
from hypr.models import Endpoint, Network, Resolver, Snapshot, Workload

BASE = f"127.{150 + os.getpid() % 50}"  # one /16 of loopback per test process
NETWORKS = (IPv4Network(f"{BASE}.1.0/24"), IPv4Network(f"{BASE}.2.0/24"))
GATEWAYS = tuple(str(n.network_address + 1) for n in NETWORKS)
PORT = 41003

# Names of every shape: DNS-like ones, every length around the limits, and anything at all.
dns_like = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}", fullmatch=True)
edges = st.sampled_from([n * "a" for n in (1, 62, 63, 64, 65, 126, 127, 128, 250, 253, 254, 255, 256, 300)]).flatmap(
    lambda s: st.sampled_from([s, ".".join([s[:63]] * 4)[: len(s)], s[:60] + ".b" + s[62:], s.upper()])
)
anything = st.text(min_size=0, max_size=320)
any_name = st.one_of(dns_like, edges, anything, st.sampled_from(["", ".", "..", "a..b", ".a", "a.", "ü", "a b"]))


@dataclass(frozen=True)
class World:
    snapshot: Snapshot
    records: Records
    names: tuple[str, ...]  # every name drawn: what the questions are about
    askers: tuple[str, ...]  # endpoint addresses


@st.composite
def worlds(draw: st.DrawFn) -> World:
    network_names = draw(st.lists(any_name, min_size=2, max_size=2))
    networks = tuple(
        Network(f"{i:064x}", name, f"vbr{i}", subnet, subnet.network_address + 1)
        for i, (name, subnet) in enumerate(zip(network_names, NETWORKS, strict=True))
    )
    workloads, endpoints, names = [], [], list(network_names)
    for i in range(draw(st.integers(1, 5))):
        name = draw(any_name)
        aliases = tuple(draw(st.lists(any_name, max_size=3)))
        search = draw(st.one_of(st.none(), st.lists(any_name, max_size=2).map(tuple)))
        w = Workload(
            hashlib.sha256(f"{i}{name}".encode()).hexdigest(), name, "img", state="running",
            resolver=Resolver(search=search),
        )  # fmt: skip
        workloads.append(w)
        names += [name, *aliases, *(search or ())]
        for position, network in enumerate(draw(st.sampled_from([(0,), (1,), (0, 1)]))):
            ip = NETWORKS[network].network_address + 2 + i
            endpoints.append(Endpoint(f"{w.id[:60]}{position:04d}", w.id, networks[network].id, ip,
                                      "02:42:00:00:00:00", "hv", position, aliases))  # fmt: skip
    host_search = tuple(draw(st.lists(any_name, max_size=2)))
    names += host_search
    snapshot = Snapshot(networks=networks, workloads=tuple(workloads), endpoints=tuple(endpoints))
    return World(snapshot, build_records(snapshot, host_search), tuple(names), tuple(str(e.ip) for e in endpoints))


def raw_query(qname: str, qtype: int, ident: int = 0x4242, edns: int | None = None) -> bytes:
    """A query for any text, encoded as a careless client would: labels as UTF-8, lengths as they come (a label
    past 63 bytes or a name past 255 is the server's problem, which must answer FORMERR)."""
    out = bytearray(struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 1 if edns is not None else 0))
    for label in qname.split(".") if qname.strip(".") else ():
        raw = label.encode("utf-8", "replace")[:255]
        out.append(len(raw))
        out += raw
    out.append(0)
    out += struct.pack("!HH", qtype, 1)
    if edns is not None:
        out += b"\x00" + struct.pack("!HHIH", 41, edns, 0, 0)
    return bytes(out)


def questions(world: World, draw: st.DrawFn) -> list[tuple[str, int]]:
    """Questions about the world's names in every form a resolver could ask them."""
    name = draw(st.sampled_from(world.names))
    other = draw(st.sampled_from(world.names))
    qtype = draw(st.sampled_from([1, 12, 28, 16, 255, 33]))
    ptr = IPv4Address(draw(st.sampled_from(world.askers))).reverse_pointer
    return [(name, qtype), (f"{name}.hypr", qtype), (f"{name}.{other}", qtype), (ptr, 12), (ptr, 1)]


def parses(message: bytes, question: bytes) -> None:
    parsed = DNSRecord.parse(message)  # raises on a bad label, a cut record, counts that lie
    assert parsed.header.qr == 1
    assert message[12 : 12 + len(question)] == question
    dns.message.from_wire(message)  # and dnspython, which checks label and name lengths too
    for record in parsed.rr:
        if record.rtype == 12:  # PTR targets are names we built: each a valid DNS name
            assert valid_name(str(record.rdata).rstrip(".")), record


# -- pure: the reply builders -----------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(world=worlds(), data=st.data(), edns=st.one_of(st.none(), st.integers(0, 65535)))
def test_any_name_gives_well_formed_local_replies(world: World, data: st.DataObject, edns: int | None) -> None:
    assert all(valid_name(n) for table in world.records.scoped.values() for n in table)
    assert all(valid_name(t) for t in world.records.reverse.values())
    assert all(valid_name(f"{n}.hypr") for n in world.records.hypr)
    for qname, qtype in questions(world, data.draw):
        packet = raw_query(qname, qtype, edns=edns)
        try:
            query = wire.parse_query(packet)
        except wire.Malformed as exc:  # a label or name too long to ask: FORMERR, a whole message
            assert exc.reply is not None and wire.rcode_of(exc.reply) == wire.FORMERR
            continue
        asker = data.draw(st.sampled_from([*world.askers, f"{BASE}.1.250", GATEWAYS[0], "192.0.2.1"]))
        arrived_on = data.draw(st.sampled_from([*GATEWAYS, None]))
        answer = lookup(world.records, asker, arrived_on, query.qname, query.type_name)
        if answer is Outcome.FORWARD:
            continue
        prefix = struct.pack("!H", query.id)
        udp = udp_reply(query, answer, _Turn())
        body = udp if isinstance(udp, bytes) else udp.take()
        parses(prefix + body, query.question)
        assert len(prefix + body) <= query.udp_limit
        parses(prefix + tcp_reply(query, answer, _Turn()), query.question)
        if isinstance(answer, Found) and answer.pointers:
            assert all(valid_name(p) for p in answer.pointers)


# -- the real server on loopback ------------------------------------------------------------------------------------


@dataclass
class Live:
    loop: LoopThread
    server: DnsServer


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with LoopThread(use_uvloop=True) as loop:
        server = DnsServer()  # no upstreams: forwarded names are SERVFAIL at once, a whole message too
        try:
            loop.run(server.set_listen_addresses({IPv4Address(g) for g in GATEWAYS}, PORT))
            yield Live(loop, server)
        finally:
            loop.run(server.close())
        assert loop.errors == [], loop.errors
        assert server.faults.count == 0  # nothing went wrong that the catch-all had to hide


def exchange(packet: bytes, source: str, gateway: str, *, tcp: bool) -> bytes:
    if tcp:
        with socket.create_connection((gateway, PORT), timeout=3, source_address=(source, 0)) as conn:
            conn.sendall(struct.pack("!H", len(packet)) + packet)
            (length,) = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))
            return conn.recv(length, socket.MSG_WAITALL)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(3)
        sock.sendto(packet, (gateway, PORT))
        return sock.recv(65535)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(world=worlds(), data=st.data())
def test_the_server_answers_any_question_about_any_name(live: Live, world: World, data: st.DataObject) -> None:
    live.loop.run(live.server.set_records(world.records))
    for i, (qname, qtype) in enumerate(questions(world, data.draw)):
        packet = raw_query(qname, qtype, ident=i)
        source = data.draw(st.sampled_from([*world.askers, f"{BASE}.1.250", f"{BASE}.0.9"]))
        gateway = data.draw(st.sampled_from(GATEWAYS))
        for tcp in (False, True):
            reply = exchange(packet, source, gateway, tcp=tcp)
            assert reply[:2] == packet[:2]
            try:
                query = wire.parse_query(packet)
            except wire.Malformed:
                assert wire.rcode_of(reply) == wire.FORMERR
                continue
            parses(reply, query.question)


def test_a_300_character_name_no_longer_breaks_ptr(live: Live) -> None:
    """The report's case: names of 64 and 300 characters, asked by PTR, from a workload, many times over."""
    network = Network("f" * 64, "n", "vbr9", NETWORKS[0], NETWORKS[0].network_address + 1)
    workloads = [Workload(hashlib.sha256(n.encode()).hexdigest(), n, "img", state="running")
                 for n in ("a" * 64, "b" * 300, "c" * 63)]  # fmt: skip
    endpoints = [Endpoint(w.id, w.id, network.id, NETWORKS[0].network_address + 2 + i, "02:42:00:00:00:00", "hv", 0)
                 for i, w in enumerate(workloads)]  # fmt: skip
    live.loop.run(live.server.set_records(build_records(Snapshot((network,), tuple(workloads), tuple(endpoints)))))
    asker = str(NETWORKS[0].network_address + 2)
    for round_ in range(50):
        for i in range(3):
            ptr = (NETWORKS[0].network_address + 2 + i).reverse_pointer
            reply = DNSRecord.parse(exchange(raw_query(ptr, 12, ident=round_), asker, GATEWAYS[0], tcp=round_ % 5 == 0))
            if i < 2:  # no DNS name: not published, NXDOMAIN like any unknown address of our subnet
                assert reply.header.rcode == 3 and not reply.rr
            else:
                assert [str(r.rdata) for r in reply.rr] == ["c" * 63 + ".hypr."]


def test_a_question_name_of_256_octets_is_formerr_and_255_is_read() -> None:
    """RFC 1035 3.1: a name is at most 255 octets on the wire, its root label's zero included (encode_name counts
    it; the reader did not, and took a 256-octet question that dnspython refuses)."""
    labels = ["a" * 63, "b" * 63, "c" * 63, "d" * 62]  # 64 + 64 + 64 + 63 + 1 = 256 octets
    too_long = raw_query(".".join(labels), 1, ident=1)
    with pytest.raises(wire.Malformed):
        wire.parse_query(too_long)
    fits = raw_query(".".join([*labels[:3], "d" * 61]), 1, ident=2)  # 255 octets
    assert wire.parse_query(fits).qname.endswith("d" * 61)
    assert len(wire.encode_name(".".join([*labels[:3], "d" * 61]))) == 255


@settings(max_examples=200, deadline=None)
@given(world=worlds(), data=st.data())
def test_a_reused_builder_gives_the_tables_a_fresh_build_gives(world: World, data: st.DataObject) -> None:
    """The daemon keeps one RecordsBuilder, which reuses each unchanged workload's part: after any change (workloads
    gone, renamed, stopped, another host search list) its tables equal a build from nothing."""
    builder = RecordsBuilder()
    snapshot = world.snapshot
    assert builder.build(snapshot) == build_records(snapshot)
    for _ in range(3):
        kept = [w for w in snapshot.workloads if data.draw(st.booleans())]
        changed = tuple(
            replace(w, name=data.draw(any_name)) if data.draw(st.booleans()) else
            replace(w, state="exited") if data.draw(st.booleans()) else w
            for w in kept
        )  # fmt: skip
        ids = {w.id for w in changed}
        snapshot = replace(
            snapshot, workloads=changed, endpoints=tuple(e for e in snapshot.endpoints if e.workload_id in ids)
        )
        search = tuple(data.draw(st.lists(any_name, max_size=2)))
        assert builder.build(snapshot, search) == build_records(snapshot, search)
