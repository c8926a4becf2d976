"""IPAM against the store: the pure allocator fed with what the database says is in use."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from hypr import ipam
from hypr.errors import Forbidden, Unavailable
from hypr.models import Network
from hypr.state import Store

if TYPE_CHECKING:
    from hypr.cluster.agent import Cluster


def pool_of(network: Network) -> ipam.Pool:
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
