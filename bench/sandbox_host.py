"""What the sandbox runtime benches share (sandbox_start.py, sandbox_pins.py, sandbox_running.py): a throw-away
host network namespace with bridges to plug sandboxes into, launch specs on them, their clean-up, and the table of
medians they print."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from ipaddress import IPv4Address
from pathlib import Path

from hypr.runtime import _libc
from hypr.runtime.base import Attachment, LaunchSpec
from hypr.runtime.sandbox import SandboxRuntime

PER_BRIDGE = 250  # sandboxes per bridge (a bridge has at most 1024 ports), as bench/scale.py spreads them


def gateway(bridge: int) -> IPv4Address:
    return IPv4Address(f"10.{100 + bridge}.0.1")


@contextlib.contextmanager
def bench_host(prefix: str, bridges: int = 1) -> Iterator[Path]:
    """This thread in a new network namespace (`hyprbench-PID`) with bridges vbr0.. (10.100.0.1/16, 10.101.0.1/16,
    ...), and a new temporary directory (`prefix`...) for the runtime; on the way out, this thread back in its
    namespace, and the namespace and the directory removed."""
    host = f"hyprbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", host], check=True)
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        batch = "".join(f"link add vbr{b} type bridge\naddr add {gateway(b)}/16 dev vbr{b}\nlink set vbr{b} up\n"
                        for b in range(bridges))  # fmt: skip
        subprocess.run(["ip", "-n", host, "-batch", "-"], input=batch, text=True, check=True)
        fd = os.open(f"/run/netns/{host}", os.O_RDONLY)
        _libc.setns(fd, _libc.CLONE_NEWNET)
        os.close(fd)
        yield root
    finally:
        _libc.setns(back, _libc.CLONE_NEWNET)
        os.close(back)
        subprocess.run(["ip", "netns", "delete", host], check=False)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def spec_for(root: Path, n: int, name: str, command: Sequence[str], image: str = "busybox") -> LaunchSpec:
    """Sandbox `n` (named `name`) on bridge n // PER_BRIDGE, with the next address there."""
    bridge, index = divmod(n, PER_BRIDGE)
    gw = gateway(bridge)
    ip = gw + 1 + index
    mac = "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)
    att = Attachment(f"hvb{n}", f"vbr{bridge}", "eth0", ip, 16, gw, mac)
    return LaunchSpec(name, name, name, image, tuple(command), {}, (att,), gw, root / name, "hypr:bench")


def delete_all(runtime: SandboxRuntime, specs: Sequence[LaunchSpec]) -> None:
    """Every launch of the bench removed, failures reported and the others removed all the same."""
    for spec in specs:
        try:
            runtime.delete(spec)
        except Exception as exc:  # report, keep cleaning
            print(f"clean-up {spec.name}: {exc}", file=sys.stderr)


def print_ratios(figures: Mapping[tuple[str, int], list[float]], few: int, many: int, width: int = 20) -> None:
    """One line per step: its median ms with `few` and with `many`, and their ratio."""
    print(f"{'':{width}} {few:>8} {many:>8}  ratio")
    for key in dict.fromkeys(k for k, _ in figures):
        low, high = statistics.median(figures[(key, few)]), statistics.median(figures[(key, many)])
        print(f"{key:{width}} {low:8.2f} {high:8.2f}  {high / low if low else float('nan'):.2f}x")
