"""The SQLite store. Every write goes through `transaction()`; every read a planner needs goes through
`snapshot()`, which returns frozen values, so no planner ever holds a cursor.

The snapshot is cached and kept current row by row: temporary triggers note the key of every row a write touches
(whatever the statement, ON DELETE CASCADE included), and `snapshot()` re-reads only those rows. Reading every
table for every question made each operation cost as much as everything that exists.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import uuid
from bisect import bisect_left, insort
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from itertools import chain
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from hypr.models import (
    ChangeLog,
    Changes,
    Confinement,
    Endpoint,
    Image,
    Mount,
    Network,
    PortMapping,
    Protocol,
    Resolver,
    Snapshot,
    Stdio,
    Workload,
    WorkloadState,
)
from hypr.state.schema import MIGRATIONS

T = TypeVar("T")


def _dump(value: Mapping[str, Any] | tuple[str, ...] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The daemon serialises writers itself; the connection is shared with its worker thread.
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        self._track_changes()
        self._snapshot: Snapshot | None = None
        self._networks: _Rows[Network] = _Rows(_CREATED)
        self._workloads: _Rows[Workload] = _Rows(_CREATED)
        self._workload_names: dict[str, Workload] = {}  # kept with _workloads, row by row (names are unique)
        self._endpoints: _Rows[tuple[Endpoint, ...]] = _Rows()  # by workload ID, in position order
        self._ports: _Rows[tuple[PortMapping, ...]] = _Rows()  # by workload ID, in insertion order
        self._images: tuple[Image, ...] = ()
        self._serial = 0  # of the last snapshot made
        self._history = ChangeLog()  # what each snapshot changed: the incremental reconcile plans from it

    def close(self) -> None:
        self.conn.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                for statement in filter(str.strip, script.split(";")):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={number}")

    def _track_changes(self) -> None:
        """Temporary (per connection, never stored) triggers that note (kind, key) of every row written."""
        self.conn.execute("CREATE TEMP TABLE changed (kind TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (kind, key))")
        for table, (kind, key) in _TRACKED.items():
            for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("UPDATE", "OLD"), ("DELETE", "OLD")):
                self.conn.execute(
                    f"CREATE TEMP TRIGGER track_{table}_{event}_{row} AFTER {event} ON main.{table} BEGIN "
                    f"INSERT OR IGNORE INTO changed VALUES ('{kind}', {key.format(row=row)}); END"
                )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- meta ----------------------------------------------------------------------------------------------------

    def instance_id(self) -> str:
        """A random ID for this data directory, written on first use; links we create carry it in their alias."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='instance'").fetchone()
        if row:
            return str(row[0])
        value = uuid.uuid4().hex[:12]
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?)", (value,))
        return str(self.conn.execute("SELECT value FROM meta WHERE key='instance'").fetchone()[0])

    # -- reads ---------------------------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The committed state (inside a transaction: including its writes, read afresh and not cached)."""
        if self.conn.in_transaction:
            return self._read_all()
        changes = self.conn.execute("SELECT kind, key FROM temp.changed").fetchall()
        if self._snapshot is not None and not changes:
            return self._snapshot
        self.conn.execute("DELETE FROM temp.changed")
        if self._snapshot is None:
            self._load_all()
        else:
            changed = [(kind, key) for kind, key in changes if self._reload(kind, key)]
            if not changed:
                return self._snapshot
            self._history.add(self._serial + 1, _logged(changed))
        self._serial += 1
        rows = {
            "networks": self._networks.in_order(),
            "workloads": self._workloads.in_order(),
            "endpoints": tuple(chain.from_iterable(self._endpoints.in_order())),
            "ports": tuple(chain.from_iterable(self._ports.in_order())),
            "images": self._images,
        }
        indexes: dict[str, Mapping[str, Any]] = {
            "_networks_by_id": dict(self._networks.by_key),
            "_workloads_by_id": dict(self._workloads.by_key),
            "_workloads_by_name": dict(self._workload_names),
            "_endpoints_by_workload": dict(self._endpoints.by_key),
            "_ports_by_workload": dict(self._ports.by_key),
        }
        self._snapshot = Snapshot.from_store(rows, self._serial, self._history, indexes)
        return self._snapshot

    def _read_all(self) -> Snapshot:
        return Snapshot(
            networks=tuple(map(_network, self.conn.execute("SELECT * FROM networks ORDER BY created, id"))),
            workloads=tuple(map(_workload, self.conn.execute("SELECT * FROM workloads ORDER BY created, id"))),
            endpoints=tuple(
                map(_endpoint, self.conn.execute("SELECT * FROM endpoints ORDER BY workload_id, position"))
            ),
            ports=tuple(map(_port, self.conn.execute("SELECT * FROM port_mappings ORDER BY workload_id, rowid"))),
            images=self._read_images(),
        )

    def _load_all(self) -> None:
        whole = self._read_all()
        endpoints: dict[str, tuple[Endpoint, ...]] = {}
        ports: dict[str, tuple[PortMapping, ...]] = {}
        for e in whole.endpoints:
            endpoints[e.workload_id] = (*endpoints.get(e.workload_id, ()), e)
        for p in whole.ports:
            ports[p.workload_id] = (*ports.get(p.workload_id, ()), p)
        self._networks.load({n.id: n for n in whole.networks})
        self._workloads.load({w.id: w for w in whole.workloads})
        self._workload_names = {w.name: w for w in whole.workloads}
        self._endpoints.load(endpoints)
        self._ports.load(ports)
        self._images = whole.images

    def _reload(self, kind: str, key: str) -> bool:
        """Re-read the rows behind one noted change: a network, or a workload with its endpoints and mappings.
        False when they read as they were (a network's row is written for its allocation cursor, which no
        snapshot shows): the old values stay, as the same objects."""
        if kind == "images":
            self._images = self._read_images()
        elif kind == "network":
            row = self.conn.execute("SELECT * FROM networks WHERE id=?", (key,)).fetchone()
            network = None if row is None else _network(row)
            if network is not None and self._networks.by_key.get(key) == network:
                return False
            self._networks.put(key, network)
        else:
            row = self.conn.execute("SELECT * FROM workloads WHERE id=?", (key,)).fetchone()
            old, workload = self._workloads.by_key.get(key), None if row is None else _workload(row)
            if old is not None and self._workload_names.get(old.name) is old:  # else its name went to another
                del self._workload_names[old.name]
            if workload is not None:
                self._workload_names[workload.name] = workload
            self._workloads.put(key, workload)
            query = "SELECT * FROM endpoints WHERE workload_id=? ORDER BY position"
            self._endpoints.put(key, tuple(map(_endpoint, self.conn.execute(query, (key,)))) or None)
            query = "SELECT * FROM port_mappings WHERE workload_id=? ORDER BY rowid"
            self._ports.put(key, tuple(map(_port, self.conn.execute(query, (key,)))) or None)
        return True

    def _read_images(self) -> tuple[Image, ...]:
        tags: dict[str, list[tuple[str, str]]] = {}
        for row in self.conn.execute("SELECT * FROM image_tags ORDER BY tagged, ref"):
            tags.setdefault(row["image_id"], []).append((row["ref"], row["tagged"]))
        digests: dict[str, list[str]] = {}
        for row in self.conn.execute("SELECT * FROM image_digests ORDER BY ref"):
            digests.setdefault(row["image_id"], []).append(row["ref"])
        return tuple(
            Image(
                id=row["id"], config=json.loads(row["config"]), size=row["size"], created=row["created"],
                pulled=row["pulled"], repo_tags=tuple(ref for ref, _ in tags.get(row["id"], [])),
                repo_digests=tuple(digests.get(row["id"], [])),
                last_tagged=max((t for _, t in tags.get(row["id"], [])), default=""),
            )
            for row in self.conn.execute("SELECT * FROM images ORDER BY pulled, id")
        )  # fmt: skip

    def layout_tags(self) -> set[str]:
        """Every image's layout names (the hex of each manifest digest an image was pulled by)."""
        return {row[0] for row in self.conn.execute("SELECT layout_tag FROM image_digests")}

    def last_ip(self, network_id: str) -> int | None:
        row = self.conn.execute("SELECT last_ip FROM networks WHERE id=?", (network_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def ip_in_use(self, network_id: str, ip: int) -> bool:
        query = "SELECT 1 FROM endpoints WHERE network_id=? AND ip=?"
        return self.conn.execute(query, (network_id, ip)).fetchone() is not None

    def last_ip6(self, network_id: str) -> int | None:
        row = self.conn.execute("SELECT last_ip6 FROM networks WHERE id=?", (network_id,)).fetchone()
        return None if row is None or row[0] is None else int(IPv6Address(row[0]))

    def ip6_in_use(self, network_id: str, ip: int) -> bool:
        query = "SELECT 1 FROM endpoints WHERE network_id=? AND ip6=?"
        return self.conn.execute(query, (network_id, str(IPv6Address(ip)))).fetchone() is not None

    def ip6_count(self, network_id: str) -> int:
        """Addresses in use on the network (the bound of the IPv6 allocator's walk); an index-only count."""
        query = "SELECT COUNT(ip6) FROM endpoints WHERE network_id=?"
        return int(self.conn.execute(query, (network_id,)).fetchone()[0])

    # -- writes (call inside transaction()) ----------------------------------------------------------------------

    def insert_network(self, tx: sqlite3.Connection, n: Network) -> None:
        tx.execute(
            "INSERT INTO networks (id, name, driver, bridge, subnet, gateway, ip_range, aux_addresses, internal, mtu,"
            " icc, masquerade, labels, options, ipam_options, created, attachable, subnet6, gateway6, ip_range6,"
            " routed6) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                n.id, n.name, n.driver, n.bridge, _text(n.subnet), _text(n.gateway),
                None if n.ip_range is None else str(n.ip_range),
                _dump({k: str(v) for k, v in n.aux_addresses.items()}), int(n.internal), n.mtu, int(n.icc),
                int(n.masquerade), _dump(n.labels), _dump(n.options), _dump(n.ipam_options), n.created, int(n.attachable),
                _text(n.subnet6), _text(n.gateway6), _text(n.ip_range6), int(n.routed6),
            ),
        )  # fmt: skip

    def delete_network(self, tx: sqlite3.Connection, network_id: str) -> None:
        tx.execute("DELETE FROM networks WHERE id=?", (network_id,))

    def insert_workload(self, tx: sqlite3.Connection, w: Workload, extra: Mapping[str, Any]) -> None:
        tx.execute(
            "INSERT INTO workloads (id, name, image, runtime, state, command, env, hostname, labels, created, extra,"
            " auto_remove, restart, cpus, memory_mb, image_id, user, workdir, stop_signal, entrypoint, exposed_ports,"
            " resolver, confinement, network_mode, settings, stdio, restart_max)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (w.id, w.name, w.image, w.runtime, w.state, _dump(w.command), _dump(w.env), w.hostname,
             _dump(w.labels), w.created, _dump(extra), int(w.auto_remove), w.restart, w.cpus, w.memory_mb,
             w.image_id, w.user, w.workdir, w.stop_signal, _dump(w.entrypoint), _dump(w.exposed_ports),
             json.dumps(dataclasses.asdict(w.resolver), sort_keys=True),
             json.dumps(dataclasses.asdict(w.confinement), sort_keys=True), w.network_mode, _settings(w),
             json.dumps(dataclasses.asdict(w.stdio), sort_keys=True), w.restart_max),
        )  # fmt: skip

    def set_settings(self, tx: sqlite3.Connection, w: Workload) -> None:
        """The workload's Docker settings that change after create (links, lost networks, restart policy)."""
        tx.execute(
            "UPDATE workloads SET settings=?, restart=?, restart_max=? WHERE id=?",
            (_settings(w), w.restart, w.restart_max, w.id),
        )

    def set_paused(self, tx: sqlite3.Connection, workload_id: str, paused: bool) -> None:
        tx.execute("UPDATE workloads SET paused=? WHERE id=?", (int(paused), workload_id))

    def set_running(self, tx: sqlite3.Connection, workload_id: str, pid: int, pid_start: int, main_pid: int,
                    started_at: str) -> None:  # fmt: skip
        tx.execute(
            "UPDATE workloads SET state='running', paused=0, pid=?, pid_start=?, main_pid=?, exit_code=NULL, started_at=?,"
            " finished_at='' WHERE id=?",
            (pid, pid_start, main_pid, started_at, workload_id),
        )

    def set_starting(self, tx: sqlite3.Connection, workload_id: str, started_at: str, restart_count: int = 0) -> None:
        """Running without a process yet: its names are served (DNS, /etc/hosts) before its first instruction.
        `restart_count`: Docker's RestartCount, one more for a restart by the policy, 0 for a start asked for."""
        tx.execute(
            "UPDATE workloads SET state='running', pid=NULL, pid_start=NULL, main_pid=NULL, exit_code=NULL,"
            " started_at=?, finished_at='', restart_count=?, stopped_by_user=0 WHERE id=?",
            (started_at, restart_count, workload_id),
        )

    def restore_state(self, tx: sqlite3.Connection, w: Workload) -> None:
        """Undo a start that failed: the state, exit code and times the workload had before it."""
        tx.execute(
            "UPDATE workloads SET state=?, pid=?, pid_start=?, main_pid=?, exit_code=?, started_at=?, finished_at=?,"
            " restart_count=?, stopped_by_user=? WHERE id=?",
            (w.state, w.pid, w.pid_start, w.main_pid, w.exit_code, w.started_at, w.finished_at, w.restart_count,
             int(w.stopped_by_user), w.id),
        )  # fmt: skip

    def set_stopped_by_user(self, tx: sqlite3.Connection, workload_id: str) -> None:
        """Docker's HasBeenManuallyStopped, recorded before the signal: a crash after it still knows."""
        tx.execute("UPDATE workloads SET stopped_by_user=1 WHERE id=?", (workload_id,))

    def set_exited(self, tx: sqlite3.Connection, workload_id: str, exit_code: int | None, finished_at: str) -> None:
        tx.execute(
            "UPDATE workloads SET state='exited', paused=0, pid=NULL, pid_start=NULL, main_pid=NULL, exit_code=?, finished_at=?"
            " WHERE id=?",
            (exit_code, finished_at, workload_id),
        )

    def rename_workload(self, tx: sqlite3.Connection, workload_id: str, name: str) -> None:
        tx.execute("UPDATE workloads SET name=? WHERE id=?", (name, workload_id))

    def delete_workload(self, tx: sqlite3.Connection, workload_id: str) -> None:
        """Endpoints (and so their addresses) and port mappings go with it (ON DELETE CASCADE)."""
        tx.execute("DELETE FROM workloads WHERE id=?", (workload_id,))

    def delete_endpoint(self, tx: sqlite3.Connection, endpoint_id: str) -> None:
        tx.execute("DELETE FROM endpoints WHERE id=?", (endpoint_id,))

    def insert_port(self, tx: sqlite3.Connection, p: PortMapping) -> None:
        tx.execute(
            "INSERT INTO port_mappings (workload_id, host_ip, host_port, guest_port, protocol, requested)"
            " VALUES (?,?,?,?,?,?)",
            (p.workload_id, str(p.host_ip), p.host_port, p.guest_port, p.protocol, p.requested),
        )

    def insert_image(self, tx: sqlite3.Connection, image: Image, layout_tag: str, digest_ref: str) -> None:
        """The image (if new), its repository digest; tags are set with `tag_image`."""
        tx.execute(
            "INSERT OR IGNORE INTO images (id, config, size, created, pulled) VALUES (?,?,?,?,?)",
            (image.id, json.dumps(image.config, sort_keys=True), image.size, image.created, image.pulled),
        )
        tx.execute(
            "INSERT OR REPLACE INTO image_digests (ref, image_id, layout_tag) VALUES (?,?,?)",
            (digest_ref, image.id, layout_tag),
        )

    def tag_image(self, tx: sqlite3.Connection, ref: str, image_id: str, when: str) -> None:
        """A tag names one image: tagging moves it (the old image may become dangling)."""
        tx.execute("INSERT OR REPLACE INTO image_tags (ref, image_id, tagged) VALUES (?,?,?)", (ref, image_id, when))

    def untag_image(self, tx: sqlite3.Connection, ref: str) -> None:
        tx.execute("DELETE FROM image_tags WHERE ref=?", (ref,))

    def delete_image(self, tx: sqlite3.Connection, image_id: str) -> None:
        """Its tags and digests go with it (ON DELETE CASCADE)."""
        tx.execute("DELETE FROM images WHERE id=?", (image_id,))

    def insert_endpoint(self, tx: sqlite3.Connection, e: Endpoint) -> None:
        """Records the address and moves the network's allocation cursor in the same transaction."""
        tx.execute(
            "INSERT INTO endpoints (id, workload_id, network_id, ip, mac, host_ifname, position, aliases, static_ip,"
            " gw_priority, settings, ip6, static_ip6) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (e.id, e.workload_id, e.network_id, None if e.ip is None else int(e.ip), e.mac, e.host_ifname,
             e.position, _dump(e.aliases), int(e.static_ip), e.gw_priority,
             _dump({"driver_opts": dict(e.driver_opts), "link_local_ips": list(e.link_local_ips)}),
             _text(e.ip6), int(e.static_ip6)),
        )  # fmt: skip
        if e.ip is not None and not e.static_ip:
            tx.execute("UPDATE networks SET last_ip=? WHERE id=?", (int(e.ip), e.network_id))
        if e.ip6 is not None and not e.static_ip6:
            tx.execute("UPDATE networks SET last_ip6=? WHERE id=?", (str(e.ip6), e.network_id))


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


# table -> (kind, key expression) noted for each row written; a workload's endpoints and mappings are re-read with it.
_TRACKED = {
    "networks": ("network", "{row}.id"),
    "workloads": ("workload", "{row}.id"),
    "endpoints": ("workload", "{row}.workload_id"),
    "port_mappings": ("workload", "{row}.workload_id"),
    "images": ("images", "''"),
    "image_tags": ("images", "''"),
    "image_digests": ("images", "''"),
}


_CREATED = attrgetter("created")  # (with the ID) the order of networks and of workloads in a snapshot


def _logged(changes: list[tuple[str, str]]) -> Changes:
    keys: dict[str, set[str]] = {"network": set(), "workload": set(), "images": set()}
    for kind, key in changes:
        keys[kind].add(key)
    return Changes(frozenset(keys["network"]), frozenset(keys["workload"]), bool(keys["images"]))


class _Rows(Generic[T]):
    """Cached rows by key, with their keys kept in snapshot order as rows change (a bisect per changed row, not a
    sort of every row per snapshot). `order`: a row's place ((created, id) for networks and workloads); rows
    without one (a workload's endpoints, its mappings) are in key order."""

    def __init__(self, order: Callable[[Any], Any] | None = None) -> None:
        self.order = order
        self.by_key: dict[str, T] = {}
        self.keys: list[Any] = []  # sorted: (place, key) or key

    def _place(self, key: str, row: T) -> Any:
        return key if self.order is None else (self.order(row), key)

    def load(self, rows: dict[str, T]) -> None:
        self.by_key = rows
        self.keys = sorted(self._place(k, r) for k, r in rows.items())

    def put(self, key: str, row: T | None) -> None:
        """Replace (None: remove) the row of `key`."""
        old = self.by_key.pop(key, None)
        if old is not None:
            del self.keys[bisect_left(self.keys, self._place(key, old))]
        if row is not None:
            self.by_key[key] = row
            insort(self.keys, self._place(key, row))

    def in_order(self) -> tuple[T, ...]:
        keys = self.keys if self.order is None else map(itemgetter(1), self.keys)
        return tuple(map(self.by_key.__getitem__, keys))


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _network(row: sqlite3.Row) -> Network:
    return Network(
        id=row["id"],
        name=row["name"],
        driver=row["driver"],
        bridge=row["bridge"],
        subnet=None if row["subnet"] is None else IPv4Network(row["subnet"]),
        gateway=None if row["gateway"] is None else IPv4Address(row["gateway"]),
        ip_range=None if row["ip_range"] is None else IPv4Network(row["ip_range"]),
        aux_addresses={k: IPv4Address(v) for k, v in _load(row["aux_addresses"]).items()},
        internal=bool(row["internal"]),
        mtu=row["mtu"],
        icc=bool(row["icc"]),
        masquerade=bool(row["masquerade"]),
        labels=_load(row["labels"]),
        options=_load(row["options"]),
        ipam_options=_load(row["ipam_options"]),
        created=row["created"],
        subnet6=None if row["subnet6"] is None else IPv6Network(row["subnet6"]),
        gateway6=None if row["gateway6"] is None else IPv6Address(row["gateway6"]),
        ip_range6=None if row["ip_range6"] is None else IPv6Network(row["ip_range6"]),
        routed6=bool(row["routed6"]),
        attachable=bool(row["attachable"]),
    )


def _settings(w: Workload) -> str:
    """The settings column: Docker's create options hypr keeps but that have no column of their own."""
    return json.dumps(
        {"links": [list(link) for link in w.links], "publish_all": w.publish_all, "mac_address": w.mac_address,
         "lost_networks": list(w.lost_networks)}, sort_keys=True,
    )  # fmt: skip


def _workload(row: sqlite3.Row) -> Workload:
    return Workload(
        id=row["id"],
        name=row["name"],
        image=row["image"],
        runtime=row["runtime"],
        state=cast(WorkloadState, row["state"]),
        command=tuple(_load(row["command"])),
        env=_load(row["env"]),
        hostname=row["hostname"],
        labels=_load(row["labels"]),
        created=row["created"],
        cpus=row["cpus"],
        memory_mb=row["memory_mb"],
        auto_remove=bool(row["auto_remove"]),
        restart=row["restart"],
        restart_max=row["restart_max"],
        restart_count=row["restart_count"],
        stopped_by_user=bool(row["stopped_by_user"]),
        pid=row["pid"],
        pid_start=row["pid_start"],
        main_pid=row["main_pid"],
        exit_code=row["exit_code"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        image_id=row["image_id"],
        user=row["user"],
        workdir=row["workdir"],
        stop_signal=row["stop_signal"],
        entrypoint=tuple(_load(row["entrypoint"])),
        exposed_ports=tuple(_load(row["exposed_ports"])),
        resolver=_resolver(_load(row["resolver"])),
        confinement=_confinement(_load(row["confinement"])),
        network_mode=row["network_mode"],
        paused=bool(row["paused"]),
        **_workload_settings(_load(row["settings"])),
        stdio=Stdio(**{k: bool(v) for k, v in _load(row["stdio"]).items() if k in _STDIO}),
    )


_STDIO = {f.name for f in dataclasses.fields(Stdio)}


def _workload_settings(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "links": tuple((str(t), str(a)) for t, a in data.get("links") or ()),
        "publish_all": bool(data.get("publish_all")),
        "mac_address": str(data.get("mac_address") or ""),
        "lost_networks": tuple(data.get("lost_networks") or ()),
    }


def _resolver(data: dict[str, Any]) -> Resolver:
    def words(key: str) -> tuple[str, ...] | None:
        return None if data.get(key) is None else tuple(data[key])

    return Resolver(
        dns=tuple(data.get("dns") or ()), search=words("search"), options=words("options"),
        extra_hosts=tuple((str(n), str(a)) for n, a in data.get("extra_hosts") or ()),
        domainname=str(data.get("domainname") or ""),
    )  # fmt: skip


def _confinement(data: dict[str, Any]) -> Confinement:
    """The stored form is `dataclasses.asdict`; a row from before the column has `{}`: Docker's defaults."""
    mounts = tuple(
        Mount(type=m["type"], target=m["target"], source=m.get("source", ""), readonly=bool(m.get("readonly")),
              options=tuple(m.get("options") or ()), create_source=bool(m.get("create_source")))
        for m in data.get("mounts") or ()
    )  # fmt: skip
    return Confinement(
        privileged=bool(data.get("privileged")), cap_add=tuple(data.get("cap_add") or ()),
        cap_drop=tuple(data.get("cap_drop") or ()), security_opt=tuple(data.get("security_opt") or ()),
        seccomp=str(data.get("seccomp") or ""), no_new_privileges=data.get("no_new_privileges"),
        unmasked=bool(data.get("unmasked")), readonly_rootfs=bool(data.get("readonly_rootfs")),
        tmpfs=tuple((str(t), str(o)) for t, o in data.get("tmpfs") or ()), binds=tuple(data.get("binds") or ()),
        api_mounts=tuple(data.get("api_mounts") or ()), mounts=mounts, pids_limit=data.get("pids_limit"),
        memory=int(data.get("memory") or 0), nano_cpus=int(data.get("nano_cpus") or 0),
    )  # fmt: skip


def _endpoint(row: sqlite3.Row) -> Endpoint:
    return Endpoint(
        id=row["id"],
        workload_id=row["workload_id"],
        network_id=row["network_id"],
        ip=None if row["ip"] is None else IPv4Address(row["ip"]),
        mac=row["mac"],
        host_ifname=row["host_ifname"],
        position=row["position"],
        aliases=tuple(_load(row["aliases"])),
        static_ip=bool(row["static_ip"]),
        gw_priority=row["gw_priority"],
        ip6=None if row["ip6"] is None else IPv6Address(row["ip6"]),
        static_ip6=bool(row["static_ip6"]),
        driver_opts=dict(_load(row["settings"]).get("driver_opts") or {}),
        link_local_ips=tuple(_load(row["settings"]).get("link_local_ips") or ()),
    )


def _port(row: sqlite3.Row) -> PortMapping:
    return PortMapping(
        workload_id=row["workload_id"],
        host_ip=ip_address(row["host_ip"]),
        host_port=row["host_port"],
        guest_port=row["guest_port"],
        protocol=cast(Protocol, row["protocol"]),
        requested=row["requested"],
    )
