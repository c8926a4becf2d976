"""Pure parts of the REST half of issue 12: network modes and their conflicts, endpoint settings, predefined
networks, event filters, ps parsing, network counters, inspect defaults, container prune candidates."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from hypr.api import shapes
from hypr.api.common import query_bool
from hypr.errors import InvalidParameter, NotFound
from hypr.models import Endpoint, Network, Snapshot, Workload
from hypr.services import events, lifecycle, network_plan, stats, workload_plan
from hypr.services.workload_plan import _search, plan_workload_create

BRIDGE = Network(id="b" * 64, name="bridge", bridge="vbr0", subnet=IPv4Network("10.88.0.0/16"),
                 gateway=IPv4Address("10.88.0.1"), created="2026-01-01T00:00:00.000000000Z")  # fmt: skip
OWNER = Workload(id="a" * 64, name="owner", image="busybox", state="running", created="2026-01-01T00:00:01.000000000Z")
HOSTY = Workload(
    id="c" * 64, name="hosty", image="busybox", network_mode="host", created="2026-01-01T00:00:02.000000000Z"
)
SNAP = Snapshot(networks=(BRIDGE,), workloads=(OWNER, HOSTY))


def create(**body: Any) -> Any:
    return plan_workload_create({"Image": "busybox", "Cmd": ["true"], **body}, None, SNAP)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("none", "none"), ("host", "host"), ("container:owner", "container:" + "a" * 64),
     ("container:" + "a" * 12, "container:" + "a" * 64), ("container:hosty", "host")],
)  # fmt: skip
def test_network_modes_resolve_and_plan_no_endpoints(mode: str, expected: str) -> None:
    plan = create(HostConfig={"NetworkMode": mode})
    assert plan.workload.network_mode == expected and plan.endpoints == ()
    assert (plan.workload.hostname == "") == (expected != "none")  # host / owner's, found at start


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"HostConfig": {"NetworkMode": "container:"}}, "invalid container format container:<name|id>"),
        ({"HostConfig": {"NetworkMode": "container:nope"}}, "No such container: nope"),
        ({"Hostname": "x", "HostConfig": {"NetworkMode": "container:owner"}},
         "conflicting options: hostname and the network mode"),
        ({"HostConfig": {"NetworkMode": "host", "Links": ["owner:o"]}}, "host type networking can't be used with links"),
        ({"HostConfig": {"NetworkMode": "container:owner", "Dns": ["1.1.1.1"]}},
         "conflicting options: dns and the network mode"),
        ({"HostConfig": {"NetworkMode": "container:owner", "ExtraHosts": ["a:1.2.3.4"]}},
         "custom host-to-IP mapping and the network mode"),
        ({"MacAddress": "02:00:00:00:00:01", "HostConfig": {"NetworkMode": "host"}},
         "conflicting options: mac-address and the network mode"),
        ({"HostConfig": {"NetworkMode": "container:owner", "PortBindings": {"80/tcp": [{}]}}},
         "port publishing and the container type network mode"),
        ({"ExposedPorts": {"80/tcp": {}}, "HostConfig": {"NetworkMode": "container:owner"}},
         "port exposing and the container type network mode"),
        ({"HostConfig": {"NetworkMode": "none"}, "NetworkingConfig": {"EndpointsConfig": {"bridge": {}}}},
         "one of the networks in private (none) mode"),
        ({"HostConfig": {"NetworkMode": "host"}, "NetworkingConfig": {"EndpointsConfig": {"bridge": {}}}},
         "cannot be connected to any other network"),
        ({"HostConfig": {"NetworkMode": "host", "Runtime": "vm"}}, "not supported for VMs"),
        ({"HostConfig": {"NetworkMode": "none", "PortBindings": {"80/tcp": [{}]}}}, "none network mode"),
        ({"MacAddress": "03:00:00:00:00:01"}, "multicast"),
        ({"MacAddress": "nope"}, "invalid MacAddress"),
        ({"Hostname": "h" * 64}, "longer than 63 characters"),  # refused, never cut
        ({"WorkingDir": "relative"}, "the working directory 'relative' is invalid, it needs to be an absolute path"),
        ({"StopSignal": "SIGBOGUS"}, "Invalid signal: SIGBOGUS"),
        ({"Cmd": ["a\0b"]}, "invalid Cmd: an argument contains a NUL byte"),
        ({"Entrypoint": "a\0b"}, "invalid Entrypoint: an argument contains a NUL byte"),
        ({"User": "a\0b"}, "contains a NUL byte"),
        ({"HostConfig": {"NanoCpus": 10**15}}, "Range of CPUs is from 0.01 to"),
        ({"HostConfig": {"NanoCpus": 10}}, "Range of CPUs is from 0.01 to"),
        ({"HostConfig": {"LogConfig": {"Type": "syslog"}}}, "LogConfig.Type 'syslog' is not supported by hypr"),
        ({"HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}}}},
         'HostConfig.LogConfig.Config is not supported by hypr (got {"max-size": "10m"})'),
        ({"HostConfig": {"Links": ["ghost:g"]}}, "No such container: ghost"),
        ({"HostConfig": {"Links": ["hosty:h"]}}, "host type networking can't be used with links"),
        ({"NetworkingConfig": {"EndpointsConfig": {"bridge": {"IPAMConfig": {"IPv6Address": "2001:db8::5"}}}}},
         "user specified IP address is supported only when connecting to networks with user configured subnets"),
    ],
)  # fmt: skip
def test_network_mode_conflicts_are_dockers(body: dict[str, Any], message: str) -> None:
    with pytest.raises((InvalidParameter, NotFound), match=message.replace("(", r"\(").replace(")", r"\)")):
        create(**body)


def test_host_mode_drops_published_ports_and_endpoint_settings_are_kept() -> None:
    assert create(HostConfig={"NetworkMode": "host", "PortBindings": {"80/tcp": [{}]}}).ports == ()
    plan = create(
        MacAddress="02:AA:00:00:00:01", HostConfig={"Links": ["owner:db"], "PublishAllPorts": True},
        NetworkingConfig={"EndpointsConfig": {"bridge": {"DriverOpts": {"k": "v"},
                                                         "IPAMConfig": {"LinkLocalIPs": ["169.254.1.1"]}}}},
    )  # fmt: skip
    (endpoint,) = plan.endpoints
    assert endpoint.mac == "02:aa:00:00:00:01" and endpoint.driver_opts == {"k": "v"}
    assert endpoint.link_local_ips == ("169.254.1.1",)
    assert plan.workload.links == (("a" * 64, "db"),) and plan.workload.publish_all


def test_predefined_networks_list_with_docker_filters() -> None:
    assert network_plan.list_predefined(SNAP, {}) == ["host", "none"]
    assert network_plan.list_predefined(SNAP, {"driver": ["null"]}) == ["none"]
    assert network_plan.list_predefined(SNAP, {"type": ["custom"]}) == []
    assert network_plan.list_predefined(SNAP, {"dangling": ["true"]}) == []
    assert network_plan.list_predefined(SNAP, {"name": ["os"]}) == ["host"]
    host_id = network_plan.predefined_id(SNAP, "host")
    assert len(host_id) == 64 and network_plan.find_predefined(SNAP, host_id[:6]) == "host"
    assert network_plan.find_predefined(SNAP, "bridge") is None
    assert shapes.predefined_inspect(SNAP, "none")["Driver"] == "null"


def _event(type_: str, action: str, ident: str, **attrs: str) -> events.Event:
    return events.Event(type_, action, ident, attrs, 1)


@pytest.mark.parametrize(
    ("filters", "wanted"),
    [
        ({}, True), ({"type": ["container"]}, True), ({"type": ["network"]}, False),
        ({"event": ["exec_start"]}, False), ({"event": ["start", "die"]}, True),
        ({"container": ["web"]}, True), ({"container": ["1234"]}, True), ({"container": ["db"]}, False),
        ({"label": ["tier"]}, True), ({"label": ["tier=front"]}, True), ({"label": ["tier=back"]}, False),
        ({"image": ["busybox"]}, True), ({"volume": ["v"]}, False),
    ],
)  # fmt: skip
def test_event_filters(filters: dict[str, list[str]], wanted: bool) -> None:
    event = _event("container", "start", "1234abcd", name="web", image="busybox", tier="front")
    assert events.matches(event, filters) is wanted


def test_event_messages_and_the_ring() -> None:
    log = events.EventLog(size=2)
    for action in ("create", "start", "die"):
        log.emit("container", action, "x" * 64, {"name": "web", "image": "busybox"})
    assert [e.action for e in log.past()] == ["start", "die"]
    message = log.past()[0].message()
    assert message["status"] == "start" and message["from"] == "busybox" and message["Actor"]["ID"] == "x" * 64
    with pytest.raises(InvalidParameter, match="invalid filter 'type=bogus'"):
        events.check_filters({"type": ["bogus"]})


def test_parse_ps_keeps_the_workloads_rows_and_the_whole_command() -> None:
    output = "UID PID PPID CMD\nroot 10 1 sleep 600\nroot 11 10 sh -c while true\nroot 99 1 other\n"
    assert stats.parse_ps(output, {10, 11}) == {
        "Titles": ["UID", "PID", "PPID", "CMD"],
        "Processes": [["root", "10", "1", "sleep 600"], ["root", "11", "10", "sh -c while true"]],
    }
    with pytest.raises(InvalidParameter, match="PID"):
        stats.parse_ps("USER CMD\n", set())


def test_network_counters_are_the_workloads_side(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.write_text(
        "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|...\n"
        "  hv1: 100 2 0 0 0 0 0 0 500 7 1 3 0 0 0 0\n"
    )
    assert stats.net_counters([("eth0", "hv1"), ("eth1", "gone")], str(dev)) == {
        "eth0": {"rx_bytes": 500, "rx_packets": 7, "rx_errors": 1, "rx_dropped": 3,
                 "tx_bytes": 100, "tx_packets": 2, "tx_errors": 0, "tx_dropped": 0},
    }  # fmt: skip


def test_inspect_has_every_docker_key() -> None:
    shape = shapes.container_inspect(SNAP, OWNER)
    for top, keys in (("HostConfig", ("ShmSize", "Links", "PublishAllPorts", "Ulimits")),
                      ("Config", ("OpenStdin", "Volumes", "OnBuild")),
                      ("NetworkSettings", ("SandboxKey", "SecondaryIPAddresses", "EndpointID"))):  # fmt: skip
        assert all(k in shape[top] for k in keys), top
    assert "Health" not in shape["State"]  # Docker has it only with a health check
    none = shapes.container_inspect(SNAP, Workload(id="d" * 64, name="n", image="busybox", network_mode="none"))
    assert none["HostConfig"]["NetworkMode"] == "none" and list(none["NetworkSettings"]["Networks"]) == ["none"]


def test_container_prune_candidates() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    old = Workload(
        id="1" * 64, name="old", image="b", state="exited", labels={"k": "v"}, created="2026-01-01T00:00:00.000000000Z"
    )
    new = Workload(id="2" * 64, name="new", image="b", state="created", created="2026-01-01T23:59:59.000000000Z")
    run = Workload(id="3" * 64, name="run", image="b", state="running", created="2026-01-01T00:00:00.000000000Z")
    every = (old, new, run)
    assert lifecycle.prune_candidates(every, {}, now) == [old, new]
    assert lifecycle.prune_candidates(every, {"until": ["1h"]}, now) == [old]
    assert lifecycle.prune_candidates(every, {"label": ["k=v"]}, now) == [old]
    assert lifecycle.prune_candidates(every, {"label!": ["k"]}, now) == [new]
    with pytest.raises(InvalidParameter):
        lifecycle.prune_candidates(every, {"status": ["exited"]}, now)


def test_endpoint_of_a_stopped_member_does_not_hold_its_network() -> None:
    stopped = Workload(id="e" * 64, name="s", image="b", state="exited")
    endpoint = Endpoint(id="f" * 64, workload_id=stopped.id, network_id=BRIDGE.id, ip=IPv4Address("10.88.0.2"),
                        mac="02:42:0a:58:00:02", host_ifname="hvx", position=0)  # fmt: skip
    snap = Snapshot(networks=(BRIDGE,), workloads=(stopped,), endpoints=(endpoint,))
    assert not network_plan.in_use(snap, BRIDGE.id)
    assert network_plan.in_use(Snapshot(networks=(BRIDGE,), workloads=(OWNER,), endpoints=(
        Endpoint(**{**endpoint.__dict__, "workload_id": OWNER.id}),)), BRIDGE.id)  # fmt: skip


def test_link_alias_answers_for_the_linking_workload_alone() -> None:
    from hypr.dns import records as dns

    db = Workload(id="1" * 64, name="db", image="b", state="running")
    app = Workload(id="2" * 64, name="app", image="b", state="running", links=(("1" * 64, "database"),))
    other = Workload(id="3" * 64, name="other", image="b", state="running")
    ends = tuple(
        Endpoint(id=str(i) * 64, workload_id=w.id, network_id=BRIDGE.id, ip=IPv4Address(f"10.88.0.{i + 1}"),
                 mac="02:42:00:00:00:00", host_ifname=f"hv{i}", position=0)
        for i, w in enumerate((db, app, other), start=1)
    )  # fmt: skip
    table = dns.build_records(Snapshot(networks=(BRIDGE,), workloads=(db, app, other), endpoints=ends))
    found = dns.lookup(table, "10.88.0.3", None, "database", "A")
    assert isinstance(found, dns.Found) and found.addresses == (IPv4Address("10.88.0.2"),)
    assert dns.lookup(table, "10.88.0.4", None, "database", "A") == dns.Outcome.NXDOMAIN


@pytest.mark.parametrize(("pattern", "reason"), [("[", "missing ]: ["), ("a{1000}{1000}", "bad repetition operator")])
def test_a_bad_name_pattern_is_a_400_with_re2s_reason_as_text(pattern: str, reason: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        _search(pattern, "/web")
    assert caught.value.message.startswith(f"invalid filter 'name={pattern}': {reason}")


def test_a_hostname_of_63_characters_is_kept_and_a_long_name_is_cut_for_the_default() -> None:
    assert create(Hostname="h" * 63).workload.hostname == "h" * 63
    named = plan_workload_create({"Image": "busybox", "Cmd": ["true"]}, "n" * 70, SNAP)
    assert named.workload.hostname == "n" * 63


def test_a_health_check_is_accepted_with_a_warning_never_silently() -> None:
    warned = workload_plan.create_warnings({"Healthcheck": {"Test": ["CMD", "true"]}})
    assert warned and "Healthcheck is not supported by hypr" in warned[0]
    assert workload_plan.create_warnings({"Healthcheck": {"Test": ["NONE"]}}) == []
    assert workload_plan.create_warnings({}) == []


@pytest.mark.parametrize(
    ("value", "wanted"),
    [("1", True), ("true", True), ("True", True), ("yes", True), ("maybe", True), (" 1 ", True),
     ("", False), ("0", False), ("no", False), ("FALSE", False), ("none", False)],
)  # fmt: skip
def test_query_booleans_are_dockers(value: str, wanted: bool) -> None:
    request = make_mocked_request("GET", f"/containers/json?all={value}")
    assert query_bool(request, "all") is wanted
