"""The project as typed, frozen values, built from a validated compose mapping. Pure: semantic checks the schema
cannot express (undefined networks and services, dependency cycles, `ipv4_address` outside the subnets) live here.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypr.compose.confinement import host_config
from hypr.compose.errors import ComposeError
from hypr.compose.values import one_or_many, parse_bytes
from hypr.errors import HyprError
from hypr.ports import PortSpec, parse_publish

RUNTIMES = ("sandbox", "vm")
DEFAULT = "default"


@dataclass(frozen=True)
class IpamPool:
    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkSpec:
    key: str  # the key under `networks:`; the label com.docker.compose.network
    name: str  # the network's name in hyprd
    external: bool = False
    driver: str = "bridge"
    driver_opts: dict[str, str] = field(default_factory=dict)
    ipam_driver: str = "default"
    ipam_options: dict[str, str] = field(default_factory=dict)
    pools: tuple[IpamPool, ...] = ()
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    enable_ipv4: bool = True  # false: an IPv6-only network (with enable_ipv6)
    enable_ipv6: bool = False


@dataclass(frozen=True)
class Attachment:
    network: str  # a key of Project.networks
    aliases: tuple[str, ...] = ()
    ipv4_address: str | None = None
    priority: int = 0
    ipv6_address: str | None = None
    gw_priority: int = 0


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    container_name: str
    image: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    hostname: str | None = None
    ports: tuple[PortSpec, ...] = ()
    networks: tuple[Attachment, ...] = ()  # in attach order: highest priority first
    depends_on: tuple[str, ...] = ()
    restart: str = "no"
    restart_retries: int = 0
    runtime: str = "sandbox"
    labels: dict[str, str] = field(default_factory=dict)
    cpus: float | None = None
    memory: int | None = None
    pull_policy: str = "missing"  # always | missing | never (compose's `if_not_present` is `missing`)
    platform: str = ""  # only this host's: a pull fetches it anyway
    user: str = ""
    working_dir: str = ""
    stop_signal: str = ""
    expose: tuple[str, ...] = ()  # "80/tcp"
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()  # "name:address"
    domainname: str = ""
    confinement: dict[str, Any] = field(default_factory=dict)  # HostConfig fields: Privileged, Binds, Tmpfs, ...


@dataclass(frozen=True)
class Project:
    name: str
    working_dir: Path
    files: tuple[Path, ...]
    networks: dict[str, NetworkSpec]  # only the networks some service uses, by key
    services: tuple[ServiceSpec, ...]  # in start order (dependencies first)
    warnings: tuple[str, ...] = ()

    def service(self, name: str) -> ServiceSpec:
        return next(s for s in self.services if s.name == name)


def _str_map(value: Any, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """list_or_dict -> {k: v}; a key with no value takes it from `env` (and is dropped if unset there)."""
    items: list[tuple[str, Any]]
    if isinstance(value, list):
        items = [(k, v if sep else None) for k, sep, v in (str(i).partition("=") for i in value)]
    else:
        items = list((value or {}).items())
    result = {}
    for key, val in items:
        if val is None:
            if env is None:
                result[str(key)] = ""
            elif str(key) in env:
                result[str(key)] = env[str(key)]
            continue
        result[str(key)] = _scalar(val)
    return result


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


PULL_POLICIES = {"always": "always", "missing": "missing", "if_not_present": "missing", "never": "never"}


def _pull_policy(value: Any, where: str) -> str:
    """compose's pull_policy; `build` needs a build, which hypr does not do."""
    if value is None:
        return "missing"
    if str(value) not in PULL_POLICIES:
        raise ComposeError(f"{where}: {value!r} is not supported (supported: always, missing, if_not_present, never)")
    return PULL_POLICIES[str(value)]


def _platform(value: Any, where: str) -> str:
    """compose's `platform`: checked, and only this host's is accepted (hypr emulates no other architecture)."""
    if value is None:
        return ""
    from hypr.images import manifest as mf  # only for files that name a platform

    try:
        mf.check_host_platform(str(value))
    except HyprError as exc:
        raise ComposeError(f"{where}: {exc.message}") from None
    return str(value)


def _expose(value: Any, where: str) -> tuple[str, ...]:
    ports = []
    for item in value:
        try:
            ports += [f"{s.guest_port}/{s.protocol}" for s in parse_publish(str(item))]
        except HyprError as exc:
            raise ComposeError(f"{where}: {exc.message}") from None
    return tuple(ports)


def _extra_hosts(value: Any) -> tuple[str, ...]:
    """compose's extra_hosts: a list of "name:address" / "name=address", or a map name -> address."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return tuple(f"{k}:{v}" for k, v in value.items())
    return tuple(str(v).replace("=", ":", 1) if "=" in str(v) else str(v) for v in value)


def _words(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(shlex.split(value))
    return tuple(str(v) for v in value)


def _network(key: str, raw: Mapping[str, Any] | None, project: str) -> NetworkSpec:
    raw = raw or {}
    external = raw.get("external")
    if external:
        name = raw.get("name") or (external.get("name") if isinstance(external, Mapping) else None) or key
        return NetworkSpec(key=key, name=str(name), external=True)
    ipam = raw.get("ipam") or {}
    pools = tuple(
        IpamPool(subnet=c.get("subnet"), ip_range=c.get("ip_range"), gateway=c.get("gateway"),
                 aux_addresses={str(k): str(v) for k, v in (c.get("aux_addresses") or {}).items()})
        for c in ipam.get("config") or []
    )  # fmt: skip
    return NetworkSpec(
        key=key, name=str(raw.get("name") or f"{project}_{key}"), driver=str(raw.get("driver") or "bridge"),
        driver_opts=_str_map(raw.get("driver_opts")), ipam_driver=str(ipam.get("driver") or "default"),
        ipam_options=_str_map(ipam.get("options")), pools=pools, internal=bool(raw.get("internal")),
        enable_ipv4=raw.get("enable_ipv4") is not False,
        enable_ipv6=bool(raw.get("enable_ipv6")),
        attachable=bool(raw.get("attachable")), labels=_str_map(raw.get("labels")),
    )  # fmt: skip


def _ports(raw: Sequence[Any], where: str) -> tuple[PortSpec, ...]:
    specs: list[PortSpec] = []
    for index, item in enumerate(raw):
        if isinstance(item, Mapping):
            host = f"{item.get('host_ip') or ''}:{item.get('published') or ''}:" if item.get("published") else ""
            if item.get("host_ip") and not item.get("published"):
                host = f"{item['host_ip']}::"
            text = f"{host}{item.get('target')}/{item.get('protocol') or 'tcp'}"
        else:
            text = str(item)
        try:
            specs.extend(parse_publish(text))
        except HyprError as exc:
            raise ComposeError(f"{where}[{index}]: {exc.message}") from None
    return tuple(specs)


# deploy.restart_policy.condition -> the Engine's policy name, as docker compose maps it.
_CONDITIONS = {"none": "no", "no": "no", "on-failure": "on-failure", "unless-stopped": "unless-stopped",
               "any": "always", "always": "always"}  # fmt: skip


def _restart(raw: Mapping[str, Any], where: str) -> tuple[str, int]:
    """`restart: NAME[:N]`, or `deploy.restart_policy: {condition, max_attempts}` which wins when both are given
    (docker compose's getRestartPolicy) -> (Engine policy name, MaximumRetryCount)."""
    policy = (raw.get("deploy") or {}).get("restart_policy")
    if policy is not None:
        condition, attempts = policy.get("condition") or "any", policy.get("max_attempts") or 0
        if condition not in _CONDITIONS:
            raise ComposeError(f"{where}.deploy.restart_policy.condition: invalid condition {condition!r}")
        return _CONDITIONS[condition], int(attempts)
    value = raw.get("restart")
    name, _, retries = str(value or "no").partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped") or (retries and not retries.isdigit()):
        raise ComposeError(f"{where}.restart: invalid restart policy {value!r}")
    return name, int(retries or 0)


def _runtime(service: Mapping[str, Any], default: str, where: str) -> str:
    hypr = service.get("x-hypr") or {}
    if not isinstance(hypr, Mapping):
        raise ComposeError(f"{where}.x-hypr: must be a mapping")
    runtime = hypr.get("runtime") or service.get("runtime") or default
    if runtime not in RUNTIMES:
        raise ComposeError(f"{where}: unknown runtime {runtime!r} (supported: {', '.join(RUNTIMES)})")
    return str(runtime)


def _attachments(name: str, raw: Any, declared: Mapping[str, Any]) -> tuple[Attachment, ...]:
    if not raw:
        return (Attachment(network=DEFAULT),)
    items = raw.items() if isinstance(raw, Mapping) else ((n, None) for n in raw)
    found = []
    for key, options in items:
        if key not in declared and key != DEFAULT:
            raise ComposeError(f'service "{name}" refers to undefined network {key}: invalid compose project')
        options = options or {}
        found.append(Attachment(
            network=str(key), aliases=tuple(str(a) for a in options.get("aliases") or ()),
            ipv4_address=options.get("ipv4_address"), priority=int(options.get("priority") or 0),
            ipv6_address=options.get("ipv6_address"),
            gw_priority=int(options.get("gw_priority") or 0),
        ))  # fmt: skip
    return tuple(sorted(found, key=lambda a: (-a.priority, a.network)))


def _depends(name: str, raw: Any, services: Mapping[str, Any], warnings: list[str]) -> tuple[str, ...]:
    items = raw.items() if isinstance(raw, Mapping) else ((d, None) for d in raw or ())
    found = []
    for dep, options in items:
        if dep not in services:
            raise ComposeError(f'service "{name}" depends on undefined service "{dep}": invalid compose project')
        condition = (options or {}).get("condition", "service_started")
        if condition != "service_started":
            warnings.append(f"services.{name}.depends_on.{dep}: condition {condition} is treated as service_started")
        found.append(str(dep))
    return tuple(found)


def start_order(depends: Mapping[str, Sequence[str]]) -> list[str]:
    """Dependencies first; ties in name order. A cycle is an error naming it."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*trail[trail.index(name) :], name]
            raise ComposeError(f"dependency cycle detected: {' -> '.join(cycle)}")
        state[name] = "visiting"
        for dep in sorted(depends[name]):
            visit(dep, [*trail, name])
        state[name] = "done"
        order.append(name)

    for name in sorted(depends):
        visit(name, [])
    return order


def _check_static_ips(service: ServiceSpec, networks: Mapping[str, NetworkSpec]) -> None:
    for attachment in service.networks:
        if not attachment.ipv4_address:
            continue
        where = f"services.{service.name}.networks.{attachment.network}.ipv4_address"
        try:
            address = ipaddress.IPv4Address(attachment.ipv4_address)
        except ValueError:
            raise ComposeError(f"{where}: invalid IPv4 address {attachment.ipv4_address!r}") from None
        network = networks[attachment.network]
        if network.external:
            continue  # the daemon knows its subnet
        subnets = [ipaddress.ip_network(p.subnet, strict=False) for p in network.pools if p.subnet]
        if not subnets:
            raise ComposeError(
                f"{where}: user specified IP address is supported only when connecting to networks with user "
                f"configured subnets (network {network.key} has no ipam.config subnet)"
            )
        if not any(address in subnet for subnet in subnets):
            raise ComposeError(
                f"{where}: {address} is not in the subnet{'s' if len(subnets) > 1 else ''} of network "
                f"{network.key} ({', '.join(map(str, subnets))})"
            )


def build_project(
    config: Mapping[str, Any], name: str, *, working_dir: Path, files: Sequence[Path], environment: Mapping[str, str],
    warnings: Sequence[str] = (),
) -> Project:  # fmt: skip
    notes = list(warnings)
    services_raw: Mapping[str, Any] = config.get("services") or {}
    declared: Mapping[str, Any] = config.get("networks") or {}
    top = config.get("x-hypr") or {}
    default_runtime = str(top.get("runtime") or "sandbox") if isinstance(top, Mapping) else "sandbox"
    if not services_raw:
        raise ComposeError("no service selected: the compose file defines no services")
    services: dict[str, ServiceSpec] = {}
    for sname, raw in services_raw.items():
        raw = raw or {}
        where = f"services.{sname}"
        if not raw.get("image"):
            raise ComposeError(f"service {sname!r} has neither an image nor a build context specified")
        restart, retries = _restart(raw, where)
        services[sname] = ServiceSpec(
            name=sname, container_name=str(raw.get("container_name") or f"{name}-{sname}-1"),
            image=str(raw["image"]), command=_words(raw.get("command")), entrypoint=_words(raw.get("entrypoint")),
            environment=_str_map(raw.get("environment"), environment),
            hostname=str(raw["hostname"]) if raw.get("hostname") else None,
            ports=_ports(raw.get("ports") or [], f"{where}.ports"),
            networks=_attachments(sname, raw.get("networks"), declared),
            depends_on=_depends(sname, raw.get("depends_on"), services_raw, notes),
            restart=restart, restart_retries=retries, runtime=_runtime(raw, default_runtime, where),
            labels=_str_map(raw.get("labels")),
            cpus=float(raw["cpus"]) if raw.get("cpus") is not None else None,
            memory=parse_bytes(raw["mem_limit"], f"{where}.mem_limit") if raw.get("mem_limit") is not None else None,
            pull_policy=_pull_policy(raw.get("pull_policy"), f"{where}.pull_policy"),
            platform=_platform(raw.get("platform"), f"{where}.platform"),
            user=str(raw.get("user") or ""), working_dir=str(raw.get("working_dir") or ""),
            stop_signal=str(raw.get("stop_signal") or ""), expose=_expose(raw.get("expose") or [], f"{where}.expose"),
            dns=one_or_many(raw.get("dns")), dns_search=one_or_many(raw.get("dns_search")),
            dns_opt=one_or_many(raw.get("dns_opt")), extra_hosts=_extra_hosts(raw.get("extra_hosts")),
            domainname=str(raw.get("domainname") or ""), confinement=host_config(raw, working_dir, where),
        )  # fmt: skip
    used = sorted({a.network for s in services.values() for a in s.networks})
    networks = {key: _network(key, declared.get(key), name) for key in used}
    for service in services.values():
        _check_static_ips(service, networks)
    order = start_order({s.name: s.depends_on for s in services.values()})
    return Project(
        name=name, working_dir=working_dir, files=tuple(files), networks=networks,
        services=tuple(services[s] for s in order), warnings=tuple(notes),
    )  # fmt: skip
