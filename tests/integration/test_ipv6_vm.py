"""IPv6 in a microVM (issue 15): the guest init sets the address and route statically, and the VM is a dual-stack
citizen like a sandbox: ping6 and TCP to a sandbox, AAAA from the gateway, anti-spoofing on its TAP (slow: TCG)."""

from __future__ import annotations

import json

import pytest

from tests.integration.harness import Hyprd, vm_marks

pytestmark = [*vm_marks(), pytest.mark.slow]

BOOT = 120.0  # seconds: a TCG boot, possibly next to another one on 2 busy cores


def test_vm_on_a_dual_stack_network(hyprd: Hyprd) -> None:
    hyprd.cli("network", "create", "--ipv6", "--subnet", "fd00:7::/64", "dual")
    hyprd.cli("run", "-d", "--runtime", "vm", "--memory", "128m", "--network", "dual", "--ip6", "fd00:7::10",
              "--name", "guest", "busybox", "httpd", "-f", "-p", "80")  # fmt: skip
    hyprd.cli("run", "-d", "--network", "dual", "--name", "peer", "busybox", "httpd", "-f", "-p", "80")
    inspected = json.loads(hyprd.cli("inspect", "guest").stdout)[0]["NetworkSettings"]["Networks"]["dual"]
    assert inspected["GlobalIPv6Address"] == "fd00:7::10"

    def vm(*argv: str, rc: int | None = 0) -> str:
        return hyprd.cli("exec", "guest", *argv, rc=rc, timeout=BOOT + 30).stdout

    assert "inet6 fd00:7::10/64" in vm("ip", "-6", "addr", "show", "eth0")
    assert "default via fd00:7::1" in vm("ip", "-6", "route")
    assert "0 packets received" not in vm("ping", "-6", "-c", "1", "-W", "3", "fd00:7::1")  # the gateway
    peer = "fd00:7::2"
    get = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} 80"
    assert vm("sh", "-c", get.format(host=peer)).startswith("HTTP/1.")  # VM -> sandbox over IPv6
    back = hyprd.cli("exec", "peer", "sh", "-c", get.format(host="fd00:7::10")).stdout
    assert back.startswith("HTTP/1.")  # sandbox -> VM over IPv6
    assert peer in vm("nslookup", "-type=AAAA", "peer")  # AAAA through the gateway
    # A second address the IPAM did not give: its packets do not leave the TAP.
    vm("ip", "-6", "addr", "add", "fd00:7::99/64", "dev", "eth0")
    spoofed = vm("sh", "-c", f"ping -6 -c 1 -W 2 -I fd00:7::99 {peer}", rc=None)
    assert "1 packets received" not in spoofed


def test_vm_on_an_ipv6_only_network(hyprd: Hyprd) -> None:
    """The guest init configures no IPv4 at all, its IPv6 address and route statically; names over the IPv6
    gateway (resolv.conf points there)."""
    hyprd.cli("network", "create", "--ipv4=false", "--ipv6", "--subnet", "fd00:8::/64", "only6")
    hyprd.cli("run", "-d", "--runtime", "vm", "--memory", "128m", "--network", "only6", "--name", "guest",
              "busybox", "httpd", "-f", "-p", "80")  # fmt: skip
    hyprd.cli("run", "-d", "--network", "only6", "--name", "peer", "busybox", "httpd", "-f", "-p", "80")
    inspected = json.loads(hyprd.cli("inspect", "guest").stdout)[0]["NetworkSettings"]["Networks"]["only6"]
    assert (inspected["IPAddress"], inspected["GlobalIPv6Address"]) == ("", "fd00:8::2")

    def vm(*argv: str, rc: int | None = 0) -> str:
        return hyprd.cli("exec", "guest", *argv, rc=rc, timeout=BOOT + 30).stdout

    assert "inet6 fd00:8::2/64" in vm("ip", "-6", "addr", "show", "eth0")
    assert "inet " not in vm("ip", "-4", "addr", "show", "eth0")  # no IPv4 address
    assert "default via fd00:8::1" in vm("ip", "-6", "route")
    assert vm("ip", "-4", "route").strip() == ""
    get = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} 80"
    assert vm("sh", "-c", get.format(host="fd00:8::3")).startswith("HTTP/1.")  # VM -> sandbox over IPv6
    assert hyprd.cli("exec", "peer", "sh", "-c", get.format(host="fd00:8::2")).stdout.startswith("HTTP/1.")
    assert "nameserver fd00:8::1" in vm("cat", "/etc/resolv.conf")
    assert "fd00:8::3" in vm("nslookup", "-type=AAAA", "peer")
