"""Address management, pure: pool validation, overlap checks and next-after-last allocation.

Nothing here touches the database or the kernel. Callers pass in what is in use; the database enforces that no
address is handed out twice (UNIQUE (network_id, ip)).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError

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


def parse_subnet(text: str) -> IPv4Network:
    try:
        net = IPv4Network(text, strict=False)
    except (AddressValueError, NetmaskValueError, ValueError):
        raise InvalidParameter(f"invalid subnet {text}: invalid CIDR block notation") from None
    if "/" not in text:
        raise InvalidParameter(f"invalid subnet {text}: invalid CIDR block notation")
    if str(net) != text:
        raise InvalidParameter(f"invalid subnet {text}: it should be {net}")
    if net.prefixlen > 30:
        raise InvalidParameter(f"invalid subnet {text}: a bridge network needs at least a /30")
    for block, what in SPECIAL:
        if net.overlaps(block):
            raise InvalidParameter(f"invalid subnet {text}: it overlaps {block}, {what}, which no network can use")
    return net


def parse_ip_range(text: str, subnet: IPv4Network) -> IPv4Network:
    try:
        net = IPv4Network(text, strict=False)
    except (AddressValueError, NetmaskValueError, ValueError):
        raise InvalidParameter(f"invalid ip-range {text}: invalid CIDR block notation") from None
    if str(net) != text:
        raise InvalidParameter(f"invalid ip-range {text}: it should be {net}")
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
