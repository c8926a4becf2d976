"""The docker CLI and docker-py against hypr's REST side of the Engine API (issue 12): network modes, predefined
networks, networks with stopped members, endpoint settings kept, inspect templates, events, top, stats, pause,
update, container prune, system df. Every workload runs detached; its output is read with `docker logs`."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable

import docker
import pytest

from tests.integration.harness import Hyprd, run_in, vm_marks, wait_until


def docker_cli(hyprd: Hyprd, *argv: str, rc: int | None = 0, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", "-H", f"unix://{hyprd.socket}", *argv], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    if rc is not None and proc.returncode != rc:
        raise AssertionError(f"docker {' '.join(argv)} exited {proc.returncode}, wanted {rc}\n{proc.stderr}")
    return proc


def refused(hyprd: Hyprd, *argv: str) -> str:
    """The error a command fails with (it must fail)."""
    proc = docker_cli(hyprd, *argv, rc=None)
    assert proc.returncode != 0, f"docker {' '.join(argv)} succeeded: {proc.stdout}"
    return proc.stderr


def output_of(hyprd: Hyprd, *run_argv: str) -> str:
    """`docker run -d` a command that ends, wait for it, and return its logs."""
    cid = docker_cli(hyprd, "run", "-d", *run_argv).stdout.strip()

    def ended() -> bool:
        return docker_cli(hyprd, "inspect", "-f", "{{.State.Status}}", cid).stdout.strip() == "exited"

    wait_until(ended, f"{run_argv} to end", timeout=60)
    return docker_cli(hyprd, "logs", cid).stdout


def test_network_modes_move_real_packets(hyprd: Hyprd) -> None:
    # none: only lo, up.
    links = output_of(hyprd, "--network", "none", "busybox", "ip", "-o", "link").splitlines()
    assert len(links) == 1 and links[0].split(":")[1].strip() == "lo" and "UP" in links[0]
    # host: the namespace hyprd runs in (the test's "host"), with its bridge, and a listener the host reaches.
    host_links = output_of(hyprd, "--network", "host", "busybox", "ip", "-o", "link")
    assert "vbr0" in host_links
    docker_cli(hyprd, "run", "-d", "--name", "hostweb", "--network", "host", "busybox", "httpd", "-f", "-p", "8099")
    wait_until(lambda: ":8099 " in run_in(hyprd.ns, "ss", "-ltnH").stdout, "host-mode httpd on :8099")
    probe = run_in(hyprd.ns, "busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8099/", rc=None)
    assert "404" in probe.stderr or probe.returncode == 0  # httpd answered (no index: 404), not refused
    # container:<x>: x's interfaces and address, and x's peers reachable through them.
    docker_cli(hyprd, "network", "create", "--subnet", "10.77.0.0/24", "shared")
    docker_cli(hyprd, "run", "-d", "--name", "owner", "--network", "shared", "--ip", "10.77.0.10", "busybox",
               "sleep", "600")  # fmt: skip
    docker_cli(hyprd, "run", "-d", "--name", "peer", "--network", "shared", "--ip", "10.77.0.11", "busybox",
               "httpd", "-f", "-p", "80")  # fmt: skip
    seen = output_of(hyprd, "--network", "container:owner", "busybox", "sh", "-c",
                     "ip -o -4 addr show eth0; hostname; wget -q -O - http://peer/ 2>&1 | head -1")  # fmt: skip
    assert "10.77.0.10/24" in seen and "owner" in seen.split()  # x's address and hostname
    assert "404" in seen  # the peer's httpd answered by name, through x's resolver
    inspect = json.loads(docker_cli(hyprd, "inspect", "hostweb").stdout)[0]
    assert inspect["HostConfig"]["NetworkMode"] == "host" and list(inspect["NetworkSettings"]["Networks"]) == ["host"]
    # Docker's conflicts and refusals.
    assert "conflicting options: hostname and the network mode" in refused(
        hyprd, "run", "-d", "--network", "container:owner", "-h", "x", "busybox", "true"
    )
    assert "conflicting options: port publishing and the container type network mode" in refused(
        hyprd, "run", "-d", "--network", "container:owner", "-p", "81:80", "busybox", "true"
    )
    assert "not supported for VMs" in refused(hyprd, "run", "-d", "--runtime", "vm", "--network", "host", "busybox",
                                              "true")  # fmt: skip
    assert "container cannot be disconnected from host network or connected to host network" in refused(
        hyprd, "network", "connect", "shared", "hostweb"
    )
    assert "sharing network namespace" in refused(
        hyprd, "network", "connect", "bridge", docker_cli(hyprd, "ps", "-alq").stdout.strip()
    )
    # A namespace owner that does not run: Docker's refusal at start.
    docker_cli(hyprd, "create", "--name", "late", "--network", "container:owner", "busybox", "true")
    docker_cli(hyprd, "stop", "-t", "0", "owner")
    assert "cannot join network namespace of a non running container" in refused(hyprd, "start", "late")


def test_predefined_networks_are_listed_and_kept(hyprd: Hyprd) -> None:
    rows = docker_cli(hyprd, "network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout.split("\n")
    assert {"bridge bridge", "host host", "none null"} <= set(rows)
    assert docker_cli(hyprd, "network", "ls", "-q", "--filter", "type=custom").stdout == ""
    assert docker_cli(hyprd, "network", "ls", "--filter", "driver=null", "--format", "{{.Name}}").stdout == "none\n"
    for name in ("host", "none", "bridge"):
        assert f"{name} is a pre-defined network and cannot be removed" in refused(hyprd, "network", "rm", name)
    host = json.loads(docker_cli(hyprd, "network", "inspect", "host").stdout)[0]
    assert host["Driver"] == "host" and len(host["Id"]) == 64 and host["Scope"] == "local"
    assert docker_cli(hyprd, "network", "prune", "-f").stdout.strip() == ""


def test_networks_with_only_stopped_members_go_as_in_docker(hyprd: Hyprd) -> None:
    docker_cli(hyprd, "network", "create", "gone")
    docker_cli(hyprd, "network", "create", "pruned")
    docker_cli(hyprd, "network", "create", "busy")
    docker_cli(hyprd, "create", "--name", "member", "--network", "gone", "busybox", "true")
    docker_cli(hyprd, "run", "-d", "--name", "pmember", "--network", "pruned", "busybox", "true")
    docker_cli(hyprd, "run", "-d", "--name", "runner", "--network", "busy", "busybox", "sleep", "600")
    wait_until(lambda: "exited" in docker_cli(hyprd, "inspect", "-f", "{{.State.Status}}", "pmember").stdout,
               "pmember to end")  # fmt: skip
    docker_cli(hyprd, "network", "rm", "gone")
    assert "has active endpoints" in refused(hyprd, "network", "rm", "busy")
    assert docker_cli(hyprd, "network", "prune", "-f").stdout.split() == ["Deleted", "Networks:", "pruned"]
    assert "network gone not found" in refused(hyprd, "start", "member")
    assert "network pruned not found" in refused(hyprd, "start", "pmember")
    kept = json.loads(docker_cli(hyprd, "inspect", "member").stdout)[0]["NetworkSettings"]["Networks"]
    assert list(kept) == ["gone"] and kept["gone"]["IPAddress"] == ""
    docker_cli(hyprd, "network", "disconnect", "gone", "member")  # the config goes; it starts again
    docker_cli(hyprd, "start", "member")
    # --attachable kept; config-only refused by name; --ip6 on an IPv4 network: Docker's words.
    docker_cli(hyprd, "network", "create", "--attachable", "att")
    assert docker_cli(hyprd, "network", "inspect", "-f", "{{.Attachable}}", "att").stdout.strip() == "true"
    assert "--config-only and --config-from are not supported" in refused(hyprd, "network", "create",
                                                                          "--config-only", "co")  # fmt: skip
    assert "user specified IP address is supported only when connecting to networks with user configured subnets" \
        in refused(hyprd, "network", "connect", "--ip6", "2001:db8::5", "att", "runner")  # fmt: skip


def test_endpoint_settings_are_kept_and_used(hyprd: Hyprd) -> None:
    docker_cli(hyprd, "network", "create", "--subnet", "10.78.0.0/24", "eps")
    docker_cli(hyprd, "run", "-d", "--name", "db", "--network", "eps", "busybox", "sleep", "600")
    docker_cli(hyprd, "create", "--name", "app", "--network", "eps", "--mac-address", "02:aa:bb:cc:dd:ee",
               "--link", "db:database", "--link-local-ip", "169.254.10.10", "busybox", "sleep", "600")  # fmt: skip
    docker_cli(hyprd, "network", "create", "second")
    docker_cli(hyprd, "network", "connect", "--driver-opt", "com.example.x=1", "second", "app")
    docker_cli(hyprd, "start", "app")
    seen = docker_cli(hyprd, "exec", "app", "sh", "-c", "ip addr show eth0; cat /etc/hosts").stdout
    assert "02:aa:bb:cc:dd:ee" in seen and "database" in seen and "169.254.10.10/16" in seen
    inspect = json.loads(docker_cli(hyprd, "inspect", "app").stdout)[0]
    eps = inspect["NetworkSettings"]["Networks"]
    assert eps["eps"]["MacAddress"] == "02:aa:bb:cc:dd:ee"
    assert eps["eps"]["IPAMConfig"]["LinkLocalIPs"] == ["169.254.10.10"]
    assert eps["second"]["DriverOpts"] == {"com.example.x": "1"}
    assert inspect["HostConfig"]["Links"] == ["/db:/app/database"]
    # The alias in the linking workload's DNS view (nslookup asks the resolver, never /etc/hosts), and only there.
    db_ip = docker_cli(hyprd, "inspect", "-f", "{{.NetworkSettings.Networks.eps.IPAddress}}", "db").stdout.strip()
    linked = output_of(hyprd, "--network", "eps", "--link", "db:database", "busybox", "nslookup", "database")
    assert db_ip in linked.split("\n\n", 1)[-1]
    unlinked = output_of(hyprd, "--network", "eps", "busybox", "nslookup", "database")
    assert db_ip not in unlinked.split("\n\n", 1)[-1]
    docker_cli(hyprd, "rm", "--link", "/app/database")
    assert docker_cli(hyprd, "inspect", "-f", "{{.HostConfig.Links}}", "app").stdout.strip() == "[]"
    # -P: every exposed port on an ephemeral host port.
    docker_cli(hyprd, "run", "-d", "--name", "pub", "-P", "--expose", "80", "--expose", "53/udp", "busybox",
               "sleep", "600")  # fmt: skip
    ports = docker_cli(hyprd, "port", "pub").stdout.splitlines()
    assert sorted(p.split(" -> ")[0] for p in ports) == ["53/udp", "80/tcp"]
    assert docker_cli(hyprd, "inspect", "-f", "{{.HostConfig.PublishAllPorts}}", "pub").stdout.strip() == "true"


# Real templates people run; each must render against hypr as it does against Docker (no "map has no entry").
TEMPLATES = (
    "{{.NetworkSettings.IPAddress}}", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    "{{.NetworkSettings.Networks.bridge.Gateway}}", "{{json .NetworkSettings.Ports}}", "{{.HostConfig.NetworkMode}}",
    "{{.State.Status}} {{.State.Running}} {{.State.Paused}} {{.State.Pid}} {{.State.ExitCode}}",
    "{{.State.StartedAt}} {{.State.FinishedAt}} {{.State.OOMKilled}} {{.State.Restarting}}",
    "{{.Config.Image}} {{.Config.Hostname}} {{.Config.User}} {{json .Config.Env}} {{.Config.Tty}}",
    "{{.Config.OpenStdin}} {{.Config.AttachStdout}} {{json .Config.Volumes}} {{json .Config.Labels}}",
    "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}}",
    "{{.HostConfig.LogConfig.Type}} {{json .HostConfig.Binds}} {{.HostConfig.PidMode}} {{.HostConfig.IpcMode}}",
    "{{.HostConfig.ShmSize}} {{json .HostConfig.Devices}} {{json .HostConfig.Ulimits}} {{.HostConfig.Privileged}}",
    "{{json .Mounts}} {{.LogPath}} {{.HostsPath}} {{.ResolvConfPath}} {{.RestartCount}} {{.Driver}}",
    "{{.GraphDriver.Name}} {{.NetworkSettings.SandboxKey}} {{.NetworkSettings.MacAddress}} {{.Platform}}",
    "{{range $p, $conf := .NetworkSettings.Ports}}{{$p}}{{end}}",
    "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.NetworkID}} {{$v.EndpointID}} {{$v.MacAddress}}{{end}}",
    "{{range .NetworkSettings.Networks}}{{.IPPrefixLen}} {{json .Aliases}} {{json .DNSNames}} {{.GwPriority}}{{end}}",
    "{{index .Config.Labels \"x\"}} {{.Name}} {{.Id}} {{.Created}} {{.Image}} {{.Path}} {{json .Args}}",
)  # fmt: skip


def test_inspect_templates_never_miss_a_key(hyprd: Hyprd) -> None:
    docker_cli(hyprd, "run", "-d", "--name", "tpl", "-l", "x=y", "-p", "8080:80", "busybox", "sleep", "600")
    docker_cli(hyprd, "run", "-d", "--name", "tplnone", "-l", "x=z", "--network", "none", "busybox", "sleep", "600")
    for name in ("tpl", "tplnone"):
        for template in TEMPLATES:
            if name == "tplnone" and "Networks.bridge" in template:
                continue  # not on that network: Docker fails there too
            proc = docker_cli(hyprd, "inspect", "-f", template, name, rc=None)
            assert proc.returncode == 0, f"{template} on {name}: {proc.stderr}"
            assert "<no value>" not in proc.stdout, f"{template} on {name}: {proc.stdout}"
    net_templates = ("{{.Attachable}} {{.ConfigOnly}} {{.ConfigFrom.Network}} {{.Ingress}} {{.Internal}}",
                     "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{.EnableIPv6}} {{json .Options}}",
                     "{{range $id, $c := .Containers}}{{$c.Name}} {{$c.IPv4Address}} {{$c.MacAddress}}{{end}}")  # fmt: skip
    for template in net_templates:
        for net in ("bridge", "host", "none"):
            proc = docker_cli(hyprd, "network", "inspect", "-f", template, net, rc=None)
            assert proc.returncode == 0 and "<no value>" not in proc.stdout, f"{template} on {net}: {proc.stderr}"


@pytest.mark.slow
def test_events_top_stats_pause_update_prune_df(hyprd: Hyprd) -> None:
    start = time.time()
    live = subprocess.Popen(
        ["docker", "-H", f"unix://{hyprd.socket}", "events", "--filter", "type=container", "--filter", "label=ev=1",
         "--since", str(start),  # what came before the subscription too: `run` may be served first
         "--format", "{{.Action}} {{.Actor.Attributes.name}}"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        docker_cli(hyprd, "run", "-d", "--name", "busy", "-l", "ev=1", "busybox", "sh", "-c",
                   "while true; do :; done")  # fmt: skip
        docker_cli(hyprd, "run", "-d", "--name", "quiet", "busybox", "sleep", "600")  # no ev=1: filtered out
        # top: the workload's processes only, with ps_args.
        top = docker_cli(hyprd, "top", "busy", "-o", "pid,args").stdout.splitlines()
        assert top[0].split() == ["PID", "COMMAND"] and len(top) == 2 and "while true" in top[1]
        # stats: a real CPU figure from the cgroup; network counters from the host end.
        one = json.loads(_api(hyprd, "/containers/busy/stats?stream=false"))
        assert one["cpu_stats"]["cpu_usage"]["total_usage"] > one["precpu_stats"]["cpu_usage"]["total_usage"] > 0
        assert one["pids_stats"]["current"] >= 1 and one["memory_stats"]["usage"] > 0 and "eth0" in one["networks"]
        row = docker_cli(hyprd, "stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.PIDs}}", "busy")
        name, cpu, pids = row.stdout.split()
        assert name == "busy" and float(cpu.rstrip("%")) > 5 and int(pids) >= 1
        # pause freezes it: no CPU time passes; ps shows Paused; kill is refused as Docker refuses it.
        docker_cli(hyprd, "pause", "busy")
        assert docker_cli(hyprd, "ps", "-f", "status=paused", "--format", "{{.Names}} {{.Status}}").stdout.strip() \
            .endswith("(Paused)")  # fmt: skip
        frozen = [json.loads(_api(hyprd, "/containers/busy/stats?stream=false&one-shot=true")) for _ in range(2)]
        assert frozen[0]["cpu_stats"]["cpu_usage"]["total_usage"] == frozen[1]["cpu_stats"]["cpu_usage"]["total_usage"]
        assert "is paused" in refused(hyprd, "kill", "-s", "TERM", "busy")
        docker_cli(hyprd, "unpause", "busy")
        # update: the restart policy; anything else refused by name.
        docker_cli(hyprd, "update", "--restart", "on-failure", "busy")
        assert docker_cli(hyprd, "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", "busy").stdout.strip() \
            == "on-failure"  # fmt: skip
        assert "updating Memory is not supported" in refused(hyprd, "update", "--memory", "100m", "busy")
        docker_cli(hyprd, "rm", "-f", "busy")
        # events: live ones, filtered; and the past from --since up to --until.
        seen: list[str] = []
        assert live.stdout is not None

        def got_destroy() -> bool:
            seen.append(live.stdout.readline().strip())  # type: ignore[union-attr]
            return seen[-1] == "destroy busy"

        wait_until(got_destroy, "the destroy event", timeout=30)
        assert seen[:2] == ["create busy", "start busy"] and "pause busy" in seen and "unpause busy" in seen
        assert not any("quiet" in s for s in seen)
        past = docker_cli(hyprd, "events", "--since", str(start), "--until", str(time.time()), "--filter",
                          "event=start", "--format", "{{.Actor.Attributes.name}}").stdout.split()  # fmt: skip
        assert past == ["busy", "quiet"]
        nets = docker_cli(hyprd, "events", "--since", str(start), "--until", str(time.time()), "--filter",
                          "type=network", "--filter", "network=bridge", "--format", "{{.Action}} {{.Actor.Attributes.container}}",
                          ).stdout.splitlines()  # fmt: skip
        quiet = docker_cli(hyprd, "inspect", "-f", "{{.Id}}", "quiet").stdout.strip()
        assert f"connect {quiet}" in nets and sum(n.startswith("disconnect") for n in nets) == 1  # busy's, at rm
    finally:
        live.kill()
        live.wait()
    # container prune: what does not run, with Docker's filters; system df counts what is there.
    docker_cli(hyprd, "run", "-d", "--name", "old", "-l", "keep=no", "busybox", "true")
    docker_cli(hyprd, "create", "--name", "kept", "-l", "keep=yes", "busybox", "true")
    wait_until(lambda: "exited" in docker_cli(hyprd, "inspect", "-f", "{{.State.Status}}", "old").stdout, "old")
    pruned = docker_cli(hyprd, "container", "prune", "-f", "--filter", "label=keep=no").stdout
    assert "Deleted Containers:" in pruned
    names = docker_cli(hyprd, "ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert "old" not in names and {"kept", "quiet"} <= set(names)
    df = json.loads(_api(hyprd, "/system/df"))
    assert {c["Names"][0] for c in df["Containers"]} == {"/kept", "/quiet"} and df["Volumes"] == []
    assert "Containers" in docker_cli(hyprd, "system", "df").stdout


def _api(hyprd: Hyprd, path: str) -> str:
    return subprocess.run(["curl", "-sf", "--unix-socket", str(hyprd.socket), f"http://d{path}"],
                          capture_output=True, text=True, check=True, timeout=30).stdout  # fmt: skip


def test_docker_py_network_modes_and_pause(hyprd: Hyprd) -> None:
    client = docker.DockerClient(base_url=f"unix://{hyprd.socket}", version="auto")
    try:
        alone = client.containers.run("busybox", ["sleep", "600"], network_mode="none", detach=True)
        assert alone.attrs["HostConfig"]["NetworkMode"] == "none"
        alone.pause()
        alone.reload()
        assert alone.status == "paused"
        alone.unpause()
        for pattern in (f"/{alone.name}", f"^/{alone.name}$", f"^{alone.name}$", alone.name[1:]):
            assert [c.name for c in client.containers.list(filters={"name": pattern})] == [alone.name], pattern
        assert "host" in {n.name for n in client.networks.list()}
        assert client.containers.prune()["ContainersDeleted"] is None
        # Streamed stats: each sample paired with the one before; the stream ends when the container goes.
        samples = alone.stats(stream=True, decode=True)
        first, second = next(samples), next(samples)
        assert second["precpu_stats"] == first["cpu_stats"] and second["preread"] == first["read"]
        alone.remove(force=True)
        assert sum(1 for _ in samples) <= 1
    finally:
        client.close()


def _vm_test(test: Callable[..., None]) -> Callable[..., None]:
    """A test that boots microVMs carries vm_marks (skipped cleanly without QEMU or a guest kernel)."""
    for mark in vm_marks():
        test = mark(test)
    return test


@pytest.mark.slow
@_vm_test
def test_vm_stats_top_pause(hyprd: Hyprd) -> None:
    docker_cli(hyprd, "run", "-d", "--name", "vm1", "--runtime", "vm", "--memory", "128m", "busybox", "sleep", "600")
    docker_cli(hyprd, "run", "-d", "--name", "vmnone", "--runtime", "vm", "--memory", "128m", "--network", "none",
               "busybox", "sleep", "600")  # fmt: skip
    one = json.loads(_api(hyprd, "/containers/vm1/stats?stream=false"))
    assert one["cpu_stats"]["cpu_usage"]["total_usage"] > 0 and one["pids_stats"]["current"] >= 1
    assert one["memory_stats"]["usage"] > 0 and one["memory_stats"]["limit"] == 128 * 2**20
    assert "eth0" in one["networks"]  # the TAP's counters
    assert "not supported for VMs" in refused(hyprd, "run", "-d", "--runtime", "vm", "--network", "host", "busybox",
                                              "true")  # fmt: skip
    qemu = docker_cli(hyprd, "inspect", "-f", "{{.State.Pid}}", "vm1").stdout.strip()
    top = docker_cli(hyprd, "top", "vm1").stdout.splitlines()
    assert len(top) == 2 and qemu in top[1].split()
    # pause: QEMU's stop over its monitor; unpause: cont, and the guest answers again.
    docker_cli(hyprd, "pause", "vm1")
    assert docker_cli(hyprd, "inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "vm1").stdout.split() == [
        "paused", "true"]  # fmt: skip
    assert "already paused" in refused(hyprd, "pause", "vm1")
    docker_cli(hyprd, "unpause", "vm1")
    assert hyprd.cli("exec", "vm1", "echo", "back", timeout=180).stdout.strip() == "back"
    assert json.loads(_api(hyprd, "/containers/vmnone/stats?stream=false&one-shot=true"))["networks"] == {}
    assert docker_cli(hyprd, "inspect", "-f", "{{.State.Running}}", "vmnone").stdout.strip() == "true"
