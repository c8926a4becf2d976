"""Address management, pure: pool validation, overlap checks and next-after-last allocation.

Nothing here touches the database or the kernel. Callers pass in what is in use; the database enforces that no
address is handed out twice (UNIQUE (network_id, ip)).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import AddressValueError, IPv4Address, IPv4Network, IPv6Address, IPv6Network, NetmaskValueError
from typing import TypeVar

from hypr.errors import Forbidden, InvalidParameter

AUTO_POOL_START = IPv4Network("10.89.0.0/16")
AUTO_POOL_END = IPv4Network("10.255.0.0/16")
OVERLAP = "invalid pool request: Pool overlaps with other one on this address space"


@dataclass(frozen=True)
class Pool:
    """One network's address space, with the addresses that are never handed out."""

    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None = None
    aux_addresses: Mapping[str, IPv4Address] = field(default_factory=dict)

    @property
    def reserved(self) -> frozenset[int]:
        fixed = {self.subnet.network_address, self.subnet.broadcast_address, self.gateway}
        return frozenset(int(a) for a in (*fixed, *self.aux_addresses.values()))

    @property
    def bounds(self) -> tuple[int, int]:
        """First and last address dynamic allocation may hand out (inclusive)."""
        space = self.ip_range or self.subnet
        return int(space.network_address), int(space.broadcast_address)

    @property
    def capacity(self) -> int:
        lo, hi = self.bounds
        return hi - lo + 1 - sum(1 for r in self.reserved if lo <= r <= hi)


# Ranges a bridge network can never use (RFC 6890 special-purpose blocks a host routes itself): loopback would
# masquerade the host's own localhost traffic, link-local is the host's (and clouds' metadata), multicast and the
# reserved block are not unicast, 0.0.0.0/8 is "this network".
SPECIAL = (
    (IPv4Network("0.0.0.0/8"), "'this network' (RFC 791)"),
    (IPv4Network("127.0.0.0/8"), "loopback (RFC 1122)"),
    (IPv4Network("169.254.0.0/16"), "link-local (RFC 3927)"),
    (IPv4Network("224.0.0.0/4"), "multicast (RFC 5771)"),
    (IPv4Network("240.0.0.0/4"), "reserved and broadcast (RFC 1112, RFC 919)"),
)


_Net = TypeVar("_Net", IPv4Network, IPv6Network)


def _cidr(text: str, kind: type[_Net], what: str) -> _Net:
    """`text` as a network of `kind` written in its canonical form (no host bits set), else Docker's error."""
    try:
        net = kind(text, strict=False)
    except (AddressValueError, NetmaskValueError, ValueError):
        raise InvalidParameter(f"invalid {what} {text}: invalid CIDR block notation") from None
    if "/" not in text:
        raise InvalidParameter(f"invalid {what} {text}: invalid CIDR block notation")
    try:
        kind(text)  # strict: refuses host bits, which the lenient parse above dropped
    except ValueError:
        raise InvalidParameter(f"invalid {what} {text}: it should be {net}") from None
    return net


def _subnet(text: str, kind: type[_Net], longest: int, special: Iterable[tuple[_Net, str]]) -> _Net:
    net = _cidr(text, kind, "subnet")
    if net.prefixlen > longest:
        raise InvalidParameter(f"invalid subnet {text}: a bridge network needs at least a /{longest}")
    for block, what in special:
        if net.overlaps(block):
            raise InvalidParameter(f"invalid subnet {text}: it overlaps {block}, {what}, which no network can use")
    return net


def parse_subnet(text: str) -> IPv4Network:
    return _subnet(text, IPv4Network, 30, SPECIAL)


def parse_ip_range(text: str, subnet: _Net) -> _Net:
    """An ip-range (`--ip-range`, IPAM `IPRange`) of either family, within `subnet`."""
    net = _cidr(text, type(subnet), "ip-range")
    if not net.subnet_of(subnet):
        raise InvalidParameter(f"invalid ip-range {text}: it should be within subnet {subnet}")
    return net


def parse_address(text: str, subnet: IPv4Network, what: str) -> IPv4Address:
    """An address that must lie inside `subnet`; `what` names it in the message ("gateway", "auxiliary address x")."""
    try:
        addr = IPv4Address(text)
    except AddressValueError:
        raise InvalidParameter(f"invalid {what} {text}: invalid address") from None
    if addr not in subnet:
        raise InvalidParameter(f"invalid {what} {text}: it should be within subnet {subnet}")
    if addr in (subnet.network_address, subnet.broadcast_address):
        kind = "network" if addr == subnet.network_address else "broadcast"
        raise InvalidParameter(f"invalid {what} {text}: it is the {kind} address of subnet {subnet}")
    return addr


def first_host(subnet: IPv4Network) -> IPv4Address:
    return subnet.network_address + 1


def check_overlap(subnet: IPv4Network, taken: Iterable[IPv4Network]) -> None:
    if any(subnet.overlaps(other) for other in taken):
        raise Forbidden(OVERLAP)


def auto_subnet(taken: Iterable[IPv4Network]) -> IPv4Network:
    """The first /16 from 10.89.0.0/16 upward that overlaps nothing in `taken`."""
    busy = list(taken)
    for index in range(int(AUTO_POOL_START.network_address) >> 16, (int(AUTO_POOL_END.network_address) >> 16) + 1):
        candidate = IPv4Network((index << 16, 16))
        if not any(candidate.overlaps(other) for other in busy):
            return candidate
    raise Forbidden(
        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
    )


def next_address(pool: Pool, last: int | None, in_use: Callable[[int], bool]) -> IPv4Address | None:
    """The first free address after `last`, wrapping around once; None when the pool is exhausted.

    Next-after-last (not lowest-free) keeps a just-released address out of circulation for as long as possible,
    so a stale peer or DNS cache does not reach a new owner. Cost is flat while the pool is not fragmented.
    """
    lo, hi = pool.bounds
    reserved = pool.reserved
    start = lo if last is None or not lo <= last < hi else last + 1
    size = hi - lo + 1
    for step in range(size):
        candidate = lo + (start - lo + step) % size
        if candidate not in reserved and not in_use(candidate):
            return IPv4Address(candidate)
    return None


def check_static(pool: Pool, text: str, in_use: Callable[[int], bool]) -> IPv4Address:
    """A requested address: inside the subnet, not reserved, not taken (Docker's messages)."""
    try:
        addr = IPv4Address(text)
    except AddressValueError:
        raise InvalidParameter(f"invalid IPv4 address: {text}") from None
    if addr not in pool.subnet:
        raise InvalidParameter(f"no configured subnet contains IP address {addr}")
    if int(addr) in pool.reserved or in_use(int(addr)):
        raise InvalidParameter("Address already in use")
    return addr


# -- IPv6 ------------------------------------------------------------------------------------------------------------

# Docker's default for IPv6 networks without a subnet: a /64 out of a unique local (RFC 4193) /48. The /48 is
# derived from the daemon's instance ID (RFC 4193's "pseudo-random global ID"), so two hosts do not pick the same.
POOL6_SIZE = 64
OVERLAP6 = "invalid pool request: Pool overlaps with other one on this address space"

SPECIAL6 = (
    (IPv6Network("::/127"), "unspecified and loopback (RFC 4291)"),
    (IPv6Network("::ffff:0:0/96"), "IPv4-mapped (RFC 4291)"),
    (IPv6Network("fe80::/10"), "link-local (RFC 4291)"),
    (IPv6Network("ff00::/8"), "multicast (RFC 4291)"),
)


@dataclass(frozen=True)
class Pool6:
    """One network's IPv6 address space. No broadcast in IPv6; the subnet-router anycast address (the subnet's
    first) and the gateway are never handed out."""

    subnet: IPv6Network
    gateway: IPv6Address
    ip_range: IPv6Network | None = None

    @property
    def reserved(self) -> frozenset[int]:
        return frozenset({int(self.subnet.network_address), int(self.gateway)})

    @property
    def bounds(self) -> tuple[int, int]:
        space = self.ip_range or self.subnet
        return int(space.network_address), int(space.broadcast_address)


@dataclass(frozen=True)
class DefaultPool6:
    """Where `--ipv6` networks without a subnet get theirs: `size`-long prefixes out of `base` (Docker's
    `default-address-pools` entry with an IPv6 base)."""

    base: IPv6Network
    size: int = POOL6_SIZE

    @classmethod
    def parse(cls, text: str) -> DefaultPool6:
        """`fd12:3456:789a::/48` or `fd12:3456:789a::/48,64` (base, then the size of each network's prefix)."""
        base_text, _, size_text = text.partition(",")
        try:
            base = IPv6Network(base_text.strip())
            size = int(size_text) if size_text.strip() else POOL6_SIZE
        except ValueError as exc:
            raise ValueError(f"invalid IPv6 address pool {text!r}: {exc}") from None
        if not base.prefixlen <= size <= 126:
            raise ValueError(f"invalid IPv6 address pool {text!r}: the size must be between /{base.prefixlen} and /126")
        return cls(base, size)


def ula_pool(seed: str) -> DefaultPool6:
    """fdXX:XXXX:XXXX::/48 with the 40-bit global ID taken from a hash of `seed` (the daemon's instance ID)."""
    global_id = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:5], "big")
    return DefaultPool6(IPv6Network(((0xFD << 120) | (global_id << 80), 48)))


def parse_subnet6(text: str) -> IPv6Network:
    return _subnet(text, IPv6Network, 126, SPECIAL6)


def parse_address6(text: str, subnet: IPv6Network, what: str) -> IPv6Address:
    try:
        addr = IPv6Address(text)
    except AddressValueError:
        raise InvalidParameter(f"invalid {what} {text}: invalid address") from None
    if addr not in subnet:
        raise InvalidParameter(f"invalid {what} {text}: it should be within subnet {subnet}")
    if addr == subnet.network_address:
        raise InvalidParameter(f"invalid {what} {text}: it is the subnet-router anycast address of {subnet}")
    return addr


def check_overlap6(subnet: IPv6Network, taken: Iterable[IPv6Network]) -> None:
    if any(subnet.overlaps(other) for other in taken):
        raise Forbidden(OVERLAP6)


def auto_subnet6(pool: DefaultPool6, taken: Iterable[IPv6Network]) -> IPv6Network:
    """The first `pool.size` prefix of `pool.base` that overlaps nothing in `taken`. Each taken network rules out
    at most one run of candidates, so this skips past it instead of walking prefix by prefix: the cost grows with
    the networks that exist, never with the size of the pool."""
    busy = sorted((n for n in taken if n.overlaps(pool.base)), key=lambda n: int(n.network_address))
    step = 1 << (128 - pool.size)
    candidate = int(pool.base.network_address)
    end = int(pool.base.broadcast_address)
    for other in busy:
        lo, hi = int(other.network_address), int(other.broadcast_address)
        if hi < candidate:
            continue
        if lo >= candidate + step:
            break
        candidate = (hi // step + 1) * step  # the first prefix after the one(s) `other` touches
    if candidate + step - 1 > end:
        raise Forbidden(
            "could not find an available, non-overlapping IPv6 address pool among the defaults to assign to the network"
        )
    return IPv6Network((candidate, pool.size))


def next_address6(
    pool: Pool6, last: int | None, in_use: Callable[[int], bool], used: Callable[[], int]
) -> IPv6Address | None:
    """Next-after-last, as for IPv4, but never walked address by address over the subnet. The address after the
    cursor is free unless the cursor wrapped (never, for a /64 in practice): one look-up. Past a taken one, a free
    address lies at most `used() + len(reserved)` steps on (`used`: addresses taken on the network, counted only
    then), so the walk is bounded by what is in use, not by the size of the subnet. None when the pool is full."""
    lo, hi = pool.bounds
    reserved = pool.reserved
    size = hi - lo + 1
    start = lo if last is None or not lo <= last < hi else last + 1
    limit = None
    step = 0
    while limit is None or step < limit:
        candidate = lo + (start - lo + step) % size
        if candidate not in reserved and not in_use(candidate):
            return IPv6Address(candidate)
        if limit is None:
            limit = min(size, used() + len(reserved) + 1)
        step += 1
    return None


def check_static6(pool: Pool6, text: str, in_use: Callable[[int], bool]) -> IPv6Address:
    try:
        addr = IPv6Address(text)
    except AddressValueError:
        raise InvalidParameter(f"invalid IPv6 address: {text}") from None
    if addr not in pool.subnet:
        raise InvalidParameter(f"no configured subnet contains IP address {addr}")
    if int(addr) in pool.reserved or in_use(int(addr)):
        raise InvalidParameter("Address already in use")
    return addr
