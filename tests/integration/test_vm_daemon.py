"""`--runtime vm` end to end through hyprd and the CLI: real QEMU microVMs on the daemon's bridges (slow under TCG).

A VM must behave like a sandbox on the network: same addresses, DNS through the gateway, published ports, isolation
and internal networks all come from the daemon's firewall and DNS, which see a TAP like a veth.
"""

from __future__ import annotations

import json
import os
import subprocess

from tests.integration.harness import Hyprd, host_server, links, run_in, sh, vm_marks

pytestmark = vm_marks()

BOOT = 120.0  # seconds: a TCG boot, possibly next to another one on 2 busy cores
HTTP_GET = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port}"
VM = ("run", "-d", "--runtime", "vm", "--memory", "128m")


def ip_of(hyprd: Hyprd, name: str, network: str = "bridge") -> str:
    return str(json.loads(hyprd.cli("inspect", name).stdout)[0]["NetworkSettings"]["Networks"][network]["IPAddress"])


def vm_exec(hyprd: Hyprd, name: str, *argv: str, rc: int | None = 0) -> subprocess.CompletedProcess[str]:
    """The first exec waits for the guest agent, i.e. for the boot."""
    return hyprd.cli("exec", name, *argv, rc=rc, timeout=BOOT + 30)


def answers_http(hyprd: Hyprd, client: str, host: str, port: int = 80) -> bool:
    out = vm_exec(hyprd, client, "sh", "-c", HTTP_GET.format(host=host, port=port), rc=None).stdout
    return out.startswith("HTTP/1.")


def nslookup_answer(output: str) -> list[str]:
    """busybox nslookup prints the server block first, then the answers."""
    answer = output.split("\n\n", 1)[-1]
    return [line.split()[-1] for line in answer.splitlines() if line.startswith("Address")]


def test_vm_networking_dns_published_port_isolation_internal(hyprd: Hyprd) -> None:
    hyprd.cli("network", "create", "other", "--subnet", "10.61.0.0/24")
    hyprd.cli("network", "create", "--internal", "sealed", "--subnet", "10.62.0.0/24")
    hyprd.cli(*VM, "--name", "web", "-p", "8080:80", "busybox", "httpd", "-f", "-p", "80")
    hyprd.cli(*VM, "--name", "hermit", "--network", "sealed", "busybox", "sleep", "3600")
    hyprd.cli("run", "-d", "--name", "peer", "busybox", "httpd", "-f", "-p", "80")
    hyprd.cli("run", "-d", "--name", "far", "--network", "other", "busybox", "httpd", "-f", "-p", "80")
    web, peer, far = ip_of(hyprd, "web"), ip_of(hyprd, "peer"), ip_of(hyprd, "far", "other")
    assert any(name.startswith("tap") for name in links(hyprd.ns, "tun"))

    # the guest's network came from the daemon: address, gateway, resolver
    assert f"{web}/16" in vm_exec(hyprd, "web", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert "nameserver 10.88.0.1" in vm_exec(hyprd, "web", "cat", "/etc/resolv.conf").stdout

    # DNS through the gateway: the peer's .hypr name and its bare name
    assert nslookup_answer(vm_exec(hyprd, "web", "nslookup", "peer.hypr").stdout) == [peer]
    assert nslookup_answer(vm_exec(hyprd, "web", "nslookup", "peer").stdout) == [peer]

    # VM <-> sandbox on one bridge, and the published port from the host's 127.0.0.1
    assert answers_http(hyprd, "web", peer)
    assert hyprd.cli("exec", "peer", "sh", "-c", HTTP_GET.format(host=web, port=80)).stdout.startswith("HTTP/1.")
    curl = ("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "http://127.0.0.1:8080/")
    code = run_in(hyprd.ns, *curl)
    assert code.stdout == "404"  # busybox httpd answered (no index page)

    # isolation: nothing crosses between networks, in either direction
    assert not answers_http(hyprd, "web", far)
    assert not hyprd.cli("exec", "far", "sh", "-c", HTTP_GET.format(host=web, port=80), rc=None).stdout

    # an internal network has no way out: not to the host's other addresses, not to other networks
    with host_server(hyprd.ns, 9999):
        assert answers_http(hyprd, "web", "10.88.0.1", 9999)  # the control: a normal network gets out
        assert not answers_http(hyprd, "hermit", "10.88.0.1", 9999)
        assert not answers_http(hyprd, "hermit", peer)
        assert vm_exec(hyprd, "hermit", "ping", "-c1", "-W2", "10.62.0.1").returncode == 0  # its own gateway: yes


def test_vm_lifecycle_exec_kill9_daemon_stop_start_rm(hyprd: Hyprd) -> None:
    hyprd.cli(*VM, "--name", "box", "-e", "GREETING=hi there", "busybox", "httpd", "-f", "-p", "80")
    hyprd.cli("run", "-d", "--name", "cli", "busybox", "sleep", "3600")
    box = ip_of(hyprd, "box")
    assert vm_exec(hyprd, "box", "sh", "-c", 'echo "$GREETING"; exit 7', rc=7).stdout == "hi there\n"
    assert vm_exec(hyprd, "box", "--", "true").returncode == 0
    assert "executable file not found" in vm_exec(hyprd, "box", "no-such", rc=127).stderr
    box_id = json.loads(hyprd.cli("inspect", "box").stdout)[0]["Id"]
    qemu_pid = json.loads(hyprd.cli("inspect", "box").stdout)[0]["State"]["Pid"]
    cli_netns = hyprd.root / "run" / "workloads" / json.loads(hyprd.cli("inspect", "cli").stdout)[0]["Id"] / "netns"

    # kill -9 hyprd: the VM keeps running and answering, and the restarted daemon adopts it
    hyprd.kill9()
    os.kill(qemu_pid, 0)
    assert sh("nsenter", f"--net={cli_netns}", "sh", "-c", HTTP_GET.format(host=box, port=80)).stdout.startswith("HTTP")
    hyprd.start()
    with hyprd.client() as client:
        states = {c["Names"][0]: c["State"] for c in client.containers(all=True)}
    assert states == {"/box": "running", "/cli": "running"}
    assert vm_exec(hyprd, "box", "hostname").stdout.strip() == "box"

    # stop asks the guest to shut down (SIGTERM: 143); start boots it again with the same address
    hyprd.cli("stop", "-t", "20", "box")
    assert json.loads(hyprd.cli("inspect", "box").stdout)[0]["State"]["ExitCode"] == 143
    hyprd.cli("start", "box")
    assert ip_of(hyprd, "box") == box
    assert f"{box}/16" in vm_exec(hyprd, "box", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    hyprd.cli("exec", "cli", "ping", "-c1", "-W5", box)

    # rm: QEMU, TAP and state are gone
    hyprd.cli("rm", "-f", "box")
    assert not any(name.startswith("tap") for name in links(hyprd.ns))
    assert not (hyprd.root / "run" / "workloads" / box_id).exists()


def test_vm_refuses_the_host_image(hyprd: Hyprd) -> None:
    refused = hyprd.cli("run", "-d", "--runtime", "vm", "host", "true", rc=None)
    assert refused.returncode != 0 and "cannot run in a VM" in refused.stderr


def test_vm_foreground_run_and_logs_with_the_docker_cli(hyprd: Hyprd) -> None:
    """A VM's output is one stream (the guest writes stdout and stderr to one port): attach and logs serve it as
    stdout; the exit code and --rm work as for a sandbox; -t and -i are refused by name."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{hyprd.socket}"}

    def docker(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *argv], env=env, capture_output=True, text=True, timeout=BOOT + 60)

    done = docker(
        "run", "--runtime", "vm", "--memory", "128m", "--name", "fg", "busybox", "sh", "-c", "echo out; exit 3"
    )
    assert (done.returncode, done.stdout) == (3, "out\n"), done.stderr
    assert docker("logs", "fg").stdout == "out\n"
    gone = docker("run", "--rm", "--runtime", "vm", "--memory", "128m", "busybox", "true")
    assert gone.returncode == 0, gone.stderr
    assert docker("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["fg"]
    refused = docker("run", "-t", "--runtime", "vm", "busybox", "true")
    assert refused.returncode != 0 and "not supported by the vm runtime" in refused.stderr


def test_a_vm_tap_skips_names_that_other_links_hold(hyprd: Hyprd) -> None:
    """OpenVPN and others name their TAPs tapN too: a VM's TAP takes the lowest name that neither an endpoint nor
    any link on the host holds (asked of the kernel name by name, not by listing every link)."""
    sh("ip", "-n", hyprd.ns, "tuntap", "add", "dev", "tap0", "mode", "tap")
    body = {"Image": "busybox", "Cmd": ["sleep", "600"], "HostConfig": {"NetworkMode": "bridge", "Runtime": "vm"}}
    with hyprd.client() as client:
        first = client.create_container(body, "first")
        second = client.create_container(body, "second")
        try:
            assert sorted(links(hyprd.ns, "tun")) == ["tap0", "tap1", "tap2"]
            client.remove(first, force=True)
            assert sorted(links(hyprd.ns, "tun")) == ["tap0", "tap2"]
            third = client.create_container(body, "third")  # the name the first one freed
            assert sorted(links(hyprd.ns, "tun")) == ["tap0", "tap1", "tap2"]
            client.remove(third, force=True)
        finally:
            client.remove(second, force=True)
    assert links(hyprd.ns, "tun") == ["tap0"]  # ours are gone, the foreign one is left alone
