"""`--restart on-failure:N` as Docker's: a failing sandbox is restarted N times, then stays exited; RestartCount
and MaximumRetryCount are shown, through hypr's CLI and the docker CLI; bad policies are refused with Docker's
words and nothing is made."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.integration.harness import Hyprd, wait_until

SETTLE = 3.0  # seconds: several refresh looks (0.5 s) and back-offs (0.4 s after two restarts) for a 4th run


def _inspect(hyprd: Hyprd, name: str) -> dict[str, Any]:
    return dict(json.loads(hyprd.cli("inspect", name).stdout)[0])


def _settled(hyprd: Hyprd, name: str, runs: int) -> dict[str, Any]:
    """Waits for `runs` runs of `name` and its exit, then lets a would-be further restart happen; its inspect."""
    wait_until(lambda: hyprd.cli("logs", name).stdout.count("run") >= runs, f"{runs} runs of {name}", timeout=60)
    wait_until(lambda: _inspect(hyprd, name)["State"]["Status"] == "exited", f"{name} to exit", timeout=30)
    time.sleep(SETTLE)
    assert hyprd.cli("logs", name).stdout.count("run") == runs
    return _inspect(hyprd, name)


def test_on_failure_with_a_maximum_restarts_that_many_times(hyprd: Hyprd) -> None:
    hyprd.cli("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3")
    shape = _settled(hyprd, "flaky", 3)  # the first run and two restarts
    assert shape["State"]["Status"] == "exited" and shape["State"]["ExitCode"] == 3
    assert shape["RestartCount"] == 2
    assert shape["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    hyprd.cli("start", "flaky")  # a start asked for sets the count back to 0, as Docker's does
    assert _settled(hyprd, "flaky", 6)["RestartCount"] == 2
    # The docker CLI, against the socket: run, inspect, update.
    hyprd.docker(
        "run", "-d", "--name", "dflaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3"
    )
    _settled(hyprd, "dflaky", 3)
    shown = hyprd.docker("inspect", "-f", "{{.RestartCount}} {{.HostConfig.RestartPolicy.Name}} "
                         "{{.HostConfig.RestartPolicy.MaximumRetryCount}}", "dflaky").stdout.split()  # fmt: skip
    assert shown == ["2", "on-failure", "2"]
    hyprd.docker("update", "--restart", "on-failure:5", "dflaky")
    assert _inspect(hyprd, "dflaky")["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    refused = hyprd.docker("update", "--restart", "always:3", "dflaky", rc=None)
    assert refused.returncode != 0 and "maximum retry count can only be used with 'on-failure'" in refused.stderr
    assert _inspect(hyprd, "dflaky")["HostConfig"]["RestartPolicy"]["MaximumRetryCount"] == 5  # nothing changed


def test_bad_restart_policies_are_refused_and_nothing_is_made(hyprd: Hyprd) -> None:
    for policy, message in (
        ("on-failure:-1", "invalid restart policy: maximum retry count cannot be negative"),
        ("always:3", "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
        ("sometimes", "invalid restart policy: unknown policy 'sometimes'"),
        ("on-failure:x", "invalid restart policy format: maximum retry count must be an integer"),
    ):
        proc = hyprd.cli("run", "-d", "--name", "bad", "--restart", policy, "busybox", "true", rc=None)
        assert proc.returncode != 0 and message in proc.stderr, (policy, proc.stderr)
        docker = hyprd.docker("run", "-d", "--name", "bad", "--restart", policy, "busybox", "true", rc=None)
        assert docker.returncode != 0 and message in docker.stderr, (policy, docker.stderr)
    rm = hyprd.docker("run", "-d", "--rm", "--restart", "always", "busybox", "true", rc=None)
    assert rm.returncode != 0
    assert hyprd.cli("ps", "-a", "-q").stdout.strip() == ""


def test_compose_restart_on_failure_with_a_maximum(hyprd: Hyprd, tmp_path: Path) -> None:
    file = tmp_path / "hypr-compose.yml"
    file.write_text(
        "services:\n"
        "  flaky:\n"
        "    image: busybox\n"
        "    container_name: cflaky\n"
        "    command: [sh, -c, 'echo run; exit 3']\n"
        '    restart: "on-failure:1"\n'
    )
    hyprd.cli("compose", "--progress", "plain", "-f", str(file), "-p", "rp", "up", "-d")
    shape = _settled(hyprd, "cflaky", 2)
    assert shape["RestartCount"] == 1
    assert shape["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 1}
    hyprd.cli("compose", "--progress", "plain", "-f", str(file), "-p", "rp", "down")


def test_hypr_update_and_stats(hyprd: Hyprd) -> None:
    """`hypr update` as `docker update`: the restart policy changes; the resource limits are refused by name and
    nothing changes. `hypr stats --no-stream`: one row per running workload, Docker's columns."""
    hyprd.cli("run", "-d", "--name", "steady", "busybox", "sleep", "600")
    assert hyprd.cli("update", "--restart", "on-failure:4", "steady").stdout.split() == ["steady"]
    assert _inspect(hyprd, "steady")["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 4}
    for flag, value, field in (("--memory", "64m", "Memory"), ("--cpus", "1.5", "NanoCpus"),
                               ("--pids-limit", "10", "PidsLimit")):  # fmt: skip
        refused = hyprd.cli("update", "--restart", "always", flag, value, "steady", rc=1)
        assert f"updating {field} is not supported by hypr" in refused.stderr
    assert _inspect(hyprd, "steady")["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"  # nothing changed
    bad = hyprd.cli("update", "--restart", "always:3", "steady", rc=1)
    assert "maximum retry count can only be used with 'on-failure'" in bad.stderr
    assert "you must provide one or more flags" in hyprd.cli("update", "steady", rc=2).stderr
    header, *rows = hyprd.cli("stats", "--no-stream").stdout.splitlines()
    assert header.split("   ")[0] == "CONTAINER ID" and "MEM USAGE / LIMIT" in header and header.endswith("PIDS")
    [only] = rows
    assert only.split()[1] == "steady" and only.split()[-1] == "1"  # sleep: one process
    missing = hyprd.cli("stats", "--no-stream", "nosuch", rc=1)
    assert "No such container: nosuch" in missing.stderr
