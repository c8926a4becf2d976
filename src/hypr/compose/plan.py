"""Pure planning: a Project and what the daemon has (its network and workload listings) -> what `up` and `down` do.

Nothing here talks to the daemon: every check that can be made before acting is made here, so a refused `up`
changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hypr.compose.errors import ComposeError
from hypr.compose.model import NetworkSpec, Project, ServiceSpec
from hypr.ports import to_bindings

PROJECT = "com.docker.compose.project"
NETWORK = "com.docker.compose.network"
SERVICE = "com.docker.compose.service"
NUMBER = "com.docker.compose.container-number"
ONEOFF = "com.docker.compose.oneoff"
CONFIG_HASH = "com.docker.compose.config-hash"
WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"

NetworkAction = Literal["create", "exists", "external"]
ServiceAction = Literal["create", "recreate", "start", "running"]


@dataclass(frozen=True)
class NetworkStep:
    spec: NetworkSpec
    action: NetworkAction
    body: dict[str, Any]


@dataclass(frozen=True)
class ServiceStep:
    service: ServiceSpec
    action: ServiceAction
    body: dict[str, Any]
    existing_id: str | None = None


@dataclass(frozen=True)
class UpPlan:
    networks: tuple[NetworkStep, ...]
    services: tuple[ServiceStep, ...]  # in start order
    orphans: tuple[str, ...] = ()  # workload names of this project whose service is gone
    remove_orphans: bool = False
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class DownPlan:
    workloads: tuple[str, ...]  # names, dependents first
    networks: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def network_body(spec: NetworkSpec, project: str) -> dict[str, Any]:
    """Docker's network-create body, with compose's labels."""
    config = []
    for pool in spec.pools:
        entry: dict[str, Any] = {}
        if pool.subnet:
            entry["Subnet"] = pool.subnet
        if pool.ip_range:
            entry["IPRange"] = pool.ip_range
        if pool.gateway:
            entry["Gateway"] = pool.gateway
        if pool.aux_addresses:
            entry["AuxiliaryAddresses"] = dict(pool.aux_addresses)
        config.append(entry)
    return {
        "Name": spec.name,
        "Driver": spec.driver,
        "Options": dict(spec.driver_opts),
        "IPAM": {"Driver": spec.ipam_driver, "Config": config, "Options": dict(spec.ipam_options)},
        "Internal": spec.internal,
        "Attachable": spec.attachable,
        "EnableIPv6": spec.enable_ipv6,
        "Labels": {**spec.labels, PROJECT: project, NETWORK: spec.key},
        # Only when false: the body's hash tells a changed network, and older projects' hashes had no such key.
        **({} if spec.enable_ipv4 else {"EnableIPv4": False}),
    }


def config_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def container_body(service: ServiceSpec, project: Project) -> dict[str, Any]:
    """Docker's container-create body (as `run_body` builds it), labelled like docker compose's containers.

    The config hash covers everything but the labels that say where the file was, so moving the file does not
    recreate anything, while any change to what the workload is or where it is attached does."""
    endpoints: dict[str, Any] = {}
    for attachment in service.networks:
        network = project.networks[attachment.network]
        config: dict[str, Any] = {"Aliases": list(dict.fromkeys([service.name, *attachment.aliases]))}
        if attachment.ipv4_address:
            config["IPAMConfig"] = {"IPv4Address": attachment.ipv4_address}
        if attachment.ipv6_address:
            config.setdefault("IPAMConfig", {})["IPv6Address"] = attachment.ipv6_address
        if attachment.gw_priority:
            config["GwPriority"] = attachment.gw_priority
        endpoints[network.name] = config
    host_config: dict[str, Any] = {
        "NetworkMode": project.networks[service.networks[0].network].name,
        "PortBindings": to_bindings(service.ports),
        "Runtime": service.runtime,
        "RestartPolicy": {"Name": service.restart, "MaximumRetryCount": service.restart_retries},
    }
    if service.cpus:
        host_config["NanoCpus"] = int(service.cpus * 1e9)
    if service.memory:
        host_config["Memory"] = service.memory
    host_config.update(service.confinement)
    body: dict[str, Any] = {
        "Image": service.image,
        "Cmd": list(service.command) if service.command is not None else [],
        "Entrypoint": list(service.entrypoint) if service.entrypoint is not None else None,
        "Env": [f"{k}={v}" for k, v in service.environment.items()],
        "Hostname": service.hostname or "",
        "Labels": {**service.labels, PROJECT: project.name, SERVICE: service.name, NUMBER: "1", ONEOFF: "False"},
        "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    }
    for key, value in (
        ("User", service.user),
        ("WorkingDir", service.working_dir),
        ("StopSignal", service.stop_signal),
    ):
        if value:
            body[key] = value
    if service.expose:
        body["ExposedPorts"] = {port: {} for port in service.expose}
    for key, values in (("Dns", service.dns), ("DnsSearch", service.dns_search), ("DnsOptions", service.dns_opt),
                        ("ExtraHosts", service.extra_hosts)):  # fmt: skip
        if values:
            host_config[key] = list(values)
    if service.domainname:
        body["Domainname"] = service.domainname
    body["Labels"][CONFIG_HASH] = config_hash(body)
    body["Labels"][WORKING_DIR] = str(project.working_dir)
    body["Labels"][CONFIG_FILES] = ",".join(str(f) for f in project.files)
    return body


def _name(container: Mapping[str, Any]) -> str:
    return str(container["Names"][0]).lstrip("/")


def _network_step(spec: NetworkSpec, project: str, existing: Mapping[str, Mapping[str, Any]]) -> NetworkStep:
    found = existing.get(spec.name)
    body = network_body(spec, project)
    if spec.external:
        if found is None:
            raise ComposeError(f"network {spec.name} declared as external, but could not be found")
        return NetworkStep(spec, "external", {})
    if found is None:
        return NetworkStep(spec, "create", body)
    labels = found.get("Labels") or {}
    if labels.get(NETWORK) != spec.key:
        raise ComposeError(
            f"network {spec.name} was found but has incorrect label {NETWORK} set to "
            f'"{labels.get(NETWORK, "")}" (expected: "{spec.key}")'
        )
    return NetworkStep(spec, "exists", body)


def plan_up(
    project: Project, networks: Sequence[Mapping[str, Any]], containers: Sequence[Mapping[str, Any]], *,
    force_recreate: bool = False, remove_orphans: bool = False,
) -> UpPlan:  # fmt: skip
    """`networks`/`containers`: the daemon's listings (all workloads, any state)."""
    warnings = list(project.warnings)
    by_name = {str(n["Name"]): n for n in networks}
    net_steps = tuple(_network_step(spec, project.name, by_name) for spec in project.networks.values())
    for step in net_steps:
        owner = (by_name.get(step.spec.name, {}).get("Labels") or {}).get(PROJECT)
        if step.action == "exists" and owner != project.name:
            warnings.append(
                f"a network with name {step.spec.name} exists but was not created for project {project.name!r}. "
                "Set `external: true` to use an existing network"
            )
    workloads = {_name(c): c for c in containers}
    steps = []
    for service in project.services:
        body = container_body(service, project)
        found = workloads.get(service.container_name)
        if found is None:
            steps.append(ServiceStep(service, "create", body))
            continue
        labels = found.get("Labels") or {}
        if labels.get(PROJECT) != project.name or labels.get(SERVICE) != service.name:
            raise ComposeError(
                f'container name "{service.container_name}" is already in use by workload {found["Id"][:12]}, '
                f"which is not service {service.name} of project {project.name}: remove or rename it"
            )
        if force_recreate or labels.get(CONFIG_HASH) != body["Labels"][CONFIG_HASH]:
            steps.append(ServiceStep(service, "recreate", body, str(found["Id"])))
        elif found.get("State") != "running":
            steps.append(ServiceStep(service, "start", body, str(found["Id"])))
        else:
            steps.append(ServiceStep(service, "running", body, str(found["Id"])))
    names = {s.name for s in project.services}
    orphans = tuple(sorted(
        _name(c) for c in containers
        if (c.get("Labels") or {}).get(PROJECT) == project.name and (c.get("Labels") or {}).get(SERVICE) not in names
    ))  # fmt: skip
    if orphans and not remove_orphans:
        warnings.append(
            f"Found orphan containers ({', '.join(orphans)}) for this project. If you removed or renamed this service "
            "in your compose file, you can run this command with the --remove-orphans flag to clean it up."
        )
    return UpPlan(net_steps, tuple(steps), orphans, remove_orphans, tuple(warnings))


def plan_down(
    project_name: str, project: Project | None, networks: Sequence[Mapping[str, Any]],
    containers: Sequence[Mapping[str, Any]], *, remove_orphans: bool = False,
) -> DownPlan:  # fmt: skip
    """Without a compose file (`down -p NAME`), everything labelled with the project goes. With one, the file's
    services and networks go, orphans only with --remove-orphans; external networks never."""
    ours = [c for c in containers if (c.get("Labels") or {}).get(PROJECT) == project_name]
    warnings: list[str] = []
    if project is not None:
        order = [s.name for s in reversed(project.services)]
        rank = {name: i for i, name in enumerate(order)}
        in_file = [c for c in ours if c["Labels"].get(SERVICE) in rank]
        orphans = [c for c in ours if c["Labels"].get(SERVICE) not in rank]
        chosen = sorted(in_file, key=lambda c: rank[c["Labels"][SERVICE]])
        if orphans and remove_orphans:
            chosen = orphans + chosen
        elif orphans:
            warnings.append(
                f"Found orphan containers ({', '.join(sorted(map(_name, orphans)))}) for this project. If you "
                "removed or renamed this service in your compose file, you can run this command with the "
                "--remove-orphans flag to clean it up."
            )
        wanted = {n.name for n in project.networks.values() if not n.external}
    else:
        chosen = sorted(ours, key=_name)
        wanted = None
    labelled = sorted(
        str(n["Name"]) for n in networks
        if (n.get("Labels") or {}).get(PROJECT) == project_name and (wanted is None or n["Name"] in wanted)
    )  # fmt: skip
    return DownPlan(tuple(_name(c) for c in chosen), tuple(labelled), tuple(warnings))
