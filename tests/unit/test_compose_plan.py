"""The compose model and planner, pure: semantic checks, container/network bodies, up/down decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hypr.compose import plan
from hypr.compose.errors import ComposeError
from hypr.compose.load import normalise_lists
from hypr.compose.model import Project, build_project, start_order

SEED = """
services:
  web: {image: busybox, ports: ["8080:80"], networks: [frontend], depends_on: [api]}
  api:
    image: busybox
    command: httpd -f -p 80
    environment: {A: "1", FROM_ENV: null}
    networks:
      backend: {aliases: [app], ipv4_address: 10.5.1.9}
      frontend: {priority: 10}
    depends_on: {db: {condition: service_started}}
  db: {image: busybox, networks: [backend], x-hypr: {runtime: vm}, restart: "on-failure:3"}
networks:
  frontend: {labels: [team=web]}
  backend:
    internal: true
    ipam: {config: [{subnet: 10.5.1.0/24, gateway: 10.5.1.1}]}
"""


def project(text: str = SEED, name: str = "p", env: dict[str, str] | None = None, wd: str = "/srv/p") -> Project:
    config = normalise_lists(yaml.safe_load(text))
    return build_project(config, name, working_dir=Path(wd), files=[Path(wd) / "c.yml"], environment=env or {})


def test_model_of_the_seed() -> None:
    p = project(env={"FROM_ENV": "yes"})
    assert [s.name for s in p.services] == ["db", "api", "web"]
    assert sorted(p.networks) == ["backend", "frontend"] and p.networks["backend"].name == "p_backend"
    api = p.service("api")
    assert [a.network for a in api.networks] == ["frontend", "backend"]  # priority first
    assert api.command == ("httpd", "-f", "-p", "80") and api.environment == {"A": "1", "FROM_ENV": "yes"}
    db = p.service("db")
    assert (db.runtime, db.restart, db.restart_retries, db.container_name) == ("vm", "on-failure", 3, "p-db-1")
    assert p.networks["frontend"].labels == {"team": "web"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("networks: [frontend], depends_on: [api]", "networks: [nope]"), "refers to undefined network nope"),
        (("depends_on: [api]", "depends_on: [ghost]"), 'depends on undefined service "ghost"'),
        (("ipv4_address: 10.5.1.9", "ipv4_address: 10.6.0.9"), "10.6.0.9 is not in the subnet of network backend"),
        (("x-hypr: {runtime: vm}", "x-hypr: {runtime: kata}"), "unknown runtime 'kata'"),
        (('restart: "on-failure:3"', "restart: sometimes"), "invalid restart policy 'sometimes'"),
        (("db: {image: busybox,", "db: {"), "service 'db' has neither an image"),
        (
            ("db: {image: busybox,", "db: {image: busybox, platform: linux/arm64,"),
            "services.db.platform: platform linux/arm64 is not supported: this host runs",
        ),
        (("db: {image: busybox,", "db: {image: busybox, platform: bogus,"), "unknown operating system"),
    ],
)
def test_semantic_errors(change: tuple[str, str], message: str) -> None:
    assert change[0] in SEED
    with pytest.raises(ComposeError, match=message.replace("(", r"\(").replace("[", r"\[")):
        project(SEED.replace(*change))


def test_this_hosts_platform_is_accepted() -> None:
    from hypr.images.manifest import host_platform

    here = str(host_platform())
    p = project(SEED.replace("db: {image: busybox,", f"db: {{image: busybox, platform: {here},"))
    assert p.service("db").platform == here


def test_static_address_needs_a_configured_subnet_and_cycles_are_named() -> None:
    with pytest.raises(ComposeError, match="only when connecting to networks with user configured subnets"):
        project("services: {a: {image: x, networks: {n: {ipv4_address: 10.0.0.5}}}}\nnetworks: {n: }")
    with pytest.raises(ComposeError, match="dependency cycle detected: a -> b -> a"):
        start_order({"a": ["b"], "b": ["a"]})


def test_default_network_and_top_level_runtime() -> None:
    p = project("x-hypr: {runtime: vm}\nservices: {a: {image: x}, b: {image: x, x-hypr: {runtime: sandbox}}}")
    assert list(p.networks) == ["default"] and p.networks["default"].name == "p_default"
    assert [s.runtime for s in p.services] == ["vm", "sandbox"]


def test_bodies() -> None:
    p = project()
    net = plan.network_body(p.networks["backend"], "p")
    assert net["Internal"] is True and net["IPAM"]["Config"] == [{"Subnet": "10.5.1.0/24", "Gateway": "10.5.1.1"}]
    assert net["Labels"] == {plan.PROJECT: "p", plan.NETWORK: "backend"}
    body = plan.container_body(p.service("api"), p)
    assert body["HostConfig"]["NetworkMode"] == "p_frontend"
    assert body["NetworkingConfig"]["EndpointsConfig"] == {
        "p_frontend": {"Aliases": ["api"]},
        "p_backend": {"Aliases": ["api", "app"], "IPAMConfig": {"IPv4Address": "10.5.1.9"}},
    }
    web = plan.container_body(p.service("web"), p)
    assert web["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    moved = project(wd="/elsewhere")
    assert (
        plan.container_body(moved.service("api"), moved)["Labels"][plan.CONFIG_HASH] == body["Labels"][plan.CONFIG_HASH]
    )
    changed = project(SEED.replace('A: "1"', 'A: "2"'))
    assert (
        plan.container_body(changed.service("api"), changed)["Labels"][plan.CONFIG_HASH]
        != body["Labels"][plan.CONFIG_HASH]
    )


def _container(p: Project, service: str, state: str = "running", **labels: str) -> dict[str, Any]:
    body = plan.container_body(p.service(service), p)
    return {"Id": f"id-{service}", "Names": [f"/p-{service}-1"], "State": state, "Labels": {**body["Labels"], **labels}}


def _networks(p: Project) -> list[dict[str, Any]]:
    return [{"Name": n.name, "Labels": plan.network_body(n, "p")["Labels"]} for n in p.networks.values()]


def test_plan_up_fresh_then_idempotent_then_changes() -> None:
    p = project()
    fresh = plan.plan_up(p, [], [])
    assert [n.action for n in fresh.networks] == ["create", "create"]
    assert [(s.service.name, s.action) for s in fresh.services] == [
        ("db", "create"),
        ("api", "create"),
        ("web", "create"),
    ]
    running = [_container(p, s) for s in ("db", "api", "web")]
    again = plan.plan_up(p, _networks(p), running)
    assert {n.action for n in again.networks} == {"exists"} and {s.action for s in again.services} == {"running"}
    running[0]["State"] = "exited"
    running[1]["Labels"][plan.CONFIG_HASH] = "old"
    changed = plan.plan_up(p, _networks(p), running)
    assert [s.action for s in changed.services] == ["start", "recreate", "running"]
    forced = plan.plan_up(p, _networks(p), running, force_recreate=True)
    assert {s.action for s in forced.services} == {"recreate"}


def test_plan_up_refusals_and_orphans() -> None:
    p = project()
    with pytest.raises(ComposeError, match='network p_backend was found but has incorrect label .* set to ""'):
        plan.plan_up(p, [{"Name": "p_backend", "Labels": {}}], [])
    foreign = {"Id": "abcdef123456789", "Names": ["/p-db-1"], "State": "running", "Labels": {}}
    with pytest.raises(ComposeError, match='container name "p-db-1" is already in use by workload abcdef123456'):
        plan.plan_up(p, [], [foreign])
    ext = project(SEED.replace("internal: true", "external: true"))
    with pytest.raises(ComposeError, match="network backend declared as external, but could not be found"):
        plan.plan_up(ext, [], [])
    assert [n.action for n in plan.plan_up(ext, [{"Name": "backend"}], []).networks] == ["external", "create"]
    orphan = {"Id": "o", "Names": ["/p-old-1"], "State": "running", "Labels": {plan.PROJECT: "p", plan.SERVICE: "old"}}
    warned = plan.plan_up(p, [], [orphan])
    assert warned.orphans == ("p-old-1",) and "Found orphan containers (p-old-1)" in warned.warnings[-1]


def test_plan_down() -> None:
    p = project(SEED.replace("internal: true", "external: true"))
    containers = [_container(p, s) for s in ("db", "api", "web")]
    containers.append({"Id": "o", "Names": ["/p-old-1"], "Labels": {plan.PROJECT: "p", plan.SERVICE: "old"}})
    containers.append({"Id": "x", "Names": ["/other"], "Labels": {plan.PROJECT: "q"}})
    networks = [
        {"Name": "p_frontend", "Labels": {plan.PROJECT: "p"}},
        {"Name": "backend", "Labels": {}},
        {"Name": "q_default", "Labels": {plan.PROJECT: "q"}},
    ]
    down = plan.plan_down("p", p, networks, containers)
    assert down.workloads == ("p-web-1", "p-api-1", "p-db-1") and down.networks == ("p_frontend",)
    assert "p-old-1" in down.warnings[0]
    assert plan.plan_down("p", p, networks, containers, remove_orphans=True).workloads[0] == "p-old-1"
    no_file = plan.plan_down("p", None, networks, containers)
    assert no_file.workloads == ("p-api-1", "p-db-1", "p-old-1", "p-web-1") and no_file.networks == ("p_frontend",)


CONFINED = """
services:
  app:
    image: busybox
    privileged: false
    read_only: true
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    security_opt: ["no-new-privileges:true"]
    pids_limit: 64
    tmpfs: ["/run:size=1m", /cache]
    volumes:
      - ./data:/data:ro
      - ../shared:/shared
      - /etc/hostname:/h
      - ~/x:/x
      - {type: bind, source: ./conf, target: /conf, read_only: true, bind: {propagation: rslave}}
      - {type: tmpfs, target: /scratch, tmpfs: {size: 2m, mode: 0o1777}}
"""


def test_confinement_and_mounts_map_onto_host_config() -> None:
    host = plan.container_body(project(CONFINED).service("app"), project(CONFINED))["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    assert host["CapAdd"] == ["NET_ADMIN"] and host["CapDrop"] == ["ALL"] and host["PidsLimit"] == 64
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["Tmpfs"] == {"/run": "size=1m", "/cache": ""}
    assert host["Binds"] == [
        "/srv/p/data:/data:ro", "/srv/shared:/shared", "/etc/hostname:/h", f"{Path.home()}/x:/x",
        "/srv/p/conf:/conf:ro,rslave",
    ]  # fmt: skip
    assert host["Mounts"] == [
        {
            "Type": "tmpfs",
            "Target": "/scratch",
            "ReadOnly": False,
            "TmpfsOptions": {"SizeBytes": 2 << 20, "Mode": 0o1777},
        }
    ]
    assert "Binds" not in plan.container_body(project().service("api"), project())["HostConfig"]


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ("data:/data", "named volume 'data' is not supported"),
        ("/only-a-target", "anonymous volume '/only-a-target' is not supported"),
        ("{type: volume, source: v, target: /v}", "volume type 'volume' is not supported"),
        ("{type: tmpfs, target: /t, tmpfs: {size: lots}}", "invalid size 'lots'"),
    ],
)
def test_volumes_hypr_cannot_give_are_refused_by_name(volume: str, message: str) -> None:
    text = f"services:\n  app:\n    image: busybox\n    volumes: [{volume}]\n"
    with pytest.raises(ComposeError, match=message):
        project(text)


def test_enable_ipv4_false_makes_an_ipv6_only_network_body() -> None:
    only6 = "networks:\n  six: {enable_ipv4: false, enable_ipv6: true, ipam: {config: [{subnet: 'fd00:6::/64'}]}}\n"
    p = project("services:\n  web: {image: busybox, networks: [six]}\n" + only6)
    body = plan.network_body(p.networks["six"], "p")
    assert (body["EnableIPv4"], body["EnableIPv6"], body["IPAM"]["Config"]) == (
        False,
        True,
        [{"Subnet": "fd00:6::/64"}],
    )
    # Left out when true: a project's existing networks keep the hash they were created with.
    assert "EnableIPv4" not in plan.network_body(project().networks["frontend"], "p")


@pytest.mark.parametrize(
    ("restart", "wanted"),
    [
        ('restart: "on-failure:3"', ("on-failure", 3)),
        ("deploy: {restart_policy: {condition: on-failure, max_attempts: 2}}", ("on-failure", 2)),
        ('restart: always, deploy: {restart_policy: {condition: "on-failure", max_attempts: 4}}', ("on-failure", 4)),
        ("deploy: {restart_policy: {condition: none}}", ("no", 0)),
        ("deploy: {restart_policy: {condition: any}}", ("always", 0)),
        ("deploy: {restart_policy: {max_attempts: 1}}", ("always", 1)),  # the spec's default: any (the API refuses)
    ],
)
def test_restart_and_deploy_restart_policy_as_docker_compose_maps_them(restart: str, wanted: tuple[str, int]) -> None:
    """deploy.restart_policy wins over restart, its condition named as the Engine names it (getRestartPolicy)."""
    db = project(SEED.replace('restart: "on-failure:3"', restart)).service("db")
    assert (db.restart, db.restart_retries) == wanted
