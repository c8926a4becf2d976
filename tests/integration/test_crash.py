"""kill -9 hyprd at many points of each operation, restart it, and check that the kernel and the processes match the
database: the whole operation or none of it, nothing left unowned (issue "Confinement", part B, items 1-3)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.integration.harness import (
    HYPR,
    Hyprd,
    leftover_cgroups,
    leftover_containers,
    leftover_processes,
    links,
    sh,
    wait_until,
)

pytestmark = pytest.mark.slow
DELAYS = (0.0, 0.02, 0.05, 0.09, 0.15, 0.3)  # seconds after the command is sent


def invariants(hyprd: Hyprd) -> None:
    """Rows and kernel agree: one supervisor per running workload and none for the others, every endpoint's host
    link exists and no link of ours is without an endpoint, every network has its bridge and no bridge of ours
    is without a network, and the daemon answers."""
    with hyprd.client() as client:
        containers = [client.container(c["Id"]) for c in client.containers(all=True)]
        networks = [n for n in client.networks() if n["Driver"] == "bridge"]  # host and none have no bridge
    running = [c for c in containers if c["State"]["Running"]]
    for c in running:
        assert c["State"]["Pid"] and os.path.exists(f"/proc/{c['State']['Pid']}"), c["Name"]
    supervisors = [p for p in leftover_processes(hyprd.root) if _is_supervisor(p)]
    assert len(supervisors) == len(running), (supervisors, [c["Name"] for c in running])
    wanted = {n["HostInterface"] for c in containers for n in c["NetworkSettings"]["Networks"].values()}
    ours = {name for name in links(hyprd.ns) if name.startswith(("hv", "tap"))}
    assert ours == wanted, (ours, wanted)
    bridges = {n["Options"]["com.docker.network.bridge.name"] for n in networks if n["Driver"] == "bridge"}
    have = set(links(hyprd.ns, "bridge"))
    assert bridges <= have and not {b for b in have - bridges if b.startswith("vbr")}, (bridges, have)
    for n in networks:  # each IPv6 network's bridge has its gateway (the whole create, IPv6 included)
        for gateway in [c["Gateway"] for c in n["IPAM"]["Config"] or [] if ":" in c.get("Subnet", "")]:
            bridge = n["Options"]["com.docker.network.bridge.name"]
            assert gateway in sh("ip", "-n", hyprd.ns, "-6", "addr", "show", "dev", bridge).stdout, (n["Name"], bridge)
    # crun's containers and their cgroups: one per running workload, none for the others.
    ids = {c["Id"] for c in running}
    assert {crun_root.parent.name for crun_root, _ in leftover_containers(hyprd.root)} == ids
    assert {group.name for group in leftover_cgroups(hyprd.root)} <= ids
    # Published ports in the ruleset are the rows' (a stopped workload keeps its mapping, as its address).
    rules = sh("ip", "netns", "exec", hyprd.ns, "nft", "list", "ruleset").stdout
    published = {p["HostPort"] for c in containers for b in (c["NetworkSettings"]["Ports"] or {}).values() if b
                 for p in b}  # fmt: skip
    assert set(re.findall(r"(?:tcp|udp) \. (\d+) :", rules)) == published, (rules, published)


def _is_supervisor(pid: int) -> bool:
    try:
        return b"shim.py" in open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False


def crash_during(hyprd: Hyprd, argv: list[str], delay: float) -> None:
    command = subprocess.Popen([HYPR, "-H", f"unix://{hyprd.socket}", *argv], env=hyprd.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(delay)
    hyprd.kill9()
    command.wait(timeout=30)
    hyprd.start()
    wait_until(lambda: _settled(hyprd), "the restarted daemon to settle", timeout=10)
    invariants(hyprd)


def _settled(hyprd: Hyprd) -> bool:
    with hyprd.client() as client:
        return client.ping()


OPERATIONS: list[tuple[str, Callable[[Hyprd, int], list[str]]]] = [
    (
        "run",
        lambda h, i: [
            "run",
            "-d",
            "--name",
            f"r{i}",
            "--network",
            "crashnet",
            "-p",
            f"{19000 + i}:80",
            "busybox",
            "sleep",
            "600",
        ],
    ),
    ("start", lambda h, i: ["start", "stopped"]),
    ("rm", lambda h, i: ["rm", "-f", f"victim{i}"]),
    ("network create", lambda h, i: ["network", "create", f"made{i}"]),
    ("network create --ipv6", lambda h, i: ["network", "create", "--ipv6", f"made6{i}"]),
    ("network connect", lambda h, i: ["network", "connect", "crashnet", "plugged"]),
    ("network rm -f", lambda h, i: ["network", "rm", "-f", f"doomed{i}"]),
    ("network disconnect", lambda h, i: ["network", "disconnect", "crashnet", "unplugged"]),
    ("compose up", lambda h, i: ["compose", "-f", str(h.root / "compose.yaml"), "up", "-d"]),
]
COMPOSE = """\
name: crashy
services:
  web: {image: busybox, command: sleep 600, networks: [front, back], ports: ["18080:80"]}
  db: {image: busybox, command: sleep 600, networks: [back]}
networks: {front: {}, back: {}}
"""


@pytest.mark.parametrize("name", [name for name, _ in OPERATIONS])
def test_kill_9_at_any_point_leaves_the_whole_operation_or_none(hyprd: Hyprd, name: str) -> None:
    make = dict(OPERATIONS)[name]
    hyprd.cli("network", "create", "crashnet")
    for i, delay in enumerate(DELAYS):
        if name == "start":
            hyprd.cli("rm", "-f", "stopped", rc=None)
            hyprd.cli("run", "-d", "--name", "stopped", "busybox", "sleep", "600")
            hyprd.cli("stop", "-t", "0", "stopped")
        if name == "rm":
            hyprd.cli("run", "-d", "--name", f"victim{i}", "--network", "crashnet", "busybox", "sleep", "600")
        if name == "network connect":
            hyprd.cli("rm", "-f", "plugged", rc=None)
            hyprd.cli("run", "-d", "--name", "plugged", "busybox", "sleep", "600")
        if name == "network disconnect":
            hyprd.cli("rm", "-f", "unplugged", rc=None)
            hyprd.cli("run", "-d", "--name", "unplugged", "--network", "crashnet", "busybox", "sleep", "600")
            hyprd.cli("network", "connect", "bridge", "unplugged")
        if name == "compose up":
            (hyprd.root / "compose.yaml").write_text(COMPOSE)
            hyprd.cli("compose", "-f", str(hyprd.root / "compose.yaml"), "down")
        if name == "network rm -f":
            hyprd.cli("network", "create", f"doomed{i}")
            hyprd.cli("run", "-d", "--name", f"member{i}", "--network", f"doomed{i}", "busybox", "sleep", "600")
        crash_during(hyprd, make(hyprd, i), delay)
        # The operation can be finished (or undone) as a user would, and the result works.
        if name == "start":
            hyprd.cli("start", "stopped")
            hyprd.cli("exec", "stopped", "true")
        if name == "network connect":
            nets = json.loads(hyprd.cli("inspect", "plugged").stdout)[0]["NetworkSettings"]["Networks"]
            if "crashnet" not in nets:
                hyprd.cli("network", "connect", "crashnet", "plugged")
            hyprd.cli("exec", "plugged", "ip", "-o", "-4", "addr", "show", "eth1")
        if name == "compose up":  # a second `up` finishes the project, and it works
            hyprd.cli("compose", "-f", str(hyprd.root / "compose.yaml"), "up", "-d")
            hyprd.cli("exec", "crashy-web-1", "ping", "-c1", "-W2", "db")
        invariants(hyprd)
