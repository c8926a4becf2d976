"""Network operations: validate (pure) -> one transaction -> reconcile. Runs on the daemon's worker thread."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hypr.errors import Forbidden, HyprError
from hypr.models import Network
from hypr.services import network_plan as plan
from hypr.services import workloads
from hypr.services.context import Context


def create(ctx: Context, body: Any) -> Network:
    network = plan.plan_network_create(body, ctx.store.snapshot(), ctx.reconciler.host_view(), ctx.pool6())
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
        for endpoint in [e for e in snapshot.endpoints if e.network_id == network.id]:
            workloads.disconnect(ctx, network.id, endpoint.workload_id, force=True)
    with ctx.store.transaction() as tx:
        ctx.store.delete_network(tx, network.id)
    ctx.converge()
    return network


def prune(ctx: Context, filters: Mapping[str, list[str]]) -> list[str]:
    doomed = plan.prune_candidates(ctx.store.snapshot(), filters, datetime.now(UTC))
    if not doomed:
        return []
    with ctx.store.transaction() as tx:
        for network in doomed:
            ctx.store.delete_network(tx, network.id)
    ctx.converge()
    return [n.name for n in doomed]
