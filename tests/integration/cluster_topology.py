"""Three "hosts" on one machine for the overlay tests (needs root and Debian's etcd-server).

    ┌──────────── underlay namespace ────────────┐
    │  br0 198.18.0.1/24   etcd on 198.18.0.1:2379 │
    └──┬──────────────┬──────────────┬────────────┘
       │ veth         │ veth         │ veth
    host A .11     host B .12     host C .13      each a namespace running its own hyprd, default route via .1

The underlay namespace also plays "the internet" (egress is NATed to the host's own address). Everything is made
with `ip -n` in namespaces of our own and removed in `finally`, etcd's data dir with the test's tmp dir.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.harness import Hyprd, netns, run_in, sh, wait_until

UNDERLAY = "198.18.0.1"
ETCD_PORT = 2379
TTL = 3  # seconds: the node lease; short so a dead host is noticed within a test

needs_etcd = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd (Debian etcd-server) is not installed")


@dataclass
class Etcd:
    ns: str
    data: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{UNDERLAY}:{ETCD_PORT}"

    def start(self) -> None:
        peer = "http://127.0.0.1:2380"
        argv = ["nsenter", f"--net=/run/netns/{self.ns}", "etcd", "--name", "e0", "--data-dir", str(self.data),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url, "--listen-peer-urls", peer,
                "--initial-advertise-peer-urls", peer, "--initial-cluster", f"e0={peer}"]  # fmt: skip
        with open(self.data.parent / "etcd.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_until(self.healthy, "etcd to answer", timeout=20, interval=0.1)

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"etcd exited {self.proc.returncode}")
        got = run_in(self.ns, "curl", "-s", "-m", "1", f"{self.url}/health", rc=None)
        return '"health":"true"' in got.stdout

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def get(self, prefix: str) -> list[str]:
        """Keys under `prefix`, read with etcdctl inside the underlay."""
        out = run_in(self.ns, "etcdctl", f"--endpoints={self.url}", "get", "--prefix", "--keys-only", prefix).stdout
        return [line for line in out.splitlines() if line]


@dataclass
class Cluster:
    underlay: str
    etcd: Etcd
    hosts: dict[str, Hyprd] = field(default_factory=dict)  # "a", "b", "c"
    addrs: dict[str, str] = field(default_factory=dict)


def _wire(underlay: str, host: str, index: int, addr: str) -> list[list[str]]:
    port = f"h{index}"
    return [
        ["ip", "-n", underlay, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host],
        ["ip", "-n", underlay, "link", "set", port, "master", "br0", "up"],
        ["ip", "-n", host, "addr", "add", f"{addr}/24", "dev", "eth0"],
        ["ip", "-n", host, "link", "set", "eth0", "up"],
        ["ip", "-n", host, "route", "add", "default", "via", UNDERLAY],
    ]


@contextmanager
def cluster(root: Path, names: tuple[str, ...] = ("a", "b", "c")) -> Iterator[Cluster]:
    """An underlay with etcd, and one namespace + hyprd per name, all joined to the cluster."""
    with ExitStack() as stack:
        underlay = stack.enter_context(netns("hyprul"))
        sh("ip", "-n", underlay, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", underlay, "addr", "add", f"{UNDERLAY}/24", "dev", "br0")
        sh("ip", "-n", underlay, "link", "set", "br0", "up")
        (root / "etcd").mkdir(parents=True)
        etcd = Etcd(underlay, root / "etcd" / "data")
        stack.callback(etcd.stop)
        etcd.start()
        found = Cluster(underlay, etcd)
        for index, name in enumerate(names, start=1):
            host = stack.enter_context(netns(f"hyprh{name}"))
            addr = f"198.18.0.{10 + index}"
            for argv in _wire(underlay, host, index, addr):
                sh(*argv)
            (root / name).mkdir(parents=True)
            daemon = Hyprd(host, root / name, env_extra={
                "HYPR_CLUSTER_STORE": f"etcd://{UNDERLAY}:{ETCD_PORT}", "HYPR_ADVERTISE_ADDR": addr,
                "HYPR_NODE_NAME": f"host-{name}", "HYPR_CLUSTER_TTL": str(TTL),
                "HYPR_DNS_UPSTREAMS": f"{UNDERLAY}:53",
            })  # fmt: skip
            stack.callback(daemon.stop)
            found.hosts[name] = daemon
            found.addrs[name] = addr
        for daemon in found.hosts.values():
            daemon.start(wait=False)
        for daemon in found.hosts.values():
            wait_until(daemon._ready, f"hyprd in {daemon.ns}", timeout=30)
        yield found
