"""docker-py, the Docker SDK for Python, drives hypr's networks through the same API the docker CLI uses."""

from __future__ import annotations

import docker
import pytest
from docker.types import IPAMConfig, IPAMPool

from tests.integration.harness import Hyprd, links


def test_docker_py_networks(hyprd: Hyprd) -> None:
    client = docker.DockerClient(base_url=f"unix://{hyprd.socket}", version="auto")
    try:
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet="10.66.0.0/24", gateway="10.66.0.254")])
        net = client.networks.create("pynet", driver="bridge", ipam=ipam, labels={"made-by": "docker-py"})
        assert len(net.id) == 64 and "vbr1" in links(hyprd.ns)
        assert net.attrs["IPAM"]["Config"] == [{"Subnet": "10.66.0.0/24", "Gateway": "10.66.0.254"}]
        assert {n.name for n in client.networks.list()} == {"bridge", "pynet"}
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
