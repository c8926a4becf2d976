"""Restart policies applied again when hyprd starts, as Docker's daemon does (moby's restore: `ShouldRestart` with
HasBeenManuallyStopped): workloads outlive hyprd, so one that ended while hyprd was down, or was waiting out its
back-off when hyprd was killed, is restarted by `always`, by `unless-stopped` unless the user stopped it, by
`on-failure` within its retries; a workload waiting out its back-off shows `restarting`."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from tests.integration.harness import Hyprd, wait_until

SETTLE = 3.0  # seconds: several refresh looks (0.5 s) after the first back-off (0.1 s) of a restart at start-up


def _state(hyprd: Hyprd, name: str) -> dict[str, Any]:
    return dict(json.loads(hyprd.cli("inspect", name).stdout)[0]["State"])


def _runs(hyprd: Hyprd, name: str) -> int:
    return hyprd.cli("logs", name).stdout.count("run")


def _restarting_rows(hyprd: Hyprd) -> str:
    """`ps` (without -a: Docker lists restarting workloads as running ones) filtered on status=restarting."""
    return hyprd.cli("ps", "--filter", "status=restarting", "--format", "json").stdout.replace('"', "")


def test_policies_are_applied_again_when_hyprd_starts(hyprd: Hyprd) -> None:
    for name, policy in (("keeper", "always"), ("stopped-always", "always"), ("stopped-unless", "unless-stopped")):
        hyprd.cli("run", "-d", "--name", name, "--restart", policy, "busybox", "sleep", "600")
    hyprd.cli("stop", "-t", "0", "stopped-always", "stopped-unless")
    hyprd.cli("run", "-d", "--name", "spent", "--restart", "on-failure:1", "busybox", "sh", "-c", "echo run; exit 3")
    hyprd.cli("run", "-d", "--name", "bouncer", "--restart", "always", "busybox", "sh", "-c", "echo run; exit 1")
    wait_until(lambda: _runs(hyprd, "spent") == 2 and _state(hyprd, "spent")["Status"] == "exited", "spent", 30)
    # Waiting out its back-off (0.1 s doubling): `restarting`, with the code of its last run, as Docker shows it.
    restarting = {"Status": "restarting", "Running": True, "Restarting": True}
    wait_until(lambda: _state(hyprd, "bouncer").items() >= restarting.items(), "bouncer to be restarting", 30, 0.05)
    wait_until(lambda: "Restarting (1)" in _restarting_rows(hyprd), "ps to list bouncer as restarting", 30, 0.05)
    wait_until(lambda: _runs(hyprd, "bouncer") >= 7, "seven runs of bouncer (a back-off of seconds)", 60)
    keeper_pid = _state(hyprd, "keeper")["Pid"]

    hyprd.kill9()
    os.kill(keeper_pid, signal.SIGKILL)  # ends while hyprd is down
    hyprd.start()
    bounced = _runs(hyprd, "bouncer")

    wait_until(lambda: _state(hyprd, "keeper")["Status"] == "running", "keeper to run again", 30)
    assert _state(hyprd, "keeper")["Pid"] not in (0, keeper_pid)
    # Docker's rule: `always` restarts at daemon start even a workload the user stopped; unless-stopped does not.
    wait_until(lambda: _state(hyprd, "stopped-always")["Status"] == "running", "stopped-always to run again", 30)
    wait_until(lambda: _runs(hyprd, "bouncer") > bounced, "bouncer to run again", 30)
    time.sleep(SETTLE)
    assert _state(hyprd, "stopped-unless")["Status"] == "exited"
    assert _state(hyprd, "spent")["Status"] == "exited" and _runs(hyprd, "spent") == 2  # its one retry is used up
    # A stop by the user survives a restart of hyprd: the unless-stopped one stays exited after another one.
    hyprd.kill9()
    hyprd.start()
    time.sleep(SETTLE)
    assert _state(hyprd, "stopped-unless")["Status"] == "exited"
    hyprd.cli("start", "stopped-unless")  # a start clears the stop: the policy applies again
    assert _state(hyprd, "stopped-unless")["Status"] == "running"
    # `stop` of a workload waiting out its back-off cancels the restart, as Docker's stop of a restarting one.
    wait_until(lambda: _state(hyprd, "bouncer")["Status"] == "restarting", "bouncer to be restarting", 30, 0.05)
    hyprd.cli("stop", "bouncer")
    stopped_at = _runs(hyprd, "bouncer")
    time.sleep(SETTLE)
    assert _state(hyprd, "bouncer")["Status"] == "exited" and _runs(hyprd, "bouncer") == stopped_at
