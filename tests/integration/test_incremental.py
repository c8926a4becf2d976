"""The incremental reconcile gives the kernel the full reconcile would: random operation sequences, real kernel.

A sequence of snapshots (networks created and removed, workloads run, connected, disconnected, removed, with
published ports) is converged one by one, incrementally after the first, in a throw-away namespace, with a fake
runtime that plugs and unplugs the endpoints' host links as the real one does (and sometimes leaves one behind, as
a failed connect does). Then a full reconcile of the last snapshot runs on top: it must find nothing to change in
the links, and `table inet hypr` / `table bridge hypr` must list the same as the incremental path left them.
DNS has its own: the daemon's RecordsBuilder, which reuses unchanged workloads' parts, is checked against a build
from nothing on random changes in tests/unit/test_dns_names.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroute2 import IPRoute

from hypr import names
from hypr.models import Endpoint, Network, PortMapping, Snapshot, Workload
from hypr.reconcile import firewall, libnft, links
from hypr.reconcile.kernel import Reconciler
from hypr.runtime import _libc
from tests.integration.harness import netns

pytestmark = [pytest.mark.integration, pytest.mark.slow]
T = TypeVar("T")
ALIAS = "hypr:incremental"
NETWORKS = (
    Network(id="n0", name="zero", bridge="vbr1", subnet=IPv4Network("192.0.2.0/24"),
            gateway=IPv4Address("192.0.2.1")),
    Network(id="n1", name="one", bridge="vbr2", subnet=IPv4Network("198.51.100.0/24"),
            gateway=IPv4Address("198.51.100.1"), icc=False),
    Network(id="n2", name="two", bridge="vbr3", subnet=IPv4Network("203.0.113.0/24"),
            gateway=IPv4Address("203.0.113.1"), internal=True),
)  # fmt: skip
WORKLOADS = 5


class InNetns:
    """Runs calls on one thread that lives in the namespace: netlink sockets and libnftables act there."""

    def __init__(self, ns: str) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, initializer=self._enter, initargs=(ns,))

    @staticmethod
    def _enter(ns: str) -> None:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _libc.setns(fd, _libc.CLONE_NEWNET)
        finally:
            os.close(fd)

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return self.pool.submit(fn, *args).result(timeout=60)


@dataclass
class Model:
    """The rows of the database, as operations change them (invalid operations are skipped)."""

    networks: set[int] = field(default_factory=set)
    attached: dict[int, list[int]] = field(default_factory=dict)  # workload -> networks, in attach order
    published: dict[int, bool] = field(default_factory=dict)  # workload -> whether it publishes ports

    def apply(self, op: str, w: int, k: int) -> bool:
        if op == "network create" and k not in self.networks:
            self.networks.add(k)
        elif op == "network rm" and k in self.networks and not any(k in ks for ks in self.attached.values()):
            self.networks.discard(k)
        elif op in ("run", "run -p") and w not in self.attached and k in self.networks:
            self.attached[w] = [k]
            self.published[w] = op == "run -p"
        elif op == "rm" and w in self.attached:
            del self.attached[w], self.published[w]
        elif op == "connect" and w in self.attached and k in self.networks and k not in self.attached[w]:
            self.attached[w].append(k)
        elif op == "disconnect" and w in self.attached and k in self.attached[w] and len(self.attached[w]) > 1:
            self.attached[w].remove(k)
        else:
            return False
        return True

    def snapshot(self) -> Snapshot:
        endpoints = tuple(
            Endpoint(id=f"e{w}n{k}", workload_id=f"w{w}", network_id=NETWORKS[k].id, ip=ip(w, k),
                     mac=names.mac_for(ip(w, k)), host_ifname=f"hvt{w}n{k}", position=pos)
            for w, ks in sorted(self.attached.items()) for pos, k in enumerate(ks)
        )  # fmt: skip
        ports = tuple(
            mapping
            for w in sorted(self.attached)
            if self.published[w]
            for mapping in (
                PortMapping(f"w{w}", IPv4Address("0.0.0.0"), 8000 + w, 80),
                PortMapping(f"w{w}", IPv4Address("127.0.0.1"), 9000 + w, 53, "udp"),
            )
        )
        return Snapshot(
            networks=tuple(NETWORKS[k] for k in sorted(self.networks)),
            workloads=tuple(Workload(id=f"w{w}", name=f"w{w}", image="busybox") for w in sorted(self.attached)),
            endpoints=endpoints,
            ports=ports,
        )


def ip(w: int, k: int) -> IPv4Address:
    return NETWORKS[k].gateway + 10 + w


class FakeRuntime:
    """Plugs an endpoint's host link (a veth end with our alias, on its bridge) after the rows exist, and unplugs
    links whose rows went before the converge; `leave` keeps one behind, as a crashed connect does."""

    def __init__(self, ipr: IPRoute) -> None:
        self.ipr = ipr

    def unplug(self, before: Snapshot, after: Snapshot, leave: bool) -> None:
        gone = {e.host_ifname for e in before.endpoints} - {e.host_ifname for e in after.endpoints}
        for ifname in sorted(gone)[1 if leave else 0 :]:
            link = links.link_named(self.ipr, ifname)
            if link is not None:  # (gone already counts as removed)
                links.remove_link(self.ipr, link)

    def plug(self, snapshot: Snapshot) -> None:
        for e in snapshot.endpoints:
            if links.link_named(self.ipr, e.host_ifname) is None:
                bridge = links.link_named(self.ipr, snapshot.network(e.network_id).bridge)
                assert bridge is not None
                self.ipr.link("add", ifname=e.host_ifname, kind="veth", peer=f"{e.host_ifname}p")
                index = self.ipr.link("get", ifname=e.host_ifname)[0]["index"]
                self.ipr.link("set", index=index, ifalias=ALIAS, master=bridge.index, state="up")


def observe(ipr: IPRoute) -> dict[str, Any]:
    """Our links (kind, master, MTU, MAC, state, addresses) and both tables, in a comparable form."""
    all_links = {link.index: link for link in links.links(ipr)}
    ours = {}
    for link in all_links.values():
        if link.alias != ALIAS:
            continue
        msg = ipr.link("get", index=link.index)[0]
        addresses = sorted(f"{a.get('address')}/{a['prefixlen']}" for a in ipr.get_addr(family=2, index=link.index))
        master = all_links[link.master].name if link.master else ""
        ours[link.name] = (link.kind, master, msg.get("mtu"), link.mac, msg.get("state"), addresses)
    return {"links": ours, "inet": _table("inet"), "bridge": _table("bridge")}


def _table(family: str) -> list[str]:
    listing = json.loads(libnft.run(f"list table {family} hypr", json=True))["nftables"]
    return sorted(json.dumps(_canonical(item), sort_keys=True) for item in listing if "metainfo" not in item)


def _canonical(value: Any) -> Any:
    """Without handles (they count applies), with set elements in one order (a hash set lists them as stored)."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items() if k != "handle"}
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


class Harness:
    def __init__(self) -> None:
        self.ipr = IPRoute()
        self.reconciler = Reconciler(ALIAS)
        self.applier = firewall.Applier()
        self.reconciler.add_step("firewall", self.applier, self.applier.forget)
        self.runtime = FakeRuntime(self.ipr)

    def reset(self) -> None:
        """An empty start for each example: nothing of ours in the kernel, a full reconcile next."""
        self.reconciler.reconcile(Snapshot(), full=True)

    def converge(self, before: Snapshot, after: Snapshot, leave: bool) -> None:
        self.runtime.unplug(before, after, leave)
        self.reconciler.reconcile(after)
        self.runtime.plug(after)

    def full_changes_nothing(self, last: Snapshot) -> None:
        incremental = observe(self.ipr)
        self.reconciler.reconcile(last, full=True)
        assert observe(self.ipr) == incremental

    def close(self) -> None:
        self.ipr.close()
        self.reconciler.close()


@pytest.fixture(scope="module")
def harness() -> Iterator[tuple[InNetns, Harness]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with netns("hyprinc") as ns:
        inside = InNetns(ns)
        made = inside(Harness)
        try:
            yield inside, made
        finally:
            inside(made.close)
            inside.pool.shutdown()


OPS = ("network create", "network rm", "run", "run -p", "rm", "connect", "disconnect")
operation = st.tuples(st.sampled_from(OPS), st.integers(0, WORKLOADS - 1), st.integers(0, len(NETWORKS) - 1),
                      st.booleans())  # fmt: skip


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=14))
def test_incremental_converge_equals_a_full_reconcile(
    harness: tuple[InNetns, Harness], ops: list[tuple[str, int, int, bool]]
) -> None:
    inside, h = harness
    inside(h.reset)
    model = Model()
    model.apply("network create", 0, 0)
    before = model.snapshot()
    inside(h.converge, Snapshot(), before, False)
    for op, w, k, leave in ops:
        if model.apply(op, w, k):
            after = model.snapshot()
            inside(h.converge, before, after, leave)
            before = after
    inside(h.full_changes_nothing, before)


def test_a_table_deleted_by_hand_is_replaced_whole(harness: tuple[InNetns, Harness]) -> None:
    """The update is refused when the kernel drifted from what was applied; the applier falls back to the full
    script instead of failing the operation."""
    inside, h = harness
    inside(h.reset)
    model = Model()
    model.apply("network create", 0, 0)
    first = model.snapshot()
    inside(h.converge, Snapshot(), first, False)
    inside(libnft.run, "delete table bridge hypr")
    model.apply("run -p", 1, 0)
    second = model.snapshot()
    inside(h.converge, first, second, False)
    inside(h.full_changes_nothing, second)
    assert "hvt1n0" in json.dumps(inside(_table, "bridge"))
