"""The real server on loopback: dnspython as the client, fake upstreams on other 127.x addresses, and a fuzz
run of at least 100,000 random and mutated packets after which the server must still answer."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import random
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from hypr.dns import DnsServer, build_records
from hypr.dns import records as records_module
from hypr.dns import server as server_module
from hypr.dns import upstream as upstream_module
from hypr.dns.records import Found, Outcome, Records, Scope
from hypr.dns.testing import FakeUpstream, LoopThread, Mode, fake_answer
from hypr.models import Endpoint, Network, Resolver, Snapshot, Workload

PORT = 41003
# One /16 of loopback per test process, so parallel runs (and other engineers' tests) never collide.
BASE = f"127.{200 + os.getpid() % 50}"


def addr(last: str) -> str:
    return f"{BASE}.{last}"


def workload(name: str) -> Workload:
    return Workload(id=hashlib.sha256(name.encode()).hexdigest(), name=name, image="img", state="running")


def endpoint(w: Workload, network: Network, ip: str, aliases: tuple[str, ...] = ()) -> Endpoint:
    return Endpoint(w.id + network.id[:4], w.id, network.id, IPv4Address(ip), "02:00:00:00:00:01", "hv", 0, aliases)


def snapshot(web_name: str = "web") -> Snapshot:
    app = Network("a" * 64, "app", "vbr1", IPv4Network(addr("1.0/24")), IPv4Address(addr("1.1")))
    closed = Network("c" * 64, "closed", "vbr2", IPv4Network(addr("2.0/24")), IPv4Address(addr("2.1")), internal=True)
    web, api1, api2, vault = workload(web_name), workload("api1"), workload("api2"), workload("vault")
    return Snapshot(
        networks=(app, closed),
        workloads=(web, api1, api2, vault),
        endpoints=(
            endpoint(web, app, addr("1.2")),
            endpoint(api1, app, addr("1.3"), ("api",)),
            endpoint(api2, app, addr("1.4"), ("api",)),
            endpoint(vault, closed, addr("2.2")),
        ),
    )


LISTEN = addr("0.53")
HOST = addr("0.9")  # not an endpoint: asks as the host
PEER = addr("1.3")  # api1, on "app"
VAULT = addr("2.2")  # only on the internal network


@dataclass
class Env:
    loop: LoopThread
    server: DnsServer
    fakes: list[FakeUpstream]  # closed when the test ends

    def upstream(self, last: str, mode: Mode, answer: str = "192.0.2.10", delay: float = 0.0) -> FakeUpstream:
        fake = self.loop.run(FakeUpstream(addr(last), 5300, mode, answer, delay=delay).start())
        self.fakes.append(fake)
        return fake

    def upstreams(self, *fakes: FakeUpstream | tuple[str, int]) -> None:
        pairs = [(f.host, f.port) if isinstance(f, FakeUpstream) else f for f in fakes]
        self.loop.run(self.server.set_upstreams(pairs))


@pytest.fixture(params=[False, True], ids=["asyncio", "uvloop"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    with LoopThread(use_uvloop=request.param) as loop:
        server = DnsServer()
        fakes: list[FakeUpstream] = []
        try:
            loop.run(server.set_records(build_records(snapshot())))
            loop.run(server.set_listen_addresses({IPv4Address(LISTEN)}, PORT))
            yield Env(loop, server, fakes)
        finally:
            loop.run(server.close())
            for fake in fakes:
                loop.run(fake.close())
        assert loop.errors == []


def ask(
    name: str, rdtype: str = "A", *, source: str = HOST, tcp: bool = False, timeout: float = 3, **kw: object
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, LISTEN, port=PORT, timeout=timeout, source=source)


def addresses(reply: dns.message.Message) -> list[str]:
    return [r.address for rrset in reply.answer for r in rrset]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_local_answers(env: Env, tcp: bool) -> None:
    reply = ask("Web.HYPR.", tcp=tcp)
    assert addresses(reply) == [addr("1.2")] and reply.flags & dns.flags.AA
    assert str(reply.question[0].name) == "Web.HYPR."  # the question is echoed as sent (0x20 case)
    assert reply.answer[0].ttl == 5
    assert ask("nope.hypr", tcp=tcp).rcode() == dns.rcode.NXDOMAIN
    nodata = ask("web.hypr", "AAAA", tcp=tcp)
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    ptr = ask(IPv4Address(addr("1.2")).reverse_pointer + ".", "PTR", tcp=tcp)
    assert [str(r.target) for rrset in ptr.answer for r in rrset] == ["web.hypr."]
    assert addresses(ask("web", source=PEER, tcp=tcp)) == [addr("1.2")]
    edns = ask("web.hypr", use_edns=0, payload=1232, tcp=tcp)
    assert edns.edns == 0 and addresses(edns) == [addr("1.2")]


def test_a_queued_burst_from_many_askers_gets_each_its_own_answer(env: Env) -> None:
    """More queries than one batch reads (hypr.dns.batch.SLOTS), queued while the loop is busy, from askers of
    three scopes: every query is answered once, to its sender, with what that asker gets when it asks alone."""
    names = ("web", "web.hypr", "api1.hypr", "vault")
    alone = {(source, name): addresses(ask(name, source=source)) for source in (HOST, PEER, VAULT) for name in names}
    assert len({tuple(v) for v in alone.values()}) > 2  # the scopes do differ
    socks = {}
    for source in (HOST, PEER, VAULT):
        socks[source] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        socks[source].bind((source, 0))
        socks[source].settimeout(3)
    sent = [(list(socks)[n % 3], names[n % 4]) for n in range(150)]
    try:
        env.loop.loop.call_soon_threadsafe(time.sleep, 0.3)  # the server's loop is busy: the burst queues
        for n, (source, name) in enumerate(sent):
            query = dns.message.make_query(name, "A")
            query.id = n
            socks[source].sendto(query.to_wire(), (LISTEN, PORT))
        replies = {}
        for source, _ in sent:
            reply = dns.message.from_wire(socks[source].recv(4096))
            replies[reply.id] = (source, addresses(reply))
        assert replies == {n: (source, alone[source, name]) for n, (source, name) in enumerate(sent)}
    finally:
        for sock in socks.values():
            sock.close()


def test_a_query_longer_than_a_batch_slot_is_dropped_and_the_rest_answered(env: Env) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(1)
        small = dns.message.make_query("web.hypr", "A")
        small.id = 2
        big = b"\0\1" + small.to_wire()[2:] + b"\0" * 5000  # a question, then more than a slot holds
        env.loop.loop.call_soon_threadsafe(time.sleep, 0.2)  # both in one burst
        sock.sendto(big, (LISTEN, PORT))
        sock.sendto(small.to_wire(), (LISTEN, PORT))
        reply = dns.message.from_wire(sock.recv(4096))
        assert reply.id == 2 and addresses(reply) == [addr("1.2")]
        with pytest.raises(TimeoutError):
            sock.recv(4096)


def test_alias_round_robin_rotates_per_reply(env: Env) -> None:
    orders = {tuple(addresses(ask("api", source=PEER))) for _ in range(4)}
    assert orders == {(addr("1.3"), addr("1.4")), (addr("1.4"), addr("1.3"))}


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_round_robin_rotates_when_every_query_differs(env: Env, tcp: bool) -> None:
    # dig sends a fresh EDNS cookie per run and some stubs randomise letter case: the bytes differ every time,
    # yet the order must still rotate (it used to restart at the first address for every new packet).
    first = []
    for i in range(4):
        cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, os.urandom(8))
        name = "API" if i % 2 else "api"
        reply = ask(name, source=PEER, tcp=tcp, use_edns=0, options=[cookie])
        first.append(addresses(reply)[0])
    assert first == [addr("1.3"), addr("1.4"), addr("1.3"), addr("1.4")]


def test_new_records_apply_at_once_without_rebinding(env: Env) -> None:
    assert addresses(ask("web.hypr")) == [addr("1.2")]
    listening = env.server.listening()
    env.loop.run(env.server.set_records(build_records(snapshot(web_name="www"))))
    assert ask("web.hypr").rcode() == dns.rcode.NXDOMAIN
    assert addresses(ask("www.hypr")) == [addr("1.2")]
    assert env.server.listening() == listening


def test_forwarding_and_cache(env: Env) -> None:
    fake = env.upstream("9.1", "answer")
    try:
        env.upstreams(fake)
        for _ in range(3):
            reply = ask("Example.com.")
            assert addresses(reply) == ["192.0.2.10"] and str(reply.question[0].name) == "Example.com."
        assert addresses(ask("web.app", source=PEER)) == [addr("1.2")]
        assert fake.udp_queries == 1  # the next two came from the cache
        assert addresses(ask("other.example.org", tcp=True)) == ["192.0.2.10"]
    finally:
        env.loop.run(fake.close())


def test_cached_forwarded_replies_replayed_with_ttls_counting_down(env: Env) -> None:
    # Repeats of one query are replayed from the server's reply table; the bytes must still follow the cache:
    # the client's ID (dnspython checks it), TTLs that count down, and a new upstream list drops them.
    fake, other = (
        env.upstream("9.7", "answer"),
        env.loop.run(FakeUpstream(addr("9.8"), 5300, "answer", "192.0.2.99").start()),
    )
    try:
        env.upstreams(fake)
        ttls: list[int] = []
        deadline = time.monotonic() + 3
        while not ttls or ttls[-1] == 60:
            assert time.monotonic() < deadline, f"the TTL never counted down: {ttls[-5:]}"
            reply = ask("replay.example.")
            assert addresses(reply) == ["192.0.2.10"]
            ttls.append(reply.answer[0].ttl)
        assert ttls[-1] == 59 and fake.udp_queries == 1
        env.upstreams(other)
        assert addresses(ask("replay.example.")) == ["192.0.2.99"]
    finally:
        env.loop.run(fake.close())
        env.loop.run(other.close())


def test_first_upstream_dead_fails_over_quickly(env: Env) -> None:
    dead, alive = env.upstream("9.2", "blackhole"), env.upstream("9.3", "answer")
    try:
        env.upstreams(dead, alive)
        for name in ("one.example.", "two.example."):
            started = time.monotonic()
            assert addresses(ask(name)) == ["192.0.2.10"]
            assert time.monotonic() - started < 0.8
        assert dead.udp_queries == 1  # the dead server is tried last for a while
    finally:
        env.loop.run(dead.close())
        env.loop.run(alive.close())


@pytest.mark.parametrize("others", [(), ("blackhole",), ("servfail",)])
def test_a_slow_upstream_still_answers(env: Env, others: tuple[Mode, ...]) -> None:
    """A server slower than the hedge (a cold name at a recursive resolver, a resolver across a VPN) is not given
    up on: the next servers are asked too, and the first good answer wins, within the deadline."""
    slow = env.upstream("9.8", "answer", "192.0.2.77", delay=1.2)
    rest = [env.upstream(f"9.{9 + k}", mode) for k, mode in enumerate(others)]
    env.upstreams(slow, *rest)
    started = time.monotonic()
    assert addresses(ask("far.example.", timeout=5)) == ["192.0.2.77"]
    assert 1.1 < time.monotonic() - started < upstream_module.FORWARD_DEADLINE
    assert [f.udp_queries for f in (slow, *rest)] == [1] * (1 + len(rest))
    assert addresses(ask("far.example.")) == ["192.0.2.77"]  # then from the cache


def test_a_failing_server_moves_on_at_once_while_a_silent_one_keeps_its_chance(env: Env) -> None:
    fakes = [env.upstream("9.2", "blackhole"), env.upstream("9.5", "servfail"), env.upstream("9.3", "answer")]
    env.upstreams(*fakes)
    started = time.monotonic()
    assert addresses(ask("hedge.example.")) == ["192.0.2.10"]
    assert time.monotonic() - started < upstream_module.HEDGE + 0.3  # one hedge, not one per server asked
    assert [f.udp_queries for f in fakes] == [1, 1, 1]


def test_a_quick_negative_answer_does_not_beat_the_slower_server_listed_first(env: Env) -> None:
    """Split horizon: the first server knows the name but is slow, the second says NXDOMAIN at once."""
    inside, outside = env.upstream("9.8", "answer", "192.0.2.77", delay=0.7), env.upstream("9.9", "nxdomain")
    env.upstreams(inside, outside)
    for name in ("intranet.corp.", "wiki.corp."):
        assert addresses(ask(name)) == ["192.0.2.77"], name
    assert outside.udp_queries == 2  # asked after the hedge both times: the slow one answered, so stays first


def test_a_negative_answer_is_given_at_the_deadline_when_the_first_server_is_dead(env: Env) -> None:
    dead, outside = env.upstream("9.2", "blackhole"), env.upstream("9.9", "nxdomain")
    env.upstreams(dead, outside)
    started = time.monotonic()
    assert ask("gone.example.", timeout=5).rcode() == dns.rcode.NXDOMAIN
    assert time.monotonic() - started > upstream_module.FORWARD_DEADLINE - 0.1
    started = time.monotonic()  # the dead one is asked last now: the negative answer comes at once
    assert ask("gone2.example.").rcode() == dns.rcode.NXDOMAIN
    assert time.monotonic() - started < upstream_module.HEDGE
    assert dead.udp_queries == 1


def test_servfail_only_when_all_fail(env: Env) -> None:
    bad = [env.upstream("9.4", "blackhole"), env.upstream("9.5", "servfail"), env.upstream("9.6", "refused")]
    try:
        env.upstreams(*bad, (addr("9.7"), 5300))  # nothing listens there: ICMP refused, instant failover
        started = time.monotonic()
        assert ask("example.net", timeout=5).rcode() == dns.rcode.SERVFAIL
        # The blackhole keeps its chance until the deadline; the others failed at once.
        assert (
            upstream_module.FORWARD_DEADLINE - 0.1 < time.monotonic() - started < upstream_module.FORWARD_DEADLINE + 1
        )
        assert [b.udp_queries for b in bad] == [1, 1, 1]
    finally:
        for fake in bad:
            env.loop.run(fake.close())


def test_truncated_upstream_answer_is_retried_over_tcp(env: Env) -> None:
    fake = env.upstream("9.8", "truncate")
    try:
        env.upstreams(fake)
        reply = ask("big.example")
        assert addresses(reply) == ["192.0.2.10"] and not reply.flags & dns.flags.TC
        assert (fake.udp_queries, fake.tcp_queries) == (1, 1)
    finally:
        env.loop.run(fake.close())


@pytest.mark.parametrize("payload", [4096, None])
def test_large_edns_answer_passes_through_intact(env: Env, payload: int | None) -> None:
    fake = env.upstream("9.9", "big")
    try:
        env.upstreams(fake)
        kw: dict[str, object] = {"use_edns": 0, "payload": payload} if payload else {}
        query = dns.message.make_query("txt.example.", "TXT", **kw)  # type: ignore[arg-type]
        sent = query.to_wire()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((HOST, 0))
            sock.settimeout(3)
            sock.sendto(sent, (LISTEN, PORT))
            raw = sock.recv(65535)
        finally:
            sock.close()
        if payload:
            assert len(raw) > 2000 and raw == fake_answer(sent, "big", over_tcp=False)  # byte for byte
        else:  # a client without EDNS gets TC over UDP, then the whole answer over TCP
            assert dns.message.from_wire(raw).flags & dns.flags.TC
            full = dns.query.tcp(query, LISTEN, port=PORT, timeout=3, source=HOST)
            assert len(full.answer[0]) == 40
    finally:
        env.loop.run(fake.close())


def test_internal_askers_are_not_forwarded(env: Env) -> None:
    fake = env.upstream("9.10", "answer")
    try:
        env.upstreams(fake)
        assert ask("example.com", source=VAULT).rcode() == dns.rcode.NXDOMAIN
        assert addresses(ask("web.hypr", source=VAULT)) == [addr("1.2")]
        assert fake.udp_queries == 0
    finally:
        env.loop.run(fake.close())


def test_unknown_askers_get_the_network_of_the_gateway_they_ask_and_nothing_leaks(env: Env) -> None:
    """An address with no endpoint asking a network's gateway asks as a member of that network (UDP and TCP); the
    host (asking from the gateway address itself) gets no bare names; neither has a bare name forwarded."""
    fake = env.upstream("9.11", "answer")
    gateway, newcomer = addr("1.1"), addr("1.77")
    try:
        env.upstreams(fake)
        env.loop.run(env.server.set_listen_addresses({IPv4Address(LISTEN), IPv4Address(gateway)}, PORT))

        def ask_gw(name: str, source: str, *, tcp: bool = False) -> dns.message.Message:
            send = dns.query.tcp if tcp else dns.query.udp
            return send(dns.message.make_query(name, "A"), gateway, port=PORT, timeout=3, source=source)

        for tcp in (False, True):
            assert addresses(ask_gw("web", newcomer, tcp=tcp)) == [addr("1.2")]
            assert sorted(addresses(ask_gw("api", newcomer, tcp=tcp))) == [addr("1.3"), addr("1.4")]
            assert ask_gw("vault", newcomer, tcp=tcp).rcode() == dns.rcode.NXDOMAIN  # not on app
            assert ask_gw("nope", newcomer, tcp=tcp).rcode() == dns.rcode.NXDOMAIN
            assert ask_gw("web", gateway, tcp=tcp).rcode() == dns.rcode.NXDOMAIN  # the host
            assert ask_gw("web", HOST, tcp=tcp).rcode() == dns.rcode.NXDOMAIN  # outside app's subnet: the host
            assert ask("web", source=newcomer, tcp=tcp).rcode() == dns.rcode.NXDOMAIN  # LISTEN is no gateway
        assert addresses(ask_gw("outside.example", newcomer)) == ["192.0.2.10"]  # dotted: forwarded
        assert fake.udp_queries == 1
        # Once the newcomer is an endpoint (here: of the internal network only), its own networks count.
        registered = snapshot()
        vault2 = workload("vault2")
        closed = registered.networks[1]
        registered = Snapshot(
            networks=registered.networks,
            workloads=(*registered.workloads, vault2),
            endpoints=(*registered.endpoints, endpoint(vault2, closed, newcomer)),
        )
        env.loop.run(env.server.set_records(build_records(registered)))
        assert ask_gw("web", newcomer).rcode() == dns.rcode.NXDOMAIN
        assert addresses(ask_gw("vault", newcomer)) == [addr("2.2")]
        assert ask_gw("outside2.example", newcomer).rcode() == dns.rcode.NXDOMAIN  # internal only now
        assert fake.udp_queries == 1
    finally:
        env.loop.run(fake.close())


def test_listeners_follow_the_wanted_set(env: Env) -> None:
    second = IPv4Address(addr("0.54"))
    absent = IPv4Address("192.0.2.1")  # TEST-NET-1: not on this host, so binding waits in the background
    env.loop.run(env.server.set_listen_addresses({second, absent}, PORT))
    assert env.server.listening() == {(second, PORT)}
    reply = dns.query.udp(dns.message.make_query("web.hypr", "A"), str(second), port=PORT, timeout=3)
    assert addresses(reply) == [addr("1.2")]
    tcp = dns.query.tcp(dns.message.make_query("web.hypr", "A"), str(second), port=PORT, timeout=3)
    assert addresses(tcp) == [addr("1.2")]
    with pytest.raises(ConnectionRefusedError):  # the old address is closed
        socket.create_connection((LISTEN, PORT), timeout=3).close()
    env.loop.run(env.server.set_listen_addresses(set(), PORT))
    assert env.server.listening() == set()


# -- fuzz ------------------------------------------------------------------------------------------------------

FUZZ_LISTEN = f"{BASE}.0.77"
PACKETS = 100_000
BATCH = 200  # then a probe: pacing keeps the fuzz inside the socket buffer, so the server really parses it
SEEDS = [
    dns.message.make_query(name, rdtype, **kw).to_wire()  # type: ignore[arg-type]
    for name, rdtype, kw in [
        ("web.hypr", "A", {}),
        ("api", "A", {}),
        ("example.com", "A", {"use_edns": 0, "payload": 4096}),
        ("2.1.200.127.in-addr.arpa", "PTR", {}),
        ("web.hypr", "AAAA", {"use_edns": 0, "want_dnssec": True}),
        ("a.b.c.d.e.f.hypr", "TXT", {}),
    ]
]


def mutate(rng: random.Random) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return rng.randbytes(rng.randrange(0, 300))
    packet = bytearray(rng.choice(SEEDS))
    if choice == 1:
        for _ in range(rng.randrange(1, 5)):
            packet[rng.randrange(len(packet))] = rng.randrange(256)
    elif choice == 2:
        del packet[rng.randrange(len(packet)) :]
    elif choice == 3:
        packet += rng.randbytes(rng.randrange(1, 64))
    else:  # header kept (plausible counts/flags), body random
        packet[12:] = rng.randbytes(rng.randrange(0, 80))
    return bytes(packet)


def probe_until(sock: socket.socket, ident: int, deadline: float) -> None:
    """Ask web.hypr and read until its reply comes back; replies to the fuzz are drained on the way. The probe is
    re-sent every 0.5 s, as a stub resolver would: on a loaded machine one UDP reply may be dropped."""
    query = dns.message.make_query("web.hypr", "A", id=ident)
    resend = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= resend:
            sock.sendto(query.to_wire(), (FUZZ_LISTEN, PORT))
            resend = time.monotonic() + 0.5
        sock.settimeout(max(0.01, min(resend, deadline) - time.monotonic()))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            continue
        if len(data) >= 2 and struct.unpack_from("!H", data)[0] == ident:
            try:
                reply = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue  # a reply to a mangled fuzz packet that happened to carry the same ID
            if reply.question and reply.question[0] == query.question[0]:
                assert addresses(reply) == [f"{BASE}.1.2"]
                return
    raise AssertionError(f"the server stopped answering (probe {ident})")


def test_fuzz_then_still_answers() -> None:
    rng = random.Random(int(os.environ.get("HYPR_FUZZ_SEED", "5")))
    started = time.monotonic()
    with LoopThread() as loop:
        server = DnsServer()
        dead = loop.run(FakeUpstream(f"{BASE}.0.78", 5300, "blackhole").start())
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        try:
            loop.run(server.set_upstreams([(dead.host, dead.port)]))
            loop.run(server.set_records(build_records(snapshot())))
            loop.run(server.set_listen_addresses({IPv4Address(FUZZ_LISTEN)}, PORT))
            clients[0].bind((f"{BASE}.0.9", 0))  # the host
            clients[1].bind((f"{BASE}.1.3", 0))  # a workload on "app"
            for sent in range(0, PACKETS, BATCH):
                sock = clients[sent // BATCH % 2]
                for _ in range(BATCH):
                    sock.sendto(mutate(rng), (FUZZ_LISTEN, PORT))
                probe_until(sock, (sent // BATCH) % 65536, time.monotonic() + 3)
            fuzz_tcp(rng)
            probe_until(clients[0], 4242, time.monotonic() + 3)
        finally:
            for sock in clients:
                sock.close()
            loop.run(server.close())
            loop.run(dead.close())
        assert loop.errors == []
    assert time.monotonic() - started < 30


def fuzz_tcp(rng: random.Random) -> None:
    """Garbage over TCP: bad lengths, short frames, random frames; each connection then dropped."""
    for _ in range(50):
        with socket.create_connection((FUZZ_LISTEN, PORT), timeout=3) as conn:
            for _ in range(20):
                body = mutate(rng)
                length = rng.choice([len(body), len(body) + 5, 0, 65535])
                conn.sendall(struct.pack("!H", length) + body)
    reply = dns.query.tcp(dns.message.make_query("web.hypr", "A"), FUZZ_LISTEN, port=PORT, timeout=3)
    assert addresses(reply) == [f"{BASE}.1.2"]


# -- --dns: a workload's own upstreams ---------------------------------------------------------------------------

MINE = addr("1.30")  # a workload on "app" with its own --dns servers


def with_own_dns(*servers: str) -> Snapshot:
    base = snapshot()
    mine = dataclasses.replace(workload("mine"), resolver=Resolver(dns=servers))
    return Snapshot(
        networks=base.networks,
        workloads=(*base.workloads, mine),
        endpoints=(*base.endpoints, endpoint(mine, base.networks[0], MINE)),
    )


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_own_dns_servers_get_that_workloads_outside_names(env: Env, monkeypatch: pytest.MonkeyPatch, tcp: bool) -> None:
    monkeypatch.setattr(records_module, "UPSTREAM_PORT", 5300)  # --dns holds addresses; the fakes are on 5300
    default = env.upstream("9.20", "answer")
    own = env.loop.run(FakeUpstream(addr("9.21"), 5300, "answer", "192.0.2.77").start())
    dead = env.upstream("9.22", "blackhole")
    try:
        env.upstreams(default)
        env.loop.run(env.server.set_records(build_records(with_own_dns(addr("9.21")))))
        for _ in range(3):  # the first from upstream, the rest from the cache and the reply table: never mixed
            assert addresses(ask("Own.example.", source=MINE, tcp=tcp)) == ["192.0.2.77"]
            assert addresses(ask("own.example.", source=PEER, tcp=tcp)) == ["192.0.2.10"]
            assert addresses(ask("own.example.", source=HOST, tcp=tcp)) == ["192.0.2.10"]
        assert own.udp_queries + own.tcp_queries == 1 and default.udp_queries + default.tcp_queries == 1
        assert addresses(ask("web", source=MINE, tcp=tcp)) == [addr("1.2")]  # local names stay local
        assert addresses(ask("only-mine.example.", source=MINE, tcp=tcp)) == ["192.0.2.77"]
        assert default.udp_queries + default.tcp_queries == 1  # the default upstream never saw its names
        # failover between its own servers, as between the daemon's: the dead one costs one timeout
        env.loop.run(env.server.set_records(build_records(with_own_dns(addr("9.22"), addr("9.21")))))
        started = time.monotonic()
        assert addresses(ask("failover.example.", source=MINE, tcp=tcp)) == ["192.0.2.77"]
        assert time.monotonic() - started < 0.8 and dead.udp_queries == 1
        assert addresses(ask("failover2.example.", source=MINE, tcp=tcp)) == ["192.0.2.77"]
        assert dead.udp_queries == 1  # tried last for a while
    finally:
        for fake in (default, own, dead):
            env.loop.run(fake.close())


# -- TCP limits (issue 13 item 11) ------------------------------------------------------------------------------


def tcp_connect(source: str) -> socket.socket:
    conn = socket.create_connection((LISTEN, PORT), timeout=3, source_address=(source, 0))
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # no TIME_WAIT pile-up
    return conn


def closed_by_server(conn: socket.socket, within: float) -> bool:
    conn.settimeout(within)
    try:
        return conn.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def tcp_ask(conn: socket.socket, name: str) -> dns.message.Message:
    conn.settimeout(3)
    query = dns.message.make_query(name, "A")
    dns.query.send_tcp(conn, query)
    reply, _ = dns.query.receive_tcp(conn, time.time() + 3)
    return reply


def test_tcp_clients_that_send_nothing_or_too_slowly_are_closed(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "TCP_IDLE", 0.5)
    idle, slow, busy = tcp_connect(HOST), tcp_connect(HOST), tcp_connect(PEER)
    try:
        slow.sendall(b"\x00")  # half a length prefix, then nothing (slow-loris)
        assert addresses(tcp_ask(busy, "web.hypr")) == [addr("1.2")]
        for _ in range(3):  # a client that keeps asking keeps its connection
            time.sleep(0.3)
            assert addresses(tcp_ask(busy, "web.hypr")) == [addr("1.2")]
        assert closed_by_server(idle, 1.0) and closed_by_server(slow, 1.0)
        assert closed_by_server(busy, 1.5)  # ... until it stops
    finally:
        for conn in (idle, slow, busy):
            conn.close()


def test_one_source_cannot_hold_more_than_its_share(env: Env) -> None:
    """Connections over the per-source cap close that source's oldest idle one; other askers never notice."""
    held = [tcp_connect(HOST) for _ in range(server_module.MAX_TCP_PER_SOURCE + 10)]
    try:
        fresh = held[-1]
        assert addresses(tcp_ask(fresh, "web.hypr")) == [addr("1.2")]
        assert all(closed_by_server(conn, 1.0) for conn in held[:10])  # the oldest made room
        assert not any(closed_by_server(conn, 0.05) for conn in held[10:])
        assert len(env.server._connections) == server_module.MAX_TCP_PER_SOURCE
        other = tcp_connect(PEER)
        assert addresses(tcp_ask(other, "web")) == [addr("1.2")]
        other.close()
    finally:
        for conn in held:
            conn.close()


def test_many_idle_clients_never_lock_tcp_out(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the global cap a newcomer closes the connection idle longest; a connection waiting for an upstream is
    never closed for it, and one that cannot be made room for is refused at once (no hang)."""
    monkeypatch.setattr(server_module, "MAX_TCP_CLIENTS", 12)
    monkeypatch.setattr(server_module, "MAX_TCP_PER_SOURCE", 4)
    dead = env.upstream("9.30", "blackhole")
    env.upstreams(dead)
    sources = [addr(f"0.{100 + i}") for i in range(6)]
    held: list[socket.socket] = []
    try:
        waiting = tcp_connect(sources[0])  # asks a name the dead upstream never answers: busy for ~0.4 s
        dns.query.send_tcp(waiting, dns.message.make_query("slow.example.", "A"))
        time.sleep(0.05)
        held = [tcp_connect(source) for source in sources for _ in range(4)]
        time.sleep(0.05)
        assert len(env.server._connections) == 12
        for asker in (HOST, PEER):
            started = time.monotonic()
            conn = tcp_connect(asker)
            assert addresses(tcp_ask(conn, "web.hypr")) == [addr("1.2")]
            assert time.monotonic() - started < 0.5
            conn.close()
        reply, _ = dns.query.receive_tcp(waiting, time.time() + 3)  # still there, answered SERVFAIL
        assert reply.rcode() == dns.rcode.SERVFAIL
        waiting.close()
    finally:
        for conn in held:
            conn.close()
        env.loop.run(dead.close())


def test_a_client_that_never_reads_its_replies_is_closed(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "TCP_WRITE", 0.3)
    big = env.upstream("9.31", "big")
    env.upstreams(big)
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.bind((HOST, 0))
        conn.connect((LISTEN, PORT))
        query = dns.message.make_query("big.example.", "TXT").to_wire()
        conn.settimeout(5)
        sent = 0
        with contextlib.suppress(OSError):  # the server closes on us while we are still sending
            for _ in range(4000):  # ~12 MB of replies asked for and never read
                conn.sendall(struct.pack("!H", len(query)) + query)
                sent += 1
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and env.server._connections:
            time.sleep(0.05)
        assert not env.server._connections, f"still served after {sent} unread replies"
    finally:
        conn.close()
        env.loop.run(big.close())


# -- no input makes the server raise (issue 13 item 10) -------------------------------------------------------------


def test_an_unforeseen_failure_is_servfail_for_that_query_only_and_logged_once(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = server_module.lookup_scoped

    def failing(records: Records, scope: Scope, qname: str, qtype: str) -> Found | Outcome:
        if qname.startswith("boom"):
            raise RuntimeError("a bug")
        return real(records, scope, qname, qtype)

    monkeypatch.setattr(server_module, "lookup_scoped", failing)
    caplog.set_level(logging.DEBUG, logger="hypr.dns.server")
    for i in range(200):
        assert ask(f"boom{i}.hypr", tcp=i % 10 == 0).rcode() == dns.rcode.SERVFAIL
        if i % 50 == 0:
            assert addresses(ask("web.hypr")) == [addr("1.2")]
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None, [r.getMessage() for r in failures]
    assert env.server.faults.count == 200
