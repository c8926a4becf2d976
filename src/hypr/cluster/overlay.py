"""The overlay data plane on one host: a VXLAN device per overlay network on that network's bridge, its FDB and
neighbour entries programmed from the endpoint registry, and VXLAN accepted only from cluster members.

    workload ──veth── vbrN (gateway, same address and MAC on every host) ── hvx<VNI> ══ UDP 4789 ══> other hosts

The VXLAN device has learning off and ARP proxy on: for every remote endpoint we write one FDB entry (its MAC is
behind that host's advertise address, `self`), one on the bridge (`master`, static: the bridge sends the frame to
the VXLAN port without flooding) and one permanent neighbour entry (the device answers ARP for the address itself).
There is no all-zeros FDB entry, so broadcasts never leave the host: no flooding, no learning.

`plan_entries` is pure; `OverlayPlane` holds what it programmed per device and sends only the difference, in
netlink batches (1000 endpoints: 3000 messages in a few datagrams).
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError as PyrNetlinkError

from hypr import names
from hypr.cluster.registry import OVERLAY, ClusterState, vni_of
from hypr.errors import KernelError
from hypr.models import Network, Snapshot
from hypr.reconcile import libnft, nft
from hypr.runtime.rtnl import NLM_F_CREATE, NLM_F_REPLACE, NetlinkError, Request, Rtnl, attr

log = logging.getLogger(__name__)

VXLAN_PORT = 4789  # IANA (RFC 7348)
TABLE = "hypr_vxlan"  # `table inet hypr_vxlan`: only the VXLAN allowlist, so the main table's renderer is untouched
BATCH = 256  # netlink messages per datagram

RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
NDA_DST = 1
NDA_LLADDR = 2
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
NTF_MASTER = 0x04
_NDMSG = struct.Struct("=BBHiHBB")


@dataclass(frozen=True)
class Entry:
    """One remote endpoint as this host's VXLAN device must know it."""

    ip: IPv4Address
    mac: str
    vtep: str  # the owning host's advertise address


def plan_entries(snapshot: Snapshot, state: ClusterState, node: str) -> dict[str, frozenset[Entry]]:
    """VXLAN device name -> the entries it must hold: every other host's endpoints on that overlay network."""
    wanted: dict[str, frozenset[Entry]] = {}
    for network in snapshot.networks:
        vni = vni_of(network)
        if network.driver != OVERLAY or vni is None:
            continue
        wanted[names.vxlan_name(vni)] = frozenset(
            Entry(e.ip, e.mac, e.vtep)
            for e in state.endpoints
            if e.network_id == network.id and e.node != node and e.mac and e.vtep
        )
    return wanted


def render_allowlist(members: Iterable[str]) -> str:
    """VXLAN is accepted only from the cluster's live members' advertise addresses (a forged VXLAN packet would
    otherwise put any frame on any overlay bridge)."""
    addresses = sorted(members, key=lambda a: tuple(int(p) for p in a.split(".")))
    match = ["udp dport 4789"] + ([f"ip saddr != {nft.anonymous_set(addresses)}"] if addresses else [])
    chain = nft.Chain("input", (nft.Rule(tuple(match), "drop", "vxlan only from cluster members"),),
                      nft.Hook("filter", "input", "-10"))  # fmt: skip
    return nft.script([nft.Table("inet", TABLE, (), (chain,))])


def remove_allowlist() -> None:
    try:
        libnft.run(f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")
    except libnft.NftError as exc:
        raise KernelError(f"remove table inet {TABLE}: {exc}") from exc


# -- netlink messages for neighbour and FDB entries ----------------------------------------------------------------


def _mac(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def _ndmsg(family: int, index: int, state: int, flags: int) -> bytes:
    return _NDMSG.pack(family, 0, 0, index, state, flags, 0)


def entry_requests(index: int, entry: Entry, *, add: bool) -> list[Request]:
    """The three kernel entries of one remote endpoint on VXLAN device `index` (add/replace or delete)."""
    kind, flags = (RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE) if add else (RTM_DELNEIGH, 0)
    ok = frozenset() if add else frozenset({errno.ENOENT})
    mac = attr(NDA_LLADDR, _mac(entry.mac))
    vtep = IPv4Address(entry.vtep).packed
    verb = "program" if add else "remove"
    return [
        Request(f"{verb} fdb {entry.mac} dst {entry.vtep}", kind, flags,
                _ndmsg(socket.AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF) + mac + attr(NDA_DST, vtep), ok),
        Request(f"{verb} bridge fdb {entry.mac}", kind, flags,
                _ndmsg(socket.AF_BRIDGE, index, NUD_NOARP, NTF_MASTER) + mac, ok),
        Request(f"{verb} neighbour {entry.ip}", kind, flags,
                _ndmsg(socket.AF_INET, index, NUD_PERMANENT, 0) + attr(NDA_DST, entry.ip.packed) + mac, ok),
    ]  # fmt: skip


class OverlayPlane:
    """VXLAN devices and their entries, converged from a snapshot (the overlay networks and their bridges) and the
    last registry read. Runs on the daemon's worker thread."""

    def __init__(self, ipr: IPRoute, alias: str, node: str, advertise: str) -> None:
        self.ipr = ipr
        self.alias = alias  # not the reconciler's own alias: links.py must not take our devices for stray ports
        self.node = node
        self.advertise = advertise
        self.programmed: dict[str, frozenset[Entry]] = {}
        self.members: frozenset[str] = frozenset()  # as last applied

    def converge(self, snapshot: Snapshot, state: ClusterState | None, *, full: bool = True) -> None:
        """Devices always (the bridge may have been re-made); entries and the allowlist only once the registry has
        been read: before that (etcd down at start) the kernel keeps what it has, so traffic keeps flowing.
        `full` (every reconcile) re-applies the allowlist even when the members did not change, so a table someone
        deleted comes back; a registry change alone re-applies it only when they did."""
        errors: list[str] = []
        overlays = [n for n in snapshot.networks if n.driver == OVERLAY and vni_of(n) is not None]
        indexes: dict[str, int] = {}
        for network in overlays:
            try:
                indexes[names.vxlan_name(vni_of(network) or 0)] = self._ensure_device(network)
            except KernelError as exc:
                errors.append(exc.message)
        self._remove_stale_devices(set(indexes), errors)
        if state is not None:
            wanted = plan_entries(snapshot, state, self.node)
            with Rtnl() as rtnl:
                for name, index in indexes.items():
                    try:
                        self._program(rtnl, name, index, wanted.get(name, frozenset()))
                    except NetlinkError as exc:
                        self.programmed.pop(name, None)  # read back from the kernel next time
                        errors.append(f"program {name}: {exc}")
            members = state.members() | {self.advertise}
            if full or members != self.members:
                self._allow(members, errors)
        if errors:
            raise KernelError("; ".join(errors))

    def _ensure_device(self, network: Network) -> int:
        vni = vni_of(network) or 0
        name = names.vxlan_name(vni)
        try:
            found = self.ipr.get_links(ifname=name)
        except PyrNetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise KernelError(f"look up {name}: {exc}") from exc
            found = []
        try:
            bridge = self.ipr.get_links(ifname=network.bridge)[0]["index"]
            existing = (found[0].get("ifalias") or "") if found else None
            if existing not in (None, "", self.alias):
                raise KernelError(f"interface {name} exists and is not owned by this hypr daemon; leaving it alone")
            if not found:
                self.ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_local=self.advertise,
                              vxlan_port=VXLAN_PORT, vxlan_learning=0, vxlan_proxy=1, mtu=network.mtu)  # fmt: skip
                self.programmed.pop(name, None)
                found = self.ipr.get_links(ifname=name)
            link = found[0]
            self.ipr.link("set", index=link["index"], master=bridge, ifalias=self.alias, state="up")
            index = int(link["index"])
        except (PyrNetlinkError, IndexError) as exc:
            raise KernelError(f"set up VXLAN device {name} for network {network.name}: {exc}") from exc
        if name not in self.programmed:
            self.programmed[name] = self._read_back(index)
        return index

    def _read_back(self, index: int) -> frozenset[Entry]:
        """What a device already holds (a restarted daemon): neighbour entries joined with their FDB entries."""
        fdb = {
            (msg.get("NDA_LLADDR") or "").lower(): msg.get("NDA_DST") or ""
            for msg in self.ipr.get_neighbours(family=socket.AF_BRIDGE, ifindex=index)
            if msg.get("NDA_DST")
        }
        return frozenset(
            Entry(IPv4Address(msg.get("NDA_DST")), mac, fdb.get(mac, ""))
            for msg in self.ipr.get_neighbours(family=socket.AF_INET, ifindex=index)
            if (mac := (msg.get("NDA_LLADDR") or "").lower()) and msg.get("NDA_DST")
        )

    def _program(self, rtnl: Rtnl, name: str, index: int, wanted: frozenset[Entry]) -> None:
        began = time.perf_counter()
        have = self.programmed.get(name, frozenset())
        requests = [r for e in sorted(have - wanted, key=str) for r in entry_requests(index, e, add=False)]
        requests += [r for e in sorted(wanted - have, key=str) for r in entry_requests(index, e, add=True)]
        for start in range(0, len(requests), BATCH):
            rtnl.batch(requests[start : start + BATCH])
        if requests:
            log.debug("%s: programmed %d entries (+%d -%d) in %.1f ms", name, len(wanted), len(wanted - have),
                      len(have - wanted), (time.perf_counter() - began) * 1000)  # fmt: skip
        self.programmed[name] = wanted

    def _remove_stale_devices(self, keep: set[str], errors: list[str]) -> None:
        for msg in self.ipr.get_links():
            name = msg.get("ifname") or ""
            if name.startswith(names.VXLAN_PREFIX) and name not in keep and (msg.get("ifalias") or "") == self.alias:
                try:
                    self.ipr.link("del", index=msg["index"])
                except PyrNetlinkError as exc:
                    if exc.code not in (errno.ENODEV, errno.ENOENT):
                        errors.append(f"remove {name}: {exc}")
                self.programmed.pop(name, None)

    def _allow(self, members: frozenset[str], errors: list[str]) -> None:
        try:
            libnft.run(render_allowlist(members))
            self.members = members
        except libnft.NftError as exc:
            errors.append(f"apply the VXLAN allowlist: {exc}")
