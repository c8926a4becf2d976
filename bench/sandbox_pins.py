"""Does a sandbox start or delete get slower with the number of network-namespace pins (nsfs bind mounts, one per
workload) in the mount namespace it is started from? Issue #16: `run -d` + `rm -f` with 1000 sandboxes running.

Runs as root in a mount namespace of its own (everything it mounts goes with it) and a throw-away network namespace
`hyprbench-<pid>` with one bridge; removes everything after. The state dirs are laid out as hyprd's are (the
temporary root is the directory of state dirs, a bind mount of itself as netns.mount_pins makes it); rounds
alternate between `--few` and `--many` extra pins there (bind mounts of one throw-away namespace: the mount table
alone, no running workload) and print medians and the ratio many/few of:
    one by one          what a supervisor did before: unshare(CLONE_NEWNS), / rprivate, read mountinfo and
                        umount2(MNT_DETACH) each pin but its own (wall, and the child's CPU)
    one mount           what it does now: the same with one umount2 of the pins' mount and its own pin bound again
    start / delete      SandboxRuntime.start() (supervisor + `crun run --detach`) and delete() of `busybox sleep`,
                        with the code of the tree on PYTHONPATH (PYTHONPATH=/other/tree/src to compare)
    .venv/bin/python bench/sandbox_pins.py [--few 10] [--many 1000] [--rounds 4] [--samples 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import sandbox_host
from sandbox_host import bench_host, delete_all, print_ratios

from hypr.runtime import _libc
from hypr.runtime.base import LaunchSpec
from hypr.runtime.sandbox import SandboxRuntime


def spec_for(root: Path, n: int) -> LaunchSpec:
    return sandbox_host.spec_for(root, n, f"pins{os.getpid()}x{n}", ("sleep", "600"))


def add_pins(root: Path, source: str, count: int) -> None:
    for i in range(count):
        path = root / f"extra{i}" / "netns"
        path.parent.mkdir(exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
        _libc.mount(source, str(path), None, _libc.MS_BIND)


def drop_pins(root: Path, count: int) -> None:
    for i in range(count):
        _libc.umount2(str(root / f"extra{i}" / "netns"), _libc.MNT_DETACH)


def in_child(fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Run `fn` (returning a dict of ms) in a forked child; its result and the child's CPU ms."""
    read, write = os.pipe()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            os.write(write, json.dumps(fn()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    os.waitpid(pid, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, float] = json.loads(text)
    key = next(iter(result))
    result[f"{key} CPU"] = ((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)) * 1000
    return result


def _nsfs_mounts() -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.startswith("nsfs "):
                found.append(left.split(" ")[4])
    return found


def one_by_one(keep: str) -> dict[str, float]:
    began = time.perf_counter()
    _libc.unshare(_libc.CLONE_NEWNS)
    _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
    for target in _nsfs_mounts():
        if target != keep:
            with contextlib.suppress(OSError):
                _libc.umount2(target, _libc.MNT_DETACH)
    return {"one by one": (time.perf_counter() - began) * 1e3}


def one_mount(pins: Path, keep: str) -> dict[str, float]:
    began = time.perf_counter()
    _libc.unshare(_libc.CLONE_NEWNS)
    _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
    fd = os.open(keep, os.O_RDONLY | os.O_CLOEXEC)
    _libc.umount2(str(pins), _libc.MNT_DETACH)
    _libc.mount(f"/proc/self/fd/{fd}", keep, None, _libc.MS_BIND)
    for target in _nsfs_mounts():  # what is left: `ip netns`'s pins, ours
        if target != keep:
            with contextlib.suppress(OSError):
                _libc.umount2(target, _libc.MNT_DETACH)
    return {"one mount": (time.perf_counter() - began) * 1e3}


def measure(runtime: SandboxRuntime, spec: LaunchSpec, figures: dict[tuple[str, int], list[float]], count: int) -> None:
    runtime.create(spec)
    began = time.perf_counter()
    runtime.start(spec)
    figures[("start", count)].append((time.perf_counter() - began) * 1e3)
    began = time.perf_counter()
    runtime.delete(spec)
    figures[("delete", count)].append((time.perf_counter() - began) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--few", type=int, default=10)
    parser.add_argument("--many", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--samples", type=int, default=5, help="of each figure per round and setting")
    args = parser.parse_args()
    _libc.unshare(_libc.CLONE_NEWNS)  # before any thread: our mounts vanish with us
    _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
    with bench_host("hyprpins-") as root:
        _libc.mount(str(root), str(root), None, _libc.MS_BIND)  # the pins' mount (made as netns.mount_pins makes it)
        _libc.mount(None, str(root), None, _libc.MS_PRIVATE)
        runtime = SandboxRuntime(image_cache=root / "images")
        figures: dict[tuple[str, int], list[float]] = defaultdict(list)
        specs: list[LaunchSpec] = []
        pinned = 0
        try:
            source = f"/run/netns/hyprbench-{os.getpid()}"
            add_pins(root, source, 1)  # keeps the pins' mount while the warm-up workload is removed
            specs.append(spec_for(root, 0))
            measure(runtime, specs[0], defaultdict(list), 0)  # builds the busybox image; not counted
            drop_pins(root, 1)
            for _ in range(args.rounds):
                for count in (args.few, args.many):
                    add_pins(root, source, count)
                    pinned = count
                    keep = str(root / "extra0" / "netns")
                    for _ in range(args.samples):
                        for key, ms in in_child(lambda: one_by_one(keep)).items():  # noqa: B023
                            figures[(key, count)].append(ms)
                        for key, ms in in_child(lambda: one_mount(root, keep)).items():  # noqa: B023
                            figures[(key, count)].append(ms)
                        specs.append(spec_for(root, len(specs)))
                        measure(runtime, specs[-1], figures, count)
                    drop_pins(root, count)
                    pinned = 0
            print(
                f"median ms of {args.rounds} rounds x {args.samples}, load average {os.getloadavg()[0]:.1f} at the end"
            )
            print_ratios(figures, args.few, args.many, 16)
        finally:
            delete_all(runtime, specs)
            if pinned:
                drop_pins(root, pinned)
            with contextlib.suppress(OSError):
                _libc.umount2(str(root), _libc.MNT_DETACH)


if __name__ == "__main__":
    main()
