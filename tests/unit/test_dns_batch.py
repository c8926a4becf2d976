"""recvmmsg/sendmmsg batches (hypr.dns.batch) on real loopback sockets, both families: every datagram of a burst
comes back to its own sender, skipped slots stay unanswered, and one reply the kernel refuses loses only itself."""

from __future__ import annotations

import errno
import os
import select
import socket
from collections.abc import Iterator

import pytest

from hypr.dns import batch

FAMILIES = {"v4": (socket.AF_INET, "127.0.0.1"), "v6": (socket.AF_INET6, "::1")}


@pytest.fixture(params=sorted(FAMILIES))
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    family, host = FAMILIES[request.param]
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))
    server.setblocking(False)
    clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(5)]
    for c in clients:
        c.bind((host, 0))
        c.settimeout(2)
    try:
        yield server, clients
    finally:
        for s in (server, *clients):
            s.close()


def echo(
    io: batch.Batch, server: socket.socket, count: int, skip: frozenset[int] = frozenset()
) -> list[tuple[int, int]]:
    """Each received datagram back to its sender, reversed, except the slots in `skip`."""
    slots = []
    for i in range(count):
        at = i * batch.SLOT
        reply = io.data[at : at + io.lengths[i * 16 + 14]].tobytes()[::-1]
        io.data[at : at + len(reply)] = reply
        io.iov_lengths[2 * i + 1] = len(reply)
        if i not in skip:
            slots.append(i)
    return io.send(server.fileno(), slots)


def test_a_burst_is_read_at_once_and_each_reply_reaches_its_sender(
    pair: tuple[socket.socket, list[socket.socket]],
) -> None:
    server, clients = pair
    io = batch.Batch()
    sent = []  # (sender, payload), in the order sent: on loopback, the order received
    for n in range(40):  # a different length and sender for each
        client = clients[n % len(clients)]
        sent.append((client, os.urandom(1 + n * 37 % 700)))
        client.sendto(sent[-1][1], server.getsockname())
    select.select([server], [], [], 2)
    assert io.receive(server.fileno()) == 40
    assert [io.source(i, server.family)[:2] for i in range(40)] == [c.getsockname()[:2] for c, _ in sent]
    assert echo(io, server, 40, skip=frozenset({3, 17})) == []
    for client in clients:
        client.settimeout(0.3)
        want = [p[::-1] for n, (c, p) in enumerate(sent) if c is client and n not in (3, 17)]
        assert [client.recv(4096) for _ in want] == want
        with pytest.raises(TimeoutError):
            client.recv(4096)
    assert io.receive(server.fileno()) == 0  # nothing left: no blocking, no error


def test_more_than_a_batch_is_read_in_turns_and_buffers_are_reset(
    pair: tuple[socket.socket, list[socket.socket]],
) -> None:
    server, clients = pair
    io = batch.Batch()
    for n in range(batch.SLOTS + 10):
        clients[0].sendto(b"q" * (300 if n % 2 else 3), server.getsockname())
    select.select([server], [], [], 2)
    first = io.receive(server.fileno())
    assert first == batch.SLOTS
    echo(io, server, first)
    second = io.receive(server.fileno())
    assert second == 10
    assert [io.lengths[i * 16 + 14] for i in range(second)] == [3 if n % 2 == 0 else 300 for n in range(64, 74)]


def test_a_reply_the_kernel_refuses_loses_only_itself(pair: tuple[socket.socket, list[socket.socket]]) -> None:
    server, clients = pair
    io = batch.Batch()
    for n in range(3):
        clients[n].sendto(b"abc%d" % n, server.getsockname())
    select.select([server], [], [], 2)
    assert io.receive(server.fileno()) == 3
    io.names[batch.NAME + 2 : batch.NAME + 4] = b"\0\0"  # slot 1's port 0: sendto(2) says EINVAL
    assert echo(io, server, 3) == [(1, errno.EINVAL)]
    assert clients[0].recv(100) == b"0cba"
    assert clients[2].recv(100) == b"2cba"
    clients[1].settimeout(0.2)
    with pytest.raises(TimeoutError):
        clients[1].recv(100)
