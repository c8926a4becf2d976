"""Test and benchmark helpers: an event loop in a thread, and fake upstream DNS servers on loopback.

Blocking clients (dnspython's `dns.query`, dig, dnsperf) talk to servers running in `LoopThread`, so tests need
no async test plugin. Nothing here is used by the daemon.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

from dnslib import AAAA, EDNS0, PTR, QTYPE, RR, TXT, A, DNSRecord

T = TypeVar("T")
Mode = Literal["answer", "blackhole", "servfail", "refused", "nxdomain", "truncate", "big", "many"]
MANY = {"A": 100, "AAAA": 60, "PTR": 30}  # "many": records of the asked type, each answer 1.6-2.3 kB


class LoopThread:
    """An asyncio loop in a daemon thread; `run` executes a coroutine there and waits for its result.
    Exceptions the loop reports (from callbacks, e.g. a protocol's datagram_received) land in `errors`."""

    def __init__(self, *, use_uvloop: bool = False) -> None:
        self.loop = _new_loop(use_uvloop)
        self.errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def _new_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            return asyncio.new_event_loop()
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


def fake_answer(request: bytes, mode: Mode, *, over_tcp: bool, address: str = "192.0.2.10", ttl: int = 60) -> bytes:
    """What a fake upstream in `mode` replies to `request`."""
    query = DNSRecord.parse(request)
    reply = query.reply()
    if mode == "servfail":
        reply.header.rcode = 2
    elif mode == "refused":
        reply.header.rcode = 5
    elif mode == "nxdomain":
        reply.header.rcode = 3
    elif mode == "truncate" and not over_tcp:
        reply.header.tc = 1
    elif mode == "big" or (mode == "many" and QTYPE[query.q.qtype] not in MANY):
        for i in range(40):  # ~3 kB: far beyond 512, inside a 4096-byte EDNS buffer
            reply.add_answer(RR(query.q.qname, QTYPE.TXT, rdata=TXT(f"{i:02d}-" + "x" * 60), ttl=ttl))
        reply.add_ar(EDNS0(udp_len=4096, opts=[]))
    elif mode == "many":  # beyond 512 and 1232 bytes, inside 4096, in the asked type
        kind = QTYPE[query.q.qtype]
        for i in range(1, MANY[kind] + 1):
            rdata = (
                A(f"198.51.100.{i}") if kind == "A"
                else AAAA(f"2001:db8::{i:x}") if kind == "AAAA"
                else PTR(f"host-{i:02d}-{'x' * 40}.example.test")
            )  # fmt: skip
            reply.add_answer(RR(query.q.qname, query.q.qtype, rdata=rdata, ttl=ttl))
        reply.add_ar(EDNS0(udp_len=4096, opts=[]))
    else:
        reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(address), ttl=ttl))
    packed: bytes = reply.pack()
    return packed


class FakeUpstream:
    """A UDP+TCP DNS server on (host, port) that answers every query according to `mode`."""

    def __init__(
        self, host: str, port: int, mode: Mode = "answer", address: str = "192.0.2.10", *, delay: float = 0.0
    ) -> None:
        self.host, self.port, self.mode, self.address = host, port, mode, address
        self.delay = delay  # seconds before each UDP reply (a recursive resolver on a cold name, a far one)
        self.udp_queries = 0
        self.tcp_queries = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(lambda: _FakeUdp(self), local_addr=(self.host, self.port))
        self._udp = udp
        self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port, reuse_address=True)
        return self

    def reply(self, data: bytes, *, over_tcp: bool) -> bytes | None:
        if self.mode == "blackhole":
            return None
        return fake_answer(data, self.mode, over_tcp=over_tcp, address=self.address)

    def delay_of(self, data: bytes) -> float:
        """Seconds before the UDP reply to `data`."""
        return self.delay

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            data = await reader.readexactly(length)
            self.tcp_queries += 1
            reply = self.reply(data, over_tcp=True)
            if reply is not None:
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client gave up on us: fine for a fake
        finally:
            writer.close()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()


class _FakeUdp(asyncio.DatagramProtocol):
    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.fake.udp_queries += 1
        reply = self.fake.reply(data, over_tcp=False)
        if reply is not None and self.transport is not None:
            asyncio.get_running_loop().call_later(self.fake.delay_of(data), self.transport.sendto, reply, addr)
