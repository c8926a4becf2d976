"""Where a sandbox's start and delete grow with the number of sandboxes running (issue #16), without hyprd.

Runs as root in a mount namespace of its own and a throw-away network namespace `hyprbench-<pid>` with bridges;
removes everything after. With `--few` and then `--many` sandboxes (`busybox sleep`, one veth each) running, it
takes medians of:
    start / delete     SandboxRuntime.start() (supervisor + `crun run --detach`) and delete()
      of which launch  the supervisor's process, from Popen to its report
    python -I -S       an empty Python process started as the supervisor's is
    prepare            by hand, in a child doing the supervisor's work step by step: its mount namespace (unshare,
                       the pins dropped, the cgroup view, the root mounted)
    crun run           `crun run --detach` to its exit
    kill + reap        SIGKILL to the init until it is reaped
    crun delete        `crun delete --force`
    crun run (bare)    `crun run --detach` + `crun delete --force` of the same bundle from the bench itself, with
                       its own crun root (no supervisor, the bench's mount namespace): crun's and the kernel's part
    .venv/bin/python bench/sandbox_running.py [--few 10] [--many 1000] [--samples 9]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import sandbox_host
from sandbox_host import PER_BRIDGE, bench_host, delete_all, print_ratios

from hypr.errors import KernelError
from hypr.runtime import _libc, shim
from hypr.runtime.base import LaunchSpec
from hypr.runtime.sandbox import SandboxRuntime


def spec_for(root: Path, n: int) -> LaunchSpec:
    return sandbox_host.spec_for(root, n, f"run{os.getpid()}x{n}", ("sleep", "3600"))


def _ms(began: float) -> float:
    return (time.perf_counter() - began) * 1e3


def _steps(cfg: dict[str, Any], write: int) -> None:
    """In a forked child: the supervisor's steps, timed (shim._supervise without the relay)."""
    _libc.set_child_subreaper()
    os.setsid()
    figures = {}
    began = time.perf_counter()
    shim._prepare(cfg)
    figures["prepare"] = _ms(began)
    stdio = shim.Stdio(cfg)
    began = time.perf_counter()
    init = shim._start_container(cfg, stdio)
    figures["crun run"] = _ms(began)
    began = time.perf_counter()
    os.kill(init, signal.SIGKILL)
    shim._wait_for(init)
    figures["kill + reap"] = _ms(began)
    crun = shim._crun_binary()
    with open(os.devnull, "wb") as null:
        began = time.perf_counter()
        shim._wait_for(shim._spawn([crun, "--root", cfg["crun_root"], "delete", "--force", cfg["id"]], null.fileno()))
        figures["crun delete"] = _ms(began)
    os.write(write, json.dumps(figures).encode())


class Timed(SandboxRuntime):
    """start() with its launch (the supervisor's process, from Popen to its report) timed apart."""

    def __init__(self, image_cache: Path, figures: dict[tuple[str, int], list[float]]) -> None:
        super().__init__(image_cache=image_cache)
        self.figures = figures
        self.count = -1  # not counted

    def _launch(self, spec: LaunchSpec, launch: Path) -> dict[str, Any]:
        began = time.perf_counter()
        try:
            return super()._launch(spec, launch)
        finally:
            if self.count >= 0:
                self.figures[("  of which launch", self.count)].append(_ms(began))
                began = time.perf_counter()
                subprocess.run([self.python, "-I", "-S", "-c", "pass"], check=True)
                self.figures[("python -I -S", self.count)].append(_ms(began))


class ByHand(SandboxRuntime):
    """start() goes as far as the launch, which a child does step by step; it then fails on purpose."""

    def __init__(self, image_cache: Path, figures: dict[tuple[str, int], list[float]]) -> None:
        super().__init__(image_cache=image_cache)
        self.figures = figures
        self.count = 0

    def _launch(self, spec: LaunchSpec, launch: Path) -> dict[str, Any]:
        cfg = json.loads(launch.read_text())
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                _steps(cfg, write)
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as f:
            report = json.loads(f.read())
        os.waitpid(pid, 0)
        for key in ("prepare", "crun run", "kill + reap", "crun delete"):
            self.figures[(key, self.count)].append(report[key])
        self._bare(cfg)
        return {"error": "measured by hand", "errno": 0}

    def _bare(self, cfg: dict[str, Any]) -> None:
        """crun alone on the same bundle, its root mounted in the bench's namespace as the supervisor mounts it in
        its own."""
        crun, root, name = shim._crun_binary(), f"{cfg['state_dir']}/bare", f"{cfg['id']}-bare"
        shim._mount_root(cfg)
        try:
            began = time.perf_counter()
            subprocess.run([crun, "--root", root, "run", "--detach", "--bundle", cfg["bundle"], name], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)  # fmt: skip
            self.figures[("crun run (bare)", self.count)].append(_ms(began))
            began = time.perf_counter()
            subprocess.run([crun, "--root", root, "delete", "--force", name], check=True)
            self.figures[("crun delete (bare)", self.count)].append(_ms(began))
        finally:
            _libc.umount2(cfg["rootfs"], _libc.MNT_DETACH)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--few", type=int, default=10)
    parser.add_argument("--many", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=9)
    args = parser.parse_args()
    _libc.unshare(_libc.CLONE_NEWNS)  # before any thread: our mounts vanish with us
    _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
    shim._cgroup_view()  # as the supervisor shows crun the cgroups, for the bare crun runs
    bridges = (args.many + 2 * args.samples) // PER_BRIDGE + 1
    with bench_host("hyprrunning-", bridges) as root:
        figures: dict[tuple[str, int], list[float]] = defaultdict(list)
        runtime = Timed(root / "images", figures)
        by_hand = ByHand(root / "images", figures)
        running: list[LaunchSpec] = []
        started = 0
        n = args.many + 1  # the measured ones come after the running ones (their own addresses)
        try:
            for count in (args.few, args.many):
                runtime.count = -1
                while started < count:
                    spec = spec_for(root, started)
                    running.append(spec)
                    runtime.create(spec)
                    runtime.start(spec)
                    started += 1
                print(f"{count} running, load {os.getloadavg()[0]:.1f}", flush=True)
                by_hand.count = runtime.count = count
                for _ in range(args.samples):
                    spec = spec_for(root, n)
                    n += 1
                    running.append(spec)  # (for the clean-up)
                    runtime.create(spec)
                    began = time.perf_counter()
                    runtime.start(spec)
                    figures[("start", count)].append(_ms(began))
                    began = time.perf_counter()
                    runtime.delete(spec)
                    figures[("delete", count)].append(_ms(began))
                    spec = spec_for(root, n)
                    n += 1
                    running.append(spec)
                    by_hand.create(spec)
                    with contextlib.suppress(KernelError):
                        by_hand.start(spec)
                    by_hand.delete(spec)
            print(f"median ms of {args.samples}, load average {os.getloadavg()[0]:.1f} at the end")
            print_ratios(figures, args.few, args.many)
        finally:
            delete_all(runtime, running)


if __name__ == "__main__":
    main()
