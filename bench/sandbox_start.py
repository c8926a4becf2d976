"""Median ms from `start()` to a sandbox's first line of output, and for `hypr exec true`, with the sandbox backend
of the source tree this script is run from (PYTHONPATH picks another tree to compare: docs/sandbox.md).

Runs as root inside a throw-away "host" namespace `hyprbench-<pid>` with one bridge; removes everything after.
    .venv/bin/python bench/sandbox_start.py [--samples 15] [--image busybox|host]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path

from hypr.runtime import _libc
from hypr.runtime.base import Attachment, LaunchSpec
from hypr.runtime.sandbox import SandboxRuntime

BRIDGE = "vbr0"
GATEWAY = IPv4Address("10.97.0.1")


def spec_for(root: Path, n: int, image: str) -> LaunchSpec:
    ip = GATEWAY + 1 + n
    att = Attachment(f"hvs{n}", BRIDGE, "eth0", ip, 16, GATEWAY, "02:42:" + ":".join(f"{b:02x}" for b in ip.packed))
    command = ("sh", "-c", "echo ready; exec sleep 600")
    name = f"bench{os.getpid()}x{n}"
    return LaunchSpec(name, name, name, image, command, {}, (att,), GATEWAY, root / name, "hypr:bench")


def first_output(log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if log.exists() and b'"log":"ready' in log.read_bytes().replace(b" ", b""):  # Docker's json-file lines
            return
        time.sleep(0.0005)  # poll interval of the measurement
    raise TimeoutError(f"no output in {log}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--image", default="busybox")
    args = parser.parse_args()
    host = f"hyprbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", host], check=True)
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    root = Path(tempfile.mkdtemp(prefix="hyprbench-"))
    runtime = SandboxRuntime(image_cache=root / "images")
    specs: list[LaunchSpec] = []
    try:
        batch = f"link add {BRIDGE} type bridge\naddr add {GATEWAY}/16 dev {BRIDGE}\nlink set {BRIDGE} up\n"
        subprocess.run(["ip", "-n", host, "-batch", "-"], input=batch, text=True, check=True)
        fd = os.open(f"/run/netns/{host}", os.O_RDONLY)
        _libc.setns(fd, _libc.CLONE_NEWNET)
        os.close(fd)
        starts, execs = [], []
        for n in range(args.samples + 1):  # the first one builds the busybox image: not counted
            spec = spec_for(root, n, args.image)
            specs.append(spec)
            runtime.create(spec)
            began = time.monotonic()
            handle = runtime.start(spec)
            first_output(runtime.log_path(spec), began + 30)
            took = (time.monotonic() - began) * 1000
            began = time.monotonic()
            subprocess.run(runtime.exec_argv(spec, handle, ("true",), {}, None), check=True)
            exec_took = (time.monotonic() - began) * 1000
            if n:
                starts.append(took)
                execs.append(exec_took)
            runtime.delete(spec)
        print(f"start to first output: median {statistics.median(starts):.1f} ms (min {min(starts):.1f}, "
              f"max {max(starts):.1f}, n={len(starts)}, image {args.image})")  # fmt: skip
        print(f"exec true:             median {statistics.median(execs):.1f} ms (min {min(execs):.1f}, "
              f"max {max(execs):.1f})")  # fmt: skip
    finally:
        for spec in specs:
            try:
                runtime.delete(spec)
            except Exception as exc:  # report, keep cleaning
                print(f"clean-up {spec.name}: {exc}")
        _libc.setns(back, _libc.CLONE_NEWNET)
        subprocess.run(["ip", "netns", "delete", host], check=False)
        subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    main()
