from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from hypr import ipam
from hypr.errors import Forbidden, InvalidParameter


def pool(subnet: str = "10.0.0.0/29", **kw: object) -> ipam.Pool:
    net = IPv4Network(subnet)
    return ipam.Pool(subnet=net, gateway=kw.pop("gateway", net.network_address + 1), **kw)  # type: ignore[arg-type]


def take_all(p: ipam.Pool) -> list[str]:
    used: set[int] = set()
    last = None
    while (addr := ipam.next_address(p, last, used.__contains__)) is not None:
        used.add(int(addr))
        last = int(addr)
    return [str(IPv4Address(a)) for a in sorted(used)]


def test_allocation_skips_network_gateway_broadcast_and_aux() -> None:
    p = pool(aux_addresses={"printer": IPv4Address("10.0.0.4")})
    assert take_all(p) == ["10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.0.6"]
    assert p.capacity == 4


def test_next_after_last_does_not_reuse_a_freed_address_at_once() -> None:
    p = pool()
    used = {int(IPv4Address("10.0.0.2")), int(IPv4Address("10.0.0.3"))}
    used.discard(int(IPv4Address("10.0.0.2")))  # released
    assert ipam.next_address(p, int(IPv4Address("10.0.0.3")), used.__contains__) == IPv4Address("10.0.0.4")


def test_wraps_around_to_free_addresses() -> None:
    p = pool()
    used = {int(IPv4Address(a)) for a in ("10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6")}
    assert ipam.next_address(p, int(IPv4Address("10.0.0.6")), used.__contains__) == IPv4Address("10.0.0.2")


def test_exhaustion_returns_none() -> None:
    p = pool("10.0.0.0/30")
    assert ipam.next_address(p, None, lambda ip: ip == int(IPv4Address("10.0.0.2"))) is None


def test_ip_range_bounds_dynamic_allocation() -> None:
    p = pool("10.0.0.0/24", ip_range=IPv4Network("10.0.0.128/30"))
    assert take_all(p) == ["10.0.0.128", "10.0.0.129", "10.0.0.130", "10.0.0.131"]


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("10.0.0.1/24", InvalidParameter, "invalid subnet 10.0.0.1/24: it should be 10.0.0.0/24"),
        ("10.0.0.0", InvalidParameter, "invalid CIDR block notation"),
        ("banana", InvalidParameter, "invalid CIDR block notation"),
        ("10.0.0.0/31", InvalidParameter, "at least a /30"),
        ("10.0.0.0/32", InvalidParameter, "at least a /30"),
    ],
)
def test_bad_subnets(text: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        ipam.parse_subnet(text)


def test_static_addresses() -> None:
    p = pool("10.0.0.0/24")
    assert ipam.check_static(p, "10.0.0.9", lambda ip: False) == IPv4Address("10.0.0.9")
    with pytest.raises(InvalidParameter, match="no configured subnet contains IP address 10.1.0.9"):
        ipam.check_static(p, "10.1.0.9", lambda ip: False)
    with pytest.raises(InvalidParameter, match="Address already in use"):
        ipam.check_static(p, "10.0.0.9", lambda ip: True)
    with pytest.raises(InvalidParameter, match="Address already in use"):
        ipam.check_static(p, "10.0.0.1", lambda ip: False)  # the gateway


def test_auto_subnet_and_overlap() -> None:
    assert ipam.auto_subnet([]) == IPv4Network("10.89.0.0/16")
    assert ipam.auto_subnet([IPv4Network("10.89.3.0/24")]) == IPv4Network("10.90.0.0/16")
    with pytest.raises(Forbidden, match="Pool overlaps"):
        ipam.check_overlap(IPv4Network("10.0.0.0/8"), [IPv4Network("10.89.0.0/16")])


@pytest.mark.parametrize(
    ("subnet", "what"),
    [
        ("127.0.0.0/8", "loopback"),
        ("127.5.0.0/24", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("169.254.169.0/24", "link-local"),
        ("224.0.0.0/24", "multicast"),
        ("239.1.0.0/16", "multicast"),
        ("0.0.0.0/8", "this network"),
        ("255.255.255.0/24", "reserved"),
        ("240.0.0.0/4", "reserved"),
        ("0.0.0.0/0", "this network"),
    ],
)
def test_special_purpose_ranges_are_refused(subnet: str, what: str) -> None:
    with pytest.raises(InvalidParameter, match=what):
        ipam.parse_subnet(subnet)


@pytest.mark.parametrize("gateway", ["10.9.0.0", "10.9.0.255"])
def test_a_gateway_cannot_be_the_network_or_broadcast_address(gateway: str) -> None:
    with pytest.raises(InvalidParameter, match="network address|broadcast address"):
        ipam.parse_address(gateway, IPv4Network("10.9.0.0/24"), "gateway")
