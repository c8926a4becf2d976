"""Every kernel-side name hypr uses. Names are derived here once, at create time, and stored.

Network names come from users and can be anything Docker accepts (`test@#$`, `test 01`), so no kernel name is ever
built from one: bridges are numbered, per-endpoint interfaces come from random endpoint IDs.
"""

from __future__ import annotations

import re
from collections.abc import Container
from ipaddress import IPv4Address, IPv6Address

IFNAMSIZ = 15  # usable characters in a Linux interface name
TABLE = "hypr"  # `table inet hypr` and `table bridge hypr`
DNS_PORT = 41003
BRIDGE_PREFIX = "vbr"
VETH_PREFIX = "hv"
TAP_PREFIX = "tap"  # tap0, tap1, ...: numbered per daemon, never reused while an endpoint holds one
TAP_MAX = 100_000
VXLAN_PREFIX = "hvx"  # hvx<VNI>: at most 11 characters (a VNI has 24 bits)
ALIAS_PREFIX = "hypr:"  # IFLA_IFALIAS on every link we create: "hypr:<instance id>"

_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Names the kernel reserves under /proc/sys/net/ipv4/conf/: a sysctl written "for" them would apply host-wide.
_RESERVED_IFNAMES = ("all", "default")


def _bounded(name: str) -> str:
    assert 0 < len(name) <= IFNAMSIZ, f"interface name {name!r} exceeds {IFNAMSIZ} characters"
    return name


def bridge_name(index: int) -> str:
    return _bounded(f"{BRIDGE_PREFIX}{index}")


def host_ifname(endpoint_id: str) -> str:
    """The host end of a sandbox's endpoint: a veth peer named from the endpoint's random ID."""
    return _bounded(VETH_PREFIX + endpoint_id[: IFNAMSIZ - len(VETH_PREFIX)])


def tap_name(taken: Container[str]) -> str:
    """A VM endpoint's TAP: the lowest `tapN` that neither an endpoint nor another interface on the host holds
    (OpenVPN and others name theirs tapN too). Raises RuntimeError past TAP_MAX, which a host never reaches."""
    for n in range(TAP_MAX):
        name = f"{TAP_PREFIX}{n}"
        if name not in taken:
            return _bounded(name)
    raise RuntimeError(f"no free TAP name below {TAP_PREFIX}{TAP_MAX}")


def vxlan_name(vni: int) -> str:
    """An overlay network's VXLAN device: named from its VNI, the same on every host of the cluster."""
    return _bounded(f"{VXLAN_PREFIX}{vni}")


def owner_alias(instance_id: str) -> str:
    """The interface alias that proves, from the kernel side, which daemon instance made a link."""
    return f"{ALIAS_PREFIX}{instance_id}"


def interface_name_problem(name: str) -> str | None:
    """Why `name` cannot be a bridge name hypr creates, or None when it can. Stricter than the kernel on purpose:
    the name ends up in nft rules and sysctl paths, so only letters, digits, `_`, `.` and `-` are allowed."""
    if not name:
        return "interface name cannot be empty"
    if len(name) > IFNAMSIZ:
        return f"interface name {name} is too long (max {IFNAMSIZ} characters)"
    if name in _RESERVED_IFNAMES:
        return f"interface name {name} is reserved by the kernel"
    if not _IFNAME.match(name):
        return f"interface name {name} contains invalid characters (allowed: letters, digits, _ . -; not first: _ . -)"
    return None


def mac_for(ip: IPv4Address | IPv6Address) -> str:
    """Docker's scheme: 02:42 + the IPv4 address. Stable for a lease and unique per network; a bridge gets the one of
    its gateway address. On an IPv6-only network, the last 32 bits of the IPv6 address (unique per network for
    allocated addresses; two static ones that share their last 32 bits would clash: give one --mac-address)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed[-4:])
