"""Host-port reservations: hypr holds a real socket for every published host port.

Holding the socket is what makes a clash fail at once, whichever side comes second: a workload cannot publish a port
a host process listens on, and a host process cannot later take a published port. DNAT happens before socket
lookup, so the held socket never sees the forwarded traffic.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import socket
from collections.abc import Iterable
from typing import cast

from pyroute2 import Conntrack
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

from hypr.errors import Conflict, InvalidParameter, KernelError
from hypr.models import PortMapping, Protocol, Snapshot, changes
from hypr.names import DNS_PORT
from hypr.ports import PortSpec
from hypr.reconcile.proxy import LoopbackProxy

log = logging.getLogger(__name__)
Key = tuple[str, int, Protocol]  # (host ip, host port, protocol)


def _key(host_ip: object, port: int, protocol: Protocol) -> Key:
    return (str(host_ip), port, protocol)


def already_allocated(host_ip: object, port: int) -> Conflict:
    """Docker's message; for hypr's own DNS port (on every gateway address) it says whose the port is."""
    own = f" (hypr's DNS server listens on port {DNS_PORT} of every gateway)" if port == DNS_PORT else ""
    return Conflict(f"Bind for {host_ip}:{port} failed: port is already allocated{own}")


HIGH_FD = 1024  # held sockets live at or above FD_SETSIZE: fds below it stay free for libraries that select()


def _high(sock: socket.socket) -> socket.socket:
    """The same socket moved to a descriptor >= 1024. libnftables (and other C libraries) still use select(), which
    aborts the process for a descriptor above 1023: thousands of held ports must never push theirs up there."""
    try:
        fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
    except OSError as exc:
        sock.close()
        raise KernelError(f"hold a published port: {exc} (raise the open-files limit)") from exc
    moved = socket.socket(sock.family, sock.type, sock.proto, fileno=fd)
    sock.close()
    return moved


class Held:
    """The sockets that reserve one published port: for a port on every address of a workload with IPv6, one per
    family (0.0.0.0 means both, Docker's HostIp ""; DNAT forwards both), else one."""

    def __init__(self, socks: list[socket.socket]) -> None:
        self.socks = socks

    @property
    def port(self) -> int:
        return int(self.socks[0].getsockname()[1])

    def set_ipv6(self, key: Key, wanted: bool) -> None:
        """Hold [::] too, or not any more (the workload gained or lost its IPv6 gateway network)."""
        if wanted and len(self.socks) == 1 and key[0] == "0.0.0.0" and _ipv6_available():
            self.socks.append(_bind_one("::", key[1], key[2]))
        elif not wanted and len(self.socks) == 2:
            self.socks.pop().close()

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def _ipv6_available() -> bool:
    """Whether this namespace has IPv6 at all (a host booted with ipv6.disable=1 has no AF_INET6)."""
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    except OSError:
        return False
    return True


def bind(host_ip: str, port: int, protocol: Protocol, *, ipv6: bool = False) -> Held:
    """Hold `host_ip`:`port`; with `ipv6` and 0.0.0.0 also [::]:`port` (the same port number, IPv6 only) when the
    host has IPv6, as Docker binds both. For port 0 the kernel picks the IPv4 port, and IPv6 must get the same."""
    first = _bind_one(host_ip, port, protocol)
    if not ipv6 or host_ip != "0.0.0.0" or not _ipv6_available():
        return Held([first])
    try:
        return Held([first, _bind_one("::", first.getsockname()[1], protocol)])
    except BaseException:
        first.close()
        raise


def _bind_one(host_ip: str, port: int, protocol: Protocol) -> socket.socket:
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if host_ip in ("::1", "::") and protocol == "tcp":
            # Relayed connections (reconcile/proxy.py) leave TIME_WAIT entries on this port: without this a port
            # published again within a minute could not be held. Still exclusive: we listen at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise already_allocated(host_ip, port) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise InvalidParameter(
                f"Bind for {host_ip}:{port} failed: {host_ip} is not an address of this host"
            ) from None
        raise KernelError(f"reserve host port {host_ip}:{port}/{protocol}: {exc}") from exc
    if protocol == "tcp":
        sock.listen(1)  # a listening socket also blocks SO_REUSEADDR binds by others
    return _high(sock)


AUTO_PORT_TRIES = 16  # port 0: free on IPv4 but taken on IPv6 is rare; try a few kernel picks


def bind_first(spec: PortSpec, *, ipv6: bool = False) -> Held:
    """The first free port of the spec's host port (or range, Docker's `8000-8010:80`)."""
    for port in spec.host_ports:
        for _ in range(AUTO_PORT_TRIES if port == 0 else 1):
            try:
                return bind(str(spec.host_ip), port, spec.protocol, ipv6=ipv6)
            except Conflict:
                if port != 0 and not spec.host_port_end:
                    raise
    raise Conflict(f"Bind for {spec.host_ip}:{spec.host_text} failed: all ports are allocated")


def flush_udp_conntrack(ports: Iterable[int]) -> None:
    """Forget UDP flows to these host ports. A UDP "connection" tracked before a mapping changed would keep
    following the old DNAT (or none) for as long as packets keep coming, so a changed mapping must cut it."""
    with Conntrack() as conntrack:
        for port in sorted(set(ports)):
            try:
                flows = list(conntrack.dump_entries(tuple_orig=NFCTAttrTuple(proto=socket.IPPROTO_UDP, dport=port)))
            except NetlinkError as exc:
                raise KernelError(f"list UDP conntrack entries of port {port}: {exc}") from exc
            for entry in flows:
                try:
                    conntrack.delete(entry)
                except NetlinkError as exc:
                    if exc.code != errno.ENOENT:  # the flow ended by itself meanwhile
                        raise KernelError(f"flush UDP conntrack entries of port {port}: {exc}") from exc


def reached_over_ipv6(snapshot: Snapshot, workloads: Iterable[str] | None = None) -> set[str]:
    """Workloads (of `workloads`, default: every one with mappings) whose published ports are forwarded over IPv6
    too: their gateway network (the first without `internal` in gateway order, as the firewall picks it) has IPv6."""
    found: set[str] = set()
    if not any(n.ipv6 for n in snapshot.networks):
        return found  # an IPv4-only host: no workload to look at
    for workload in {p.workload_id for p in snapshot.ports} if workloads is None else workloads:
        target = snapshot.port_network(workload)
        if target is not None and target.ipv6:
            found.add(workload)
    return found


class PortHolder:
    def __init__(self) -> None:
        self.held: dict[Key, Held] = {}
        self.udp_applied: set[Key] = set()  # UDP mappings as of the last converge: a change flushes their flows
        self.unheld: set[Key] = set()  # published ports someone else holds (warned about once)
        self.proxy: LoopbackProxy | None = None  # relays TCP on [::1] (set by the daemon once its loop runs)
        self.applied: Snapshot | None = None  # converged last: the next converge looks only at what changed since

    def reserve(self, workload_id: str, specs: Iterable[PortSpec], *, ipv6: bool = False) -> list[PortMapping]:
        """Bind every requested port (choosing free ones for host port 0); all or nothing. `ipv6`: the workload
        is reached over IPv6 too, so ports on every address hold [::] as well."""
        taken: list[Key] = []
        mappings = []
        try:
            for spec in specs:
                held = bind_first(spec, ipv6=ipv6)
                port = held.port
                key = _key(spec.host_ip, port, spec.protocol)
                self.held[key] = held
                taken.append(key)
                mappings.append(
                    PortMapping(workload_id, spec.host_ip, port, spec.guest_port, spec.protocol, spec.host_text)
                )
        except BaseException:
            for key in taken:
                self.held.pop(key).close()
            raise
        return mappings

    def release(self, mappings: Iterable[PortMapping]) -> None:
        for m in mappings:
            if self.proxy is not None:
                self.proxy.stop(_key(m.host_ip, m.host_port, m.protocol))
            sock = self.held.pop(_key(m.host_ip, m.host_port, m.protocol), None)
            if sock is not None:
                sock.close()

    def forget(self) -> None:
        """The next converge looks at every mapping (a full reconcile)."""
        self.applied = None

    def converge(self, snapshot: Snapshot) -> None:
        """Hold exactly the ports in the database (after a restart, or a removal elsewhere). After a converge of
        every mapping, the next ones look only at the mappings of the workloads that changed since."""
        previous, self.applied = self.applied, None
        if previous is None:
            wanted = {_key(p.host_ip, p.host_port, p.protocol): p for p in snapshot.ports}
            relayed: set[Key] = set() if self.proxy is None else cast(set[Key], self.proxy.keys())
            self._hold(snapshot, wanted, set(self.held) | set(wanted) | relayed, set(self.udp_applied))
        else:
            changed = changes(previous, snapshot).workloads
            old = {_key(p.host_ip, p.host_port, p.protocol) for w in changed for p in previous.ports_of(w)}
            wanted = {_key(p.host_ip, p.host_port, p.protocol): p for w in changed for p in snapshot.ports_of(w)}
            self._hold(snapshot, wanted, old | set(wanted), {k for k in old if k[2] == "udp"})
        self.applied = snapshot

    def _hold(self, snapshot: Snapshot, wanted: dict[Key, PortMapping], looked_at: set[Key], udp_was: set[Key]) -> None:
        """Converge the keys `looked_at`: those in `wanted` held (with [::] too for workloads reached over IPv6),
        the others not; `udp_was`: which of them were UDP mappings before (a change flushes their flows)."""
        dual = reached_over_ipv6(snapshot, {p.workload_id for p in wanted.values()})
        for key in looked_at - wanted.keys():
            held = self.held.pop(key, None)
            if held is not None:
                held.close()
        for key in wanted.keys() - self.held.keys():
            try:
                self.held[key] = bind(*key, ipv6=wanted[key].workload_id in dual)
            except (Conflict, KernelError) as exc:
                # Someone took the port while hyprd was down. The DNAT rule still forwards it; only the guard
                # against later clashes is missing. Say so once, and do not fail every other operation over it.
                if key not in self.unheld:
                    log.warning("published port %s:%d/%s is not reserved: %s", *key, exc.message)
                    self.unheld.add(key)
        for key in wanted.keys() & self.held.keys():
            try:
                self.held[key].set_ipv6(key, wanted[key].workload_id in dual)
            except (Conflict, KernelError) as exc:
                if key not in self.unheld:
                    log.warning("published port [::]:%d/%s is not reserved: %s", key[1], key[2], exc.message)
                    self.unheld.add(key)
        self._relay_loopback6(snapshot, wanted, looked_at)
        udp = {key for key in wanted if key[2] == "udp"}
        if udp != udp_was:
            flush_udp_conntrack(port for _ip, port, _proto in udp ^ udp_was)
        self.udp_applied = (self.udp_applied - udp_was) | udp

    def _relay_loopback6(self, snapshot: Snapshot, wanted: dict[Key, PortMapping], looked_at: set[Key]) -> None:
        """TCP ports on [::1], and on [::] (alone or with 0.0.0.0), are relayed from ::1 to the workload's address
        on its gateway network (its IPv6 one if it has one), as docker-proxy does; see reconcile/proxy.py for
        why they cannot be DNAT'd. Every other address of [::] is DNAT'd before it reaches the held socket."""
        if self.proxy is None:
            return
        listeners = {key: sock for key in wanted if (sock := self._loopback6_listener(key)) is not None}
        for key in cast(set[Key], self.proxy.keys()) & looked_at:
            if self.proxy.listener(key) is not listeners.get(key):  # gone, or its [::] socket was replaced
                self.proxy.stop(key)
        for key, listener in listeners.items():
            mapping = wanted[key]
            network = snapshot.port_network(mapping.workload_id)
            endpoint = next(
                (e for e in snapshot.endpoints_of(mapping.workload_id) if network and e.network_id == network.id), None
            )
            address = None if endpoint is None else (endpoint.ip6 or endpoint.ip)
            self.proxy.retarget(key, None if address is None else (str(address), mapping.guest_port))
            self.proxy.serve(key, listener)

    def _loopback6_listener(self, key: Key) -> socket.socket | None:
        """The held socket that connections to [::1]:port of a TCP mapping reach, if any."""
        held = self.held.get(key)
        if held is None or key[2] != "tcp":
            return None
        if key[0] in ("::1", "::"):
            return held.socks[0]
        return held.socks[1] if key[0] == "0.0.0.0" and len(held.socks) == 2 else None

    def close(self) -> None:
        for sock in self.held.values():
            sock.close()
        self.held.clear()
