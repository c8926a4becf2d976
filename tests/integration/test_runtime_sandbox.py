"""The sandbox runtime against the real kernel, inside throw-away "host" namespaces (root only).

Each test gets its own host netns `hyprrt-<pid>-<n>` with bridges, and runs with the test thread switched into it
(the runtime treats the caller's namespace as the host side). Everything is removed in `finally`.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hypr.errors import InvalidParameter
from hypr.runtime import _libc, netns, proc
from hypr.runtime.base import Attachment, Handle, LaunchSpec
from hypr.runtime.sandbox import SandboxRuntime

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

_counter = itertools.count()
ALIAS = "hypr:test"
BUSYBOX = "/bin/busybox"


@dataclass
class Host:
    name: str
    runtime: SandboxRuntime
    root: Path
    specs: list[LaunchSpec]

    def spec(
        self,
        name: str,
        n: int,
        *,
        image: str = "busybox",
        command: tuple[str, ...] = ("sleep", "1000"),
        bridges: tuple[int, ...] = (0,),
        env: dict[str, str] | None = None,
    ) -> LaunchSpec:
        atts = tuple(attachment(name, n, b, i) for i, b in enumerate(bridges))
        spec = LaunchSpec(
            workload_id=f"{name}-{os.getpid()}-{next(_counter)}",  # crun's container and cgroup: unique per run
            name=name,
            hostname=name,
            image=image,
            command=command,
            env=env or {},
            attachments=atts,
            nameserver=atts[0].gateway if atts else None,
            state_dir=self.root / "run" / name,
            owner_alias=ALIAS,
        )
        self.specs.append(spec)
        return spec

    def run(self, spec: LaunchSpec, handle: Handle, *argv: str) -> subprocess.CompletedProcess[str]:
        cmd = self.runtime.exec_argv(spec, handle, argv, {}, None)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20)


def attachment(name: str, n: int, bridge: int, position: int) -> Attachment:
    return Attachment(
        host_ifname=f"hv{name[:6]}{position}",
        bridge=f"vbr{bridge}",
        guest_ifname=f"eth{position}",
        ip=IPv4Address(f"10.{90 + bridge}.0.{n}"),
        prefixlen=24,
        gateway=IPv4Address(f"10.{90 + bridge}.0.1"),
        mac=f"02:42:0a:{90 + bridge:02x}:00:{n:02x}",
    )


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20).stdout


def until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll a readiness condition until a deadline (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)  # poll interval, not a wait for readiness
    return check()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    name = f"hyprrt-{os.getpid()}-{next(_counter)}"
    sh("ip", "netns", "add", name)
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    h = Host(name, SandboxRuntime(image_cache=tmp_path / "images"), tmp_path, [])
    try:
        batch = "".join(
            f"link add vbr{b} type bridge\naddr add 10.{90 + b}.0.1/24 dev vbr{b}\nlink set vbr{b} up\n" for b in (0, 1)
        )
        subprocess.run(["ip", "-n", name, "-batch", "-"], input=batch, text=True, check=True)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _libc.setns(target, _libc.CLONE_NEWNET)
        finally:
            os.close(target)
        yield h
    finally:
        try:
            for spec in h.specs:
                h.runtime.delete(spec)
        finally:
            _libc.setns(back, _libc.CLONE_NEWNET)
            os.close(back)
            subprocess.run(["ip", "netns", "delete", name], check=False)
            left = _mounts_under(tmp_path)
            for point in sorted(left, reverse=True):
                subprocess.run(["umount", "-l", point], check=False)
            assert not left, f"left mounted: {left}"


def _mounts_under(root: Path) -> list[str]:
    points = (line.split(" ")[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    return [point for point in points if point.startswith(f"{root}/")]


def test_two_sandboxes_ping_each_other_and_gateway_and_talk_tcp(host: Host) -> None:
    a = host.spec("alpha", 2, command=("nc", "-ll", "-p", "7000", "-e", "echo", "hello from alpha"))
    b = host.spec("beta", 3)
    for spec in (a, b):
        host.runtime.create(spec)
    ha, hb = host.runtime.start(a), host.runtime.start(b)
    for target in ("10.90.0.1", "10.90.0.2"):
        assert host.run(b, hb, "ping", "-c1", "-W2", target).returncode == 0
    assert host.run(a, ha, "ping", "-c1", "-W2", "10.90.0.3").returncode == 0
    assert until(lambda: "hello from alpha" in host.run(b, hb, "nc", "-w", "2", "10.90.0.2", "7000").stdout)


def test_two_attachments_give_eth0_and_eth1(host: Host) -> None:
    spec = host.spec("multi", 5, bridges=(0, 1))
    host.runtime.create(spec)
    handle = host.runtime.start(spec)
    addrs = host.run(spec, handle, "ip", "-o", "-4", "addr").stdout
    assert re.search(r"eth0\s+inet 10\.90\.0\.5/24", addrs) and re.search(r"eth1\s+inet 10\.91\.0\.5/24", addrs)
    assert "default via 10.90.0.1 dev eth0" in host.run(spec, handle, "ip", "route").stdout
    assert host.run(spec, handle, "ping", "-c1", "-W2", "10.91.0.1").returncode == 0
    assert "inet6" not in host.run(spec, handle, "ip", "-o", "addr", "show", "eth0").stdout  # IPv4-only networks
    assert "addrgenmode none" in sh("ip", "-d", "link", "show", "hvmulti0")
    mac = host.run(spec, handle, "cat", "/sys/class/net/eth1/address").stdout.strip()
    assert mac == "02:42:0a:5b:00:05"
    assert ALIAS in sh("ip", "-d", "link", "show", "hvmulti0") and "hairpin on" in sh(
        "ip", "-d", "link", "show", "hvmulti1"
    )


def test_attach_and_detach_on_a_running_sandbox(host: Host) -> None:
    spec = host.spec("hot", 6)
    host.runtime.create(spec)
    handle = host.runtime.start(spec)
    extra = attachment("hot", 6, 1, 1)
    wider = replace(spec, attachments=(*spec.attachments, extra))
    host.runtime.attach(wider, extra)
    assert host.run(spec, handle, "ping", "-c1", "-W2", "10.91.0.1").returncode == 0
    assert "10.91.0.6\thot" in host.run(spec, handle, "cat", "/etc/hosts").stdout
    host.runtime.detach(spec, extra)
    assert "eth1" not in host.run(spec, handle, "ip", "-o", "link").stdout
    assert "10.91.0.6" not in host.run(spec, handle, "cat", "/etc/hosts").stdout
    host.runtime.detach(spec, extra)  # already gone is fine


def test_exit_code_logs_env_and_hostname(host: Host) -> None:
    spec = host.spec(
        "short", 7, command=("sh", "-c", 'echo "$GREETING from $(hostname)"; exit 3'), env={"GREETING": "hi"}
    )
    host.runtime.create(spec)
    handle = host.runtime.start(spec)
    assert proc.wait_gone(handle.pid, handle.start_time, 10)
    assert host.runtime.status(spec, handle) == (False, 3)
    records = [json.loads(line) for line in host.runtime.log_path(spec).read_text().splitlines()]
    assert [(r["stream"], r["log"]) for r in records] == [("stdout", "hi from short\n")]


def test_exit_code_of_an_init_that_ends_before_crun_does(host: Host) -> None:
    """An init that exits at once can be reaped while the supervisor still waits for `crun run --detach`; its
    code must survive that (CI once saw None here)."""
    for code in range(20):
        spec = host.spec(f"b{code:02d}", 20 + code, command=("sh", "-c", f"exit {code}"))
        host.runtime.create(spec)
        handle = host.runtime.start(spec)
        assert proc.wait_gone(handle.pid, handle.start_time, 10)
        assert host.runtime.status(spec, handle) == (False, code)


def test_exec_exit_code_env_workdir_and_namespaces(host: Host) -> None:
    spec = host.spec("exec", 8, image="host")
    host.runtime.create(spec)
    handle = host.runtime.start(spec)
    argv = host.runtime.exec_argv(
        spec, handle, ("sh", "-c", 'echo "$X $(pwd) $(hostname)"; exit 42'), {"X": "y"}, "/tmp"
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    assert (done.returncode, done.stdout) == (42, "y /tmp exec\n")
    assert "nameserver 10.90.0.1" in host.run(spec, handle, "cat", "/etc/resolv.conf").stdout
    missing = host.run(spec, handle, "no-such-command")
    assert missing.returncode == 127 and "executable file not found" in missing.stderr


def test_stop_start_keeps_address_and_reports_sigterm(host: Host) -> None:
    spec = host.spec("cycle", 9, command=("sh", "-c", "trap 'exit 143' TERM; sleep 1000 & wait"))
    host.runtime.create(spec)
    handle = host.runtime.start(spec)
    started = time.monotonic()
    assert host.runtime.stop(spec, handle, timeout=5) == 143
    assert time.monotonic() - started < 3
    assert host.runtime.status(spec, handle) == (False, 143)
    handle = host.runtime.start(spec)
    assert "10.90.0.9/24" in host.run(spec, handle, "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert host.run(spec, handle, "ping", "-c1", "-W2", "10.90.0.1").returncode == 0


def test_an_init_without_a_handler_ignores_sigterm_as_in_docker(host: Host) -> None:
    """The command is PID 1 of its namespace: the kernel drops signals it has no handler for (SIGKILL aside)."""
    spec = host.spec("pid1", 15)
    host.runtime.create(spec)
    handle = host.runtime.start(spec)
    assert host.runtime.stop(spec, handle, timeout=0.5) == 137


def test_stop_escalates_to_sigkill(host: Host) -> None:
    spec = host.spec("stubborn", 10, command=("sh", "-c", "trap '' TERM; while :; do sleep 1; done"))
    host.runtime.create(spec)
    handle = host.runtime.start(spec)
    assert until(lambda: "sleep" in host.run(spec, handle, "ps").stdout)
    assert host.runtime.stop(spec, handle, timeout=0.5) == 137


def test_delete_removes_every_kernel_object(host: Host) -> None:
    spec = host.spec("gone", 11, bridges=(0, 1))
    host.runtime.create(spec)
    handle = host.runtime.start(spec)
    netns_id = os.stat(spec.state_dir / "netns").st_ino
    host.runtime.delete(spec)
    assert not spec.state_dir.exists()
    assert "hvgone" not in sh("ip", "-o", "link")
    assert not proc.alive(handle.pid, handle.start_time)
    assert proc.session_of(handle.main_pid) != handle.pid
    live = {os.stat(f"/proc/{p}/ns/net").st_ino for p in os.listdir("/proc") if p.isdigit() and _readable(p)}
    assert netns_id not in live
    host.runtime.delete(spec)  # idempotent


def _readable(pid: str) -> bool:
    try:
        os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return False
    return True


def test_failed_command_leaves_nothing_after_delete(host: Host) -> None:
    spec = host.spec("broken", 12, command=("no-such-binary",))
    host.runtime.create(spec)
    with pytest.raises(InvalidParameter, match="executable file not found"):
        host.runtime.start(spec)
    host.runtime.delete(spec)
    assert not spec.state_dir.exists() and "hvbroken" not in sh("ip", "-o", "link")


def test_workload_survives_the_process_that_started_it(host: Host) -> None:
    spec = host.spec("orphan", 13)
    peer = host.spec("peer", 14)
    host.runtime.create(spec)
    host.runtime.create(peer)
    code = (
        "import pickle, sys; from pathlib import Path; from hypr.runtime.sandbox import SandboxRuntime\n"
        "spec = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
        f"print(SandboxRuntime(image_cache=Path({str(host.runtime.image_cache)!r})).start(spec).pid)"
    )
    starter = subprocess.run(
        [sys.executable, "-c", code, pickle.dumps(spec).hex()], capture_output=True, text=True, timeout=30
    )
    assert starter.returncode == 0, starter.stderr
    handle = host.runtime.adopt(spec)
    assert handle is not None and handle.pid == int(starter.stdout)
    hp = host.runtime.start(peer)
    assert host.run(peer, hp, "ping", "-c1", "-W2", "10.90.0.13").returncode == 0


def test_concurrent_creates_all_reach_the_gateway(host: Host) -> None:
    specs = [host.spec(f"par{n}", 20 + n) for n in range(12)]

    def bring_up(spec: LaunchSpec) -> int:
        host.runtime.create(spec)
        return host.run(spec, host.runtime.start(spec), "ping", "-c1", "-W2", "10.90.0.1").returncode

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(bring_up, specs)) == [0] * len(specs)


def test_unsupported_image_names_what_is_supported(tmp_path: Path) -> None:
    runtime = SandboxRuntime(image_cache=tmp_path)
    spec = LaunchSpec("w", "w", "w", "nginx:latest", ("x",), {}, (), None, tmp_path / "w", ALIAS)
    with pytest.raises(InvalidParameter, match="'host', 'busybox' or an absolute path"):
        runtime.validate(spec)


def test_a_workload_from_before_crun_is_still_stopped_through_its_process_group(host: Host) -> None:
    """Workloads outlive daemon upgrades: one still under the old supervisor (no crun container) is signalled as
    then, on its command's process group."""
    spec = host.spec("legacy", 16)
    host.runtime.create(spec)
    old = subprocess.Popen(["sleep", "1000"], start_new_session=True)  # a session leader and its own group
    try:
        start = _libc.start_time(old.pid)
        assert start is not None
        handle = Handle(old.pid, start, old.pid)
        host.runtime.stop(spec, handle, timeout=5)
        assert old.wait(timeout=5) == -15  # SIGTERM, not the SIGKILL after the timeout
    finally:
        old.kill()
        old.wait()


def _nsfs_mounts(pid: str = "self") -> list[tuple[str, int, int]]:
    """(mount point, mount ID, parent's mount ID) of each namespace file mounted, as `pid` sees them."""
    found = []
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields, _, right = line.partition(" - ")
        if right.startswith("nsfs "):
            mount_id, parent, _, _, point = fields.split(" ")[:5]
            found.append((point, int(mount_id), int(parent)))
    return found


def test_pins_share_one_mount_that_supervisors_detach_at_once(host: Host) -> None:
    """Every pin is a child of one mount (the directory of the state dirs bound onto itself), so a supervisor lets
    go of every other workload's namespace with one umount whatever their number (bench/sandbox_pins.py); pins made
    before it existed (an older hyprd) are moved into it without losing their namespace; it goes with the last pin."""
    pins = host.root / "run"
    old = [pins / f"old{i}" / "netns" for i in range(3)]  # as an older hyprd left them: straight on the directory
    for path in old:
        path.parent.mkdir(parents=True)
        netns.create(path).close()
    try:
        _pins_share_one_mount(host, pins, old)
    finally:
        for path in old:
            netns.remove(path)
    for spec in host.specs:
        host.runtime.delete(spec)
    assert not netns.own_mount(pins)
    assert [m for m in _nsfs_mounts() if m[0].startswith(f"{pins}/")] == []


def _pins_share_one_mount(host: Host, pins: Path, old: list[Path]) -> None:
    namespaces = [os.stat(path).st_ino for path in old]
    assert not netns.own_mount(pins)
    a, b = host.spec("pina", 40), host.spec("pinb", 41)
    for spec in (a, b):
        host.runtime.create(spec)
    handle = host.runtime.start(b)
    assert netns.own_mount(pins)
    assert [os.stat(path).st_ino for path in old] == namespaces
    mine = [m for m in _nsfs_mounts() if m[0].startswith(f"{pins}/")]
    assert sorted(m[0] for m in mine) == sorted(str(p) for p in [*old, a.state_dir / "netns", b.state_dir / "netns"])
    assert len({parent for _, _, parent in mine}) == 1  # one parent: none left beneath it, out of sight
    assert json.loads((b.state_dir / "launch.json").read_text())["pins"] == str(pins)
    assert [m[0] for m in _nsfs_mounts(str(handle.pid))] == [str(b.state_dir / "netns")]
    supervisor = [line.split(" ")[4] for line in Path(f"/proc/{handle.pid}/mountinfo").read_text().splitlines()]
    assert str(pins) not in supervisor  # detached whole, its pins with it, not one pin after the other
    assert host.run(b, handle, "ping", "-c1", "-W2", "10.90.0.1").returncode == 0
