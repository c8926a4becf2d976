"""Defects found under bad input (issue "Confinement", part B), each a test with its right value."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from hypr.errors import InvalidParameter
from tests.integration.harness import Hyprd, run_in


def test_data_and_runtime_dirs_are_root_only(hyprd: Hyprd) -> None:
    """Docker's are: every `-e` value of every workload is in the database and the launch files."""
    hyprd.cli("run", "-d", "--name", "secret", "-e", "PASSWORD=hunter2", "busybox", "sh", "-c",
              "echo $PASSWORD; sleep 600")  # fmt: skip
    hyprd.cli("run", "--name", "done", "-e", "PASSWORD=hunter2", "host", "sh", "-c", "echo $PASSWORD")
    os.chmod(hyprd.root, 0o755)  # as /var/lib and /run are: mkdtemp's 0700 would hide everything below it
    data, run = hyprd.root / "data", hyprd.root / "run"
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(run).st_mode) == 0o711  # the socket's group can reach hypr.sock, nothing else
    assert stat.S_IMODE(os.stat(run / "workloads").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data / "hypr.db").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(run / "hypr.sock").st_mode) == 0o660
    for path in (data / "hypr.db", *run.glob("workloads/*/launch.json")):
        nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", str(path)],
                                capture_output=True)  # fmt: skip
        assert nobody.returncode != 0 and b"hunter2" not in nobody.stdout, path
    # Nothing under either dir is readable or writable by another user: the logs, the image store, every
    # workload's state; only the socket's and the pid file's paths can be reached (run/ is 0711).
    found = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "find", str(data),
                            str(run), "(", "-readable", "-o", "-writable", ")"], capture_output=True, text=True)  # fmt: skip
    assert found.stdout.split() == [], found.stdout
    logs = list(run.glob("workloads/*/log.json"))
    assert logs and all(b"hunter2" in log.read_bytes() for log in logs)  # the check above covered real logs


@pytest.mark.parametrize(
    "subnet",
    ["127.0.0.0/8", "127.1.0.0/16", "169.254.0.0/16", "224.0.0.0/24", "0.0.0.0/8", "255.255.255.0/24", "240.0.0.0/8"],
)
def test_special_ranges_are_refused_and_change_nothing(hyprd: Hyprd, subnet: str) -> None:
    before = hyprd.cli("network", "ls", "-q").stdout
    out = hyprd.cli("network", "create", "--subnet", subnet, "bad", rc=1)
    assert "which no network can use" in out.stderr
    assert hyprd.cli("network", "ls", "-q").stdout == before


def test_a_gateway_on_the_network_or_broadcast_address_is_refused(hyprd: Hyprd) -> None:
    for gateway in ("10.77.0.0", "10.77.0.255"):
        out = hyprd.cli("network", "create", "--subnet", "10.77.0.0/24", "--gateway", gateway, "bad", rc=1)
        assert "address of subnet" in out.stderr


def test_a_pathological_name_filter_never_stalls_the_daemon(hyprd: Hyprd) -> None:
    """Docker's name filters are RE2 (linear time): `^(a+)+$` against a 27-character name answers at once, and the
    API and DNS keep answering meanwhile."""
    hyprd.cli("run", "-d", "--name", "a" * 26 + "b", "busybox", "sleep", "600")
    filters = json.dumps({"name": ["^(a+)+$"]})
    transport = httpx.HTTPTransport(uds=str(hyprd.socket))
    with httpx.Client(transport=transport, base_url="http://hypr", timeout=5.0) as http:

        def listing(_i: int) -> int:
            return len(http.get("/containers/json", params={"filters": filters}).json())

        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(listing, range(8))) == [0] * 8
        dig = run_in(hyprd.ns, "dig", "+short", "+time=2", "+tries=1", "-p", "41003", "@10.88.0.1", f"{'a' * 26}b.hypr")
        assert dig.stdout.strip().startswith("10.88.")
        bad = http.get("/containers/json", params={"filters": json.dumps({"name": ["(?<=x)"]})})
        assert bad.status_code == 400 and "invalid filter" in bad.json()["message"]
    with hyprd.client() as client, pytest.raises(InvalidParameter):
        client.containers(filters={"name": ["x" * 2000]})


def test_ten_thousand_published_ports_and_the_daemon_keeps_working(hyprd: Hyprd) -> None:
    """Each held port is a descriptor: they live above 1023, so libnftables' select() never sees one (it aborted
    hyprd at 1100 ports), and the open-files limit is raised to the hard limit."""
    hyprd.cli("run", "-d", "--name", "many", "-p", "20000-29999:20000-29999", "busybox", "sleep", "600", timeout=300)
    hyprd.cli("run", "-d", "--name", "more", "-p", "30000-30099:30000-30099/udp", "busybox", "sleep", "600")
    hyprd.cli("network", "create", "after")  # every mutation re-applies the table: still fine
    listening = run_in(hyprd.ns, "ss", "-ltnH").stdout.count("\n")
    assert listening >= 10_000
    hyprd.restart()
    assert hyprd.cli("port", "many", "29999").stdout.strip() == "0.0.0.0:29999"
    hyprd.cli("rm", "-f", "many", "more", timeout=300)
    assert run_in(hyprd.ns, "ss", "-ltnH").stdout.count("\n") < 10


def test_a_half_made_bridge_is_adopted_and_a_foreign_one_blocks_only_its_network(hyprd: Hyprd) -> None:
    """kill -9 between creating a bridge and labelling it left a bridge without our alias: it is recognised by the
    MAC it was born with and adopted. A foreign interface with a network's bridge name blocks that network only."""
    hyprd.cli("network", "create", "--subnet", "10.61.0.0/24", "half")
    hyprd.cli("network", "create", "--subnet", "10.62.0.0/24", "taken")
    hyprd.cli("network", "create", "--subnet", "10.63.0.0/24", "fine")
    bridges = {n: json.loads(hyprd.cli("network", "inspect", n).stdout)[0]["Options"]["com.docker.network.bridge.name"]
               for n in ("half", "taken")}  # fmt: skip
    hyprd.kill9()
    run_in(hyprd.ns, "ip", "link", "set", "dev", bridges["half"], "alias", "")
    run_in(hyprd.ns, "ip", "link", "del", bridges["taken"])
    run_in(hyprd.ns, "ip", "link", "add", bridges["taken"], "type", "bridge")  # someone else's, same name
    hyprd.start()
    alias = run_in(hyprd.ns, "ip", "-d", "link", "show", bridges["half"]).stdout
    assert "alias hypr:" in alias
    hyprd.cli("run", "-d", "--name", "h1", "--network", "half", "busybox", "sleep", "600")
    hyprd.cli("run", "-d", "--name", "f1", "--network", "fine", "busybox", "sleep", "600")
    hyprd.cli("network", "create", "--subnet", "10.64.0.0/24", "later")
    hyprd.cli("exec", "f1", "ping", "-c1", "-W2", "10.63.0.1")
    hyprd.cli("exec", "h1", "ping", "-c1", "-W2", "10.61.0.1")
    refused = hyprd.cli("run", "-d", "--name", "t1", "--network", "taken", "busybox", "sleep", "600", rc=None)
    assert refused.returncode != 0 and "not owned by this hypr daemon" in refused.stderr
    assert "alias" not in run_in(hyprd.ns, "ip", "-d", "link", "show", bridges["taken"]).stdout


BAD_BODIES = [
    ("POST", "/containers/create", b"\xff\xfe{}", "not UTF-8"),
    ("POST", "/containers/create", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("POST", "/containers/create", b'{"Image": "busybox", "HostConfig": {"NetworkMode": 5}}', "NetworkMode"),
    ("POST", "/containers/create", b'{"Image": "busybox", "HostConfig": {"AutoRemove": "false"}}', "AutoRemove"),
    ("POST", "/containers/create", b'{"Image": "busybox", "Env": ["A\\u0000B=1"]}', "environment variable"),
    ("POST", "/containers/create", b'{"Image": "busybox", "Env": [1, 2]}', "Env"),
    (
        "POST",
        "/containers/create",
        b'{"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "192.0.2.1", "HostPort": "8080"}]}}}',
        "not an address of this host",
    ),
    (
        "POST",
        "/containers/create",
        b'{"Image": "busybox", "HostConfig": {"PortBindings": {"1-65535/tcp": [{"HostPort": "1-65535"}]}}}',
        "too many published ports",
    ),
    ("POST", "/networks/bridge/connect", b'{"Container": "box", "EndpointConfig": [1]}', "EndpointConfig"),
    ("POST", "/networks/n1/connect", b'{"Container": "box", "EndpointConfig": {"Aliases": "abc"}}', "Aliases"),
    ("POST", "/containers/box/exec", b'{"Cmd": "id"}', "Cmd"),
    ("POST", "/containers/box/exec", b'{"Cmd": ["id"], "Env": [1, 2]}', "Env"),
    ("POST", "/containers/box/exec", b'{"Cmd": ["id"], "Hacks": 1}', "Hacks"),
    ("GET", "/containers/box/logs?tail=abc", b"", "invalid tail value"),
    # The same kind on the other bodies: every field's JSON type, then its value, before anything runs.
    ("POST", "/containers/create", b'{"Image": "busybox", "Hostname": 5}', "field ContainerConfigWrapper.Hostname"),
    ("POST", "/containers/create", b'{"Image": "busybox", "StopTimeout": "x"}', "StopTimeout of type int64"),
    ("POST", "/containers/create", b'{"Image": "busybox", "WorkingDir": "rel"}', "needs to be an absolute path"),
    ("POST", "/containers/create", b'{"Image": "busybox", "StopSignal": "SIGBOGUS"}', "Invalid signal: SIGBOGUS"),
    ("POST", "/containers/create", b'{"Image": "busybox", "Cmd": ["a\\u0000b"]}', "NUL byte"),
    (
        "POST",
        "/containers/create",
        b'{"Image": "busybox", "HostConfig": {"NanoCpus": 1000000000000000}}',
        "Range of CPUs",
    ),
    (
        "POST",
        "/containers/create",
        b'{"Image": "busybox", "HostConfig": {"LogConfig": {"Type": "syslog"}}}',
        "LogConfig.Type 'syslog' is not supported",
    ),
    (
        "POST",
        "/containers/create",
        b'{"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": 80}]}}}',
        "HostPort of type string",
    ),
    ("POST", "/containers/create", b"[1]", "expected an object"),
    ("POST", "/networks/create", b'{"Name": "x1", "Internal": "yes"}', "CreateRequest.Internal of type bool"),
    ("POST", "/networks/create", b'{"Name": "x1", "IPAM": {"Config": [5]}}', "IPAM.Config of type struct"),
    ("POST", "/networks/create", b'{"Name": "x1", "Options": {"com.docker.network.driver.mtu": 1500}}', "Options"),
    ("POST", "/networks/n1/connect", b'{"Container": "box", "EndpointConfig": {"Links": "x"}}', "Links"),
    ("POST", "/networks/n1/disconnect", b'{"Container": "box", "Force": "yes"}', "Force of type bool"),
    ("POST", "/containers/box/exec", b'{"Cmd": ["true"], "WorkingDir": "rel"}', "needs to be an absolute path"),
    ("POST", "/containers/box/exec", b'{"Cmd": ["a\\u0000b"]}', "NUL byte"),
    ("POST", "/containers/box/update", b'{"Memory": "x"}', "UpdateConfig.Memory of type int64"),
]


def test_bad_bodies_are_400s_and_change_nothing(hyprd: Hyprd) -> None:
    hyprd.cli("network", "create", "n1")
    hyprd.cli("run", "-d", "--name", "box", "busybox", "sleep", "600")
    transport = httpx.HTTPTransport(uds=str(hyprd.socket))
    with httpx.Client(transport=transport, base_url="http://hypr/v1.44", timeout=30.0) as http:
        before = http.get("/containers/json", params={"all": "1"}).json()
        for method, path, body, message in BAD_BODIES:
            answer = http.request(method, path, content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == 400, (path, body[:80], answer.status_code, answer.text[:300])
            assert message in answer.json()["message"], (path, answer.json())
        assert http.get("/containers/json", params={"all": "1"}).json() == before
        aliases = http.get("/containers/box/json").json()["NetworkSettings"]["Networks"]
        assert set(aliases) == {"bridge"}


def test_an_endpoint_row_without_its_interface_is_plugged_again_at_start_up(hyprd: Hyprd) -> None:
    """What kill -9 in the middle of `network connect` (row written, interface not yet made) or of a forced
    `network rm` leaves: after the restart the workload has every interface its rows say, and it works."""
    hyprd.cli("network", "create", "--subnet", "10.71.0.0/24", "second")
    hyprd.cli("run", "-d", "--name", "two", "--network", "bridge", "--network", "second", "busybox", "sleep", "600")
    nets = json.loads(hyprd.cli("inspect", "two").stdout)[0]["NetworkSettings"]["Networks"]
    hyprd.kill9()
    run_in(hyprd.ns, "ip", "link", "del", nets["second"]["HostInterface"])  # its peer, eth1, goes with it
    hyprd.start()
    addrs = hyprd.cli("exec", "two", "ip", "-o", "-4", "addr").stdout
    assert f" {nets['second']['IPAddress']}/24" in addrs
    hyprd.cli("exec", "two", "ping", "-c1", "-W2", "10.71.0.1")
    hyprd.cli("exec", "two", "ping", "-c1", "-W2", "10.88.0.1")
