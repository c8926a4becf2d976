"""The runtime interface: what the daemon hands a backend, and what it gets back.

Services depend on this module only; backends (`sandbox`, later `vm`) implement `Runtime`.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Protocol

from hypr.models import Confinement, Stdio


@dataclass(frozen=True)
class Attachment:
    """One endpoint as the runtime sees it: the host end already named, the guest end to be made."""

    host_ifname: str  # veth host end (sandbox) or TAP (vm), enslaved to `bridge`
    bridge: str
    guest_ifname: str  # "eth0", "eth1", ... in attach order
    ip: IPv4Address | None  # None on an IPv6-only network
    prefixlen: int
    gateway: IPv4Address | None
    mac: str
    mtu: int = 1500
    # IPv6, on a dual-stack or IPv6-only network: the address (None: IPv4 only), its prefix length, the gateway.
    ip6: IPv6Address | None = None
    prefixlen6: int = 64
    gateway6: IPv6Address | None = None
    link_local: tuple[IPv4Address, ...] = ()  # Docker's LinkLocalIPs: more addresses on the guest end (/16)
    internal: bool = False  # an internal network: no default route through it (Docker's bridge driver gives none)


@dataclass(frozen=True)
class LaunchSpec:
    workload_id: str
    name: str
    hostname: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    attachments: tuple[Attachment, ...]
    nameserver: IPv4Address | IPv6Address | None  # a gateway: IPv4 unless every network is IPv6-only
    state_dir: Path  # one directory per workload, owned by the runtime until delete()
    owner_alias: str  # IFLA_IFALIAS for every host-side link, so the daemon can prove it made them
    hosts: tuple[tuple[str, IPv4Address | IPv6Address], ...] = ()  # extra /etc/hosts entries (name, address)
    workdir: str = "/"
    labels: Mapping[str, str] = field(default_factory=dict)
    cpus: float = 1.0  # vm: vCPUs (rounded up)
    memory_mb: int = 256  # vm: guest memory
    data_dir: Path | None = None  # the daemon's data dir: kernels, built images and other caches live under it
    # A pulled image (hypr.images): its unpacked root filesystem, read-only and shared by every workload of the
    # image, and its ID ("sha256:<hex>", the config digest), the key for anything derived from it (a VM disk).
    # None / "": `image` names a built-in image or a rootfs directory instead.
    rootfs: Path | None = None
    image_id: str = ""
    user: str = ""  # Docker's User: "", "uid", "uid:gid", "name", "name:group"; resolved against the image's /etc
    stop_signal: str = ""  # Docker's StopSignal ("SIGQUIT", "QUIT", "3"); "" means SIGTERM
    search: tuple[str, ...] = ()  # resolv.conf `search` (the host's unless the workload set its own)
    dns_options: tuple[str, ...] = ()  # resolv.conf `options`
    domainname: str = ""  # the UTS domain name (Docker's Config.Domainname)
    confinement: Confinement = field(default_factory=Confinement)  # sandbox: capabilities, seccomp, mounts, limits
    runtime_dir: Path | None = None  # the daemon's runtime dir (socket, workloads' state): never visible inside
    # Docker's network modes: "" (its own namespace with `attachments`), "none" (its own, only lo), "host" (the
    # daemon's namespace), "container" (another workload's namespace, pinned at `shared_netns`). For "host" and
    # "container" there are no attachments and nothing of the namespace is the workload's to change or remove.
    network_mode: str = ""
    shared_netns: Path | None = None
    resolv_conf: str | None = None  # host mode: the host's resolv.conf, copied as Docker does
    stdio: Stdio = field(default_factory=Stdio)  # TTY or two pipes; stdin held open for attach

    @property
    def gateway(self) -> Attachment | None:
        """The attachment that carries the IPv4 default route: the first (in gateway order) with an IPv4 address
        and gateway that is not internal. Each family picks its own, as Docker 28 does: an IPv6-only network in
        front leaves IPv4 to the next one. None for a workload on internal networks only, which has no default
        route (Docker's: its bridge driver gives an internal network no gateway)."""
        return next(
            (a for a in self.attachments if a.ip is not None and a.gateway is not None and not a.internal), None
        )

    @property
    def gateway6(self) -> Attachment | None:
        """The attachment that carries the IPv6 default route: the first (in gateway order) with an IPv6 address
        and gateway, internal networks excepted."""
        return next(
            (a for a in self.attachments if a.ip6 is not None and a.gateway6 is not None and not a.internal), None
        )


@dataclass(frozen=True)
class ExecOptions:
    """Docker's exec settings beyond the command: User ("" is the workload's), Privileged (every capability),
    Tty (a pty whose master goes to `console_socket`, a unix socket path)."""

    user: str = ""
    privileged: bool = False
    console_socket: str | None = None


NO_OPTIONS = ExecOptions()


def _no_failure(code: int) -> tuple[int, str] | None:
    return None


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class ExecProcess:
    """An exec ready to run, for a caller that runs it itself (the API): `argv` run by root with `pass_fds`
    inherited (same numbers); `failure(exit code)` is (Docker's code, message) when the command never ran (the
    runtime's own failure), else None; `close()` once it has ended."""

    argv: list[str]
    pass_fds: tuple[int, ...] = ()
    failure: Callable[[int], tuple[int, str] | None] = _no_failure
    close: Callable[[], None] = _nothing


@dataclass(frozen=True)
class Handle:
    """A running workload. (pid, start_time) names the supervisor for good, even after pid reuse."""

    pid: int  # the supervisor: alive exactly as long as the workload
    start_time: int  # field 22 of /proc/<pid>/stat
    main_pid: int  # the workload's command; also its process group id


class Runtime(Protocol):
    """A workload's lifecycle. Removals count "already gone" as success; every method is idempotent."""

    name: str

    def validate(self, spec: LaunchSpec) -> None:
        """Raise InvalidParameter for what this backend cannot run; no side effects."""

    def create(self, spec: LaunchSpec) -> None:
        """Namespaces (or VM plumbing) and every attachment in `spec.attachments`."""

    def start(self, spec: LaunchSpec) -> Handle: ...

    def adopt(self, spec: LaunchSpec) -> Handle | None:
        """The handle of a workload still running from before a daemon restart, or None."""

    def running(self, handle: Handle) -> bool:
        """Still running: the cheap check the refresher makes of every running workload twice a second."""

    def status(self, spec: LaunchSpec, handle: Handle) -> tuple[bool, int | None]:
        """(running, exit code once known)."""

    def stop(self, spec: LaunchSpec, handle: Handle, timeout: float) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` seconds; the exit code."""

    def kill(self, spec: LaunchSpec, handle: Handle, signal: _signal.Signals) -> None: ...

    def exec_argv(
        self, spec: LaunchSpec, handle: Handle, argv: tuple[str, ...], env: Mapping[str, str], workdir: str | None,
        options: ExecOptions = NO_OPTIONS,
    ) -> list[str]:  # fmt: skip
        """An argv that runs `argv` inside the workload when run by root on this machine; its exit code is
        the command's. Its stdin, stdout and stderr are the exec's (with `options.console_socket`, a pty's
        master is sent there instead, as crun's --console-socket does)."""

    def exec_process(
        self, spec: LaunchSpec, handle: Handle, argv: tuple[str, ...], env: Mapping[str, str], workdir: str | None,
        options: ExecOptions = NO_OPTIONS,
    ) -> ExecProcess:  # fmt: skip
        """The same exec as `exec_argv`, as cheap to start as the runtime can make it (no helper process when the
        runtime's own tool can be run directly)."""

    def log_path(self, spec: LaunchSpec) -> Path:
        """The workload's output: `log.json` in Docker's json-file format (runtime/relay.py), or a raw log."""

    def attach_socket(self, spec: LaunchSpec) -> Path | None:
        """The supervisor's attach socket (runtime/relay.py) while it runs; None for a runtime without one."""

    def pause(self, spec: LaunchSpec, handle: Handle, *, paused: bool) -> None:
        """Freeze (True) or thaw (False) every process of the workload; InvalidParameter when the backend cannot."""

    def attach(self, spec: LaunchSpec, att: Attachment) -> None:
        """Hot-plug one more endpoint (the workload may be running)."""

    def detach(self, spec: LaunchSpec, att: Attachment) -> None: ...

    def delete(self, spec: LaunchSpec) -> None:
        """Kill what still runs; remove namespaces, host links, state_dir. Collects errors, raises them once."""
