"""Docker Engine API JSON shapes, built from our rows. Pure."""

from __future__ import annotations

from typing import Any

from hypr.models import Network, Snapshot


def network_inspect(network: Network, snapshot: Snapshot, *, containers: bool = True) -> dict[str, Any]:
    config: dict[str, Any] = {"Subnet": str(network.subnet), "Gateway": str(network.gateway)}
    if network.ip_range is not None:
        config["IPRange"] = str(network.ip_range)
    if network.aux_addresses:
        config["AuxiliaryAddresses"] = {k: str(v) for k, v in network.aux_addresses.items()}
    ipam: dict[str, Any] = {"Driver": "default", "Config": [config]}
    # Docker echoes IPAM.Options exactly as sent, and leaves the key out when none was sent (docker-py checks).
    if network.ipam_options is not None:
        ipam["Options"] = dict(network.ipam_options)
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": "local",
        "Driver": network.driver,
        "EnableIPv4": True,
        "EnableIPv6": False,
        "IPAM": ipam,
        "Internal": network.internal,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": _containers(network, snapshot) if containers else {},
        "Options": dict(network.options),
        "Labels": dict(network.labels),
    }


def _containers(network: Network, snapshot: Snapshot) -> dict[str, Any]:
    names = {w.id: w.name for w in snapshot.workloads}
    return {
        e.workload_id: {
            "Name": names.get(e.workload_id, ""),
            "EndpointID": e.id,
            "MacAddress": e.mac,
            "IPv4Address": f"{e.ip}/{network.subnet.prefixlen}",
            "IPv6Address": "",
        }
        for e in snapshot.endpoints
        if e.network_id == network.id
    }
