"""Workload requests, validated as a pure step: Docker's container-create body + a Snapshot -> a plan.

The plan names everything the transaction will write; addresses are chosen later, inside the transaction.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import os
import random
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any

import re2

from hypr.errors import Conflict, InvalidParameter, NotFound
from hypr.images import manifest as mf
from hypr.models import BUILTIN_IMAGES, DEFAULT_NETWORK, Network, Resolver, Snapshot, Stdio, Workload
from hypr.ports import PortSpec, from_bindings
from hypr.services.confinement import plan_confinement
from hypr.services.images import find_image
from hypr.services.network_plan import find_network
from hypr.services.validation import (
    flag,
    label_matches,
    mapping,
    new_id,
    now_rfc3339,
    parse_signal,
    string_map,
    strings,
)

RUNTIMES = ("sandbox", "vm")
LOOPBACK6 = ipaddress.IPv6Address("::1")
ANY6 = ipaddress.IPv6Address("::")
MAX_PORTS = 16_384  # published ports per workload: each holds a socket and a map element
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_ADJECTIVES = (
    "brave",
    "calm",
    "eager",
    "fancy",
    "gentle",
    "happy",
    "jolly",
    "keen",
    "lucid",
    "nimble",
    "quiet",
    "swift",
)
_NOUNS = ("ada", "babbage", "curie", "dijkstra", "euler", "feynman", "gauss", "hopper", "knuth", "lovelace", "noether")


@dataclass(frozen=True)
class EndpointRequest:
    network: Network
    ip: str | None  # a static address asked for, or None for the next free one
    aliases: tuple[str, ...]
    gw_priority: int = 0
    ip6: str | None = None  # a static IPv6 address asked for (dual-stack networks), or None for the next free one
    mac: str | None = None  # EndpointSettings.MacAddress (or the container's Config.MacAddress), else derived
    driver_opts: Mapping[str, str] = dataclasses.field(default_factory=dict)
    link_local_ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkloadPlan:
    workload: Workload
    endpoints: tuple[EndpointRequest, ...]
    ports: tuple[PortSpec, ...]

    @property
    def reached_over_ipv6(self) -> bool:
        """Its published ports are forwarded over IPv6 too: its gateway network has IPv6."""
        target = port_target(self.endpoints)
        return target is not None and target.ipv6


def _ipv6_only_ports(ports: tuple[PortSpec, ...], target: Network) -> tuple[PortSpec, ...]:
    """Ports of a workload reached over an IPv6-only network: as Docker 28 does, a mapping on every address
    (HostIp "" or 0.0.0.0) is published on IPv6 alone (`[::]`, IPv4 stays free); a specific IPv4 host address is
    refused (Docker proxies it to the IPv6 address in user space; hypr does not)."""
    v4 = next((p for p in ports if p.host_ip.version == 4 and not p.host_ip.is_unspecified), None)
    if v4 is not None:
        raise InvalidParameter(
            f"cannot publish on {v4.host_ip}: network {target.name}, which carries the published ports, is IPv6-only "
            "(publish on [::] or an IPv6 host address)"
        )
    return tuple(dataclasses.replace(p, host_ip=ANY6) if p.host_ip.version == 4 else p for p in ports)


def port_target(endpoints: tuple[EndpointRequest, ...]) -> Network | None:
    """The network published ports reach the workload on: its gateway network (the highest GwPriority, then by
    name, among the networks that are not internal: Snapshot.gateway_order's rule)."""
    ordered = sorted(endpoints, key=lambda e: (e.network.internal, -e.gw_priority, e.network.name))
    return next((e.network for e in ordered if not e.network.internal), None)


def find_workload(snapshot: Snapshot, ref: str) -> Workload:
    """Docker's order: full ID, exact name (with or without the leading /), then a unique ID prefix."""
    exact = snapshot.workload(ref) if snapshot.has_workload(ref) else snapshot.workload_named(ref.removeprefix("/"))
    if exact is not None:
        return exact
    prefixed = [w for w in snapshot.workloads if ref and w.id.startswith(ref)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
    raise NotFound(f"No such container: {ref}")


def check_name(name: str, snapshot: Snapshot) -> None:
    if not _NAME.match(name):
        raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    clash = snapshot.workload_named(name)
    if clash:
        raise Conflict(
            f'Conflict. The container name "/{name}" is already in use by container "{clash.id}". '
            "You have to remove (or rename) that container to be able to reuse that name."
        )


def generated_name(snapshot: Snapshot, rng: random.Random) -> str:
    while True:
        name = f"{rng.choice(_ADJECTIVES)}_{rng.choice(_NOUNS)}"
        if snapshot.workload_named(name) is None:
            return name
        name = f"{name}{rng.randint(1, 99)}"
        if snapshot.workload_named(name) is None:
            return name


def restart_policy(value: Any) -> tuple[str, int]:
    """Docker's HostConfig.RestartPolicy {Name, MaximumRetryCount} -> (name, maximum retries; 0: no limit), with
    moby's messages (ValidateRestartPolicy, API >= 1.44). An empty Name is "no" whatever its count, as Docker
    accepts from older clients. Pure; InvalidParameter (400) on a bad one."""
    policy = mapping(value, "RestartPolicy")
    name, count = policy.get("Name") or "", policy.get("MaximumRetryCount") or 0
    if not isinstance(name, str) or not isinstance(count, int) or isinstance(count, bool):
        raise InvalidParameter("invalid RestartPolicy: expected {Name: string, MaximumRetryCount: integer}")
    if name == "":
        return "no", 0
    if name not in RESTART_POLICIES:
        raise InvalidParameter(
            f"invalid restart policy: unknown policy '{name}'; use one of "
            + ", ".join(f"'{p}'" for p in RESTART_POLICIES[:-1])
            + f", or '{RESTART_POLICIES[-1]}'"
        )
    if name != "on-failure" and count:
        negative = " and cannot be negative" if count < 0 else ""
        raise InvalidParameter(
            f"invalid restart policy: maximum retry count can only be used with 'on-failure'{negative}"
        )
    if count < 0:
        raise InvalidParameter("invalid restart policy: maximum retry count cannot be negative")
    return name, count


def plan_workload_create(
    body: Any, name: str | None, snapshot: Snapshot, rng: random.Random | None = None
) -> WorkloadPlan:
    if not isinstance(body, Mapping):
        raise InvalidParameter("invalid JSON: expected an object")
    host_config = mapping(body.get("HostConfig"), "HostConfig")
    _log_driver(host_config)
    if name:
        check_name(name, snapshot)
    else:
        name = generated_name(snapshot, rng or random.Random())
    image = body.get("Image")
    if not isinstance(image, str) or not image:
        raise InvalidParameter("image is required: name a built-in image (host, busybox) or a rootfs directory")
    pulled = None if image in BUILTIN_IMAGES or image.startswith("/") else find_image(snapshot, image)
    if pulled is not None:
        mf.check_runnable(dict(pulled.config), image)
    runtime = host_config.get("Runtime") or "sandbox"
    if runtime not in RUNTIMES:
        raise InvalidParameter(f"unknown or invalid runtime name: {runtime} (supported: {', '.join(RUNTIMES)})")
    restart, restart_max = restart_policy(host_config.get("RestartPolicy"))
    if flag(host_config, "AutoRemove") and restart != "no":
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    mode = network_mode(host_config, snapshot)
    check_network_mode(mode, body, host_config, runtime)
    mac = _mac(body.get("MacAddress"), "MacAddress")
    endpoints = _plan_endpoints(body, host_config, snapshot, mac) if not mode else ()
    links = plan_links(host_config.get("Links"), snapshot)
    run = mf.run_config(dict(pulled.config)) if pulled is not None else mf.RunConfig()
    entrypoint, command = _command(body, run)
    exposed = tuple(sorted(set(run.exposed_ports) | set(_exposed(body.get("ExposedPorts")))))
    ports = tuple(from_bindings(host_config.get("PortBindings"))) if mode != "host" else ()
    if flag(host_config, "PublishAllPorts") and mode != "host":
        ports = _publish_all(ports, exposed)
    if ports and mode == "none":
        raise InvalidParameter("conflicting options: port publishing and the none network mode (it has no way in)")
    if len(ports) > MAX_PORTS:
        raise InvalidParameter(f"too many published ports: {len(ports)} (at most {MAX_PORTS} per workload)")
    if ports and all(e.network.internal for e in endpoints):
        raise InvalidParameter(
            "cannot publish ports: the workload is attached only to internal networks, which have no way in or out"
        )
    if any(p.host_ip == LOOPBACK6 and p.protocol == "udp" for p in ports):
        raise InvalidParameter(
            "cannot publish UDP on [::1]: IPv6 cannot forward loopback traffic (use 127.0.0.1 or [::])"
        )
    target = port_target(endpoints)
    v6 = next((p for p in ports if p.host_ip.version == 6 and p.host_ip != LOOPBACK6), None)  # [::1] is relayed
    if v6 is not None and target is not None and not target.ipv6:
        raise InvalidParameter(
            f"cannot publish on [{v6.host_ip}]: network {target.name}, which carries the published ports, has no IPv6"
        )
    if target is not None and not target.ipv4:
        ports = _ipv6_only_ports(ports, target)
    workload = Workload(
        id=new_id(), name=name, image=image, runtime=runtime, command=command, entrypoint=entrypoint,
        env={**_env(list(run.env)), **_env(body.get("Env"))}, hostname=_hostname(body, name, mode),
        labels={**dict(run.labels), **string_map("labels", body.get("Labels"))}, created=now_rfc3339(),
        auto_remove=flag(host_config, "AutoRemove"), restart=restart, restart_max=restart_max, image_id=pulled.id if pulled else "",
        user=_string(body, "User") or run.user, workdir=_workdir(body) or run.workdir,
        stop_signal=_stop_signal(body) or run.stop_signal, exposed_ports=exposed,
        resolver=resolver_settings(host_config, _string(body, "Domainname")), **_resources(host_config),
        confinement=plan_confinement(host_config, runtime), network_mode=mode, links=links,
        publish_all=flag(host_config, "PublishAllPorts"), mac_address=mac or "", stdio=_stdio(body),
    )  # fmt: skip
    return WorkloadPlan(workload=workload, endpoints=endpoints, ports=ports)


def _stdio(body: Mapping[str, Any]) -> Stdio:
    """Docker's Tty, OpenStdin and StdinOnce (false unless asked for; AttachStdin/-out/-err are the client's)."""
    return Stdio(tty=flag(body, "Tty"), open_stdin=flag(body, "OpenStdin"), stdin_once=flag(body, "StdinOnce"))


HOSTNAME_MAX = 63  # a DNS label; the kernel takes 64 (sethostname fails beyond, as `docker run` does there)


def _hostname(body: Mapping[str, Any], name: str, mode: str) -> str:
    """ "" means the host's (host mode) or the namespace owner's (container mode), found at each start. The default,
    the workload's name, is cut to a label's length; a hostname asked for is refused when longer, never cut."""
    if mode.startswith("container:"):
        return ""
    asked = body.get("Hostname")
    if asked and len(str(asked)) > HOSTNAME_MAX:
        raise InvalidParameter(f"invalid hostname {str(asked)[:80]!r}: longer than {HOSTNAME_MAX} characters")
    return str(asked or ("" if mode == "host" else name))[:HOSTNAME_MAX]


def _command(body: Mapping[str, Any], run: mf.RunConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(entrypoint, whole argv), Docker's rules: an Entrypoint in the request replaces the image's and drops the
    image's Cmd; a Cmd in the request replaces the image's Cmd. `[""]` or `[]` as Entrypoint means none."""
    if body.get("Entrypoint") is not None:
        entrypoint = tuple(e for e in _str_slice(body.get("Entrypoint"), "Entrypoint") if e)
        cmd = tuple(_str_slice(body.get("Cmd"), "Cmd"))
    else:
        entrypoint = run.entrypoint
        cmd = tuple(_str_slice(body.get("Cmd"), "Cmd")) or run.cmd
    return entrypoint, entrypoint + cmd


def _exposed(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise InvalidParameter("invalid ExposedPorts: expected an object")
    return [str(k) if "/" in str(k) else f"{k}/tcp" for k in value]


def _publish_all(ports: tuple[PortSpec, ...], exposed: tuple[str, ...]) -> tuple[PortSpec, ...]:
    """`-P`: every exposed port not already published gets a free host port (Docker's PublishAllPorts)."""
    taken = {(p.guest_port, p.protocol) for p in ports}
    extra = [
        spec
        for port in exposed
        for spec in from_bindings({port: [{}]})
        if (spec.guest_port, spec.protocol) not in taken
    ]
    return tuple(sorted((*ports, *extra)))


def _string(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidParameter(f"invalid {key}: expected a string")
    if value and "\0" in value:
        raise InvalidParameter(f"invalid {key}: {value!r} contains a NUL byte")  # no kernel call takes one
    return value or ""


def create_warnings(body: Mapping[str, Any]) -> list[str]:
    """Docker's `Warnings` of a create: what is accepted but does nothing here (images and compose files carry
    health checks, so refusing them would refuse those; the docker CLI prints each warning)."""
    test = mapping(body.get("Healthcheck"), "Healthcheck").get("Test")
    if test and test != ["NONE"]:
        return ["Healthcheck is not supported by hypr: no health check runs (State.Health stays absent)"]
    return []


def _workdir(body: Mapping[str, Any]) -> str:
    """Docker's check at create (daemon/container.go): a working directory asked for is an absolute path."""
    workdir = _string(body, "WorkingDir")
    if workdir and not workdir.startswith("/"):
        raise InvalidParameter(f"the working directory '{workdir}' is invalid, it needs to be an absolute path")
    return workdir


def _stop_signal(body: Mapping[str, Any]) -> str:
    """Docker checks it at create (`Invalid signal: X`), not at the first stop."""
    text = _string(body, "StopSignal")
    if text:
        parse_signal(text)
    return text


def _log_driver(host_config: Mapping[str, Any]) -> None:
    """hypr keeps every workload's output in Docker's json-file format: another driver is refused, never ignored."""
    config = mapping(host_config.get("LogConfig"), "HostConfig.LogConfig")
    kind = config.get("Type") or "json-file"
    if kind != "json-file":
        raise InvalidParameter(f"HostConfig.LogConfig.Type {kind!r} is not supported by hypr (json-file only)")
    if config.get("Config"):  # max-size, max-file...: hypr keeps the whole log, without rotation
        raise InvalidParameter(
            f"HostConfig.LogConfig.Config is not supported by hypr (got {json.dumps(config['Config'])}): "
            "log options are not applied"
        )


def _plan_endpoints(
    body: Mapping[str, Any], host_config: Mapping[str, Any], snapshot: Snapshot, mac: str | None
) -> tuple[EndpointRequest, ...]:
    """Networks in attach order: NetworkMode first, then the rest of EndpointsConfig as given. The container's
    MacAddress (API < 1.44) goes to the first one, as Docker moves it to the endpoint of NetworkMode."""
    configs = endpoints_config(body)
    mode = host_config.get("NetworkMode") or ""
    order = [mode] if mode and mode != "default" else []
    order += [ref for ref in configs if ref not in order]
    if not order:
        order = [DEFAULT_NETWORK]
    requests: list[EndpointRequest] = []
    seen = set()
    for ref in order:
        network = find_network(snapshot, DEFAULT_NETWORK if ref == "default" else ref)
        if network.id in seen:
            continue
        seen.add(network.id)
        request = endpoint_request(network, configs.get(ref), f"EndpointsConfig[{ref}]")
        if mac and not requests and request.mac is None:
            request = dataclasses.replace(request, mac=mac)
        requests.append(request)
    return tuple(requests)


def endpoints_config(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(mapping(body.get("NetworkingConfig"), "NetworkingConfig").get("EndpointsConfig"), "EndpointsConfig")


def endpoint_request(network: Network, raw: Any, what: str) -> EndpointRequest:
    """One of Docker's EndpointSettings (create's EndpointsConfig entry or connect's EndpointConfig), validated."""
    config = mapping(raw, what)
    ipam_config = mapping(config.get("IPAMConfig"), "IPAMConfig")
    ip = ipam_config.get("IPv4Address") or None
    if ip is not None and not isinstance(ip, str):
        raise InvalidParameter("invalid IPv4Address: expected a string")
    ip6 = static_ip6(network, ipam_config.get("IPv6Address") or None)
    link_local = tuple(_link_local(a) for a in strings(ipam_config.get("LinkLocalIPs"), "LinkLocalIPs"))
    return EndpointRequest(
        network=network, ip=ip, aliases=tuple(strings(config.get("Aliases"), "Aliases")),
        gw_priority=gw_priority(config.get("GwPriority")), mac=_mac(config.get("MacAddress"), "MacAddress"),
        driver_opts=string_map("DriverOpts", config.get("DriverOpts")), link_local_ips=link_local, ip6=ip6,
    )  # fmt: skip


def _link_local(text: str) -> str:
    """A LinkLocalIPs entry: an IPv4 address (added as /16); IPv6 ones are refused by name."""
    address = _address(text, "LinkLocalIPs")
    if ipaddress.ip_address(address).version != 4:
        raise InvalidParameter(f"invalid LinkLocalIPs {text}: only IPv4 link-local addresses are supported by hypr")
    return address


_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


def _mac(value: Any, what: str) -> str | None:
    """A unicast Ethernet address, lower-cased; None when unset."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _MAC.match(value):
        raise InvalidParameter(f"invalid {what} {value!r}: expected six hex octets (02:42:ac:11:00:02)")
    if int(value[:2], 16) & 1:
        raise InvalidParameter(f"invalid {what} {value}: a multicast address cannot name an interface")
    return value.lower()


def network_mode(host_config: Mapping[str, Any], snapshot: Snapshot) -> str:
    """Docker's NetworkMode as hypr keeps it: "" for bridge networks (the mode then names the first network),
    "none", "host", or "container:<workload id>" (resolved now, so a rename keeps it; a chain is followed to the
    workload that owns the namespace, as Docker joins the namespace itself)."""
    mode = host_config.get("NetworkMode") or ""
    if not isinstance(mode, str):
        raise InvalidParameter(f"invalid NetworkMode {mode!r}: expected a string")
    if mode in ("none", "host"):
        return mode
    if not mode.startswith("container:"):
        return ""
    ref = mode.partition(":")[2]
    if not ref:
        raise InvalidParameter("--net: invalid net mode: invalid container format container:<name|id>")
    target = find_workload(snapshot, ref)
    while target.network_mode.startswith("container:"):
        target = snapshot.workload(target.network_mode.partition(":")[2])
    return "host" if target.network_mode == "host" else f"container:{target.id}"


def check_network_mode(mode: str, body: Mapping[str, Any], host_config: Mapping[str, Any], runtime: str) -> None:
    """Docker's ValidateNetMode (runconfig's messages), and what a VM cannot share."""
    if not mode:
        return
    if runtime == "vm" and mode != "none":
        kind = "host" if mode == "host" else "container:<name|id>"
        raise InvalidParameter(
            f"network mode {kind} is not supported for VMs: a VM has its own kernel and network stack; "
            "attach it to a bridge network"
        )
    shared = mode != "none"
    container = mode.startswith("container:")
    others = [ref for ref in endpoints_config(body) if ref not in (mode, host_config.get("NetworkMode"))]
    if others:
        raise InvalidParameter(
            "container cannot be connected to multiple networks with one of the networks in private (none) mode"
            if mode == "none" else
            "container sharing network namespace with another container or host cannot be connected to any other "
            "network"
        )  # fmt: skip
    conflicts = (
        (container and bool(body.get("Hostname")), "conflicting options: hostname and the network mode"),
        (mode == "host" and bool(host_config.get("Links")),
         "conflicting options: host type networking can't be used with links. This would result in undefined "
         "behavior"),
        (container and bool(host_config.get("Links")),
         "conflicting options: container type network can't be used with links. This would result in undefined "
         "behavior"),
        (container and bool(host_config.get("Dns")), "conflicting options: dns and the network mode"),
        (container and bool(host_config.get("ExtraHosts")),
         "conflicting options: custom host-to-IP mapping and the network mode"),
        (shared and bool(body.get("MacAddress")), "conflicting options: mac-address and the network mode"),
        (container and (bool(host_config.get("PortBindings")) or flag(host_config, "PublishAllPorts")),
         "conflicting options: port publishing and the container type network mode"),
        (container and bool(body.get("ExposedPorts")),
         "conflicting options: port exposing and the container type network mode"),
    )  # fmt: skip
    for hit, message in conflicts:
        if hit:
            raise InvalidParameter(message)


def plan_links(value: Any, snapshot: Snapshot) -> tuple[tuple[str, str], ...]:
    """Docker's legacy links, `name:alias` or `name` (alias = name): (linked workload's id, alias). The linked
    workload must exist; the alias is what the linking workload resolves (its /etc/hosts, as Docker writes it)."""
    links = []
    for item in strings(value, "Links"):
        name, _, alias = item.partition(":")
        target = find_workload(snapshot, name.removeprefix("/"))
        alias = alias.rsplit("/", 1)[-1] or target.name
        if not _DOMAIN.match(alias):
            raise InvalidParameter(f"invalid link alias {alias!r}")
        if target.network_mode == "host":
            raise InvalidParameter(
                "conflicting options: host type networking can't be used with links. This would result in "
                "undefined behavior"
            )
        links.append((target.id, alias))
    return tuple(links)


def static_ip6(network: Network, value: Any) -> str | None:
    """Docker's IPAMConfig.IPv6Address: only on a network with IPv6 (Docker's message)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParameter("invalid IPv6Address: expected a string")
    if not network.ipv6:
        # Docker's words for a static address of a family the network has no subnet of (IPv4-only networks).
        raise InvalidParameter(
            "invalid endpoint settings:\nuser specified IP address is supported only when connecting to networks "
            "with user configured subnets"
        )
    return value


def _address(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        raise InvalidParameter(f"invalid IP address in {what}: {value!r}") from None


def resolver_settings(host_config: Mapping[str, Any], domainname: str) -> Resolver:
    """Docker's HostConfig.Dns / DnsSearch / DnsOptions / ExtraHosts and Config.Domainname, validated.
    `--dns-search .` means no search domains (Docker's); ExtraHosts are `name:address` or `name:host-gateway`."""
    dns = tuple(_address(s, "dns") for s in strings(host_config.get("Dns"), "Dns"))
    search_raw = strings(host_config.get("DnsSearch"), "DnsSearch")
    search = None if not search_raw else tuple(s for s in search_raw if s != ".")
    for domain in search or ():
        if not _DOMAIN.match(domain):
            raise InvalidParameter(f"invalid DNS search domain {domain!r}")
    options_raw = strings(host_config.get("DnsOptions"), "DnsOptions")
    if any(not o or any(c.isspace() for c in o) for o in options_raw):
        raise InvalidParameter(f"invalid DNS option in {options_raw!r}")
    extra = []
    for item in strings(host_config.get("ExtraHosts"), "ExtraHosts"):
        name, sep, address = item.partition(":") if ":" in item else item.partition("=")
        if not sep or not name or not _DOMAIN.match(name):
            raise InvalidParameter(f"invalid extra host {item!r}: expected name:address")
        extra.append((name, address if address == "host-gateway" else _address(address, "add-host")))
    if domainname and not _DOMAIN.match(domainname):
        raise InvalidParameter(f"invalid domainname {domainname!r}")
    return Resolver(dns=dns, search=search, options=tuple(options_raw) or None, extra_hosts=tuple(extra),
                    domainname=domainname)  # fmt: skip


_DOMAIN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")


def gw_priority(value: Any) -> int:
    """Docker's EndpointSettings.GwPriority: a signed integer, 0 when unset."""
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not -(2**31) <= value < 2**31:
        raise InvalidParameter(f"invalid GwPriority {value!r}: expected an integer")
    return value


def _resources(host_config: Mapping[str, Any]) -> dict[str, Any]:
    """Docker's NanoCpus / Memory (bytes) -> vCPUs and MiB, with hypr's defaults (1 vCPU, 256 MiB)."""
    resources: dict[str, Any] = {}
    nano, memory = host_config.get("NanoCpus") or 0, host_config.get("Memory") or 0
    if not isinstance(nano, int) or not isinstance(memory, int) or nano < 0 or memory < 0:
        raise InvalidParameter("invalid NanoCpus or Memory: expected non-negative integers")
    if nano:
        cpus = os.cpu_count() or 1
        if not 10**7 <= nano <= cpus * 10**9:  # Docker's bounds (daemon/daemon_unix.go)
            raise InvalidParameter(f"Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available")
        resources["cpus"] = nano / 1e9
    if memory:
        if memory < 64 * 2**20:
            raise InvalidParameter("Minimum memory limit allowed is 64MB")
        resources["memory_mb"] = memory // 2**20
    return resources


def _str_slice(value: Any, what: str) -> list[str]:
    """Docker's StrSlice (Cmd, Entrypoint): a list of strings, or one string taken as a one-item list."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise InvalidParameter(f"invalid {what}: expected a list of strings")
    if any("\0" in v for v in items):
        raise InvalidParameter(f"invalid {what}: an argument contains a NUL byte")  # execve cannot pass it
    return items


def exec_env(value: Any) -> dict[str, str]:
    """An exec's Env: Docker's ["K=V", ...], validated as a container's is."""
    return _env(strings(value, "Env"))


def _env(value: Any) -> dict[str, str]:
    env = {}
    for item in strings(value, "Env"):
        key, sep, val = item.partition("=")
        if not key or "\0" in item:
            raise InvalidParameter(f"invalid environment variable: {item!r}")
        env[key] = val if sep else ""
    return env


LIST_FILTERS = (
    "id", "name", "status", "label", "network", "ancestor", "exited", "before", "since", "expose", "publish",
    "health", "volume", "isolation", "is-task",
)  # fmt: skip
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def list_workloads(
    snapshot: Snapshot,
    filters: Mapping[str, list[str]],
    *,
    all_states: bool,
    limit: int = -1,
    restarting: Container[str] = frozenset(),
) -> list[Workload]:
    """`docker ps` semantics: running ones unless `all` (or a `limit`, as `ps -n`/`-l`), newest first, Docker's
    filters. `restarting`: the ids of those waiting out a restart policy's back-off, listed as running ones
    (Docker's are Running) with status `restarting`. hypr has no health checks (every workload's health is `none`)
    and no volumes (`volume=` matches nothing)."""
    for key, values in filters.items():
        if key not in LIST_FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
        if key == "status" and any(v not in STATUSES for v in values):
            raise InvalidParameter(f"invalid filter 'status={values[0]}'")
    pivots = {key: [find_workload(snapshot, v) for v in filters.get(key, [])] for key in ("before", "since")}
    chosen = [
        w for w in snapshot.workloads
        if (all_states or limit > 0 or filters.get("status") or filters.get("exited") or w.state == "running"
            or w.id in restarting)
        and all(_matches(snapshot, w, key, values, w.id in restarting)
                for key, values in filters.items() if values and key in _SIMPLE)
        and all(p.created > w.created for p in pivots["before"]) and all(p.created < w.created for p in pivots["since"])
    ]  # fmt: skip
    chosen.sort(key=lambda w: w.created, reverse=True)
    return chosen[:limit] if limit > 0 else chosen


PATTERN_MAX = 1024  # characters in a `name` filter


def _search(pattern: str, text: str) -> bool:
    """Docker's `name` filter is a Go regular expression: RE2, which matches in linear time, so no filter a client
    sends can stall the daemon (Python's backtracking `re` takes seconds on `^(a+)+$`)."""
    if len(pattern) > PATTERN_MAX:
        raise InvalidParameter(f"invalid filter 'name': longer than {PATTERN_MAX} characters")
    try:
        return _compiled(pattern).search(text) is not None
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise InvalidParameter(f"invalid filter 'name={pattern}': {reason}") from None


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False  # a bad pattern is the client's error, answered with a 400, not a daemon log line
    return re2.compile(pattern, options)


def _ports_match(spec: str, ports: set[tuple[int, str]]) -> bool:
    """`expose=`/`publish=`: a port, or a range, with an optional `/proto` (tcp by default)."""
    text, _, proto = spec.partition("/")
    first, _, last = text.partition("-")
    if not first.isdigit() or (last and not last.isdigit()):
        raise InvalidParameter(f"invalid filter port {spec!r}")
    lo, hi = int(first), int(last or first)
    return any(lo <= port <= hi and p == (proto or "tcp") for port, p in ports)


def _matches(snapshot: Snapshot, w: Workload, key: str, values: list[str], restarting: bool) -> bool:
    if key == "id":
        return any(w.id.startswith(v) for v in values)
    if key == "name":
        # Docker matches against "/<name>"; a pattern written without the slash (`^web`) matches too.
        return any(_search(v, "/" + w.name) or _search(v, w.name) for v in values)
    if key == "status":  # a paused workload's status is `paused`, not `running` (Docker's)
        return ("restarting" if restarting else "paused" if w.state == "running" and w.paused else w.state) in values
    if key == "label":
        return all(label_matches(w.labels, v) for v in values)
    if key == "ancestor":
        return w.image in values or any(
            v and w.image_id and w.image_id.removeprefix("sha256:").startswith(v.removeprefix("sha256:"))
            for v in values
        )
    if key == "exited":
        if not all(v.lstrip("-").isdigit() for v in values):
            raise InvalidParameter(f"invalid filter 'exited={values[0]}'")
        return w.state == "exited" and str(w.exit_code) in values
    if key == "expose":
        exposed = {(int(p.split("/")[0]), p.split("/")[1]) for p in w.exposed_ports}
        exposed |= {(m.guest_port, m.protocol) for m in snapshot.ports_of(w.id)}
        return any(_ports_match(v, exposed) for v in values)
    if key == "publish":
        return any(_ports_match(v, {(m.host_port, m.protocol) for m in snapshot.ports_of(w.id)}) for v in values)
    if key == "health":
        return "none" in values
    if key == "volume":
        return False
    if key == "isolation":
        return "default" in values
    if key == "is-task":
        return "false" in values
    networks = [snapshot.network(e.network_id) for e in snapshot.endpoints_of(w.id)]
    return any(n.name == v or (len(v) >= 1 and n.id.startswith(v)) for n in networks for v in values)


_SIMPLE = tuple(k for k in LIST_FILTERS if k not in ("before", "since"))
