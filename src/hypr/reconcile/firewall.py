"""hypr's firewall: render `table inet hypr` + `table bridge hypr` from a snapshot, apply them in one transaction.

`render()` and `sysctls()` are pure; `apply()` and `remove()` are the only effects. docs/firewall.md walks through
the chains using the golden files in tests/golden/firewall/.

Decisions worth knowing (each one is a rule below):
- Every base chain has policy accept: we only drop traffic that enters or leaves one of our bridges.
- Traffic into a bridge from anywhere else (other bridges, remote hosts routing to our subnets) is dropped unless
  it was DNAT'd by a published port or belongs to a connection the workload opened. This is also what isolates
  networks from each other, in both directions.
- Ports published on loopback, and loopback destinations in general, are never DNAT'd in prerouting: a remote host
  that routes 127.0.0.1 to us must not reach them.
- Workloads on normal networks may reach host services (Docker's behaviour, `FirewallSettings.workloads_reach_host`
  turns that off); workloads on internal networks reach only the gateway's DNS (and its ping).
- `route_localnet=1` on our bridges (needed for `-p 127.0.0.1:...` and `localhost:P`) would let a workload reach
  host services bound to 127.0.0.0/8; the input chain drops that.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address

from hypr.errors import Conflict, KernelError
from hypr.models import Endpoint, Network, PortMapping, Snapshot, changes
from hypr.names import DNS_PORT, TABLE
from hypr.reconcile import libnft
from hypr.reconcile.nft import Chain, Hook, NamedSet, Rule, Table, anonymous_set, quote, script, update

log = logging.getLogger(__name__)

DNS = 53
LOOPBACK = "127.0.0.0/8"
ANY = IPv4Address("0.0.0.0")
ANY6 = IPv6Address("::")
LOOPBACK6 = IPv6Address("::1")
# The output hook rejects `priority dstnat` in nft 1.0.6; -100 is its numeric value.
OUTPUT_NAT_PRIORITY = "-100"

_MAP_ANY = "published_any"  # proto . port -> workload ip . port, for host_ip 0.0.0.0
_MAP_ADDR = "published_addr"  # host ip . proto . port -> workload ip . port, for a given host_ip
_MAP_ANY6 = "published_any6"  # the same for IPv6: host_ip 0.0.0.0 (both families) or ::, to the workload's IPv6
_MAP_ADDR6 = "published_addr6"
_ROUTED_OPEN = "routed_open"  # workload ipv6 . proto . guest port: published ports of routed IPv6 networks


@dataclass(frozen=True)
class FirewallSettings:
    dns_port: int = DNS_PORT  # where the DNS server listens on each gateway; guests' :53 is redirected there
    table: str = TABLE
    workloads_reach_host: bool = True  # normal networks may reach host services (Docker allows all)


PortKey = tuple[str, IPv4Address | IPv6Address, int]  # (protocol, host address, host port)


@dataclass(frozen=True)
class Published:
    """A port mapping resolved to the address it is forwarded to."""

    mapping: PortMapping
    target: IPv4Address | None  # None on an IPv6-only network (its mappings are IPv6 ones: workload_plan)
    target6: IPv6Address | None = None  # on a dual-stack network: where IPv6 traffic to the port goes
    routed6: bool = False  # that network has gateway_mode_ipv6=routed: the guest port is open on target6 itself

    @property
    def keys(self) -> list[PortKey]:
        """What the mapping occupies: its host address, and `::` too for one on every address of both families."""
        m = self.mapping
        keys: list[PortKey] = [(m.protocol, m.host_ip, m.host_port)]
        if m.host_ip == ANY and self.target6 is not None:
            keys.append((m.protocol, ANY6, m.host_port))
        return keys

    @property
    def ipv6(self) -> bool:
        return self.target6 is not None and (self.mapping.host_ip == ANY or self.mapping.host_ip.version == 6)


# ---------------------------------------------------------------------------------------------------------- plan


def render(snapshot: Snapshot, settings: FirewallSettings | None = None) -> str:
    """The whole nft script for `snapshot`: same input, byte-identical output."""
    return script(tables(snapshot, settings))


def tables(snapshot: Snapshot, settings: FirewallSettings | None = None) -> tuple[Table, Table]:
    """`table inet hypr` and `table bridge hypr` for `snapshot`, as values (`render` writes them out)."""
    return _whole(snapshot, settings or FirewallSettings())[0]


def _whole(snapshot: Snapshot, settings: FirewallSettings) -> tuple[tuple[Table, Table], dict[PortKey, str]]:
    """Both tables, and which workload holds each published key."""
    networks = _sorted_networks(snapshot)
    published = published_ports(snapshot)
    ids = {n.id for n in networks}
    endpoints = sorted((e for e in snapshot.endpoints if e.network_id in ids), key=lambda e: e.host_ifname)
    inet, bridge = skeleton(networks, settings)
    owners = {key: p.mapping.workload_id for p in published for key in p.keys}
    return (_fill(inet, _inet_elements(published)), _fill(bridge, _bridge_elements(endpoints))), owners


def skeleton(networks: list[Network], settings: FirewallSettings) -> tuple[Table, Table]:
    """Both tables with their chains and empty sets: what depends on the networks alone (so on few rows)."""
    return _inet_table(networks, settings), _bridge_table(settings)


def _fill(table: Table, elements: Mapping[str, tuple[str, ...]]) -> Table:
    """`table` with these elements in its sets (by set name; sets the table does not have are left out)."""
    sets = tuple(replace(s, elements=elements.get(s.name, ())) for s in table.sets)
    return replace(table, sets=sets)


def sysctls(snapshot: Snapshot) -> list[tuple[str, str]]:
    """Sysctls (path under /proc/sys, value) the rules rely on. route_localnet is set on every bridge that can
    carry published ports, so publishing a port never needs a sysctl change; br_netfilter only while a network
    has icc off."""
    wanted = [("net/ipv4/ip_forward", "1")]
    if any(not n.icc for n in snapshot.networks):
        # icc off is enforced in table inet's forward chain, which sees bridged frames only through br_netfilter
        # (per network namespace). A bridge-family drop cannot do it: it has no conntrack here, so it would also
        # drop a neighbour's `host:P`, which br_netfilter DNATs in bridge prerouting and then bridges.
        wanted.append(("net/bridge/bridge-nf-call-iptables", "1"))
    wanted += [(f"net/ipv4/conf/{n.bridge}/route_localnet", "1") for n in _ipv4(_sorted_networks(snapshot))
               if not n.internal]  # fmt: skip
    if any(n.ipv6 for n in snapshot.networks):
        # As Docker does for IPv6 networks. On a host that takes its own IPv6 address from router advertisements,
        # forwarding turns RA processing off unless the uplink has accept_ra=2 (docs/ipv6.md).
        wanted.append(("net/ipv6/conf/all/forwarding", "1"))
        if any(not n.icc and n.ipv6 for n in snapshot.networks):
            wanted.append(("net/bridge/bridge-nf-call-ip6tables", "1"))
    return wanted


def published_ports(snapshot: Snapshot) -> list[Published]:
    """Mappings with their target: the workload's first endpoint on a non-internal network. Mappings of
    workloads without one are skipped (the service layer refuses them). Two mappings of one host port conflict."""
    networks = {n.id: n for n in snapshot.networks}
    everything = [p for w in {p.workload_id for p in snapshot.ports} for p in published_of(snapshot, networks, w)]
    everything.sort(key=lambda p: _mapping_order(p.mapping))
    found: set[PortKey] = set()
    for entry in everything:
        if any(key in found for key in entry.keys):
            raise _taken(entry.mapping)
        found.update(entry.keys)
    return everything


def _taken(m: PortMapping) -> Conflict:
    return Conflict(f"Bind for {m.host_ip}:{m.host_port} failed: port is already allocated")


def published_of(snapshot: Snapshot, networks: Mapping[str, Network], workload_id: str) -> list[Published]:
    """One workload's mappings with their target (see `published_ports`), in mapping order."""
    endpoint = _target(snapshot, networks, workload_id)
    if endpoint is None:
        return []
    network = networks[endpoint.network_id]
    found = []
    for mapping in sorted(snapshot.ports_of(workload_id), key=_mapping_order):
        entry = Published(mapping, endpoint.ip, endpoint.ip6, network.routed6)
        if mapping.host_ip.version == 6 and entry.target6 is None:
            continue  # an IPv6 host address for a workload without IPv6 (the service layer refuses it)
        found.append(entry)
    return found


def _mapping_order(m: PortMapping) -> tuple[str, int, int, int, int, str]:
    return (m.protocol, m.host_ip.version, int(m.host_ip), m.host_port, m.guest_port, m.workload_id)


def _target(snapshot: Snapshot, networks: Mapping[str, Network], workload_id: str) -> Endpoint | None:
    """Published ports reach the workload on its gateway network, or its first network with a way in."""
    for endpoint in snapshot.gateway_order(workload_id):
        network = networks.get(endpoint.network_id)
        if network is not None and not network.internal:
            return endpoint
    return None


def _ipv4(networks: list[Network]) -> list[Network]:
    """The networks with IPv4 (an IPv6-only network gets no IPv4 rule at all)."""
    return [n for n in networks if n.subnet is not None]


def _sorted_networks(snapshot: Snapshot) -> list[Network]:
    return sorted(snapshot.networks, key=lambda n: _natural(n.bridge))


def _natural(name: str) -> tuple[tuple[int, str], ...]:
    """vbr2 before vbr10, so golden files read in creation order."""
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", name) if p)


# ------------------------------------------------------------------------------------------------- table inet


def _inet_table(networks: list[Network], settings: FirewallSettings) -> Table:
    sets: tuple[NamedSet, ...] = (
        NamedSet(_MAP_ADDR, "ipv4_addr . inet_proto . inet_service", (), _TARGET),
        NamedSet(_MAP_ANY, "inet_proto . inet_service", (), _TARGET),
    )
    dual = any(n.ipv6 for n in networks)  # an IPv4-only host's ruleset has no IPv6 maps at all
    if dual:
        sets += (
            NamedSet(_MAP_ADDR6, "ipv6_addr . inet_proto . inet_service", (), _TARGET6),
            NamedSet(_MAP_ANY6, "inet_proto . inet_service", (), _TARGET6),
            NamedSet(_ROUTED_OPEN, "ipv6_addr . inet_proto . inet_service", ()),
        )
    chains = (
        Chain("prerouting", tuple(_prerouting(networks, settings, dual)), Hook("nat", "prerouting", "dstnat")),
        Chain("output", tuple(_output(networks, settings, dual)), Hook("nat", "output", OUTPUT_NAT_PRIORITY)),
        Chain("postrouting", tuple(_postrouting(networks)), Hook("nat", "postrouting", "srcnat")),
        Chain("forward", tuple(_forward(networks, dual)), Hook("filter", "forward", "filter")),
        Chain("input", tuple(_input(networks, settings)), Hook("filter", "input", "filter")),
    )
    return Table("inet", settings.table, sets, chains)


def _inet_elements(published: list[Published]) -> dict[str, tuple[str, ...]]:
    return {
        _MAP_ADDR: _addr_elements(published),
        _MAP_ANY: _any_elements(published),
        _MAP_ADDR6: _addr6_elements(published),
        _MAP_ANY6: _any6_elements(published),
        _ROUTED_OPEN: _routed_elements(published),
    }


_TARGET = "ipv4_addr . inet_service"
_TARGET6 = "ipv6_addr . inet_service"


def _addr6_elements(published: list[Published]) -> tuple[str, ...]:
    return tuple(
        f"{p.mapping.host_ip} . {p.mapping.protocol} . {p.mapping.host_port} : {p.target6} . {p.mapping.guest_port}"
        for p in published
        if p.ipv6 and p.mapping.host_ip not in (ANY, ANY6, LOOPBACK6)  # [::1] is relayed: reconcile/proxy.py
    )


def _routed_elements(published: list[Published]) -> tuple[str, ...]:
    found = {
        f"{p.target6} . {p.mapping.protocol} . {p.mapping.guest_port}"
        for p in published
        if p.routed6 and p.ipv6 and p.mapping.host_ip != LOOPBACK6
    }
    return tuple(sorted(found))


def _any6_elements(published: list[Published]) -> tuple[str, ...]:
    return tuple(
        f"{p.mapping.protocol} . {p.mapping.host_port} : {p.target6} . {p.mapping.guest_port}"
        for p in published
        if p.ipv6 and p.mapping.host_ip in (ANY, ANY6)
    )


def _addr_elements(published: list[Published]) -> tuple[str, ...]:
    return tuple(
        f"{p.mapping.host_ip} . {p.mapping.protocol} . {p.mapping.host_port} : {p.target} . {p.mapping.guest_port}"
        for p in published
        if p.mapping.host_ip != ANY and p.mapping.host_ip.version == 4 and p.target is not None
    )


def _any_elements(published: list[Published]) -> tuple[str, ...]:
    return tuple(
        f"{p.mapping.protocol} . {p.mapping.host_port} : {p.target} . {p.mapping.guest_port}"
        for p in published
        if p.mapping.host_ip == ANY and p.target is not None
    )


_DNAT_ADDR = f"dnat ip to ip daddr . meta l4proto . th dport map @{_MAP_ADDR}"
_DNAT_ANY = f"dnat ip to meta l4proto . th dport map @{_MAP_ANY}"
_DNAT_ADDR6 = f"dnat ip6 to ip6 daddr . meta l4proto . th dport map @{_MAP_ADDR6}"
_DNAT_ANY6 = f"dnat ip6 to meta l4proto . th dport map @{_MAP_ANY6}"


def _published6() -> Iterator[Rule]:
    """IPv6 has no route_localnet: traffic to ::1 cannot be DNAT'd out of the host (the kernel drops packets from
    ::1 on any other interface), so loopback stays out of these rules (reconcile/ports.py proxies [::1])."""
    yield Rule((f"ip6 daddr != {LOOPBACK6}",), _DNAT_ADDR6, "published on one ipv6 address")
    yield Rule(("fib daddr type local", f"ip6 daddr != {LOOPBACK6}"), _DNAT_ANY6, "published on all ipv6 addresses")


def _prerouting(networks: list[Network], settings: FirewallSettings, dual: bool = False) -> Iterator[Rule]:
    for n in _ipv4(networks):
        for proto in ("udp", "tcp"):
            yield Rule(
                (f"iifname {quote(n.bridge)}", f"ip daddr {n.gateway}", f"{proto} dport {DNS}"),
                f"redirect to :{settings.dns_port}",
                "dns" if proto == "udp" else "",
            )
    for n in networks:
        if n.gateway6 is not None:
            # dnat, not redirect: IPv6 redirect picks some address of the interface, we want the gateway's.
            for proto in ("udp", "tcp"):
                yield Rule(
                    (f"iifname {quote(n.bridge)}", f"ip6 daddr {n.gateway6}", f"{proto} dport {DNS}"),
                    f"dnat ip6 to [{n.gateway6}]:{settings.dns_port}",
                    "dns over ipv6" if proto == "udp" else "",
                )
    # A lookup miss in a map ends the rule without a match, so each map costs one rule whatever its size.
    yield Rule((f"ip daddr != {LOOPBACK}",), _DNAT_ADDR, "published on one address")
    yield Rule(("fib daddr type local", f"ip daddr != {LOOPBACK}"), _DNAT_ANY, "published on all addresses")
    if dual:
        yield from _published6()


def _output(networks: list[Network], settings: FirewallSettings, dual: bool = False) -> Iterator[Rule]:
    # redirect on the output hook would rewrite to 127.0.0.1, where the DNS server does not listen.
    for n in _ipv4(networks):
        for proto in ("udp", "tcp"):
            yield Rule(
                (f"ip daddr {n.gateway}", f"{proto} dport {DNS}"),
                f"dnat ip to {n.gateway}:{settings.dns_port}",
                "host queries the gateway" if proto == "udp" else "",
            )
    for n in networks:
        if n.gateway6 is not None:
            for proto in ("udp", "tcp"):
                yield Rule(
                    (f"ip6 daddr {n.gateway6}", f"{proto} dport {DNS}"),
                    f"dnat ip6 to [{n.gateway6}]:{settings.dns_port}",
                    "host queries the gateway over ipv6" if proto == "udp" else "",
                )
    yield Rule((), _DNAT_ADDR, "host to a port published on one address")
    yield Rule(("fib daddr type local",), _DNAT_ANY, "host to a port published on all addresses")
    if dual:
        yield from _published6()


def _postrouting(networks: list[Network]) -> Iterator[Rule]:
    for n in networks:
        if n.internal:
            continue
        out = f"oifname {quote(n.bridge)}"
        if n.subnet is not None:
            yield Rule(("ct status dnat", f"ip saddr {LOOPBACK}", out), "masquerade", "host via localhost")
            yield Rule(("ct status dnat", f"ip saddr {n.subnet}", out), "masquerade", "hairpin")
            if n.masquerade:
                yield Rule((f"ip saddr {n.subnet}", f"oifname != {quote(n.bridge)}"), "masquerade", "egress")
        if n.subnet6 is not None:
            yield Rule(("ct status dnat", f"ip6 saddr {n.subnet6}", out), "masquerade", "hairpin over ipv6")
            if n.masquerade and not n.routed6:
                yield Rule((f"ip6 saddr {n.subnet6}", f"oifname != {quote(n.bridge)}"), "masquerade", "egress (nat66)")


def _forward(networks: list[Network], dual: bool = False) -> Iterator[Rule]:
    """Rules grouped by kind, not by network: every 'into bridge X' drop must come before any egress accept,
    or traffic from bridge A to bridge B would be accepted as A's egress."""
    yield Rule(("ct state established,related",), "accept")
    for n in networks:
        if n.internal:
            b = quote(n.bridge)
            yield Rule((f"iifname {b}", f"oifname != {b}"), "drop", "internal: nothing out")
            yield Rule((f"oifname {b}", f"iifname != {b}"), "drop", "internal: nothing in")
    for n in networks:
        yield from _same_bridge(n)
    for n in networks:
        if not n.internal:
            yield Rule((f"oifname {quote(n.bridge)}", "ct status dnat"), "accept", "published ports")
    for n in networks:
        if n.routed6 and n.subnet6 is not None and not n.internal:
            # gateway_mode_ipv6=routed: the subnet is reachable as it is; Docker lets ICMPv6 in (ping, PMTU).
            yield Rule((f"oifname {quote(n.bridge)}", f"ip6 daddr {n.subnet6}", "meta l4proto ipv6-icmp"), "accept",
                       "routed ipv6: icmp in")  # fmt: skip
    if dual:
        # Docker's routed mode: a published port is open on the workload's own IPv6 address (no DNAT needed).
        yield Rule((f"ip6 daddr . meta l4proto . th dport @{_ROUTED_OPEN}",), "accept", "routed ipv6: published ports")
    for n in networks:
        yield Rule((f"oifname {quote(n.bridge)}",), "drop", "nothing else in, from other bridges or hosts")
    for n in networks:
        if not n.internal:
            yield Rule((f"iifname {quote(n.bridge)}",), "accept", "egress")


def _same_bridge(n: Network) -> Iterator[Rule]:
    """br_netfilter passes bridged frames through this hook with iifname == oifname == the bridge."""
    both = (f"iifname {quote(n.bridge)}", f"oifname {quote(n.bridge)}")
    if n.icc:
        yield Rule(both, "accept", "icc")
        return
    if not n.internal:
        yield Rule((*both, "ct status dnat"), "accept", "published ports stay reachable without icc")
    yield Rule(both, "drop", "icc disabled")


def _input(networks: list[Network], settings: FirewallSettings) -> Iterator[Rule]:
    bridges = [quote(n.bridge) for n in networks]
    if bridges:
        # Only the original direction: replies to the host's own localhost:P connections (de-NATed back to
        # 127.0.0.1 before this hook) come in through the bridge too.
        yield Rule(
            (f"iifname {anonymous_set(bridges)}", f"ip daddr {LOOPBACK}", "ct direction original"),
            "drop",
            "route_localnet",
        )
        # The DNS server binds the gateways, but Linux accepts traffic for a local address on any interface:
        # without this, a LAN neighbour routing to a gateway gets an open resolver and our names.
        yield Rule(
            (
                f"iifname != {anonymous_set([*bridges, quote('lo')])}",
                f"meta l4proto {{ tcp, udp }} th dport {settings.dns_port}",
            ),
            "drop",
            "dns only for workloads and this host",
        )
    for n in networks:
        if n.internal or not settings.workloads_reach_host:
            yield from _host_closed(n, settings)


def _host_closed(n: Network, settings: FirewallSettings) -> Iterator[Rule]:
    b = f"iifname {quote(n.bridge)}"
    dns_ports = anonymous_set(str(p) for p in sorted({DNS, settings.dns_port}))
    yield Rule((b, "ct state established,related"), "accept")
    if n.gateway is not None:
        yield Rule((b, f"ip daddr {n.gateway}", "meta l4proto { tcp, udp }", f"th dport {dns_ports}"), "accept",
                   "dns")  # fmt: skip
        yield Rule((b, f"ip daddr {n.gateway}", "icmp type echo-request"), "accept", "ping the gateway")
    if n.gateway6 is not None:
        yield Rule(
            (b, f"ip6 daddr {n.gateway6}", "meta l4proto { tcp, udp }", f"th dport {dns_ports}"),
            "accept",
            "dns over ipv6",
        )
        yield Rule((b, "icmpv6 type { echo-request, nd-neighbor-solicit, nd-neighbor-advert }"), "accept",
                   "ping the gateway, neighbour discovery")  # fmt: skip
    yield Rule((b,), "drop", "no other host services")


# ----------------------------------------------------------------------------------------------- table bridge


def _bridge_table(settings: FirewallSettings) -> Table:
    sets = (
        NamedSet("ports", "ifname", ()),
        NamedSet("port_macs", "ifname . ether_addr", ()),
        NamedSet("port_ips", "ifname . ipv4_addr", ()),
        NamedSet("ports6", "ifname", ()),
        NamedSet("port_ip6s", "ifname . ipv6_addr", ()),
        # The target of a neighbour advertisement, as nft 1.0.6 reads it: raw bits (it has no `icmpv6 taddr`).
        NamedSet("port_nd_targets", f"typeof iifname . {_ND_TARGET}", ()),
        # The one link-layer address option a port's neighbour discovery may carry: length 1 (8 octets), its MAC.
        NamedSet("port_nd_lladdrs", f"typeof iifname . {_ND_LLADDR}", ()),
    )
    chains = (
        Chain("spoof", _SPOOF),
        Chain(
            "forward",
            (Rule(("iifname @ports",), "jump spoof"),),
            Hook("filter", "forward", "filter"),
        ),
        Chain("input", (Rule(("iifname @ports",), "jump spoof"),), Hook("filter", "input", "filter")),
    )
    return Table("bridge", settings.table, sets, chains)


def _bridge_elements(endpoints: list[Endpoint]) -> dict[str, tuple[str, ...]]:
    """Each endpoint's host port with its MAC and addresses (`endpoints`: on existing networks, in name order)."""
    ports = tuple(quote(e.host_ifname) for e in endpoints)  # quoted once: this runs per endpoint
    return {
        "ports": ports,
        "port_macs": tuple(f"{port} . {e.mac.lower()}" for port, e in zip(ports, endpoints, strict=True)),
        "port_ips": tuple(f"{port} . {e.ip}" for port, e in zip(ports, endpoints, strict=True) if e.ip is not None),
        "ports6": tuple(quote(e.host_ifname) for e in endpoints if e.ip6 is not None),
        "port_ip6s": _ip6_elements(endpoints, str),
        "port_nd_targets": _ip6_elements(endpoints, _hex),
        "port_nd_lladdrs": tuple(
            f"{quote(e.host_ifname)} . 0x01{e.mac.lower().replace(':', '')}" for e in endpoints if e.ip6 is not None
        ),
    }


_ND_TARGET = "@th,64,128"  # RFC 4861 4.4: the target address follows type, code, checksum and 32 flag bits
# RFC 4861 4.6.1: an option's length (in 8 octets) and the MAC it carries, after the option type. Options start
# after the target in solicitations and advertisements (octet 24), after 4 reserved octets in router solicitations.
_ND_LLADDR, _RS_LLADDR = "@th,200,56", "@th,72,56"


def link_local(mac: str) -> IPv6Address:
    """The modified EUI-64 link-local address (RFC 4291 appendix A) the kernel gives an interface with `mac`."""
    octets = [int(part, 16) for part in mac.split(":")]
    eui = bytes([octets[0] ^ 0x02, *octets[1:3], 0xFF, 0xFE, *octets[3:6]])
    return IPv6Address(b"\xfe\x80" + bytes(6) + eui)


def _hex(address: IPv6Address) -> str:
    return f"0x{int(address):032x}"


def _ip6_elements(endpoints: list[Endpoint], show: Callable[[IPv6Address], str]) -> tuple[str, ...]:
    """Each dual-stack port with its own addresses: its IPv6 address and its link-local one."""
    return tuple(
        f"{quote(e.host_ifname)} . {show(address)}"
        for e in endpoints
        if e.ip6 is not None
        for address in (e.ip6, link_local(e.mac))
    )


# A guest controls its NIC; these make its source MAC and IP addresses trustworthy (DNS scoping relies on it).
_SPOOF = (
    Rule(("ether type != { ip, arp, ip6 }",), "drop", "ipv4, arp and ipv6 only"),
    Rule(("iifname . ether saddr != @port_macs",), "drop", "forged mac"),
    Rule(("ether type ip", "iifname . ip saddr != @port_ips"), "drop", "forged ip"),
    Rule(("ether type arp", "iifname . arp saddr ether != @port_macs"), "drop", "forged arp sender mac"),
    Rule(("ether type arp", "iifname . arp saddr ip != @port_ips"), "drop", "forged arp sender ip"),
    Rule(("ether type ip6", "iifname != @ports6"), "drop", "ipv6 only from dual-stack endpoints"),
    Rule(("icmpv6 type { nd-router-advert, nd-redirect }",), "drop", "guests are no routers"),
    # The unspecified source is only for duplicate address detection (RFC 4862 5.4.2) and its MLD report.
    Rule(("ip6 saddr ::", "icmpv6 type != { nd-neighbor-solicit, mld2-listener-report }"), "drop", "unspecified source"),
    Rule(("ip6 saddr != ::", "iifname . ip6 saddr != @port_ip6s"), "drop", "forged ipv6"),
    Rule(("icmpv6 type nd-neighbor-advert", f"iifname . {_ND_TARGET} != @port_nd_targets"), "drop",
         "forged neighbour advertisement"),
    # The link-layer address option is what the neighbour's cache learns (RFC 4861 7.2.3-7.2.5, 6.2.6): as the
    # ARP sender MAC, only the port's own. Options may come in any order, so a message carries none or just that
    # one (its length says which); duplicate address detection (source ::) carries none by rule (7.1.1).
    Rule(("ip6 saddr != ::", "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert }", "ip6 length != { 24, 32 }"),
         "drop", "neighbour discovery options other than one link-layer address"),
    Rule(("ip6 saddr != ::", "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert }", "ip6 length 32",
          f"iifname . {_ND_LLADDR} != @port_nd_lladdrs"), "drop", "forged neighbour link-layer address"),
    Rule(("icmpv6 type nd-router-solicit", "ip6 length != { 8, 16 }"), "drop",
         "router solicitation options other than one link-layer address"),
    Rule(("icmpv6 type nd-router-solicit", "ip6 length 16", f"iifname . {_RS_LLADDR} != @port_nd_lladdrs"), "drop",
         "forged router solicitation link-layer address"),
)  # fmt: skip


# ------------------------------------------------------------------------------------------- other tables

# Hooks that traffic to, from and through our bridges passes.
_OUR_HOOKS = frozenset({"prerouting", "input", "forward", "output", "postrouting"})
_OUR_FAMILIES = frozenset({"ip", "inet", "bridge"})


def foreign_drops(ruleset: str, settings: FirewallSettings | None = None) -> list[str]:
    """Warnings for base chains of other tables that drop by policy on a hook our traffic passes (`ruleset`:
    `nft -j list ruleset`). A drop in any table is final whatever we accept, e.g. Docker's `filter FORWARD`
    policy DROP (iptables-nft shows it as `table ip filter`). Pure, so the rules are unit-tested."""
    table = (settings or FirewallSettings()).table
    found = []
    for item in json.loads(ruleset).get("nftables", []):
        chain = item.get("chain")
        if not isinstance(chain, dict) or chain.get("policy") != "drop":
            continue
        family, owner, hook = chain.get("family"), chain.get("table"), chain.get("hook")
        if family in _OUR_FAMILIES and hook in _OUR_HOOKS and owner != table:
            found.append(
                f"table {family} {owner} chain {chain.get('name')} (hook {hook}) has policy drop: it can drop "
                f"workload traffic that table inet {table} accepts; see docs/troubleshooting.md"
            )
    return found


def check_foreign_drops(settings: FirewallSettings | None = None) -> list[str]:
    """Read the ruleset of the calling thread's namespace and log a warning per foreign drop policy (start-up)."""
    try:
        ruleset = libnft.run("list ruleset", json=True)
    except libnft.NftError as exc:
        raise KernelError(f"list ruleset: {exc}") from exc
    warnings = foreign_drops(ruleset, settings)
    for warning in warnings:
        log.warning("%s", warning)
    return warnings


# --------------------------------------------------------------------------------------------------- effects


def apply(text: str, *, dry_run: bool = False) -> None:
    """Run a rendered script as one transaction in the calling thread's network namespace (`dry_run`: only
    validate, like `nft -c`). On failure the KernelError quotes nft's error and the numbered lines it names."""
    try:
        libnft.run(text, dry_run=dry_run)
    except libnft.NftError as exc:
        located = _locate(text) or exc
        raise KernelError(f"apply firewall: {located}\n{numbered(text, located)}") from exc


def _locate(text: str) -> libnft.NftError | None:
    """Errors from a buffer carry no line numbers; a dry run of the same text from a file does (failure path
    only, so the extra work costs nothing when all is well)."""
    with tempfile.NamedTemporaryFile("w", prefix="hypr-", suffix=".nft") as file:
        file.write(text)
        file.flush()
        try:
            libnft.run_file(file.name, dry_run=True)
        except libnft.NftError as exc:
            return exc
    return None


class Applier:
    """Applies the tables of a snapshot: the whole script the first time and after `forget()` (a full reconcile)
    or a failure; otherwise only what the rows that changed since the snapshot it applied last add and take away
    (set and map elements, and the chains when a network came or went), planned from those rows alone: the cost
    of an operation does not grow with the workloads that exist. If the kernel drifted (someone deleted our
    table), the update is refused as a whole and the full script is applied instead."""

    def __init__(self, settings: FirewallSettings | None = None) -> None:
        self.settings = settings or FirewallSettings()
        self.applied: Snapshot | None = None
        self.shape: tuple[Table, Table] = skeleton([], self.settings)  # chains and empty sets, as applied
        self.owners: dict[PortKey, str] = {}  # published key -> the workload holding it, as applied

    def forget(self) -> None:
        self.applied = None

    def __call__(self, snapshot: Snapshot) -> None:
        previous, self.applied = self.applied, None
        text = None if previous is None else self._update(previous, snapshot)
        if text:
            try:
                libnft.run(text)
            except libnft.NftError as exc:
                log.warning("firewall update refused (%s); replacing the tables", str(exc).strip().splitlines()[0])
                text = None
        if text is None:
            wanted, owners = _whole(snapshot, self.settings)
            apply(script(wanted))
            self.shape, self.owners = skeleton(_sorted_networks(snapshot), self.settings), owners
        self.applied = snapshot

    def _update(self, previous: Snapshot, snapshot: Snapshot) -> str | None:
        """The script from `previous` to `snapshot` ("": nothing to do; None: apply the whole tables). Raises
        Conflict, as `published_ports` does, when a changed workload's port is held by another."""
        change = changes(previous, snapshot)
        before = {n.id: n for n in previous.networks}
        after = {n.id: n for n in snapshot.networks}
        if any(nid in before and nid in after for nid in change.networks):
            return None  # a network changed in place (never by an operation): every endpoint on it could change
        shape = skeleton(_sorted_networks(snapshot), self.settings) if change.networks else self.shape
        owners = dict(self.owners)
        gone: dict[tuple[str, str], list[str]] = {}
        added: dict[tuple[str, str], list[str]] = {}
        fresh: list[Published] = []
        for workload_id in sorted(change.workloads):
            old_published, old_elements = _part(previous, before, workload_id)
            published, elements = _part(snapshot, after, workload_id)
            for key in (k for p in old_published for k in p.keys):
                if owners.get(key) == workload_id:
                    del owners[key]
            fresh += published
            for where, items in old_elements.items():
                gone.setdefault(where, []).extend(items)
            for where, items in elements.items():
                added.setdefault(where, []).extend(items)
        for entry in sorted(fresh, key=lambda p: _mapping_order(p.mapping)):
            if any(key in owners for key in entry.keys):
                raise _taken(entry.mapping)
            owners.update(dict.fromkeys(entry.keys, entry.mapping.workload_id))
        text = update(_fill_both(self.shape, gone), _fill_both(shape, added))
        if text is not None:
            self.shape, self.owners = shape, owners
        return text


def _part(
    snapshot: Snapshot, networks: Mapping[str, Network], workload_id: str
) -> tuple[list[Published], dict[tuple[str, str], tuple[str, ...]]]:
    """One workload's published ports and its elements of both tables, by (family, set name)."""
    published = published_of(snapshot, networks, workload_id)
    endpoints = sorted(
        (e for e in snapshot.endpoints_of(workload_id) if e.network_id in networks), key=lambda e: e.host_ifname
    )
    elements = {("inet", name): items for name, items in _inet_elements(published).items()}
    elements.update({("bridge", name): items for name, items in _bridge_elements(endpoints).items()})
    return published, elements


def _fill_both(shape: tuple[Table, Table], elements: Mapping[tuple[str, str], list[str]]) -> tuple[Table, ...]:
    return tuple(
        _fill(t, {name: tuple(items) for (family, name), items in elements.items() if family == t.family})
        for t in shape
    )


def remove(settings: FirewallSettings | None = None) -> None:
    """Delete both tables; absent tables count as removed (declaring first makes delete unable to miss)."""
    table = (settings or FirewallSettings()).table
    text = "".join(f"table {family} {table} {{}}\ndelete table {family} {table}\n" for family in ("inet", "bridge"))
    try:
        libnft.run(text)
    except libnft.NftError as exc:
        raise KernelError(f"remove firewall: {exc}") from exc


_CONTEXT_LINES = 2


def numbered(text: str, error: Exception) -> str:
    """The script lines nft complains about (`<cmdline>:LINE:COL`), numbered; the whole script if none is named."""
    lines = text.splitlines()
    cited = {int(m) for m in re.findall(r"^[^:\s]*:(\d+):\d+", str(error), flags=re.MULTILINE)}
    if cited:
        keep = {i for c in cited for i in range(c - _CONTEXT_LINES, c + _CONTEXT_LINES + 1) if 1 <= i <= len(lines)}
    else:
        keep = set(range(1, len(lines) + 1))
    return "\n".join(f"{i:5d}{'>' if i in cited else ' '} {lines[i - 1]}" for i in sorted(keep))
