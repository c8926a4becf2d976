"""Soak: hyprd's resident memory and open descriptors over many operations (goal: flat).

Runs a daemon in a throw-away namespace and repeats a mix of operations (run -d + rm -f of a sandbox, network
create + rm, connect + disconnect) through the API, sampling the daemon's RSS (kB) and open fds every `--every`
operations. Prints the samples and the growth from the first sample after warm-up to the last, per 1000 operations.
    .venv/bin/python bench/soak.py [--ops 3000] [--every 250]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from hypr.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.harness import Hyprd, netns


def daemon_pid(daemon: Hyprd) -> int:
    assert daemon.proc is not None
    children = Path(f"/proc/{daemon.proc.pid}/task/{daemon.proc.pid}/children").read_text().split()
    return int(children[0]) if children else daemon.proc.pid  # nsenter execs hyprd: usually the same pid


def sample(pid: int) -> tuple[int, int]:
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))  # fmt: skip
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def one_round(client: Client, i: int) -> int:
    """network create, run (create + start), connect, disconnect, rm -f, network rm; returns the count."""
    client.create_network({"Name": f"soak{i}"})
    body = {"Image": "busybox", "Cmd": ["sleep", "600"], "HostConfig": {"NetworkMode": "bridge"}}
    workload = client.create_container(body, f"w{i}")
    client.start(workload)
    client.connect(f"soak{i}", workload)
    client.disconnect(f"soak{i}", workload)
    client.remove(workload, force=True)
    client.remove_network(f"soak{i}")
    return 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--every", type=int, default=250)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hypr-soak-"))
    try:
        with netns("hyprsoak") as ns:
            daemon = Hyprd(ns=ns, root=root)
            daemon.start()
            try:
                pid = daemon_pid(daemon)
                samples: list[tuple[int, int, int]] = []
                done, i, next_sample = 0, 0, 0
                with daemon.client() as client:
                    while done < args.ops:
                        if done >= next_sample:
                            samples.append((done, *sample(pid)))
                            print(f"{done:>7} ops  rss {samples[-1][1]:>7} kB  fds {samples[-1][2]:>4}", flush=True)
                            next_sample += args.every
                        done += one_round(client, i)
                        i += 1
                samples.append((done, *sample(pid)))
                print(f"{done:>7} ops  rss {samples[-1][1]:>7} kB  fds {samples[-1][2]:>4}")
                warm = samples[min(2, len(samples) - 1)]
                last = samples[-1]
                per_k = (last[1] - warm[1]) / max(1, (last[0] - warm[0])) * 1000
                print(f"after warm-up ({warm[0]} ops): RSS {warm[1]} -> {last[1]} kB ({per_k:+.0f} kB per 1000 ops),"
                      f" fds {warm[2]} -> {last[2]}")  # fmt: skip
            finally:
                daemon.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
