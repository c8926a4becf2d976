"""Pure parts of forwarding and the wire format: resolv.conf parsing, query parsing, the TTL cache."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rcode
import pytest

from hypr.dns import wire
from hypr.dns.testing import fake_answer
from hypr.dns.upstream import AnswerCache, cache_ttl, only_stub, parse_resolv_conf


@pytest.mark.parametrize(
    ("text", "skip", "expected"),
    [
        ("nameserver 1.1.1.1\nnameserver 8.8.8.8\n", (), [("1.1.1.1", 53), ("8.8.8.8", 53)]),
        ("# comment\n; other\nsearch example.com\nnameserver 9.9.9.9 # trailing\n", (), [("9.9.9.9", 53)]),
        ("nameserver 10.88.0.1\nnameserver 1.1.1.1\n", ("10.88.0.1",), [("1.1.1.1", 53)]),
        ("nameserver 1.1.1.1\nnameserver 1.1.1.1\n", (), [("1.1.1.1", 53)]),
        ("nameserver not-an-ip\nnameserver\nnameserver 300.1.1.1\n", (), []),
        ("nameserver fe80::1%eth0\nnameserver 2001:db8::53\n", (), [("fe80::1", 53), ("2001:db8::53", 53)]),
        ("  nameserver   127.0.0.53  \noptions edns0 trust-ad\n", (), [("127.0.0.53", 53)]),
        ("nameserverx 1.1.1.1\n#nameserver 2.2.2.2\n", (), []),
        ("", (), []),
    ],
)
def test_parse_resolv_conf(text: str, skip: tuple[str, ...], expected: list[tuple[str, int]]) -> None:
    assert parse_resolv_conf(text, skip=skip) == expected


def test_only_stub() -> None:
    assert only_stub([("127.0.0.53", 53)])
    assert not only_stub([("127.0.0.53", 53), ("1.1.1.1", 53)])
    assert not only_stub([])


def make_query(name: str = "Example.COM.", rdtype: str = "A", **kwargs: object) -> bytes:
    wire_bytes: bytes = dns.message.make_query(name, rdtype, **kwargs).to_wire()  # type: ignore[arg-type]
    return wire_bytes


def test_parse_query_plain_and_edns() -> None:
    plain = wire.parse_query(make_query())
    assert (plain.qname, plain.type_name, plain.edns_size, plain.udp_limit) == ("example.com", "A", None, 512)
    assert plain.question.startswith(b"\x07Example")
    edns = wire.parse_query(make_query(use_edns=0, payload=4096, want_dnssec=True))
    assert (edns.edns_size, edns.dnssec_ok, edns.udp_limit) == (4096, True, 4096)


@pytest.mark.parametrize(
    ("packet", "rcode"),
    [
        (b"", None),
        (b"\x12\x34\x01", None),
        (b"\x12\x34\x81\x00" + b"\x00\x01" + b"\x00" * 6 + b"\x00\x00\x01\x00\x01", None),  # a response
        (b"\x12\x34\x01\x00" + b"\x00\x02" + b"\x00" * 6, wire.FORMERR),  # two questions, none there
        (b"\x12\x34\x01\x00" + b"\x00\x01" + b"\x00" * 6 + b"\x05ab", wire.FORMERR),  # label runs off
        (b"\x12\x34\x01\x00" + b"\x00\x01" + b"\x00" * 6 + b"\xc0\x0c\x00\x01\x00\x01", wire.FORMERR),  # pointer
        (b"\x12\x34\x01\x00" + b"\x00\x01" + b"\x00" * 6 + b"\x00\x00\x01", wire.FORMERR),  # short type/class
        (b"\x12\x34\x29\x00" + b"\x00\x01" + b"\x00" * 6 + b"\x00\x00\x01\x00\x01", wire.NOTIMP),  # UPDATE
        (
            b"\x12\x34\x01\x00" + b"\x00\x01" + b"\x00" * 6 + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01",
            wire.FORMERR,
        ),  # name longer than 255
    ],
)
def test_malformed_queries(packet: bytes, rcode: int | None) -> None:
    with pytest.raises(wire.Malformed) as caught:
        wire.parse_query(packet)
    if rcode is None:
        assert caught.value.reply is None
    else:
        assert caught.value.reply is not None
        assert caught.value.reply[:2] == b"\x12\x34" and wire.rcode_of(caught.value.reply) == rcode


def test_cache_ttl_is_the_smallest_and_skips_opt() -> None:
    reply = fake_answer(make_query(use_edns=0, payload=4096), "big", over_tcp=False)
    ttl, fields = cache_ttl(reply)
    assert ttl == 60 and len(fields) == 40
    assert cache_ttl(fake_answer(make_query(), "servfail", over_tcp=False)) == (0, [])
    assert cache_ttl(fake_answer(make_query(), "truncate", over_tcp=False)) == (0, [])
    assert cache_ttl(b"\x00\x00\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x00")[0] == 0  # records run off


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_answer_cache_patches_id_case_and_ttl_then_expires() -> None:
    clock = Clock()
    cache = AnswerCache(size=2, clock=clock)
    first = make_query("example.com.")
    query = wire.parse_query(first)
    cache.put(query, fake_answer(first, "answer", over_tcp=False))
    clock.now += 20.7
    asked = wire.parse_query(make_query("EXAMPLE.com."))
    hit = cache.get(asked)
    assert hit is not None
    message = dns.message.from_wire(hit)
    assert message.id == asked.id and str(message.question[0].name) == "EXAMPLE.com."
    assert message.answer[0].ttl == 40
    clock.now += 40
    assert cache.get(asked) is None and len(cache) == 0


def test_answer_cache_is_bounded() -> None:
    cache = AnswerCache(size=2, clock=Clock())
    for name in ("a.example.", "b.example.", "c.example."):
        packet = make_query(name)
        cache.put(wire.parse_query(packet), fake_answer(packet, "answer", over_tcp=False))
    assert len(cache) == 2
    assert cache.get(wire.parse_query(make_query("a.example."))) is None


def test_truncated_reply_is_header_and_question() -> None:
    query = wire.parse_query(make_query())
    full = struct.pack("!H", query.id) + wire.reply_after_id(query, 0, [b"x" * 600], authoritative=True)
    cut = wire.truncated(full, query)
    message = dns.message.from_wire(cut)
    assert message.flags & dns.flags.TC and not message.answer and message.rcode() == dns.rcode.NOERROR


def test_answer_cache_keeps_answers_of_different_upstreams_apart() -> None:
    """A workload with `--dns X` must never get an answer fetched from the daemon's upstreams, nor the reverse."""
    cache = AnswerCache(clock=Clock())
    packet = make_query("shared.example.")
    query = wire.parse_query(packet)
    own = (("198.18.0.5", 53),)
    cache.put(query, fake_answer(packet, "answer", over_tcp=False, address="192.0.2.1"))
    cache.put(query, fake_answer(packet, "answer", over_tcp=False, address="192.0.2.5"), own)
    default, mine = cache.get(query), cache.get(query, own)
    assert default is not None and mine is not None
    assert dns.message.from_wire(default).answer[0][0].address == "192.0.2.1"
    assert dns.message.from_wire(mine).answer[0][0].address == "192.0.2.5"
    assert cache.get(query, (("198.18.0.6", 53),)) is None
    assert cache.get(query, (("198.18.0.5", 53), ("198.18.0.6", 53))) is None


def test_upstreams_from_the_environment_take_ipv6_addresses() -> None:
    from hypr.config import parse_upstreams

    assert parse_upstreams("1.1.1.1, 9.9.9.9:5353,2001:db8::53,[2001:db8::54]:5353") == (
        ("1.1.1.1", 53), ("9.9.9.9", 5353), ("2001:db8::53", 53), ("2001:db8::54", 5353),
    )  # fmt: skip
