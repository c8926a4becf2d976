"""Every UDP reply is a whole DNS message within the asker's size; TC replies carry the question and no records.

Property tests over answer sizes and record counts, first on the pure reply builders (thousands of cases), then
through the real server on loopback (local answers, and forwarded ones from fake upstreams that send too much,
truncate politely, or cut their UDP replies short). Every UDP reply is parsed with dnslib; every TC reply is
followed by the TCP retry a resolver makes, which must bring the whole answer.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, TXT, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypr.dns import DnsServer, build_records, wire
from hypr.dns.records import Found, Outcome
from hypr.dns.server import A_SIZE, AAAA_SIZE, _Rotating, _Turn, tcp_reply, udp_reply
from hypr.dns.testing import FakeUpstream, LoopThread
from hypr.models import Endpoint, Network, Snapshot, Workload

# -- queries and replies ------------------------------------------------------------------------------------------

edns_sizes = st.one_of(
    st.none(),
    st.integers(0, 65535),
    st.sampled_from([0, 511, 512, 513, 1200, 1232, 1233, 4095, 4096, 4097, 65535]),
)
labels = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=63)
names = st.lists(labels, min_size=1, max_size=4).map(".".join).filter(lambda n: len(n) <= 253)


def make_query(name: str, qtype: str, edns: int | None, dnssec_ok: bool = False, ident: int = 0x1234) -> bytes:
    query = DNSRecord.question(name, qtype)
    query.header.id = ident
    if edns is not None:
        query.add_ar(EDNS0(udp_len=edns, flags="do" if dnssec_ok else ""))
    packed: bytes = query.pack()
    return packed


def expected_limit(edns: int | None) -> int:
    return 512 if edns is None else min(4096, max(512, edns))


def check_udp(message: bytes, query: wire.Query, full_size: int, records: int) -> DNSRecord:
    """The reply parses, fits, echoes the question and ID, and is either the whole answer or a TC reply with the
    question, no records and an OPT record exactly when the query had one."""
    limit = expected_limit(query.edns_size)
    assert query.udp_limit == limit
    assert len(message) <= limit
    parsed = DNSRecord.parse(message)  # raises on a cut record, a bad label, counts that lie
    assert parsed.header.id == query.id and parsed.header.qr == 1
    assert message[12 : 12 + len(query.question)] == query.question  # the question as sent, case and all
    assert len(parsed.questions) == 1
    opts = [r for r in parsed.ar if r.rtype == QTYPE.OPT]
    assert len(opts) == (query.edns_size is not None)
    if opts:
        assert bool(opts[0].ttl & 0x8000) == query.dnssec_ok  # DO copied (RFC 3225)
    if full_size <= limit:
        assert parsed.header.tc == 0 and len(parsed.rr) == records
        assert len(message) == full_size
    else:
        assert parsed.header.tc == 1
        assert parsed.rr == [] and parsed.auth == [] and [r for r in parsed.ar if r.rtype != QTYPE.OPT] == []
        assert len(message) == 12 + len(query.question) + (wire.OPT_SIZE if opts else 0)
    return parsed


def addresses(count: int) -> tuple[IPv4Address, ...]:
    return tuple(IPv4Address("10.0.0.0") + 2 + i for i in range(count))


def local_size(query: wire.Query, records: int, record_size: int = A_SIZE) -> int:
    return 12 + len(query.question) + records * record_size + (wire.OPT_SIZE if query.edns_size is not None else 0)


def udp_messages(query: wire.Query, answer: Found | Outcome, turns: int) -> list[bytes]:
    reply = udp_reply(query, answer, _Turn())
    prefix = struct.pack("!H", query.id)
    if isinstance(reply, _Rotating):
        return [prefix + reply.take() for _ in range(turns)]
    return [prefix + reply]


# -- pure: local answers ------------------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(count=st.integers(0, 300), name=names, edns=edns_sizes, dnssec_ok=st.booleans())
def test_local_a_answers_fit_or_truncate_cleanly(count: int, name: str, edns: int | None, dnssec_ok: bool) -> None:
    query = wire.parse_query(make_query(name, "A", edns, dnssec_ok))
    answer = Found(addresses=addresses(count))
    full = local_size(query, count)
    seen_first = set()
    for message in udp_messages(query, answer, turns=min(count, 4) or 1):
        parsed = check_udp(message, query, full, count)
        if not parsed.header.tc:
            assert sorted(IPv4Address(str(r.rdata)) for r in parsed.rr) == sorted(answer.addresses)
            assert all(r.ttl == 5 and r.rtype == QTYPE.A for r in parsed.rr)
            if parsed.rr:
                seen_first.add(str(parsed.rr[0].rdata))
    if full <= query.udp_limit and count > 1:
        assert len(seen_first) == min(count, 4)  # the order rotates from reply to reply
    tcp = struct.pack("!H", query.id) + tcp_reply(query, answer, _Turn())
    parsed = DNSRecord.parse(tcp)  # over TCP: never truncated below 65,535 bytes
    assert parsed.header.tc == 0 and len(parsed.rr) == count and len(tcp) == full


@settings(max_examples=300, deadline=None)
@given(count=st.integers(0, 120), name=names, edns=edns_sizes)
def test_local_aaaa_answers_fit_or_truncate_cleanly(count: int, name: str, edns: int | None) -> None:
    """An alias over a pool of IPv6 addresses: 28-byte records, so 512 bytes hold about 17 of them."""
    query = wire.parse_query(make_query(name, "AAAA", edns))
    answer = Found(addresses=tuple(IPv6Address("fd00::2") + i for i in range(count)))
    full = local_size(query, count, AAAA_SIZE)
    for message in udp_messages(query, answer, turns=min(count, 3) or 1):
        parsed = check_udp(message, query, full, count)
        if not parsed.header.tc:
            assert sorted(IPv6Address(str(r.rdata)) for r in parsed.rr) == sorted(answer.addresses)
            assert all(r.rtype == QTYPE.AAAA for r in parsed.rr)
    parsed = DNSRecord.parse(struct.pack("!H", query.id) + tcp_reply(query, answer, _Turn()))
    assert parsed.header.tc == 0 and len(parsed.rr) == count


@settings(max_examples=300, deadline=None)
@given(
    target=st.lists(labels, min_size=1, max_size=3).map(".".join),
    qtype=st.sampled_from(["PTR", "A", "AAAA", "TXT", "ANY"]),
    outcome=st.sampled_from([None, Outcome.NXDOMAIN, Outcome.NODATA, Outcome.REFUSED]),
    edns=edns_sizes,
)
def test_other_local_answers_are_whole_messages(
    target: str, qtype: str, outcome: Outcome | None, edns: int | None
) -> None:
    name = "7.0.0.10.in-addr.arpa"
    query = wire.parse_query(make_query(name, qtype, edns))
    answer: Found | Outcome = Found(pointers=(target + ".hypr",)) if outcome is None else outcome
    records = 1 if outcome is None else 0
    record_size = len(wire.ptr_record(target + ".hypr", 5))
    (message,) = udp_messages(query, answer, 1)
    parsed = check_udp(message, query, local_size(query, records, record_size), records)
    if outcome is None:
        assert str(parsed.rr[0].rdata) == target + ".hypr."


def find_name(question_size: int) -> str:
    """A name whose question section is exactly `question_size` bytes (labels of at most 63)."""
    wire_size = question_size - 4  # type and class
    labels_left, out = wire_size - 1, []
    while labels_left > 0:
        take = min(64, labels_left)
        if labels_left - take == 1:  # a 1-byte remainder cannot be a label
            take -= 1
        out.append("a" * (take - 1))
        labels_left -= take
    name = ".".join(out)
    assert len(wire.encode_name(name)) + 4 == question_size
    return name


@pytest.mark.parametrize(
    ("edns", "size", "truncated"),
    [(None, 512, False), (None, 513, True), (1232, 1232, False), (1232, 1233, True), (600, 600, False),
     (100, 512, False), (100, 513, True), (65535, 4096, False), (65535, 4097, True)],
)  # fmt: skip
def test_the_limit_counts_every_byte_of_the_message(edns: int | None, size: int, truncated: bool) -> None:
    """Exactly at the limit (ID included) the whole answer goes; one byte over, TC."""
    opt = 0 if edns is None else wire.OPT_SIZE
    for count in (1, 10, 30):
        question = size - 12 - opt - count * A_SIZE
        if not 6 <= question <= 259:
            continue
        query = wire.parse_query(make_query(find_name(question), "A", edns))
        assert local_size(query, count) == size
        (message, *_) = udp_messages(query, Found(addresses=addresses(count)), 1)
        assert DNSRecord.parse(message).header.tc == truncated, (count, len(message))
        check_udp(message, query, size, count)


def test_thirty_one_pool_members_without_edns_is_a_clean_tc_reply() -> None:
    """The field report: 31 addresses for `pool` (518 bytes) gave nslookup "Parse error", dig "bad label type"."""
    for count, tc in [(29, 0), (30, 0), (31, 1), (60, 1)]:
        query = wire.parse_query(make_query("pool", "A", None))
        (message, *_) = udp_messages(query, Found(addresses=addresses(count)), 1)
        parsed = DNSRecord.parse(message)
        assert (parsed.header.tc, len(parsed.rr), parsed.header.rcode) == (tc, 0 if tc else count, RCODE.NOERROR)
        assert str(parsed.q.qname) == "pool."
        tcp = DNSRecord.parse(
            struct.pack("!H", query.id) + tcp_reply(query, Found(addresses=addresses(count)), _Turn())
        )
        assert len(tcp.rr) == count and tcp.header.tc == 0


def test_tcp_beyond_65535_bytes_sends_whole_records_with_tc() -> None:
    query = wire.parse_query(make_query("pool", "A", 1232))
    body = tcp_reply(query, Found(addresses=addresses(5000)), _Turn())
    message = struct.pack("!H", query.id) + body
    assert len(message) <= 65535
    parsed = DNSRecord.parse(message)
    assert parsed.header.tc == 1 and len(parsed.rr) == (65535 - 12 - len(query.question) - 11) // A_SIZE
    assert len(body) + 2 == 12 + len(query.question) + len(parsed.rr) * A_SIZE + 11


@pytest.mark.parametrize(
    ("edns", "limit"),
    [(None, 512), (0, 512), (511, 512), (512, 512), (1232, 1232), (4096, 4096), (4097, 4096), (65535, 4096)],
)
def test_udp_limit(edns: int | None, limit: int) -> None:
    assert wire.parse_query(make_query("a.example", "A", edns)).udp_limit == limit


# -- pure: forwarded answers --------------------------------------------------------------------------------------


def upstream_reply(request: bytes, count: int, length: int, *, opt_ttl: int | None = None) -> bytes:
    """What a generous upstream sends: `count` TXT records of `length` characters, compressed names, and an OPT
    record (flags/extended RCODE in its TTL, one option) when the query had one."""
    query = DNSRecord.parse(request)
    reply = query.reply()
    for i in range(count):
        reply.add_answer(RR(query.q.qname, QTYPE.TXT, rdata=TXT(f"{i:03d}" + "x" * length), ttl=60))
    if query.ar:
        reply.add_ar(EDNS0(udp_len=4096, opts=[]))
        if opt_ttl is not None:
            reply.ar[-1].ttl = opt_ttl
    packed: bytes = reply.pack()
    if query.ar:  # one EDNS option (an NSID-like blob) that a TC reply has no business carrying on
        option = struct.pack("!HH", 3, 4) + b"hypr"
        packed = packed[:-2] + struct.pack("!H", len(option)) + option
    return packed


@settings(max_examples=500, deadline=None)
@given(
    count=st.integers(0, 80),
    length=st.integers(0, 200),
    name=names,
    edns=edns_sizes,
    dnssec_ok=st.booleans(),
    ext=st.integers(0, 255),
)
def test_forwarded_replies_fit_or_truncate_cleanly(
    count: int, length: int, name: str, edns: int | None, dnssec_ok: bool, ext: int
) -> None:
    request = make_query(name, "TXT", edns, dnssec_ok)
    query = wire.parse_query(request)
    opt_ttl = (ext << 24) | (0x8000 if dnssec_ok else 0)
    reply = upstream_reply(request, count, length, opt_ttl=opt_ttl)
    message = reply[:2] + wire.fit_udp(wire.body_of(reply), query)
    parsed = check_udp(message, query, len(reply), count)
    if not parsed.header.tc:
        assert message == reply  # passed through byte for byte
    elif query.edns_size is not None:
        (opt,) = parsed.ar
        assert opt.ttl == opt_ttl and opt.rdata == [] and message.endswith(b"\x00\x00")  # its flags, no options


@pytest.mark.parametrize("edns", [None, 1232])
def test_truncating_a_reply_without_readable_opt_uses_ours(edns: int | None) -> None:
    request = make_query("a.example", "TXT", edns, dnssec_ok=True)
    query = wire.parse_query(request)
    garbage = request[:2] + struct.pack("!HHHHH", 0x8180, 1, 9, 0, 1) + query.question + b"\xff" * 1500
    message = garbage[:2] + wire.fit_udp(wire.body_of(garbage), query)
    parsed = DNSRecord.parse(message)
    assert parsed.header.tc == 1 and parsed.rr == []
    assert [(r.rclass, r.ttl) for r in parsed.ar] == ([] if edns is None else [(1232, 0x8000)])


# -- the real server: local and forwarded answers over UDP, then TCP ------------------------------------------------

BASE = f"127.{150 + os.getpid() % 50}"
PORT = 41003
GATEWAY = f"{BASE}.0.1"  # the listener is the network's gateway: unknown askers inside the /16 are members
NETWORK = Network("p" * 64, "pools", "vbr7", IPv4Network(f"{BASE}.0.0/16"), IPv4Address(GATEWAY))
UPSTREAM = (f"{BASE}.255.53", 5300)
NEWCOMER = f"{BASE}.200.9"  # no endpoint: asks as a member of the network it asks on


def member(i: int) -> str:
    return f"{BASE}.{1 + i // 250}.{2 + i % 250}"


def pool_snapshot(count: int) -> Snapshot:
    workloads, endpoints = [], []
    for i in range(count):
        w = Workload(hashlib.sha256(f"m{i}".encode()).hexdigest(), f"m{i}", "img", state="running")
        workloads.append(w)
        endpoints.append(Endpoint(f"e{i}", w.id, NETWORK.id, IPv4Address(member(i)), "02:00:00:00:00:01", "hv", 0,
                                  ("pool",)))  # fmt: skip
    return Snapshot(networks=(NETWORK,), workloads=tuple(workloads), endpoints=tuple(endpoints))


class TxtUpstream(FakeUpstream):
    """Answers `<mode>-<count>-<length>.example` with `count` TXT records. Over UDP, mode `big` sends everything
    whatever the asker's size, `polite` sends TC (no records) past the asker's size, `cut` cuts its datagram at
    512 bytes without TC (a middlebox); over TCP, everything."""

    def reply(self, data: bytes, *, over_tcp: bool) -> bytes | None:
        query = DNSRecord.parse(data)
        mode, count, length = str(query.q.qname).split(".")[0].split("-")
        full = upstream_reply(data, int(count), int(length))
        if over_tcp:
            return full
        size = 512 if not query.ar else max(512, query.ar[0].edns_len)
        if mode == "polite" and len(full) > size:
            polite = query.reply()
            polite.header.tc = 1
            packed: bytes = polite.pack()
            return packed
        if mode == "cut" and len(full) > 512:
            return full[:512]
        return full


@dataclass
class Live:
    loop: LoopThread
    server: DnsServer
    upstream: TxtUpstream


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with LoopThread() as loop:
        upstream = loop.run(TxtUpstream(*UPSTREAM).start())
        server = DnsServer([UPSTREAM])
        try:
            loop.run(server.set_listen_addresses({IPv4Address(GATEWAY)}, PORT))
            yield Live(loop, server, upstream)
        finally:
            loop.run(server.close())
            loop.run(upstream.close())
        assert loop.errors == []


def exchange(request: bytes, source: str, *, tcp: bool) -> bytes:
    if tcp:
        with socket.create_connection((GATEWAY, PORT), timeout=3, source_address=(source, 0)) as conn:
            conn.sendall(struct.pack("!H", len(request)) + request)
            head = conn.recv(2, socket.MSG_WAITALL)
            (length,) = struct.unpack("!H", head)
            data = b""
            while len(data) < length:
                chunk = conn.recv(length - len(data))
                assert chunk, "the server closed the connection mid-reply"
                data += chunk
            return data
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(3)
        sock.sendto(request, (GATEWAY, PORT))
        return sock.recv(65535)


def resolve(request: bytes, source: str) -> tuple[DNSRecord, DNSRecord]:
    """What a stub resolver does: UDP, and on TC the same question over TCP. (the UDP reply, the final reply)"""
    query = wire.parse_query(request)
    udp = exchange(request, source, tcp=False)
    assert len(udp) <= query.udp_limit
    first = DNSRecord.parse(udp)
    assert first.header.id == query.id
    if not first.header.tc:
        return first, first
    assert first.rr == [] and udp[12 : 12 + len(query.question)] == query.question
    final = DNSRecord.parse(exchange(request, source, tcp=True))
    assert final.header.tc == 0
    return first, final


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(1, 300), edns=edns_sizes, newcomer=st.booleans(), ident=st.integers(0, 65535))
def test_server_pool_of_any_size_reaches_every_resolver(
    live: Live, count: int, edns: int | None, newcomer: bool, ident: int
) -> None:
    live.loop.run(live.server.set_records(build_records(pool_snapshot(count))))
    request = make_query("Pool", "A", edns, ident=ident)
    query = wire.parse_query(request)
    first, final = resolve(request, NEWCOMER if newcomer else member(0))
    assert bool(first.header.tc) == (local_size(query, count) > query.udp_limit)
    assert sorted(str(r.rdata) for r in final.rr) == sorted(member(i) for i in range(count))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mode=st.sampled_from(["big", "polite", "cut"]),
    count=st.integers(0, 60),
    length=st.integers(0, 120),
    edns=edns_sizes,
)
def test_server_forwarded_answers_of_any_size(live: Live, mode: str, count: int, length: int, edns: int | None) -> None:
    live.loop.run(live.server.set_records(build_records(pool_snapshot(1))))
    request = make_query(f"{mode}-{count}-{length}.example", "TXT", edns)
    first, final = resolve(request, member(0))
    assert [str(r.rdata).strip('"') for r in final.rr] == [f"{i:03d}" + "x" * length for i in range(count)]
    full = len(upstream_reply(request, count, length))
    assert bool(first.header.tc) == (full > wire.parse_query(request).udp_limit)


def test_cut_upstream_reply_is_fetched_again_over_tcp(live: Live) -> None:
    live.loop.run(live.server.set_records(build_records(pool_snapshot(1))))
    before = live.upstream.tcp_queries
    request = make_query("cut-40-30.example", "TXT", 4096)
    reply = DNSRecord.parse(exchange(request, member(0), tcp=False))
    assert reply.header.tc == 0 and len(reply.rr) == 40  # whole, over UDP: the asker can take 4096 bytes
    assert live.upstream.tcp_queries == before + 1
