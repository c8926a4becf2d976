from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from hypr.errors import InvalidParameter
from hypr.names import DNS_PORT
from hypr.ports import ANY, PortSpec, from_bindings, parse_publish, to_bindings
from hypr.reconcile.ports import already_allocated

LOCAL = IPv4Address("127.0.0.1")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [PortSpec(80, "tcp", ANY, 0)]),
        ("8080:80", [PortSpec(80, "tcp", ANY, 8080)]),
        ("8080:80/udp", [PortSpec(80, "udp", ANY, 8080)]),
        ("127.0.0.1:8080:80", [PortSpec(80, "tcp", LOCAL, 8080)]),
        ("127.0.0.1::80", [PortSpec(80, "tcp", LOCAL, 0)]),
        ("8000-8001:80-81", [PortSpec(80, "tcp", ANY, 8000), PortSpec(81, "tcp", ANY, 8001)]),
        ("80-81", [PortSpec(80, "tcp", ANY, 0), PortSpec(81, "tcp", ANY, 0)]),
    ],
)
def test_publish_forms(spec: str, expected: list[PortSpec]) -> None:
    assert parse_publish(spec) == expected
    assert from_bindings(to_bindings(expected)) == sorted(expected)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("8080:80/sctp", "invalid proto: sctp"),
        ("x:80", "invalid port specification"),
        ("70000:80", "invalid port specification"),
        ("8000-8002:80-81", "invalid ranges"),
        ("1.2.3:8080:80", "invalid IP address"),
        ("", "invalid port specification"),
        ("0:80", "invalid port specification"),
    ],
)
def test_bad_publish(spec: str, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        parse_publish(spec)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8000-8010:80", [PortSpec(80, "tcp", ANY, 8000, 8010)]),
        ("127.0.0.1:8000-8010:80/udp", [PortSpec(80, "udp", IPv4Address("127.0.0.1"), 8000, 8010)]),
        ("8000-8001:80-81", [PortSpec(80, "tcp", ANY, 8000), PortSpec(81, "tcp", ANY, 8001)]),
    ],
)
def test_a_host_range_for_one_guest_port_is_one_spec(spec: str, expected: list[PortSpec]) -> None:
    """Docker's `-p 8000-8010:80`: one published port, the first free one of the range."""
    assert parse_publish(spec) == expected
    assert from_bindings(to_bindings(expected)) == expected
    assert list(expected[0].host_ports)[:1] == [expected[0].host_port]


@pytest.mark.parametrize("spec", ["8000-8010:80-81", "127.0.0.1:8000-8001:80-82/udp", "8000:80-81"])
def test_unequal_ranges_are_refused_with_dockers_words(spec: str) -> None:
    guest, host = spec.split("/")[0].split(":")[-1], spec.split(":")[-2]
    with pytest.raises(InvalidParameter) as refused:
        parse_publish(spec)
    assert refused.value.message == f"invalid ranges specified for container and host Ports: {guest} and {host}"


def test_ipv6_host_addresses_in_brackets() -> None:
    from ipaddress import IPv6Address

    [loop] = parse_publish("[::1]:8080:80")
    [one] = parse_publish("[2001:db8::1]:8443:443/udp")
    [anyv6] = parse_publish("[::]::80")
    assert (loop.host_ip, loop.host_port, loop.guest_port) == (IPv6Address("::1"), 8080, 80)
    assert (one.host_ip, one.protocol) == (IPv6Address("2001:db8::1"), "udp")
    assert (anyv6.host_ip, anyv6.host_port) == (IPv6Address("::"), 0)
    assert to_bindings([one]) == {"443/udp": [{"HostIp": "2001:db8::1", "HostPort": "8443"}]}


def test_a_taken_port_is_dockers_conflict_and_hypr_s_dns_port_is_named() -> None:
    assert already_allocated("0.0.0.0", 8080).message == "Bind for 0.0.0.0:8080 failed: port is already allocated"
    assert "hypr's DNS server listens on port" in already_allocated("0.0.0.0", DNS_PORT).message
