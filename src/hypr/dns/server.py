"""The asyncio UDP+TCP shell around `records.lookup` and the `Forwarder`.

Listeners are per address (each network's gateway), never 0.0.0.0. New records are one assignment: sockets are
never re-bound for them. The UDP fast path keys finished replies on the query bytes after the ID plus the asker's
scope, so a repeated question costs one dict lookup and one concatenation.

The asker's scope comes from its source address and, for an address that is no endpoint, from the listener the
query arrived on (`records.scope_for`). Every UDP reply, local or forwarded, goes through `wire.fit_udp`: it is
the whole answer when that fits the asker's UDP size, else a TC reply without records (the asker retries over TCP,
where nothing is cut below 65,535 bytes).

No input makes the server raise: a query whose handling fails for a reason nobody foresaw gets SERVFAIL, and the
failure is logged once, then counted at most once a minute (a workload must not be able to flood the log).

TCP clients are limited so that no one can lock TCP out for the others (RFC 7766 6.2): each must send its next
whole query within TCP_IDLE seconds of connecting or of our last reply, and take each reply within TCP_WRITE;
one source address holds at most MAX_TCP_PER_SOURCE connections and everyone together MAX_TCP_CLIENTS. At either
cap a new connection first closes the one that has waited longest without our doing anything for it (the oldest
idle, slow or stalled one; never one waiting for an upstream answer), and is refused only when there is none.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv6Address, ip_address
from time import monotonic
from typing import Any, cast

from hypr.dns import batch, wire
from hypr.dns.records import EMPTY, TTL, Found, Outcome, Records, Scope, lookup_scoped, scope_for
from hypr.dns.upstream import Forwarder, Upstream
from hypr.names import DNS_PORT

log = logging.getLogger(__name__)

LOCAL_CACHE_SIZE = 8192
MAX_INFLIGHT = 1024  # forwarded queries waiting on upstreams (up to FORWARD_DEADLINE each), as dockerd's resolver; beyond: dropped, the client retries
MAX_TCP_CLIENTS = 256
MAX_TCP_PER_SOURCE = 16  # one address (a workload) cannot hold more than this many TCP connections
TCP_IDLE = 5.0  # seconds for a client's next whole query (RFC 7766: seconds, not minutes); slow-loris ends here
TCP_WRITE = 5.0  # seconds for a client to take a reply: one that never reads does not hold its connection
TCP_BACKLOG = 1024  # connections the kernel queues for accept: a burst of clients is queued, not dropped
FAULT_LOG_EVERY = 60.0  # seconds between log lines about queries that failed unexpectedly
BIND_RETRY_FIRST = 0.05
BIND_RETRY_MAX = 1.0
BIND_RETRY_ERRNOS = (errno.EADDRNOTAVAIL, errno.EADDRINUSE)
UNKNOWN_ASKERS = 4096  # scopes of askers that are no endpoint, remembered per listener until the records change

Address = tuple[IPv4Address | IPv6Address, int]


class _Turn:
    """Whose turn it is to come first, for one question (case-folded) from one scope."""

    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next = 0

    def advance(self, count: int) -> int:
        """The index of the record that comes first this time, out of `count`."""
        i = self.next % count
        self.next = i + 1
        return i


class _Rotating:
    """The UDP reply to one query's bytes whose A records are served rotated, one step per reply.

    The turn is shared by every packet asking the same question from the same scope: clients that send different
    bytes each time (dig's EDNS cookie, 0x20 case randomisation, a fresh resolver per lookup) still see the order
    rotate, and so do TCP clients. The records are kept once, not once per rotation: 60 addresses would otherwise
    make 60 replies of a kilobyte for every distinct query."""

    __slots__ = ("count", "head", "records", "size", "tail", "turn")

    def __init__(self, body: wire.Body, question: bytes, count: int, turn: _Turn, size: int) -> None:
        start = 10 + len(question)  # flags, counts, question; then `count` records of `size` bytes, then OPT
        end = start + count * size
        self.head, self.records, self.tail = body[:start], body[start:end], body[end:]
        self.count = count
        self.size = size  # A_SIZE or AAAA_SIZE: one answer has one family
        self.turn = turn

    def take(self) -> bytes:
        cut = self.turn.advance(self.count) * self.size
        records = self.records
        return self.head + records[cut:] + records[:cut] + self.tail


class _Fresh:
    """A forwarded reply from the answer cache (minus its ID), replayed as is until its TTLs would tick down."""

    __slots__ = ("reply", "until")

    def __init__(self, reply: bytes, until: float) -> None:
        self.reply = reply
        self.until = until


class _Faults:
    """Unexpected failures while answering: the first is logged with its traceback, later ones are counted and
    reported at most once every FAULT_LOG_EVERY seconds, whatever rate a client sends them at."""

    def __init__(self) -> None:
        self.count = 0
        self.next_report = 0.0

    def report(self, what: str) -> None:
        self.count += 1
        now = monotonic()
        if self.count == 1:
            log.exception("dns: %s failed; answered SERVFAIL (further failures are counted)", what)
        elif now >= self.next_report:
            log.error("dns: %d queries failed unexpectedly so far (latest: %s); answered SERVFAIL", self.count, what)
        else:
            return
        self.next_report = now + FAULT_LOG_EVERY


def _servfail(data: bytes) -> bytes | None:
    """A SERVFAIL for a query we could not answer, built as defensively as possible; None to stay silent."""
    try:
        return wire.status_reply(wire.parse_query(data), wire.SERVFAIL)
    except Exception:
        return None


class _TcpClient:
    """One TCP connection: where from, and since when it has waited for the client (accepted, query read, reply
    written). `busy` while its answer is being fetched upstream: then the wait is ours, and it is never closed
    to make room."""

    __slots__ = ("busy", "since", "source", "writer")

    def __init__(self, source: str, writer: asyncio.StreamWriter) -> None:
        self.source = source
        self.writer = writer
        self.since = monotonic()
        self.busy = False


def _qclass_ok(query: wire.Query) -> bool:
    return query.qclass in (wire.CLASS_IN, wire.CLASS_ANY)


A_SIZE = len(wire.a_record(IPv4Address(0), TTL))  # every A record we write: a name pointer and 4 bytes of data
AAAA_SIZE = len(wire.aaaa_record(IPv6Address(0), TTL))  # ... and every AAAA record: 16 bytes of data


def local_answer(query: wire.Query, answer: Found | Outcome) -> tuple[int, bool, list[bytes]]:
    """(RCODE, authoritative, answer records in table order) of a local answer."""
    if answer is Outcome.NXDOMAIN:
        return wire.NXDOMAIN, True, []
    if answer is Outcome.REFUSED:
        return wire.REFUSED, False, []
    if not isinstance(answer, Found):  # NODATA (FORWARD never reaches here)
        return wire.NOERROR, True, []
    if answer.pointers:
        return wire.NOERROR, True, [wire.ptr_record(p, TTL) for p in answer.pointers]
    return wire.NOERROR, True, [wire.address_record(a, TTL) for a in answer.addresses]


def udp_reply(query: wire.Query, answer: Found | Outcome, turn: _Turn) -> wire.Body | _Rotating:
    """The UDP reply (minus ID) to a local answer: the whole answer when it fits the asker's UDP size (then
    several addresses rotate from reply to reply), else a TC reply without records."""
    rcode, authoritative, records = local_answer(query, answer)
    body = wire.fit_udp(wire.reply_after_id(query, rcode, records, authoritative=authoritative), query)
    if isinstance(answer, Found) and len(answer.addresses) > 1 and not body[0] & (wire.TC >> 8):
        size = A_SIZE if answer.addresses[0].version == 4 else AAAA_SIZE
        return _Rotating(body, query.question, len(records), turn, size)
    return body


def tcp_reply(query: wire.Query, answer: Found | Outcome, turn: _Turn) -> wire.Body:
    """The TCP reply (minus ID) to a local answer: never truncated below 65,535 bytes; rotated like UDP."""
    rcode, authoritative, records = local_answer(query, answer)
    if isinstance(answer, Found) and len(answer.addresses) > 1:
        first = turn.advance(len(records))
        records = records[first:] + records[:first]
    return wire.fit_tcp(query, rcode, records, authoritative=authoritative)


class _Udp:
    """A UDP listener driven by `add_reader` directly: one wake-up reads a burst of queued datagrams with one
    recvmmsg and answers the fast path's share of it with one sendmmsg (hypr.dns.batch), which against a
    DatagramProtocol (one callback and transport hop per datagram) more than halves the per-query cost."""

    def __init__(self, server: DnsServer, sock: socket.socket, local: str) -> None:
        self.server = server
        self.sock = sock
        self.family = sock.family
        self.span = batch.ADDRESS_SPAN[sock.family]  # where the asker's address sits in a source address
        self.local = local  # the address we listen on: which network's gateway a query arrived on
        self.closed = False
        # Asker's address (packed, as the kernel gives it) -> scope, for the records `_scopes_of`: filled on
        # first sight of an asker, so the fast path stays one lookup; emptied when the records change.
        self._scopes: dict[bytes, Scope] = {}
        self._scopes_of = EMPTY
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        # The hot path, inline (attribute lookups and calls are most of its Python cost): a question seen before
        # from the same scope is one dict lookup away from its finished reply. The tables are read once per
        # wake-up: they are only replaced by coroutines (set_records, set_upstreams), never during this call.
        # The burst is read first and answered after: every reply wakes its asker, and an asker woken on this CPU
        # preempts us before the next datagram is read. Sent together, the replies cost ~12% less CPU per query
        # and half the context switches (bench/dns.py, perf stat), and are late by the burst's few microseconds.
        server, io = self.server, self.server.batch
        try:
            count = io.receive(self.sock.fileno())
        except OSError as exc:  # ICMP errors queued on the socket (a client went away): keep serving
            log.debug("udp receive: %r", exc)
            return  # the socket stays readable if more is queued: the next wake-up reads it
        replies, records = server.replies, server.records
        if self._scopes_of is not records:
            self._scopes, self._scopes_of = {}, records
        scopes = self._scopes
        data, names, lengths, iov_lengths = io.data, io.names, io.lengths, io.iov_lengths
        lo, hi = self.span
        answered: list[int] = []  # the slots whose reply is written in
        add = answered.append
        try:
            for i in range(count):
                if lengths[i * 16 + 12] & socket.MSG_TRUNC:  # msg_flags: a query past batch.SLOT, cut
                    continue  # no DNS client sends one; what is left of it is no question to answer
                at = i * batch.SLOT
                query = data[at : at + lengths[i * 16 + 14]].tobytes()
                asker = names[i * batch.NAME + lo : i * batch.NAME + hi].tobytes()
                scope = scopes.get(asker)
                if scope is None:  # first query of this asker since the records changed
                    scope = self._scope_of(asker, records)
                hit = replies.get((query[2:], scope))
                if hit.__class__ is bytes:
                    reply = query[:2] + hit
                elif hit is None:
                    server.on_datagram(query, io.source(i, self.family), self, scope)
                    continue
                elif hit.__class__ is _Rotating:
                    reply = query[:2] + hit.take()
                elif monotonic() < cast(_Fresh, hit).until:
                    reply = query[:2] + cast(_Fresh, hit).reply
                else:  # its TTLs moved on: ask the cache
                    server.on_datagram(query, io.source(i, self.family), self, scope)
                    continue
                size = len(reply)
                if size > batch.SLOT:
                    self.sendto(reply, io.source(i, self.family))
                    continue
                data[at : at + size] = reply
                iov_lengths[2 * i + 1] = size
                add(i)
        finally:  # whatever happened, the replies already made go out
            for i, code in io.send(self.sock.fileno(), answered):
                log.debug("udp send to %s: %s", io.source(i, self.family)[0], os.strerror(code))

    def _scope_of(self, asker: bytes, records: Records) -> Scope:
        """The scope of an asker's packed address (`scope_for`: no endpoint is the host, or a newcomer on this
        network). Remembered, bounded: a stream of new source addresses must not grow it forever."""
        scope = scope_for(records, socket.inet_ntop(self.family, asker), self.local)
        if len(self._scopes) >= len(records.scopes) + UNKNOWN_ASKERS:
            self._scopes.clear()
        self._scopes[asker] = scope
        return scope

    def sendto(self, reply: bytes, addr: batch.Source) -> None:
        try:
            self.sock.sendto(reply, addr)
        except (BlockingIOError, InterruptedError):
            pass  # send buffer full: dropping a UDP reply is allowed, the client retries
        except OSError as exc:  # e.g. ECONNREFUSED from an earlier ICMP error, EPERM from a firewall
            log.debug("udp send to %s: %r", addr, exc)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()


def _bound_socket(kind: socket.SocketKind, address: Address) -> socket.socket:
    """Bound (and for TCP listening) ourselves, not by the loop: uvloop hides the errno we retry on."""
    sock = socket.socket(socket.AF_INET if address[0].version == 4 else socket.AF_INET6, kind)
    try:
        sock.setblocking(False)
        if address[0].version == 6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart while old clients linger
        sock.bind((str(address[0]), address[1]))
        if kind == socket.SOCK_STREAM:
            sock.listen(TCP_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


class _Listener:
    """UDP + TCP on one address; binding is retried in the background until the address exists."""

    def __init__(self, server: DnsServer, address: Address) -> None:
        self.server = server
        self.address = address
        self.udp: _Udp | None = None
        self.tcp: asyncio.Server | None = None
        self.retry: asyncio.Task[None] | None = None

    @property
    def bound(self) -> bool:
        return self.udp is not None and self.tcp is not None

    async def bind(self) -> bool:
        """One attempt; False when the address is not there (yet) or the port is taken."""
        try:
            udp_sock = _bound_socket(socket.SOCK_DGRAM, self.address)
        except OSError as exc:
            if exc.errno in BIND_RETRY_ERRNOS:
                return False
            raise
        try:
            tcp_sock = _bound_socket(socket.SOCK_STREAM, self.address)
        except OSError as exc:
            udp_sock.close()
            if exc.errno in BIND_RETRY_ERRNOS:
                return False
            raise
        self.udp = _Udp(self.server, udp_sock, str(self.address[0]))
        self.tcp = await asyncio.start_server(self.server.on_tcp, sock=tcp_sock, backlog=TCP_BACKLOG)
        return True

    async def keep_trying(self) -> None:
        delay = BIND_RETRY_FIRST
        log.info("dns: %s:%d not available yet, retrying in the background", *self.address)
        while not await self.bind():
            await asyncio.sleep(delay)  # polling: the address appears when its bridge is configured
            delay = min(delay * 2, BIND_RETRY_MAX)
        log.info("dns: listening on %s:%d", *self.address)

    async def close(self) -> None:
        if self.retry is not None:
            self.retry.cancel()
            await asyncio.gather(self.retry, return_exceptions=True)
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
            await self.tcp.wait_closed()


class DnsServer:
    """`set_records` and `set_listen_addresses` may be called at any time and in any order."""

    def __init__(
        self,
        upstreams: Iterable[Upstream] = (),
        *,
        max_inflight: int = MAX_INFLIGHT,
    ) -> None:
        self.records: Records = EMPTY
        self.forwarder = Forwarder(upstreams)
        self.max_inflight = max_inflight
        self._listeners: dict[Address, _Listener] = {}
        self.replies: dict[tuple[bytes, Scope], wire.Body | _Rotating | _Fresh] = {}  # UDP replies minus ID
        self._turns: dict[tuple[bytes, Scope], _Turn] = {}  # round-robin position by question and scope
        self._tasks: set[asyncio.Task[None]] = set()  # forwarded UDP queries in flight
        self._connections: dict[asyncio.Task[Any], _TcpClient] = {}  # TCP clients being served
        self._by_source: dict[str, dict[asyncio.Task[Any], _TcpClient]] = {}  # the same, by source address
        self.faults = _Faults()
        self.batch = batch.Batch()  # the UDP listeners' buffers: they all run on this loop, one call at a time

    # -- control ---------------------------------------------------------------------------------------------

    async def set_records(self, records: Records) -> None:
        self.records = records
        self.replies = {}  # a fresh dict, not clear(): equally cheap, and obviously one step
        self._turns = {}

    async def set_upstreams(self, upstreams: Iterable[Upstream]) -> None:
        self.forwarder.set_upstreams(upstreams)
        self.replies = {}  # it holds replayable forwarded replies too

    async def set_listen_addresses(self, addrs: Iterable[IPv4Address | IPv6Address], port: int = DNS_PORT) -> None:
        wanted: set[Address] = {(ip_address(a), port) for a in addrs}
        for address in [a for a in self._listeners if a not in wanted]:
            await self._listeners.pop(address).close()
        for address in sorted(wanted - self._listeners.keys(), key=lambda a: (a[0].version, int(a[0]))):
            listener = _Listener(self, address)
            self._listeners[address] = listener
            if not await listener.bind():
                listener.retry = asyncio.create_task(listener.keep_trying())

    def listening(self) -> set[Address]:
        """Addresses bound right now (the others are still waiting for their address)."""
        return {a for a, listener in self._listeners.items() if listener.bound}

    async def close(self) -> None:
        await self.set_listen_addresses(set())
        for task in self._tasks:
            task.cancel()
        for client in self._connections.values():
            client.writer.close()  # not cancel(): asyncio's stream callback reports cancelled handlers as errors
        await asyncio.gather(*self._tasks, *self._connections, return_exceptions=True)

    # -- UDP -------------------------------------------------------------------------------------------------

    def on_datagram(self, data: bytes, addr: batch.Source, transport: _Udp, scope: Scope) -> None:
        """A query the reply table does not hold: parse, look up, answer or forward, remember local replies.
        Never raises: whatever goes wrong, the asker gets SERVFAIL and the other queries are answered."""
        try:
            self._on_datagram(data, addr, transport, scope)
        except Exception:
            self.faults.report(f"a UDP query from {addr[0]}")
            reply = _servfail(data)
            if reply is not None:
                transport.sendto(reply, addr)

    def _on_datagram(self, data: bytes, addr: batch.Source, transport: _Udp, scope: Scope) -> None:
        try:
            query = wire.parse_query(data)
        except wire.Malformed as exc:
            if exc.reply is not None:
                transport.sendto(exc.reply, addr)
            return
        answer = self._answer(query, scope)
        if answer is Outcome.FORWARD:
            self._forward_udp(data, query, scope, addr, transport)
            return
        reply = udp_reply(query, answer, self._turn(query, scope))
        self._remember(data, scope, reply)
        transport.sendto(data[:2] + (reply.take() if isinstance(reply, _Rotating) else reply), addr)

    def _remember(self, data: bytes, scope: Scope, reply: wire.Body | _Rotating | _Fresh) -> None:
        if len(self.replies) >= LOCAL_CACHE_SIZE:
            del self.replies[next(iter(self.replies))]  # bounded: random names must not grow it forever
        self.replies[(data[2:], scope)] = reply

    def _turn(self, query: wire.Query, scope: Scope) -> _Turn:
        key = (query.key, scope)
        turn = self._turns.get(key)
        if turn is None:
            if len(self._turns) >= LOCAL_CACHE_SIZE:
                del self._turns[next(iter(self._turns))]
            turn = self._turns[key] = _Turn()
        return turn

    def _answer(self, query: wire.Query, scope: Scope) -> Found | Outcome:
        if not _qclass_ok(query):
            return Outcome.REFUSED
        return lookup_scoped(self.records, scope, query.qname, query.type_name)

    def _forward_udp(self, data: bytes, query: wire.Query, scope: Scope, addr: batch.Source, transport: _Udp) -> None:
        cached = self.forwarder.cache.get_until(query, scope.upstreams)
        if cached is not None:
            body = wire.fit_udp(wire.body_of(cached[0]), query)
            # `until` is on the cache's clock, time.monotonic, which the fast path compares with.
            self._remember(data, scope, _Fresh(body, cached[1]))
            transport.sendto(data[:2] + body, addr)
            return
        if len(self._tasks) >= self.max_inflight:
            return  # overloaded (or a flood against a dead upstream): dropping is what a busy resolver does
        task = asyncio.create_task(self._relay_udp(data, query, scope, addr, transport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay_udp(
        self, data: bytes, query: wire.Query, scope: Scope, addr: batch.Source, transport: _Udp
    ) -> None:
        try:
            reply = await self.forwarder.resolve(data, query, scope.upstreams)
            reply = reply[:2] + wire.fit_udp(wire.body_of(reply), query)
        except Exception:
            self.faults.report(f"forwarding a UDP query from {addr[0]}")
            reply = wire.status_reply(query, wire.SERVFAIL)
        if not transport.is_closing():
            transport.sendto(reply, addr)

    # -- TCP -------------------------------------------------------------------------------------------------

    async def on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer = writer.get_extra_info("peername")
        client = _TcpClient(str(peer[0]) if peer else "", writer)
        if task is None or not self._make_room(client.source):
            writer.close()  # a connection flood must not exhaust our file descriptors
            return
        self._connections[task] = client
        self._by_source.setdefault(client.source, {})[task] = client
        try:
            await self._serve_tcp(reader, writer, client)
        finally:
            self._forget(task)

    def _forget(self, task: asyncio.Task[Any]) -> _TcpClient | None:
        client = self._connections.pop(task, None)
        if client is not None:
            same = self._by_source[client.source]
            del same[task]
            if not same:
                del self._by_source[client.source]
        return client

    def _make_room(self, source: str) -> bool:
        """Whether a new connection from `source` may be served: under both caps, or once the connection that has
        waited longest on its client (of that source for the per-source cap) is closed. False when every one
        that would have to go is waiting for an upstream answer. Costs a scan only at a cap."""
        same = self._by_source.get(source, {})
        if len(same) >= MAX_TCP_PER_SOURCE and not self._drop_oldest_idle(same):
            return False
        return len(self._connections) < MAX_TCP_CLIENTS or self._drop_oldest_idle(self._connections)

    def _drop_oldest_idle(self, clients: Mapping[asyncio.Task[Any], _TcpClient]) -> bool:
        idle = [(client.since, task) for task, client in clients.items() if not client.busy]
        if not idle:
            return False
        oldest = min(idle, key=lambda pair: pair[0])[1]
        dropped = self._forget(oldest)
        if dropped is not None:
            dropped.writer.close()  # its read fails at once and its task ends quietly
        return True

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: _TcpClient) -> None:
        local = writer.get_extra_info("sockname")
        arrived_on = local[0] if local else None
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):  # the whole next query: idle and slow clients alike
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                client.since = monotonic()
                client.busy = True
                try:
                    reply = await self._reply_tcp(data, client.source, arrived_on)
                finally:
                    client.busy = False
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    async with asyncio.timeout(TCP_WRITE):
                        await writer.drain()
                client.since = monotonic()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass  # the client finished, went idle, was too slow, went away, or made room for another: close quietly
        finally:
            writer.close()

    async def _reply_tcp(self, data: bytes, asker: str, arrived_on: str | None) -> bytes | None:
        """The reply to one query over TCP; never raises (SERVFAIL when something unforeseen fails)."""
        try:
            try:
                query = wire.parse_query(data)
            except wire.Malformed as exc:
                return exc.reply
            scope = scope_for(self.records, asker, arrived_on)
            answer = self._answer(query, scope)
            if answer is Outcome.FORWARD:
                return await self.forwarder.resolve(data, query, scope.upstreams)
            return data[:2] + tcp_reply(query, answer, self._turn(query, scope))
        except Exception:
            self.faults.report(f"a TCP query from {asker}")
            return _servfail(data)
