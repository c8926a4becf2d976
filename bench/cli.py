"""The CLI against docker's: `hypr ps` and `hypr version` vs `docker ps` and `docker version`, both CLIs talking
to the same hyprd socket (docker speaks the Engine API, which hyprd serves), with 5 running workloads.

Goal (issue #16): hypr's median wall time <= 2.5x docker's, for each command. Rounds alternate the commands so
that machine load hits all of them alike. Also printed, for scale: the bare interpreter (`python -c pass`), the
interpreter with click imported as `hypr` starts (collector off, `os._exit`: hypr.cli.entry) and as a plain
`python -c 'import click'` does, the floors of any Python CLI and of any click CLI, and `hypr --version` (start-up
and imports, no daemon call). `hypr` runs as users get it: on its CLI fork server (hypr.cli.entry), started by the
first command and warm for the rounds; the same commands without it (HYPR_CLI_SERVER=0) are printed beside them.
Each with its CPU time (user + system; a command run on the server counts the server's share too): on a shared
machine wall times swing with the load, CPU times much less.

Root only (a throw-away network namespace with its own hyprd, removed afterwards). Needs the docker CLI (not the
docker daemon):
    .venv/bin/python bench/cli.py [--rounds 31] [--workloads 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from goals import median_ms, not_measured, report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.harness import HYPR, Hyprd, cli_servers, netns, private_cli_servers


def environments() -> tuple[dict[str, str], dict[str, str]]:
    """The commands' environment with the CLI fork server and without it. As installed by pip, hypr's modules have
    their bytecode cached; a PYTHONDONTWRITEBYTECODE left in the environment (some CI and sandbox set-ups have it)
    would make every command compile them again."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONDONTWRITEBYTECODE", "HYPR_CLI_SERVER")}
    return env, {**env, "HYPR_CLI_SERVER": "0"}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_cpu() -> float:
    """CPU seconds of the CLI fork servers and of the commands they ran (reaped children count in cutime/cstime):
    a command run on a server is not a child of ours."""
    total = 0.0
    for pid in cli_servers(Path(os.environ["XDG_RUNTIME_DIR"]) / "hypr"):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of `argv`, with what a CLI fork server spent on it."""
    cpu, began = children_cpu() + server_cpu(), time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - began, children_cpu() + server_cpu() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--workloads", type=int, default=5)
    args = parser.parse_args()
    docker = shutil.which("docker")
    if docker is None:  # not an apt package we install: docker.io would bring (and start) dockerd too
        for word in ("ps", "version"):
            not_measured(f"cli: hypr {word} / docker {word} (same socket, median wall)", "no docker CLI")
        return 0
    root = Path(tempfile.mkdtemp(prefix="hypr-bench-cli-"))
    try:
        with netns("hyprcli") as ns, private_cli_servers():
            daemon = Hyprd(ns=ns, root=root)
            daemon.start()
            try:
                with daemon.client() as client:
                    for i in range(args.workloads):
                        body = {"Image": "busybox", "Cmd": ["sleep", "3600"], "HostConfig": {"NetworkMode": "bridge"}}
                        client.start(client.create_container(body, f"w{i}"))
                return measure(daemon, docker, args.rounds, args.workloads)
            finally:
                with daemon.client() as client:
                    for i in range(args.workloads):
                        client.remove(f"w{i}", force=True)
                daemon.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# What `hypr` pays before its own code runs: the interpreter, and click imported the way hypr.cli.entry imports it.
CLICK_AS_HYPR = "import gc; gc.disable(); import click, os; os._exit(0)"


def measure(daemon: Hyprd, docker: str, rounds: int, workloads: int) -> int:
    host = f"unix://{daemon.socket}"
    env, no_server = environments()
    commands = {
        "hypr ps": ([HYPR, "-H", host, "ps"], env),
        "docker ps": ([docker, "-H", host, "ps"], env),
        "hypr version": ([HYPR, "-H", host, "version"], env),
        "docker version": ([docker, "-H", host, "version"], env),
        "hypr --version (no daemon call)": ([HYPR, "--version"], env),
        "hypr ps, no fork server": ([HYPR, "-H", host, "ps"], no_server),
        "hypr version, no fork server": ([HYPR, "-H", host, "version"], no_server),
        "click as hypr imports it (floor)": ([sys.executable, "-c", CLICK_AS_HYPR], env),
        "python -c 'import click'": ([sys.executable, "-c", "import click"], env),
        "python -c pass (the floor)": ([sys.executable, "-c", "pass"], env),
    }
    timed(*commands["hypr ps"])  # starts the fork server
    deadline = time.monotonic() + 30
    while not cli_servers(Path(os.environ["XDG_RUNTIME_DIR"]) / "hypr") and time.monotonic() < deadline:
        time.sleep(0.05)
    for argv, env in commands.values():  # warm-up: page cache, .pyc files, the daemon's first answers
        timed(argv, env)
    times: dict[str, list[float]] = {label: [] for label in commands}
    cpu: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(rounds):
        for label, (argv, env) in commands.items():
            wall, used = timed(argv, env)
            times[label].append(wall)
            cpu[label].append(used)
    print(f"CLI wall and CPU time, {rounds} alternating rounds, {workloads} running workloads, medians:")
    for label, samples in times.items():
        print(f"  {label:<34} {median_ms(samples):7.1f} ms   cpu {median_ms(cpu[label]):6.1f} ms")
    for word in ("ps", "version"):
        hypr, docker = median_ms(cpu[f"hypr {word}"]), median_ms(cpu[f"docker {word}"])
        print(f"  CPU: hypr {word} / docker {word} {hypr / docker:.2f}x")
    met = [
        report(
            f"cli: hypr {word} / docker {word} (same socket, median wall)",
            median_ms(times[f"hypr {word}"]) / median_ms(times[f"docker {word}"]),
            2.5,
        )
        for word in ("ps", "version")
    ]
    del met  # a goal not met is a finding printed above, not a failure of the bench
    return 0


if __name__ == "__main__":
    sys.exit(main())
