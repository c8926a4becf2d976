"""Value types shared by the daemon's planners: one frozen record per database row.

A `Snapshot` is a read-only copy of the whole desired state. Pure planners (IPAM, validation, firewall rendering,
DNS records) take a snapshot and return a plan; they never read the database or the kernel themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from operator import attrgetter, is_not
from typing import Any, Literal

Protocol = Literal["tcp", "udp"]
WorkloadState = Literal["created", "running", "exited"]

DEFAULT_NETWORK = "bridge"
BUILTIN_IMAGES = ("host", "busybox")  # run without a pull; absolute paths name root filesystem directories
DRIVER = "bridge"
OVERLAY = "overlay"  # multi-host, kept in the cluster store (hypr/cluster/)

# Driver options we honour (Docker's keys).
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
OPT_HOST_BINDING = "com.docker.network.bridge.host_binding_ipv4"
OPT_GATEWAY_MODE6 = "com.docker.network.bridge.gateway_mode_ipv6"  # "nat" (default) or "routed"


@dataclass(frozen=True)
class Network:
    id: str  # 64 hex characters
    name: str
    bridge: str  # kernel interface name, derived at create time and stored
    subnet: IPv4Network | None  # None: an IPv6-only network (Docker's EnableIPv4: false)
    gateway: IPv4Address | None
    ip_range: IPv4Network | None = None
    aux_addresses: Mapping[str, IPv4Address] = field(default_factory=dict)
    internal: bool = False
    mtu: int = 1500
    icc: bool = True  # traffic between workloads of this network
    masquerade: bool = True  # NAT to the outside
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)  # echoed exactly as sent
    ipam_options: Mapping[str, str] | None = None  # None: the client sent none
    created: str = ""  # RFC 3339 with nanoseconds, UTC
    driver: str = DRIVER
    # IPv6 (dual-stack): None for an IPv4-only network.
    subnet6: IPv6Network | None = None
    gateway6: IPv6Address | None = None
    ip_range6: IPv6Network | None = None
    routed6: bool = False  # gateway_mode_ipv6=routed: no NAT66, the subnet is routed as it is
    attachable: bool = False  # Docker's --attachable: stored and shown (every local network takes any workload)

    @property
    def builtin(self) -> bool:
        return self.name == DEFAULT_NETWORK

    @property
    def ipv6(self) -> bool:
        return self.subnet6 is not None

    @property
    def ipv4(self) -> bool:
        return self.subnet is not None


@dataclass(frozen=True)
class Endpoint:
    """A workload's attachment to one network."""

    id: str  # 64 hex characters
    workload_id: str
    network_id: str
    ip: IPv4Address | None  # None on an IPv6-only network
    mac: str  # "02:42:0a:58:00:02"
    host_ifname: str  # veth host end or TAP, on the network's bridge
    position: int  # attach order: guest interface eth<position>
    aliases: tuple[str, ...] = ()  # --network-alias, compose service name and aliases
    static_ip: bool = False
    gw_priority: int = 0  # Docker's GwPriority: the highest carries the default route
    ip6: IPv6Address | None = None  # on a dual-stack network
    static_ip6: bool = False  # --ip6 / ipv6_address
    driver_opts: Mapping[str, str] = field(default_factory=dict)  # Docker's DriverOpts, as given (shown by inspect)
    link_local_ips: tuple[str, ...] = ()  # IPAMConfig.LinkLocalIPs: extra addresses on the guest interface


@dataclass(frozen=True)
class PortMapping:
    workload_id: str
    host_ip: IPv4Address | IPv6Address  # 0.0.0.0: every host address, both families (Docker's ""); ::: every IPv6 one
    host_port: int
    guest_port: int
    protocol: Protocol = "tcp"
    requested: str | None = None  # the host port as asked: "" any free one, "8080", "8000-8010"; None: host_port


@dataclass(frozen=True)
class Workload:
    id: str  # 64 hex characters
    name: str
    image: str
    runtime: str = "sandbox"  # "sandbox" | "vm"
    state: WorkloadState = "created"
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    hostname: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    cpus: float = 1.0  # vm runtime: vCPUs
    memory_mb: int = 256  # vm runtime: guest memory
    auto_remove: bool = False  # --rm
    restart: str = "no"  # restart policy: no | always | unless-stopped | on-failure
    restart_max: int = 0  # on-failure's maximum retry count (Docker's MaximumRetryCount); 0: no limit
    restart_count: int = 0  # restarts by the policy since the last start asked for (Docker's RestartCount)
    stopped_by_user: bool = False  # stopped or killed by the user since its last start (HasBeenManuallyStopped)
    pid: int | None = None  # the runtime's supervisor while running
    pid_start: int | None = None  # its start time (/proc/<pid>/stat field 22): guards against pid reuse
    main_pid: int | None = None  # the workload's command
    exit_code: int | None = None
    started_at: str = ""
    finished_at: str = ""
    image_id: str = ""  # a pulled image's ID ("sha256:<hex>"); "" for built-in images and rootfs directories
    user: str = ""  # Docker's User, from --user or the image
    workdir: str = ""  # from -w or the image; "" means /
    stop_signal: str = ""  # from --stop-signal or the image; "" means SIGTERM
    entrypoint: tuple[str, ...] = ()  # the first words of `command` that are the entrypoint (for inspect)
    exposed_ports: tuple[str, ...] = ()  # "80/tcp": the image's ExposedPorts and --expose
    resolver: Resolver = field(default_factory=lambda: Resolver())
    confinement: Confinement = field(default_factory=lambda: Confinement())
    # Docker's network modes: "" (bridge networks, its endpoints), "none" (only lo), "host" (the daemon's network
    # namespace), "container:<workload id>" (that workload's network namespace).
    network_mode: str = ""
    paused: bool = False  # running, its processes frozen (Docker's pause)
    links: tuple[tuple[str, str], ...] = ()  # legacy --link: (linked workload's id, alias)
    publish_all: bool = False  # -P, as asked (the ports it gave are port mappings)
    mac_address: str = ""  # Config.MacAddress as asked (the endpoint of NetworkMode carries it)
    # Networks removed while it was stopped (Docker keeps the config, not the endpoint): starting it fails by name.
    lost_networks: tuple[str, ...] = ()
    stdio: Stdio = field(default_factory=lambda: Stdio())

    @property
    def shares_network(self) -> bool:
        """True when it has no network namespace of its own (host or container:<id>)."""
        return self.network_mode == "host" or self.network_mode.startswith("container:")


@dataclass(frozen=True)
class Stdio:
    """Docker's Config.Tty, OpenStdin and StdinOnce: how the workload's standard streams are wired. Without a TTY,
    stdout and stderr are two pipes kept apart; with one, a pty carries both. OpenStdin: stdin is a pipe the
    supervisor holds, fed by attach; StdinOnce: it is closed when the first attached client closes its stdin."""

    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False


@dataclass(frozen=True)
class Resolver:
    """A workload's own resolver settings (Docker's HostConfig.Dns, DnsSearch, DnsOptions, ExtraHosts and
    Config.Domainname). Empty tuples mean "as the host has them" (search and options from its resolv.conf)."""

    dns: tuple[str, ...] = ()  # servers the gateway forwards this workload's outside names to
    search: tuple[str, ...] | None = None  # None: the host's; () from `--dns-search .`: none
    options: tuple[str, ...] | None = None  # None: the host's
    extra_hosts: tuple[tuple[str, str], ...] = ()  # (name, address or "host-gateway")
    domainname: str = ""


@dataclass(frozen=True)
class Mount:
    """A file system a sandbox sees besides its root: one of Docker's Binds, Mounts or Tmpfs, validated."""

    type: Literal["bind", "tmpfs"]
    target: str  # absolute, inside the workload
    source: str = ""  # bind: an absolute host path
    readonly: bool = False  # bind: recursively read-only
    options: tuple[str, ...] = ()  # bind: a propagation ("rprivate"...), "nonrecursive"; tmpfs: size=, mode=, ...
    create_source: bool = False  # `-v`: a missing host directory is made at start (Docker's Binds; --mount refuses)


@dataclass(frozen=True)
class Confinement:
    """How a sandbox is confined beyond Docker's defaults (docs/sandbox.md): Docker's HostConfig fields as asked
    (echoed by inspect), and what they resolve to. The defaults are Docker's (hypr's no_new_privs aside)."""

    privileged: bool = False
    cap_add: tuple[str, ...] = ()  # "CAP_NET_ADMIN", ..., or "ALL"
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()  # as given
    seccomp: str = ""  # "": the default profile; "unconfined"; or a profile's JSON (seccomp=<json>)
    no_new_privileges: bool | None = None  # None: on, unless privileged
    unmasked: bool = False  # systempaths=unconfined: no masked or read-only /proc paths
    readonly_rootfs: bool = False
    tmpfs: tuple[tuple[str, str], ...] = ()  # HostConfig.Tmpfs as given: (target, options)
    binds: tuple[str, ...] = ()  # HostConfig.Binds as given
    api_mounts: tuple[Mapping[str, Any], ...] = ()  # HostConfig.Mounts as given
    mounts: tuple[Mount, ...] = ()  # all of the above, resolved, in the order they are mounted
    pids_limit: int | None = None  # None: no limit
    memory: int = 0  # bytes; 0: no limit
    nano_cpus: int = 0  # 10^9 per CPU; 0: no limit


@dataclass(frozen=True)
class Image:
    """A pulled image. `id` is the digest of its config blob, as in Docker."""

    id: str  # "sha256:<64 hex>"
    config: Mapping[str, Any]  # the OCI image config as pulled (architecture, os, config, rootfs, history)
    size: int  # bytes of the unpacked root filesystem
    created: str  # from the config (RFC 3339), "" when absent
    pulled: str  # when it was pulled (RFC 3339)
    repo_tags: tuple[str, ...] = ()  # fully qualified: "docker.io/library/nginx:latest"
    repo_digests: tuple[str, ...] = ()  # "docker.io/library/nginx@sha256:..."
    last_tagged: str = ""


# The Snapshot's lookup indexes (cached properties, or given by the store): what `without_endpoint` carries over.
_INDEXES = ("_networks_by_id", "_workloads_by_id", "_workloads_by_name", "_endpoints_by_workload", "_ports_by_workload")


@dataclass(frozen=True)
class Snapshot:
    """The whole desired state, as one consistent read."""

    networks: tuple[Network, ...] = ()
    workloads: tuple[Workload, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    images: tuple[Image, ...] = ()
    # Set by the store (`from_store`): the snapshot's number, and the store's log of what each number changed, so
    # `changes` between two of them reads the log instead of comparing rows. dataclasses.replace does not copy
    # them (a snapshot with rows added elsewhere is no longer the store's).
    serial: int = field(default=0, init=False, compare=False, repr=False)
    history: ChangeLog | None = field(default=None, init=False, compare=False, repr=False)

    @classmethod
    def from_store(
        cls, rows: dict[str, Any], serial: int, history: ChangeLog, indexes: dict[str, Mapping[str, Any]]
    ) -> Snapshot:
        """A snapshot of the store's rows with the lookup indexes the store keeps (the same shapes as the cached
        properties below build: by ID; a workload's endpoints in position order, its mappings in insertion order)."""
        snapshot = cls(**rows)
        object.__setattr__(snapshot, "serial", serial)
        object.__setattr__(snapshot, "history", history)
        snapshot.__dict__.update(indexes)  # what the cached properties would compute, without the scan
        return snapshot

    def without_endpoint(self, endpoint: Endpoint) -> Snapshot:
        """This snapshot as it will be once `endpoint` (one of its own, the same object; ValueError for another) is
        gone: what a disconnect plans with. Its lookup indexes are carried over and patched, not rebuilt: rebuilding
        them took milliseconds per disconnect at a thousand endpoints."""
        after = replace(self, endpoints=tuple(filter(partial(is_not, endpoint), self.endpoints)))
        if len(after.endpoints) == len(self.endpoints):
            raise ValueError(f"endpoint {endpoint.id} is not one of this snapshot's (the same object)")
        kept = {name: self.__dict__[name] for name in _INDEXES if name in self.__dict__}
        by_workload = kept.get("_endpoints_by_workload")
        if by_workload is not None:
            patched = dict(by_workload)
            left = [e for e in patched.pop(endpoint.workload_id, ()) if e is not endpoint]
            if left:
                patched[endpoint.workload_id] = left
            kept["_endpoints_by_workload"] = patched
        after.__dict__.update(kept)
        return after

    # Lookups by ID go through indexes built on first use: a planner asks per workload or per mapping, and a scan
    # per question made the cost of one operation grow with the square of what exists.
    @cached_property
    def _networks_by_id(self) -> Mapping[str, Network]:
        return {n.id: n for n in self.networks}

    @cached_property
    def _workloads_by_id(self) -> Mapping[str, Workload]:
        return {w.id: w for w in self.workloads}

    @cached_property
    def _workloads_by_name(self) -> Mapping[str, Workload]:
        ordered = self.workloads[::-1]  # the first of a name wins (names are unique; built in C all the same)
        return dict(zip(map(attrgetter("name"), ordered), ordered, strict=True))

    @cached_property
    def _endpoints_by_workload(self) -> Mapping[str, Sequence[Endpoint]]:
        found: dict[str, list[Endpoint]] = {}
        for e in self.endpoints:
            found.setdefault(e.workload_id, []).append(e)
        for endpoints in found.values():
            endpoints.sort(key=lambda e: e.position)
        return found

    @cached_property
    def _ports_by_workload(self) -> Mapping[str, Sequence[PortMapping]]:
        found: dict[str, list[PortMapping]] = {}
        for p in self.ports:
            found.setdefault(p.workload_id, []).append(p)
        return found

    def network(self, network_id: str) -> Network:
        """KeyError when there is no such network."""
        return self._networks_by_id[network_id]

    def workload(self, workload_id: str) -> Workload:
        """KeyError when there is no such workload."""
        return self._workloads_by_id[workload_id]

    def workload_named(self, name: str) -> Workload | None:
        return self._workloads_by_name.get(name)

    def has_workload(self, workload_id: str) -> bool:
        return workload_id in self._workloads_by_id

    def ports_of(self, workload_id: str) -> list[PortMapping]:
        return list(self._ports_by_workload.get(workload_id, ()))

    def endpoints_of(self, workload_id: str) -> list[Endpoint]:
        return list(self._endpoints_by_workload.get(workload_id, ()))

    def gateway_order(self, workload_id: str) -> list[Endpoint]:
        """A workload's endpoints, its gateway network first: the one that carries its default route, its resolver
        and its published ports. Docker's rule: the highest GwPriority, then by network name, among the networks
        with a way out; an internal network has no gateway (Docker's bridge driver sets none), so it never
        carries the default route, whatever its priority, and comes after them (its gateway is still the resolver
        of a workload on internal networks only, which gets no default route)."""
        return sorted(
            self.endpoints_of(workload_id),
            key=lambda e: (self.network(e.network_id).internal, -e.gw_priority, self.network(e.network_id).name),
        )

    def port_network(self, workload_id: str) -> Network | None:
        """The network a workload's published ports reach it on: the first without `internal` in gateway order."""
        return next(
            (n for n in (self.network(e.network_id) for e in self.gateway_order(workload_id)) if not n.internal), None
        )


@dataclass(frozen=True)
class HostRoute:
    """A route in the daemon's namespace that hypr does not own; new subnets must not overlap it."""

    dst: IPv4Network | IPv6Network
    dev: str

    def __str__(self) -> str:
        return f"{self.dst} dev {self.dev}"


@dataclass(frozen=True)
class HostView:
    """What the kernel already has that a new network must not collide with."""

    routes: tuple[HostRoute, ...] = ()
    interfaces: AbstractSet[str] = field(default_factory=frozenset)  # (the daemon's looks names up as asked)


@dataclass(frozen=True)
class Changes:
    """Which rows differ between two snapshots, as the incremental reconcile plans from them (see `changes`)."""

    networks: frozenset[str] = frozenset()  # IDs of networks added, removed or changed
    workloads: frozenset[str] = frozenset()  # IDs of workloads whose row, endpoints or mappings were added, removed
    # or changed
    images: bool = False


class ChangeLog:
    """A store's record of what each of its snapshots changed from the one before (the last `size` of them)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.entries: dict[int, Changes] = {}

    def add(self, serial: int, change: Changes) -> None:
        self.entries[serial] = change
        self.entries.pop(serial - self.size, None)

    def between(self, old: int, new: int) -> Changes | None:
        """What changed from snapshot `old` to snapshot `new`; None when the log does not reach back that far."""
        found = [self.entries.get(n) for n in range(old + 1, new + 1)]
        if old <= 0 or new < old or any(c is None for c in found):
            return None
        return Changes(
            networks=frozenset().union(*(c.networks for c in found if c is not None)),
            workloads=frozenset().union(*(c.workloads for c in found if c is not None)),
            images=any(c.images for c in found if c is not None),
        )


def changes(old: Snapshot, new: Snapshot) -> Changes:
    """The rows of `new` that are not in `old`, and the reverse, by workload and by network (a superset: a row
    written again with the same values may count). Between two snapshots of one store, its log says at once.
    Otherwise rows are told apart by identity first, in C (sets of `id()`: both snapshots hold their rows, so no
    ID is reused meanwhile; the store keeps unchanged rows as the same objects), and only the few that differ are
    compared by value (snapshots built elsewhere, as tests do, have equal rows that are other objects)."""
    if old.history is not None and old.history is new.history:
        logged = old.history.between(old.serial, new.serial)
        if logged is not None:
            return logged
    return Changes(
        networks=_changed(old.networks, new.networks, lambda n: n.id, lambda n: n.id),
        workloads=(
            _changed(old.workloads, new.workloads, lambda w: w.id, lambda w: w.id)
            | _changed(old.endpoints, new.endpoints, lambda e: e.id, lambda e: e.workload_id)
            | _changed(old.ports, new.ports, _port_key, lambda p: p.workload_id)
        ),
        images=old.images != new.images,
    )


def _port_key(p: PortMapping) -> tuple[object, ...]:
    return (p.workload_id, p.host_ip, p.host_port, p.protocol, p.guest_port)


def _changed(old: tuple[Any, ...], new: tuple[Any, ...], row_key: Any, owner: Any) -> frozenset[str]:
    before = dict(zip(map(id, old), old, strict=True))
    after = dict(zip(map(id, new), new, strict=True))
    gone = [before[i] for i in before.keys() - after.keys()]
    came = [after[i] for i in after.keys() - before.keys()]
    if not gone and not came:
        return frozenset()
    was = {row_key(row): row for row in gone}
    same = {key for row in came if (key := row_key(row)) in was and was[key] == row}
    return frozenset(owner(row) for row in (*gone, *came) if row_key(row) not in same)
