"""Every bad `network create` gets Docker's message and class; validation is pure, so no root is needed."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest

from hypr import ipam as ipam_
from hypr.errors import Conflict, Forbidden, HyprError, InvalidParameter, NotFound
from hypr.models import HostRoute, HostView, Network, Snapshot
from hypr.services import network_plan as plan
from hypr.services.validation import parse_until

EXISTING = Network(
    id="a" * 64, name="taken", bridge="vbr1", subnet=IPv4Network("10.70.0.0/16"),
    gateway=IPv4Network("10.70.0.0/16").network_address + 1, created="2026-01-01T00:00:00.000000000Z",
    subnet6=IPv6Network("fd70::/64"), gateway6=IPv6Address("fd70::1"),
)  # fmt: skip
SNAPSHOT = Snapshot(networks=(EXISTING,))
HOST = HostView(
    routes=(
        HostRoute(IPv4Network("0.0.0.0/0"), "eth0"),
        HostRoute(IPv4Network("192.168.1.0/24"), "eth0"),
        HostRoute(IPv6Network("::/0"), "eth0"),
        HostRoute(IPv6Network("2001:db8:9::/48"), "eth0"),
    ),
    interfaces=frozenset({"eth0", "lo", "docker0"}),
)


def ipam(**config: Any) -> dict[str, Any]:
    return {"Config": [config]}


BAD: list[tuple[dict[str, Any], type[HyprError], str]] = [
    ({}, InvalidParameter, "network name is required"),
    ({"Name": "taken"}, Conflict, "network with name taken already exists"),
    ({"Name": "bridge"}, Forbidden, "operation is not permitted on predefined bridge network"),
    ({"Name": "host"}, Forbidden, "predefined host network"),
    ({"Name": "x", "Driver": "macvlan"}, NotFound, "could not find plugin macvlan"),
    (
        {"Name": "x", "IPAM": ipam(Subnet="10.1.0.1/16")},
        InvalidParameter,
        "invalid subnet 10.1.0.1/16: it should be 10.1.0.0/16",
    ),
    ({"Name": "x", "IPAM": ipam(Subnet="10.1.0.0/31")}, InvalidParameter, "at least a /30"),
    ({"Name": "x", "IPAM": ipam(Subnet="10.1.0.0/32")}, InvalidParameter, "at least a /30"),
    (
        {"Name": "x", "IPAM": ipam(Subnet="10.1.0.0/16", Gateway="10.2.0.1")},
        InvalidParameter,
        "invalid gateway 10.2.0.1: it should be within subnet 10.1.0.0/16",
    ),
    (
        {"Name": "x", "IPAM": ipam(Subnet="10.1.0.0/16", IPRange="10.2.0.0/24")},
        InvalidParameter,
        "invalid ip-range 10.2.0.0/24: it should be within subnet",
    ),
    (
        {"Name": "x", "IPAM": ipam(Subnet="10.1.0.0/16", IPRange="10.1.0.5/24")},
        InvalidParameter,
        "invalid ip-range 10.1.0.5/24: it should be 10.1.0.0/24",
    ),
    (
        {"Name": "x", "IPAM": ipam(Subnet="10.1.0.0/16", AuxiliaryAddresses={"p": "10.9.0.1"})},
        InvalidParameter,
        "invalid auxiliary address p",
    ),
    ({"Name": "x", "IPAM": ipam(Gateway="10.1.0.1")}, InvalidParameter, "needs a subnet"),
    (
        {"Name": "x", "IPAM": ipam(Subnet="10.70.1.0/24")},
        Forbidden,
        "Pool overlaps with other one on this address space",
    ),
    (
        {"Name": "x", "IPAM": ipam(Subnet="192.168.0.0/16")},
        Forbidden,
        "overlaps the host route 192.168.1.0/24 dev eth0",
    ),
    ({"Name": "x", "IPAM": {"Driver": "dhcp"}}, InvalidParameter, "IPAM driver dhcp is not supported"),
    (
        {"Name": "x", "IPAM": {"Config": [{"Subnet": "10.1.0.0/16"}, {"Subnet": "10.2.0.0/16"}]}},
        InvalidParameter,
        "one IPv4 subnet",
    ),
    ({"Name": "x", "EnableIPv4": False}, InvalidParameter, "^IPv4 or IPv6 must be enabled$"),
    ({"Name": "x", "EnableIPv4": False, "EnableIPv6": False}, InvalidParameter, "^IPv4 or IPv6 must be enabled$"),
    (
        {"Name": "x", "EnableIPv4": False, "EnableIPv6": True, "IPAM": ipam(Subnet="10.90.0.0/24")},
        InvalidParameter,
        "an IPv4 subnet was given but IPv4 is disabled",
    ),
    ({"Name": "x", "Driver": "overlay", "EnableIPv4": False, "EnableIPv6": True}, InvalidParameter, "overlay"),
    ({"Name": "x", "IPAM": ipam(Subnet="fd00:1::/64")}, InvalidParameter, "needs EnableIPv6"),
    ({"Name": "x", "EnableIPv6": True, "IPAM": ipam(Subnet="fd00:1::1/64")}, InvalidParameter, "should be fd00:1::/64"),
    ({"Name": "x", "EnableIPv6": True, "IPAM": ipam(Subnet="fe80::/64")}, InvalidParameter, "link-local"),
    ({"Name": "x", "EnableIPv6": True, "IPAM": ipam(Subnet="fd00:1::/127")}, InvalidParameter, "at least a /126"),
    (
        {"Name": "x", "EnableIPv6": True, "IPAM": ipam(Subnet="fd00:1::/64", Gateway="fd00:2::1")},
        InvalidParameter,
        "it should be within subnet fd00:1::/64",
    ),
    (
        {"Name": "x", "EnableIPv6": True, "IPAM": ipam(Subnet="fd70::/48")},
        Forbidden,
        "Pool overlaps with other one on this address space",
    ),
    (
        {"Name": "x", "EnableIPv6": True, "IPAM": ipam(Subnet="2001:db8:9::/64")},
        Forbidden,
        "overlaps the host route 2001:db8:9::/48 dev eth0",
    ),
    (
        {"Name": "x", "EnableIPv6": True, "Options": {"com.docker.network.bridge.gateway_mode_ipv6": "isolated"}},
        InvalidParameter,
        "nat and routed",
    ),
    (
        {"Name": "x", "Options": {"com.docker.network.bridge.name": "vbr1"}},
        Forbidden,
        "already used by another network",
    ),
    ({"Name": "x", "Options": {"com.docker.network.bridge.name": "docker0"}}, Forbidden, "already an interface"),
    ({"Name": "x", "Options": {"com.docker.network.bridge.name": "sixteen-chars-xx"}}, InvalidParameter, "too long"),
    ({"Name": "x", "Options": {"com.docker.network.bridge.name": "a/b"}}, InvalidParameter, "invalid characters"),
    ({"Name": "x", "Options": {"com.docker.network.driver.mtu": "abc"}}, InvalidParameter, "invalid MTU number: abc"),
    ({"Name": "x", "Options": {"com.docker.network.driver.mtu": "70000"}}, InvalidParameter, "invalid MTU number"),
    ({"Name": "x", "Options": {"com.docker.network.bridge.enable_icc": "maybe"}}, InvalidParameter, "is not a boolean"),
    ({"Name": "x", "Labels": {"k": 1}}, InvalidParameter, "invalid labels"),
    ({"Name": "x", "Options": ["a=b"]}, InvalidParameter, "invalid options"),
]


@pytest.mark.parametrize(("body", "error", "message"), BAD)
def test_bad_create_requests(body: dict[str, Any], error: type[HyprError], message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        plan.plan_network_create(body, SNAPSHOT, HOST)
    assert type(caught.value) is error


def test_defaults() -> None:
    net = plan.plan_network_create({"Name": "test 01@#$"}, SNAPSHOT, HOST)
    assert (str(net.subnet), str(net.gateway), net.bridge, net.mtu) == ("10.89.0.0/16", "10.89.0.1", "vbr2", 1500)
    assert len(net.id) == 64 and net.icc and net.masquerade and not net.internal
    assert net.ipam_options is None


def test_options_are_honoured() -> None:
    body = {
        "Name": "x",
        "Internal": True,
        "IPAM": {"Config": [{"Subnet": "10.1.0.0/24", "IPRange": "10.1.0.128/25"}], "Options": {"a": "b"}},
        "Options": {"com.docker.network.bridge.name": "br-x", "com.docker.network.driver.mtu": "1400",
                    "com.docker.network.bridge.enable_icc": "false"},
    }  # fmt: skip
    net = plan.plan_network_create(body, SNAPSHOT, HOST)
    assert (net.bridge, net.mtu, net.icc, net.internal, str(net.ip_range)) == (
        "br-x",
        1400,
        False,
        True,
        "10.1.0.128/25",
    )
    assert net.ipam_options == {"a": "b"}


def test_default_network_refuses_host_route_overlap() -> None:
    host = HostView(routes=(HostRoute(IPv4Network("10.88.0.0/16"), "cni-podman0"),))
    with pytest.raises(Forbidden, match="10.88.0.0/16 dev cni-podman0.*HYPR_DEFAULT_SUBNET"):
        plan.plan_default_network("10.88.0.0/16", "10.88.0.1", host)
    assert plan.plan_default_network("10.88.0.0/16", "10.88.0.1", HOST).bridge == "vbr0"


def test_find_network_order() -> None:
    other = Network(id="ab" + "c" * 62, name="a" * 64, bridge="vbr2", subnet=IPv4Network("10.5.0.0/16"),
                    gateway=IPv4Network("10.5.0.0/16").network_address + 1)  # fmt: skip
    snap = Snapshot(networks=(EXISTING, other))
    assert plan.find_network(snap, "a" * 64) is EXISTING  # full ID beats a name
    assert plan.find_network(snap, "taken") is EXISTING
    assert plan.find_network(snap, "abc") is other
    with pytest.raises(InvalidParameter, match="ambiguous"):
        plan.find_network(snap, "a")
    with pytest.raises(NotFound, match="network zz not found"):
        plan.find_network(snap, "zz")


def test_list_filters() -> None:
    labelled = Network(id="b" * 64, name="web", bridge="vbr3", subnet=IPv4Network("10.6.0.0/16"),
                       gateway=IPv4Network("10.6.0.0/16").network_address + 1, labels={"tier": "front"})  # fmt: skip
    snap = Snapshot(networks=(EXISTING, labelled))
    assert plan.list_networks(snap, {"label": ["tier=front"]}) == [labelled]
    assert plan.list_networks(snap, {"label": ["tier"]}) == [labelled]
    assert plan.list_networks(snap, {"name": ["ake"]}) == [EXISTING]
    assert plan.list_networks(snap, {"type": ["custom"]}) == [EXISTING, labelled]
    with pytest.raises(InvalidParameter, match="invalid filter 'colour'"):
        plan.list_networks(snap, {"colour": ["red"]})


def test_prune_filters() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert plan.prune_candidates(SNAPSHOT, {}, now) == [EXISTING]
    assert plan.prune_candidates(SNAPSHOT, {"until": ["2025-01-01T00:00:00Z"]}, now) == []
    assert plan.prune_candidates(SNAPSHOT, {"until": ["24h"]}, now) == [EXISTING]
    assert plan.prune_candidates(SNAPSHOT, {"label!": ["keep"]}, now) == [EXISTING]
    assert plan.prune_candidates(SNAPSHOT, {"label": ["keep"]}, now) == []
    assert parse_until("1h30m", now) == datetime(2026, 5, 31, 22, 30, tzinfo=UTC)
    with pytest.raises(InvalidParameter):
        parse_until("soon", now)


@pytest.mark.parametrize("name", ["all", "default", 'a"b', "a\\b", "-x", "x y", "x;y"])
def test_bridge_names_that_would_escape_into_nft_or_sysctl_paths(name: str) -> None:
    with pytest.raises(InvalidParameter, match="com.docker.network.bridge.name"):
        plan.plan_network_create({"Name": "x", "Options": {"com.docker.network.bridge.name": name}}, SNAPSHOT, HOST)


# -- IPv6 ---------------------------------------------------------------------------------------------------------

POOL6 = ipam_.DefaultPool6(IPv6Network("fd70::/48"), 64)


def test_ipv6_without_a_subnet_takes_the_next_free_prefix_of_the_pool() -> None:
    n = plan.plan_network_create({"Name": "x", "EnableIPv6": True}, SNAPSHOT, HOST, POOL6)
    assert n.subnet6 == IPv6Network("fd70:0:0:1::/64") and n.gateway6 == IPv6Address("fd70:0:0:1::1")
    assert n.subnet.version == 4 and not n.routed6  # dual-stack: the IPv4 side is planned as before


def test_ipv6_with_subnet_gateway_range_and_routed_mode() -> None:
    body = {
        "Name": "x", "EnableIPv6": True,
        "IPAM": {"Config": [{"Subnet": "10.9.0.0/24"}, {"Subnet": "2001:db8:1::/64", "Gateway": "2001:db8:1::fe",
                                                        "IPRange": "2001:db8:1::100/120"}]},
        "Options": {"com.docker.network.bridge.gateway_mode_ipv6": "routed"},
    }  # fmt: skip
    n = plan.plan_network_create(body, SNAPSHOT, HOST, POOL6)
    assert (n.subnet, n.subnet6, n.gateway6) == (
        IPv4Network("10.9.0.0/24"), IPv6Network("2001:db8:1::/64"), IPv6Address("2001:db8:1::fe"),
    )  # fmt: skip
    assert n.ip_range6 == IPv6Network("2001:db8:1::100/120") and n.routed6


def test_auto_subnet6_skips_taken_prefixes_without_walking() -> None:
    pool = ipam_.DefaultPool6(IPv6Network("fd00:1::/48"), 64)
    taken = [IPv6Network("fd00:1::/56"), IPv6Network("fd00:1:0:100::/64"), IPv6Network("fd00:2::/48")]
    assert ipam_.auto_subnet6(pool, taken) == IPv6Network("fd00:1:0:101::/64")
    with pytest.raises(Forbidden, match="IPv6 address pool"):
        ipam_.auto_subnet6(pool, [IPv6Network("fd00::/16")])


def test_default_pool_is_a_ula_48_derived_from_the_instance() -> None:
    a, b = ipam_.ula_pool("one"), ipam_.ula_pool("two")
    assert a.base.prefixlen == 48 and a.size == 64 and a.base.subnet_of(IPv6Network("fd00::/8"))
    assert a != b and a == ipam_.ula_pool("one")
    assert ipam_.DefaultPool6.parse("fd12:3456:789a::/48,56") == ipam_.DefaultPool6(
        IPv6Network("fd12:3456:789a::/48"), 56
    )
    with pytest.raises(ValueError):
        ipam_.DefaultPool6.parse("fd12::/64,48")


def test_next_address6_is_bounded_by_what_is_in_use() -> None:
    pool = ipam_.Pool6(IPv6Network("fd00::/64"), IPv6Address("fd00::1"))
    calls: list[int] = []

    def in_use(ip: int) -> bool:
        calls.append(ip)
        return ip in {int(IPv6Address("fd00::2")), int(IPv6Address("fd00::3"))}

    counted: list[int] = []

    def used() -> int:
        counted.append(1)
        return 2

    assert ipam_.next_address6(pool, None, in_use, used) == IPv6Address("fd00::4")
    assert len(calls) == 3 and len(counted) == 1  # ::2, ::3 taken, ::4 free; the gateway skipped without asking
    assert ipam_.next_address6(pool, int(IPv6Address("fd00::4")), lambda ip: False, used) == IPv6Address("fd00::5")
    assert len(counted) == 1  # the common case: one look-up, no count
    last = int(IPv6Address("fd00::ffff:ffff:ffff:ffff"))
    assert ipam_.next_address6(pool, last, lambda ip: False, used) == IPv6Address("fd00::2")  # wraps, skips ::, ::1
    tiny = ipam_.Pool6(IPv6Network("fd00::/126"), IPv6Address("fd00::1"))
    assert ipam_.next_address6(tiny, None, lambda ip: True, lambda: 2) is None


def test_ipv6_only_network_has_no_ipv4_and_leaves_the_ipv4_pool_alone() -> None:
    body = {"Name": "v6", "EnableIPv4": False, "EnableIPv6": True, "IPAM": {"Config": [{"Subnet": "fd00:6::/64"}]}}
    net = plan.plan_network_create(body, SNAPSHOT, HOST)
    assert (net.subnet, net.gateway, net.ip_range, dict(net.aux_addresses)) == (None, None, None, {})
    assert (net.subnet6, net.gateway6, net.ipv4, net.ipv6) == (
        IPv6Network("fd00:6::/64"),
        IPv6Address("fd00:6::1"),
        False,
        True,
    )
    # The next network still gets its IPv4 subnet, planned past only the networks that have one.
    after = plan.plan_network_create({"Name": "v4"}, Snapshot(networks=(EXISTING, net)), HOST)
    assert after.subnet is not None and not after.subnet.overlaps(IPv4Network("10.70.0.0/16"))
