"""docker-py, the Docker SDK for Python, drives hypr's networks through the same API the docker CLI uses."""

from __future__ import annotations

import json
import os

import docker
import pytest
from docker.types import IPAMConfig, IPAMPool

from hypr.errors import HyprError
from tests.integration.harness import Hyprd, links


def test_docker_py_networks(hyprd: Hyprd) -> None:
    client = docker.DockerClient(base_url=f"unix://{hyprd.socket}", version="auto")
    try:
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet="10.66.0.0/24", gateway="10.66.0.254")])
        net = client.networks.create("pynet", driver="bridge", ipam=ipam, labels={"made-by": "docker-py"})
        assert len(net.id) == 64 and "vbr1" in links(hyprd.ns)
        assert net.attrs["IPAM"]["Config"] == [{"Subnet": "10.66.0.0/24", "Gateway": "10.66.0.254"}]
        assert {n.name for n in client.networks.list()} == {"bridge", "host", "none", "pynet"}
        assert [n.name for n in client.networks.list(filters={"label": "made-by=docker-py"})] == ["pynet"]
        with pytest.raises(docker.errors.APIError) as conflict:
            client.networks.create("pynet")
        assert conflict.value.status_code == 409
        with pytest.raises(docker.errors.NotFound):
            client.networks.get("nope")
        net.remove()
        assert "vbr1" not in links(hyprd.ns)
        client.networks.create("spare")
        assert client.networks.prune()["NetworksDeleted"] == ["spare"]
    finally:
        client.close()


def test_info_tells_the_truth_and_unsupported_paths_say_so(hyprd: Hyprd) -> None:
    import subprocess

    hyprd.cli("run", "-d", "--name", "up1", "busybox", "sleep", "600")
    hyprd.cli("run", "--name", "done1", "busybox", "true")
    info = json.loads(
        subprocess.run(["docker", "-H", f"unix://{hyprd.socket}", "info", "--format", "{{json .}}"],
                       capture_output=True, text=True, check=True).stdout
    )  # fmt: skip
    assert (info["Containers"], info["ContainersRunning"], info["ContainersStopped"]) == (2, 1, 1)
    assert info["NCPU"] == os.cpu_count() and info["MemTotal"] > 0 and info["Swarm"]["LocalNodeState"] == "inactive"
    assert set(info["Runtimes"]) == {"sandbox", "vm"}
    swarm = subprocess.run(["docker", "-H", f"unix://{hyprd.socket}", "service", "ls"], capture_output=True, text=True)
    assert swarm.returncode != 0 and "not part of a swarm" in swarm.stderr
    with hyprd.client() as client, pytest.raises(HyprError, match="GET /plugins is not implemented by hypr"):
        client.request("GET", "/plugins")


def test_ps_filters_and_limits_with_the_docker_cli(hyprd: Hyprd) -> None:
    import subprocess

    def ps(*argv: str) -> list[str]:
        out = subprocess.run(["docker", "-H", f"unix://{hyprd.socket}", "ps", "--format", "{{.Names}}", *argv],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        return out.split()

    hyprd.cli("network", "create", "filt")
    hyprd.cli("run", "--name", "first", "busybox", "sh", "-c", "exit 3", rc=3)
    hyprd.cli("run", "-d", "--name", "second", "--network", "filt", "-p", "8080:80", "--expose", "9000",
              "busybox", "sleep", "600")  # fmt: skip
    hyprd.cli("run", "--name", "third", "busybox", "true")
    net_id = json.loads(hyprd.cli("network", "inspect", "filt").stdout)[0]["Id"]
    assert ps("-a", "--filter", "exited=3") == ["first"]
    assert ps("-a", "--filter", "exited=0") == ["third"]
    assert ps("-a", "--filter", "before=third") == ["second", "first"]
    assert ps("-a", "--filter", "since=first") == ["third", "second"]
    assert ps("--filter", "expose=80") == ["second"] and ps("--filter", "expose=9000/tcp") == ["second"]
    assert ps("--filter", "publish=8080") == ["second"] and ps("--filter", "publish=8081") == []
    assert ps("--filter", "health=none") == ["second"] and ps("-a", "--filter", "volume=data") == []
    assert ps("--filter", f"network={net_id[:10]}") == ["second"]
    assert ps("-n", "2") == ["third", "second"] and ps("-l") == ["third"]
    assert ps("-a", "--filter", "name=^/?sec") == ["second"]
