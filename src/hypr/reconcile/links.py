"""Bridges: make the kernel's links match the network rows, through one netlink socket.

Ownership is provable from the kernel side: every link hypr creates carries the interface alias
`hypr:<instance id>`. Links without our alias are never changed or removed, whatever their name.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hypr import names
from hypr.errors import KernelError
from hypr.models import HostRoute, HostView, Network, Snapshot, changes
from hypr.runtime.rtnl import Rtnl, bridge_port_set

log = logging.getLogger(__name__)
GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)
MAIN_TABLE = 254
IFNAMSIZ = 16  # with the terminating NUL
IFA_F_NODAD = 0x02  # linux/if_addr.h: the gateway is ours alone, so it is usable at once (no DAD wait)
# IPv6 routes every interface has, never a clash: link-local and multicast.
_NOT_ROUTES6 = (IPv6Network("fe80::/10"), IPv6Network("ff00::/8"))


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str
    alias: str
    master: int = 0  # the bridge a port is enslaved to (0: none)
    mac: str = ""


def links(ipr: IPRoute) -> list[Link]:
    """Every link of the calling thread's namespace (`ipr` acts there too). Through our own dump parser: pyroute2
    takes ~0.5 ms per link, and every endpoint is a link, so a full reconcile at 1000 workloads took seconds."""
    with Rtnl() as rtnl:
        return [Link(i.index, i.name, i.kind, i.alias, i.master, i.mac) for i in rtnl.links()]


def host_view(ipr: IPRoute, alias: str, ours: set[int]) -> HostView:
    """Routes and interface names that belong to others: what a new network must not collide with. Routes come
    from the main table through our own client (the kernel filters the table: every interface has a multicast
    route in the local one, which pyroute2 parsed only to drop it); interface names are looked up one at a time
    as the planner asks (`LinkNames`): every workload adds an interface, and listing them all cost ~10 ms per
    network create at 1000 workloads. Only the few interfaces routes leave by are looked up, to tell ours from
    others'. `ipr`: the calling thread's namespace, as are the sockets used here. `ours`: indexes of links already
    known to be our bridges, kept by the caller from one call to the next, so a network create looks up the new
    bridge's route only, not every network's. A bridge we remove leaves it (`update`), and a full reconcile empties
    it: a link created with an explicit index, or moved in from another namespace, may take a freed index."""
    seen: dict[int, Link | None] = {}

    def link(oif: int) -> Link | None:
        if oif not in seen:
            found = seen[oif] = _one(index=oif) if oif else None
            if found is not None and found.alias == alias:
                ours.add(oif)
        return seen[oif]

    try:
        with Rtnl() as rtnl:
            main = rtnl.routes(socket.AF_INET, MAIN_TABLE) + rtnl.routes(socket.AF_INET6, MAIN_TABLE)
    except OSError as exc:
        raise KernelError(f"list routes: {exc}") from exc
    routes: list[HostRoute] = []
    for route in main:
        if route.oif in ours:
            continue  # one of our bridges
        dev = link(route.oif)
        if dev is not None and dev.alias == alias:
            continue
        dst = IPv4Network((route.dst or bytes(4), route.dst_len)) if route.family == socket.AF_INET else (
            IPv6Network((route.dst or bytes(16), route.dst_len)))  # fmt: skip
        if not (dst.version == 6 and any(dst.subnet_of(n) for n in _NOT_ROUTES6)):
            routes.append(HostRoute(dst, "?" if dev is None else dev.name))
    return HostView(routes=tuple(routes), interfaces=LinkNames())


class LinkNames(AbstractSet[str]):
    """The names of the links in the calling thread's namespace, as a set: membership is one netlink request
    per name (cached), iterating lists them all once (libc's if_nameindex)."""

    def __init__(self) -> None:
        self.known: dict[str, bool] = {}
        self.everything: frozenset[str] | None = None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if self.everything is not None:
            return name in self.everything
        if name not in self.known:
            self.known[name] = len(name.encode()) < IFNAMSIZ and _one(name=name) is not None
        return self.known[name]

    def _all(self) -> frozenset[str]:
        if self.everything is None:
            self.everything = frozenset(name for _index, name in socket.if_nameindex())
        return self.everything

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def half_made(existing: Link, network: Network) -> bool:
    """A bridge we created but could not label (killed between the two requests): the kernel takes no alias on
    RTM_NEWLINK, but it does take the MAC, and ours is derived from the network's gateway (02:42:<gateway>)."""
    return not existing.alias and existing.kind == "bridge" and existing.mac == bridge_mac(network)


def bridge_mac(network: Network) -> str:
    """The gateway's MAC (02:42 + its IPv4 address, or the last 32 bits of its IPv6 one on an IPv6-only network)."""
    gateway = network.gateway if network.gateway is not None else network.gateway6
    assert gateway is not None  # a network has at least one family (network_plan)
    return names.mac_for(gateway)


def ensure_bridge(
    ipr: IPRoute, network: Network, alias: str, existing: Link | None, proc_sys: Path = Path("/proc/sys")
) -> None:
    """Create or repair `network.bridge`: ours, the gateway address only, the right MTU, up. The bridge is born
    with our MAC, so a crash before the alias is set leaves one we recognise and adopt (see half_made)."""
    if existing is not None and existing.alias != alias and not half_made(existing, network):
        raise KernelError(f"interface {network.bridge} exists and is not owned by this hypr daemon; leaving it alone")
    # A fixed MAC: left to itself a bridge takes the lowest MAC of its ports, and changes it when that port goes,
    # leaving every neighbour's ARP entry for the gateway stale for seconds (DNS timeouts after an rm).
    mac = bridge_mac(network)
    try:
        if existing is None:
            ipr.link("add", ifname=network.bridge, kind="bridge", address=mac, mtu=network.mtu)
        # link get, not link_lookup: pyroute2 0.9's link_lookup keeps ~340 bytes per call (RSS grew per converge),
        # nor get_links(ifname=): that dumps every link and filters in Python.
        index = existing.index if existing is not None else ipr.link("get", ifname=network.bridge)[0]["index"]
        ipr.link("set", index=index, ifalias=alias, mtu=network.mtu, address=mac, state="up")
        fresh = existing is None  # a bridge just made has no address to look at (the dump parses every bridge's)
        if network.subnet is not None:  # an IPv6-only bridge has no IPv4 address
            _converge_addresses(ipr, index, IPv4Interface(f"{network.gateway}/{network.subnet.prefixlen}"), fresh)
        if network.subnet6 is not None:  # (a network's families never change: IPv4-only bridges cost nothing here)
            _enable_ipv6(proc_sys, network.bridge)
            want6 = IPv6Interface(f"{network.gateway6}/{network.subnet6.prefixlen}")
            _converge_addresses6(ipr, index, want6, fresh)
    except OSError as exc:
        raise KernelError(f"enable IPv6 on bridge {network.bridge} for network {network.name}: {exc}") from exc
    except NetlinkError as exc:
        raise KernelError(f"set up bridge {network.bridge} for network {network.name}: {exc}") from exc


def _converge_addresses(ipr: IPRoute, index: int, want: IPv4Interface, fresh: bool) -> None:
    have = (
        set()
        if fresh
        else {IPv4Interface(f"{a.get('address')}/{a['prefixlen']}") for a in ipr.get_addr(family=2, index=index)}
    )
    for stale in have - {want}:
        ipr.addr("del", index=index, address=str(stale.ip), prefixlen=stale.network.prefixlen)
    if want not in have:
        ipr.addr("add", index=index, address=str(want.ip), prefixlen=want.network.prefixlen)


def _enable_ipv6(proc_sys: Path, bridge: str) -> None:
    """A host (or a namespace) may have IPv6 off for new interfaces; a bridge with IPv6 needs it on.

    No duplicate address detection on the bridge (accept_dad=0, before IPv6 is on): its link-local address is born
    when the bridge gets carrier, i.e. with the first port, and the kernel sends no neighbour solicitation from a
    tentative address (ndisc_send_ns). A packet to that first workload from an address not on the bridge
    (forwarded, DNAT'd) waited for the solicitation's retry a second later: its first SYN was lost. The address is
    derived from our MAC, and the anti-spoofing chain keeps ports from claiming it."""
    conf = proc_sys / "net/ipv6/conf" / bridge
    for name, value in (("accept_dad", "0"), ("disable_ipv6", "0")):
        if (conf / name).read_text().strip() != value:
            (conf / name).write_text(value)


def _converge_addresses6(ipr: IPRoute, index: int, want: IPv6Interface, fresh: bool) -> None:
    """The gateway's global address (nodad: usable at once), nothing else global; link-local is the kernel's."""
    have = (
        set()
        if fresh
        else {
            IPv6Interface(f"{a.get('address')}/{a['prefixlen']}")
            for a in ipr.get_addr(family=10, index=index)
            if not IPv6Interface(f"{a.get('address')}/128").ip.is_link_local
        }
    )
    for stale in have - {want}:
        ipr.addr("del", index=index, address=str(stale.ip), prefixlen=stale.network.prefixlen)
    if want not in have:
        ipr.addr("add", index=index, address=str(want.ip), prefixlen=want.network.prefixlen, flags=IFA_F_NODAD)


def remove_link(ipr: IPRoute, link: Link) -> None:
    """Delete a link we own; one already gone counts as removed. By index: given a name, pyroute2 looks it up
    among every link first (~2 ms more at a thousand)."""
    try:
        ipr.link("del", index=link.index)
    except NetlinkError as exc:
        if exc.code not in GONE:
            raise KernelError(f"remove interface {link.name}: {exc}") from exc


def reconcile_bridges(
    ipr: IPRoute,
    networks: Iterable[Network],
    alias: str,
    broken: dict[str, str] | None = None,
    proc_sys: Path = Path("/proc/sys"),
) -> list[KernelError]:
    """Every network has its bridge; every bridge of ours without a network goes. Returns the failures; `broken`
    receives network ID -> why, for networks whose bridge could not be made ours (so callers can refuse to use
    them while every other network keeps working)."""
    present = {link.name: link for link in links(ipr)}
    wanted = {n.bridge: n for n in networks}
    errors: list[KernelError] = []
    for name, network in sorted(wanted.items()):
        try:
            ensure_bridge(ipr, network, alias, present.get(name), proc_sys)
        except KernelError as exc:
            errors.append(exc)
            if broken is not None:
                broken[network.id] = exc.message
    for link in present.values():
        if link.alias == alias and link.kind == "bridge" and link.name not in wanted:
            log.info("removing bridge %s: its network no longer exists", link.name)
            try:
                remove_link(ipr, link)
            except KernelError as exc:
                errors.append(exc)
    return errors


def reconcile_ports(ipr: IPRoute, snapshot: Snapshot, alias: str) -> list[KernelError]:
    """Endpoint host links (veth ends, TAPs): each on its network's bridge (a bridge deleted and re-created by the
    reconcile comes back empty), and no link of ours without an endpoint row (left by a failed connect)."""
    present = links(ipr)
    bridges = {link.name: link.index for link in present if link.kind == "bridge"}
    wanted = {e.host_ifname: snapshot.network(e.network_id).bridge for e in snapshot.endpoints}
    errors: list[KernelError] = []
    for link in present:
        if link.alias != alias or link.kind == "bridge":
            continue
        try:
            if link.name not in wanted:
                log.info("removing %s: no endpoint owns it", link.name)
                remove_link(ipr, link)
            elif link.master != bridges.get(wanted[link.name]):
                log.info("re-attaching %s to %s", link.name, wanted[link.name])
                _reattach(ipr, link, bridges[wanted[link.name]], alias)
        except (KernelError, KeyError, NetlinkError, OSError) as exc:
            errors.append(KernelError(f"repair endpoint link {link.name}: {exc}"))
    return errors


# -- incremental: only what changed between two snapshots ---------------------------------------------------------


@dataclass(frozen=True)
class LinkDelta:
    """What an operation changed for links, from the snapshot last converged to the new one (pure, see `delta`)."""

    networks: tuple[Network, ...] = ()  # new or changed: their bridge is made or repaired
    gone_bridges: tuple[str, ...] = ()  # bridges no network names any more
    endpoints: tuple[tuple[str, str], ...] = ()  # (host ifname, bridge) of new or changed endpoints
    gone_ifnames: tuple[str, ...] = ()  # host links no endpoint names any more


def delta(old: Snapshot, new: Snapshot) -> LinkDelta:
    """Compare by row, only the rows that changed (`models.changes`): unchanged networks and endpoints are not
    looked at, neither here nor in the kernel."""
    change = changes(old, new)
    before = {n.id: n for n in old.networks}
    bridges = {n.bridge for n in new.networks}
    ends = {e.id: e for w in change.workloads for e in old.endpoints_of(w)}
    now = [e for w in change.workloads for e in new.endpoints_of(w)]
    return LinkDelta(
        networks=tuple(n for n in new.networks if n.id in change.networks),
        gone_bridges=tuple(sorted({before[i].bridge for i in change.networks if i in before} - bridges)),
        endpoints=tuple((e.host_ifname, new.network(e.network_id).bridge) for e in now if ends.get(e.id) != e),
        gone_ifnames=tuple(sorted({e.host_ifname for e in ends.values()} - {e.host_ifname for e in now})),
    )


def link_named(ipr: IPRoute, name: str) -> Link | None:
    """One link by name with one request (our own client: a pyroute2 request costs ~2 ms; `ipr` is the calling
    thread's namespace, as is the socket used here)."""
    return _one(name=name)


def _one(name: str = "", index: int = 0) -> Link | None:
    try:
        with Rtnl() as rtnl:
            found = rtnl.link(name=name, index=index)
    except OSError as exc:
        raise KernelError(f"look up interface {name or index}: {exc}") from exc
    return None if found is None else Link(found.index, found.name, found.kind, found.alias, found.master, found.mac)


def update(
    ipr: IPRoute,
    change: LinkDelta,
    alias: str,
    broken: dict[str, str],
    ours: set[int],
    proc_sys: Path = Path("/proc/sys"),
) -> list[KernelError]:
    """`reconcile_bridges` + `reconcile_ports` for the changed rows only; `broken` is updated for them, and the
    indexes of the bridges removed leave `ours` (see host_view)."""
    errors: list[KernelError] = []
    for name in change.gone_bridges:
        index = _remove_ours(ipr, name, alias, errors)
        if index is not None:
            ours.discard(index)
    for network in change.networks:
        broken.pop(network.id, None)
        try:
            ensure_bridge(ipr, network, alias, link_named(ipr, network.bridge), proc_sys)
        except KernelError as exc:
            errors.append(exc)
            broken[network.id] = exc.message
    for ifname in change.gone_ifnames:
        _remove_ours(ipr, ifname, alias, errors)
    for ifname, bridge in change.endpoints:
        try:
            link = link_named(ipr, ifname)
            if link is None or link.alias != alias:
                continue  # not made yet (the runtime plugs it after the rows are written)
            master = link_named(ipr, bridge)
            if master is not None and link.master != master.index:
                log.info("re-attaching %s to %s", ifname, bridge)
                _reattach(ipr, link, master.index, alias)
        except (KernelError, NetlinkError, OSError) as exc:
            errors.append(KernelError(f"repair endpoint link {ifname}: {exc}"))
    return errors


def _remove_ours(ipr: IPRoute, name: str, alias: str, errors: list[KernelError]) -> int | None:
    """Remove the link `name` if it is ours; the index it had, if it was."""
    try:
        link = link_named(ipr, name)
        if link is not None and link.alias == alias:
            log.info("removing %s: no row owns it", name)
            remove_link(ipr, link)
            return link.index
    except KernelError as exc:
        errors.append(exc)
    return None


def _reattach(ipr: IPRoute, link: Link, bridge_index: int, alias: str) -> None:
    ipr.link("set", index=link.index, master=bridge_index, state="up")
    with Rtnl() as rtnl:  # port flags (hairpin) are reset by a new master; set them as at attach time
        rtnl.batch([bridge_port_set(link.name, alias=alias, hairpin=True)])
