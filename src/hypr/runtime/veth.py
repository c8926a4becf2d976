"""One endpoint of a sandbox: a veth pair, host end on the bridge, guest end configured inside the namespace.

`host_plan` and `guest_plan` are pure; `plug`/`unplug` send them as netlink batches (two from the host, one
look-up and one batch inside).
"""

from __future__ import annotations

from hypr.errors import KernelError
from hypr.runtime import rtnl
from hypr.runtime.base import Attachment
from hypr.runtime.netns import Namespace, write_sysctls
from hypr.runtime.rtnl import Request, Rtnl

LOOPBACK_INDEX = 1  # always 1 in a network namespace
LINK_LOCAL_PREFIX = 16  # 169.254.0.0/16 (RFC 3927)


def host_plan(att: Attachment, *, bridge_index: int, peer_ns_fd: int, alias: str) -> list[Request]:
    return [
        rtnl.veth_add(
            att.host_ifname,
            att.guest_ifname,
            peer_ns_fd=peer_ns_fd,
            peer_mac=att.mac,
            mtu=att.mtu,
            master=bridge_index,
        ),
        # Hairpin lets a workload reach its own published ports through the host's DNAT.
        rtnl.bridge_port_set(att.host_ifname, alias=alias, hairpin=True),
    ]


def guest_plan(att: Attachment, *, index: int, default_route: bool, default_route6: bool = False) -> list[Request]:
    plan = [
        *([rtnl.addr_add(index, att.ip, att.prefixlen)] if att.ip is not None else []),  # none if IPv6-only
        *(rtnl.addr_add(index, extra, LINK_LOCAL_PREFIX) for extra in att.link_local),
        rtnl.link_up(index=index),
        rtnl.link_up(index=LOOPBACK_INDEX),
    ]
    if default_route and att.gateway is not None:
        plan.append(rtnl.default_route_add(att.gateway))
    if att.ip6 is not None:  # after link up: IPv6 adds the prefix route when the link comes up
        plan.append(rtnl.addr_add(index, att.ip6, att.prefixlen6))
        if default_route6 and att.gateway6 is not None:
            plan.append(rtnl.default_route_add(att.gateway6))
    return plan


def ipv6_sysctls(att: Attachment) -> list[tuple[str, str]]:
    """Sandboxes are made with IPv6 off for new links (netns._ipv4_only); a dual-stack endpoint turns it on for
    its own interface, with its address and route set statically: router advertisements are ignored."""
    if att.ip6 is None:
        return []
    conf = f"net/ipv6/conf/{att.guest_ifname}"
    return [(f"{conf}/accept_ra", "0"), (f"{conf}/autoconf", "0"), (f"{conf}/disable_ipv6", "0")]


def plug(
    host: Rtnl, ns: Namespace, att: Attachment, *, alias: str, default_route: bool, default_route6: bool = False
) -> None:
    try:
        bridge_index = host.link_index(att.bridge)
        if bridge_index is None:
            raise KernelError(f"attach {att.host_ifname}: bridge {att.bridge} does not exist")
        host.batch(host_plan(att, bridge_index=bridge_index, peer_ns_fd=ns.fd, alias=alias))
        index = ns.rtnl.link_index(att.guest_ifname)
        if index is None:
            raise KernelError(f"attach {att.host_ifname}: {att.guest_ifname} missing in the sandbox")
        write_sysctls(ns, ipv6_sysctls(att))
        ns.rtnl.batch(guest_plan(att, index=index, default_route=default_route, default_route6=default_route6))
    except OSError as exc:
        raise KernelError(f"attach {att.host_ifname} to {att.bridge}: {exc}") from exc


def unplug_plan(atts: tuple[Attachment, ...] | list[Attachment]) -> list[Request]:
    """Deleting the host end deletes its peer too; a link already gone counts as removed."""
    return [rtnl.link_del(att.host_ifname) for att in atts]
