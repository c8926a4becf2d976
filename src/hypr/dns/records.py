"""Record tables and the lookup rules: a pure function of (records, asker, where the query arrived, name, type).

Askers are told apart by source IP (anti-spoofing makes it trustworthy). An endpoint address stands for its
workload and all the networks that workload is attached to. Any other asker gets a scope from `scope_for`:
- an unknown address inside the subnet of the network whose gateway the query arrived on (a workload whose record
  does not exist yet, a VM that is still booting, something else plugged into the bridge) asks as a member of that
  network, and of that network only (aardvark-dns's fallback to the listening network);
- everyone else (the host, whose own queries come from a gateway address; loopback; any other address; a query that
  arrived on an address that is no gateway) is "the host": no network at all.

Rules, in order:
0. A legacy link alias (`--link db:alias`) answers for the linking workload alone, with the linked workload's
   address on a network they share (else its first), while it runs.
1. `<name>.hypr` (and the bare zone `hypr`): authoritative. A known workload answers for everyone, with its address
   on a network it shares with the asker (lowest attach position first), else its first endpoint's address.
   Anything else under `.hypr` is NXDOMAIN and is never forwarded.
2. `in-addr.arpa` names inside a hypr subnet are ours, for everyone: PTR `<name>.hypr` for every endpoint address,
   NODATA for a name with records below it (`1.89.10.in-addr.arpa`), NXDOMAIN for the rest. Never forwarded:
   private reverse lookups do not leak. Other reverse names follow rule 5. `ip6.arpa` names inside a hypr IPv6
   subnet likewise (NODATA for any name shorter than an address).
3. Bare names (workload name, its 12-character short ID, its aliases), each also as `<name>.<network name>`:
   only for askers with a network the target is attached to, with the target's address(es) on the shared
   network(s). One alias on several workloads gives all of their addresses.
4. `X.<D>`, where D is one of the asker's search domains (its own `--dns-search`, else the host's) and X a name
   rule 3 gives that asker: answered as X is (stub resolvers such as busybox's nslookup only ask `peer.<domain>`
   for a bare `peer` when resolv.conf has a search list). Never forwarded. Other names under D follow rule 6.
5. A single-label name that rules 3-4 did not answer is NXDOMAIN, for every asker (a short name is never sent to
   the internet, compose#3185). The root name is not a single label: it is forwarded like any other.
6. Everything else is forwarded (to the asker's own `--dns` servers when it has some, else the daemon's), except
   for askers attached only to internal networks: NXDOMAIN (Podman's choice: NXDOMAIN makes stub resolvers stop at
   once, where REFUSED sends them on to the next server).

Addresses are A and AAAA records: an endpoint on a dual-stack network answers both, and its IPv6 source address
identifies it exactly as its IPv4 one does. Known names with a type we do not hold (MX, ..., or AAAA for a workload
without IPv6) get NODATA: NOERROR with no answer.

Only names that are DNS names are published: every label 1-63 characters of letters, digits, `-` and `_`, the
whole at most 253 characters (`valid_name`). A workload name, alias or network name that is not (too long, empty
labels, spaces, non-ASCII) gives no record of that form; everything else about the workload is published as usual.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from hypr.dns.upstream import Upstream
from hypr.models import Endpoint, Snapshot, Workload, changes

ZONE = "hypr"
# Short, because a workload can be restarted or re-attached with another address and stub resolvers cache;
# 5 s keeps dnsperf-style bursts cheap for clients while a change is seen almost at once.
TTL = 5
SHORT_ID = 12
REVERSE_SUFFIX = ".in-addr.arpa"
REVERSE6_SUFFIX = ".ip6.arpa"
MAX_NAME_TEXT = 253  # a name's text without the trailing dot: 255 bytes on the wire
_LABEL = re.compile(r"[a-z0-9_-]{1,63}\Z", re.ASCII)
UPSTREAM_PORT = 53


class Scope(frozenset[str]):
    """Who an asker is, for the lookup rules and for every reply cache: `networks`, the ids of the networks it
    speaks for (empty for the host); `search`, the search domains its resolver appends (normalised, in order); and
    `upstreams`, its own servers for forwarded names (None: the daemon's).

    The set's members are the network ids plus one tagged member per search domain and per upstream, so that two
    scopes are equal exactly when all three are, and the server's hot path hashes it in C (a frozenset caches its
    hash). Make them with `make_scope`."""

    __slots__ = ("links", "networks", "search", "upstreams")
    networks: frozenset[str]
    search: tuple[str, ...]
    upstreams: tuple[Upstream, ...] | None
    links: Mapping[str, tuple[IP, ...]]  # legacy --link aliases only this asker resolves


def make_scope(
    networks: Iterable[str] = (),
    search: Sequence[str] = (),
    upstreams: Sequence[Upstream] | None = None,
    links: Mapping[str, tuple[IP, ...]] | None = None,
) -> Scope:
    nets = frozenset(networks)
    members = set(nets)
    members.update(f"\x00search {i} {domain}" for i, domain in enumerate(search))
    if upstreams:
        members.update(f"\x00dns {i} {host} {port}" for i, (host, port) in enumerate(upstreams))
    members.update(f"\x00link {name} {' '.join(map(str, ips))}" for name, ips in (links or {}).items())
    scope = Scope(members)
    scope.networks = nets
    scope.search = tuple(search)
    scope.upstreams = tuple(upstreams) if upstreams else None
    scope.links = dict(links or {})
    return scope


HOST: Scope = make_scope()
Address = IPv4Address | str  # as sockets report it, or parsed


def valid_name(name: str) -> bool:
    """Whether `name` (lower case, no trailing dot) can be a DNS name we publish: labels of 1-63 letters, digits,
    `-` or `_`, at most 253 characters in all. Anything else is left out of DNS, never half-encoded."""
    return 0 < len(name) <= MAX_NAME_TEXT and all(_LABEL.match(label) for label in name.split("."))


def search_domains(domains: Iterable[str]) -> tuple[str, ...]:
    """Search domains as a stub resolver appends them, normalised (lower case, no trailing dot); ones that cannot
    be DNS names (and duplicates) are dropped: no query can end in them."""
    found: list[str] = []
    for domain in domains:
        normal = domain.lower().rstrip(".")
        if valid_name(normal) and normal not in found:
            found.append(normal)
    return tuple(found)


class Outcome(enum.Enum):
    NODATA = "nodata"  # the name exists, not with this type
    NXDOMAIN = "nxdomain"  # authoritative: no such name
    FORWARD = "forward"  # not ours: ask the upstream resolvers
    REFUSED = "refused"  # we will not answer this (unsupported class)


IP = IPv4Address | IPv6Address


@dataclass(frozen=True)
class Found:
    addresses: tuple[IP, ...] = ()  # A or AAAA records (one family), in table order (the server rotates them)
    pointers: tuple[str, ...] = ()  # PTR targets


Answer = Found | Outcome


@dataclass(frozen=True)
class Records:
    scopes: Mapping[str, Scope]  # endpoint address (text, as sockets report it) -> that asker's scope
    hypr: Mapping[str, tuple[tuple[str, IP], ...]]  # workload name -> (network id, address) by position, v4 then v6
    scoped: Mapping[str, Mapping[str, tuple[IP, ...]]]  # network id -> name -> addresses (both families)
    reverse: Mapping[str, str]  # "2.0.88.10.in-addr.arpa" (or a nibble ip6.arpa name) -> "web.hypr"
    subnets: tuple[IPv4Network, ...]  # every hypr subnet: reverse names inside them are ours
    internal: frozenset[str]  # ids of internal networks
    gateways: Mapping[str, tuple[str, IPv4Network | IPv6Network]] = field(
        default_factory=dict
    )  # gateway -> (id, subnet)
    reverse_inner: frozenset[str] = frozenset()  # "1.89.10.in-addr.arpa", ...: names with PTR records below them
    newcomers: Mapping[str, Scope] = field(default_factory=dict)  # network id -> scope of an unknown asker on it
    host_search: tuple[str, ...] = ()  # the host's search domains these tables were built with
    subnets6: tuple[IPv6Network, ...] = ()  # every hypr IPv6 subnet: ip6.arpa names inside them are ours


EMPTY = Records(scopes={}, hypr={}, scoped={}, reverse={}, subnets=(), internal=frozenset())


def scope_for(records: Records, asker: Address, arrived_on: Address | None) -> Scope:
    """Who `asker` is, for a query that arrived on the address `arrived_on` (None: not one of our gateways)."""
    known = records.scopes.get(str(asker))
    return known if known is not None else unknown_scope(records, str(asker), arrived_on)


def unknown_scope(records: Records, asker: str, arrived_on: Address | None) -> Scope:
    """The scope of an asker that is no endpoint: the network whose gateway the query arrived on when the asker's
    address lies inside that network's subnet (and is not a gateway: the host asks from those), else the host."""
    network = records.gateways.get(str(arrived_on)) if arrived_on is not None else None
    if network is None or asker in records.gateways:
        return HOST
    network_id, subnet = network
    try:
        address = ip_address(asker)
    except ValueError:
        return HOST
    if address.version != subnet.version or address not in subnet or address == subnet.network_address:
        return HOST
    if isinstance(subnet, IPv4Network) and address == subnet.broadcast_address:
        return HOST
    scope = records.newcomers.get(network_id)
    return scope if scope is not None else make_scope((network_id,), records.host_search)


def _published(snapshot: Snapshot) -> list[Workload]:
    # Only running workloads have names, like Docker: a created or exited one keeps its endpoint rows (and
    # addresses) but must not be found.
    return [w for w in snapshot.workloads if w.state == "running"]


def _bare_names(workload: Workload, endpoint: Endpoint) -> set[str]:
    """The names a workload answers to on one endpoint, as DNS names; those that cannot be are left out."""
    names = {workload.name, workload.id[:SHORT_ID], *endpoint.aliases}
    return {n for n in (name.lower().rstrip(".") for name in names if isinstance(name, str)) if valid_name(n)}


Links = dict[str, tuple[IP, ...]]  # a workload's legacy link aliases -> the linked workload's addresses


def _links(snapshot: Snapshot, workload: Workload, running: set[str]) -> Links:
    """Rule 0: a workload's legacy links (`--link db:alias`): the alias, for it alone, at the linked workload's
    address on a network they share (else its first), while that one runs (Docker's embedded DNS for links)."""
    mine = {e.network_id for e in snapshot.endpoints_of(workload.id)}
    found: dict[str, tuple[IP, ...]] = {}
    for target_id, alias in workload.links:
        endpoints = snapshot.endpoints_of(target_id)
        name = alias.lower().rstrip(".")
        if target_id in running and endpoints and valid_name(name):
            found[name] = _ips(next((e for e in endpoints if e.network_id in mine), endpoints[0]))[:1]
    return found


def own_upstreams(workload: Workload, gateways: Iterable[str]) -> tuple[Upstream, ...] | None:
    """A workload's `--dns` servers as upstreams (port 53), without our own gateways (the gateway is its only
    nameserver already: forwarding to it would be asking ourselves); None when none are left: the daemon's."""
    ours = set(gateways)
    found: list[Upstream] = []
    for server in workload.resolver.dns:
        try:
            address = str(ip_address(server.strip("[]")))
        except ValueError:
            continue  # validated when the workload was made; never let one bad row break the records
        if address not in ours and (address, UPSTREAM_PORT) not in found:
            found.append((address, UPSTREAM_PORT))
    return tuple(found) or None


def build_records(snapshot: Snapshot, host_search: Sequence[str] = ()) -> Records:
    """The record tables for `snapshot`. `host_search`: the host's resolv.conf search domains, which workloads
    without `--dns-search` have in their resolv.conf (and unknown askers are assumed to have)."""
    return RecordsBuilder().build(snapshot, host_search)


@dataclass(frozen=True)
class _Part:
    """One workload's share of the tables: its `<name>.hypr` entry, its scope, and per endpoint (network id, the
    names it answers to there, and per address of it, IPv4 then IPv6: the address, as text, its PTR name or ""
    when the workload's name is no DNS name)."""

    hypr: tuple[str, tuple[tuple[str, IP], ...]] | None
    scope: Scope
    endpoints: tuple[tuple[str, frozenset[str], tuple[tuple[IP, str, str], ...]], ...]


class RecordsBuilder:
    """`build_records`, kept current from the rows that changed: the daemon rebuilds the tables after every change,
    and re-deriving every workload's names, scope and PTR records (~30 us each), or even assembling the tables from
    cached parts, made that cost grow with the number of workloads.

    The first build (and any after the host's search list changed, a network changed in place, or a key that two
    workloads both claim was touched) is whole, and remembers each workload's part and who wrote each entry. The
    next ones copy the tables (dict copies, in C) and replace only the parts of the workloads that changed since
    the snapshot built last (`models.changes`): their entries are taken out and put in again, and a name several
    workloads answer to is re-assembled from its writers in snapshot order, as a whole build would."""

    def __init__(self) -> None:
        self.context: tuple[object, ...] = ()
        self.parts: dict[str, tuple[Workload, list[Endpoint], Links, _Part | None]] = {}
        self.last: tuple[Snapshot, Records] | None = None
        self.writers = _Writers()

    def build(self, snapshot: Snapshot, host_search: Sequence[str] = ()) -> Records:
        host = search_domains(host_search)
        records = None if self.last is None else self._update(self.last, snapshot, host)
        if records is None:
            records = self._whole(snapshot, host)
        self.last = (snapshot, records)
        return records

    def _whole(self, snapshot: Snapshot, host: tuple[str, ...]) -> Records:
        network_names, gateways, context = _context(snapshot, host)
        if context != self.context:
            self.context, self.parts = context, {}
        parts: dict[str, tuple[Workload, list[Endpoint], Links, _Part | None]] = {}
        writers = _Writers()
        interned: dict[Scope, Scope] = {}
        tables = _Tables({}, {}, {n.id: {} for n in snapshot.networks}, {})
        running = {w.id for w in _published(snapshot)}
        for workload in _published(snapshot):
            endpoints = [e for e in snapshot.endpoints_of(workload.id) if e.network_id in network_names]
            links = _links(snapshot, workload, running) if workload.links else {}  # other workloads' part in its scope
            known = self.parts.get(workload.id)
            if known is not None and known[0] is workload and known[1] == endpoints and known[2] == links:
                part = known[3]
            else:
                part = _part(workload, endpoints, network_names, host, gateways, links)
            parts[workload.id] = (workload, endpoints, links, part)
            if workload.links:
                writers.linkers.add(workload.id)
            if part is not None:
                tables.put(workload.id, part, writers, interned.setdefault(part.scope, part.scope))
                for network_id, names, _ips in part.endpoints:
                    for name in names:
                        _append_addresses(tables.scoped[network_id].setdefault(name, []), part, network_id, name)
                        writers.named.setdefault((network_id, name), []).append(workload.id)
        self.parts, self.writers = parts, writers
        tables.scoped = {nid: {k: tuple(v) for k, v in names.items()} for nid, names in tables.scoped.items()}
        return _records(snapshot, host, tables, writers)

    def _update(self, last: tuple[Snapshot, Records], snapshot: Snapshot, host: tuple[str, ...]) -> Records | None:
        """The tables for `snapshot` from the last ones and the changed rows; None: build them whole."""
        before, old = last
        if host != old.host_search:
            return None
        change = changes(before, snapshot)
        if not change.networks and not change.workloads:
            return old
        network_names, gateways, context = _context(snapshot, host)
        names_before: dict[str, str] = dict(self.context[1]) if len(self.context) > 1 else {}  # type: ignore[call-overload]
        if any(names_before.get(nid, name) != name for nid, name in network_names.items()):
            return None  # a network renamed in place (no operation does it)
        affected = set(change.workloads) | self.writers.linkers
        regateway = context[2] != self.context[2]  # a workload's own --dns servers are checked against the gateways
        if regateway:
            affected |= {w.id for w in snapshot.workloads if w.resolver.dns}
        writers = self.writers.copy()
        tables = _Tables(dict(old.scopes), dict(old.hypr), {}, dict(old.reverse))
        tables.scoped = {n.id: old.scoped.get(n.id, {}) for n in snapshot.networks}
        dirty: set[tuple[str, str]] = set()
        parts = self.parts
        running: set[str] | None = None  # (only workloads with legacy links need it)
        fresh: dict[str, tuple[Workload, list[Endpoint], Links, _Part | None] | None] = {}
        for workload_id in affected:
            writers.linkers.discard(workload_id)
            known = parts.get(workload_id)
            if known is not None and known[3] is not None and not tables.take(workload_id, known[3], writers, dirty):
                return None
            workload = snapshot.workload(workload_id) if snapshot.has_workload(workload_id) else None
            if workload is None or workload.state != "running":
                fresh[workload_id] = None
                continue
            endpoints = [e for e in snapshot.endpoints_of(workload_id) if e.network_id in network_names]
            links: Links = {}
            if workload.links:
                running = {w.id for w in _published(snapshot)} if running is None else running
                links = _links(snapshot, workload, running)
                writers.linkers.add(workload_id)
            same = known is not None and known[0] is workload and known[1] == endpoints and known[2] == links
            if known is not None and same and not (regateway and workload.resolver.dns):
                part = known[3]
            else:
                part = _part(workload, endpoints, network_names, host, gateways, links)
            fresh[workload_id] = (workload, endpoints, links, part)
        for workload_id, entry in fresh.items():
            if entry is not None and entry[3] is not None and not tables.give(workload_id, entry[3], writers, dirty):
                return None
        self.parts = {**parts, **{k: v for k, v in fresh.items() if v is not None}}
        for workload_id in (k for k, v in fresh.items() if v is None):
            self.parts.pop(workload_id, None)
        _reassemble(tables, dirty, writers, self.parts, snapshot)
        self.writers, self.context = writers, context  # (only now: a whole build after a refusal starts afresh)
        if change.networks:
            return _records(snapshot, host, tables, writers)  # what depends on the networks alone: O(networks)
        return replace(old, scopes=tables.scopes, hypr=tables.hypr, scoped=tables.scoped, reverse=tables.reverse,
                       reverse_inner=frozenset(writers.inner))  # fmt: skip


def _context(snapshot: Snapshot, host: tuple[str, ...]) -> tuple[dict[str, str], list[str], tuple[object, ...]]:
    """Network names, gateways, and what a workload's part depends on besides its own rows."""
    network_names = {n.id: n.name.lower().rstrip(".") for n in snapshot.networks}
    gateways = [str(n.gateway) for n in snapshot.networks if n.gateway]
    gateways += [str(n.gateway6) for n in snapshot.networks if n.gateway6]
    return network_names, gateways, (host, tuple(network_names.items()), tuple(gateways))


class _Writers:
    """Who wrote what in the tables: the workload behind each address, `<name>.hypr` and PTR name (a key two
    workloads claim is `contested`: the incremental path leaves it to a whole build), the workloads behind each
    scoped name, how many PTR names lie below each reverse zone name, and the workloads with legacy links."""

    def __init__(self) -> None:
        self.owner: dict[tuple[str, str], str] = {}  # ("scope" | "hypr" | "ptr", key) -> workload id
        self.contested: set[tuple[str, str]] = set()
        self.named: dict[tuple[str, str], list[str]] = {}  # (network id, name) -> workload ids
        self.inner: dict[str, int] = {}  # reverse zone name -> PTR names below it
        self.linkers: set[str] = set()

    def copy(self) -> _Writers:
        other = _Writers()
        other.owner, other.contested, other.inner = dict(self.owner), self.contested, dict(self.inner)
        other.named, other.linkers = dict(self.named), set(self.linkers)
        return other


@dataclass
class _Tables:
    scopes: dict[str, Scope]
    hypr: dict[str, tuple[tuple[str, IP], ...]]
    scoped: dict[str, Any]  # network id -> name -> addresses (lists while built whole, tuples once done)
    reverse: dict[str, str]

    def _keys(self, part: _Part) -> Iterator[tuple[str, str, object]]:
        """(table, key, value) of every unique-keyed entry of a part."""
        if part.hypr is not None:
            yield "hypr", part.hypr[0], part.hypr[1]
        for _network_id, _names, ips in part.endpoints:
            for _ip, text, pointer in ips:
                yield "scope", text, part.scope
                if part.hypr is not None:
                    yield "ptr", pointer, f"{part.hypr[0]}.{ZONE}"

    def _table(self, kind: str) -> dict[str, Any]:
        tables: dict[str, dict[str, Any]] = {"scope": self.scopes, "hypr": self.hypr, "ptr": self.reverse}
        return tables[kind]

    def put(self, workload_id: str, part: _Part, writers: _Writers, scope: Scope) -> None:
        """A whole build: later writers win, as before; a key written twice is contested. `scope`: the part's,
        interned (equal scopes are one object in the tables)."""
        for kind, key, value in self._keys(part):
            value = scope if kind == "scope" else value
            if (kind, key) in writers.owner:
                writers.contested.add((kind, key))
            elif kind == "ptr":
                _count_inner(writers.inner, key, 1)
            writers.owner[(kind, key)] = workload_id
            self._table(kind)[key] = value

    def take(self, workload_id: str, part: _Part, writers: _Writers, dirty: set[tuple[str, str]]) -> bool:
        """Take a part's entries out; False when one is contested."""
        for kind, key, _value in self._keys(part):
            if (kind, key) in writers.contested:
                return False
            if writers.owner.get((kind, key)) == workload_id:
                del writers.owner[(kind, key)]
                del self._table(kind)[key]
                if kind == "ptr":
                    _count_inner(writers.inner, key, -1)
        for network_id, names, _ips in part.endpoints:
            for name in names:
                writers.named[(network_id, name)] = [
                    w for w in writers.named.get((network_id, name), ()) if w != workload_id
                ]
                dirty.add((network_id, name))
        return True

    def give(self, workload_id: str, part: _Part, writers: _Writers, dirty: set[tuple[str, str]]) -> bool:
        """Put a part's entries in; False when another workload holds one of its keys."""
        for kind, key, value in self._keys(part):
            if writers.owner.get((kind, key), workload_id) != workload_id or (kind, key) in writers.contested:
                return False
            if kind == "ptr" and (kind, key) not in writers.owner:
                _count_inner(writers.inner, key, 1)
            writers.owner[(kind, key)] = workload_id
            self._table(kind)[key] = value
        for network_id, names, _ips in part.endpoints:
            for name in names:
                writers.named[(network_id, name)] = [*writers.named.get((network_id, name), ()), workload_id]
                dirty.add((network_id, name))
        return True


def _count_inner(inner: dict[str, int], pointer: str, by: int) -> None:
    """The names a PTR name lies below (`1.89.10.in-addr.arpa` for `2.1.89.10.in-addr.arpa`): rule 2's NODATA."""
    if not pointer.endswith(REVERSE_SUFFIX):
        return
    for i in (1, 2, 3):
        name = pointer.split(".", i)[i]
        count = inner.get(name, 0) + by
        if count > 0:
            inner[name] = count
        else:
            inner.pop(name, None)


def _append_addresses(addresses: list[IP], part: _Part, network_id: str, name: str) -> None:
    for endpoint_network, names, ips in part.endpoints:
        if endpoint_network == network_id and name in names:
            for ip, _text, _pointer in ips:
                if ip not in addresses:
                    addresses.append(ip)


def _reassemble(
    tables: _Tables, dirty: set[tuple[str, str]], writers: _Writers,
    parts: Mapping[str, tuple[Workload, list[Endpoint], Links, _Part | None]], snapshot: Snapshot,
) -> None:  # fmt: skip
    """Names whose writers changed, from their writers in snapshot order (the order a whole build appends in)."""
    order: dict[str, int] | None = None
    copied: set[str] = set()
    for network_id, name in dirty:
        if network_id not in tables.scoped:
            writers.named.pop((network_id, name), None)
            continue
        if network_id not in copied:
            tables.scoped[network_id] = dict(tables.scoped[network_id])
            copied.add(network_id)
        ids = writers.named.get((network_id, name), [])
        if len(ids) > 1:
            if order is None:
                order = {w.id: i for i, w in enumerate(snapshot.workloads)}
            ids.sort(key=order.__getitem__)
        addresses: list[IP] = []
        for workload_id in ids:
            part = parts[workload_id][3]
            if part is not None:
                _append_addresses(addresses, part, network_id, name)
        if addresses:
            tables.scoped[network_id][name] = tuple(addresses)
        else:
            tables.scoped[network_id].pop(name, None)
            writers.named.pop((network_id, name), None)


def _records(snapshot: Snapshot, host: tuple[str, ...], tables: _Tables, writers: _Writers) -> Records:
    return Records(
        scopes=tables.scopes,
        hypr=tables.hypr,
        scoped=tables.scoped,
        reverse=tables.reverse,
        subnets=tuple(n.subnet for n in snapshot.networks if n.subnet is not None),
        internal=frozenset(n.id for n in snapshot.networks if n.internal),
        gateways={
            **{str(n.gateway): (n.id, n.subnet) for n in snapshot.networks if n.gateway and n.subnet},
            **{str(n.gateway6): (n.id, n.subnet6) for n in snapshot.networks if n.gateway6 and n.subnet6},
        },
        reverse_inner=frozenset(writers.inner),
        newcomers={n.id: make_scope((n.id,), host) for n in snapshot.networks},
        host_search=host,
        subnets6=tuple(n.subnet6 for n in snapshot.networks if n.subnet6 is not None),
    )


def _part(
    workload: Workload, endpoints: list[Endpoint], network_names: Mapping[str, str], host: tuple[str, ...],
    gateways: list[str], links: Links,
) -> _Part | None:  # fmt: skip
    if not endpoints:
        return None
    own = workload.name.lower().rstrip(".")
    published = valid_name(f"{own}.{ZONE}")  # `<name>.hypr` and its PTR records only for a name that is a DNS name
    resolver = workload.resolver
    search = host if resolver.search is None else search_domains(resolver.search)
    scope = make_scope((e.network_id for e in endpoints), search, own_upstreams(workload, gateways), links)
    found = []
    for endpoint in endpoints:
        bare = _bare_names(workload, endpoint)
        # `<name>.<network>` for every bare name: compose service names are aliases (`db.myproj_default`).
        network = network_names[endpoint.network_id]
        names = bare | {f"{n}.{network}" for n in bare if valid_name(f"{n}.{network}")}
        ips = tuple((ip, str(ip), reverse_name(ip) if published else "") for ip in _ips(endpoint))
        found.append((endpoint.network_id, frozenset(names), ips))
    hypr = (own, tuple((e.network_id, ip) for e in endpoints for ip in _ips(e))) if published else None
    return _Part(hypr=hypr, scope=scope, endpoints=tuple(found))


def _ips(endpoint: Endpoint) -> tuple[IP, ...]:
    """An endpoint's addresses: IPv4 (none on an IPv6-only network), then IPv6 on a network that has it."""
    return tuple(ip for ip in (endpoint.ip, endpoint.ip6) if ip is not None)


def reverse_name(address: IP) -> str:
    return address.reverse_pointer


def normalise(qname: str) -> str:
    return qname.lower().rstrip(".")


def lookup(records: Records, asker: Address, arrived_on: Address | None, qname: str, qtype: str) -> Answer:
    """The answer for `asker` asking (`qname`, `qtype`) on the listening address `arrived_on` (a network's
    gateway; None or any other address for a listener that is no gateway)."""
    scope = scope_for(records, asker, arrived_on)
    return lookup_scoped(records, scope, normalise(qname), qtype.upper())


def lookup_scoped(records: Records, scope: Scope, qname: str, qtype: str) -> Answer:
    """`lookup` for an asker already resolved to its scope; `qname` normalised, `qtype` upper-case."""
    if qname == ZONE or qname.endswith("." + ZONE):
        return _zone(records, scope, qname, qtype)
    if qname.endswith(REVERSE_SUFFIX):
        answer = _reverse(records, qname, qtype)
        if answer is not None:
            return answer
    if qname.endswith(REVERSE6_SUFFIX):
        answer = _reverse6(records, qname, qtype)
        if answer is not None:
            return answer
    networks = scope.networks
    if scope.links and qname in scope.links:
        return _typed(qtype, Found(addresses=scope.links[qname]))
    if networks:
        addresses = _shared(records, networks, qname)
        if not addresses and scope.search:
            addresses = _searched(records, scope, qname)
        if addresses:
            return _typed(qtype, Found(addresses=addresses))
        if networks <= records.internal:
            return Outcome.NXDOMAIN
    if qname and "." not in qname:
        return Outcome.NXDOMAIN  # a bare name is never forwarded, whoever asks
    return Outcome.FORWARD


def _searched(records: Records, scope: Scope, qname: str) -> tuple[IP, ...]:
    """Rule 4: `X.<D>` for a search domain D of the asker's, answered as X when X is a name it may see."""
    for domain in scope.search:
        if len(qname) > len(domain) + 1 and qname.endswith(domain) and qname[-len(domain) - 1] == ".":
            addresses = _shared(records, scope.networks, qname[: -len(domain) - 1])
            if addresses:
                return addresses
    return ()


_FAMILY = {"A": 4, "AAAA": 6}


def _typed(qtype: str, found: Found) -> Answer:
    """The records of the asked type: A (IPv4), AAAA (IPv6), PTR; ANY gets the IPv4 ones (else the IPv6 ones).
    A name that has none of that type is NODATA."""
    if found.pointers:
        return found if qtype in ("PTR", "ANY") else Outcome.NODATA
    v4_first = 4 if any(a.version == 4 for a in found.addresses) else 6
    version = v4_first if qtype == "ANY" else _FAMILY.get(qtype, 0)
    picked = tuple(a for a in found.addresses if a.version == version)
    return Found(addresses=picked) if picked else Outcome.NODATA


def _zone(records: Records, scope: Scope, qname: str, qtype: str) -> Answer:
    """`<name>.hypr`: one address per family, on a network shared with the asker when there is one."""
    if qname == ZONE:
        return Outcome.NODATA
    endpoints = records.hypr.get(qname[: -len(ZONE) - 1])
    if not endpoints:
        return Outcome.NXDOMAIN
    chosen: list[IP] = []
    for version in (4, 6):
        family = [(network, ip) for network, ip in endpoints if ip.version == version]
        shared = [ip for network, ip in family if network in scope.networks]
        if shared or family:
            chosen.append(shared[0] if shared else family[0][1])
    return _typed(qtype, Found(addresses=tuple(chosen)))


def _reverse6(records: Records, qname: str, qtype: str) -> Answer | None:
    """ip6.arpa names (RFC 3596: one label per nibble, least significant first) inside a hypr IPv6 subnet are
    ours: PTR for an endpoint address, NODATA for a shorter name (records may lie below it), NXDOMAIN else."""
    target = records.reverse.get(qname)
    if target is not None:
        return _typed(qtype, Found(pointers=(target,)))
    labels = qname[: -len(REVERSE6_SUFFIX)].split(".")
    if not 0 < len(labels) <= 32 or not all(len(n) == 1 and n in "0123456789abcdef" for n in labels):
        return None
    nibbles = "".join(reversed(labels))
    prefix = IPv6Network((int(nibbles.ljust(32, "0"), 16), 4 * len(nibbles)))
    if not any(prefix.subnet_of(s) for s in records.subnets6):
        return None
    return Outcome.NODATA if len(labels) < 32 else Outcome.NXDOMAIN


def _reverse(records: Records, qname: str, qtype: str) -> Answer | None:
    """Ours when the name lies inside a hypr subnet, whatever is below it; None for other reverse names."""
    target = records.reverse.get(qname)
    if target is not None:
        return _typed(qtype, Found(pointers=(target,)))
    labels = qname[: -len(REVERSE_SUFFIX)].split(".")
    octets: list[int] = []
    for label in reversed(labels[-4:]):  # most significant first: `2.1.89.10` -> 10, 89, 1, 2
        if not label.isdigit() or not label.isascii() or int(label) > 255 or (len(label) > 1 and label[0] == "0"):
            break  # not an address label: the name is below the octets read so far
        octets.append(int(label))
    if not octets:
        return None
    prefix = IPv4Network((bytes(octets + [0] * (4 - len(octets))), 8 * len(octets)))
    if not any(prefix.subnet_of(subnet) for subnet in records.subnets):
        return None
    if len(octets) < 4 and len(octets) == len(labels) and qname in records.reverse_inner:
        return Outcome.NODATA  # e.g. `1.89.10.in-addr.arpa`: PTR records exist below it
    return Outcome.NXDOMAIN


def _shared(records: Records, networks: frozenset[str], qname: str) -> tuple[IP, ...]:
    found: list[IP] = []
    for network in sorted(networks):  # sorted: the same asker always sees the same base order
        for address in records.scoped.get(network, {}).get(qname, ()):
            if address not in found:
                found.append(address)
    return tuple(found)
