"""Docker's confinement fields of a container-create body, validated as a pure step: HostConfig -> Confinement.

Privileged, CapAdd, CapDrop, SecurityOpt, ReadonlyRootfs, Tmpfs, Binds, Mounts, PidsLimit, Memory and NanoCpus are
honoured by sandboxes (docs/sandbox.md). Anything hypr cannot honour is refused with a 400 that names it, never
ignored: a capability, security option, mount type or mount option it does not know, any of these fields on a
microVM, and the HostConfig fields that would change confinement in ways hypr does not implement (PidMode, Devices,
Sysctls...).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from hypr.errors import InvalidParameter
from hypr.models import Confinement, Mount
from hypr.runtime.oci import CAPABILITIES
from hypr.services.validation import flag, strings

# Fields of a sandbox's confinement; a microVM has its own kernel and honours none of them.
SANDBOX_ONLY = (
    "Privileged", "CapAdd", "CapDrop", "SecurityOpt", "ReadonlyRootfs", "Tmpfs", "Binds", "Mounts", "PidsLimit",
)  # fmt: skip
# HostConfig fields hypr does not implement: refused unless they hold Docker's default (or a value that means what
# hypr does anyway), so that a client asking for them learns at once instead of running without them.
_NOT_HONOURED: dict[str, tuple[Any, ...]] = {
    "PidMode": ("", "private"), "IpcMode": ("", "private", "shareable"), "UTSMode": ("",), "UsernsMode": ("",),
    "CgroupnsMode": ("", "private"), "Cgroup": ("",), "CgroupParent": ("",), "Devices": (), "DeviceRequests": (),
    "DeviceCgroupRules": (), "Sysctls": (), "Init": (False,), "MaskedPaths": (), "ReadonlyPaths": (), "Ulimits": (),
    "GroupAdd": (), "VolumesFrom": (), "VolumeDriver": ("",), "ShmSize": (0,), "MemorySwap": (0,),
    "MemoryReservation": (0,), "MemorySwappiness": (-1,), "OomKillDisable": (False,), "CpuShares": (0,),
    "CpuPeriod": (0,), "CpuQuota": (0,), "CpusetCpus": ("",), "CpusetMems": ("",), "BlkioWeight": (0,),
    "BlkioWeightDevice": (), "BlkioDeviceReadBps": (), "BlkioDeviceWriteBps": (), "BlkioDeviceReadIOps": (),
    "BlkioDeviceWriteIOps": (), "CpuRealtimePeriod": (0,), "CpuRealtimeRuntime": (0,), "KernelMemory": (0,),
    "KernelMemoryTCP": (0,), "CpuCount": (0,), "CpuPercent": (0,), "IOMaximumIOps": (0,), "IOMaximumBandwidth": (0,),
    "OomScoreAdj": (0,), "StorageOpt": (), "Isolation": ("", "default"), "Annotations": (),
}  # fmt: skip
# Accepted and not kept, on purpose: ContainerIDFile (the docker CLI writes that file itself; dockerd ignores it too)
# and ConsoleSize (a TTY's first size; clients set it again through /resize once attached).
_TMPFS_FLAGS = frozenset(
    [
        "rw",
        "ro",
        "exec",
        "noexec",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "atime",
        "noatime",
        "relatime",
        "norelatime",
        "strictatime",
        "nodiratime",
        "sync",
        "async",
    ]
)
_TMPFS_VALUES = {
    "size": re.compile(r"^\d+[kmgKMG%]?$"), "mode": re.compile(r"^[0-7]{3,4}$"), "uid": re.compile(r"^\d+$"),
    "gid": re.compile(r"^\d+$"), "nr_inodes": re.compile(r"^\d+[kmgKMG]?$"), "nr_blocks": re.compile(r"^\d+[kmgKMG]?$"),
}  # fmt: skip
TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev")  # Docker's, before the workload's own options
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_CONSISTENCY = ("consistent", "cached", "delegated")  # macOS hints Docker accepts and ignores on Linux


def plan_confinement(host_config: Mapping[str, Any], runtime: str) -> Confinement:
    _refuse_not_honoured(host_config)
    if runtime != "sandbox":
        for key in SANDBOX_ONLY:
            if _given(host_config.get(key)):
                raise InvalidParameter(
                    f"HostConfig.{key} is not supported with --runtime {runtime}: a microVM has its own kernel and "
                    "file systems (confinement, bind mounts and tmpfs are sandboxes' only)"
                )
    seccomp, nnp, unmasked = security_options(strings(host_config.get("SecurityOpt"), "SecurityOpt"))
    tmpfs = _tmpfs_map(host_config.get("Tmpfs"))
    binds = tuple(strings(host_config.get("Binds"), "Binds"))
    api_mounts = _objects(host_config.get("Mounts"), "Mounts")
    mounts = [*(parse_bind(b) for b in binds), *(parse_mount(m) for m in api_mounts)]
    mounts += [Mount("tmpfs", _target(t, "Tmpfs"), options=_tmpfs_options(o, f"Tmpfs[{t}]")) for t, o in tmpfs]
    seen: set[str] = set()
    for mount in mounts:
        if mount.target in seen:
            raise InvalidParameter(f"Duplicate mount point: {mount.target}")
        seen.add(mount.target)
    return Confinement(
        privileged=flag(host_config, "Privileged"),
        cap_add=capabilities(host_config.get("CapAdd"), "CapAdd"),
        cap_drop=capabilities(host_config.get("CapDrop"), "CapDrop"),
        security_opt=tuple(strings(host_config.get("SecurityOpt"), "SecurityOpt")),
        seccomp=seccomp, no_new_privileges=nnp, unmasked=unmasked,
        readonly_rootfs=flag(host_config, "ReadonlyRootfs"),
        tmpfs=tmpfs, binds=binds, api_mounts=api_mounts,
        mounts=tuple(sorted(mounts, key=lambda m: m.target.count("/"))),  # parents before what is mounted in them
        pids_limit=_pids_limit(host_config.get("PidsLimit")),
        memory=_non_negative(host_config, "Memory"), nano_cpus=_non_negative(host_config, "NanoCpus"),
    )  # fmt: skip


def _given(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


def _refuse_not_honoured(host_config: Mapping[str, Any]) -> None:
    for key, accepted in _NOT_HONOURED.items():
        value = host_config.get(key)
        if _given(value) and value not in accepted:
            raise InvalidParameter(f"HostConfig.{key} is not supported by hypr (got {json.dumps(value)})")


def capabilities(value: Any, what: str) -> tuple[str, ...]:
    """Docker's spelling: `NET_ADMIN`, `CAP_NET_ADMIN`, any case, or `ALL`; normalised to `CAP_NET_ADMIN`."""
    found = []
    for name in strings(value, what):
        upper = name.strip().upper()
        if upper == "ALL":
            found.append("ALL")
            continue
        cap = upper if upper.startswith("CAP_") else "CAP_" + upper
        if cap not in CAPABILITIES:
            raise InvalidParameter(f'invalid {what}: unknown capability: "{cap}"')
        found.append(cap)
    return tuple(dict.fromkeys(found))


def security_options(options: list[str]) -> tuple[str, bool | None, bool]:
    """(seccomp, no_new_privileges, unmasked) from Docker's SecurityOpt. `seccomp=` takes `unconfined` or a
    profile's JSON (the docker CLI sends the file's content); `key:value` is Docker's legacy spelling."""
    seccomp, nnp, unmasked = "", None, False
    for option in options:
        if option in ("no-new-privileges", "no_new_privileges"):
            nnp = True
            continue
        key, sep, value = option.partition("=")
        if not sep:
            key, sep, value = option.partition(":")
        if not sep:
            raise InvalidParameter(f"invalid --security-opt: {option!r}: expected key=value")
        if key == "seccomp":
            seccomp = value if value == "unconfined" else _seccomp_profile(value)
        elif key in ("no-new-privileges", "no_new_privileges"):
            if value.lower() not in ("true", "false", "1", "0"):
                raise InvalidParameter(f"invalid --security-opt: {option!r}: expected true or false")
            nnp = value.lower() in ("true", "1")
        elif (key, value) in (("systempaths", "unconfined"),):
            unmasked = True
        elif (key, value) in (("apparmor", "unconfined"), ("label", "disable")):
            pass  # hypr applies no AppArmor profile or SELinux label: this asks for what already is
        else:
            raise InvalidParameter(
                f"security option {option!r} is not supported by hypr (supported: seccomp=unconfined|<profile JSON>, "
                "no-new-privileges[=true|false], systempaths=unconfined, apparmor=unconfined, label=disable)"
            )
    return seccomp, nnp, unmasked


def _seccomp_profile(text: str) -> str:
    try:
        profile = json.loads(text)
    except ValueError:
        raise InvalidParameter(
            "invalid seccomp profile: expected `unconfined` or the profile's JSON (the docker CLI reads the file)"
        ) from None
    if not isinstance(profile, Mapping) or not isinstance(profile.get("defaultAction"), str):
        raise InvalidParameter("invalid seccomp profile: expected a JSON object with a defaultAction")
    if not isinstance(profile.get("syscalls") or [], list):
        raise InvalidParameter("invalid seccomp profile: syscalls must be a list")
    return json.dumps(profile, sort_keys=True)


def _target(path: Any, what: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidParameter(f"invalid {what}: the mount point {path!r} is not an absolute path")
    clean = posixpath.normpath(path)
    if clean == "/":
        raise InvalidParameter(f"invalid {what}: the mount point can't be '/'")
    return clean


def parse_bind(spec: str) -> Mount:
    """`-v /host:/inside[:ro|rw,propagation]` (Docker's Binds). A name instead of a path is a named volume."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidParameter(f"invalid volume specification: {spec!r}")
    source, target, mode = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
    if not source.startswith("/"):
        raise InvalidParameter(
            f"invalid Binds {spec!r}: named volumes are not supported by hypr; bind a host directory by its "
            "absolute path"
        )
    readonly, options = False, ["rprivate"]
    for word in filter(None, mode.split(",")):
        if word in ("ro", "rw"):
            readonly = word == "ro"
        elif word in PROPAGATIONS:
            options[0] = word
        elif word in _CONSISTENCY:
            continue
        else:
            raise InvalidParameter(
                f"invalid Binds {spec!r}: mode {word!r} is not supported by hypr (ro, rw, {', '.join(PROPAGATIONS)})"
            )
    return Mount("bind", _target(target, "Binds"), posixpath.normpath(source), readonly, tuple(options),
                 create_source=True)  # fmt: skip


def parse_mount(m: Mapping[str, Any]) -> Mount:
    """One of Docker's Mounts objects (`--mount type=bind|tmpfs,...`)."""
    kind = m.get("Type")
    target = _target(m.get("Target"), "Mounts")
    if m.get("Consistency") not in (None, "", "default", *_CONSISTENCY):
        raise InvalidParameter(f"invalid Mounts[{target}]: unknown Consistency {m.get('Consistency')!r}")
    readonly = m.get("ReadOnly")
    if readonly is not None and not isinstance(readonly, bool):
        raise InvalidParameter(f"invalid Mounts[{target}].ReadOnly: expected a boolean")
    for key in ("VolumeOptions", "ImageOptions", "ClusterOptions"):
        if _given(m.get(key)):
            raise InvalidParameter(f"Mounts[{target}].{key} is not supported by hypr")
    if kind == "bind":
        if _given(m.get("TmpfsOptions")):
            raise InvalidParameter(f"invalid Mounts[{target}]: TmpfsOptions on a bind mount")
        source = m.get("Source")
        if not isinstance(source, str) or not source.startswith("/"):
            raise InvalidParameter(f"invalid Mounts[{target}]: a bind mount needs an absolute Source")
        return Mount("bind", target, posixpath.normpath(source), bool(readonly), _bind_options(m, target))
    if kind == "tmpfs":
        if _given(m.get("Source")) or _given(m.get("BindOptions")):
            raise InvalidParameter(f"invalid Mounts[{target}]: a tmpfs mount takes no Source or BindOptions")
        options = _tmpfs_object_options(_mapping(m.get("TmpfsOptions"), f"Mounts[{target}].TmpfsOptions"), target)
        return Mount("tmpfs", target, readonly=bool(readonly), options=(*options, *(("ro",) if readonly else ())))
    if kind == "volume":
        raise InvalidParameter(
            f"invalid Mounts[{target}]: volumes are not supported by hypr; use type=bind with a host directory"
        )
    raise InvalidParameter(f"invalid Mounts[{target}]: mount type {kind!r} is not supported by hypr (bind, tmpfs)")


def _bind_options(m: Mapping[str, Any], target: str) -> tuple[str, ...]:
    bind = _mapping(m.get("BindOptions"), f"Mounts[{target}].BindOptions")
    propagation = bind.get("Propagation") or "rprivate"
    if propagation not in PROPAGATIONS:
        raise InvalidParameter(f"invalid Mounts[{target}]: unknown Propagation {propagation!r}")
    for key, value in bind.items():
        if key not in ("Propagation", "NonRecursive", "CreateMountpoint") and _given(value):
            raise InvalidParameter(f"Mounts[{target}].BindOptions.{key} is not supported by hypr")
    return (propagation, *(("nonrecursive",) if bind.get("NonRecursive") else ()))


def _tmpfs_object_options(options: Mapping[str, Any], target: str) -> tuple[str, ...]:
    found = []
    size, mode = options.get("SizeBytes"), options.get("Mode")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidParameter(f"invalid Mounts[{target}].TmpfsOptions.SizeBytes: expected bytes")
        if size:
            found.append(f"size={size}")
    if mode is not None:
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
            raise InvalidParameter(f"invalid Mounts[{target}].TmpfsOptions.Mode: expected a file mode")
        found.append(f"mode={mode:o}")
    for key in options:
        if key not in ("SizeBytes", "Mode") and _given(options[key]):
            raise InvalidParameter(f"Mounts[{target}].TmpfsOptions.{key} is not supported by hypr")
    return (*TMPFS_DEFAULTS, *found)


def _tmpfs_map(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidParameter("invalid Tmpfs: expected an object of mount point -> options")
    return tuple(value.items())


def _tmpfs_options(text: str, what: str) -> tuple[str, ...]:
    """`--tmpfs /run:rw,size=64m`: Docker's defaults first, the workload's after (the last one wins)."""
    words = [w for w in text.split(",") if w]
    for word in words:
        key, sep, value = word.partition("=")
        if (sep and (key not in _TMPFS_VALUES or not _TMPFS_VALUES[key].match(value))) or (
            not sep and word not in _TMPFS_FLAGS
        ):
            raise InvalidParameter(f"invalid {what}: unknown or malformed tmpfs option {word!r}")
    return (*TMPFS_DEFAULTS, *words)


def _pids_limit(value: Any) -> int | None:
    """Docker's PidsLimit: a positive number of tasks; 0, -1 and null mean no limit."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidParameter(f"invalid PidsLimit {value!r}: expected an integer")
    return value if value > 0 else None


def _non_negative(host_config: Mapping[str, Any], key: str) -> int:
    value = host_config.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidParameter(f"invalid {key}: expected a non-negative integer")
    return value


def _objects(value: Any, what: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise InvalidParameter(f"invalid {what}: expected a list of objects")
    return tuple(dict(v) for v in value)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidParameter(f"invalid {what}: expected an object")
    return value
