"""Users' bug reports against Docker and Podman, replayed against hypr with real packets: each case is the report's
input with its right value, and each kind is tried with more than that one input."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.integration.dns_topology import OUTSIDE_ADDRESS, ZONE_SERVER, dns_daemon
from tests.integration.harness import Hyprd, host_server, links, run_in, vm_marks, wait_until
from tests.integration.topology import HOST_LAN, INTERNET, topology


def default_route(hyprd: Hyprd, name: str) -> str:
    routes = hyprd.cli("exec", name, "ip", "route").stdout.splitlines()
    return next(line.split()[2] for line in routes if line.startswith("default"))


def nameserver(hyprd: Hyprd, name: str) -> str:
    lines = hyprd.cli("exec", name, "cat", "/etc/resolv.conf").stdout.splitlines()
    return next(line.split()[1] for line in lines if line.startswith("nameserver"))


def gateway_of(hyprd: Hyprd, network: str) -> str:
    return str(json.loads(hyprd.cli("network", "inspect", network).stdout)[0]["IPAM"]["Config"][0]["Gateway"])


# -- 1. names from the first instruction ------------------------------------------------------------------------------


def test_a_new_workload_resolves_its_peers_on_its_first_instruction(hyprd: Hyprd) -> None:
    hyprd.cli("network", "create", "n1")
    hyprd.cli("run", "-d", "--name", "pa1", "--network", "n1", "busybox", "sleep", "600")
    ip = json.loads(hyprd.cli("inspect", "pa1").stdout)[0]["NetworkSettings"]["Networks"]["n1"]["IPAddress"]

    def first_query(i: int) -> str:
        return hyprd.cli("run", "--rm", "--network", "n1", "busybox", "nslookup", "pa1", rc=None).stdout

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(first_query, range(12)))
    assert all(ip in a for a in answers), answers
    # Its own name too, and from the host image with glibc's resolver (getent) and dig, on its first instruction.
    for i in range(10):
        selfie = hyprd.cli(
            "run", "--rm", "--name", f"selfie{i}", "--network", "n1", "busybox", "nslookup", f"selfie{i}"
        )
        assert selfie.returncode == 0, selfie.stdout
        out = hyprd.cli("run", "--rm", "--network", "n1", "host", "getent", "hosts", "pa1").stdout
        assert out.split()[0] == ip
        out = hyprd.cli("run", "--rm", "--network", "n1", "host", "dig", "+short", "+tries=1", "pa1").stdout
        assert out.split() == [ip]


def test_names_are_served_at_once_after_start_restart_rename_and_connect(hyprd: Hyprd) -> None:
    """Every way a workload's process starts asks on its first instruction: run, start, restart, a restart policy,
    a start or restart right after a daemon restart, a start after `network connect` (the peer is on the network
    connected), and after `rename` (the new name)."""
    hyprd.cli("network", "create", "n1")
    hyprd.cli("network", "create", "n2")
    hyprd.cli("run", "-d", "--name", "peer", "--network", "n1", "busybox", "sleep", "600")
    hyprd.cli("run", "-d", "--name", "late", "--network", "n2", "busybox", "sleep", "600")

    def asks(name: str) -> str:
        return f"nslookup {name} >/dev/null && echo ok || echo fail; sleep 600"

    hyprd.cli("run", "-d", "--name", "asker", "--network", "n1", "busybox", "sh", "-c", asks("peer"))
    hyprd.cli("stop", "-t", "0", "asker")
    hyprd.cli("start", "asker")
    hyprd.cli("restart", "-t", "0", "asker")
    hyprd.cli("stop", "-t", "0", "asker")
    hyprd.restart()
    hyprd.cli("start", "asker")
    hyprd.restart()
    hyprd.cli("restart", "-t", "0", "asker")
    # A stopped workload connected to a network asks for a peer there on its first instruction.
    hyprd.docker("create", "--name", "joiner", "--network", "n1", "busybox", "sh", "-c", asks("late"))
    hyprd.cli("network", "connect", "n2", "joiner")
    hyprd.cli("start", "joiner")
    hyprd.cli("rename", "peer", "renamed")
    hyprd.cli("run", "-d", "--name", "again", "--restart", "on-failure", "--network", "n1", "busybox", "sh", "-c",
              "nslookup renamed >/dev/null && echo ok || echo fail; sleep 1; exit 1")  # fmt: skip
    wait_until(lambda: len(hyprd.cli("logs", "again").stdout.split()) >= 3, "three runs of a restarting workload", 30)
    wait_until(lambda: hyprd.cli("logs", "joiner").stdout.strip() != "", "the joiner's answer")
    logs = {name: hyprd.cli("logs", name).stdout.split() for name in ("asker", "joiner", "again")}
    assert logs["asker"] == ["ok"] * 5 and logs["joiner"] == ["ok"] and set(logs["again"]) == {"ok"}, logs
    assert "Address" in hyprd.cli("exec", "asker", "nslookup", "renamed").stdout
    hyprd.cli("network", "connect", "n2", "asker")
    assert hyprd.cli("exec", "asker", "nslookup", "late").returncode == 0


# -- 3. which network is the gateway -----------------------------------------------------------------------------------


def test_an_internal_network_listed_first_does_not_take_the_default_route(hyprd: Hyprd) -> None:
    with topology(hyprd.ns) as net:  # a remote client and an internet around the host
        hyprd.cli("network", "create", "--internal", "int1")
        hyprd.cli("network", "create", "pub1")
        hyprd.cli("run", "-d", "--name", "g1", "--network", "int1", "--network", "pub1", "-p", "9300:80",
                  "busybox", "httpd", "-f", "-p", "80")  # fmt: skip
        assert default_route(hyprd, "g1") == gateway_of(hyprd, "pub1")
        assert nameserver(hyprd, "g1") == gateway_of(hyprd, "pub1")
        assert hyprd.cli("exec", "g1", "ping", "-c1", "-W2", INTERNET).returncode == 0  # egress
        answer = run_in(net.client, "sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {HOST_LAN} 9300",
                        rc=None).stdout  # fmt: skip
        assert answer.startswith("HTTP/1."), answer
        # The interfaces keep their attach order: eth0 is still int1's.
        settings = json.loads(hyprd.cli("inspect", "g1").stdout)[0]["NetworkSettings"]
        eth0 = hyprd.cli("exec", "g1", "ip", "-o", "-4", "addr", "show", "eth0").stdout
        assert f" {settings['Networks']['int1']['IPAddress']}/" in eth0
        assert settings["Gateway"] == gateway_of(hyprd, "pub1")


def test_gw_priority_then_external_then_name_on_run_connect_and_disconnect(hyprd: Hyprd) -> None:
    for name in ("a-net", "b-net", "c-net"):
        hyprd.cli("network", "create", name)
    hyprd.cli("network", "create", "--internal", "0-internal")
    hyprd.cli("run", "-d", "--name", "w1", "--network", "b-net", "--network", "a-net", "--network", "0-internal",
              "busybox", "sleep", "600")  # fmt: skip
    assert default_route(hyprd, "w1") == gateway_of(hyprd, "a-net")  # by name among external networks
    hyprd.cli("network", "connect", "--gw-priority", "10", "c-net", "w1")
    assert default_route(hyprd, "w1") == gateway_of(hyprd, "c-net")
    assert nameserver(hyprd, "w1") == gateway_of(hyprd, "c-net")
    nets = json.loads(hyprd.cli("inspect", "w1").stdout)[0]["NetworkSettings"]["Networks"]
    assert nets["c-net"]["GwPriority"] == 10 and nets["a-net"]["GwPriority"] == 0
    assert nets["c-net"]["HostInterface"].startswith("hv")
    hyprd.cli("network", "disconnect", "c-net", "w1")
    assert default_route(hyprd, "w1") == gateway_of(hyprd, "a-net")
    hyprd.cli("run", "-d", "--name", "w2", "--network", "b-net", "--gw-priority", "5", "--network", "a-net",
              "busybox", "sleep", "600")  # fmt: skip
    assert default_route(hyprd, "w2") == gateway_of(hyprd, "b-net")
    # Equal priorities: by name. The docker CLI's long --network syntax, and its `network connect --gw-priority`.
    hyprd.cli("run", "-d", "--name", "w4", "--network", "name=c-net,gw-priority=2", "--network",
              "name=b-net,gw-priority=2", "--network", "name=a-net,gw-priority=1", "busybox", "sleep", "600")  # fmt: skip
    assert default_route(hyprd, "w4") == gateway_of(hyprd, "b-net")
    hyprd.docker("network", "connect", "--gw-priority", "7", "0-internal", "w4")  # internal: never the gateway
    assert default_route(hyprd, "w4") == gateway_of(hyprd, "b-net")
    hyprd.docker("network", "disconnect", "b-net", "w4")  # the gateway network goes: the next one by name
    assert default_route(hyprd, "w4") == gateway_of(hyprd, "c-net")
    assert nameserver(hyprd, "w4") == gateway_of(hyprd, "c-net")
    shown = json.loads(hyprd.docker("inspect", "w4").stdout)[0]["NetworkSettings"]["Networks"]
    assert {name: n["GwPriority"] for name, n in shown.items()} == {"c-net": 2, "a-net": 1, "0-internal": 7}


def test_an_internal_network_never_carries_the_default_route(hyprd: Hyprd) -> None:
    """Docker's bridge driver gives an internal network no gateway: whatever the priorities it never takes the
    default route (a negative priority elsewhere does not hand it over), and a workload on internal networks only
    has no default route at all; its resolver is still its network's gateway."""
    with topology(hyprd.ns) as net:
        hyprd.cli("network", "create", "a-net")
        hyprd.cli("network", "create", "--internal", "0-internal")
        hyprd.cli("network", "create", "--internal", "1-internal")
        hyprd.cli("run", "-d", "--name", "w3", "--network", "a-net", "--gw-priority", "-1", "--network", "0-internal",
                  "-p", "9301:80", "busybox", "httpd", "-f", "-p", "80")  # fmt: skip
        assert default_route(hyprd, "w3") == gateway_of(hyprd, "a-net")
        assert nameserver(hyprd, "w3") == gateway_of(hyprd, "a-net")
        assert hyprd.cli("exec", "w3", "ping", "-c1", "-W2", INTERNET).returncode == 0  # egress
        answer = run_in(net.client, "sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {HOST_LAN} 9301",
                        rc=None).stdout  # fmt: skip
        assert answer.startswith("HTTP/1."), answer  # the reply leaves by the way the request came in
        hyprd.cli("run", "-d", "--name", "w5", "--network", "1-internal", "--network", "name=0-internal,gw-priority=3",
                  "busybox", "sleep", "600")  # fmt: skip
        routes = hyprd.cli("exec", "w5", "ip", "route").stdout
        assert "default" not in routes, routes
        assert nameserver(hyprd, "w5") == gateway_of(hyprd, "0-internal")
        assert "Address" in hyprd.cli("exec", "w5", "nslookup", "w3").stdout  # a peer on 0-internal
        out = hyprd.cli("exec", "w5", "ping", "-c1", "-W2", INTERNET, rc=None)
        assert out.returncode != 0 and "unreachable" in out.stderr.lower(), out  # at once, as in Docker
        # Connected to a network with a way out (however low its priority), it gets its default route there.
        hyprd.cli("network", "connect", "--gw-priority", "-5", "a-net", "w5")
        assert default_route(hyprd, "w5") == gateway_of(hyprd, "a-net")
        hyprd.cli("network", "disconnect", "a-net", "w5")
        assert "default" not in hyprd.cli("exec", "w5", "ip", "route").stdout


def test_compose_backend_internal_sorted_first_is_not_the_gateway(hyprd: Hyprd, tmp_path: Path) -> None:
    file = tmp_path / "compose.yml"
    file.write_text(
        "services:\n  api:\n    image: busybox\n    command: [sleep, '600']\n    networks: [frontend, backend]\n"
        "  pri:\n    image: busybox\n    command: [sleep, '600']\n"
        "    networks:\n      frontend: {}\n      backend: {gw_priority: 5}\n      zeta: {gw_priority: 1}\n"
        "networks:\n  frontend: {}\n  zeta: {}\n  backend:\n    internal: true\n"
    )
    hyprd.cli("compose", "-p", "gw", "-f", str(file), "up", "-d")
    assert default_route(hyprd, "gw-api-1") == gateway_of(hyprd, "gw_frontend")
    assert default_route(hyprd, "gw-pri-1") == gateway_of(hyprd, "gw_zeta")  # backend is internal: no gateway
    shown = json.loads(hyprd.cli("inspect", "gw-pri-1").stdout)[0]["NetworkSettings"]["Networks"]
    assert {name: n["GwPriority"] for name, n in shown.items()} == {"gw_frontend": 0, "gw_backend": 5, "gw_zeta": 1}
    hyprd.cli("compose", "-p", "gw", "-f", str(file), "down")


# -- 4. the workload's resolver configuration --------------------------------------------------------------------------


def test_the_hosts_search_domains_and_options_reach_the_workload(tmp_path: Path) -> None:
    with dns_daemon() as (hyprd, _net):
        conf = tmp_path / "resolv.conf"
        conf.write_text(f"nameserver {ZONE_SERVER}\nsearch corp.test example.test\noptions timeout:2 attempts:3\n")
        hyprd.stop()
        hyprd.env_extra["HYPR_RESOLV_CONF"] = str(conf)
        hyprd.start()
        hyprd.cli("network", "create", "n4")
        # glibc's resolver in a workload: `intranet` is found as intranet.example.test through the search list.
        out = hyprd.cli("run", "--rm", "--network", "n4", "host", "getent", "hosts", "intranet").stdout.split()
        assert out[:2] == [OUTSIDE_ADDRESS, "intranet.example.test"]
        resolv = hyprd.cli("run", "--rm", "--network", "n4", "busybox", "cat", "/etc/resolv.conf").stdout
        assert "search corp.test example.test\n" in resolv and "options ndots:0 timeout:2 attempts:3\n" in resolv
        # The host's file changes: the next workload sees the new list.
        conf.write_text(f"nameserver {ZONE_SERVER}\nsearch example.test\n")
        resolv = hyprd.cli("run", "--rm", "--network", "n4", "busybox", "cat", "/etc/resolv.conf").stdout
        assert "search example.test\n" in resolv


def test_dns_search_options_add_host_hostname_and_domainname(hyprd: Hyprd) -> None:
    hyprd.cli("network", "create", "n5")
    hyprd.cli(
        "run", "-d", "--name", "r1", "--network", "n5", "--dns-search", "a.test", "--dns-search", "b.test",
        "--dns-option", "ndots:2", "--dns-option", "timeout:1", "--add-host", "db.local:192.0.2.10",
        "--add-host", "gw:host-gateway", "--add-host", "v6:2001:db8::1", "--hostname", "h1", "--domainname", "dom.test",
        "busybox", "sleep", "600",
    )  # fmt: skip
    resolv = hyprd.cli("exec", "r1", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {gateway_of(hyprd, 'n5')}\n" in resolv
    assert "search a.test b.test\n" in resolv and "options ndots:2 timeout:1\n" in resolv
    hosts = hyprd.cli("exec", "r1", "cat", "/etc/hosts").stdout
    assert "192.0.2.10\tdb.local\n" in hosts and f"{gateway_of(hyprd, 'n5')}\tgw\n" in hosts
    assert "2001:db8::1\tv6\n" in hosts
    ping = hyprd.cli("exec", "r1", "ping", "-c1", "-W1", "db.local", rc=None).stdout  # resolved through /etc/hosts
    assert ping.startswith("PING db.local (192.0.2.10)")
    assert hyprd.cli("exec", "r1", "hostname").stdout.strip() == "h1"
    assert hyprd.cli("exec", "r1", "cat", "/proc/sys/kernel/domainname").stdout.strip() == "dom.test"
    assert "\th1.dom.test\th1\n" in hosts
    host_config = json.loads(hyprd.cli("inspect", "r1").stdout)[0]["HostConfig"]
    assert host_config["DnsSearch"] == ["a.test", "b.test"] and host_config["DnsOptions"] == ["ndots:2", "timeout:1"]
    assert host_config["ExtraHosts"] == ["db.local:192.0.2.10", "gw:host-gateway", "v6:2001:db8::1"]
    none = hyprd.cli("run", "--rm", "--network", "n5", "--dns-search", ".", "busybox", "cat", "/etc/resolv.conf")
    assert "search" not in none.stdout
    for bad, message in (
        (("--dns", "not-an-ip"), "invalid IP address in dns"),
        (("--add-host", "nocolon"), "invalid extra host"),
        (("--add-host", "x:999.1.1.1"), "invalid IP address in add-host"),
        (("--dns-search", "bad domain"), "invalid DNS search domain"),
    ):
        out = hyprd.cli("run", "--rm", *bad, "busybox", "true", rc=None)
        assert out.returncode != 0 and message in out.stderr, (bad, out.stderr)
    assert hyprd.cli("ps", "-aq").stdout.split() == [json.loads(hyprd.cli("inspect", "r1").stdout)[0]["Id"][:12]]


def test_compose_resolver_keys(hyprd: Hyprd, tmp_path: Path) -> None:
    file = tmp_path / "compose.yml"
    file.write_text(
        "services:\n  app:\n    image: busybox\n    command: [sleep, '600']\n    hostname: apphost\n"
        "    domainname: corp.test\n    dns_search: [x.test]\n    dns_opt: [ndots:3]\n"
        "    extra_hosts: ['svc.local:192.0.2.20']\n"
    )
    hyprd.cli("compose", "-p", "rs", "-f", str(file), "up", "-d")
    resolv = hyprd.cli("exec", "rs-app-1", "cat", "/etc/resolv.conf").stdout
    assert "search x.test\n" in resolv and "options ndots:3\n" in resolv
    hosts = hyprd.cli("exec", "rs-app-1", "cat", "/etc/hosts").stdout
    assert "192.0.2.20\tsvc.local\n" in hosts and "\tapphost.corp.test\tapphost\n" in hosts
    hyprd.cli("compose", "-p", "rs", "-f", str(file), "down")
    # The other forms: extra_hosts as a map and as `name=ip`, host-gateway, IPv6 in brackets; dns and dns_search
    # as strings.
    file.write_text(
        "services:\n  map:\n    image: busybox\n    command: [sleep, '600']\n    dns: 192.0.2.53\n"
        "    dns_search: y.test\n    extra_hosts:\n      a.local: 192.0.2.21\n      gw.local: host-gateway\n"
        "  eq:\n    image: busybox\n    command: [sleep, '600']\n"
        "    extra_hosts: ['b.local=192.0.2.22', 'v6.local:[2001:db8::22]', 'host.docker.internal:host-gateway']\n"
    )
    hyprd.cli("compose", "-p", "rs", "-f", str(file), "up", "-d")
    gateway = gateway_of(hyprd, "rs_default")
    hosts = hyprd.cli("exec", "rs-map-1", "cat", "/etc/hosts").stdout
    assert "192.0.2.21\ta.local\n" in hosts and f"{gateway}\tgw.local\n" in hosts, hosts
    hosts = hyprd.cli("exec", "rs-eq-1", "cat", "/etc/hosts").stdout
    assert "192.0.2.22\tb.local\n" in hosts and "2001:db8::22\tv6.local\n" in hosts, hosts
    assert f"{gateway}\thost.docker.internal\n" in hosts
    resolv = hyprd.cli("exec", "rs-map-1", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {gateway}\n" in resolv and "search y.test\n" in resolv and "192.0.2.53" not in resolv
    host_config = json.loads(hyprd.cli("inspect", "rs-map-1").stdout)[0]["HostConfig"]
    assert host_config["Dns"] == ["192.0.2.53"] and host_config["DnsSearch"] == ["y.test"]
    assert sorted(host_config["ExtraHosts"]) == ["a.local:192.0.2.21", "gw.local:host-gateway"]
    hyprd.cli("compose", "-p", "rs", "-f", str(file), "down")


# -- 5. a host port range for one container port ----------------------------------------------------------------------


def test_a_host_port_range_publishes_the_first_free_port(hyprd: Hyprd, tmp_path: Path) -> None:
    with host_server(hyprd.ns, 8000):  # 8000 is taken on the host
        hyprd.cli("run", "-d", "--name", "r1", "-p", "8000-8010:80", "busybox", "httpd", "-f", "-p", "80")
        assert hyprd.cli("port", "r1", "80").stdout.strip() == "0.0.0.0:8001"
        shown = json.loads(hyprd.cli("inspect", "r1").stdout)[0]  # as asked, and as chosen
        assert shown["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8000-8010"}]}
        assert shown["NetworkSettings"]["Ports"]["80/tcp"][0] == {"HostIp": "0.0.0.0", "HostPort": "8001"}
        hyprd.cli("run", "-d", "--name", "r2", "-p", "8000-8010:80", "busybox", "httpd", "-f", "-p", "80")
        assert hyprd.cli("port", "r2", "80").stdout.strip() == "0.0.0.0:8002"
        answer = run_in(hyprd.ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
                        "http://127.0.0.1:8002/", rc=None).stdout  # fmt: skip
        assert answer == "404"  # busybox httpd answers (no index page): the port is published
        hyprd.cli("run", "-d", "--name", "r3", "-p", "127.0.0.1:8000-8001:53/udp", "busybox", "sleep", "600")
        assert hyprd.cli("port", "r3", "53/udp").stdout.strip() == "127.0.0.1:8000"  # udp 8000 was free
        full = hyprd.cli("run", "-d", "--name", "r4", "-p", "8001-8002:80", "busybox", "sleep", "600", rc=125)
        assert "Bind for 0.0.0.0:8001-8002 failed: all ports are allocated" in full.stderr
        # The docker CLI sends the range as HostPort "8003-8010": the same first free port.
        hyprd.docker("run", "-d", "--name", "r5", "-p", "8000-8010:80", "-p", "127.0.0.1:8000-8001:53/udp",
                     "busybox", "sleep", "600")  # fmt: skip
        assert hyprd.docker("port", "r5", "80").stdout.strip() == "0.0.0.0:8003"
        assert hyprd.docker("port", "r5", "53/udp").stdout.strip() == "127.0.0.1:8001"
    unequal = hyprd.cli("run", "-d", "-p", "8000-8010:80-81", "busybox", rc=125)
    assert "invalid ranges specified for container and host Ports: 80-81 and 8000-8010" in unequal.stderr
    assert len(hyprd.cli("ps", "-aq").stdout.split()) == 4  # nothing made for the refused ones
    file = tmp_path / "compose.yml"
    file.write_text(
        "services:\n  web:\n    image: busybox\n    command: [httpd, -f, -p, '80']\n"
        "    ports:\n      - target: 80\n        published: '8000-8010'\n"
        "      - {target: 81, published: '8000-8010', protocol: udp, host_ip: 127.0.0.1}\n"
        "      - '8020-8021:82'\n"
    )
    hyprd.cli("compose", "-p", "pr", "-f", str(file), "up", "-d")
    assert hyprd.cli("port", "pr-web-1", "80").stdout.strip() == "0.0.0.0:8000"  # the host's server has gone
    assert hyprd.cli("port", "pr-web-1", "81/udp").stdout.strip() == "127.0.0.1:8002"  # r3, r5 hold 8000-8001
    assert hyprd.cli("port", "pr-web-1", "82").stdout.strip() == "0.0.0.0:8020"
    hyprd.cli("compose", "-p", "pr", "-f", str(file), "down")


# -- 6. what the networking page shows ----------------------------------------------------------------------------------


def test_every_network_shows_its_bridge_and_commands_that_cannot_run_exit_127_or_126(hyprd: Hyprd) -> None:
    hyprd.cli("network", "create", "mynet")
    options = json.loads(hyprd.cli("network", "inspect", "mynet").stdout)[0]["Options"]
    assert options == {"com.docker.network.bridge.name": "vbr1"}
    assert hyprd.cli("run", "--rm", "busybox", "no-such-command", rc=127).returncode == 127
    assert hyprd.cli("run", "--rm", "busybox", "/etc/passwd", rc=126).returncode == 126
    directory = hyprd.cli("run", "-d", "busybox", "/etc", rc=126)  # detached too: the start fails
    assert 'exec: "/etc": is a directory' in directory.stderr
    assert hyprd.cli("run", "--rm", "--network", "no-such-net", "busybox", "true", rc=125).returncode == 125
    assert hyprd.docker("run", "--rm", "busybox", "/bin", rc=126).returncode == 126
    assert hyprd.cli("run", "busybox", "sh", "-c", "exit 3", rc=3).returncode == 3


# -- 7. a daemon whose mount namespace differs from the workloads' -----------------------------------------------------


def test_a_daemon_in_another_mount_namespace_keeps_workloads_whole(host_ns: str, tmp_root: Path) -> None:
    daemon = Hyprd(ns=host_ns, root=tmp_root, private_mounts=True)
    daemon.start()
    try:
        daemon.cli("network", "create", "n8")
        daemon.cli("run", "-d", "--name", "up1", "busybox", "sleep", "600")
        daemon.cli("run", "-d", "--name", "down1", "--network", "bridge", "--network", "n8", "busybox", "sleep", "600")
        daemon.cli("run", "-d", "--name", "peer8", "--network", "n8", "busybox", "sleep", "600")
        daemon.cli("stop", "-t", "0", "down1")
        daemon.restart()  # the new daemon does not see the namespace pins the old one made
        daemon.cli("start", "down1")  # the first start works: its namespace is made again, both interfaces in it
        daemon.cli("exec", "down1", "ping", "-c1", "-W2", "10.88.0.1")
        daemon.cli("exec", "down1", "ping", "-c1", "-W2", gateway_of(daemon, "n8"))
        assert "Address" in daemon.cli("exec", "down1", "nslookup", "peer8").stdout
        daemon.cli("stop", "-t", "0", "down1")
        daemon.restart()
        daemon.cli("network", "disconnect", "bridge", "down1")  # changed while its namespace is lost
        daemon.cli("start", "down1")
        assert default_route(daemon, "down1") == gateway_of(daemon, "n8")
        daemon.cli("network", "create", "n7")
        daemon.cli("network", "connect", "n7", "up1")  # a running workload keeps its namespace and links
        daemon.cli("exec", "up1", "ping", "-c1", "-W2", "10.88.0.1")
        daemon.cli("exec", "up1", "ping", "-c1", "-W2", gateway_of(daemon, "n7"))
        daemon.cli("network", "disconnect", "n7", "up1")
        daemon.cli("exec", "up1", "ping", "-c1", "-W2", "10.88.0.1")
        daemon.restart()
        daemon.cli("stop", "-t", "0", "up1")
        daemon.restart()
        daemon.cli("start", "up1")
        daemon.cli("exec", "up1", "ping", "-c1", "-W2", "10.88.0.1")
    finally:
        for name in ("up1", "down1", "peer8"):
            daemon.cli("rm", "-f", name, rc=None)
        daemon.stop()
    assert [link for link in links(host_ns) if link.startswith("hv")] == []


def _vm(test: Callable[..., None]) -> Callable[..., None]:
    for mark in vm_marks():
        test = mark(test)
    return test


@_vm
def test_a_vm_resolves_its_peers_on_its_first_instruction_and_picks_the_external_gateway(hyprd: Hyprd) -> None:
    hyprd.cli("network", "create", "--internal", "int9")
    hyprd.cli("network", "create", "pub9")
    hyprd.cli("run", "-d", "--name", "pa9", "--network", "pub9", "busybox", "sleep", "600")
    script = "nslookup pa9 | tail -n +3; ip route | grep default; cat /etc/resolv.conf /etc/hosts"
    # int9 first and with the higher priority: an internal network still never takes the default route. The
    # resolver flags reach the guest as they reach a sandbox.
    out = hyprd.cli("run", "--rm", "--runtime", "vm", "--network", "int9", "--gw-priority", "5", "--network", "pub9",
                    "--dns-search", "corp.test", "--dns-option", "ndots:2", "--add-host", "db.local:192.0.2.10",
                    "--add-host", "gw:host-gateway", "--hostname", "vmh", "--domainname", "dom.test",
                    "busybox", "sh", "-c", script, timeout=240).stdout  # fmt: skip
    ip = json.loads(hyprd.cli("inspect", "pa9").stdout)[0]["NetworkSettings"]["Networks"]["pub9"]["IPAddress"]
    assert ip in out, out
    pub9 = gateway_of(hyprd, "pub9")
    assert f"default via {pub9}" in out and f"nameserver {pub9}\n" in out
    assert "search corp.test\n" in out and "options ndots:2\n" in out
    assert "192.0.2.10\tdb.local\n" in out and f"{pub9}\tgw\n" in out and "\tvmh.dom.test\tvmh\n" in out
    # Its TAPs were tap0 and tap1 (the networking page's names), numbered per daemon, stored, and free again once
    # it is gone; inspect shows each endpoint's host interface.
    hyprd.docker("create", "--name", "v1", "--runtime", "vm", "--network", "pub9", "busybox", "true")
    hyprd.docker("network", "connect", "int9", "v1")
    hyprd.docker("create", "--name", "v2", "--runtime", "vm", "--network", "pub9", "busybox", "true")
    hyprd.cli("rm", "v1")
    hyprd.docker("create", "--name", "v3", "--runtime", "vm", "--network", "int9", "busybox", "true")

    def taps(name: str) -> dict[str, str]:
        networks = json.loads(hyprd.cli("inspect", name).stdout)[0]["NetworkSettings"]["Networks"]
        return {network: settings["HostInterface"] for network, settings in networks.items()}

    assert taps("v2") == {"pub9": "tap2"} and taps("v3") == {"int9": "tap0"}
    assert "tap2" in links(hyprd.ns, "tun")
