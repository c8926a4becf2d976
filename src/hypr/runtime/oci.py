"""A sandbox's OCI bundle: config.json as a pure function of the workload (docs/sandbox.md shows its shape).

Docker's defaults: new PID, mount, IPC, UTS and cgroup namespaces, the network namespace hypr made (joined by
path), Docker's 14 capabilities, the default seccomp profile (made concrete for this architecture and capability
set here), masked and read-only /proc paths, /sys read-only, a minimal /dev with only the default devices usable,
cgroup limits from Memory, NanoCpus and PidsLimit. hypr also sets no_new_privs unless asked not to. `privileged`
turns confinement off as Docker's --privileged does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypr.models import Confinement, Mount

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP_PARENT = "/hypr"  # each sandbox's cgroup is /hypr/<workload id> in every hierarchy (Docker: /docker/<id>)

# Indexed by capability number (linux/capability.h).
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
# Docker's default set.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)  # fmt: skip
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# What every sandbox may open (the devices the runtime makes in /dev); any device node may be made (mknod), as
# in Docker, but not opened.
_DEFAULT_DEVICE_RULES = (
    ("c", None, None, "m"), ("b", None, None, "m"), ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"),
    ("c", 1, 8, "rwm"), ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
    ("c", 136, None, "rwm"),
)  # fmt: skip
# Docker's network sysctls for a container with its own network namespace: ports below 1024 and ICMP echo sockets
# for every user (so an image's non-root user can ping without NET_RAW).
SYSCTLS = {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}
# Go's architecture names (what seccomp profiles say in `arches`) and libseccomp's, by `uname -m`.
_ARCHES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "i686": ("386", "SCMP_ARCH_X86"), "armv7l": ("arm", "SCMP_ARCH_ARM"), "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"), "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
}  # fmt: skip


@dataclass(frozen=True)
class Device:
    """A host device node, given to a privileged sandbox."""

    path: str
    type: str  # "c" or "b"
    major: int
    minor: int
    mode: int  # permission bits
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Process:
    args: tuple[str, ...]
    env: tuple[str, ...]  # "K=V"
    cwd: str
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    terminal: bool = False  # a pty for stdin/stdout/stderr (crun hands its master to --console-socket)


@dataclass(frozen=True)
class Inputs:
    """Everything config.json is derived from; the sandbox backend gathers it (files, kernel, profile)."""

    workload_id: str
    process: Process
    hostname: str
    domainname: str
    netns: str | None  # the pinned network namespace, joined by path; None: the caller's (Docker's host mode)
    rootfs: str  # the root the supervisor mounts (an overlay, or the host's root read-only)
    host_root: bool  # the `host` image: a read-only view of the host's root with private /tmp and /run
    files: Mapping[str, str]  # /etc/hosts, /etc/resolv.conf, /etc/hostname -> the state dir's files
    confinement: Confinement = field(default_factory=Confinement)
    hidden: tuple[str, ...] = ()  # masked whatever the image: the daemon's own data and runtime directories
    seccomp_profile: Mapping[str, Any] | None = None  # the default profile (Docker's format)
    arch: str = "x86_64"  # uname -m
    kernel: tuple[int, int] = (6, 1)
    available: tuple[str, ...] = CAPABILITIES  # what the supervisor itself holds (its bounding set): "every" one
    devices: tuple[Device, ...] = ()  # the host's devices, used only when privileged


def capabilities(c: Confinement, available: Sequence[str] = CAPABILITIES) -> tuple[str, ...]:
    """Docker's rules: privileged has every capability; `--cap-add ALL` all but the dropped ones; `--cap-drop ALL`
    only the added ones; otherwise the defaults without the dropped ones, plus the added ones. "Every" is every one
    this kernel has that hypr itself holds: no runtime can give more."""
    added = [cap for cap in c.cap_add if cap != "ALL"]
    if c.privileged:
        caps = list(available)
    elif "ALL" in c.cap_add:
        caps = [cap for cap in available if cap not in c.cap_drop]
    elif "ALL" in c.cap_drop:
        caps = added
    else:
        caps = [cap for cap in DEFAULT_CAPABILITIES if cap not in c.cap_drop] + added
    return tuple(dict.fromkeys(caps))


def no_new_privileges(c: Confinement) -> bool:
    return c.no_new_privileges if c.no_new_privileges is not None else not c.privileged


def process_env(env: Mapping[str, str], hostname: str, home: str) -> tuple[str, ...]:
    """Docker's order: PATH, HOSTNAME and HOME unless the image or the workload set them."""
    merged = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": home or "/root", **env}
    return tuple(f"{k}={v}" for k, v in merged.items())


def process(inputs: Inputs, proc: Process | None = None) -> dict[str, Any]:
    """The `process` object: the workload's command, or an exec in it (same user, capabilities, no_new_privs)."""
    proc = proc or inputs.process
    caps = list(capabilities(inputs.confinement, inputs.available))
    return {
        "terminal": proc.terminal,
        "user": {"uid": proc.uid, "gid": proc.gid, **({"additionalGids": list(proc.groups)} if proc.groups else {})},
        "args": list(proc.args),
        "env": list(proc.env),
        "cwd": proc.cwd or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": no_new_privileges(inputs.confinement),
    }


# What Docker's own profile (moby profiles/seccomp/default.json) allows only with CAP_SYS_ADMIN, and what it never
# allows, where the profile Debian ships (Podman's variant) allows them to every process: with them a workload could
# make user namespaces (and, inside one, every other kind: more kernel surface than Docker exposes) and reach the
# kernel keyrings, which are not namespaced (the host root's user keyring is every uid-0 process's).
_SYS_ADMIN_ONLY = ("clone", "clone3", "fsconfig", "fsmount", "fsopen", "fspick", "mount", "mount_setattr",
                   "move_mount", "open_tree", "setns", "umount", "umount2", "unshare")  # fmt: skip
_NEVER = ("keyctl", "add_key", "request_key")
_CLONE_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET (moby's mask)


def as_dockers(profile: Mapping[str, Any]) -> dict[str, Any]:
    """Debian's default profile with Docker's rules for namespaces, mounts and keyrings: those calls taken out of
    the rules that allow them to everyone, allowed again with CAP_SYS_ADMIN; without it `clone` only without
    namespace flags and `clone3` ENOSYS (so that libc falls back to clone), as moby's profile does, the others EPERM
    (moby's default errno; Debian's is ENOSYS, which tools report as "not implemented"); keyrings EPERM."""
    taken = set(_SYS_ADMIN_ONLY) | set(_NEVER)
    rules = []
    for rule in profile.get("syscalls") or ():
        general = not rule.get("includes") and not rule.get("excludes") and not rule.get("args")
        if general and rule.get("action") == "SCMP_ACT_ALLOW":
            names = [n for n in rule.get("names") or () if n not in taken]
            rule = {**rule, "names": names}
        rules.append(rule)
    rules += [
        {"names": list(_SYS_ADMIN_ONLY), "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]},
         "args": [{"index": 0, "value": _CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": [n for n in _SYS_ADMIN_ONLY if n not in ("clone", "clone3")], "action": "SCMP_ACT_ERRNO",
         "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},  # EPERM as moby's default (Debian's is ENOSYS)
        {"names": list(_NEVER), "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
    ]  # fmt: skip
    return {**profile, "syscalls": rules}


def seccomp(profile: Mapping[str, Any], caps: Sequence[str], arch: str, kernel: tuple[int, int]) -> dict[str, Any]:
    """A Docker-format profile (Docker's default, or a workload's own) made concrete as OCI's linux.seccomp: the
    rules for this architecture, kernel and capability set, as dockerd does before it calls runc."""
    goarch, native = _ARCHES.get(arch, (arch, "SCMP_ARCH_" + arch.upper()))
    arches = [native]
    for entry in profile.get("archMap") or ():
        if entry.get("architecture") == native:
            arches += list(entry.get("subArchitectures") or ())
    if not profile.get("archMap") and profile.get("architectures"):
        arches = list(profile["architectures"])
    rules = []
    for rule in profile.get("syscalls") or ():
        if not _applies(rule, goarch, set(caps), kernel):
            continue
        out: dict[str, Any] = {"names": list(rule.get("names") or [rule.get("name")]), "action": rule["action"]}
        if rule.get("args"):
            out["args"] = [
                {"index": a["index"], "value": a["value"], "valueTwo": a.get("valueTwo", 0), "op": a["op"]}
                for a in rule["args"]
            ]
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        rules.append(out)
    result: dict[str, Any] = {"defaultAction": profile["defaultAction"], "architectures": arches, "syscalls": rules}
    if profile.get("defaultErrnoRet") is not None:
        result["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if profile.get("flags"):
        result["flags"] = list(profile["flags"])
    return result


def _applies(rule: Mapping[str, Any], goarch: str, caps: set[str], kernel: tuple[int, int]) -> bool:
    includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
    if includes.get("arches") and goarch not in includes["arches"]:
        return False
    if excludes.get("arches") and goarch in excludes["arches"]:
        return False
    if includes.get("caps") and not all(cap in caps for cap in includes["caps"]):
        return False
    if excludes.get("caps") and any(cap in caps for cap in excludes["caps"]):
        return False
    if includes.get("minKernel"):
        major, _, minor = str(includes["minKernel"]).partition(".")
        if kernel < (int(major), int(minor.split(".")[0] or 0)):
            return False
    return True


def _mount(destination: str, kind: str, source: str, options: Sequence[str]) -> dict[str, Any]:
    return {"destination": destination, "type": kind, "source": source, "options": list(options)}


def user_mount(m: Mount) -> dict[str, Any]:
    if m.type == "tmpfs":
        return _mount(m.target, "tmpfs", "tmpfs", m.options)
    recursive = "nonrecursive" not in m.options
    options = ["rbind" if recursive else "bind", *(o for o in m.options if o != "nonrecursive")]
    if m.readonly:
        options.append("rro" if recursive else "ro")  # Docker >= 25: read-only binds are read-only all the way down
    return _mount(m.target, "bind", m.source, options)


def mounts(inputs: Inputs) -> list[dict[str, Any]]:
    """Docker's default mounts, hypr's /etc files, then the workload's own (which replace a default at the same
    place), parents before what is mounted inside them."""
    c = inputs.confinement
    ro = [] if c.privileged else ["ro"]
    defaults = [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                                                "gid=5"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", *ro]),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", *ro]),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]),
    ]  # fmt: skip
    if inputs.host_root:
        defaults += [
            _mount("/tmp", "tmpfs", "tmpfs", ["nosuid", "nodev", "mode=1777"]),
            _mount("/run", "tmpfs", "tmpfs", ["nosuid", "nodev", "mode=755"]),
        ]
    defaults += [_mount(target, "bind", source, ["rbind", "rprivate"]) for target, source in inputs.files.items()]
    taken = {m.target for m in c.mounts}
    return [m for m in defaults if m["destination"] not in taken] + [user_mount(m) for m in c.mounts]


def resources(c: Confinement) -> dict[str, Any]:
    devices: list[dict[str, Any]] = [{"allow": c.privileged, "access": "rwm"}]
    if not c.privileged:
        devices += [
            {"allow": True, "type": kind, **({"major": major} if major is not None else {}),
             **({"minor": minor} if minor is not None else {}), "access": access}
            for kind, major, minor, access in _DEFAULT_DEVICE_RULES
        ]  # fmt: skip
    found: dict[str, Any] = {"devices": devices}
    if c.memory:
        found["memory"] = {"limit": c.memory, "swap": 2 * c.memory}  # Docker: as much swap as memory
    if c.nano_cpus:
        period = 100_000
        found["cpu"] = {"quota": c.nano_cpus * period // 10**9, "period": period}
    if c.pids_limit:
        found["pids"] = {"limit": c.pids_limit}
    return found


def _seccomp_for(inputs: Inputs) -> dict[str, Any] | None:
    c = inputs.confinement
    if c.privileged or c.seccomp == "unconfined":
        return None
    profile = json.loads(c.seccomp) if c.seccomp else inputs.seccomp_profile
    if profile is None:
        raise ValueError("no seccomp profile")
    return seccomp(profile, capabilities(c, inputs.available), inputs.arch, inputs.kernel)


def config(inputs: Inputs) -> dict[str, Any]:
    c = inputs.confinement
    confined = not (c.privileged or c.unmasked)
    own_network = [{"type": "network", "path": inputs.netns}] if inputs.netns is not None else []
    linux: dict[str, Any] = {
        "namespaces": [
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}, *own_network,
        ],
        "cgroupsPath": f"{CGROUP_PARENT}/{inputs.workload_id}",
        "resources": resources(c),
        # Network sysctls are per namespace: in the host's (host mode) they would change the host.
        "sysctl": dict(SYSCTLS) if own_network else {},
        "maskedPaths": [*(MASKED_PATHS if confined else ()), *inputs.hidden],
        "readonlyPaths": list(READONLY_PATHS if confined else ()),
    }  # fmt: skip
    rules = _seccomp_for(inputs)
    if rules is not None:
        linux["seccomp"] = rules
    if c.privileged:
        linux["devices"] = [
            {"path": d.path, "type": d.type, "major": d.major, "minor": d.minor, "fileMode": d.mode, "uid": d.uid,
             "gid": d.gid}
            for d in inputs.devices
        ]  # fmt: skip
    return {
        "ociVersion": OCI_VERSION,
        "process": process(inputs),
        "root": {"path": inputs.rootfs, "readonly": c.readonly_rootfs or inputs.host_root},
        "hostname": inputs.hostname,
        **({"domainname": inputs.domainname} if inputs.domainname else {}),
        "mounts": mounts(inputs),
        "linux": linux,
    }
