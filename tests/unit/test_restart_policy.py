"""Docker's restart policy with on-failure's MaximumRetryCount: the docker CLI's reading of `--restart`, moby's
validation and messages, the restart manager's decision and the columns that keep it. Pure, and SQLite."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import click
import pytest

from hypr.api import shapes
from hypr.cli.workloads import restart_policy as cli_restart_policy
from hypr.errors import InvalidParameter
from hypr.models import Network, Snapshot, Workload
from hypr.services.workload_plan import plan_workload_create, restart_policy
from hypr.services.workloads import restarts, restarts_at_start_up
from hypr.state import Store

BRIDGE = Network(id="b" * 64, name="bridge", bridge="vbr0", subnet=IPv4Network("10.88.0.0/16"),
                 gateway=IPv4Address("10.88.0.1"), created="2026-01-01T00:00:00.000000000Z")  # fmt: skip
SNAP = Snapshot(networks=(BRIDGE,))


@pytest.mark.parametrize(
    ("policy", "wanted"),
    [
        (None, ("no", 0)),
        ({}, ("no", 0)),
        ({"Name": "", "MaximumRetryCount": -3}, ("no", 0)),  # Docker takes an empty name from older clients
        ({"Name": "no"}, ("no", 0)),
        ({"Name": "always", "MaximumRetryCount": 0}, ("always", 0)),
        ({"Name": "unless-stopped"}, ("unless-stopped", 0)),
        ({"Name": "on-failure"}, ("on-failure", 0)),
        ({"Name": "on-failure", "MaximumRetryCount": 5}, ("on-failure", 5)),
    ],
)
def test_valid_policies(policy: Any, wanted: tuple[str, int]) -> None:
    assert restart_policy(policy) == wanted


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"Name": "on-failure", "MaximumRetryCount": -1}, "invalid restart policy: maximum retry count cannot be negative"),
        ({"Name": "always", "MaximumRetryCount": 3},
         "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
        ({"Name": "no", "MaximumRetryCount": -1},
         "invalid restart policy: maximum retry count can only be used with 'on-failure' and cannot be negative"),
        ({"Name": "unless-stopped", "MaximumRetryCount": 1},
         "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
        ({"Name": "sometimes"},
         "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or "
         "'unless-stopped'"),
        ({"Name": "on-failure:3"}, "invalid restart policy: unknown policy 'on-failure:3'"),
        ({"Name": "on-failure", "MaximumRetryCount": "3"}, "invalid RestartPolicy"),
        ("always", "invalid RestartPolicy: expected an object"),
    ],
)  # fmt: skip
def test_bad_policies_get_mobys_messages(policy: Any, message: str) -> None:
    with pytest.raises(InvalidParameter, match="^" + message.replace("(", r"\(").replace("{", r"\{")):
        restart_policy(policy)


def test_create_keeps_the_retry_count_and_refuses_a_policy_with_auto_remove() -> None:
    body = {"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}}
    workload = plan_workload_create(body, None, SNAP).workload
    assert (workload.restart, workload.restart_max, workload.restart_count) == ("on-failure", 2, 0)
    shape = shapes.container_inspect(SNAP, replace(workload, restart_count=1))
    assert shape["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert shape["RestartCount"] == 1
    rm = {"Image": "busybox", "HostConfig": {"AutoRemove": True, "RestartPolicy": {"Name": "always"}}}
    with pytest.raises(InvalidParameter, match="can't create 'AutoRemove' container with restart policy"):
        plan_workload_create(rm, None, SNAP)
    plain_rm = {"Image": "busybox", "HostConfig": {"AutoRemove": True, "RestartPolicy": {"Name": "no"}}}
    assert plan_workload_create(plain_rm, None, SNAP).workload.auto_remove


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        ("no", {"Name": "no", "MaximumRetryCount": 0}),
        ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}),
        ("on-failure:3", {"Name": "on-failure", "MaximumRetryCount": 3}),
        ("on-failure:-1", {"Name": "on-failure", "MaximumRetryCount": -1}),  # the daemon refuses it, by its words
        ("always:2", {"Name": "always", "MaximumRetryCount": 2}),
    ],
)
def test_the_cli_reads_restart_as_the_docker_cli_does(value: str, wanted: dict[str, Any]) -> None:
    assert cli_restart_policy(value) == wanted


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (":3", "invalid restart policy format: no policy provided before colon"),
        ("on-failure:x", "invalid restart policy format: maximum retry count must be an integer"),
    ],
)
def test_the_cli_refuses_what_the_docker_cli_refuses(value: str, message: str) -> None:
    with pytest.raises(click.BadParameter, match=message):
        cli_restart_policy(value)


def test_on_failure_restarts_up_to_the_maximum_then_stops() -> None:
    w = Workload(id="w", name="w", image="busybox", restart="on-failure", restart_max=2)
    assert restarts(w, 3) and restarts(replace(w, restart_count=1), 3)
    assert not restarts(replace(w, restart_count=2), 3)  # two restarts made: it stays exited
    assert not restarts(w, 0)  # success is not a failure
    unlimited = replace(w, restart_max=0, restart_count=1000)
    assert restarts(unlimited, 1) and restarts(unlimited, None)
    always = replace(w, restart="always", restart_max=0, restart_count=50)
    assert restarts(always, 0) and not restarts(replace(w, restart="no"), 1)


def test_the_policy_and_the_count_are_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "hypr.db")
    try:
        w = Workload(id="w1", name="w", image="busybox", created="2026-01-01", restart="on-failure", restart_max=4)
        with store.transaction() as tx:
            store.insert_workload(tx, w, {})
            store.set_starting(tx, "w1", "2026-01-01T00:00:00Z", 3)
        [kept] = store.snapshot().workloads
        assert (kept.restart, kept.restart_max, kept.restart_count) == ("on-failure", 4, 3)
        with store.transaction() as tx:
            store.set_settings(tx, replace(kept, restart="always", restart_max=0))
            store.restore_state(tx, replace(kept, state="exited", restart_count=1))
        [kept] = store.snapshot().workloads
        assert (kept.restart, kept.restart_max, kept.restart_count, kept.state) == ("always", 0, 1, "exited")
    finally:
        store.close()


def test_policies_at_start_up_are_docker_s_restore_rules() -> None:
    """moby's restore: always restarts even a workload the user stopped, unless-stopped and on-failure do not;
    on-failure only after a failure within its retries; never one that was not started, nor an --rm one."""
    ran = Workload(id="w", name="w", image="busybox", state="exited", exit_code=1, started_at="2026-01-01T00:00:00Z")
    by_user = replace(ran, stopped_by_user=True)
    assert restarts_at_start_up(replace(ran, restart="always")) and restarts_at_start_up(
        replace(by_user, restart="always")
    )
    assert restarts_at_start_up(replace(ran, restart="unless-stopped"))
    assert not restarts_at_start_up(replace(by_user, restart="unless-stopped"))
    failed = replace(ran, restart="on-failure", restart_max=1)
    assert restarts_at_start_up(failed) and not restarts_at_start_up(replace(failed, restart_count=1))
    assert not restarts_at_start_up(replace(failed, exit_code=0)) and not restarts_at_start_up(
        replace(by_user, restart="on-failure")
    )
    assert not restarts_at_start_up(replace(ran, restart="no"))
    assert not restarts_at_start_up(replace(ran, restart="always", started_at=""))  # created, never started
    assert not restarts_at_start_up(replace(ran, restart="always", state="running"))
    assert not restarts(replace(by_user, restart="always"), 1)  # live: a stop by the user cancels the policy


def test_a_stop_by_the_user_is_kept_until_the_next_start(tmp_path: Path) -> None:
    store = Store(tmp_path / "hypr.db")
    try:
        w = Workload(id="w1", name="w", image="busybox", created="2026-01-01", restart="unless-stopped")
        with store.transaction() as tx:
            store.insert_workload(tx, w, {})
            store.set_stopped_by_user(tx, "w1")
        assert store.snapshot().workloads[0].stopped_by_user
        with store.transaction() as tx:
            store.set_starting(tx, "w1", "2026-01-01T00:00:00Z")
        assert not store.snapshot().workloads[0].stopped_by_user
    finally:
        store.close()
