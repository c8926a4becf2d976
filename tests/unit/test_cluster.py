"""The cluster's pure parts: store URLs, the registry's keys and values, the VXLAN entries planned from it, the
allowlist, and the daemon's cluster settings."""

from __future__ import annotations

import json
import socket
import struct
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from hypr.cluster import overlay
from hypr.cluster import registry as reg
from hypr.cluster.store import parse_store_url, prefix_empty
from hypr.config import Paths, Settings, settings_from_env
from hypr.daemon import apply_flags
from hypr.errors import InvalidParameter
from hypr.models import Endpoint, Network, Snapshot, Workload

NET = Network(
    id="n" * 64, name="ov", bridge="vbr3", subnet=IPv4Network("10.140.0.0/24"), gateway=IPv4Address("10.140.0.1"),
    mtu=1450, options={reg.OPT_VNI: "4097"}, driver="overlay", created="2026-01-01T00:00:00Z",
)  # fmt: skip


@pytest.mark.parametrize(
    ("url", "members"),
    [
        ("etcd://10.0.0.1:2379", (("10.0.0.1", 2379),)),
        ("etcd://a:1,b:2,c", (("a", 1), ("b", 2), ("c", 2379))),
        ("etcd://[fd00::1]:2379", (("fd00::1", 2379),)),
    ],
)
def test_store_urls(url: str, members: tuple[tuple[str, int], ...]) -> None:
    assert parse_store_url(url) == members


@pytest.mark.parametrize("url", ["http://x:2379", "etcd://", "consul://x:8500", "etcd://x:notaport"])
def test_bad_store_urls(url: str) -> None:
    with pytest.raises(InvalidParameter, match="cluster store"):
        parse_store_url(url)


def test_prefix_compare_covers_exactly_the_prefix() -> None:
    compare = prefix_empty("/a/b/")
    assert compare["key"] == "L2EvYi8=" and compare["range_end"] == "L2EvYjA="  # "/a/b/" .. "/a/b0"
    assert compare["result"] == "LESS" and compare["create_revision"] == "1"


def test_network_round_trips_through_its_json() -> None:
    back = reg.network_from_json(json.loads(reg.network_to_json(NET)))
    assert back == Network(**{**NET.__dict__, "bridge": ""})  # the bridge is each host's own
    assert reg.vni_of(back) == 4097


def _kvs(*pairs: tuple[str, object]) -> list[tuple[str, bytes]]:
    return [(k, (v if isinstance(v, str) else json.dumps(v)).encode()) for k, v in pairs]


def test_parse_state_reads_nodes_networks_and_endpoints_and_skips_junk() -> None:
    endpoint = {"node": "n2", "vtep": "198.18.0.12", "mac": "02:42:0a:8c:00:02", "workload": "w" * 64,
                "name": "web", "aliases": ["www"], "running": True, "endpoint": "e" * 64}  # fmt: skip
    state = reg.parse_state(7, _kvs(
        (reg.NODES + "n1", {"name": "a", "addr": "198.18.0.11", "last_seen": "t1"}),
        (reg.NODES + "n2", {"name": "b", "addr": "198.18.0.12", "last_seen": "t2"}),
        (reg.ALIVE + "n2", {"addr": "198.18.0.12"}),
        (reg.NETWORKS + NET.id, json.loads(reg.network_to_json(NET))),
        (reg.NAMES + "ov", NET.id),
        (reg.endpoint_key(NET.id, IPv4Address("10.140.0.2")), endpoint),
        (reg.ENDPOINTS + "broken", "not json"),
    ))  # fmt: skip
    assert state.revision == 7
    assert [(n.name, n.alive) for n in state.nodes] == [("a", False), ("b", True)]
    assert state.members() == {"198.18.0.12"}
    assert list(state.networks) == [NET.id]
    (e,) = state.endpoints
    assert (e.ip, e.node, e.vtep, e.name, e.aliases, e.running) == (
        IPv4Address("10.140.0.2"), "n2", "198.18.0.12", "web", ("www",), True,
    )  # fmt: skip
    assert reg.parse_state(0, [(reg.endpoint_key(NET.id, e.ip), e.to_json().encode())]).endpoints == (e,)


def _endpoint(ip: str, node: str, vtep: str, network: str = NET.id) -> reg.RemoteEndpoint:
    address = IPv4Address(ip)
    return reg.RemoteEndpoint(network, address, node, vtep, mac="02:42:" + ":".join(f"{b:02x}" for b in address.packed),
                              workload_id=ip, name=f"w{ip}", running=True, endpoint_id=ip)  # fmt: skip


def test_entries_are_other_hosts_endpoints_on_our_overlays_only() -> None:
    local = Network(id="l" * 64, name="br", bridge="vbr1", subnet=IPv4Network("10.89.0.0/16"),
                    gateway=IPv4Address("10.89.0.1"))  # fmt: skip
    state = reg.ClusterState(endpoints=(
        _endpoint("10.140.0.2", "me", "198.18.0.11"),
        _endpoint("10.140.0.3", "other", "198.18.0.13"),
        _endpoint("10.141.0.3", "other", "198.18.0.13", network="x" * 64),  # an overlay this host lacks
    ))  # fmt: skip
    plan = overlay.plan_entries(Snapshot(networks=(NET, local)), state, "me")
    assert plan == {
        "hvx4097": frozenset({overlay.Entry(IPv4Address("10.140.0.3"), "02:42:0a:8c:00:03", "198.18.0.13")})
    }


def test_entry_messages_fdb_self_bridge_static_and_permanent_neighbour() -> None:
    entry = overlay.Entry(IPv4Address("10.140.0.3"), "02:42:0a:8c:00:03", "198.18.0.13")
    fdb, master, neigh = overlay.entry_requests(9, entry, add=True)
    assert struct.unpack_from("=BBHiHBB", fdb.body) == (socket.AF_BRIDGE, 0, 0, 9, overlay.NUD_PERMANENT,
                                                         overlay.NTF_SELF, 0)  # fmt: skip
    assert IPv4Address("198.18.0.13").packed in fdb.body
    # `static`, not `permanent`: on a bridge a permanent entry means "this MAC is the host itself"
    assert struct.unpack_from("=BBHiHBB", master.body)[4:6] == (overlay.NUD_NOARP, overlay.NTF_MASTER)
    assert struct.unpack_from("=BBHiHBB", neigh.body)[0] == socket.AF_INET and entry.ip.packed in neigh.body
    assert all(r.ok == {2} for r in overlay.entry_requests(9, entry, add=False))  # ENOENT: already gone


def test_allowlist_renders_members_sorted_and_drops_all_without_any() -> None:
    text = overlay.render_allowlist({"198.18.0.13", "198.18.0.2"})
    assert "udp dport 4789 ip saddr != { 198.18.0.2, 198.18.0.13 } drop" in text
    assert "table inet hypr_vxlan {}\ndelete table inet hypr_vxlan" in text
    assert "udp dport 4789 drop" in overlay.render_allowlist(())


def test_with_remote_adds_running_remote_endpoints_for_dns(tmp_path: Path) -> None:
    from hypr.cluster.agent import Cluster, ClusterSettings

    cluster = Cluster(ClusterSettings("etcd://127.0.0.1:1", "198.18.0.11", "a"), "me", None, frozenset)  # type: ignore[arg-type]
    stopped = reg.RemoteEndpoint(NET.id, IPv4Address("10.140.0.9"), "other", "198.18.0.13", running=False)
    cluster.state = reg.ClusterState(endpoints=(_endpoint("10.140.0.2", "me", "x"),
                                                _endpoint("10.140.0.3", "other", "198.18.0.13"), stopped))  # fmt: skip
    mine = Workload(id="m" * 64, name="mine", image="busybox", state="running")
    snapshot = Snapshot(networks=(NET,), workloads=(mine,), endpoints=(
        Endpoint("e" * 64, mine.id, NET.id, IPv4Address("10.140.0.2"), "02:42:0a:8c:00:02", "hvx", 0),
    ))  # fmt: skip
    wider = cluster.with_remote(snapshot)
    assert [w.name for w in wider.workloads] == ["mine", "w10.140.0.3"]
    assert [str(e.ip) for e in wider.endpoints] == ["10.140.0.2", "10.140.0.3"]


def test_cluster_settings_from_file_env_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"cluster-store": "etcd://10.0.0.1:2379", "cluster-advertise": "10.0.0.5"}))
    env = {"HYPR_CONFIG_FILE": str(config), "HYPR_DATA_DIR": str(tmp_path)}
    settings = settings_from_env(env)
    assert (settings.cluster_store, settings.advertise_addr, settings.cluster_ttl) == ("etcd://10.0.0.1:2379",
                                                                                      "10.0.0.5", 15)  # fmt: skip
    assert settings_from_env({**env, "HYPR_ADVERTISE_ADDR": "10.0.0.6"}).advertise_addr == "10.0.0.6"
    flagged = apply_flags(settings, ["--advertise-addr", "10.0.0.7", "--node-name", "n7"])
    assert (flagged.advertise_addr, flagged.node_name) == ("10.0.0.7", "n7")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cluster-store", "etcd://x:2379"], "advertise-addr"),
        (["--cluster-store", "etcd://x:2379", "--advertise-addr", "host.example"], "advertise-addr"),
        (["--cluster-store", "redis://x", "--advertise-addr", "10.0.0.1"], "cluster store"),
    ],
)
def test_bad_cluster_flags(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_flags(Settings(paths=Paths(Path("/d"), Path("/r"))), argv)


def test_no_cluster_store_means_no_cluster() -> None:
    assert apply_flags(Settings(paths=Paths(Path("/d"), Path("/r"))), []).cluster_store == ""


def test_overlay_plans_keep_the_driver_and_refuse_ipv6() -> None:
    from hypr.models import HostView
    from hypr.services.network_plan import plan_network_create, scope

    planned = plan_network_create({"Name": "ov", "Driver": "overlay", "Scope": "swarm"}, Snapshot(), HostView())
    assert planned.driver == "overlay" and scope(planned) == "global"
    with pytest.raises(InvalidParameter, match="IPv6 on overlay networks"):
        plan_network_create({"Name": "ov", "Driver": "overlay", "EnableIPv6": True}, Snapshot(), HostView())
