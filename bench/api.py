"""Median ms of Docker API round trips on hyprd's socket, through the docker CLI and through the hypr CLI (the
baseline and the comparison measured in the same run, on the same daemon):
    run    `run --rm busybox true`, end to end (create, attach, wait, start, exit, removal)
    exec   `exec bx true` in a running sandbox
    api    the exec round trip itself, without a CLI process: create + start (hijacked) + inspect, in-process
Goal: the sandbox exec round trip (`api`) <= 50 ms.

Runs as root, with its own hyprd in a throw-away network namespace; removes everything after.
    .venv/bin/python bench/api.py [--samples 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hypr import stream_client
from hypr.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.harness import HYPR, Hyprd, netns, private_cli_servers

GOAL_MS = 50.0


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def median_ms(fn: Callable[[], object], samples: int) -> float:
    fn()  # warm: the first run builds the busybox image, the first exec loads crun's pages
    return statistics.median(timed(fn) for _ in range(samples))


def api_exec(socket: str, client: Client) -> None:
    body = {"Cmd": ["true"], "AttachStdout": True, "AttachStderr": True}
    exec_id = client.request("POST", "/containers/bx/exec", body=body)["Id"]
    started = stream_client.request(socket, "POST", f"/exec/{exec_id}/start", body={}, upgrade=True)
    try:
        for _ in stream_client.body(started):
            pass
    finally:
        started.close()
    assert client.request("GET", f"/exec/{exec_id}/json")["ExitCode"] == 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=15)
    samples = parser.parse_args().samples
    root = Path(tempfile.mkdtemp(prefix="hyprbench-api-"))
    try:
        with netns("hyprbapi") as ns, private_cli_servers():  # `hypr` on its fork server, stopped at the end
            daemon = Hyprd(ns=ns, root=root)
            daemon.start()
            try:
                report(daemon, samples)
            finally:
                subprocess.run([HYPR, "-H", f"unix://{daemon.socket}", "rm", "-f", "bx"], capture_output=True)
                daemon.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(daemon: Hyprd, samples: int) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{daemon.socket}", **daemon.env}
    docker = ["docker"]
    hypr = [HYPR, "-H", f"unix://{daemon.socket}"]

    def run(argv: list[str]) -> Callable[[], object]:
        def once() -> None:
            done = subprocess.run(argv, env=env, capture_output=True)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.decode(errors='replace')}")

        return once

    run([*hypr, "run", "-d", "--name", "bx", "busybox", "sleep", "3600"])()
    rows = []
    for name, tail in (("run", ["run", "--rm", "busybox", "true"]), ("exec", ["exec", "bx", "true"])):
        base = median_ms(run([*docker, *tail]), samples)
        ours = median_ms(run([*hypr, *tail]), samples)
        rows.append((name, base, ours))
    with Client(f"unix://{daemon.socket}") as client:
        api = median_ms(lambda: api_exec(str(daemon.socket), client), samples)
    load = os.getloadavg()[0]
    print(f"samples {samples}, load average {load:.2f}, {os.cpu_count()} CPUs")
    for name, base, ours in rows:
        print(f"{name:5} docker CLI {base:7.1f} ms   hypr CLI {ours:7.1f} ms   ratio hypr/docker {ours / base:5.2f}")
    verdict = "met" if api <= GOAL_MS else "NOT met"
    print(
        f"api   exec round trip (create + start + inspect, no CLI) {api:.1f} ms   goal <= {GOAL_MS:.0f} ms: {verdict}"
    )


if __name__ == "__main__":
    main()
