"""The JSON types of Docker's request bodies, checked before anything else reads a field (pure).

dockerd decodes each body into Go structs, so a value of the wrong JSON type is a 400 before anything runs:
`json: cannot unmarshal string into Go struct field HostConfig.Memory of type int64`. The handlers here read fields
one by one; without this check `"AutoRemove": "false"` or `"Links": "x"` would be taken for something else. Only
the types are checked (a null is Go's zero value, an unknown field is ignored, as encoding/json does); the values'
meaning is the services' business.

A schema maps a field to a Go type name or to a nested schema (a struct): "string", "bool", "int64", "[]string",
"strslice" (Docker's StrSlice: a string or a list of strings), "map[string]string", "object" (any JSON object),
"[]object", "[2]uint" (ConsoleSize); ("map", S) and ("list", S) are a map of / a list of structs S.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypr.errors import InvalidParameter

Schema = Mapping[str, Any]

_IPAM_CONFIG: Schema = {"IPv4Address": "string", "IPv6Address": "string", "LinkLocalIPs": "[]string"}
ENDPOINT_SETTINGS: Schema = {
    "IPAMConfig": _IPAM_CONFIG, "Links": "[]string", "Aliases": "[]string", "MacAddress": "string",
    "DriverOpts": "map[string]string", "GwPriority": "int64", "NetworkID": "string", "EndpointID": "string",
    "Gateway": "string", "IPAddress": "string", "IPPrefixLen": "int64", "IPv6Gateway": "string",
    "GlobalIPv6Address": "string", "GlobalIPv6PrefixLen": "int64", "DNSNames": "[]string",
}  # fmt: skip
_PORT_BINDING: Schema = {"HostIp": "string", "HostPort": "string"}
_MOUNT: Schema = {
    "Type": "string", "Source": "string", "Target": "string", "ReadOnly": "bool", "Consistency": "string",
    "BindOptions": {"Propagation": "string", "NonRecursive": "bool", "CreateMountpoint": "bool"},
    "TmpfsOptions": {"SizeBytes": "int64", "Mode": "int64"}, "VolumeOptions": "object",
}  # fmt: skip
_RESTART_POLICY: Schema = {"Name": "string", "MaximumRetryCount": "int64"}
_RESOURCES: Schema = {
    "Memory": "int64", "MemorySwap": "int64", "MemoryReservation": "int64", "NanoCpus": "int64", "CpuShares": "int64",
    "CpuPeriod": "int64", "CpuQuota": "int64", "CpusetCpus": "string", "CpusetMems": "string", "PidsLimit": "int64",
    "BlkioWeight": "int64", "OomKillDisable": "bool", "Ulimits": "[]object", "Devices": "[]object",
}  # fmt: skip
HOST_CONFIG: Schema = {
    **_RESOURCES,
    "Binds": "[]string", "NetworkMode": "string", "PortBindings": ("map", ("list", _PORT_BINDING)),
    "RestartPolicy": _RESTART_POLICY, "AutoRemove": "bool", "VolumeDriver": "string", "VolumesFrom": "[]string",
    "CapAdd": "strslice", "CapDrop": "strslice", "CgroupnsMode": "string", "Dns": "[]string",
    "DnsOptions": "[]string", "DnsSearch": "[]string", "ExtraHosts": "[]string", "GroupAdd": "[]string",
    "IpcMode": "string", "Cgroup": "string", "Links": "[]string", "OomScoreAdj": "int64", "PidMode": "string",
    "Privileged": "bool", "PublishAllPorts": "bool", "ReadonlyRootfs": "bool", "SecurityOpt": "[]string",
    "Tmpfs": "map[string]string", "UTSMode": "string", "UsernsMode": "string", "ShmSize": "int64",
    "Sysctls": "map[string]string", "Runtime": "string", "Mounts": ("list", _MOUNT), "Init": "bool",
    "LogConfig": {"Type": "string", "Config": "map[string]string"}, "ConsoleSize": "[2]uint",
    "MaskedPaths": "[]string", "ReadonlyPaths": "[]string", "ContainerIDFile": "string",
}  # fmt: skip
CONTAINER_CREATE: Schema = {
    "Hostname": "string", "Domainname": "string", "User": "string", "AttachStdin": "bool", "AttachStdout": "bool",
    "AttachStderr": "bool", "ExposedPorts": "object", "Tty": "bool", "OpenStdin": "bool", "StdinOnce": "bool",
    "Env": "[]string", "Cmd": "strslice", "Healthcheck": "object", "ArgsEscaped": "bool", "Image": "string",
    "Volumes": "object", "WorkingDir": "string", "Entrypoint": "strslice", "NetworkDisabled": "bool",
    "MacAddress": "string", "OnBuild": "[]string", "Labels": "map[string]string", "StopSignal": "string",
    "StopTimeout": "int64", "Shell": "strslice", "HostConfig": HOST_CONFIG,
    "NetworkingConfig": {"EndpointsConfig": ("map", ENDPOINT_SETTINGS)},
}  # fmt: skip
CONTAINER_UPDATE: Schema = {**_RESOURCES, "RestartPolicy": _RESTART_POLICY}
NETWORK_CREATE: Schema = {
    "Name": "string", "CheckDuplicate": "bool", "Driver": "string", "Scope": "string", "EnableIPv4": "bool",
    "EnableIPv6": "bool", "Internal": "bool", "Attachable": "bool", "Ingress": "bool", "ConfigOnly": "bool",
    "ConfigFrom": {"Network": "string"}, "Options": "map[string]string", "Labels": "map[string]string",
    "IPAM": {"Driver": "string", "Options": "map[string]string",
             "Config": ("list", {"Subnet": "string", "IPRange": "string", "Gateway": "string",
                                 "AuxiliaryAddresses": "map[string]string"})},
}  # fmt: skip
NETWORK_CONNECT: Schema = {"Container": "string", "EndpointConfig": ENDPOINT_SETTINGS}
NETWORK_DISCONNECT: Schema = {"Container": "string", "Force": "bool"}
EXEC_CREATE: Schema = {
    "AttachStdin": "bool", "AttachStdout": "bool", "AttachStderr": "bool", "DetachKeys": "string", "Tty": "bool",
    "ConsoleSize": "[2]uint", "Env": "[]string", "Privileged": "bool", "User": "string", "Cmd": "[]string",
    "WorkingDir": "string",
}  # fmt: skip
EXEC_START: Schema = {"Detach": "bool", "Tty": "bool", "ConsoleSize": "[2]uint"}


def check(body: Mapping[str, Any], schema: Schema, struct: str) -> None:
    """Raises InvalidParameter (400) with encoding/json's message for the first field of the wrong JSON type."""
    for key, value in body.items():
        kind = schema.get(key)
        if kind is not None and value is not None:
            _check(value, kind, f"{struct}.{key}")


def _check(value: Any, kind: Any, where: str) -> None:
    if isinstance(kind, Mapping):
        if not isinstance(value, Mapping):
            _refuse(value, where, "struct")
        check(value, kind, where)
    elif isinstance(kind, tuple):
        shape, inner = kind
        if shape == "map":
            if not isinstance(value, Mapping):
                _refuse(value, where, "map")
            for key, item in value.items():
                if item is not None:
                    _check(item, inner, f"{where}[{key}]")
        else:
            if not isinstance(value, list):
                _refuse(value, where, "slice")
            for item in value:
                if item is not None:
                    _check(item, inner, where)
    elif not _fits(value, kind):
        _refuse(value, where, kind)


def _fits(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int64":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "[]string":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "strslice":
        return isinstance(value, str) or _fits(value, "[]string")
    if kind == "map[string]string":
        return isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values())
    if kind == "object":
        return isinstance(value, Mapping)
    if kind == "[]object":
        return isinstance(value, list) and all(isinstance(v, Mapping) for v in value)
    if kind == "[2]uint":
        return isinstance(value, list) and len(value) <= 2 and all(_fits(v, "int64") and v >= 0 for v in value)
    raise ValueError(f"unknown schema type {kind}")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _refuse(value: Any, where: str, kind: str) -> None:
    raise InvalidParameter(f"json: cannot unmarshal {_json_kind(value)} into Go struct field {where} of type {kind}")
