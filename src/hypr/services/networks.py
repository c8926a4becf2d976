"""Network operations: validate (pure) -> one transaction -> reconcile. Runs on the daemon's worker thread."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from hypr.errors import Forbidden, HyprError, Unavailable
from hypr.models import OVERLAY, Network, Snapshot
from hypr.services import network_plan as plan
from hypr.services import workloads
from hypr.services.context import Context


def create(ctx: Context, body: Any) -> Network:
    snapshot = ctx.store.snapshot()
    network = plan.plan_network_create(body, snapshot, ctx.reconciler.host_view(), ctx.pool6())
    if network.driver == OVERLAY:
        network = _create_overlay(ctx, body, snapshot, network)
    with ctx.store.transaction() as tx:
        ctx.store.insert_network(tx, network)
    try:
        ctx.converge()
        ctx.events.emit("network", "create", network.id, {"name": network.name, "type": network.driver})
    except HyprError:
        # The kernel refused it (or something else is off): the network must not exist half-made. Take the row
        # back and converge again, so a retry starts from where the user left off.
        with ctx.store.transaction() as tx:
            ctx.store.delete_network(tx, network.id)
        with contextlib.suppress(HyprError):  # the first error is the one to report
            ctx.converge()
        raise
    return network


def _create_overlay(ctx: Context, body: Any, snapshot: Snapshot, network: Network) -> Network:
    """Planned against every overlay in the cluster (their subnets too), then written to etcd; the local row
    follows, as on every other host when the watch brings it."""
    if ctx.cluster is None:
        raise Forbidden(
            "overlay networks need a cluster: start hyprd with --cluster-store etcd://HOST:PORT --advertise-addr IP"
        )
    state = ctx.cluster.fresh_state()
    known = {n.id for n in snapshot.networks}
    others = tuple(dataclasses.replace(n, bridge="") for n in state.networks.values() if n.id not in known)
    wider = dataclasses.replace(snapshot, networks=snapshot.networks + others)
    network = plan.plan_network_create(body, wider, ctx.reconciler.host_view(), ctx.pool6())
    return ctx.cluster.create_network(ctx.cluster.plan_network(network))


def ensure_default(ctx: Context) -> None:
    """The predefined `bridge` network exists from the first start on."""
    if any(n.builtin for n in ctx.store.snapshot().networks):
        return
    network = plan.plan_default_network(
        ctx.settings.default_subnet, ctx.settings.default_gateway, ctx.reconciler.host_view(),
        ctx.settings.default_subnet6, ctx.settings.default_gateway6,
    )  # fmt: skip
    with ctx.store.transaction() as tx:
        ctx.store.insert_network(tx, network)


def remove(ctx: Context, ref: str, *, force: bool = False) -> Network:
    snapshot = ctx.store.snapshot()
    network = plan.find_network(snapshot, ref)
    if network.builtin:
        raise Forbidden(f"{network.name} is a pre-defined network and cannot be removed")
    if plan.in_use(snapshot, network.id):
        if not force:
            raise Forbidden(
                f"error while removing network: network {network.name} id {network.id} has active endpoints"
            )
        running = {w.id for w in snapshot.workloads if w.state == "running"}
        for endpoint in [e for e in snapshot.endpoints if e.network_id == network.id and e.workload_id in running]:
            workloads.disconnect(ctx, network.id, endpoint.workload_id, force=True)
    if network.driver == OVERLAY:
        if ctx.cluster is None:
            raise Unavailable(f"network {network.name} is an overlay: this hyprd has no cluster store")
        ctx.cluster.remove_network(network)
    snapshot = ctx.store.snapshot()
    with ctx.store.transaction() as tx:
        _forget_members(ctx, tx, snapshot, network)
        ctx.store.delete_network(tx, network.id)
    ctx.converge()
    ctx.events.emit("network", "destroy", network.id, {"name": network.name, "type": network.driver})
    return network


def _forget_members(ctx: Context, tx: Any, snapshot: Snapshot, network: Network) -> None:
    """Stopped members keep the network's name in their config (Docker's), not their endpoint: the address goes
    back to the pool, and the reconcile removes the host end with the bridge."""
    for endpoint in [e for e in snapshot.endpoints if e.network_id == network.id]:
        member = snapshot.workload(endpoint.workload_id)
        ctx.store.set_settings(tx, replace(member, lost_networks=(*member.lost_networks, network.name)))
        ctx.store.delete_endpoint(tx, endpoint.id)


def prune(ctx: Context, filters: Mapping[str, list[str]]) -> list[str]:
    snapshot = ctx.store.snapshot()
    # Overlays live in the cluster store: a prune on one host must not take them from every other.
    doomed = [n for n in plan.prune_candidates(snapshot, filters, datetime.now(UTC)) if n.driver != OVERLAY]
    if not doomed:
        return []
    with ctx.store.transaction() as tx:
        for network in doomed:
            _forget_members(ctx, tx, snapshot, network)
            ctx.store.delete_network(tx, network.id)
    ctx.converge()
    for network in doomed:
        ctx.events.emit("network", "destroy", network.id, {"name": network.name, "type": network.driver})
    return [n.name for n in doomed]
