"""Workloads on networks: real namespaces, veths and processes, driven through the CLI and the API."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hypr.errors import Conflict, Forbidden, InvalidParameter, NotFound
from tests.integration.harness import HYPR, Hyprd, leftover_mounts, links, run_in, sh, wait_until

HTTP_GET = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}"


def ip_of(hyprd: Hyprd, name: str, network: str = "bridge") -> str:
    return str(json.loads(hyprd.cli("inspect", name).stdout)[0]["NetworkSettings"]["Networks"][network]["IPAddress"])


def http_status(hyprd: Hyprd, client: str, ip: str, port: int = 80) -> str:
    out = hyprd.cli("exec", client, "sh", "-c", HTTP_GET.format(ip=ip, port=port), rc=None).stdout
    return out.splitlines()[0] if out else ""


def veths(ns: str) -> list[str]:
    return [name for name in links(ns) if name.startswith("hv")]


def test_two_workloads_talk_over_the_bridge(hyprd: Hyprd) -> None:
    hyprd.cli("run", "-d", "--name", "web", "busybox", "httpd", "-f", "-p", "80")
    hyprd.cli("run", "-d", "--name", "client", "busybox", "sleep", "600")
    web_ip, client_ip = ip_of(hyprd, "web"), ip_of(hyprd, "client")
    assert web_ip != client_ip and web_ip.startswith("10.88.")
    hyprd.cli("exec", "client", "ping", "-c1", "-W2", web_ip)
    hyprd.cli("exec", "client", "ping", "-c1", "-W2", "10.88.0.1")
    assert http_status(hyprd, "client", web_ip).startswith("HTTP/1.")
    run_in(hyprd.ns, "ping", "-c1", "-W2", web_ip)  # the host reaches it too
    ps = hyprd.cli("ps").stdout.splitlines()
    assert ps[0].split() == ["ID", "NAME", "IMAGE", "STATUS", "PORTS", "IP"]
    assert any("web" in line and web_ip in line for line in ps[1:])


def test_a_workload_on_two_networks_and_hot_plug(hyprd: Hyprd) -> None:
    hyprd.cli("network", "create", "a-front", "--subnet", "10.30.0.0/24")
    hyprd.cli("network", "create", "b-back", "--subnet", "10.31.0.0/24")
    hyprd.cli("run", "-d", "--name", "api", "--network", "a-front", "--network", "b-back", "busybox", "sleep", "600")
    addrs = hyprd.cli("exec", "api", "ip", "-o", "-4", "addr").stdout
    assert "eth0" in addrs and "10.30.0.2/24" in addrs
    assert "eth1" in addrs and "10.31.0.2/24" in addrs
    assert "default via 10.30.0.1" in hyprd.cli("exec", "api", "ip", "route").stdout
    hyprd.cli("network", "create", "extra", "--subnet", "10.32.0.0/24")
    hyprd.cli("network", "connect", "--ip", "10.32.0.50", "extra", "api")
    assert "10.32.0.50/24" in hyprd.cli("exec", "api", "ip", "-o", "-4", "addr").stdout
    hyprd.cli("exec", "api", "ping", "-c1", "-W2", "10.32.0.1")
    containers = json.loads(hyprd.cli("network", "inspect", "extra").stdout)[0]["Containers"]
    assert [c["Name"] for c in containers.values()] == ["api"]
    hyprd.cli("network", "disconnect", "extra", "api")
    assert "10.32.0.50" not in hyprd.cli("exec", "api", "ip", "-o", "-4", "addr").stdout
    assert len(veths(hyprd.ns)) == 2
    refused = hyprd.cli("network", "rm", "a-front", rc=1)
    assert "has active endpoints" in refused.stderr
    hyprd.cli("network", "rm", "-f", "a-front")
    assert len(veths(hyprd.ns)) == 1
    assert "10.30.0." not in hyprd.cli("exec", "api", "ip", "-o", "-4", "addr").stdout
    # The gateway network (external, first by name) went: the next one takes over the route and the resolver.
    assert "default via 10.31.0.1" in hyprd.cli("exec", "api", "ip", "route").stdout
    assert "nameserver 10.31.0.1" in hyprd.cli("exec", "api", "cat", "/etc/resolv.conf").stdout


def test_exec_codes_stop_start_keeps_ip_and_rm_cleans_up(hyprd: Hyprd) -> None:
    hyprd.cli("run", "-d", "--name", "box", "busybox", "sleep", "600")
    assert hyprd.cli("exec", "box", "sh", "-c", "exit 7", rc=7).returncode == 7
    assert hyprd.cli("exec", "box", "--", "true").returncode == 0
    ip = ip_of(hyprd, "box")
    hyprd.cli("stop", "-t", "1", "box")
    assert "Exited" in hyprd.cli("ps", "-a").stdout
    not_running = hyprd.cli("exec", "box", "true", rc=1)
    assert "is not running" in not_running.stderr
    hyprd.cli("start", "box")
    assert ip_of(hyprd, "box") == ip
    hyprd.cli("exec", "box", "ping", "-c1", "-W2", "10.88.0.1")
    refused = hyprd.cli("rm", "box", rc=1)
    assert "cannot remove a running container" in refused.stderr
    hyprd.cli("run", "-d", "--name", "other", "busybox", "sleep", "600")
    hyprd.cli("rm", "-f", "box")
    # The bridge keeps its MAC when a port goes, so the neighbours' ARP entry for the gateway stays right.
    hyprd.cli("exec", "other", "ping", "-c1", "-W1", "10.88.0.1")
    hyprd.cli("rm", "-f", "other")
    assert veths(hyprd.ns) == []
    assert leftover_mounts(hyprd.root) == []
    assert hyprd.cli("ps", "-aq").stdout == ""


def test_run_attached_exit_code_and_auto_remove(hyprd: Hyprd) -> None:
    out = hyprd.cli("run", "--rm", "busybox", "sh", "-c", "echo hello from $(hostname); exit 3", rc=3)
    assert "hello from" in out.stdout
    hyprd.cli("run", "-d", "--rm", "--name", "brief", "busybox", "true")
    with hyprd.client() as client:
        wait_until(lambda: not client.containers(all=True), "the --rm workload to remove itself")
    assert veths(hyprd.ns) == []
    assert leftover_mounts(hyprd.root) == []


def test_wait_prints_each_exit_code_and_reports_unknown_names(hyprd: Hyprd) -> None:
    """Docker's `wait`: blocks until each workload stops, one exit code per line, exit 1 if a name is unknown."""
    hyprd.cli("run", "-d", "--name", "w3", "busybox", "sh", "-c", "sleep 1; exit 3")
    hyprd.cli("run", "-d", "--name", "w0", "busybox", "true")
    out = hyprd.cli("wait", "w3", "nosuch", "w0", rc=1)
    assert out.stdout == "3\n0\n"
    assert "Error response from daemon: No such container: nosuch" in out.stderr
    assert json.loads(hyprd.cli("inspect", "w3").stdout)[0]["State"]["Status"] == "exited"


def test_stdin_from_a_regular_file_and_arguments_that_are_not_utf8(hyprd: Hyprd, tmp_path: Path) -> None:
    """`run -i < file` (epoll refuses a regular file): all of it reaches the workload while its output comes back,
    even when both directions are larger than the buffers between; a name that is not UTF-8 is looked up as the
    bytes it is (Docker's 404), not a crash."""
    data = tmp_path / "in.bin"
    data.write_bytes(os.urandom(3 << 20).hex().encode())  # 6 MB of text, echoed back by cat
    with open(data, "rb") as stdin:
        out = subprocess.run([HYPR, "-H", f"unix://{hyprd.socket}", "run", "-i", "--rm", "busybox", "cat"],
                             stdin=stdin, capture_output=True, env=hyprd.env, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == data.read_bytes()
    odd = subprocess.run([HYPR, "-H", f"unix://{hyprd.socket}", "inspect", b"caf\xe9"], capture_output=True,
                         env=hyprd.env, timeout=60)  # fmt: skip
    assert odd.returncode == 1 and b"No such" in odd.stderr and b"Traceback" not in odd.stderr, odd.stderr


def test_options_after_the_image(hyprd: Hyprd) -> None:
    hyprd.cli("run", "-d", "busybox", "--name", "late", "-e", "GREETING=hi", "-p", "8081:80", "--", "sleep", "600")
    info = json.loads(hyprd.cli("inspect", "late").stdout)[0]
    assert info["Config"]["Env"] == ["GREETING=hi"]
    assert info["Config"]["Cmd"] == ["sleep", "600"]
    assert info["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8081"}]}
    assert hyprd.cli("exec", "late", "sh", "-c", "echo $GREETING").stdout.strip() == "hi"


def test_kill9_daemon_keeps_workloads_and_readopts_them(hyprd: Hyprd) -> None:
    hyprd.cli("run", "-d", "--name", "srv", "busybox", "httpd", "-f", "-p", "80")
    hyprd.cli("run", "-d", "--name", "cli", "busybox", "sleep", "600")
    hyprd.cli("run", "-d", "--name", "doomed", "busybox", "sleep", "600")
    srv_ip = ip_of(hyprd, "srv")
    cli_netns = hyprd.root / "run" / "workloads" / json.loads(hyprd.cli("inspect", "cli").stdout)[0]["Id"] / "netns"
    doomed_pid = json.loads(hyprd.cli("inspect", "doomed").stdout)[0]["State"]["Pid"]
    hyprd.kill9()
    # With the daemon gone, the workloads still answer each other (exec needs the daemon, so enter by hand).
    answer = sh("nsenter", f"--net={cli_netns}", "sh", "-c", HTTP_GET.format(ip=srv_ip, port=80)).stdout
    assert answer.startswith("HTTP/1.")
    os.kill(doomed_pid, signal.SIGKILL)
    hyprd.start()
    assert http_status(hyprd, "cli", srv_ip).startswith("HTTP/1.")
    with hyprd.client() as client:
        states = {c["Names"][0]: c["State"] for c in client.containers(all=True)}
    assert states == {"/srv": "running", "/cli": "running", "/doomed": "exited"}


def test_fifty_concurrent_workloads_get_distinct_addresses(hyprd: Hyprd) -> None:
    def start(n: int) -> str:
        with hyprd.client() as client:
            workload_id = client.create_container({"Image": "busybox", "Cmd": ["sleep", "600"]}, f"w{n:02d}")
            client.start(workload_id)
            return workload_id

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(start, range(50)))
    with hyprd.client() as client:
        containers = client.containers()
    ips = {c["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] for c in containers}
    assert len(containers) == 50 and len(ips) == 50
    script = " && ".join(
        f"nsenter --net={hyprd.root}/run/workloads/{c['Id']}/netns ping -c1 -W2 10.88.0.1 >/dev/null"
        for c in containers
    )
    run_in(hyprd.ns, "sh", "-c", script, timeout=120)


def test_bad_input_changes_nothing(hyprd: Hyprd) -> None:
    hyprd.cli("network", "create", "small", "--subnet", "10.40.0.0/29")
    hyprd.cli("run", "-d", "--name", "taken", "--network", "small", "--ip", "10.40.0.3", "busybox", "sleep", "600")
    with hyprd.client() as client:
        before = (client.containers(all=True), veths(hyprd.ns), sorted(leftover_mounts(hyprd.root)))

        def create(body: dict[str, object], name: str | None = None) -> None:
            client.create_container({"Image": "busybox", "Cmd": ["true"], **body}, name)

        cases = [
            (lambda: create({"Image": "nginx:latest"}), NotFound, "No such image: nginx:latest"),
            (lambda: create({"HostConfig": {"NetworkMode": "nope"}}), NotFound, "network nope not found"),
            (lambda: create({}, "taken"), Conflict, 'container name "/taken" is already in use'),
            (lambda: create({}, "x"), InvalidParameter, "Invalid container name"),
            (
                lambda: create(
                    {
                        "HostConfig": {"NetworkMode": "small"},
                        "NetworkingConfig": {
                            "EndpointsConfig": {"small": {"IPAMConfig": {"IPv4Address": "10.99.0.3"}}}
                        },
                    }
                ),
                InvalidParameter,
                "no configured subnet contains IP address 10.99.0.3",
            ),
            (
                lambda: create(
                    {
                        "HostConfig": {"NetworkMode": "small"},
                        "NetworkingConfig": {
                            "EndpointsConfig": {"small": {"IPAMConfig": {"IPv4Address": "10.40.0.3"}}}
                        },
                    }
                ),
                InvalidParameter,
                "Address already in use",
            ),
            (
                lambda: create({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}}),
                InvalidParameter,
                "invalid port specification",
            ),
            (lambda: create({"HostConfig": {"Runtime": "kata"}}), InvalidParameter, "unknown or invalid runtime"),
            (lambda: client.start("ghost"), NotFound, "No such container: ghost"),
            (lambda: client.remove("taken"), Conflict, "cannot remove a running container"),
            (lambda: client.connect("small", "taken"), Forbidden, "already exists in network small"),
        ]
        for action, error, message in cases:
            with pytest.raises(error, match=message):
                action()
        after = (client.containers(all=True), veths(hyprd.ns), sorted(leftover_mounts(hyprd.root)))
    assert after == before
    bad_publish = hyprd.cli("run", "-d", "-p", "80:80/sctp", "busybox", "true", rc=None)
    assert bad_publish.returncode != 0 and "invalid proto" in bad_publish.stderr


def test_a_command_that_fails_at_once_leaves_nothing_after_rm(hyprd: Hyprd) -> None:
    failed = hyprd.cli("run", "--name", "oops", "busybox", "no-such-command", rc=None)
    assert failed.returncode != 0
    hyprd.cli("rm", "-f", "oops")
    assert veths(hyprd.ns) == []
    assert leftover_mounts(hyprd.root) == []


def test_ip_lease_is_released_only_by_rm(hyprd: Hyprd) -> None:
    hyprd.cli("run", "-d", "--name", "first", "busybox", "sleep", "600")
    first_ip = ip_of(hyprd, "first")
    hyprd.cli("stop", "-t", "0", "first")
    hyprd.cli("run", "-d", "--name", "second", "busybox", "sleep", "600")
    assert ip_of(hyprd, "second") != first_ip
    with sqlite3.connect(hyprd.root / "data" / "hypr.db") as db:
        assert db.execute("SELECT count(*) FROM endpoints").fetchone()[0] == 2


def test_logs_restart_kill_and_ps_json(hyprd: Hyprd) -> None:
    # PID 1 of its namespace, the shell ignores SIGTERM unless it traps it (as in Docker).
    hyprd.cli("run", "-d", "--name", "talker", "busybox", "sh", "-c",
              "trap 'exit 143' TERM; echo one; echo two; echo three; sleep 600 & wait")  # fmt: skip
    wait_until(lambda: "three" in hyprd.cli("logs", "talker").stdout, "the workload's output")
    assert hyprd.cli("logs", "--tail", "2", "talker").stdout.split() == ["two", "three"]
    [row] = [json.loads(line) for line in hyprd.cli("ps", "--format", "json").stdout.splitlines()]
    assert row["Name"] == "talker" and row["Status"].startswith("Up") and row["Ip"].startswith("10.88.")
    pid = json.loads(hyprd.cli("inspect", "talker").stdout)[0]["State"]["Pid"]
    hyprd.cli("restart", "-t", "1", "talker")
    assert json.loads(hyprd.cli("inspect", "talker").stdout)[0]["State"]["Pid"] != pid
    hyprd.cli("kill", "-s", "TERM", "talker")
    wait_until(lambda: "Exited" in hyprd.cli("ps", "-a").stdout, "the workload to exit after SIGTERM")
    finished = hyprd.cli("run", "--name", "follower", "busybox", "sh", "-c", "echo start; sleep 1; echo end")
    assert finished.stdout.split() == ["start", "end"]
    assert hyprd.cli("logs", "-f", "follower", timeout=10).stdout.split() == ["start", "end"]


def test_restart_repairs_a_recreated_bridge_and_removes_orphan_links(hyprd: Hyprd) -> None:
    hyprd.cli("run", "-d", "--name", "solid", "busybox", "sleep", "600")
    alias = json.loads(sh("ip", "-n", hyprd.ns, "-j", "-d", "link", "show", "vbr0").stdout)[0]["ifalias"]
    hyprd.kill9()
    run_in(hyprd.ns, "ip", "link", "del", "vbr0")  # its ports fall off it
    run_in(hyprd.ns, "ip", "link", "add", "hvorphan", "type", "veth", "peer", "name", "hvorphanp")
    run_in(hyprd.ns, "ip", "link", "set", "hvorphan", "alias", alias)  # ours, but no endpoint owns it
    hyprd.start()
    hyprd.cli("exec", "solid", "ping", "-c1", "-W2", "10.88.0.1")
    port = json.loads(sh("ip", "-n", hyprd.ns, "-j", "-d", "link", "show", "master", "vbr0").stdout)
    assert len(port) == 1 and port[0]["linkinfo"]["info_slave_data"]["hairpin"] is True
    assert "hvorphan" not in links(hyprd.ns)


def test_restart_plugs_only_the_stopped_workloads_whose_link_is_gone(hyprd: Hyprd) -> None:
    """Start-up re-plugs a stopped workload's interface only when its host link is missing (a create cut short
    before its interfaces, a crash mid-connect): one whose link is gone is repaired and starts with its network,
    the one left intact is not touched (a runtime create per stopped workload made start-up grow with them)."""
    ports: dict[str, set[str]] = {}
    for name in ("intact", "broken"):
        with hyprd.client() as client:
            client.create_container({"Image": "busybox", "Cmd": ["sleep", "600"]}, name)
        ports[name] = {str(link["ifname"]) for link in _ports_of(hyprd, "vbr0")} - set().union(*ports.values())
    hyprd.kill9()
    (broken,) = ports["broken"]
    run_in(hyprd.ns, "ip", "link", "del", broken)
    hyprd.start()
    wait_until(lambda: broken in links(hyprd.ns), "the lost host link to be plugged again")
    log = hyprd.log.read_text()
    assert "plugging the interfaces of broken again" in log
    assert "plugging the interfaces of intact" not in log
    hyprd.cli("start", "broken")
    hyprd.cli("exec", "broken", "ping", "-c1", "-W2", "10.88.0.1")


def _ports_of(hyprd: Hyprd, bridge: str) -> list[dict[str, object]]:
    out = sh("ip", "-n", hyprd.ns, "-j", "link", "show", "master", bridge).stdout
    return list(json.loads(out or "[]"))


def test_restart_policy_restarts_with_back_off_and_stop_ends_it(hyprd: Hyprd) -> None:
    hyprd.cli("run", "-d", "--name", "flaky", "--restart", "on-failure", "busybox", "sh", "-c", "echo run; exit 1")
    wait_until(lambda: hyprd.cli("logs", "flaky").stdout.count("run") >= 3, "three runs of the failing workload")
    runs = hyprd.cli("logs", "flaky").stdout.count("run")
    assert runs <= 8, f"{runs} runs in a few seconds: no back-off"
    hyprd.cli("run", "-d", "--name", "steady", "--restart", "always", "busybox", "sleep", "600")
    hyprd.cli("stop", "-t", "1", "steady")
    with hyprd.client() as client:
        assert client.container("steady")["State"]["Status"] == "exited"
        hyprd.cli("rm", "-f", "flaky")
        assert client.container("steady")["State"]["Status"] == "exited"  # stopped on purpose stays stopped
