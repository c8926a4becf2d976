"""DNS wire format, only as much as hypr needs: parse a query, encode our small answers, read TTLs of a relayed one,
and make any reply fit the asker's transport.

Pure functions over bytes. Forwarded answers are never re-encoded: `ttl_fields` finds their TTLs so a cache can
patch them in place and everything else (EDNS options, DNSSEC records, unknown types) passes through untouched.

Size rules (RFC 1035 4.2.1, RFC 2181 9, RFC 6891 6.2.3-6.2.5), for local and forwarded replies alike:
- over UDP a reply may be as large as the asker's `udp_limit`: 512 bytes without EDNS, else the advertised EDNS
  size, at least 512 and at most `MAX_UDP_SIZE`;
- a larger one becomes header + question (+ an OPT record when the query had one) with TC set and no answer,
  authority or additional records: never a cut record, never a partial RRset (`fit_udp`);
- over TCP nothing is truncated up to the 65,535-byte ceiling of the 2-byte length prefix (`fit_tcp`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import NewType

HEADER = struct.Struct("!HHHHHH")
RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength

QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
OPCODE_MASK = 0x7800
RCODE_MASK = 0x000F

NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5

TYPE_A = 1
TYPE_PTR = 12
TYPE_AAAA = 28
TYPE_OPT = 41
TYPE_ANY = 255
CLASS_IN = 1
CLASS_ANY = 255

TYPE_NAMES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    255: "ANY",
}

PLAIN_UDP_LIMIT = 512  # RFC 1035: what a client without EDNS can take over UDP
# The largest UDP reply we send, whatever size a client advertises (RFC 6891 6.2.5 lets a responder pick its own
# limit). Our replies cross one local hop (bridge or tap): a datagram up to 4096 bytes is at most three IP
# fragments there and arrives whole, so the large answers a client asked for with `+bufsize=4096` still come in
# one round trip. Above it, a client claiming 65,535 would make us send 45-fragment datagrams: TCP instead.
MAX_UDP_SIZE = 4096
OUR_EDNS_SIZE = 1232  # what we advertise in our OPT records (DNS flag day 2020); our queries are far smaller
MAX_TCP_MESSAGE = 65535  # the 2-byte length prefix of DNS over TCP
ID_SIZE = 2
OPT_SIZE = 11  # an OPT record without options: root name, type, class (size), TTL (flags), rdlength
MAX_NAME = 255
MAX_LABEL = 63

Body = NewType("Body", bytes)
"""A DNS message without its 2-byte ID: what reply tables keep, so that any client's ID can be put in front.
Every size limit counts the ID too; a full message becomes a Body only through `body_of`."""


class Malformed(Exception):
    """A packet we cannot answer normally. `reply` is the FORMERR/NOTIMP to send, or None to drop it silently."""

    def __init__(self, reason: str, reply: bytes | None) -> None:
        super().__init__(reason)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    qname: str  # lower-case, no trailing dot, "" for the root
    qtype: int
    qclass: int
    question: bytes  # the question section exactly as sent (case preserved, for the echo)
    edns_size: int | None  # the client's UDP payload size when it sent an OPT record
    dnssec_ok: bool

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.qtype, f"TYPE{self.qtype}")

    @property
    def key(self) -> bytes:
        """The question, case-folded: what two queries asking the same thing share."""
        return self.question.lower()

    @property
    def udp_limit(self) -> int:
        """The largest reply (ID included) this asker gets over UDP: 512 without EDNS; with EDNS its advertised
        size, read as 512 when smaller (RFC 6891 6.2.5) and capped at MAX_UDP_SIZE."""
        if self.edns_size is None:
            return PLAIN_UDP_LIMIT
        return min(MAX_UDP_SIZE, max(PLAIN_UDP_LIMIT, self.edns_size))


def _error_reply(data: bytes, rcode: int) -> bytes:
    ident, flags = struct.unpack_from("!HH", data)
    return HEADER.pack(ident, QR | (flags & (OPCODE_MASK | RD)) | rcode, 0, 0, 0, 0)


def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """An uncompressed name at `offset` (queries carry no pointers) -> (lower-case text, offset after it)."""
    labels: list[str] = []
    total = 0
    while True:
        if offset >= len(data):
            raise ValueError("name runs past the packet")
        length = data[offset]
        if length == 0:
            return ".".join(labels), offset + 1
        if length > MAX_LABEL:
            raise ValueError("compressed or oversized label in question")
        total += length + 1
        if total + 1 > MAX_NAME or offset + 1 + length > len(data):  # + 1: the root label's zero (RFC 1035 3.1)
            raise ValueError("name too long or truncated")
        labels.append(data[offset + 1 : offset + 1 + length].decode("latin-1").lower())
        offset += 1 + length


def parse_query(data: bytes) -> Query:
    if len(data) < HEADER.size:
        raise Malformed("shorter than a header", None)
    ident, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & QR:
        raise Malformed("a response, not a query", None)  # never answer answers: that is how loops start
    if flags & OPCODE_MASK:
        raise Malformed("opcode not QUERY", _error_reply(data, NOTIMP))
    if qdcount != 1:
        raise Malformed("question count is not 1", _error_reply(data, FORMERR))
    try:
        qname, offset = read_name(data, HEADER.size)
    except ValueError as exc:
        raise Malformed(str(exc), _error_reply(data, FORMERR)) from exc
    if offset + 4 > len(data):
        raise Malformed("question truncated", _error_reply(data, FORMERR))
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    end = offset + 4
    edns_size, dnssec_ok = _edns(data, end, ancount, nscount, arcount)
    return Query(ident, flags, qname, qtype, qclass, data[HEADER.size : end], edns_size, dnssec_ok)


def _edns(data: bytes, end: int, ancount: int, nscount: int, arcount: int) -> tuple[int | None, bool]:
    """The OPT record right after the question (where every stub resolver puts it), or (None, False)."""
    if ancount or nscount or not arcount or len(data) < end + 11:
        return None, False
    if data[end] != 0 or data[end + 1 : end + 3] != b"\x00\x29":
        return None, False
    size, _rcode_version, opt_flags = struct.unpack_from("!HHH", data, end + 3)
    return size, bool(opt_flags & 0x8000)


def opt_record(dnssec_ok: bool = False) -> bytes:
    """Our OPT record: no options, the DO bit copied from the query (RFC 3225 3)."""
    return b"\x00" + RR_FIXED.pack(TYPE_OPT, OUR_EDNS_SIZE, 0x8000 if dnssec_ok else 0, 0)


def encode_name(name: str) -> bytes:
    """`name` in wire format. ValueError for what is no DNS name (an empty or 64-byte label, more than 255 bytes,
    characters beyond latin-1): never a malformed name on the wire. Records only hold valid names
    (`records.valid_name`); this is the last line."""
    out = bytearray()
    for label in name.split(".") if name else ():
        raw = label.encode("latin-1")  # UnicodeEncodeError is a ValueError
        if not 0 < len(raw) <= MAX_LABEL:
            raise ValueError(f"not a DNS label: {label[:80]!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > MAX_NAME:
        raise ValueError(f"name longer than {MAX_NAME} bytes")
    return bytes(out)


def a_record(address: IPv4Address, ttl: int) -> bytes:
    # 0xC00C: a pointer to the question name, so the record is valid whatever case the client used.
    return b"\xc0\x0c" + RR_FIXED.pack(TYPE_A, CLASS_IN, ttl, 4) + address.packed


def aaaa_record(address: IPv6Address, ttl: int) -> bytes:
    return b"\xc0\x0c" + RR_FIXED.pack(TYPE_AAAA, CLASS_IN, ttl, 16) + address.packed


def address_record(address: IPv4Address | IPv6Address, ttl: int) -> bytes:
    return a_record(address, ttl) if isinstance(address, IPv4Address) else aaaa_record(address, ttl)


def ptr_record(target: str, ttl: int) -> bytes:
    rdata = encode_name(target)
    return b"\xc0\x0c" + RR_FIXED.pack(TYPE_PTR, CLASS_IN, ttl, len(rdata)) + rdata


def reply_after_id(query: Query, rcode: int, answers: Sequence[bytes], *, authoritative: bool) -> Body:
    """Everything of a reply but its 2-byte ID, so a cache can prepend any client's ID. Not size-checked: see
    `fit_udp` and `fit_tcp`."""
    flags = QR | RA | (query.flags & RD) | rcode | (AA if authoritative else 0)
    extra = opt_record(query.dnssec_ok) if query.edns_size is not None else b""
    counts = struct.pack("!HHHHH", flags, 1, len(answers), 0, 1 if extra else 0)
    return Body(counts + query.question + b"".join(answers) + extra)


def status_reply(query: Query, rcode: int) -> bytes:
    return struct.pack("!H", query.id) + reply_after_id(query, rcode, [], authoritative=False)


def body_of(message: bytes) -> Body:
    return Body(message[ID_SIZE:])


def fit_udp(body: Body, query: Query) -> Body:
    """`body` when the whole message (ID included) fits the asker's UDP size, else `truncated_body`."""
    if ID_SIZE + len(body) <= query.udp_limit:
        return body
    return truncated_body(body, query)


def truncated_body(body: Body, query: Query) -> Body:
    """Header (flags and RCODE kept, TC set) + the question, plus an OPT record when the query had one (RFC 6891
    7: the reply's own OPT, options dropped, so an extended RCODE survives; else ours). No answer, authority or
    additional records: the asker must retry over TCP and gets the whole answer there (RFC 2181 9)."""
    (flags,) = struct.unpack_from("!H", body)
    opt = b""
    if query.edns_size is not None:
        opt = _opt_of(body) or opt_record(query.dnssec_ok)
    counts = struct.pack("!HHHHH", flags | TC, 1, 0, 0, 1 if opt else 0)
    return Body(counts + query.question + opt)


def truncated(message: bytes, query: Query) -> bytes:
    """`truncated_body` of a whole message, its ID kept."""
    return message[:ID_SIZE] + truncated_body(body_of(message), query)


def fit_tcp(query: Query, rcode: int, answers: Sequence[bytes], *, authoritative: bool) -> Body:
    """A reply for TCP: every answer up to the 65,535-byte ceiling. Only past it (about 4,000 A records) the
    records that fit whole are sent, in the order given, with TC set: TCP has nothing larger to retry with."""
    room = MAX_TCP_MESSAGE - ID_SIZE - 10 - len(query.question) - (OPT_SIZE if query.edns_size is not None else 0)
    if sum(len(a) for a in answers) <= room:
        return reply_after_id(query, rcode, answers, authoritative=authoritative)
    kept: list[bytes] = []
    for answer in answers:
        if len(answer) > room:
            break
        room -= len(answer)
        kept.append(answer)
    body = reply_after_id(query, rcode, kept, authoritative=authoritative)
    return Body(struct.pack("!H", struct.unpack_from("!H", body)[0] | TC) + body[2:])


def with_id(reply: bytes, ident: int) -> bytes:
    return struct.pack("!H", ident) + reply[2:]


def rcode_of(reply: bytes) -> int:
    return reply[3] & RCODE_MASK


def is_truncated(reply: bytes) -> bool:
    return bool(reply[2] & (TC >> 8))


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length >= 0xC0:
            return offset + 2
        if length > MAX_LABEL:
            raise ValueError("bad label")
        if length == 0:
            return offset + 1
        offset += 1 + length


def _opt_of(body: Body) -> bytes | None:
    """The OPT record of a reply body, without its options; None when it has none or cannot be read."""
    try:
        qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHH", body, 2)
        offset = 10
        for _ in range(qdcount):
            offset = _skip_name(body, offset) + 4
        for index in range(ancount + nscount + arcount):
            start = offset
            offset = _skip_name(body, offset)
            rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(body, offset)
            if index >= ancount + nscount and rtype == TYPE_OPT and offset == start + 1 and body[start] == 0:
                return b"\x00" + RR_FIXED.pack(TYPE_OPT, rclass, ttl, 0)
            offset += RR_FIXED.size + rdlength
    except (IndexError, struct.error, ValueError):
        return None
    return None


def well_formed(reply: bytes) -> bool:
    """Whether every record a reply announces is there, whole (a reply cut short without TC is not)."""
    try:
        ttl_fields(reply)
    except ValueError:
        return False
    return True


def ttl_fields(reply: bytes) -> list[tuple[int, int]]:
    """(offset, ttl) of every TTL in a reply, OPT excluded (its 'TTL' holds flags). ValueError when malformed."""
    try:
        _ident, _flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(reply)
        offset = HEADER.size
        for _ in range(qdcount):
            offset = _skip_name(reply, offset) + 4
        fields: list[tuple[int, int]] = []
        for _ in range(ancount + nscount + arcount):
            offset = _skip_name(reply, offset)
            rtype, _rclass, ttl, rdlength = RR_FIXED.unpack_from(reply, offset)
            if rtype != TYPE_OPT:
                fields.append((offset + 4, ttl))
            offset += RR_FIXED.size + rdlength
    except (IndexError, struct.error) as exc:
        raise ValueError("malformed reply") from exc
    if offset > len(reply):
        raise ValueError("records run past the reply")
    return fields
