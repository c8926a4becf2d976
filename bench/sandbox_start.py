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
import time
from pathlib import Path

import sandbox_host
from sandbox_host import bench_host, delete_all

from hypr.runtime.base import LaunchSpec
from hypr.runtime.sandbox import SandboxRuntime


def spec_for(root: Path, n: int, image: str) -> LaunchSpec:
    return sandbox_host.spec_for(root, n, f"bench{os.getpid()}x{n}", ("sh", "-c", "echo ready; exec sleep 600"), image)


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
    with bench_host("hyprbench-") as root:
        runtime = SandboxRuntime(image_cache=root / "images")
        specs: list[LaunchSpec] = []
        try:
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
            delete_all(runtime, specs)


if __name__ == "__main__":
    main()
