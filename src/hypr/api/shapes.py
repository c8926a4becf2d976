"""Docker Engine API JSON shapes, built from our rows. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypr.models import OPT_BRIDGE_NAME, OVERLAY, Confinement, Endpoint, Network, Snapshot, Workload
from hypr.services.network_plan import PREDEFINED_DRIVERS, predefined_id
from hypr.services.validation import parse_created


def network_inspect(network: Network, snapshot: Snapshot, *, containers: bool = True) -> dict[str, Any]:
    """Docker's network shape; an IPv6-only network shows its IPv6 config alone and EnableIPv4 false."""
    ipam: dict[str, Any] = {"Driver": "default", "Config": _ipam_configs(network)}
    # Docker echoes IPAM.Options exactly as sent, and leaves the key out when none was sent (docker-py checks).
    if network.ipam_options is not None:
        ipam["Options"] = dict(network.ipam_options)
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": "global" if network.driver == OVERLAY else "local",
        "Driver": network.driver,
        "EnableIPv4": network.ipv4,
        "EnableIPv6": network.ipv6,
        "IPAM": ipam,
        "Internal": network.internal,
        "Attachable": network.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": _containers(network, snapshot) if containers else {},
        # Docker's page shows the bridge's name for every network; what the client sent is echoed too.
        "Options": {OPT_BRIDGE_NAME: network.bridge, **network.options},
        "Labels": dict(network.labels),
    }


def predefined_inspect(snapshot: Snapshot, name: str) -> dict[str, Any]:
    """Docker's `host` and `none` networks: no IPAM config, the workloads in that network mode as members."""
    members = {
        w.id: {"Name": w.name, "EndpointID": "", "MacAddress": "", "IPv4Address": "", "IPv6Address": ""}
        for w in snapshot.workloads
        if w.network_mode == name and w.state == "running"
    }
    return {
        "Name": name, "Id": predefined_id(snapshot, name),
        "Created": next((n.created for n in snapshot.networks if n.builtin), ""), "Scope": "local",
        "Driver": PREDEFINED_DRIVERS[name], "EnableIPv4": True, "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": None}, "Internal": False, "Attachable": False,
        "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": members, "Options": {},
        "Labels": {},
    }  # fmt: skip


def _containers(network: Network, snapshot: Snapshot) -> dict[str, Any]:
    names = {w.id: w.name for w in snapshot.workloads}
    return {
        e.workload_id: {
            "Name": names.get(e.workload_id, ""),
            "EndpointID": e.id,
            "MacAddress": e.mac,
            "IPv4Address": f"{e.ip}/{network.subnet.prefixlen}" if e.ip and network.subnet else "",
            "IPv6Address": _ip6_text(e, network),
        }
        for e in snapshot.endpoints
        if e.network_id == network.id
    }


# -- workloads (Docker's "containers") -------------------------------------------------------------------------------


def port_bindings(snapshot: Snapshot, workload_id: str) -> dict[str, list[dict[str, str]]]:
    ports: dict[str, list[dict[str, str]]] = {}
    target = snapshot.port_network(workload_id)
    for p in snapshot.ports_of(workload_id):
        ports.setdefault(f"{p.guest_port}/{p.protocol}", []).append(
            {"HostIp": str(p.host_ip), "HostPort": str(p.host_port)}
        )
        if str(p.host_ip) == "0.0.0.0" and target is not None and target.ipv6:  # forwarded on both families
            ports[f"{p.guest_port}/{p.protocol}"].append({"HostIp": "::", "HostPort": str(p.host_port)})
    return ports


def requested_bindings(snapshot: Snapshot, workload_id: str) -> dict[str, list[dict[str, str]]]:
    """Docker's HostConfig.PortBindings: the ports as asked (HostPort "" for any free one, "8000-8010" for the
    first free one of a range), where NetworkSettings.Ports shows the ports chosen."""
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in snapshot.ports_of(workload_id):
        host_port = p.requested if p.requested is not None else str(p.host_port)
        host_ip = "" if str(p.host_ip) == "0.0.0.0" else str(p.host_ip)
        bindings.setdefault(f"{p.guest_port}/{p.protocol}", []).append({"HostIp": host_ip, "HostPort": host_port})
    return bindings


def endpoint_settings(snapshot: Snapshot, endpoint: Endpoint, workload: Workload) -> dict[str, Any]:
    network = snapshot.network(endpoint.network_id)
    return {
        "IPAMConfig": _endpoint_ipam(endpoint),
        "Links": links_of(snapshot, workload) or None,
        "Aliases": list(endpoint.aliases) or None,
        "DriverOpts": dict(endpoint.driver_opts) or None,
        "GwPriority": endpoint.gw_priority,
        "HostInterface": endpoint.host_ifname,  # hypr's: the veth host end or TAP on the network's bridge
        "DNSNames": [workload.name, workload.id[:12], *endpoint.aliases],
        "MacAddress": endpoint.mac,
        "NetworkID": network.id,
        "EndpointID": endpoint.id,
        "Gateway": _text(network.gateway),  # "" on an IPv6-only network, as Docker's
        "IPAddress": _text(endpoint.ip),
        "IPPrefixLen": network.subnet.prefixlen if network.subnet else 0,
        **_endpoint_ip6(endpoint, network),
    }


def _text(value: object | None) -> str:
    return "" if value is None else str(value)


def _ipam_configs(network: Network) -> list[dict[str, Any]]:
    """Docker's IPAM.Config: one entry per family the network has (IPv4 first), each with its range if any."""
    configs = []
    for subnet, gateway, ip_range in ((network.subnet, network.gateway, network.ip_range),
                                      (network.subnet6, network.gateway6, network.ip_range6)):  # fmt: skip
        if subnet is None:
            continue
        config: dict[str, Any] = {"Subnet": str(subnet), "Gateway": str(gateway)}
        if ip_range is not None:
            config["IPRange"] = str(ip_range)
        if subnet.version == 4 and network.aux_addresses:
            config["AuxiliaryAddresses"] = {k: str(v) for k, v in network.aux_addresses.items()}
        configs.append(config)
    return configs


# -- IPv6 (dual-stack and IPv6-only networks) ------------------------------------------------------------------


def _ip6_text(endpoint: Endpoint, network: Network) -> str:
    if endpoint.ip6 is None or network.subnet6 is None:
        return ""
    return f"{endpoint.ip6}/{network.subnet6.prefixlen}"


def _endpoint_ipam(endpoint: Endpoint) -> dict[str, Any] | None:
    """Docker's EndpointSettings.IPAMConfig: the addresses the user asked for, null when none was."""
    config: dict[str, Any] = {}
    if endpoint.static_ip:
        config["IPv4Address"] = str(endpoint.ip)
    if endpoint.static_ip6 and endpoint.ip6 is not None:
        config["IPv6Address"] = str(endpoint.ip6)
    if endpoint.link_local_ips:
        config["LinkLocalIPs"] = list(endpoint.link_local_ips)
    return config or None


def _endpoint_ip6(endpoint: Endpoint, network: Network) -> dict[str, Any]:
    if endpoint.ip6 is None or network.subnet6 is None:
        return {"IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0}
    return {
        "IPv6Gateway": str(network.gateway6),
        "GlobalIPv6Address": str(endpoint.ip6),
        "GlobalIPv6PrefixLen": network.subnet6.prefixlen,
    }


def links_of(snapshot: Snapshot, workload: Workload) -> list[str]:
    """Docker's HostConfig.Links form: `/<linked name>:/<linking name>/<alias>`."""
    names = {w.id: w.name for w in snapshot.workloads}
    return [f"/{names[t]}:/{workload.name}/{alias}" for t, alias in workload.links if t in names]


def networks_of(snapshot: Snapshot, workload: Workload) -> dict[str, Any]:
    """NetworkSettings.Networks: the endpoints, or in none/host mode that network with no address (Docker's); a
    workload sharing another's namespace has none of its own."""
    if workload.network_mode in PREDEFINED_DRIVERS:
        return {workload.network_mode: {
            **{k: None for k in ("IPAMConfig", "Links", "Aliases", "DriverOpts", "DNSNames")}, "MacAddress": "",
            "GwPriority": 0, "NetworkID": predefined_id(snapshot, workload.network_mode), "EndpointID": "",
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
        }}  # fmt: skip
    found = {
        snapshot.network(e.network_id).name: endpoint_settings(snapshot, e, workload)
        for e in snapshot.endpoints_of(workload.id)
    }
    for name in workload.lost_networks:  # removed while it was stopped: the config stays, with no endpoint
        found[name] = {**{k: None for k in ("IPAMConfig", "Links", "Aliases", "DriverOpts", "DNSNames")},
                       "MacAddress": "", "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "",
                       "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                       "GlobalIPv6PrefixLen": 0}  # fmt: skip
    return found


def network_mode(snapshot: Snapshot, workload: Workload) -> str:
    """HostConfig.NetworkMode: none/host/container:<id>, else the first network's name, as Docker echoes it."""
    return workload.network_mode or next(iter(networks_of(snapshot, workload)), "bridge")


def state_of(workload: Workload, restarting: bool = False) -> dict[str, Any]:
    """Docker's State; `restarting`: waiting out its back-off before a restart by its policy, which Docker shows
    as Status "restarting" with Running and Restarting true (its container.SetRestarting)."""
    running = workload.state == "running"
    return {
        "Status": "restarting" if restarting else "paused" if running and workload.paused else workload.state,
        "Running": running or restarting,
        "Paused": running and workload.paused,
        "Restarting": restarting,
        "OOMKilled": False,
        "Dead": False,
        "Pid": workload.main_pid or 0 if running else 0,
        "ExitCode": workload.exit_code or 0,
        "Error": "",
        "StartedAt": workload.started_at or "0001-01-01T00:00:00Z",
        "FinishedAt": workload.finished_at or "0001-01-01T00:00:00Z",
    }  # Docker's State.Health exists only for workloads with a health check: hypr has none, so it is absent


def container_inspect(snapshot: Snapshot, workload: Workload, restarting: bool = False) -> dict[str, Any]:
    ports = port_bindings(snapshot, workload.id)
    nets = networks_of(snapshot, workload)
    gateway = snapshot.gateway_order(workload.id)[:1]
    first: dict[str, Any] = nets.get(snapshot.network(gateway[0].network_id).name, {}) if gateway else {}
    return with_defaults(
        {
            "Id": workload.id,
            "Created": workload.created,
            "Path": workload.command[0] if workload.command else "",
            "Args": list(workload.command[1:]),
            "State": state_of(workload, restarting),
            "Image": workload.image_id or workload.image,  # Docker: the image ID here, the name in Config.Image
            "Name": "/" + workload.name,
            "RestartCount": workload.restart_count,
            "Driver": workload.runtime,
            "Platform": "linux",
            "HostConfig": {
                "NetworkMode": network_mode(snapshot, workload),
                "Links": links_of(snapshot, workload) or None,
                "PublishAllPorts": workload.publish_all,
                "PortBindings": requested_bindings(snapshot, workload.id),
                "AutoRemove": workload.auto_remove,
                "Dns": list(workload.resolver.dns),
                "DnsSearch": list(workload.resolver.search or []),
                "DnsOptions": list(workload.resolver.options or []),
                "ExtraHosts": [f"{n}:{a}" for n, a in workload.resolver.extra_hosts] or None,
                "RestartPolicy": {"Name": workload.restart, "MaximumRetryCount": workload.restart_max},
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
                "Tty": workload.stdio.tty,
                "OpenStdin": workload.stdio.open_stdin,
                "StdinOnce": workload.stdio.stdin_once,
                "ExposedPorts": {k: {} for k in sorted({*ports, *workload.exposed_ports})},
                **({"MacAddress": workload.mac_address} if workload.mac_address else {}),
            },
            "NetworkSettings": {
                "Ports": ports,
                "IPAddress": first.get("IPAddress", ""),
                "IPPrefixLen": first.get("IPPrefixLen", 0),
                "Gateway": first.get("Gateway", ""),
                "GlobalIPv6Address": first.get("GlobalIPv6Address", ""),
                "GlobalIPv6PrefixLen": first.get("GlobalIPv6PrefixLen", 0),
                "IPv6Gateway": first.get("IPv6Gateway", ""),
                "MacAddress": first.get("MacAddress", ""),
                "EndpointID": first.get("EndpointID", ""),
                "Networks": nets,
            },
        }
    )


def confinement_shape(c: Confinement) -> dict[str, Any]:
    """Docker's HostConfig confinement fields, as the workload asked for them."""
    return {
        "Privileged": c.privileged, "CapAdd": list(c.cap_add) or None, "CapDrop": list(c.cap_drop) or None,
        "SecurityOpt": list(c.security_opt) or None, "ReadonlyRootfs": c.readonly_rootfs,
        "Tmpfs": dict(c.tmpfs) or None, "Binds": list(c.binds) or None, "Mounts": [dict(m) for m in c.api_mounts],
        "PidsLimit": c.pids_limit, "Memory": c.memory, "NanoCpus": c.nano_cpus,
    }  # fmt: skip


def status_text(workload: Workload, now: datetime, restarting: bool = False) -> str:
    """Docker's STATUS column: `Up 5 minutes`, `Up 5 minutes (Paused)`, `Exited (0) 3 seconds ago`, `Created`,
    `Restarting (1) 2 seconds ago` (waiting out its back-off; the code and time of its last exit)."""
    if restarting:
        ago = human_duration(now - parse_created(workload.finished_at)) if workload.finished_at else "a moment"
        return f"Restarting ({workload.exit_code if workload.exit_code is not None else -1}) {ago} ago"
    if workload.state == "running":
        up = "Up " + human_duration(now - parse_created(workload.started_at))
        return up + " (Paused)" if workload.paused else up
    if workload.state == "exited":
        ago = human_duration(now - parse_created(workload.finished_at)) if workload.finished_at else "a moment"
        return f"Exited ({workload.exit_code if workload.exit_code is not None else -1}) {ago} ago"
    return "Created"


def human_duration(delta: timedelta) -> str:
    """Docker's HumanDuration (go-units): seconds, minutes, hours (rounded), days, weeks, months, years."""
    seconds = int(delta.total_seconds())
    minutes, hours = seconds // 60, round(delta.total_seconds() / 3600)
    steps = (
        (seconds < 1, "Less than a second"), (seconds == 1, "1 second"), (seconds < 60, f"{seconds} seconds"),
        (minutes == 1, "About a minute"), (minutes < 60, f"{minutes} minutes"),
        (hours == 1, "About an hour"), (hours < 48, f"{hours} hours"), (hours < 24 * 7 * 2, f"{hours // 24} days"),
        (hours < 24 * 30 * 2, f"{hours // 24 // 7} weeks"), (hours < 24 * 365 * 2, f"{hours // 24 // 30} months"),
    )  # fmt: skip
    return next((text for reached, text in steps if reached), f"{seconds // 3600 // 24 // 365} years")


def container_summary(
    snapshot: Snapshot, workload: Workload, now: datetime, restarting: bool = False
) -> dict[str, Any]:
    return {
        "Id": workload.id,
        "Names": ["/" + workload.name],
        "Image": workload.image,
        "ImageID": workload.image_id,
        "Command": " ".join(workload.command),
        "Created": int(parse_created(workload.created).timestamp()),
        "State": "restarting" if restarting else state_of(workload)["Status"],
        "Status": status_text(workload, now, restarting),
        "Ports": [
            {"IP": str(p.host_ip), "PrivatePort": p.guest_port, "PublicPort": p.host_port, "Type": p.protocol}
            for p in snapshot.ports_of(workload.id)
        ],
        "Labels": dict(workload.labels),
        "HostConfig": {"NetworkMode": network_mode(snapshot, workload)},
        "NetworkSettings": {"Networks": networks_of(snapshot, workload)},
    }


# Every key Docker's container inspect has (API 1.56), at the value Docker gives when unset, so that any
# `docker inspect --format '{{.X.Y}}'` template that works against Docker works against hypr ("map has no entry"
# otherwise). What hypr knows is filled in by container_inspect; these are what it does not have.
INSPECT_DEFAULTS: dict[str, Any] = {
    "ResolvConfPath": "", "HostnamePath": "", "HostsPath": "", "LogPath": "", "MountLabel": "", "ProcessLabel": "",
    "AppArmorProfile": "", "ExecIDs": None, "SizeRw": None, "SizeRootFs": None,
    "GraphDriver": {"Data": None, "Name": "overlay2"}, "Mounts": [],
    "State": {"Status": "created", "Running": False, "Paused": False, "Restarting": False, "OOMKilled": False,
              "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "", "StartedAt": "0001-01-01T00:00:00Z",
              "FinishedAt": "0001-01-01T00:00:00Z"},
    "HostConfig": {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}}, "NetworkMode": "",
        "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
        "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "Annotations": None, "CapAdd": None,
        "CapDrop": None, "CgroupnsMode": "private", "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None,
        "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "",
        "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None,
        "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864, "Runtime": "sandbox", "Isolation": "",
        "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
        "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None,
        "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None, "OomKillDisable": None,
        "PidsLimit": None, "Ulimits": [], "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None,
    },
    "Config": {
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
        "AttachStderr": False, "ExposedPorts": {}, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": [],
        "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None,
        "Labels": {},
    },
    "NetworkSettings": {
        "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": False,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
        "Networks": {},
    },
}  # fmt: skip


def with_defaults(shape: dict[str, Any], defaults: dict[str, Any] = INSPECT_DEFAULTS) -> dict[str, Any]:
    """`shape` with every key of `defaults` it lacks (one level of nesting deep, as Docker's objects are)."""
    merged = dict(shape)
    for key, default in defaults.items():
        if key not in merged:
            merged[key] = default
        elif isinstance(default, dict) and isinstance(merged[key], dict) and key not in ("Ports", "Networks"):
            merged[key] = {**default, **merged[key]}
    return merged
