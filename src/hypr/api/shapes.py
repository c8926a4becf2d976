"""Docker Engine API JSON shapes, built from our rows. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypr.models import OPT_BRIDGE_NAME, OVERLAY, Confinement, Endpoint, Network, Snapshot, Workload
from hypr.services.validation import parse_created


def network_inspect(network: Network, snapshot: Snapshot, *, containers: bool = True) -> dict[str, Any]:
    config: dict[str, Any] = {"Subnet": str(network.subnet), "Gateway": str(network.gateway)}
    if network.ip_range is not None:
        config["IPRange"] = str(network.ip_range)
    if network.aux_addresses:
        config["AuxiliaryAddresses"] = {k: str(v) for k, v in network.aux_addresses.items()}
    ipam: dict[str, Any] = {"Driver": "default", "Config": [config]}
    # Docker echoes IPAM.Options exactly as sent, and leaves the key out when none was sent (docker-py checks).
    if network.ipam_options is not None:
        ipam["Options"] = dict(network.ipam_options)
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": "global" if network.driver == OVERLAY else "local",
        "Driver": network.driver,
        "EnableIPv4": True,
        "EnableIPv6": False,
        "IPAM": ipam,
        "Internal": network.internal,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": _containers(network, snapshot) if containers else {},
        # Docker's page shows the bridge's name for every network; what the client sent is echoed too.
        "Options": {OPT_BRIDGE_NAME: network.bridge, **network.options},
        "Labels": dict(network.labels),
    }


def _containers(network: Network, snapshot: Snapshot) -> dict[str, Any]:
    names = {w.id: w.name for w in snapshot.workloads}
    return {
        e.workload_id: {
            "Name": names.get(e.workload_id, ""),
            "EndpointID": e.id,
            "MacAddress": e.mac,
            "IPv4Address": f"{e.ip}/{network.subnet.prefixlen}",
            "IPv6Address": "",
        }
        for e in snapshot.endpoints
        if e.network_id == network.id
    }


# -- workloads (Docker's "containers") -------------------------------------------------------------------------------


def port_bindings(snapshot: Snapshot, workload_id: str) -> dict[str, list[dict[str, str]]]:
    ports: dict[str, list[dict[str, str]]] = {}
    for p in snapshot.ports_of(workload_id):
        ports.setdefault(f"{p.guest_port}/{p.protocol}", []).append(
            {"HostIp": str(p.host_ip), "HostPort": str(p.host_port)}
        )
    return ports


def endpoint_settings(snapshot: Snapshot, endpoint: Endpoint, workload: Workload) -> dict[str, Any]:
    network = snapshot.network(endpoint.network_id)
    return {
        "IPAMConfig": {"IPv4Address": str(endpoint.ip)} if endpoint.static_ip else None,
        "Links": None,
        "Aliases": list(endpoint.aliases) or None,
        "DriverOpts": None,
        "GwPriority": endpoint.gw_priority,
        "HostInterface": endpoint.host_ifname,  # hypr's: the veth host end or TAP on the network's bridge
        "DNSNames": [workload.name, workload.id[:12], *endpoint.aliases],
        "MacAddress": endpoint.mac,
        "NetworkID": network.id,
        "EndpointID": endpoint.id,
        "Gateway": str(network.gateway),
        "IPAddress": str(endpoint.ip),
        "IPPrefixLen": network.subnet.prefixlen,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
    }


def networks_of(snapshot: Snapshot, workload: Workload) -> dict[str, Any]:
    return {
        snapshot.network(e.network_id).name: endpoint_settings(snapshot, e, workload)
        for e in snapshot.endpoints_of(workload.id)
    }


def state_of(workload: Workload) -> dict[str, Any]:
    running = workload.state == "running"
    return {
        "Status": workload.state,
        "Running": running,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": workload.main_pid or 0 if running else 0,
        "ExitCode": workload.exit_code or 0,
        "Error": "",
        "StartedAt": workload.started_at or "0001-01-01T00:00:00Z",
        "FinishedAt": workload.finished_at or "0001-01-01T00:00:00Z",
    }


def container_inspect(snapshot: Snapshot, workload: Workload) -> dict[str, Any]:
    ports = port_bindings(snapshot, workload.id)
    nets = networks_of(snapshot, workload)
    gateway = snapshot.gateway_order(workload.id)[:1]
    first: dict[str, Any] = nets.get(snapshot.network(gateway[0].network_id).name, {}) if gateway else {}
    return {
        "Id": workload.id,
        "Created": workload.created,
        "Path": workload.command[0] if workload.command else "",
        "Args": list(workload.command[1:]),
        "State": state_of(workload),
        "Image": workload.image_id or workload.image,  # Docker: the image ID here, the name in Config.Image
        "Name": "/" + workload.name,
        "RestartCount": 0,
        "Driver": workload.runtime,
        "Platform": "linux",
        "HostConfig": {
            "NetworkMode": next(iter(nets), "bridge"),
            "PortBindings": {
                k: [{"HostIp": "" if b["HostIp"] == "0.0.0.0" else b["HostIp"], "HostPort": b["HostPort"]} for b in v]
                for k, v in ports.items()
            },
            "AutoRemove": workload.auto_remove,
            "Dns": list(workload.resolver.dns),
            "DnsSearch": list(workload.resolver.search or []),
            "DnsOptions": list(workload.resolver.options or []),
            "ExtraHosts": [f"{n}:{a}" for n, a in workload.resolver.extra_hosts] or None,
            "RestartPolicy": {"Name": workload.restart, "MaximumRetryCount": 0},
            "Runtime": workload.runtime,
            "LogConfig": {"Type": "json-file", "Config": {}},  # docker-py streams logs only for these types
            **confinement_shape(workload.confinement),
        },
        "Config": {
            "Hostname": workload.hostname,
            "Domainname": workload.resolver.domainname,
            "User": workload.user,
            "Env": [f"{k}={v}" for k, v in workload.env.items()],
            "Cmd": list(workload.command[len(workload.entrypoint) :]),
            "Entrypoint": list(workload.entrypoint) or None,
            "WorkingDir": workload.workdir,
            "Image": workload.image,
            "Labels": dict(workload.labels),
            "StopSignal": workload.stop_signal or None,
            "Tty": True,  # logs are one raw stream, as Docker serves them for TTY containers
            "ExposedPorts": {k: {} for k in sorted({*ports, *workload.exposed_ports})},
        },
        "NetworkSettings": {
            "Ports": ports,
            "IPAddress": first.get("IPAddress", ""),
            "Gateway": first.get("Gateway", ""),
            "MacAddress": first.get("MacAddress", ""),
            "Networks": nets,
        },
    }


def confinement_shape(c: Confinement) -> dict[str, Any]:
    """Docker's HostConfig confinement fields, as the workload asked for them."""
    return {
        "Privileged": c.privileged, "CapAdd": list(c.cap_add) or None, "CapDrop": list(c.cap_drop) or None,
        "SecurityOpt": list(c.security_opt) or None, "ReadonlyRootfs": c.readonly_rootfs,
        "Tmpfs": dict(c.tmpfs) or None, "Binds": list(c.binds) or None, "Mounts": [dict(m) for m in c.api_mounts],
        "PidsLimit": c.pids_limit, "Memory": c.memory, "NanoCpus": c.nano_cpus,
    }  # fmt: skip


def status_text(workload: Workload, now: datetime) -> str:
    """Docker's STATUS column: `Up 5 minutes`, `Exited (0) 3 seconds ago`, `Created`."""
    if workload.state == "running":
        return "Up " + human_duration(now - parse_created(workload.started_at))
    if workload.state == "exited":
        ago = human_duration(now - parse_created(workload.finished_at)) if workload.finished_at else "a moment"
        return f"Exited ({workload.exit_code if workload.exit_code is not None else -1}) {ago} ago"
    return "Created"


def human_duration(delta: timedelta) -> str:
    """Docker's HumanDuration, to the day."""
    seconds = int(delta.total_seconds())
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return "1 second" if seconds == 1 else f"{seconds} seconds"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}s" if count > 1 else f"About {'an' if unit == 'hour' else 'a'} {unit}"
    raise AssertionError("unreachable")


def container_summary(snapshot: Snapshot, workload: Workload, now: datetime) -> dict[str, Any]:
    return {
        "Id": workload.id,
        "Names": ["/" + workload.name],
        "Image": workload.image,
        "ImageID": workload.image_id,
        "Command": " ".join(workload.command),
        "Created": int(parse_created(workload.created).timestamp()),
        "State": workload.state,
        "Status": status_text(workload, now),
        "Ports": [
            {"IP": str(p.host_ip), "PrivatePort": p.guest_port, "PublicPort": p.host_port, "Type": p.protocol}
            for p in snapshot.ports_of(workload.id)
        ],
        "Labels": dict(workload.labels),
        "HostConfig": {"NetworkMode": next(iter(networks_of(snapshot, workload)), "bridge")},
        "NetworkSettings": {"Networks": networks_of(snapshot, workload)},
    }
