"""Record tables and the lookup rules: a pure function of (records, asker, name, type). No I/O.

Askers are told apart by source IP (anti-spoofing makes it trustworthy). An endpoint address stands for its
workload and all the networks that workload is attached to; any other address (a gateway, the host, an unknown
source) is "the host", which gets `<name>.hypr` only.

Rules, in order:
1. `<name>.hypr` (and the bare zone `hypr`): authoritative. A known workload answers for everyone, with its address
   on a network it shares with the asker (lowest attach position first), else its first endpoint's address.
   Anything else under `.hypr` is NXDOMAIN and is never forwarded.
2. `in-addr.arpa`: PTR `<name>.hypr` for every endpoint address; unknown addresses inside a hypr subnet are
   NXDOMAIN (private reverse lookups do not leak upstream); other reverse names follow rule 4.
3. Bare names (workload name, its 12-character short ID, its aliases), each also as `<name>.<network name>`:
   only for askers with an endpoint on a network the target is attached to, with the target's address(es) on the
   shared network(s). One alias on several workloads gives all of their addresses.
4. Everything else is forwarded, except: askers attached only to internal networks get NXDOMAIN (Podman's choice:
   NXDOMAIN makes stub resolvers stop at once, where REFUSED sends them on to the next server), and single-label
   names asked by a workload get NXDOMAIN (a short name is never sent to the internet, compose#3185).

Known names with a type we do not hold (AAAA, MX, ...) get NODATA: NOERROR with no answer.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from hypr.models import Endpoint, Snapshot, Workload

ZONE = "hypr"
# Short, because a workload can be restarted or re-attached with another address and stub resolvers cache;
# 5 s keeps dnsperf-style bursts cheap for clients while a change is seen almost at once.
TTL = 5
SHORT_ID = 12
REVERSE_SUFFIX = ".in-addr.arpa"

Scope = frozenset[str]  # ids of the networks an asker is attached to; empty for the host
HOST: Scope = frozenset()


class Outcome(enum.Enum):
    NODATA = "nodata"  # the name exists, not with this type
    NXDOMAIN = "nxdomain"  # authoritative: no such name
    FORWARD = "forward"  # not ours: ask the upstream resolvers
    REFUSED = "refused"  # we will not answer this (unsupported class)


@dataclass(frozen=True)
class Found:
    addresses: tuple[IPv4Address, ...] = ()  # A records, in table order (the server rotates them)
    pointers: tuple[str, ...] = ()  # PTR targets


Answer = Found | Outcome


@dataclass(frozen=True)
class Records:
    scopes: Mapping[str, Scope]  # endpoint address (text, as sockets report it) -> the asker's networks
    hypr: Mapping[str, tuple[tuple[str, IPv4Address], ...]]  # workload name -> (network id, address) by position
    scoped: Mapping[str, Mapping[str, tuple[IPv4Address, ...]]]  # network id -> name -> addresses
    reverse: Mapping[str, str]  # "2.0.88.10.in-addr.arpa" -> "web.hypr"
    subnets: tuple[IPv4Network, ...]  # every hypr subnet: reverse names inside them are ours
    internal: frozenset[str]  # ids of internal networks

    def scope_of(self, asker: IPv4Address | str) -> Scope:
        return self.scopes.get(str(asker), HOST)


EMPTY = Records(scopes={}, hypr={}, scoped={}, reverse={}, subnets=(), internal=frozenset())


def _published(snapshot: Snapshot) -> list[Workload]:
    # Only running workloads have names, like Docker: a created or exited one keeps its endpoint rows (and
    # addresses) but must not be found.
    return [w for w in snapshot.workloads if w.state == "running"]


def _bare_names(workload: Workload, endpoint: Endpoint) -> set[str]:
    names = {workload.name, workload.id[:SHORT_ID], *endpoint.aliases}
    return {n.lower().rstrip(".") for n in names if n}


def build_records(snapshot: Snapshot) -> Records:
    network_names = {n.id: n.name.lower() for n in snapshot.networks}
    scopes: dict[str, Scope] = {}
    hypr: dict[str, tuple[tuple[str, IPv4Address], ...]] = {}
    scoped: dict[str, dict[str, list[IPv4Address]]] = {n.id: {} for n in snapshot.networks}
    reverse: dict[str, str] = {}
    for workload in _published(snapshot):
        endpoints = [e for e in snapshot.endpoints_of(workload.id) if e.network_id in network_names]
        if not endpoints:
            continue
        own = workload.name.lower()
        hypr[own] = tuple((e.network_id, e.ip) for e in endpoints)
        networks = frozenset(e.network_id for e in endpoints)
        for endpoint in endpoints:
            scopes[str(endpoint.ip)] = networks
            reverse[reverse_name(endpoint.ip)] = f"{own}.{ZONE}"
            table = scoped[endpoint.network_id]
            bare = _bare_names(workload, endpoint)
            # `<name>.<network>` for every bare name: compose service names are aliases (`db.myproj_default`).
            names = bare | {f"{n}.{network_names[endpoint.network_id]}" for n in bare}
            for name in names:
                addresses = table.setdefault(name, [])
                if endpoint.ip not in addresses:
                    addresses.append(endpoint.ip)
    return Records(
        scopes=scopes,
        hypr=hypr,
        scoped={nid: {k: tuple(v) for k, v in names.items()} for nid, names in scoped.items()},
        reverse=reverse,
        subnets=tuple(n.subnet for n in snapshot.networks),
        internal=frozenset(n.id for n in snapshot.networks if n.internal),
    )


def reverse_name(address: IPv4Address) -> str:
    return address.reverse_pointer


def normalise(qname: str) -> str:
    return qname.lower().rstrip(".")


def lookup(records: Records, asker: IPv4Address | str, qname: str, qtype: str) -> Answer:
    return lookup_scoped(records, records.scope_of(asker), normalise(qname), qtype.upper())


def lookup_scoped(records: Records, scope: Scope, qname: str, qtype: str) -> Answer:
    """`lookup` for an asker already resolved to its scope; `qname` normalised, `qtype` upper-case."""
    if qname == ZONE or qname.endswith("." + ZONE):
        return _zone(records, scope, qname, qtype)
    if qname.endswith(REVERSE_SUFFIX):
        answer = _reverse(records, qname, qtype)
        if answer is not None:
            return answer
    if scope:
        addresses = _shared(records, scope, qname)
        if addresses:
            return _typed(qtype, Found(addresses=addresses))
        if scope <= records.internal or "." not in qname:
            return Outcome.NXDOMAIN
    return Outcome.FORWARD


def _typed(qtype: str, found: Found) -> Answer:
    wanted = "A" if found.addresses else "PTR"
    return found if qtype in (wanted, "ANY") else Outcome.NODATA


def _zone(records: Records, scope: Scope, qname: str, qtype: str) -> Answer:
    if qname == ZONE:
        return Outcome.NODATA
    endpoints = records.hypr.get(qname[: -len(ZONE) - 1])
    if not endpoints:
        return Outcome.NXDOMAIN
    shared = [ip for network, ip in endpoints if network in scope]
    return _typed(qtype, Found(addresses=(shared[0] if shared else endpoints[0][1],)))


def _reverse(records: Records, qname: str, qtype: str) -> Answer | None:
    target = records.reverse.get(qname)
    if target is not None:
        return _typed(qtype, Found(pointers=(target,)))
    address = _reverse_address(qname)
    if address is not None and any(address in subnet for subnet in records.subnets):
        return Outcome.NXDOMAIN
    return None


def _reverse_address(qname: str) -> IPv4Address | None:
    octets = qname[: -len(REVERSE_SUFFIX)].split(".")
    try:
        return IPv4Address(".".join(reversed(octets))) if len(octets) == 4 else None
    except ValueError:  # not an address (leading zeros, letters): not one of ours either
        return None


def _shared(records: Records, scope: Scope, qname: str) -> tuple[IPv4Address, ...]:
    found: list[IPv4Address] = []
    for network in sorted(scope):  # sorted: the same asker always sees the same base order
        for address in records.scoped.get(network, {}).get(qname, ()):
            if address not in found:
                found.append(address)
    return tuple(found)
