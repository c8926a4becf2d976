"""IPAM against the store: the pure allocator fed with what the database says is in use."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING

from hypr import ipam
from hypr.errors import Forbidden, InvalidParameter, Unavailable
from hypr.models import Network
from hypr.state import Store

if TYPE_CHECKING:
    from hypr.cluster.agent import Cluster


def pool_of(network: Network) -> ipam.Pool:
    if network.subnet is None or network.gateway is None:
        raise InvalidParameter(f"network {network.name} is IPv6-only: it has no IPv4 addresses to give (use --ip6)")
    return ipam.Pool(network.subnet, network.gateway, network.ip_range, network.aux_addresses)


def allocate(store: Store, network: Network) -> IPv4Address:
    """The next free address; call inside the transaction that inserts the endpoint owning it."""
    found = ipam.next_address(pool_of(network), store.last_ip(network.id), lambda ip: store.ip_in_use(network.id, ip))
    if found is None:
        raise Unavailable(f"no available IPv4 addresses on this network's address pools: {network.name} ({network.id})")
    return found


def reserve(store: Store, network: Network, requested: str) -> IPv4Address:
    """A static `--ip` / `ipv4_address`: inside the subnet, not reserved, not taken."""
    return ipam.check_static(pool_of(network), requested, lambda ip: store.ip_in_use(network.id, ip))


def lease_overlay(cluster: Cluster | None, store: Store, network: Network, requested: str | None,
                  workload_id: str) -> IPv4Address:  # fmt: skip
    """An address on an overlay network: leased in etcd (see Cluster.claim), so unique across every host."""
    if cluster is None:
        raise Forbidden(f"network {network.name} is an overlay network: this hyprd has no cluster store")
    return cluster.claim(network, pool_of(network), requested, workload_id, lambda ip: store.ip_in_use(network.id, ip))


def pool6_of(network: Network) -> ipam.Pool6:
    assert network.subnet6 is not None and network.gateway6 is not None
    return ipam.Pool6(network.subnet6, network.gateway6, network.ip_range6)


def allocate6(store: Store, network: Network) -> IPv6Address:
    """The next free IPv6 address (next-after-last: one look-up while the cursor has not wrapped; after that the
    walk is bounded by the addresses in use, so a /64 costs what a /120 does); call inside the transaction that
    inserts the endpoint owning it."""
    found = ipam.next_address6(
        pool6_of(network), store.last_ip6(network.id), lambda ip: store.ip6_in_use(network.id, ip),
        lambda: store.ip6_count(network.id),
    )  # fmt: skip
    if found is None:
        raise Unavailable(f"no available IPv6 addresses on this network's address pools: {network.name} ({network.id})")
    return found


def reserve6(store: Store, network: Network, requested: str) -> IPv6Address:
    """A static `--ip6` / `ipv6_address`: inside the IPv6 subnet, not reserved, not taken."""
    if network.subnet6 is None:
        raise InvalidParameter(f"invalid IPv6 address {requested}: network {network.name} has no IPv6 subnet")
    return ipam.check_static6(pool6_of(network), requested, lambda ip: store.ip6_in_use(network.id, ip))
