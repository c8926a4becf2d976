"""DNS wire format, only as much as hypr needs: parse a query, encode our small answers, read TTLs of a relayed one.

Pure functions over bytes. Forwarded answers are never re-encoded: `ttl_fields` finds their TTLs so a cache can
patch them in place and everything else (EDNS options, DNSSEC records, unknown types) passes through untouched.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

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
OUR_EDNS_SIZE = 1232  # the DNS flag day 2020 value: avoids IP fragmentation
MAX_NAME = 255
MAX_LABEL = 63


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
        return PLAIN_UDP_LIMIT if self.edns_size is None else max(PLAIN_UDP_LIMIT, self.edns_size)


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
        if total > MAX_NAME or offset + 1 + length > len(data):
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


def opt_record() -> bytes:
    return b"\x00" + RR_FIXED.pack(TYPE_OPT, OUR_EDNS_SIZE, 0, 0)


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.split(".") if name else ():
        raw = label.encode("latin-1")
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)


def a_record(address: IPv4Address, ttl: int) -> bytes:
    # 0xC00C: a pointer to the question name, so the record is valid whatever case the client used.
    return b"\xc0\x0c" + RR_FIXED.pack(TYPE_A, CLASS_IN, ttl, 4) + address.packed


def ptr_record(target: str, ttl: int) -> bytes:
    rdata = encode_name(target)
    return b"\xc0\x0c" + RR_FIXED.pack(TYPE_PTR, CLASS_IN, ttl, len(rdata)) + rdata


def reply_after_id(query: Query, rcode: int, answers: list[bytes], *, authoritative: bool) -> bytes:
    """Everything of a reply but its 2-byte ID, so a cache can prepend any client's ID."""
    flags = QR | RA | (query.flags & RD) | rcode | (AA if authoritative else 0)
    extra = [opt_record()] if query.edns_size is not None else []
    counts = struct.pack("!HHHHH", flags, 1, len(answers), 0, len(extra))
    return counts + query.question + b"".join(answers) + b"".join(extra)


def status_reply(query: Query, rcode: int) -> bytes:
    return struct.pack("!H", query.id) + reply_after_id(query, rcode, [], authoritative=False)


def truncated(reply: bytes, query: Query) -> bytes:
    """The reply cut to header + question with TC set: the client retries over TCP (RFC 7766)."""
    ident, flags = struct.unpack_from("!HH", reply)
    return HEADER.pack(ident, flags | TC, 1, 0, 0, 0) + query.question


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
