"""Network operations: validate (pure) -> one transaction -> reconcile. Runs on the daemon's worker thread."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hypr.errors import Forbidden, HyprError, Unavailable
from hypr.models import OVERLAY, Network, Snapshot
from hypr.services import network_plan as plan
from hypr.services import workloads
from hypr.services.context import Context


def create(ctx: Context, body: Any) -> Network:
    snapshot = ctx.store.snapshot()
    network = plan.plan_network_create(body, snapshot, ctx.reconciler.host_view())
    if network.driver == OVERLAY:
        network = _create_overlay(ctx, body, snapshot, network)
    with ctx.store.transaction() as tx:
        ctx.store.insert_network(tx, network)
    try:
        ctx.converge()
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
    network = plan.plan_network_create(body, wider, ctx.reconciler.host_view())
    return ctx.cluster.create_network(ctx.cluster.plan_network(network))


def ensure_default(ctx: Context) -> None:
    """The predefined `bridge` network exists from the first start on."""
    if any(n.builtin for n in ctx.store.snapshot().networks):
        return
    network = plan.plan_default_network(
        ctx.settings.default_subnet, ctx.settings.default_gateway, ctx.reconciler.host_view()
    )
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
        for endpoint in [e for e in snapshot.endpoints if e.network_id == network.id]:
            workloads.disconnect(ctx, network.id, endpoint.workload_id, force=True)
    if network.driver == OVERLAY:
        if ctx.cluster is None:
            raise Unavailable(f"network {network.name} is an overlay: this hyprd has no cluster store")
        ctx.cluster.remove_network(network)
    with ctx.store.transaction() as tx:
        ctx.store.delete_network(tx, network.id)
    ctx.converge()
    return network


def prune(ctx: Context, filters: Mapping[str, list[str]]) -> list[str]:
    # Overlays live in the cluster store: a prune on one host must not take them from every other.
    doomed = [n for n in plan.prune_candidates(ctx.store.snapshot(), filters, datetime.now(UTC)) if n.driver != OVERLAY]
    if not doomed:
        return []
    with ctx.store.transaction() as tx:
        for network in doomed:
            ctx.store.delete_network(tx, network.id)
    ctx.converge()
    return [n.name for n in doomed]
