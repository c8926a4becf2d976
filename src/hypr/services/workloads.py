"""Workload operations: validate (pure) -> one transaction -> runtime + reconcile. Runs on the daemon's worker.

The rows say what should exist (workload, endpoints with their addresses, port mappings); the runtime makes the
namespaces, links and processes; `ctx.converge()` derives firewall and DNS from the same rows.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal as signals
import socket
import time
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

from hypr import names
from hypr.errors import Conflict, Forbidden, HyprError, InvalidParameter, KernelError, NotFound
from hypr.models import OVERLAY, Endpoint, Network, Snapshot, Workload
from hypr.runtime.base import NO_OPTIONS, Attachment, ExecOptions, ExecProcess, Handle, LaunchSpec, Runtime
from hypr.runtime.rtnl import Rtnl
from hypr.services import addresses
from hypr.services.context import Context
from hypr.services.network_plan import find_network
from hypr.services.validation import new_id, now_rfc3339, parse_created, parse_signal
from hypr.services.workload_plan import (
    EndpointRequest,
    check_name,
    endpoint_request,
    find_workload,
    plan_workload_create,
)

log = logging.getLogger(__name__)
KILL_GRACE = 5.0  # seconds a SIGKILLed workload may take to be reaped before `kill` returns anyway
RESTART_FIRST_DELAY, RESTART_MAX_DELAY, RESTART_RESET = 0.1, 60.0, 10.0  # seconds (Docker's back-off)
# Seconds an exited --rm workload that no client asked about is kept: docker-py's run(auto_remove=True) asks for the
# exit code only after start (the docker CLI asks before), and a quick command is gone by then without it.
RM_GRACE = 2.0


def event(ctx: Context, workload: Workload, action: str, snapshot: Snapshot | None = None, **extra: str) -> None:
    """A container event as Docker's: its labels, image and name as attributes. A start joins its networks and a
    death leaves them, as Docker reports (network connect / disconnect); `snapshot`: the rows as they were, for a
    workload already deleted."""
    if action == "die":
        _network_events(ctx, workload, "disconnect", snapshot)
    ctx.events.emit("container", action, workload.id,
                    {**workload.labels, "image": workload.image, "name": workload.name, **extra})  # fmt: skip
    if action == "start":
        _network_events(ctx, workload, "connect")


def _network_events(ctx: Context, workload: Workload, action: str, snapshot: Snapshot | None = None) -> None:
    snapshot = snapshot or ctx.store.snapshot()
    for endpoint in snapshot.endpoints_of(workload.id):
        network = snapshot.network(endpoint.network_id)
        ctx.events.emit("network", action, network.id, {"container": workload.id, "name": network.name,
                                                         "type": network.driver})  # fmt: skip


def restarts(workload: Workload, exit_code: int | None) -> bool:
    """Docker's restart policies, for a workload that ended while hyprd ran: none after a `stop` or `kill` by the
    user (Docker cancels its restart manager then); on-failure restarts on a non-zero code while fewer than
    MaximumRetryCount (0: no limit) restarts were made since the last start asked for (Docker's restart manager:
    the count is not reset by a long run, only by `start`/`restart`)."""
    if workload.stopped_by_user:
        return False
    return _policy_restarts(workload, exit_code)


def restarts_at_start_up(workload: Workload) -> bool:
    """Docker's policies when its daemon starts (moby's restore: `ShouldRestart` with HasBeenManuallyStopped), for
    an exited workload that was started before: `always` restarts even one the user stopped (Docker's documented
    rule: "if it's manually stopped, it's restarted only when Docker daemon restarts"), `unless-stopped` one the
    user did not stop, `on-failure` one that failed (non-zero code) on its own within its retries."""
    if workload.state != "exited" or workload.auto_remove or not workload.started_at:
        return False
    if workload.restart == "always":
        return True
    return not workload.stopped_by_user and _policy_restarts(workload, workload.exit_code)


def _policy_restarts(workload: Workload, exit_code: int | None) -> bool:
    if workload.restart == "on-failure":
        within = not workload.restart_max or workload.restart_count < workload.restart_max
        return within and exit_code != 0
    return workload.restart in ("always", "unless-stopped")


def restarting_ids(ctx: Context) -> frozenset[str]:
    """The workloads waiting out their back-off before a restart by their policy (Docker's State.Restarting)."""
    return frozenset(workload_id for workload_id, (_count, due) in ctx.restarts.items() if due < math.inf)


# -- the runtime's view of a workload --------------------------------------------------------------------------------


def attachment(network: Network, endpoint: Endpoint) -> Attachment:
    return Attachment(
        host_ifname=endpoint.host_ifname, bridge=network.bridge, guest_ifname=f"eth{endpoint.position}",
        ip=endpoint.ip, prefixlen=network.subnet.prefixlen if network.subnet else 24, gateway=network.gateway,
        mac=endpoint.mac, mtu=network.mtu,
        ip6=endpoint.ip6, prefixlen6=network.subnet6.prefixlen if network.subnet6 else 64, gateway6=network.gateway6,
        link_local=tuple(IPv4Address(a) for a in endpoint.link_local_ips), internal=network.internal,
    )  # fmt: skip


def nameserver(attachments: tuple[Attachment, ...]) -> IPv4Address | IPv6Address | None:
    """The host's address a workload is given as resolver and `host-gateway`: the IPv4 gateway of its first network
    that has IPv4 (gateway order), or, when every network is IPv6-only, its first IPv6 gateway (the DNS server
    listens on both)."""
    return next((a.gateway for a in attachments if a.gateway), None) or next(
        (a.gateway6 for a in attachments if a.gateway6), None
    )


def launch_spec(ctx: Context, snapshot: Snapshot, workload: Workload) -> LaunchSpec:
    # In gateway order, internal networks last: LaunchSpec.gateway(6) carry the default routes, nameserver() resolves.
    endpoints = snapshot.gateway_order(workload.id)
    attachments = tuple(attachment(snapshot.network(e.network_id), e) for e in endpoints)
    own = workload.resolver
    search, options = ctx.host_resolver()
    extra = _extra_hosts(own.extra_hosts, nameserver(attachments))
    extra += _link_hosts(snapshot, workload)
    spec = LaunchSpec(
        workload_id=workload.id, name=workload.name, hostname=workload.hostname or workload.name,
        image=workload.image, command=workload.command, env=workload.env, attachments=attachments,
        nameserver=nameserver(attachments),
        state_dir=ctx.settings.paths.workloads / workload.id,
        owner_alias=ctx.reconciler.alias,
        hosts=(*extra, *((workload.name, address) for a in attachments[:1] if (address := a.ip or a.ip6))),
        search=own.search if own.search is not None else search,
        dns_options=own.options if own.options is not None else options, domainname=own.domainname,
        labels=workload.labels, cpus=workload.cpus, memory_mb=workload.memory_mb,
        data_dir=ctx.settings.paths.data_dir, workdir=workload.workdir or "/", user=workload.user,
        rootfs=ctx.images.rootfs(workload.image_id) if workload.image_id else None, image_id=workload.image_id,
        stop_signal=workload.stop_signal, confinement=workload.confinement,
        runtime_dir=ctx.settings.paths.runtime_dir, network_mode=workload.network_mode.partition(":")[0],
        stdio=workload.stdio,
    )  # fmt: skip
    return _shared_network(ctx, snapshot, workload, spec)


def _shared_network(ctx: Context, snapshot: Snapshot, workload: Workload, spec: LaunchSpec) -> LaunchSpec:
    """Host mode: the host's hostname and resolv.conf (Docker copies it). Container mode: the namespace owner's
    namespace, hostname, /etc/hosts entries and nameserver, as Docker shares them."""
    if workload.network_mode == "host":
        try:
            resolv = ctx.settings.resolv_conf.read_text(errors="replace")
        except OSError:
            resolv = ""
        return replace(spec, hostname=workload.hostname or socket.gethostname(), resolv_conf=resolv)
    if not workload.network_mode.startswith("container:"):
        return spec
    owner_id = workload.network_mode.partition(":")[2]
    owner = next((w for w in snapshot.workloads if w.id == owner_id), None)
    if owner is None:  # removed since: nothing to join (start refuses it by name)
        return replace(spec, shared_netns=None)
    peer = launch_spec(ctx, snapshot, owner)
    own = tuple((peer.hostname, address) for att in peer.attachments for address in (att.ip or att.ip6,) if address)
    return replace(
        spec, hostname=peer.hostname, hosts=tuple(dict.fromkeys((*peer.hosts, *own))), nameserver=peer.nameserver, search=peer.search,
        dns_options=peer.dns_options, shared_netns=peer.shared_netns or peer.state_dir / "netns",
        network_mode="host" if peer.network_mode == "host" else "container", resolv_conf=peer.resolv_conf,
    )  # fmt: skip


def _link_hosts(snapshot: Snapshot, workload: Workload) -> tuple[tuple[str, IPv4Address | IPv6Address], ...]:
    """Legacy links as Docker writes them into /etc/hosts: the alias and the linked workload's name, at its address
    on a network the two share (else its first)."""
    found: list[tuple[str, IPv4Address | IPv6Address]] = []
    mine = {e.network_id for e in snapshot.endpoints_of(workload.id)}
    for target_id, alias in workload.links:
        endpoints = snapshot.endpoints_of(target_id)
        if not endpoints:
            continue
        endpoint = next((e for e in endpoints if e.network_id in mine), endpoints[0])
        target = snapshot.workload(target_id)
        address = endpoint.ip or endpoint.ip6
        found += [(name, address) for name in dict.fromkeys((alias, target.name)) if address]
    return tuple(found)


def _extra_hosts(
    entries: tuple[tuple[str, str], ...], gateway: IPv4Address | IPv6Address | None
) -> tuple[tuple[str, IPv4Address | IPv6Address], ...]:
    """--add-host entries; `host-gateway` is the host's address on the workload's gateway network (its IPv6
    gateway when every network is IPv6-only)."""
    found: list[tuple[str, IPv4Address | IPv6Address]] = []
    for name, address in entries:
        if address != "host-gateway":
            found.append((name, ip_address(address)))
        elif gateway is not None:
            found.append((name, gateway))
    return tuple(found)


def handle_of(workload: Workload) -> Handle | None:
    if workload.pid is None or workload.pid_start is None:
        return None
    return Handle(pid=workload.pid, start_time=workload.pid_start, main_pid=workload.main_pid or workload.pid)


# -- create / remove ------------------------------------------------------------------------------------------------


def check_usable(ctx: Context, networks: Iterable[Network]) -> None:
    """Refuse to plug a workload into a network whose bridge is not ours (a foreign interface took its name):
    that network is broken, every other one keeps working."""
    for network in networks:
        why = ctx.reconciler.broken.get(network.id)
        if why is not None:
            raise KernelError(f"network {network.name} is not usable: {why}")


def create(ctx: Context, name: str | None, body: Any) -> Workload:
    snapshot = ctx.store.snapshot()
    plan = plan_workload_create(body, name, snapshot)
    workload = plan.workload
    check_usable(ctx, (request.network for request in plan.endpoints))
    runtime = ctx.runtime(workload.runtime)
    runtime.validate(launch_spec(ctx, snapshot, workload))
    mappings = ctx.ports.reserve(workload.id, plan.ports, ipv6=plan.reached_over_ipv6)
    try:
        with ctx.store.transaction() as tx, _TakenIfnames(snapshot, workload) as taken:
            ctx.store.insert_workload(tx, workload, {})
            for position, request in enumerate(plan.endpoints):
                taken.add(_insert_endpoint(ctx, tx, workload, request, position, taken).host_ifname)
            for mapping in mappings:
                ctx.store.insert_port(tx, mapping)
    except BaseException:
        ctx.ports.release(mappings)
        raise
    try:
        runtime.create(launch_spec(ctx, ctx.store.snapshot(), workload))
        ctx.converge()
    except HyprError:
        _delete(ctx, workload)
        raise
    event(ctx, workload, "create")
    return workload


class _TakenIfnames:
    """Interface names a new TAP must not take (VMs only; names.tap_name asks `in`): our endpoints', and any link
    on the host, asked one name at a time over netlink. Listing every link instead cost ~0.5 ms a link through
    pyroute2, on every VM create: most of the call at a few links, seconds at a thousand."""

    def __init__(self, snapshot: Snapshot, workload: Workload) -> None:
        self.vm = workload.runtime == "vm"
        self.ours = {e.host_ifname for e in snapshot.endpoints} if self.vm else set()
        self._rtnl: Rtnl | None = None

    def __enter__(self) -> _TakenIfnames:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rtnl is not None:
            self._rtnl.close()

    def add(self, name: str) -> None:
        self.ours.add(name)

    def __contains__(self, name: object) -> bool:
        if name in self.ours or not self.vm:
            return name in self.ours
        try:
            if self._rtnl is None:
                self._rtnl = Rtnl()
            return self._rtnl.link_index(str(name)) is not None
        except OSError as exc:
            raise KernelError(f"look up interface {name}: {exc}") from exc


def _insert_endpoint(
    ctx: Context, tx: Any, workload: Workload, request: EndpointRequest, position: int, taken: Container[str]
) -> Endpoint:
    network = request.network
    if network.driver == OVERLAY:
        ip = addresses.lease_overlay(ctx.cluster, ctx.store, network, request.ip, workload.id)
    elif request.ip:
        ip = addresses.reserve(ctx.store, network, request.ip)
    elif network.ipv4:
        ip = addresses.allocate(ctx.store, network)
    else:
        ip = None
    ip6 = None
    if request.ip6:
        ip6 = addresses.reserve6(ctx.store, network, request.ip6)
    elif network.ipv6:
        ip6 = addresses.allocate6(ctx.store, network)
    endpoint_id = new_id()
    address = ip or ip6
    assert address is not None  # a network has at least one family
    endpoint = Endpoint(
        id=endpoint_id, workload_id=workload.id, network_id=network.id, ip=ip,
        mac=request.mac or names.mac_for(address),
        host_ifname=names.tap_name(taken) if workload.runtime == "vm" else names.host_ifname(endpoint_id),
        position=position,
        aliases=request.aliases, static_ip=request.ip is not None, gw_priority=request.gw_priority,
        ip6=ip6, static_ip6=request.ip6 is not None,
        driver_opts=request.driver_opts, link_local_ips=request.link_local_ips,
    )  # fmt: skip
    ctx.store.insert_endpoint(tx, endpoint)
    return endpoint


def rename(ctx: Context, ref: str, new_name: str) -> None:
    """Docker's rename: the name (and so DNS) changes at once; the hostname inside stays what it was."""
    snapshot = ctx.store.snapshot()
    workload = find_workload(snapshot, ref)
    check_name(new_name.removeprefix("/"), snapshot)
    with ctx.store.transaction() as tx:
        ctx.store.rename_workload(tx, workload.id, new_name.removeprefix("/"))
    ctx.converge()
    event(ctx, replace(workload, name=new_name.removeprefix("/")), "rename", oldName="/" + workload.name)


def remove(ctx: Context, ref: str, *, force: bool = False) -> Workload:
    workload = find_workload(ctx.store.snapshot(), ref)
    if workload.state == "running" and not force:
        raise Conflict(
            f"You cannot remove a running container {workload.id}. Stop the container before attempting removal or "
            "force remove"
        )
    _delete(ctx, workload)
    return workload


def _delete(ctx: Context, workload: Workload) -> None:
    """Runtime objects first (processes, namespace, links), then the rows, then firewall and DNS."""
    snapshot = ctx.store.snapshot()
    spec = launch_spec(ctx, snapshot, workload)
    if workload.paused:  # thawed first, so that every process can be killed and reaped
        with contextlib.suppress(HyprError):
            ctx.runtime(workload.runtime).pause(spec, handle_of(workload) or Handle(0, 0, 0), paused=False)
    ctx.runtime(workload.runtime).delete(spec)
    ctx.ports.release(snapshot.ports_of(workload.id))
    ctx.restarts.pop(workload.id, None)
    ctx.claimed.discard(workload.id)
    with ctx.store.transaction() as tx:
        ctx.store.delete_workload(tx, workload.id)
    ctx.converge()
    if workload.state == "running":  # rm -f: killed here, as Docker reports it
        event(ctx, workload, "kill", signal=str(int(signals.SIGKILL)))
        event(ctx, workload, "die", snapshot, exitCode="137")
    event(ctx, workload, "destroy")


# -- lifecycle ------------------------------------------------------------------------------------------------------


def start(ctx: Context, ref: str, *, by_policy: bool = False) -> bool:
    """False when it was already running (Docker answers 304 then). `by_policy`: a restart by its restart policy,
    counted in RestartCount; any other start sets the count back to 0, as Docker's does."""
    snapshot = ctx.store.snapshot()
    workload = find_workload(snapshot, ref)
    if workload.state == "running":
        return False
    check_startable(snapshot, workload)
    runtime = ctx.runtime(workload.runtime)
    check_usable(ctx, (snapshot.network(e.network_id) for e in snapshot.endpoints_of(workload.id)))
    spec = launch_spec(ctx, snapshot, workload)
    count, _due = ctx.restarts.get(workload.id, (0, 0.0))
    if count:
        ctx.restarts[workload.id] = (count, math.inf)  # keeps the back-off count until a run lasts long enough
    runtime.create(spec)  # idempotent: repairs a namespace lost to a reboot
    # Its names, and the names it may see, are served before its first instruction runs.
    with ctx.store.transaction() as tx:
        ctx.store.set_starting(tx, workload.id, now_rfc3339(), workload.restart_count + 1 if by_policy else 0)
    try:
        ctx.converge()
        handle = runtime.start(spec)
    except HyprError:
        with ctx.store.transaction() as tx:
            ctx.store.restore_state(tx, workload)
        ctx.converge()
        if workload.auto_remove:  # as Docker: an --rm workload that cannot start is removed (its client waits)
            _delete(ctx, workload)
        raise
    with ctx.store.transaction() as tx:
        ctx.store.set_running(tx, workload.id, handle.pid, handle.start_time, handle.main_pid, now_rfc3339())
    event(ctx, workload, "start")
    return True


def check_startable(snapshot: Snapshot, workload: Workload) -> None:
    """A network removed while it was stopped, or a namespace owner that does not run: Docker's errors."""
    if workload.lost_networks:
        raise NotFound(f"network {workload.lost_networks[0]} not found")
    if workload.network_mode.startswith("container:"):
        owner_id = workload.network_mode.partition(":")[2]
        owner = next((w for w in snapshot.workloads if w.id == owner_id), None)
        if owner is None:
            raise NotFound(f"No such container: {owner_id}")
        if owner.state != "running":
            raise Conflict(f"cannot join network namespace of a non running container: {owner.name} is {owner.state}")


@dataclass(frozen=True)
class Stopping:
    """A stop in progress. `wait` may block for the whole timeout, so the API runs it off the worker thread: one
    workload ignoring SIGTERM must not hold up every other operation."""

    workload_id: str
    runtime: Runtime
    spec: LaunchSpec
    handle: Handle

    def wait(self, timeout: float) -> int | None:
        return self.runtime.stop(self.spec, self.handle, timeout)


def stop_target(ctx: Context, ref: str) -> Stopping | None:
    snapshot = ctx.store.snapshot()
    workload = find_workload(snapshot, ref)
    handle = handle_of(workload)
    if workload.id in restarting_ids(ctx):  # Docker stops a restarting container: its restart is cancelled
        ctx.restarts.pop(workload.id, None)
        with ctx.store.transaction() as tx:
            ctx.store.set_stopped_by_user(tx, workload.id)
    if workload.state != "running" or handle is None:
        return None
    with ctx.store.transaction() as tx:
        ctx.store.set_stopped_by_user(tx, workload.id)
    if workload.paused:  # Docker stops a paused container: thawed, so it can see the signal
        ctx.runtime(workload.runtime).pause(launch_spec(ctx, snapshot, workload), handle, paused=False)
        with ctx.store.transaction() as tx:
            ctx.store.set_paused(tx, workload.id, False)
    return Stopping(workload.id, ctx.runtime(workload.runtime), launch_spec(ctx, snapshot, workload), handle)


def mark_stopped(ctx: Context, workload_id: str, code: int | None) -> None:
    ctx.restarts.pop(workload_id, None)  # stopped on purpose: no restart policy applies
    with ctx.store.transaction() as tx:
        ctx.store.set_exited(tx, workload_id, code, now_rfc3339())
    ctx.converge()  # its names leave DNS
    workload = ctx.store.snapshot().workload(workload_id)
    event(ctx, workload, "die", exitCode=str(code if code is not None else -1))
    event(ctx, workload, "stop")


def kill(ctx: Context, ref: str, signal: str = "KILL") -> None:
    snapshot = ctx.store.snapshot()
    workload = find_workload(snapshot, ref)
    handle = handle_of(workload)
    sig = parse_signal(signal)
    # moby's killWithSignal: KILL, or the stop signal (any signal when none was set), cancels the restart policy.
    ends_it = sig == signals.SIGKILL or not workload.stop_signal or sig == parse_signal(workload.stop_signal)
    if ends_it and workload.id in restarting_ids(ctx):  # restarting: no process to signal, the restart is cancelled
        ctx.restarts.pop(workload.id, None)
        with ctx.store.transaction() as tx:
            ctx.store.set_stopped_by_user(tx, workload.id)
        return
    if workload.state != "running" or handle is None:
        raise Conflict(f"Cannot kill container: {ref}: Container {workload.id} is not running")
    runtime, spec = ctx.runtime(workload.runtime), launch_spec(ctx, snapshot, workload)
    if workload.paused:
        if sig != signals.SIGKILL:
            raise Conflict(f"Cannot kill container: {ref}: Container {workload.id} is paused. Unpause the container "
                           "before stopping or killing")  # fmt: skip
        runtime.pause(spec, handle, paused=False)
    if ends_it:  # stopped by the user (Docker's HasBeenManuallyStopped), recorded before the signal
        with ctx.store.transaction() as tx:
            ctx.store.set_stopped_by_user(tx, workload.id)
    runtime.kill(spec, handle, sig)
    event(ctx, workload, "kill", signal=str(int(sig)))
    if sig == signals.SIGKILL:  # cannot be caught: the workload is gone in moments, so report it gone
        deadline = time.monotonic() + KILL_GRACE
        while runtime.status(spec, handle)[0] and time.monotonic() < deadline:
            time.sleep(0.01)
    refresh(ctx)


def refresh(ctx: Context) -> None:
    """Notice workloads that ended on their own: record the exit, then --rm them (once no attach or wait holds
    them), or restart them as their policy says, after Docker's back-off (100 ms, doubling up to a minute; reset
    once a run lasted 10 s)."""
    snapshot = ctx.store.snapshot()
    now = time.monotonic()
    ended = ctx.exits.candidates(snapshot, handle_of)  # the few whose process may have ended: only those are asked
    for workload in snapshot.workloads:
        if workload.state == "exited" and workload.auto_remove:
            if _removable(ctx, workload):
                _delete(ctx, workload)
            continue
        if workload.state == "exited" and ctx.restarts.get(workload.id, (0, math.inf))[1] <= now:
            log.info("restarting %s (policy %s)", workload.name, workload.restart)
            start(ctx, workload.id, by_policy=True)
        if workload.state != "running" or workload.id not in ended:
            continue
        handle = handle_of(workload)
        if handle is None:
            continue
        runtime = ctx.runtime(workload.runtime)
        if runtime.running(handle):
            continue  # no launch spec for those still running: at 1000 workloads that was ~0.1 s per look
        running, code = runtime.status(launch_spec(ctx, snapshot, workload), handle)
        if running:
            continue
        finished_at = now_rfc3339()
        with ctx.store.transaction() as tx:
            ctx.store.set_exited(tx, workload.id, code, finished_at)
        ctx.converge()  # its names leave DNS
        event(ctx, workload, "die", exitCode=str(code if code is not None else -1))
        if workload.auto_remove:
            exited = replace(workload, state="exited", finished_at=finished_at)
            if _removable(ctx, exited):
                _delete(ctx, exited)
        elif restarts(workload, code):
            ran_for = (
                (datetime.now(UTC) - parse_created(workload.started_at)).total_seconds() if workload.started_at else 0
            )
            count = 0 if ran_for >= RESTART_RESET else ctx.restarts.get(workload.id, (0, 0.0))[0]
            ctx.restarts[workload.id] = (count + 1, now + min(RESTART_FIRST_DELAY * 2**count, RESTART_MAX_DELAY))


def _removable(ctx: Context, workload: Workload) -> bool:
    """An exited --rm workload goes once nothing holds it: at once when a client read its exit, else RM_GRACE
    seconds after it ended."""
    if ctx.holds[workload.id]:
        return False
    if workload.id in ctx.claimed or not workload.finished_at:
        return True
    return (datetime.now(UTC) - parse_created(workload.finished_at)).total_seconds() >= RM_GRACE


def adopt_all(ctx: Context) -> None:
    """After a daemon restart: workloads that kept running are ours again; the others are marked exited."""
    snapshot = ctx.store.snapshot()
    present = ctx.reconciler.link_names()
    for workload in snapshot.workloads:
        if workload.state != "running":  # a create cut short between its rows and its interfaces: plug them
            _repair(ctx, snapshot, workload, present)
            continue
        handle = ctx.runtime(workload.runtime).adopt(launch_spec(ctx, snapshot, workload))
        if handle is None:
            log.info("workload %s ended while hyprd was down", workload.name)
            if workload.pid is None:  # a start interrupted before its process ran: it never started
                with ctx.store.transaction() as tx:
                    ctx.store.set_exited(tx, workload.id, None, now_rfc3339())
        else:
            log.info("re-adopted workload %s (pid %d)", workload.name, handle.pid)
            if workload.pid is None:  # started, but hyprd died before it recorded the process: record it now
                with ctx.store.transaction() as tx:
                    ctx.store.set_running(tx, workload.id, handle.pid, handle.start_time, handle.main_pid,
                                          workload.started_at or now_rfc3339())  # fmt: skip
        # Both ways: an `rm -f` cut short after the runtime's delete but before the rows went leaves a row whose
        # interfaces are gone; plugging them back gives "none of the rm" (the workload stays, exited).
        _repair(ctx, snapshot, workload, present)
    _schedule_policy_restarts(ctx)
    refresh(ctx)


def _schedule_policy_restarts(ctx: Context) -> None:
    """The restarts pending when hyprd went down lived in its memory: the policies are applied again to every
    exited workload, as Docker's daemon does when it starts, after the first back-off delay. (Those that ended
    while hyprd was down are still `running` in the rows: `refresh` records their exit and applies the policy.)"""
    due = time.monotonic() + RESTART_FIRST_DELAY
    for workload in ctx.store.snapshot().workloads:
        if restarts_at_start_up(workload):
            log.info("restart policy %s of %s applied at start-up", workload.restart, workload.name)
            ctx.restarts[workload.id] = (1, due)


def _repair(ctx: Context, snapshot: Snapshot, workload: Workload, present: set[str]) -> None:
    """A connect, disconnect or rm cut short by a crash leaves a row without its interface, or the reverse (the
    reconcile removes host links no row owns): plug whatever the rows say is missing (create is idempotent).
    Only for a workload with a host link missing from `present` (the links that exist): a runtime create costs
    ~10 ms, and a host with many stopped workloads must not pay it for each at every start-up. (A namespace
    that is gone takes its veth ends with it; a workload without endpoints gets its namespace at start.)"""
    if all(e.host_ifname in present for e in snapshot.endpoints_of(workload.id)):
        return
    log.info("plugging the interfaces of %s again", workload.name)
    try:
        ctx.runtime(workload.runtime).create(launch_spec(ctx, snapshot, workload))
    except HyprError as exc:
        log.error("repair the network of %s: %s", workload.name, exc.message)


def exec_process(
    ctx: Context, ref: str, argv: tuple[str, ...], env: Mapping[str, str], workdir: str | None,
    options: ExecOptions = NO_OPTIONS,
) -> ExecProcess:  # fmt: skip
    snapshot = ctx.store.snapshot()
    workload = find_workload(snapshot, ref)
    handle = handle_of(workload)
    if workload.state != "running" or handle is None:
        raise Conflict(f"Container {workload.id} is not running")
    if not argv:
        raise InvalidParameter("No exec command specified")
    spec = launch_spec(ctx, snapshot, workload)
    return ctx.runtime(workload.runtime).exec_process(spec, handle, argv, env, workdir, options)


def log_path(ctx: Context, ref: str) -> Path:
    snapshot = ctx.store.snapshot()
    workload = find_workload(snapshot, ref)
    return ctx.runtime(workload.runtime).log_path(launch_spec(ctx, snapshot, workload))


@dataclass(frozen=True)
class StreamTarget:
    """What an attach, logs or wait stream needs of a workload, looked up once."""

    workload: Workload
    log: Path  # log.json (sandbox) or the raw log (vm)
    attach_socket: Path | None  # the supervisor's (sandbox); None when the runtime has none
    state_dir: Path


def stream_target(ctx: Context, ref: str) -> StreamTarget:
    snapshot = ctx.store.snapshot()
    workload = find_workload(snapshot, ref)
    spec = launch_spec(ctx, snapshot, workload)
    runtime = ctx.runtime(workload.runtime)
    return StreamTarget(workload, runtime.log_path(spec), runtime.attach_socket(spec), spec.state_dir)


def hold(ctx: Context, workload_id: str, *, claim: bool = True) -> None:
    """Keep an exited --rm workload (see Context.holds) until `release`. `claim`: the holder reads the run's end
    (a wait, an attach), so the workload may go as soon as it lets go; a log follower does not (docker-py's run()
    follows the logs first and asks for the exit code after)."""
    ctx.holds[workload_id] += 1
    if claim:
        ctx.claimed.add(workload_id)


def release(ctx: Context, workload_id: str) -> None:
    ctx.holds[workload_id] -= 1
    if ctx.holds[workload_id] <= 0:
        del ctx.holds[workload_id]
    refresh(ctx)  # an --rm workload that ended meanwhile goes now


# -- network connect / disconnect -------------------------------------------------------------------------------------


def connect(ctx: Context, network_ref: str, workload_ref: str, config: Any = None) -> Endpoint:
    """Docker's network connect; `config` is its EndpointConfig (IPAMConfig, Aliases, MacAddress, DriverOpts,
    GwPriority), validated here."""
    snapshot = ctx.store.snapshot()
    workload = find_workload(snapshot, workload_ref)
    check_connectable(workload, network_ref)
    network = find_network(snapshot, network_ref)
    request = endpoint_request(network, config, "EndpointConfig")
    current = snapshot.endpoints_of(workload.id)
    if any(e.network_id == network.id for e in current):
        raise Forbidden(f"endpoint with name {workload.name} already exists in network {network.name}")
    check_usable(ctx, [network])
    position = max((e.position for e in current), default=-1) + 1
    with ctx.store.transaction() as tx, _TakenIfnames(snapshot, workload) as taken:
        endpoint = _insert_endpoint(ctx, tx, workload, request, position, taken)
    try:
        ctx.converge()  # the new network's names are served before the interface appears
        ctx.runtime(workload.runtime).attach(
            launch_spec(ctx, ctx.store.snapshot(), workload), attachment(network, endpoint)
        )
    except HyprError:
        with ctx.store.transaction() as tx:
            ctx.store.delete_endpoint(tx, endpoint.id)
        ctx.converge()
        raise
    ctx.events.emit("network", "connect", network.id, {"container": workload.id, "name": network.name,
                                                        "type": network.driver})  # fmt: skip
    return endpoint


NO_NETWORK = "container cannot be connected to multiple networks with one of the networks in private (none) mode"
HOST_NETWORK = "container cannot be disconnected from host network or connected to host network"
SHARED_NETWORK = (
    "container sharing network namespace with another container or host cannot be connected to any other network"
)


def check_connectable(workload: Workload, network_ref: str) -> None:
    """Docker's rules (runconfig's messages): the `host` network takes no one new, a workload in host or container
    mode shares a namespace it cannot add to, and one in `none` mode stays alone."""
    if network_ref == "host" or workload.network_mode == "host":
        raise InvalidParameter(HOST_NETWORK)
    if workload.network_mode.startswith("container:"):
        raise InvalidParameter(SHARED_NETWORK)
    if network_ref == "none" or workload.network_mode == "none":
        raise InvalidParameter(NO_NETWORK)


def disconnect(ctx: Context, network_ref: str, workload_ref: str, *, force: bool = False) -> None:
    snapshot = ctx.store.snapshot()
    workload = find_workload(snapshot, workload_ref)
    if network_ref == "host" or workload.network_mode == "host":
        raise InvalidParameter(HOST_NETWORK)
    if network_ref in workload.lost_networks:  # removed while it was stopped: only the config goes
        with ctx.store.transaction() as tx:
            ctx.store.set_settings(tx, replace(workload, lost_networks=tuple(
                n for n in workload.lost_networks if n != network_ref)))  # fmt: skip
        return
    if workload.network_mode.startswith("container:"):
        raise InvalidParameter(SHARED_NETWORK)
    if workload.network_mode == "none" or network_ref == "none":
        raise Forbidden(f"container {workload.id} is not connected to network {network_ref}"
                        if workload.network_mode != "none" else
                        f"container {workload.name} is in network mode none: it has no network to leave")  # fmt: skip
    network = find_network(snapshot, network_ref)
    endpoint = next((e for e in snapshot.endpoints_of(workload.id) if e.network_id == network.id), None)
    if endpoint is None:
        raise Forbidden(f"container {workload.id} is not connected to network {network.name}")
    # The runtime sees the workload as it will be: the next network may take over the default route and DNS.
    after = snapshot.without_endpoint(endpoint)
    try:
        ctx.runtime(workload.runtime).detach(launch_spec(ctx, after, workload), attachment(network, endpoint))
    except KernelError:
        if not force:
            raise
        log.warning("disconnect %s from %s: kernel clean-up failed, forced", workload.name, network.name)
    with ctx.store.transaction() as tx:
        ctx.store.delete_endpoint(tx, endpoint.id)
    ctx.converge()
    ctx.events.emit("network", "disconnect", network.id, {"container": workload.id, "name": network.name,
                                                           "type": network.driver})  # fmt: skip
