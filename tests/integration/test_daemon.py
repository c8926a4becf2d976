"""The daemon as a user meets it first: version, info, errors when it is not there, and its start-up checks."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.integration.harness import HYPR, Hyprd, run_in, sh, wait_until


def test_version_and_info(hyprd: Hyprd) -> None:
    version = hyprd.cli("version").stdout
    assert "Client:" in version and "Server: hyprd" in version and "API version: 1.56" in version
    info = hyprd.cli("info").stdout
    assert f"Data dir:         {hyprd.root / 'data'}" in info
    assert "nftables" in info and "KVM usable:" in info and "Networks:         bridge" in info


def test_cli_without_daemon_says_so(tmp_path: Path) -> None:
    proc = sh(HYPR, "-H", f"unix://{tmp_path}/hypr.sock", "network", "ls", rc=1)
    assert f"Cannot connect to the hypr daemon at unix://{tmp_path}/hypr.sock. Is hyprd running?" in proc.stderr


def test_warns_about_other_tables_dropping_forwarded_traffic(host_ns: str, tmp_root: Path) -> None:
    script = "table ip filter {\n chain FORWARD {\n type filter hook forward priority filter; policy drop;\n }\n}\n"
    sh("nsenter", f"--net=/run/netns/{host_ns}", "nft", "-f", "-", input=script)
    daemon = Hyprd(ns=host_ns, root=tmp_root)
    daemon.start()
    try:
        warning = "table ip filter chain FORWARD (hook forward) has policy drop"
        wait_until(lambda: warning in daemon.log.read_text(), "the warning (checked right after start-up)")
        tables = run_in(host_ns, "nft", "list", "tables").stdout
        assert "table ip filter" in tables and "table inet hypr" in tables  # theirs untouched, ours added
    finally:
        daemon.stop()


def test_changing_a_udp_mapping_flushes_its_conntrack_entries(hyprd: Hyprd) -> None:
    hyprd.cli("run", "-d", "--name", "udp1", "-p", "5999:53/udp", "busybox", "sleep", "600")
    count = (
        "from pyroute2 import Conntrack\n"
        "from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple\n"
        "print(len(list(Conntrack().dump_entries(tuple_orig=NFCTAttrTuple(proto=17, dport=5999)))))\n"
    )
    send = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('10.88.0.1', 5999))"
    run_in(hyprd.ns, sys.executable, "-c", send)
    assert run_in(hyprd.ns, sys.executable, "-c", count).stdout.strip() == "1"
    hyprd.cli("rm", "-f", "udp1")
    wait_until(
        lambda: run_in(hyprd.ns, sys.executable, "-c", count).stdout.strip() == "0", "the UDP flow to be flushed"
    )


def test_start_up_serves_names_before_the_firewall_transaction(hyprd: Hyprd) -> None:
    """At start-up the DNS step runs right after the links, before the whole firewall is applied and the ports are
    held (the full reconcile's log line lists the steps in the order they ran)."""
    hyprd.cli("run", "-d", "--name", "a1", "busybox", "sleep", "600")
    hyprd.kill9()
    hyprd.start()
    assert hyprd.cli("exec", "a1", "nslookup", "a1").returncode == 0
    lines = [line for line in hyprd.log.read_text().splitlines() if "full reconcile of" in line]
    steps = [part.strip().rsplit(" ", 2)[0] for part in lines[-1].split(" endpoints: ", 1)[1].split(",")]
    assert steps == ["links", "dns", "host resolver", "firewall", "ports"], lines[-1]
