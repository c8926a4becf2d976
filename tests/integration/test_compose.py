"""`hypr compose` against a real daemon: the seed's three stacks, reachability asserted by real connections."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.harness import Hyprd, host_server, links, run_in

HTTPD = "[busybox, httpd, -f, -p, '80']"
PROBE = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} {port}"


def write(tmp_path: Path, text: str, name: str = "hypr-compose.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def compose(hyprd: Hyprd, file: Path, *argv: str, rc: int | None = 0) -> tuple[str, str]:
    proc = hyprd.cli("compose", "--progress", "plain", "-f", str(file), *argv, rc=rc)
    return proc.stdout, proc.stderr


def reaches(hyprd: Hyprd, workload: str, host: str, port: int = 80) -> bool:
    out = hyprd.cli("exec", workload, "sh", "-c", PROBE.format(host=host, port=port), rc=None).stdout
    return out.startswith("HTTP/1.")


def inspect(hyprd: Hyprd, name: str) -> dict[str, object]:
    return dict(json.loads(hyprd.cli("inspect", name).stdout)[0])


def ip_on(hyprd: Hyprd, workload: str, network: str) -> str:
    networks = inspect(hyprd, workload)["NetworkSettings"]["Networks"]  # type: ignore[index]
    return str(networks[network]["IPAddress"])


def network(hyprd: Hyprd, name: str) -> dict[str, object]:
    return dict(json.loads(hyprd.cli("network", "inspect", name).stdout)[0])


def network_names(hyprd: Hyprd) -> list[str]:
    return [line.split()[1] for line in hyprd.cli("network", "ls").stdout.splitlines()[1:]]


def test_frontend_backend_reachability_matrix_and_down(hyprd: Hyprd, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        f"""
name: shop
services:
  web: {{image: busybox, command: {HTTPD}, networks: [frontend]}}
  api:
    image: busybox
    command: {HTTPD}
    networks: [frontend, backend]
    depends_on: [db]
  db:
    image: busybox
    command: {HTTPD}
    networks:
      backend: {{aliases: [database, postgres]}}
networks:
  frontend:
  backend:
""",
    )
    bridges_before = sorted(links(hyprd.ns, "bridge"))
    _, err = compose(hyprd, file, "up", "-d")
    assert err.index("Container shop-db-1  Started") < err.index("Container shop-api-1  Started")
    assert reaches(hyprd, "shop-api-1", "db") and reaches(hyprd, "shop-api-1", "web")
    assert reaches(hyprd, "shop-api-1", "database") and reaches(hyprd, "shop-api-1", "shop-db-1")
    assert reaches(hyprd, "shop-web-1", "api") and reaches(hyprd, "shop-db-1", "api")
    assert not reaches(hyprd, "shop-web-1", "db")
    assert not reaches(hyprd, "shop-web-1", ip_on(hyprd, "shop-db-1", "shop_backend"))
    assert not reaches(hyprd, "shop-db-1", ip_on(hyprd, "shop-web-1", "shop_frontend"))
    labels = network(hyprd, "shop_backend")["Labels"]
    assert labels == {"com.docker.compose.project": "shop", "com.docker.compose.network": "backend"}
    web_labels = inspect(hyprd, "shop-web-1")["Config"]["Labels"]  # type: ignore[index]
    assert web_labels["com.docker.compose.service"] == "web"
    ps = hyprd.cli("compose", "-f", str(file), "ps").stdout.splitlines()
    assert ps[0].split() == ["NAME", "SERVICE", "IMAGE", "STATUS", "PORTS", "NETWORKS"]
    assert [line.split()[0] for line in ps[1:]] == ["shop-api-1", "shop-db-1", "shop-web-1"]
    assert "shop" in hyprd.cli("compose", "ls").stdout
    _, err = compose(hyprd, file, "down")
    assert "Network shop_frontend  Removed" in err
    assert hyprd.cli("ps", "-a", "-q").stdout == ""
    assert not [n for n in network_names(hyprd) if n.startswith("shop_")]
    assert sorted(links(hyprd.ns, "bridge")) == bridges_before
    assert not [name for name in links(hyprd.ns) if name.startswith("hv")]


def test_custom_ipam_static_addresses_and_idempotent_up(hyprd: Hyprd, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        f"""
services:
  app:
    image: busybox
    command: {HTTPD}
    networks:
      net1: {{ipv4_address: 10.77.1.50}}
      net2:
  peer: {{image: busybox, command: {HTTPD}, networks: [net2]}}
networks:
  net1:
    driver: bridge
    driver_opts: {{com.docker.network.bridge.name: br-cmp1}}
    labels: {{tier: one}}
    ipam:
      driver: default
      config:
        - subnet: 10.77.1.0/24
          gateway: 10.77.1.254
          ip_range: 10.77.1.128/25
          aux_addresses: {{router: 10.77.1.253}}
  net2:
    ipam:
      config: [{{subnet: 10.77.2.0/24, gateway: 10.77.2.1}}]
""",
    )
    compose(hyprd, file, "-p", "ipam", "up", "-d")
    net1 = network(hyprd, "ipam_net1")
    assert net1["IPAM"]["Config"][0]["Subnet"] == "10.77.1.0/24"  # type: ignore[index]
    assert net1["IPAM"]["Config"][0]["Gateway"] == "10.77.1.254"  # type: ignore[index]
    assert net1["Labels"]["tier"] == "one"  # type: ignore[index]
    assert "br-cmp1" in links(hyprd.ns, "bridge")
    assert ip_on(hyprd, "ipam-app-1", "ipam_net1") == "10.77.1.50"
    peer_ip = ip_on(hyprd, "ipam-peer-1", "ipam_net2")
    assert peer_ip.startswith("10.77.2.") and peer_ip != "10.77.2.1"
    assert "default via 10.77.1.254" in hyprd.cli("exec", "ipam-app-1", "ip", "route").stdout
    assert reaches(hyprd, "ipam-peer-1", "app")
    first_id = inspect(hyprd, "ipam-app-1")["Id"]
    _, err = compose(hyprd, file, "-p", "ipam", "up", "-d")
    assert err.count("Running") == 2 and "Created" not in err and "Recreate" not in err
    assert inspect(hyprd, "ipam-app-1")["Id"] == first_id
    file.write_text(file.read_text().replace("net1: {ipv4_address: 10.77.1.50}", "net1: {ipv4_address: 10.77.1.60}"))
    _, err = compose(hyprd, file, "-p", "ipam", "up", "-d")
    assert "Container ipam-app-1  Recreated" in err and "Container ipam-peer-1  Running" in err
    assert ip_on(hyprd, "ipam-app-1", "ipam_net1") == "10.77.1.60"
    _, err = compose(hyprd, file, "-p", "ipam", "up", "-d", "--force-recreate")
    assert err.count("Recreated") == 2
    compose(hyprd, file, "-p", "ipam", "down")
    assert "br-cmp1" not in links(hyprd.ns, "bridge")


def test_internal_network_and_proxy_on_public_and_internal(hyprd: Hyprd, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        f"""
name: edge
services:
  proxy:
    image: busybox
    command: {HTTPD}
    ports: ["127.0.0.1:8081:80", {{target: 80, published: 8082, protocol: tcp}}]
    networks: [public, internal]
  app: {{image: busybox, command: {HTTPD}, networks: [internal]}}
networks:
  public:
  internal:
    internal: true
""",
    )
    compose(hyprd, file, "up", "-d")
    assert network(hyprd, "edge_internal")["Internal"] is True
    assert reaches(hyprd, "edge-proxy-1", "app") and reaches(hyprd, "edge-app-1", "proxy")
    public_gw = str(network(hyprd, "edge_public")["IPAM"]["Config"][0]["Gateway"])  # type: ignore[index]
    internal_gw = str(network(hyprd, "edge_internal")["IPAM"]["Config"][0]["Gateway"])  # type: ignore[index]
    with host_server(hyprd.ns, 9999):
        assert reaches(hyprd, "edge-proxy-1", public_gw, 9999)
        assert not reaches(hyprd, "edge-app-1", internal_gw, 9999)
        assert not reaches(hyprd, "edge-app-1", public_gw, 9999)
    for port in ("8081", "8082"):
        out = run_in(hyprd.ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/")
        assert out.stdout == "404"  # busybox httpd answered (it has no index page)
    assert "127.0.0.1:8081->80/tcp" in hyprd.cli("compose", "-f", str(file), "ps").stdout
    compose(hyprd, file, "down")


def test_external_network_is_used_and_kept_and_label_conflicts_are_refused(hyprd: Hyprd, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        f"""
name: ext
services:
  a: {{image: busybox, command: {HTTPD}, networks: [shared, own]}}
networks:
  shared: {{external: true, name: outside}}
  own:
""",
    )
    _, err = compose(hyprd, file, "up", "-d", rc=1)
    assert "network outside declared as external, but could not be found" in err
    assert hyprd.cli("ps", "-a", "-q").stdout == "" and "ext_own" not in network_names(hyprd)
    hyprd.cli("network", "create", "outside", "--subnet", "10.78.0.0/24")
    hyprd.cli("run", "-d", "--name", "neighbour", "--network", "outside", "busybox", "sleep", "600")
    compose(hyprd, file, "up", "-d")
    assert ip_on(hyprd, "ext-a-1", "outside").startswith("10.78.0.")
    assert reaches(hyprd, "neighbour", "ext-a-1")
    compose(hyprd, file, "down")
    assert "outside" in network_names(hyprd) and "ext_own" not in network_names(hyprd)
    hyprd.cli("network", "create", "ext_own", "--label", "com.docker.compose.network=other")
    _, err = compose(hyprd, file, "up", "-d", rc=1)
    assert 'network ext_own was found but has incorrect label com.docker.compose.network set to "other"' in err
    assert not hyprd.cli("ps", "-a", "-q", "-f", "label=com.docker.compose.project=ext").stdout


def test_failure_midway_is_reported_and_leaves_a_consistent_state(hyprd: Hyprd, tmp_path: Path) -> None:
    template = f"""
name: half
services:
  first: {{image: busybox, command: {HTTPD}, networks: {{n: {{ipv4_address: 10.79.0.10}}}}}}
  second:
    image: busybox
    command: {HTTPD}
    depends_on: [first]
    networks: {{n: {{ipv4_address: SECOND_IP}}}}
networks:
  n: {{ipam: {{config: [{{subnet: 10.79.0.0/24}}]}}}}
"""
    file = write(tmp_path, template.replace("SECOND_IP", "10.79.0.10"))
    _, err = compose(hyprd, file, "up", "-d", rc=1)
    assert "Error: Container half-second-1:" in err
    ps = hyprd.cli("compose", "-f", str(file), "ps", "-a").stdout.splitlines()
    assert [line.split()[0] for line in ps[1:]] == ["half-first-1"]
    file.write_text(template.replace("SECOND_IP", "10.79.0.11"))
    _, err = compose(hyprd, file, "up", "-d")
    assert "Container half-first-1  Running" in err and "Container half-second-1  Started" in err
    compose(hyprd, file, "down")
    assert hyprd.cli("ps", "-a", "-q").stdout == "" and "half_n" not in network_names(hyprd)


def test_orphans_interpolation_and_env_file(hyprd: Hyprd, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GREETING=from-dotenv\nPORT=8090\n")
    file = write(
        tmp_path,
        f"""
name: orph
services:
  a:
    image: busybox
    command: {HTTPD}
    environment: ["GREETING=${{GREETING}}", "FALLBACK=${{UNSET_VAR:-fallback}}", "DOLLAR=$$HOME"]
    ports: ["${{PORT}}:80"]
  b: {{image: busybox, command: {HTTPD}}}
""",
    )
    compose(hyprd, file, "up", "-d")
    env = inspect(hyprd, "orph-a-1")["Config"]["Env"]  # type: ignore[index]
    assert {"GREETING=from-dotenv", "FALLBACK=fallback", "DOLLAR=$HOME"} <= set(env)
    assert "8090->80/tcp" in hyprd.cli("compose", "-f", str(file), "ps").stdout
    assert reaches(hyprd, "orph-a-1", "b")  # the project's default network
    assert network(hyprd, "orph_default")["Labels"]["com.docker.compose.network"] == "default"  # type: ignore[index]
    file.write_text(file.read_text().split("  b:")[0])
    _, err = compose(hyprd, file, "up", "-d")
    assert "Found orphan containers (orph-b-1)" in err
    _, err = compose(hyprd, file, "up", "-d", "--remove-orphans")
    assert "Container orph-b-1  Removed" in err
    assert [line.split()[0] for line in hyprd.cli("compose", "-f", str(file), "ps").stdout.splitlines()[1:]] == [
        "orph-a-1"
    ]
    logs = hyprd.cli("compose", "-f", str(file), "logs", "a").stdout
    assert all(line.startswith("orph-a-1  | ") for line in logs.splitlines())
    hyprd.cli("compose", "-p", "orph", "down")  # no file needed with -p
    assert hyprd.cli("ps", "-a", "-q").stdout == "" and "orph_default" not in network_names(hyprd)


def test_schema_errors_name_the_path_and_nothing_is_created(hyprd: Hyprd, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        """
services:
  api:
    image: busybox
    networks: [front, 5]
    shm_size: 64m
networks:
  front:
""",
    )
    _, err = compose(hyprd, file, "up", "-d", rc=1)
    assert "services.api.networks[1]: 5 is not of type 'string'" in err
    file.write_text(file.read_text().replace(", 5]", "]"))
    file.write_text(file.read_text().replace("  front:\n", "  front:\n    enable_ipv4: false\n"))  # no family left
    _, err = compose(hyprd, file, "up", "-d", rc=1)
    assert "IPv4 or IPv6 must be enabled" in err
    file.write_text(file.read_text().replace("    enable_ipv4: false\n", "").replace("[front]", "[front, ghost]"))
    _, err = compose(hyprd, file, "up", "-d", rc=1)
    assert "refers to undefined network ghost" in err
    assert "services.api: unsupported key ignored: shm_size" in err
    assert hyprd.cli("ps", "-a", "-q").stdout == ""


def test_confinement_keys_and_bind_volumes_reach_the_sandbox(hyprd: Hyprd, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "greeting").write_text("hello from the host\n")
    file = write(
        tmp_path,
        """
name: locked
services:
  app:
    image: busybox
    command: [sleep, "1000"]
    read_only: true
    cap_drop: [NET_RAW]
    pids_limit: 32
    tmpfs: [/scratch]
    volumes: [./data:/data:ro, {type: bind, source: ./out, target: /out}]
""",
    )
    compose(hyprd, file, "up", "-d")

    def run(script: str) -> tuple[int, str]:
        proc = hyprd.cli("exec", "locked-app-1", "sh", "-c", script, rc=None)
        return proc.returncode, proc.stdout + proc.stderr

    assert run("cat /data/greeting") == (0, "hello from the host\n")
    assert run("touch /data/x")[0] != 0 and run("touch /etc/x")[0] != 0  # ro bind, read-only root
    assert run("touch /scratch/x && echo made > /out/made")[0] == 0
    assert (tmp_path / "out" / "made").read_text() == "made\n"  # the missing host directory was created
    assert "permission denied" in run("ping -c1 -W1 127.0.0.1")[1]  # NET_RAW dropped
    assert run("cat /sys/fs/cgroup/pids/pids.max")[1].strip() == "32"
    compose(hyprd, file, "down")
