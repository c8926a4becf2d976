"""A database made before IPv6 is migrated in place: its rows survive as IPv4-only networks and
endpoints, and IPv6 rows can be added next to them. Pure SQLite, no root."""

from __future__ import annotations

import sqlite3
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from hypr.models import Endpoint, Network, Workload
from hypr.state import Store
from hypr.state.schema import MIGRATIONS

BEFORE_IPV6 = next(i for i, m in enumerate(MIGRATIONS) if "subnet6" in m)  # the migrations before IPv6


def old_database(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:BEFORE_IPV6], start=1):
        for statement in filter(str.strip, script.split(";")):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={number}")
    conn.execute(
        "INSERT INTO networks (id, name, driver, bridge, subnet, gateway, ip_range, aux_addresses, internal, mtu, icc,"
        " masquerade, labels, options, ipam_options, created, last_ip) VALUES ('n1', 'old', 'bridge', 'vbr1',"
        " '10.70.0.0/24', '10.70.0.1', NULL, '{}', 0, 1500, 1, 1, '{}', '{}', NULL, '2026-01-01', 172359682)"
    )
    conn.execute(
        "INSERT INTO workloads (id, name, image, runtime, state, command, env, hostname, labels, created)"
        " VALUES ('w1', 'web', 'busybox', 'sandbox', 'created', '[]', '{}', 'web', '{}', '2026-01-01')"
    )
    conn.execute(
        "INSERT INTO endpoints (id, workload_id, network_id, ip, mac, host_ifname, position, aliases, static_ip)"
        " VALUES ('e1', 'w1', 'n1', 172359682, '02:42:0a:46:00:02', 'hve1', 0, '[]', 0)"
    )
    conn.close()


def test_a_database_from_before_ipv6_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "hypr.db"
    old_database(path)
    store = Store(path)
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        snapshot = store.snapshot()
        [net] = snapshot.networks
        [endpoint] = snapshot.endpoints
        assert (net.subnet, net.subnet6, net.gateway6, net.routed6) == (IPv4Network("10.70.0.0/24"), None, None, False)
        assert (endpoint.ip, endpoint.ip6, endpoint.static_ip6) == (IPv4Address("10.70.0.2"), None, False)
        dual = Network(id="n2", name="dual", bridge="vbr2", subnet=IPv4Network("10.71.0.0/24"),
                       gateway=IPv4Address("10.71.0.1"), subnet6=IPv6Network("fd00:1::/64"),
                       gateway6=IPv6Address("fd00:1::1"), created="2026-01-02")  # fmt: skip
        with store.transaction() as tx:
            store.insert_network(tx, dual)
            store.insert_workload(tx, Workload(id="w2", name="db", image="busybox", created="2026-01-02"), {})
            store.insert_workload(tx, Workload(id="w3", name="db2", image="busybox", created="2026-01-02"), {})
            store.insert_endpoint(tx, Endpoint("e2", "w2", "n2", IPv4Address("10.71.0.2"), "02:42:0a:47:00:02",
                                               "hve2", 0, ip6=IPv6Address("fd00:1::2")))  # fmt: skip
        assert store.last_ip6("n2") == int(IPv6Address("fd00:1::2"))
        assert store.ip6_in_use("n2", int(IPv6Address("fd00:1::2"))) and not store.ip6_in_use("n2", 1)
        assert store.ip6_count("n2") == 1 and store.ip6_count("n1") == 0
        with pytest.raises(sqlite3.IntegrityError), store.transaction() as tx:  # one owner per IPv6 address
            store.insert_endpoint(tx, Endpoint("e3", "w3", "n2", IPv4Address("10.71.0.3"), "02:42:0a:47:00:03",
                                               "hve3", 0, ip6=IPv6Address("fd00:1::2"), static_ip6=True))  # fmt: skip
        assert store.snapshot().network("n2").subnet6 == IPv6Network("fd00:1::/64")
    finally:
        store.close()


def test_ipv4_becomes_optional_with_every_row_kept(tmp_path: Path) -> None:
    """The tables are rebuilt without NOT NULL on the IPv4 columns: old rows stay, IPv6-only rows fit, and the
    endpoints' foreign keys (workload cascade, network reference) still hold."""
    path = tmp_path / "hypr.db"
    old_database(path)
    store = Store(path)
    try:
        [endpoint] = store.snapshot().endpoints
        assert endpoint.ip == IPv4Address("10.70.0.2") and store.last_ip("n1") == int(IPv4Address("10.70.0.2"))
        only6 = Network(id="n6", name="only6", bridge="vbr6", subnet=None, gateway=None,
                        subnet6=IPv6Network("fd00:6::/64"), gateway6=IPv6Address("fd00:6::1"),
                        created="2026-01-03")  # fmt: skip
        with store.transaction() as tx:
            store.insert_network(tx, only6)
            store.insert_workload(tx, Workload(id="w6", name="v6", image="busybox", created="2026-01-03"), {})
            store.insert_endpoint(tx, Endpoint("e6", "w6", "n6", None, "02:42:00:00:00:06", "hve6", 0,
                                               ip6=IPv6Address("fd00:6::2")))  # fmt: skip
        snapshot = store.snapshot()
        assert (snapshot.network("n6").subnet, snapshot.network("n6").gateway) == (None, None)
        assert [e.ip for e in snapshot.endpoints if e.id == "e6"] == [None] and store.last_ip("n6") is None
        with pytest.raises(sqlite3.IntegrityError), store.transaction() as tx:  # the network reference holds
            store.insert_endpoint(tx, Endpoint("e7", "w6", "ghost", None, "02:42:00:00:00:07", "hve7", 1))
        with store.transaction() as tx:
            store.delete_workload(tx, "w1")  # its endpoint goes with it (ON DELETE CASCADE)
        assert [e.id for e in store.snapshot().endpoints] == ["e6"]
    finally:
        store.close()
