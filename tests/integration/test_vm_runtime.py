"""The vm runtime against real QEMU microVMs, inside throw-away "host" namespaces (root only; slow under TCG).

Each test gets its own host netns `hyprvm-<pid>-<n>` with a bridge, and runs with the test thread switched into it
(the runtime treats the caller's namespace as the host side; QEMU inherits it). Everything is removed in `finally`.
Few boots on purpose: each costs ~3 s of a core under TCG.
"""

from __future__ import annotations

import itertools
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hypr.errors import Conflict, InvalidParameter
from hypr.runtime import _libc, proc
from hypr.runtime.base import Attachment, Handle, LaunchSpec
from hypr.runtime.sandbox import SandboxRuntime
from hypr.runtime.vm import VmRuntime
from tests.integration.harness import vm_marks

pytestmark = vm_marks()

_counter = itertools.count()
ALIAS = "hypr:test"
BOOT = 90.0  # seconds a guest may take to answer: TCG on a shared 2-core machine


@dataclass
class Host:
    name: str
    vm: VmRuntime
    sandbox: SandboxRuntime
    root: Path
    specs: list[tuple[LaunchSpec, VmRuntime | SandboxRuntime]]

    def spec(
        self,
        name: str,
        n: int,
        command: tuple[str, ...],
        *,
        env: dict[str, str] | None = None,
        sandbox: bool = False,
    ) -> LaunchSpec:
        att = Attachment(
            host_ifname=f"ht{name[:8]}{n}",
            bridge="vbr0",
            guest_ifname="eth0",
            ip=IPv4Address(f"10.93.0.{n}"),
            prefixlen=24,
            gateway=IPv4Address("10.93.0.1"),
            mac=f"02:42:0a:5d:00:{n:02x}",
        )
        spec = LaunchSpec(
            workload_id=f"{name}-id",
            name=name,
            hostname=name,
            image="busybox",
            command=command,
            env=env or {},
            attachments=(att,),
            nameserver=att.gateway,
            state_dir=self.root / "run" / name,
            owner_alias=ALIAS,
            memory_mb=128,
            data_dir=self.root / "data",
        )
        self.specs.append((spec, self.sandbox if sandbox else self.vm))
        return spec

    def exec(
        self, spec: LaunchSpec, handle: Handle, *argv: str, runtime: VmRuntime | SandboxRuntime | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = (runtime or self.vm).exec_argv(spec, handle, argv, {}, None)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=BOOT + 30)


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20).stdout


def until(check: Callable[[], bool], timeout: float = BOOT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)  # poll interval, not a wait for readiness
    return check()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    name = f"hyprvm-{os.getpid()}-{next(_counter)}"
    sh("ip", "netns", "add", name)
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    cache = tmp_path / "images"
    h = Host(name, VmRuntime(image_cache=cache), SandboxRuntime(image_cache=cache), tmp_path, [])
    try:
        batch = "link add vbr0 type bridge\naddr add 10.93.0.1/24 dev vbr0\nlink set vbr0 up\nlink set lo up\n"
        subprocess.run(["ip", "-n", name, "-batch", "-"], input=batch, text=True, check=True)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _libc.setns(target, _libc.CLONE_NEWNET)
        finally:
            os.close(target)
        yield h
    finally:
        try:
            for spec, runtime in h.specs:
                runtime.delete(spec)
        finally:
            _libc.setns(back, _libc.CLONE_NEWNET)
            os.close(back)
            subprocess.run(["ip", "netns", "delete", name], check=False)


def test_vm_and_sandbox_share_a_bridge_exec_and_stop_start(host: Host) -> None:
    vm = host.spec(
        "vmone",
        2,
        ("sh", "-c", "nc -ll -p 7000 -e echo hello from vm & exec httpd -f -p 80 -h /etc"),
        env={"GREETING": "hi there", "QUOTED": "it's $HOME"},
    )
    peer = host.spec("peer", 3, ("nc", "-ll", "-p", "7001", "-e", "echo", "hello from sandbox"), sandbox=True)
    host.vm.create(vm)
    tap = sh("ip", "-d", "link", "show", "htvmone2")
    assert "master vbr0" in tap and ALIAS in tap and "hairpin on" in tap and "addrgenmode none" in tap
    handle = host.vm.start(vm)
    host.sandbox.create(peer)
    hp = host.sandbox.start(peer)

    # exec: exit codes, environment (the workload's plus the exec's), workdir, guest network set-up
    done = subprocess.run(
        host.vm.exec_argv(vm, handle, ("sh", "-c", 'echo "$GREETING|$QUOTED|$X|$(pwd)"; exit 42'), {"X": "y"}, "/tmp"),
        capture_output=True,
        text=True,
        timeout=BOOT + 30,
    )
    assert (done.returncode, done.stdout) == (42, "hi there|it's $HOME|y|/tmp\n"), done.stderr
    missing = host.exec(vm, handle, "no-such-command")
    assert missing.returncode == 127 and "executable file not found" in missing.stderr
    assert host.exec(vm, handle, "hostname").stdout == "vmone\n"
    assert "nameserver 10.93.0.1" in host.exec(vm, handle, "cat", "/etc/resolv.conf").stdout
    assert "10.93.0.2\tvmone" in host.exec(vm, handle, "cat", "/etc/hosts").stdout
    assert host.exec(vm, handle, "cat", "/sys/class/net/eth0/address").stdout.strip() == "02:42:0a:5d:00:02"
    assert "default via 10.93.0.1 dev eth0" in host.exec(vm, handle, "ip", "route").stdout

    # real packets both ways across the bridge: ICMP and TCP, VM <-> sandbox <-> host
    assert host.exec(vm, handle, "ping", "-c1", "-W5", "10.93.0.3").returncode == 0
    assert host.exec(vm, handle, "ping", "-c1", "-W5", "10.93.0.1").returncode == 0
    assert host.exec(peer, hp, "ping", "-c1", "-W5", "10.93.0.2", runtime=host.sandbox).returncode == 0
    assert until(
        lambda: (
            "hello from vm" in host.exec(peer, hp, "nc", "-w", "3", "10.93.0.2", "7000", runtime=host.sandbox).stdout
        )
    )
    assert "hello from sandbox" in host.exec(vm, handle, "nc", "-w", "3", "10.93.0.3", "7001").stdout
    page = sh("sh", "-c", "printf 'GET /hosts HTTP/1.0\\r\\n\\r\\n' | nc -w 5 10.93.0.2 80")
    assert "200 OK" in page and "vmone" in page

    # no hot-plug on microvm: connect/disconnect of a running VM is refused, nothing changes
    extra = replace(vm.attachments[0], host_ifname="htvmonex", bridge="vbr0", guest_ifname="eth1")
    with pytest.raises(InvalidParameter, match="hot-plug"):
        host.vm.attach(replace(vm, attachments=(*vm.attachments, extra)), extra)
    with pytest.raises(InvalidParameter, match="hot-plug"):
        host.vm.detach(vm, vm.attachments[0])
    assert "htvmonex" not in sh("ip", "-o", "link")

    # a second runtime object (a restarted daemon) adopts the running VM
    adopted = VmRuntime(image_cache=host.vm.image_cache).adopt(vm)
    assert adopted == handle

    # stop asks the guest: the workload gets SIGTERM, the VM powers off; start again keeps address and TAP
    assert host.vm.stop(vm, handle, timeout=20) == 143
    assert host.vm.status(vm, handle) == (False, 143)
    assert not proc.alive(handle.pid, handle.start_time)
    assert "htvmone2" in sh("ip", "-o", "link", "show", "master", "vbr0")
    handle = host.vm.start(vm)
    assert host.exec(vm, handle, "ip", "-o", "-4", "addr", "show", "eth0").stdout.count("10.93.0.2/24") == 1
    assert host.exec(peer, hp, "ping", "-c1", "-W5", "10.93.0.2", runtime=host.sandbox).returncode == 0

    # delete: QEMU gone, TAP gone, state gone
    host.vm.delete(vm)
    assert not proc.alive(handle.pid, handle.start_time)
    assert "htvmone2" not in sh("ip", "-o", "link")
    assert not vm.state_dir.exists()
    host.vm.delete(vm)  # idempotent


def test_exit_code_logs_and_power_off(host: Host) -> None:
    command = ("sh", "-c", 'echo "$GREETING from $(hostname)"; echo oops >&2; exit 3')
    spec = host.spec("short", 5, command, env={"GREETING": "hi"})
    host.vm.create(spec)
    handle = host.vm.start(spec)
    assert proc.wait_gone(handle.pid, handle.start_time, BOOT)
    assert host.vm.status(spec, handle) == (False, 3)
    assert host.vm.log_path(spec).read_text() == "hi from short\noops\n"
    with pytest.raises(Conflict, match="not running"):
        host.vm.exec_argv(spec, handle, ("true",), {}, None)


def test_vm_survives_its_starter_is_adopted_and_stop_escalates(host: Host) -> None:
    spec = host.spec("orphan", 6, ("sh", "-c", "trap '' TERM; while :; do sleep 1; done"))
    host.vm.create(spec)
    code = (
        "import pickle, sys; from pathlib import Path; from hypr.runtime.vm import VmRuntime\n"
        "spec = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
        f"print(VmRuntime(image_cache=Path({str(host.vm.image_cache)!r})).start(spec).pid)"
    )
    starter = subprocess.run(
        [sys.executable, "-c", code, pickle.dumps(spec).hex()], capture_output=True, text=True, timeout=60
    )
    assert starter.returncode == 0, starter.stderr
    handle = host.vm.adopt(spec)
    assert handle is not None and handle.pid == int(starter.stdout)
    assert until(lambda: host.exec(spec, handle, "ping", "-c1", "-W2", "10.93.0.1").returncode == 0)
    began = time.monotonic()
    assert host.vm.stop(spec, handle, timeout=1) == 137
    assert time.monotonic() - began < 1 + 6
    assert host.vm.status(spec, handle) == (False, 137)
