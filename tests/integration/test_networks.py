"""Networks are real bridges: they appear, converge after crashes, and stay out of other daemons' way."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from hypr.errors import Conflict, Forbidden, InvalidParameter, NotFound
from tests.integration.harness import Hyprd, links, netns, run_in, sh


def bridge_addrs(ns: str, bridge: str) -> list[str]:
    data = json.loads(sh("ip", "-n", ns, "-j", "addr", "show", "dev", bridge).stdout)
    return [f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"] if a["family"] == "inet"]


def link_info(ns: str, name: str) -> dict[str, object]:
    return dict(json.loads(sh("ip", "-n", ns, "-j", "-d", "link", "show", "dev", name).stdout)[0])


def test_default_network_is_vbr0_and_owned(hyprd: Hyprd) -> None:
    assert bridge_addrs(hyprd.ns, "vbr0") == ["10.88.0.1/16"]
    info = link_info(hyprd.ns, "vbr0")
    assert str(info["ifalias"]).startswith("hypr:")
    assert info["address"] == "02:42:0a:58:00:01"  # fixed (from the gateway), so ports coming and going never move it
    assert "UP" in info["flags"]  # type: ignore[operator]
    with hyprd.client() as client:
        net, host, none = client.networks()  # Docker lists its host and none networks too
        assert (host["Driver"], none["Driver"]) == ("host", "null")
        assert net["Name"] == "bridge" and net["Options"]["com.docker.network.bridge.name"] == "vbr0"
        with pytest.raises(Forbidden, match="pre-defined"):
            client.remove_network("bridge")
        assert client.prune_networks() == []


def test_create_inspect_remove_moves_the_kernel(hyprd: Hyprd) -> None:
    net_id = hyprd.cli(
        "network", "create", "app", "--subnet", "10.90.0.0/24", "--gateway", "10.90.0.254",
        "-o", "com.docker.network.driver.mtu=1400", "--label", "tier=web",
    ).stdout.strip()  # fmt: skip
    assert len(net_id) == 64
    assert bridge_addrs(hyprd.ns, "vbr1") == ["10.90.0.254/24"]
    assert link_info(hyprd.ns, "vbr1")["mtu"] == 1400
    [inspected] = json.loads(hyprd.cli("network", "inspect", "app").stdout)
    assert inspected["Id"] == net_id
    assert inspected["IPAM"]["Config"] == [{"Subnet": "10.90.0.0/24", "Gateway": "10.90.0.254"}]
    assert inspected["Labels"] == {"tier": "web"}
    assert json.loads(hyprd.cli("network", "inspect", net_id[:5]).stdout)[0]["Name"] == "app"
    ls = hyprd.cli("network", "ls").stdout.splitlines()
    assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [line.split()[1] for line in ls[1:]] == ["app", "bridge", "host", "none"]
    assert hyprd.cli("network", "ls", "-q", "--filter", "label=tier=web").stdout.split() == [net_id[:12]]
    hyprd.cli("network", "rm", "app")
    assert "vbr1" not in links(hyprd.ns)
    missing = hyprd.cli("network", "inspect", "app", rc=1)
    assert "network app not found" in missing.stderr


def test_auto_subnet_skips_networks_and_host_routes(hyprd: Hyprd) -> None:
    run_in(hyprd.ns, "ip", "link", "add", "other0", "type", "bridge")
    run_in(hyprd.ns, "ip", "link", "set", "other0", "up")
    run_in(hyprd.ns, "ip", "addr", "add", "10.89.0.1/16", "dev", "other0")
    with hyprd.client() as client:
        first = client.network(client.create_network({"Name": "a"}))
        second = client.network(client.create_network({"Name": "b"}))
    assert first["IPAM"]["Config"][0] == {"Subnet": "10.90.0.0/16", "Gateway": "10.90.0.1"}
    assert second["IPAM"]["Config"][0]["Subnet"] == "10.91.0.0/16"
    assert "other0" in links(hyprd.ns)


def test_a_foreign_link_on_a_removed_bridges_index_is_not_ours(hyprd: Hyprd) -> None:
    """hyprd remembers which link indexes are its bridges (so a network create looks up few routes); a link made
    later with a removed bridge's index (ip link add ... index N, or moved in from another namespace) is not."""
    with hyprd.client() as client:
        first = client.network(client.create_network({"Name": "a"}))
        client.create_network({"Name": "b"})  # looks at the host's routes again: a's bridge is known as ours now
        assert first["IPAM"]["Config"][0]["Subnet"] == "10.89.0.0/16"
        bridge = first["Options"]["com.docker.network.bridge.name"]
        index = str(json.loads(run_in(hyprd.ns, "ip", "-j", "link", "show", bridge).stdout)[0]["ifindex"])
        client.remove_network("a")
        run_in(hyprd.ns, "ip", "link", "add", "foreign0", "index", index, "type", "bridge")
        run_in(hyprd.ns, "ip", "addr", "add", "10.89.0.1/16", "dev", "foreign0")
        run_in(hyprd.ns, "ip", "link", "set", "foreign0", "up")
        third = client.network(client.create_network({"Name": "c"}))
    assert third["IPAM"]["Config"][0]["Subnet"] == "10.91.0.0/16"  # not a's old subnet: foreign0's route holds it


def test_bad_input_changes_nothing(hyprd: Hyprd) -> None:
    run_in(hyprd.ns, "ip", "link", "add", "taken0", "type", "bridge")
    with hyprd.client() as client:
        client.create_network({"Name": "dup", "IPAM": {"Config": [{"Subnet": "10.70.0.0/16"}]}})
        before = client.networks()
        cases = [
            ({"Name": "dup"}, Conflict, "network with name dup already exists"),
            ({"Name": "bridge"}, Forbidden, "predefined bridge network"),
            (
                {"Name": "x", "IPAM": {"Config": [{"Subnet": "10.71.0.1/16"}]}},
                InvalidParameter,
                "it should be 10.71.0.0/16",
            ),
            ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.70.5.0/24"}]}}, Forbidden, "Pool overlaps"),
            ({"Name": "x", "Driver": "macvlan"}, NotFound, "plugin macvlan"),
            ({"Name": "x", "Options": {"com.docker.network.bridge.name": "taken0"}}, Forbidden, "already an interface"),
            (
                {"Name": "x", "Options": {"com.docker.network.bridge.name": "a-very-long-bridge"}},
                InvalidParameter,
                "too long",
            ),
            ({"Name": "x", "Options": {"com.docker.network.driver.mtu": "9"}}, InvalidParameter, "invalid MTU"),
        ]
        for body, error, message in cases:
            with pytest.raises(error, match=message):
                client.create_network(body)
        with pytest.raises(NotFound, match="network nope not found"):
            client.remove_network("nope")
        assert client.networks() == before
    assert sorted(link for link in links(hyprd.ns, "bridge") if link.startswith("vbr")) == ["vbr0", "vbr1"]


def test_http_codes_match_docker(hyprd: Hyprd) -> None:
    def curl(method: str, path: str, body: str | None = None) -> tuple[int, str]:
        argv = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", str(hyprd.socket), "-X", method]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "-d", body]
        out = sh(*argv, f"http://localhost{path}").stdout
        text, _, code = out.rpartition("\n")
        return int(code), text

    assert curl("GET", "/_ping") == (200, "OK")
    assert curl("POST", "/v1.44/networks/create", '{"Name": "n1"}')[0] == 201
    assert curl("POST", "/v1.44/networks/create", '{"Name": "n1"}')[0] == 409
    assert curl("POST", "/networks/create", "{not json")[0] == 400
    assert curl("GET", "/v1.44/networks/zzz")[0] == 404
    assert curl("DELETE", "/v1.44/networks/n1")[0] == 204
    code, body = curl("GET", "/networks?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D")
    assert code == 400 and "invalid filter 'bogus'" in body


def test_restart_after_kill9_converges(hyprd: Hyprd) -> None:
    with hyprd.client() as client:
        client.create_network({"Name": "keep", "IPAM": {"Config": [{"Subnet": "10.60.0.0/24"}]}})
        client.create_network({"Name": "gone", "IPAM": {"Config": [{"Subnet": "10.61.0.0/24"}]}})
    assert sorted(links(hyprd.ns, "bridge")) == ["vbr0", "vbr1", "vbr2"]
    hyprd.kill9()
    run_in(hyprd.ns, "ip", "link", "del", "vbr1")  # a bridge deleted by hand
    run_in(hyprd.ns, "ip", "addr", "add", "10.99.0.1/24", "dev", "vbr0")  # a stray address on our bridge
    with sqlite3.connect(hyprd.root / "data" / "hypr.db") as db:  # a row deleted while the daemon was down
        db.execute("DELETE FROM networks WHERE name='gone'")
    run_in(hyprd.ns, "ip", "link", "add", "vbr7", "type", "bridge")  # not ours: must survive
    hyprd.start()
    assert sorted(links(hyprd.ns, "bridge")) == ["vbr0", "vbr1", "vbr7"]
    assert bridge_addrs(hyprd.ns, "vbr1") == ["10.60.0.1/24"]
    assert bridge_addrs(hyprd.ns, "vbr0") == ["10.88.0.1/16"]


def test_refuses_second_daemon_on_same_dirs(hyprd: Hyprd) -> None:
    second = Hyprd(ns=hyprd.ns, root=hyprd.root)
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(timeout=15) == 1
    assert "already using" in hyprd.log.read_text()
    with hyprd.client() as client:
        assert client.ping()


def test_two_daemons_side_by_side(hyprd: Hyprd, tmp_path: Path) -> None:
    with netns("hyprt") as other_ns:
        other = Hyprd(
            ns=other_ns,
            root=tmp_path,
            env_extra={"HYPR_DEFAULT_SUBNET": "10.77.0.0/16", "HYPR_DEFAULT_GATEWAY": "10.77.0.1"},
        )
        other.start()
        try:
            with other.client() as client:
                client.create_network({"Name": "mine"})
            assert sorted(links(other_ns, "bridge")) == ["vbr0", "vbr1"]
            assert bridge_addrs(other_ns, "vbr0") == ["10.77.0.1/16"]
            assert links(hyprd.ns, "bridge") == ["vbr0"]
            with hyprd.client() as client:
                assert [n["Name"] for n in client.networks()] == ["bridge", "host", "none"]
        finally:
            other.stop()


def test_default_subnet_overlapping_a_host_route_is_refused(host_ns: str, tmp_root: Path) -> None:
    run_in(host_ns, "ip", "link", "add", "podman0", "type", "bridge")
    run_in(host_ns, "ip", "link", "set", "podman0", "up")
    run_in(host_ns, "ip", "addr", "add", "10.88.0.1/16", "dev", "podman0")
    daemon = Hyprd(ns=host_ns, root=tmp_root)
    daemon.start(wait=False)
    assert daemon.proc is not None and daemon.proc.wait(timeout=15) == 1
    log = daemon.log.read_text()
    assert "10.88.0.0/16 dev podman0" in log and "HYPR_DEFAULT_SUBNET" in log
    assert "vbr0" not in links(host_ns)


def test_docker_cli_drives_networks(hyprd: Hyprd) -> None:
    docker = ["docker", "-H", f"unix://{hyprd.socket}"]

    def run(*argv: str) -> str:
        proc = subprocess.run([*docker, *argv], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    net_id = run("network", "create", "--subnet", "10.55.0.0/24", "--label", "a=b", "dnet").strip()
    assert len(net_id) == 64 and bridge_addrs(hyprd.ns, "vbr1") == ["10.55.0.1/24"]
    assert "dnet" in run("network", "ls")
    assert json.loads(run("network", "inspect", "dnet"))[0]["IPAM"]["Config"][0]["Subnet"] == "10.55.0.0/24"
    err = subprocess.run([*docker, "network", "create", "dnet"], capture_output=True, text=True, timeout=30)
    assert err.returncode != 0 and "network with name dnet already exists" in err.stderr
    run("network", "rm", "dnet")
    run("network", "create", "spare")
    assert "spare" in run("network", "prune", "-f")
    assert links(hyprd.ns, "bridge") == ["vbr0"]
