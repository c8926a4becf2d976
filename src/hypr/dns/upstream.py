"""Forwarding to the host's upstream resolvers: UDP first, TCP on truncation (or on a reply cut short), quick
failover without giving up on a slow server, a small TTL cache.

Servers are asked in order, hedged: when one has not answered within HEDGE (or has failed) the next is asked too,
and every server asked keeps its chance until FORWARD_DEADLINE; the first answer with records wins, and a negative
one (NXDOMAIN, NODATA) once no server asked before it is still silent (`_Race`). So a dead first server costs one
HEDGE (and is asked last for DEAD_FOR), and a slow one (a cold name at a recursive resolver, a resolver across a
VPN) still answers, as with dockerd, which waits 4 s for each server; SERVFAIL only when every server failed or
the deadline passed.

Forwarded answers are relayed as bytes: only the ID (and, from the cache, the question's letter case and the
TTLs) are patched, so EDNS options, DNSSEC records and types we do not know pass through intact.

A query may name its own servers (a workload's `--dns`): they are asked instead of the daemon's, with the same
failover, and their answers are cached apart (the cache key holds the server list), so askers with different
upstreams never see each other's answers.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from hypr.dns import wire

log = logging.getLogger(__name__)

Upstream = tuple[str, int]  # (address, port)
Servers = tuple[Upstream, ...] | None  # a query's own upstreams; None: the forwarder's (the daemon's)
CacheKey = tuple[bytes, bool, bool, Servers]

RESOLV_CONF = Path("/etc/resolv.conf")
# systemd-resolved's real upstream list, used when /etc/resolv.conf only names its stub (127.0.0.53).
RESOLVED_UPSTREAMS = Path("/run/systemd/resolve/resolv.conf")
HEDGE = 0.4  # seconds before the next server is asked too: above a LAN or ISP resolver's usual round trip
FORWARD_DEADLINE = 2.5  # seconds a forwarded question waits for any server: inside dig +time=3, glibc and dig wait 5
TCP_TIMEOUT = 2.0
DEAD_FOR = 5.0  # a server that did not answer within HEDGE is asked last for this long
MAX_CACHE_TTL = 3600
MAX_TCP_MESSAGE = 65535


def parse_resolv_conf(text: str, *, skip: Collection[str] = (), port: int = 53) -> list[Upstream]:
    """The `nameserver` lines of resolv.conf-style text, in order, without duplicates and without `skip`
    (our own gateway addresses, so we never forward to ourselves). Bad addresses are ignored, like glibc does."""
    skipped = {str(ip_address(s)) for s in skip}
    servers: list[Upstream] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            address = str(ip_address(fields[1].split("%", 1)[0]))
        except ValueError:
            continue
        if address not in skipped and (address, port) not in servers:
            servers.append((address, port))
    return servers


def only_stub(servers: Sequence[Upstream]) -> bool:
    return bool(servers) and all(address.startswith("127.0.0.5") for address, _ in servers)


def load_upstreams(skip: Collection[str] = (), path: Path = RESOLV_CONF) -> list[Upstream]:
    """The host's resolvers. Behind systemd-resolved's stub, its real upstream list, so hypr's answers do not
    depend on resolved's own routing; a missing file means no upstreams (forwarded names get SERVFAIL)."""
    try:
        servers = parse_resolv_conf(path.read_text(), skip=skip)
        if only_stub(servers) and RESOLVED_UPSTREAMS.exists():
            return parse_resolv_conf(RESOLVED_UPSTREAMS.read_text(), skip=skip) or servers
        return servers
    except FileNotFoundError:
        return []


def cache_ttl(reply: bytes) -> tuple[int, list[tuple[int, int]]]:
    """How long a relayed reply may be cached (its smallest TTL, 0 = not at all) and where its TTLs are."""
    if len(reply) < wire.HEADER.size or wire.is_truncated(reply):
        return 0, []
    if wire.rcode_of(reply) not in (wire.NOERROR, wire.NXDOMAIN):
        return 0, []
    try:
        fields = wire.ttl_fields(reply)
    except ValueError:
        return 0, []
    if not fields:
        return 0, []
    return min(MAX_CACHE_TTL, min(ttl for _offset, ttl in fields)), fields


@dataclass
class _Cached:
    reply: bytes
    expires: float
    stored: float
    ttls: list[tuple[int, int]] = field(default_factory=list)


class AnswerCache:
    """Forwarded replies by question, until their smallest TTL runs out; bounded, least recently stored first out."""

    def __init__(self, size: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[CacheKey, _Cached] = OrderedDict()

    @staticmethod
    def key(query: wire.Query, servers: Servers = None) -> CacheKey:
        return query.key, query.edns_size is not None, query.dnssec_ok, servers

    def get(self, query: wire.Query, servers: Servers = None) -> bytes | None:
        found = self.get_until(query, servers)
        return None if found is None else found[0]

    def get_until(self, query: wire.Query, servers: Servers = None) -> tuple[bytes, float] | None:
        """The reply (with the query's ID, question case and counted-down TTLs) and until when (clock time) those
        exact bytes stay right: the next whole second of its age, or its expiry. A server may replay them until.
        `servers`: the upstreams the answer must have come from (None: the daemon's)."""
        key = self.key(query, servers)
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        if now >= entry.expires:
            del self._entries[key]
            return None
        out = bytearray(entry.reply)
        struct.pack_into("!H", out, 0, query.id)
        out[wire.HEADER.size : wire.HEADER.size + len(query.question)] = query.question
        elapsed = int(now - entry.stored)
        for offset, ttl in entry.ttls:
            struct.pack_into("!I", out, offset, max(0, ttl - elapsed))
        return bytes(out), min(entry.expires, entry.stored + elapsed + 1)

    def put(self, query: wire.Query, reply: bytes, servers: Servers = None) -> None:
        ttl, fields = cache_ttl(reply)
        if ttl <= 0 or self._size <= 0:
            return
        key = self.key(query, servers)
        now = self._clock()
        self._entries[key] = _Cached(reply, now + ttl, now, fields)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class _OneReply(asyncio.DatagramProtocol):
    def __init__(self, ident: int, question: bytes) -> None:
        self.ident = ident
        self.question = question
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        if self.reply.done() or not _matches(data, self.ident, self.question):
            return  # a late or forged datagram: keep waiting for the real one
        self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port/host unreachable on our connected socket: this server is down, fail over now.
        if not self.reply.done():
            self.reply.set_exception(exc)


def _matches(reply: bytes, ident: int, question: bytes) -> bool:
    if len(reply) < wire.HEADER.size + len(question):
        return False
    got_id, flags, qdcount = struct.unpack_from("!HHH", reply)
    if got_id != ident or not flags & wire.QR or qdcount != 1:
        return False
    return reply[wire.HEADER.size : wire.HEADER.size + len(question)].lower() == question.lower()


class Forwarder:
    """Asks the upstream servers in order; the first good reply wins; SERVFAIL only when every server failed."""

    def __init__(
        self,
        upstreams: Iterable[Upstream] = (),
        *,
        hedge: float = HEDGE,
        deadline: float = FORWARD_DEADLINE,
        tcp_timeout: float = TCP_TIMEOUT,
        cache: AnswerCache | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstreams = list(upstreams)
        self.hedge = hedge
        self.deadline = deadline
        self.tcp_timeout = tcp_timeout
        self.cache = cache if cache is not None else AnswerCache(clock=clock)
        self._clock = clock
        self._dead_until: dict[Upstream, float] = {}
        self._generation = 0  # of the upstream list: answers from a replaced list are not cached

    def set_upstreams(self, upstreams: Iterable[Upstream]) -> None:
        self.upstreams = list(upstreams)
        self._dead_until.clear()
        self.cache.clear()
        self._generation += 1

    def _order(self, servers: Servers = None) -> list[Upstream]:
        now = self._clock()
        upstreams = self.upstreams if servers is None else list(servers)
        alive = [u for u in upstreams if self._dead_until.get(u, 0.0) <= now]
        return alive + [u for u in upstreams if u not in alive]

    async def resolve(self, data: bytes, query: wire.Query, servers: Servers = None) -> bytes:
        """The reply to `data` (a parsed client query), with the client's ID. `servers`: the asker's own upstreams
        (a workload's `--dns`), asked instead of the daemon's; None for the daemon's."""
        cached = self.cache.get(query, servers)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        until, generation = loop.time() + self.deadline, self._generation
        race = _Race()
        try:
            reply = None
            for upstream in self._order(servers):
                if loop.time() >= until:
                    break
                newest = race.ask(upstream, self._ask(upstream, data, query))
                reply = await race.wait(min(self.hedge, until - loop.time()), newest)
                if reply is not None:
                    break
                for silent in race.silent():  # no answer within HEDGE: asked last for a while
                    self._dead_until[silent] = self._clock() + DEAD_FOR
            if reply is None:
                reply = await race.wait(until - loop.time()) or race.winner(final=True)
        finally:
            race.stop()
        if reply is None:
            return wire.status_reply(query, wire.SERVFAIL)
        if generation == self._generation:  # not an answer of servers replaced meanwhile
            self.cache.put(query, reply, servers)
        return wire.with_id(reply, query.id)

    async def _ask(self, upstream: Upstream, data: bytes, query: wire.Query) -> bytes | None:
        """`upstream`'s answer; None when it failed or cannot help (SERVFAIL, REFUSED: the next one may)."""
        ident = secrets.randbits(16)  # our own random ID: the client's may be predictable
        outgoing = struct.pack("!H", ident) + data[2:]
        try:
            reply = await self._udp(upstream, outgoing, ident, query.question)
            if wire.is_truncated(reply) or not wire.well_formed(reply):
                # TC, or cut short without it (a middlebox that drops what is past 512 bytes): the whole answer
                # over TCP. The client's own UDP limit is applied later, by the server (`wire.fit_udp`).
                reply = await self._tcp(upstream, outgoing, ident, query.question)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            log.debug("upstream %s:%d failed: %r", *upstream, exc)
            self._dead_until[upstream] = self._clock() + DEAD_FOR
            return None
        self._dead_until.pop(upstream, None)  # it answers (maybe slowly): back in its place
        if wire.rcode_of(reply) in (wire.SERVFAIL, wire.REFUSED):
            return None
        return reply

    async def _udp(self, upstream: Upstream, outgoing: bytes, ident: int, question: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _OneReply(ident, question), remote_addr=upstream
        )
        try:
            transport.sendto(outgoing)
            return await protocol.reply  # resolve's deadline cancels us
        finally:
            transport.close()

    async def _tcp(self, upstream: Upstream, outgoing: bytes, ident: int, question: bytes) -> bytes:
        async with asyncio.timeout(self.tcp_timeout):
            reader, writer = await asyncio.open_connection(*upstream)
            try:
                writer.write(struct.pack("!H", len(outgoing)) + outgoing)
                await writer.drain()
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = await reader.readexactly(length)
            finally:
                writer.close()
        if not _matches(reply, ident, question):
            raise ConnectionError("TCP reply does not match the query")
        return reply


class _Race:
    """The servers asked for one question, in the order asked, and which of their answers may be given: a positive
    one (NOERROR with records) from any server at once; a negative one (NXDOMAIN, NODATA) only when no server asked
    before it is still silent, so that a quick "no such name" from a public resolver does not beat the slower
    resolver listed first that knows the name (split horizon, a VPN)."""

    def __init__(self) -> None:
        self.tasks: dict[asyncio.Task[bytes | None], Upstream] = {}  # in the order asked

    def ask(self, upstream: Upstream, asking: Coroutine[Any, Any, bytes | None]) -> asyncio.Task[bytes | None]:
        task = asyncio.create_task(asking)
        self.tasks[task] = upstream
        return task

    def silent(self) -> list[Upstream]:
        return [upstream for task, upstream in self.tasks.items() if not task.done()]

    def winner(self, *, final: bool = False) -> bytes | None:
        """The answer that may be given now (`final`: the deadline passed, a negative one too); None: none yet."""
        silent_before = False
        for task in self.tasks:
            if not task.done():
                silent_before = True
                continue
            reply = task.result()
            if reply is not None and (final or not silent_before or _positive(reply)):
                return reply
        return None

    async def wait(self, timeout: float, newest: asyncio.Task[bytes | None] | None = None) -> bytes | None:
        """The winner within `timeout` seconds; None at the timeout, when every server finished without one, or
        as soon as `newest` failed (the next server is asked at once, not after the rest of the hedge)."""
        until = asyncio.get_running_loop().time() + timeout
        while (reply := self.winner()) is None:
            silent = [task for task in self.tasks if not task.done()]
            left = until - asyncio.get_running_loop().time()
            if not silent or left <= 0 or (newest is not None and newest.done() and newest.result() is None):
                return None
            await asyncio.wait(silent, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        return reply

    def stop(self) -> None:
        """Cancel the servers still asked; take the outcome of the others (none is left unretrieved)."""
        for task in self.tasks:
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()


def _positive(reply: bytes) -> bool:
    return wire.rcode_of(reply) == wire.NOERROR and struct.unpack_from("!H", reply, 6)[0] > 0
