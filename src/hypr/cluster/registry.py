"""What the cluster keeps in etcd, as keys and JSON values, and its parsed, frozen form. Pure.

    /hypr/v1/nodes/<node>            {"name", "addr", "last_seen"}            permanent: `node ls` shows the dead too
    /hypr/v1/alive/<node>            {"addr"}                                 under the node's lease
    /hypr/v1/networks/<network id>   the network's definition (below)         permanent
    /hypr/v1/names/<network name>    network id                               one name cluster-wide
    /hypr/v1/vnis/<vni>              network id                               one VNI per network
    /hypr/v1/subnets/<subnet>        network id                               no two overlays share a subnet
    /hypr/v1/endpoints/<net>/<ip>    the endpoint (below)                     under the owning node's lease

An endpoint's key is its address: creating the key (in a transaction that requires it to be absent) is the IPAM
lease, so two hosts never hand out one address; and since it lives under its node's etcd lease, a host that dies
takes its addresses and its names with it when the lease expires.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from hypr.models import OVERLAY as OVERLAY
from hypr.models import Network

log = logging.getLogger(__name__)

ROOT = "/hypr/v1/"
NODES = ROOT + "nodes/"
ALIVE = ROOT + "alive/"
NETWORKS = ROOT + "networks/"
NAMES = ROOT + "names/"
VNIS = ROOT + "vnis/"
SUBNETS = ROOT + "subnets/"
ENDPOINTS = ROOT + "endpoints/"

OPT_VNI = "com.docker.network.driver.overlay.vxlanid_list"  # Docker shows an overlay's VNI under this option
VNI_FIRST = 4096  # Docker's overlay driver starts here too; 1..4095 stay free for hand-made VXLANs
VNI_LAST = 16_777_215  # 24 bits (RFC 7348)
OVERLAY_MTU = 1450  # 1500 less the 50 octets of outer Ethernet, IPv4, UDP and VXLAN headers


def endpoint_key(network_id: str, ip: IPv4Address) -> str:
    return f"{ENDPOINTS}{network_id}/{ip}"


@dataclass(frozen=True)
class Node:
    id: str
    name: str
    addr: str  # advertise address: the VXLAN tunnel endpoint (VTEP)
    last_seen: str  # RFC 3339
    alive: bool = False


@dataclass(frozen=True)
class RemoteEndpoint:
    """An endpoint as the registry holds it (any host's, this one's included)."""

    network_id: str
    ip: IPv4Address
    node: str
    vtep: str  # the owning host's advertise address
    mac: str = ""
    workload_id: str = ""
    name: str = ""
    aliases: tuple[str, ...] = ()
    running: bool = False
    endpoint_id: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {"node": self.node, "vtep": self.vtep, "mac": self.mac, "workload": self.workload_id, "name": self.name,
             "aliases": list(self.aliases), "running": self.running, "endpoint": self.endpoint_id},
            sort_keys=True,
        )  # fmt: skip


@dataclass(frozen=True)
class ClusterState:
    """One consistent read of the registry."""

    revision: int = 0
    nodes: tuple[Node, ...] = ()
    networks: Mapping[str, Network] = field(default_factory=dict)  # id -> definition (bridge left empty)
    endpoints: tuple[RemoteEndpoint, ...] = ()

    def members(self) -> frozenset[str]:
        """Advertise addresses of live nodes: the only sources VXLAN is accepted from."""
        return frozenset(n.addr for n in self.nodes if n.alive)


def network_to_json(n: Network) -> str:
    return json.dumps(
        {"id": n.id, "name": n.name, "subnet": str(n.subnet), "gateway": str(n.gateway),
         "ip_range": None if n.ip_range is None else str(n.ip_range),
         "aux_addresses": {k: str(v) for k, v in n.aux_addresses.items()}, "internal": n.internal, "mtu": n.mtu,
         "icc": n.icc, "masquerade": n.masquerade, "labels": dict(n.labels), "options": dict(n.options),
         "ipam_options": None if n.ipam_options is None else dict(n.ipam_options), "created": n.created},
        sort_keys=True,
    )  # fmt: skip


def network_from_json(data: Mapping[str, object]) -> Network:
    """A definition from etcd; the bridge name is each host's own choice, filled in when it is mirrored."""
    d: dict[str, object] = dict(data)
    ip_range = d.get("ip_range")
    ipam_options = d.get("ipam_options")
    return Network(
        id=str(d["id"]), name=str(d["name"]), bridge="", subnet=IPv4Network(str(d["subnet"])),
        gateway=IPv4Address(str(d["gateway"])), ip_range=None if ip_range is None else IPv4Network(str(ip_range)),
        aux_addresses={str(k): IPv4Address(str(v)) for k, v in _map(d.get("aux_addresses")).items()},
        internal=bool(d.get("internal")), mtu=int(str(d.get("mtu", OVERLAY_MTU))), icc=bool(d.get("icc", True)),
        masquerade=bool(d.get("masquerade", True)), labels=_map(d.get("labels")), options=_map(d.get("options")),
        ipam_options=None if ipam_options is None else _map(ipam_options), created=str(d.get("created", "")),
        driver=OVERLAY,
    )  # fmt: skip


def _map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def vni_of(network: Network) -> int | None:
    text = network.options.get(OPT_VNI)
    return int(text) if text and text.isdigit() else None


def parse_state(revision: int, kvs: Iterable[tuple[str, bytes]]) -> ClusterState:
    """The registry from the keys under ROOT. A value that does not parse is skipped with a warning: one bad key
    written by another tool must not take the whole cluster's data plane down."""
    alive: set[str] = set()
    nodes: dict[str, dict[str, object]] = {}
    networks: dict[str, Network] = {}
    endpoints: list[RemoteEndpoint] = []
    for key, raw in kvs:
        try:
            value: Any = json.loads(raw) if raw[:1] == b"{" else raw.decode()
            if key.startswith(ALIVE):
                alive.add(key.removeprefix(ALIVE))
            elif key.startswith(NODES):
                nodes[key.removeprefix(NODES)] = dict(value)
            elif key.startswith(NETWORKS):
                network = network_from_json(value)
                networks[network.id] = network
            elif key.startswith(ENDPOINTS):
                network_id, ip = key.removeprefix(ENDPOINTS).split("/")
                endpoints.append(
                    RemoteEndpoint(
                        network_id=network_id,
                        ip=IPv4Address(ip),
                        node=str(value["node"]),
                        vtep=str(value["vtep"]),
                        mac=str(value.get("mac", "")),
                        workload_id=str(value.get("workload", "")),
                        name=str(value.get("name", "")),
                        aliases=tuple(map(str, value.get("aliases", ()))),
                        running=bool(value.get("running")),
                        endpoint_id=str(value.get("endpoint", "")),
                    )
                )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("cluster store: skipping %s: %r", key, exc)
    return ClusterState(
        revision=revision,
        nodes=tuple(
            Node(
                id=nid,
                name=str(d.get("name", "")),
                addr=str(d.get("addr", "")),
                last_seen=str(d.get("last_seen", "")),
                alive=nid in alive,
            )
            for nid, d in sorted(nodes.items())
        ),
        networks=networks,
        endpoints=tuple(sorted(endpoints, key=lambda e: (e.network_id, int(e.ip)))),
    )
