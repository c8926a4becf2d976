"""This host's part in the cluster: membership under an etcd lease, overlay networks and their addresses in etcd,
the registry mirrored into the local database and the kernel.

Threads: a keepalive thread renews the node's lease (and grants a new one, then re-publishes, if it expired); a
watch thread reads the registry after every change and hands the result to the daemon's worker, where all database
and kernel work happens (`submit`). Service code calls `create_network`, `remove_network` and `claim` on the worker.

etcd down: claims, creates and removes raise `Unavailable`; the kernel keeps what it has, so running workloads keep
talking; when etcd is back the watch re-reads everything and the publisher re-writes this host's endpoints.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from hypr import ipam, names
from hypr.cluster import registry as reg
from hypr.cluster import store as kv
from hypr.cluster.store import EtcdStore
from hypr.errors import Conflict, Forbidden, HyprError, InvalidParameter, NotFound, Unavailable
from hypr.models import OPT_MTU, Endpoint, Network, Snapshot, Workload
from hypr.state import Store

log = logging.getLogger(__name__)
CLAIM_TRIES = 64  # addresses tried per claim before giving up (others may take the same candidates at once)


@dataclass(frozen=True)
class ClusterSettings:
    store: str  # etcd://HOST:PORT[,HOST:PORT...]
    advertise: str  # this host's underlay address: VXLAN is sent from and to it
    node_name: str
    ttl: int = 15  # seconds the node's lease lives without a keepalive


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Cluster:
    def __init__(
        self, settings: ClusterSettings, node_id: str, store: Store, interfaces: Callable[[], frozenset[str]]
    ) -> None:
        self.settings = settings
        self.interfaces = interfaces  # every interface name on this host: a mirrored bridge must not take one
        self.node = node_id
        self.db = store
        self.etcd = EtcdStore(settings.store)
        self.state: reg.ClusterState | None = None  # the last registry read; None until the first one
        self.lease = 0
        self.published: dict[str, str] = {}  # endpoint key -> the value this host last wrote there
        self.kvs: dict[str, bytes] = {}  # the registry as last read and watched, under kvs_lock
        self.revision = 0
        self.kvs_lock = threading.Lock()
        self.rows: dict[reg.RemoteEndpoint, tuple[Workload, Endpoint]] = {}  # with_remote's rows, kept between calls
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.submit: Callable[[Callable[[], None]], None] = lambda fn: fn()
        self.on_state: Callable[[bool], None] = lambda networks_changed: None  # set by the daemon
        self.pending = threading.Lock()

    # -- membership ----------------------------------------------------------------------------------------------

    def start(self, submit: Callable[[Callable[[], None]], None]) -> None:
        self.submit = submit
        for target, name in ((self._keepalive_forever, "keepalive"), (self._watch_forever, "watch")):
            thread = threading.Thread(target=target, name=f"hypr-cluster-{name}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def close(self) -> None:
        """Stop the threads. The lease is left to expire: a daemon that stops leaves its workloads running, and
        a restart within the TTL takes its keys over again without other hosts noticing."""
        self.stop.set()

    def join(self) -> None:
        """A new lease, this node's keys under it, and every local endpoint re-published with it."""
        lease = self.etcd.grant(self.settings.ttl)
        node = json.dumps({"name": self.settings.node_name, "addr": self.settings.advertise, "last_seen": _now()})
        alive = json.dumps({"addr": self.settings.advertise})
        self.etcd.txn([], [kv.put(reg.NODES + self.node, node), kv.put(reg.ALIVE + self.node, alive, lease)],
                      "join the cluster")  # fmt: skip
        self.lease = lease
        self.published = {}
        log.info("joined cluster %s as %s (%s), lease %x", self.settings.store, self.settings.node_name,
                 self.settings.advertise, lease)  # fmt: skip
        self.submit(self.publish_now)

    def _keepalive_forever(self) -> None:
        interval = max(self.settings.ttl / 3, 0.5)
        while not self.stop.is_set():
            try:
                if not self.lease or self.etcd.keepalive(self.lease) <= 0:
                    if self.lease:
                        log.warning("the node's lease expired: joining again")
                    self.join()
                else:
                    node = {"name": self.settings.node_name, "addr": self.settings.advertise, "last_seen": _now()}
                    self.etcd.txn([], [kv.put(reg.NODES + self.node, json.dumps(node))], "update last seen")
            except HyprError as exc:
                log.warning("%s", exc.message)
            self.stop.wait(interval)

    # -- the registry, read ----------------------------------------------------------------------------------------

    def _watch_forever(self) -> None:
        kv.watch_forever(self.etcd, reg.ROOT, self.refresh, self._changed, self.stop)

    def refresh(self) -> int | None:
        """Read the whole registry (on the calling thread), then apply it on the worker. The revision read."""
        try:
            revision, kvs = self.etcd.get_prefix(reg.ROOT)
        except HyprError as exc:
            log.debug("%s", exc.message)
            return None
        with self.kvs_lock:
            self.kvs = {k.key: k.value for k in kvs}
            self.revision = revision
        self._schedule()
        return revision

    def _changed(self, changes: list[kv.Change]) -> None:
        """A batch from the watch: applied to the copy of the registry, no read needed."""
        with self.kvs_lock:
            for key, value in changes:
                if value is None:
                    self.kvs.pop(key, None)
                else:
                    self.kvs[key] = value
            self.revision += 1
        self._schedule()

    def _schedule(self) -> None:
        """Parsing waits for the worker: a burst of batches (1000 endpoints) is parsed and applied once."""
        if self.pending.acquire(blocking=False):  # one apply queued at a time; it reads the newest copy
            self.submit(self._apply)

    def _apply(self) -> None:
        """On the worker: mirror the definitions, let the daemon converge, and retry any publish that failed
        while etcd was away (a workload removed meanwhile leaves a key behind until then)."""
        self.pending.release()
        with self.kvs_lock:
            items, revision = list(self.kvs.items()), self.revision
        self.state = reg.parse_state(revision, items)
        self.on_state(self.mirror())
        self.publish(self.db.snapshot())

    def mirror(self) -> bool:
        """Overlay definitions in etcd -> rows in the local database. True when a row was added or removed."""
        state = self.state
        if state is None:
            return False
        snapshot = self.db.snapshot()
        local = {n.id: n for n in snapshot.networks if n.driver == reg.OVERLAY}
        changed = False
        for network in state.networks.values():
            if network.id in local:
                continue
            problem = self._mirror_problem(network, snapshot)
            if problem:
                log.error("overlay network %s cannot be used on this host: %s", network.name, problem)
                continue
            row = dataclasses.replace(network, bridge=_free_bridge(snapshot, self.interfaces()))
            with self.db.transaction() as tx:
                self.db.insert_network(tx, row)
            snapshot = self.db.snapshot()
            changed = True
            log.info("overlay network %s (VNI %s) appeared: bridge %s", row.name, reg.vni_of(row), row.bridge)
        for network_id, network in local.items():
            if network_id not in state.networks and not any(e.network_id == network_id for e in snapshot.endpoints):
                with self.db.transaction() as tx:
                    self.db.delete_network(tx, network_id)
                changed = True
                log.info("overlay network %s was removed from the cluster", network.name)
        return changed

    def _mirror_problem(self, network: Network, snapshot: Snapshot) -> str | None:
        for other in snapshot.networks:
            if other.name == network.name:
                return f"a local network is named {other.name} too"
            if other.subnet and network.subnet and other.subnet.overlaps(network.subnet):
                return f"its subnet {network.subnet} overlaps the local network {other.name} ({other.subnet})"
        return None

    # -- networks --------------------------------------------------------------------------------------------------

    def plan_network(self, network: Network) -> Network:
        """A planned local row made an overlay: the default MTU leaves room for VXLAN's 50 octets."""
        mtu = network.mtu if OPT_MTU in network.options else reg.OVERLAY_MTU
        return dataclasses.replace(network, driver=reg.OVERLAY, mtu=mtu)

    def create_network(self, network: Network) -> Network:
        """Write the definition with a free VNI in one transaction that also takes its name and subnet."""
        state = self.fresh_state()
        if any(n.name == network.name for n in state.networks.values()):
            raise Conflict(f"network with name {network.name} already exists")
        ipam.check_overlap(_subnet(network), [_subnet(n) for n in state.networks.values()])
        used = {reg.vni_of(n) for n in state.networks.values()}
        for vni in (v for v in range(reg.VNI_FIRST, reg.VNI_LAST + 1) if v not in used):
            row = dataclasses.replace(network, options={**network.options, reg.OPT_VNI: str(vni)})
            keys = (reg.NAMES + row.name, f"{reg.VNIS}{vni}", reg.SUBNETS + str(row.subnet).replace("/", "_"))
            done = self.etcd.txn(
                [kv.absent(k) for k in keys],
                [kv.put(reg.NETWORKS + row.id, reg.network_to_json(row)), *(kv.put(k, row.id) for k in keys)],
                f"create overlay network {row.name}",
            )
            if done:
                return row
            state = self.fresh_state()
            if any(n.name == network.name for n in state.networks.values()):
                raise Conflict(f"network with name {network.name} already exists")
            ipam.check_overlap(_subnet(network), [_subnet(n) for n in state.networks.values()])
            used |= {reg.vni_of(n) for n in state.networks.values()} | {vni}
        raise Unavailable("no free VXLAN network identifier")

    def remove_network(self, network: Network) -> None:
        """Only while no host has an endpoint on it (Docker's rule), checked in the same transaction."""
        keys = (reg.NAMES + network.name, f"{reg.VNIS}{reg.vni_of(network)}",
                reg.SUBNETS + str(network.subnet).replace("/", "_"), reg.NETWORKS + network.id)  # fmt: skip
        done = self.etcd.txn([kv.prefix_empty(f"{reg.ENDPOINTS}{network.id}/")], [kv.delete(k) for k in keys],
                             f"remove overlay network {network.name}")  # fmt: skip
        if not done:
            raise Forbidden(
                f"error while removing network: network {network.name} id {network.id} has active endpoints"
            )

    def fresh_state(self) -> reg.ClusterState:
        revision, kvs = self.etcd.get_prefix(reg.ROOT)
        self.state = reg.parse_state(revision, ((k.key, k.value) for k in kvs))
        return self.state

    # -- addresses -------------------------------------------------------------------------------------------------

    def claim(self, network: Network, pool: ipam.Pool, requested: str | None, workload_id: str,
              local_in_use: Callable[[int], bool]) -> IPv4Address:  # fmt: skip
        """An address on an overlay network, leased in etcd under this node's lease: created only if absent, so two
        hosts never hand out one address. Call inside the local transaction that inserts the endpoint; a claim
        whose transaction rolls back is released by the next publish."""
        if not self.lease:
            raise Unavailable(f"cluster store {self.settings.store} is unreachable: cannot lease an address on "
                              f"overlay network {network.name}")  # fmt: skip
        _, kvs = self.etcd.get_prefix(f"{reg.ENDPOINTS}{network.id}/")
        taken = {int(IPv4Address(k.key.rsplit("/", 1)[1])) for k in kvs}
        last = self.db.last_ip(network.id)
        for _ in range(CLAIM_TRIES):
            if requested is not None:
                ip = ipam.check_static(pool, requested, lambda i: i in taken or local_in_use(i))
            else:
                found = ipam.next_address(pool, last, lambda i: i in taken or local_in_use(i))
                if found is None:
                    break
                ip = found
            key = reg.endpoint_key(network.id, ip)
            # with its MAC already: other hosts can program their VXLAN entries from the claim alone
            value = reg.RemoteEndpoint(network.id, ip, self.node, self.settings.advertise, mac=names.mac_for(ip),
                                       workload_id=workload_id).to_json()  # fmt: skip
            # the network must still exist: a removal elsewhere checks for endpoints in the same serialised store
            compare = [kv.absent(key), kv.present(reg.NETWORKS + network.id)]
            if self.etcd.txn(compare, [kv.put(key, value, self.lease)], f"lease {ip} on {network.name}"):
                self.published[key] = value
                return ip
            if not self.etcd.get_prefix(reg.NETWORKS + network.id)[1]:
                raise NotFound(f"network {network.name} not found: it was removed from the cluster")
            if requested is not None:
                raise InvalidParameter("Address already in use")
            taken.add(int(ip))
            last = int(ip)
        raise Unavailable(f"no available IPv4 addresses on this network's address pools: {network.name} "
                          f"({network.id})")  # fmt: skip

    # -- publishing this host's endpoints --------------------------------------------------------------------------

    def wanted(self, snapshot: Snapshot) -> dict[str, str]:
        """Endpoint key -> value for every local endpoint on an overlay network."""
        overlays = {n.id for n in snapshot.networks if n.driver == reg.OVERLAY}
        workloads = {w.id: w for w in snapshot.workloads}
        return {
            reg.endpoint_key(e.network_id, e.ip): reg.RemoteEndpoint(
                e.network_id,
                e.ip,
                self.node,
                self.settings.advertise,
                mac=e.mac,
                workload_id=e.workload_id,
                name=workloads[e.workload_id].name,
                aliases=e.aliases,
                running=workloads[e.workload_id].state == "running",
                endpoint_id=e.id,
            ).to_json()
            for e in snapshot.endpoints
            if e.network_id in overlays and e.workload_id in workloads and e.ip is not None
        }

    def publish_now(self) -> None:
        self.publish(self.db.snapshot())

    def publish(self, snapshot: Snapshot) -> None:
        """Write what changed in this host's endpoints since the last publish (after a new lease: all of them).
        etcd down: logged; the keepalive's re-join publishes everything again."""
        if not self.lease:
            return
        wanted = self.wanted(snapshot)
        try:
            for key, value in sorted(wanted.items()):
                if self.published.get(key) != value:
                    self._put_ours(key, value)
            for key in sorted(set(self.published) - set(wanted)):
                self._delete_ours(key)
        except Unavailable as exc:
            log.warning("publish endpoints: %s", exc.message)

    def _owner_value(self, key: str) -> str | None:
        _, kvs = self.etcd.get_prefix(key)
        found = next((k for k in kvs if k.key == key), None)
        if found is None:
            return None
        raw = found.value.decode()
        return raw if json.loads(raw).get("node") == self.node else ""

    def _put_ours(self, key: str, value: str) -> None:
        """Create the key, or take over one this node wrote (under an older lease); never another node's."""
        put = kv.put(key, value, self.lease)
        previous = self.published.get(key)  # written under this lease: one request replaces it
        if previous is not None and self.etcd.txn([kv.value_is(key, previous)], [put], f"publish {key}"):
            self.published[key] = value
            return
        if not self.etcd.txn([kv.absent(key)], [put], f"publish {key}"):
            current = self._owner_value(key)
            if current == "":
                log.error("address %s is held by another host in the cluster; not publishing it", key)
                self.published[key] = value
                return
            if current is not None and not self.etcd.txn([kv.value_is(key, current)], [put], f"publish {key}"):
                return  # changed meanwhile: the next publish tries again
        self.published[key] = value

    def _delete_ours(self, key: str) -> None:
        current = self._owner_value(key)
        if current:
            self.etcd.txn([kv.value_is(key, current)], [kv.delete(key)], f"release {key}")
        self.published.pop(key, None)

    # -- what other hosts have -------------------------------------------------------------------------------------

    def with_remote(self, snapshot: Snapshot) -> Snapshot:
        """`snapshot` plus every other host's running endpoints on overlay networks this host has, as workload and
        endpoint rows, for the DNS records (names resolve across hosts) and `network inspect`."""
        state = self.state
        if state is None:
            return snapshot
        rows = {e: self.rows.get(e) or _rows(e) for e in self.remote(snapshot)}
        self.rows = rows
        workloads = {w.id: w for w, _ in rows.values()}
        return dataclasses.replace(
            snapshot,
            workloads=snapshot.workloads + tuple(workloads.values()),
            endpoints=snapshot.endpoints + tuple(e for _, e in rows.values()),
        )

    def remote(self, snapshot: Snapshot) -> tuple[reg.RemoteEndpoint, ...]:
        """Other hosts' running endpoints on the overlay networks `snapshot` has."""
        state = self.state
        if state is None:
            return ()
        overlays = {n.id for n in snapshot.networks if n.driver == reg.OVERLAY}
        return tuple(e for e in state.endpoints if e.node != self.node and e.running and e.network_id in overlays)

    def nodes(self) -> list[dict[str, Any]]:
        state = self.fresh_state()
        return [
            {"ID": n.id, "Name": n.name, "Addr": n.addr, "Status": "ready" if n.alive else "down",
             "LastSeen": n.last_seen, "Self": n.id == self.node}
            for n in state.nodes
        ]  # fmt: skip


def _rows(e: reg.RemoteEndpoint) -> tuple[Workload, Endpoint]:
    """A remote endpoint as the rows DNS and inspect read: its workload (running, by name) and the endpoint."""
    workload = Workload(id=e.workload_id, name=e.name, image="", state="running")
    endpoint = Endpoint(id=e.endpoint_id, workload_id=e.workload_id, network_id=e.network_id, ip=e.ip, mac=e.mac,
                        host_ifname="", position=0, aliases=e.aliases)  # fmt: skip
    return workload, endpoint


def _free_bridge(snapshot: Snapshot, interfaces: frozenset[str]) -> str:
    busy = {n.bridge for n in snapshot.networks} | interfaces
    return next(names.bridge_name(i) for i in range(1, 100_000) if names.bridge_name(i) not in busy)


def _subnet(network: Network) -> IPv4Network:
    """An overlay's subnet: overlays are IPv4 (network_plan refuses IPv6 on them)."""
    assert network.subnet is not None
    return network.subnet
