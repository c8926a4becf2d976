"""TCP ports published on [::1] (and connections to ::1 of ports published on [::]): relayed in user space, as
docker-proxy does.

IPv6 has no `route_localnet`: the kernel drops packets from ::1 on any interface but `lo`, so no DNAT can take a
connection to [::1]:P to a workload (IPv4's 127.0.0.1 can, and does, in the firewall). The reservation socket
hypr holds for the port anyway is the listener here: a duplicate of it is served on the event loop, and each
connection is relayed to the workload's address on its gateway network. UDP on [::1] is refused at create time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import socket

log = logging.getLogger(__name__)
Key = tuple[str, int, str]  # (host ip, host port, protocol), as reconcile/ports.py keys its reservations
CONNECT_TIMEOUT = 5.0  # seconds to reach the workload before the client's connection is closed
HANDOVER_TIMEOUT = 10.0
CHUNK = 65536
HIGH_FD = 1024  # as for held ports: low descriptors stay free for libraries that select()


class LoopbackProxy:
    """`serve`/`stop`/`retarget` are called from the daemon's worker thread; relaying runs on `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.servers: dict[Key, asyncio.Server] = {}
        self.listeners: dict[Key, socket.socket] = {}  # the held socket each server serves a duplicate of
        self.targets: dict[Key, tuple[str, int]] = {}  # read by relays on the loop; replaced by one assignment

    def retarget(self, key: Key, target: tuple[str, int] | None) -> None:
        if target is None:
            self.targets.pop(key, None)
        else:
            self.targets[key] = target

    def serve(self, key: Key, listener: socket.socket) -> None:
        """Relay connections accepted on (a duplicate of) `listener`, the held reservation socket."""
        if key in self.servers:
            return
        fd = fcntl.fcntl(listener.fileno(), fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
        sock = socket.socket(listener.family, listener.type, listener.proto, fileno=fd)
        sock.setblocking(False)
        future = asyncio.run_coroutine_threadsafe(self._start(key, sock), self.loop)
        self.servers[key] = future.result(timeout=HANDOVER_TIMEOUT)
        self.listeners[key] = listener

    def listener(self, key: Key) -> socket.socket | None:
        return self.listeners.get(key)

    def stop(self, key: Key) -> None:
        """Stop listening before returning: the port must be free for the next `bind` at once."""
        server = self.servers.pop(key, None)
        self.targets.pop(key, None)
        self.listeners.pop(key, None)
        if server is not None:
            asyncio.run_coroutine_threadsafe(_close(server), self.loop).result(timeout=HANDOVER_TIMEOUT)

    def keys(self) -> set[Key]:
        return set(self.servers)

    async def _start(self, key: Key, sock: socket.socket) -> asyncio.Server:
        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._relay(key, reader, writer)

        return await asyncio.start_server(relay, sock=sock)

    async def _relay(self, key: Key, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = self.targets.get(key)
        try:
            if target is None:
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*target), CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                log.debug("proxy [::1]:%d (%s) -> %s:%d: %s", key[1], key[0], *target, exc)
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()


async def _close(server: asyncio.Server) -> None:
    server.close()  # the listener only: relays in progress finish on their own


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on (half-close), so request/response protocols that shut down their
    sending side keep working."""
    with contextlib.suppress(OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
