"""The incremental planners give what a plan from nothing gives, on random operation sequences (pure, no kernel).

The daemon keeps one RecordsBuilder and one firewall Applier and, after the first converge, plans only from the
rows that changed since the snapshot it planned last (`models.changes`). Here a model of the database goes through
random operations (network create/rm, run with or without published ports and aliases, rm, stop, start, connect,
disconnect, rename, legacy links, `--dns` servers); after each one the DNS tables built incrementally must equal a
build from nothing, and the firewall update script applied to the tables from before must give the tables planned
from nothing. Snapshots come both from a real Store (rows kept as the same objects, changes read from its log) and
rebuilt from scratch (equal rows that are other objects), as tests/integration/test_incremental.py builds them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypr import models, names
from hypr.dns.records import RecordsBuilder, build_records
from hypr.errors import Conflict
from hypr.models import Changes, Endpoint, Network, PortMapping, Resolver, Snapshot, Workload, changes
from hypr.reconcile import firewall
from hypr.reconcile.nft import Table
from hypr.state import Store

NETWORKS = tuple(
    Network(id=f"{k:064x}", name=f"net{k}", bridge=f"vbr{k + 1}", subnet=IPv4Network(f"10.{k}.0.0/24"),
            gateway=IPv4Address(f"10.{k}.0.1"), internal=k == 2, icc=k != 1, created=f"2026-01-0{k + 1}")
    for k in range(4)
)  # fmt: skip
WORKLOADS = 6
ALIASES = ("db", "db", "web", "")  # "" for none; a shared alias gives several workloads one name

OPS = ("network create", "network rm", "run", "run -p", "rm", "stop", "start", "connect", "disconnect", "rename",
       "full")  # fmt: skip
operation = st.tuples(st.sampled_from(OPS), st.integers(0, WORKLOADS - 1), st.integers(0, len(NETWORKS) - 1),
                      st.sampled_from(ALIASES), st.booleans())  # fmt: skip


class Model:
    """The rows, as operations change them, written to a real Store (invalid operations are skipped)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.networks: set[int] = set()
        self.attached: dict[int, list[int]] = {}

    def wid(self, w: int) -> str:
        return f"{w:064x}"

    def apply(self, op: str, w: int, k: int, alias: str, flag: bool) -> bool:
        s, wid = self.store, self.wid(w)
        with s.transaction() as tx:
            if op == "network create" and k not in self.networks:
                s.insert_network(tx, NETWORKS[k])
                self.networks.add(k)
            elif op == "network rm" and k in self.networks and not any(k in ks for ks in self.attached.values()):
                s.delete_network(tx, NETWORKS[k].id)
                self.networks.discard(k)
            elif op in ("run", "run -p") and w not in self.attached and k in self.networks:
                links = ((self.wid(w - 1), "peer"),) if flag and w > 0 else ()
                dns = ("10.0.0.1", "192.0.2.53") if flag else ()
                workload = Workload(id=wid, name=f"w{w}", image="busybox", state="running", created=f"2027-{w:02d}",
                                    links=links, resolver=Resolver(dns=dns))  # fmt: skip
                s.insert_workload(tx, workload, {})
                self._endpoint(tx, w, k, alias, 0)
                if op == "run -p":
                    s.insert_port(tx, PortMapping(wid, IPv4Address("0.0.0.0"), 8000 + w, 80))
                    s.insert_port(tx, PortMapping(wid, IPv4Address("127.0.0.1"), 9000 + w, 53, "udp"))
                self.attached[w] = [k]
            elif op == "rm" and w in self.attached:
                s.delete_workload(tx, wid)
                del self.attached[w]
            elif op == "stop" and w in self.attached:
                s.set_exited(tx, wid, 0, "2028")
            elif op == "start" and w in self.attached:
                s.set_running(tx, wid, 1, 1, 1, "2028")
            elif op == "connect" and w in self.attached and k in self.networks and k not in self.attached[w]:
                self._endpoint(tx, w, k, alias, len(self.attached[w]))
                self.attached[w].append(k)
            elif op == "disconnect" and w in self.attached and k in self.attached[w] and len(self.attached[w]) > 1:
                s.delete_endpoint(tx, f"e{w}n{k}".ljust(64, "0"))
                self.attached[w].remove(k)
            elif op in ("rename", "full") and w in self.attached:
                s.rename_workload(tx, wid, f"w{w}" if flag else f"W{w}x")
            else:
                return False
        return True

    def _endpoint(self, tx: object, w: int, k: int, alias: str, position: int) -> None:
        ip = NETWORKS[k].gateway + 10 + w
        self.store.insert_endpoint(
            tx,  # type: ignore[arg-type]
            Endpoint(id=f"e{w}n{k}".ljust(64, "0"), workload_id=self.wid(w), network_id=NETWORKS[k].id, ip=ip,
                     mac=names.mac_for(ip), host_ifname=f"hv{w}n{k}", position=position,
                     aliases=(alias,) if alias else ()),
        )  # fmt: skip


def rebuilt(snapshot: Snapshot) -> Snapshot:
    """The same rows as other (equal) objects: what a snapshot built outside the store looks like."""
    return Snapshot(
        networks=tuple(replace(n) for n in snapshot.networks),
        workloads=tuple(replace(w) for w in snapshot.workloads),
        endpoints=tuple(replace(e) for e in snapshot.endpoints),
        ports=tuple(replace(p) for p in snapshot.ports),
    )


def indexes(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """Every lookup index of `snapshot` (given by the store, carried over, or computed), sequences as lists."""
    return {
        name: {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in getattr(snapshot, name).items()}
        for name in models._INDEXES
    }


def elements(tables: tuple[Table, ...]) -> dict[tuple[str, str], set[str]]:
    return {(t.family, s.name): set(s.elements) for t in tables for s in t.sets}


def applied(before: tuple[Table, ...], script: str) -> dict[tuple[str, str], set[str]]:
    """Set and map elements after an update script (`delete element` by key, `add element`) on `before`."""
    found = elements(before)
    for line in script.splitlines():
        words = line.split(" ", 5)
        if words[0] in ("delete", "add") and words[1] == "element":
            key, items = (words[2], words[4]), line.split("{ ", 1)[1].rsplit(" }", 1)[0].split(", ")
            if words[0] == "add":
                found[key] |= set(items)
            else:
                found[key] = {e for e in found[key] if e.split(" : ")[0] not in items}
    return found


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = Store(tmp_path / "db.sqlite")
    yield made
    made.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=4, max_size=24), from_store=st.booleans(),
       search=st.sampled_from([(), ("example.com",)]))  # fmt: skip
def test_incremental_plans_equal_plans_from_nothing(
    store: Store, ops: list[tuple[str, int, int, str, bool]], from_store: bool, search: tuple[str, ...]
) -> None:
    with store.transaction() as tx:  # every example starts from an empty database
        tx.execute("DELETE FROM workloads")
        tx.execute("DELETE FROM networks")
    model = Model(store)
    model.apply("network create", 0, 0, "", False)
    builder, applier = RecordsBuilder(), firewall.Applier()
    before = store.snapshot() if from_store else rebuilt(store.snapshot())
    builder.build(before, search)
    applier.applied, applier.shape = before, firewall.skeleton(firewall._sorted_networks(before), applier.settings)
    applier.owners = firewall._whole(before, applier.settings)[1]
    for op, w, k, alias, flag in ops:
        if op == "full":
            builder.last = None  # a whole build next (a full reconcile), which the ones after start from
        if not model.apply(op, w, k, alias, flag):
            continue
        after = store.snapshot() if from_store else rebuilt(store.snapshot())
        assert after == store._read_all(), "the store's cached snapshot drifted from its rows"
        assert indexes(after) == indexes(rebuilt(after)), "the store's lookup indexes drifted from its rows"
        for endpoint in after.endpoints:
            gone = after.without_endpoint(endpoint)
            assert indexes(gone) == indexes(rebuilt(gone)) and endpoint not in gone.endpoints
        assert builder.build(after, search) == build_records(after, search), op
        old_tables, new_tables = firewall.tables(before), firewall.tables(after)
        try:
            script = applier._update(before, after)
        except Conflict:
            pytest.fail(f"{op}: a conflict the whole plan does not see")
        if script is None:  # the whole tables are applied instead
            applier.shape = firewall.skeleton(firewall._sorted_networks(after), applier.settings)
            applier.owners = firewall._whole(after, applier.settings)[1]
        else:
            assert applied(old_tables, script) == elements(new_tables), op
            assert all(f"flush chain {ref}\n" in script for ref in _changed_chains(old_tables, new_tables)), op
        applier.applied = after
        before = after


def _changed_chains(old: tuple[Table, ...], new: tuple[Table, ...]) -> list[str]:
    return [
        f"{a.family} {a.name} {c.name}"
        for a, b in zip(old, new, strict=True)
        for c, d in zip(a.chains, b.chains, strict=True)
        if c != d
    ]


def test_changes_between_store_snapshots_come_from_its_log(store: Store) -> None:
    """Two snapshots of one store: what changed is read from its log (no row compared); any other pair is compared
    row by row, and equal rows that are other objects do not count."""
    model = Model(store)
    model.apply("network create", 0, 0, "", False)
    model.apply("run", 1, 0, "", False)
    first = store.snapshot()
    model.apply("run -p", 2, 0, "db", False)
    second = store.snapshot()
    assert second.history is first.history and second.serial == first.serial + 1
    assert changes(first, second) == Changes(workloads=frozenset({model.wid(2)}))
    assert changes(rebuilt(first), rebuilt(second)) == Changes(workloads=frozenset({model.wid(2)}))
    assert changes(first, first) == Changes()
    stale = replace(second, ports=())  # not the store's any more: compared row by row
    assert stale.serial == 0 and changes(first, stale) == Changes(workloads=frozenset({model.wid(2)}))
