"""The `sandbox` backend: a pinned network namespace with one veth per attachment (ours), and the command confined
by crun as Docker confines a container (docs/sandbox.md), under a detached supervisor (shim.py).

State directory layout (one per workload, given by the daemon):
    netns         the pinned network namespace (lives from create() to delete(), across stop/start); crun joins it
    bundle/       config.json, generated from the workload (oci.py) at every start;  crun/  crun's state
    launch.json   what the supervisor runs;  handle.json  the running supervisor, for adopt()
    log           stdout+stderr, appended;  exit_code  written by the supervisor when the command ends
    hosts, resolv.conf, hostname   bind-mounted over /etc/hosts, /etc/resolv.conf and /etc/hostname
    rootfs/       the root crun is given: an overlay of the image (upper/, work/: the workload's own layer), or
                  the host's root read-only (the `host` image); mounted only in the supervisor's mount namespace
The directory of the state dirs is a bind mount of itself while any pin exists (netns.mount_pins): a supervisor
lets go of every other workload's pin with one umount of it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import signal as _signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypr.errors import Conflict, InvalidParameter, KernelError
from hypr.runtime import crun, files, handles, images, netns, oci, proc, relay, shim, users, veth
from hypr.runtime.base import NO_OPTIONS, Attachment, ExecOptions, ExecProcess, Handle, LaunchSpec
from hypr.runtime.rtnl import Rtnl, default_route_add, delete_host_links, link_up

SHIM = Path(__file__).with_name("shim.py")
# The supervisor imports shim.py rather than running it as a script: a script is compiled at every start (~10-20 ms
# on a loaded host), a module is loaded from its cached bytecode. -I -S: nothing of site or the environment.
_SHIM_BOOT = "import sys; sys.path.insert(0, sys.argv[1].rpartition('/')[0]); import shim; shim.main(sys.argv[1:])"
HOSTNAME_MAX = 64
LAUNCH_TIMEOUT = 30.0
KILL_GRACE = 5.0  # after SIGKILL, how long the supervisor may take to record the exit code


def _netns_path(spec: LaunchSpec) -> Path:
    """The workload's own network namespace (also for `none`)."""
    return spec.state_dir / "netns"


def _pins(spec: LaunchSpec) -> Path:
    """The directory of every workload's state dir: the mount holding their network namespace pins."""
    return spec.state_dir.parent


def _shares(spec: LaunchSpec) -> bool:
    """Host or container mode: the namespace is someone else's, never made, plugged or removed here."""
    return spec.network_mode in ("host", "container")


def _joined(spec: LaunchSpec) -> Path | None:
    """The namespace crun joins: its own, the owner's (container mode), or None: the supervisor's, which is the
    daemon's (host mode)."""
    if spec.network_mode == "host":
        return None
    if spec.network_mode == "container":
        if spec.shared_netns is None or not netns.is_netns(spec.shared_netns):
            raise Conflict(f"cannot join network namespace of a non running container: {spec.name}'s owner is gone")
        return spec.shared_netns
    return _netns_path(spec)


def _command(spec: LaunchSpec, image: images.Image) -> tuple[str, ...]:
    return spec.command or image.default_command


def _container(spec: LaunchSpec) -> str:
    return spec.workload_id


def _bundle_inputs(spec: LaunchSpec, lower: Path | None, command: tuple[str, ...]) -> oci.Inputs:
    """Everything config.json is made from: the workload, its user resolved against the image's /etc (the host's
    for the `host` image), and what this host has (kernel, capabilities, seccomp profile, devices)."""
    creds = users.resolve_user(lower, spec.user)
    c = spec.confinement
    # Docker sets TERM for a TTY unless the image or the workload did.
    env = oci.process_env({**({"TERM": "xterm"} if spec.stdio.tty else {}), **spec.env}, spec.hostname, creds.home)
    host_root = lower is None
    hidden = tuple(str(d) for d in (spec.data_dir, spec.runtime_dir) if d is not None) if host_root else ()
    needs_profile = not (c.privileged or c.seccomp)
    joined = _joined(spec)
    return oci.Inputs(
        workload_id=spec.workload_id,
        process=oci.Process(command, env, spec.workdir or "/", creds.uid, creds.gid, creds.groups, spec.stdio.tty),
        hostname=spec.hostname, domainname=spec.domainname, netns=None if joined is None else str(joined),
        rootfs=str(spec.state_dir / "rootfs"), host_root=host_root,
        files={f"/etc/{name}": str(spec.state_dir / name) for name in (files.HOSTS, files.RESOLV, files.HOSTNAME)},
        confinement=c, hidden=hidden, seccomp_profile=crun.default_profile() if needs_profile else None,
        arch=platform.machine(), kernel=crun.kernel(), available=crun.available_capabilities(),
        devices=crun.host_devices() if c.privileged else (),
    )  # fmt: skip


def _launch_config(spec: LaunchSpec, bundle: Path, lower: Path | None, command: tuple[str, ...]) -> dict[str, object]:
    return {
        "id": _container(spec),
        "crun_root": str(crun.root_of(spec.state_dir)),
        "bundle": str(bundle),
        "state_dir": str(spec.state_dir),
        "rootfs": str(spec.state_dir / "rootfs"),
        "lower": str(lower) if lower is not None else None,
        "netns": str(_joined(spec) or ""),
        "pins": str(_pins(spec)) if netns.own_mount(_pins(spec)) else "",
        "argv0": command[0],
        "tty": spec.stdio.tty,
        "open_stdin": spec.stdio.open_stdin,
        "stdin_once": spec.stdio.stdin_once,
    }


def stop_signal(spec: LaunchSpec) -> _signal.Signals:
    """Docker's StopSignal: a name with or without SIG, or a number; SIGTERM when unset or unknown."""
    text = spec.stop_signal.upper()
    try:
        if text.isdigit():
            return _signal.Signals(int(text))
        return _signal.Signals[text if text.startswith("SIG") else "SIG" + text] if text else _signal.SIGTERM
    except (KeyError, ValueError):
        return _signal.SIGTERM


class SandboxRuntime:
    name = "sandbox"

    def __init__(self, *, image_cache: Path, python: str = sys.executable) -> None:
        self.image_cache = image_cache  # where built-in images are built once (under the daemon's data dir)
        self.filter_cache = image_cache / "seccomp"  # compiled seccomp filters (crun.py), likewise once per host
        self.python = python

    # -- validation ---------------------------------------------------------------------------------------
    def _image(self, spec: LaunchSpec) -> images.Image:
        return images.resolve(spec.image, self.image_cache, spec.rootfs)

    def validate(self, spec: LaunchSpec) -> None:
        image = self._image(spec)
        if not _command(spec, image):
            raise InvalidParameter("No command specified")
        if not 0 < len(spec.hostname) <= HOSTNAME_MAX:
            raise InvalidParameter(f"invalid hostname {spec.hostname!r}: 1 to {HOSTNAME_MAX} characters")
        guests = [att.guest_ifname for att in spec.attachments]
        if len(set(guests)) != len(guests):
            raise InvalidParameter(f"duplicate guest interface names: {guests}")
        missing = [cap for cap in spec.confinement.cap_add if cap not in ("ALL", *crun.available_capabilities())]
        if missing:
            raise InvalidParameter(f"cannot add {', '.join(missing)}: hyprd itself does not hold it (its bounding set)")
        for mount in spec.confinement.mounts:
            if mount.type == "bind" and not mount.create_source and not os.path.exists(mount.source):
                raise InvalidParameter(
                    f'invalid mount config for type "bind": bind source path does not exist: {mount.source}'
                )

    # -- network ------------------------------------------------------------------------------------------
    def _namespace_lost(self, spec: LaunchSpec) -> bool:
        """True when the workload has no network namespace any more (a reboot, or a daemon that ran in another
        mount namespace took the pin with it while the workload was stopped). A running workload still holds its
        namespace: it is pinned again from its process, never replaced."""
        path = _netns_path(spec)
        if _shares(spec) or netns.is_netns(path):
            return False
        handle = self.adopt(spec)
        if handle is not None and proc.alive(handle.pid, handle.start_time):
            try:
                netns.mount_pins(_pins(spec))
                netns.pin(f"/proc/{handle.main_pid}/ns/net", path)
                return False
            except OSError as exc:
                raise KernelError(f"pin the network namespace of running {spec.name} again: {exc}") from exc
        return True

    def create(self, spec: LaunchSpec) -> None:
        """Idempotent. A namespace made here is removed again if plugging fails; one that existed is never."""
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        if _shares(spec):
            files.write_all(spec)
            return
        fresh = self._namespace_lost(spec)
        if fresh:  # host ends left from the lost namespace would keep the new peers from being made
            delete_host_links(spec.attachments, [])
        try:
            netns.mount_pins(_pins(spec))
            with netns.create(_netns_path(spec)) as ns, Rtnl() as host:
                ns.rtnl.batch([link_up(index=veth.LOOPBACK_INDEX)])  # `none` has lo alone, up
                for att in spec.attachments:
                    veth.plug(host, ns, att, alias=spec.owner_alias, default_route=att == spec.gateway,
                              default_route6=att == spec.gateway6)  # fmt: skip
        except (OSError, KernelError) as exc:
            if fresh:
                self._remove_network(spec, [])
            if isinstance(exc, KernelError):
                raise
            raise KernelError(f"create network namespace for {spec.name}: {exc}") from exc
        files.write_all(spec)

    def attach(self, spec: LaunchSpec, att: Attachment) -> None:
        if self._namespace_lost(spec):  # stopped, and its namespace is gone: make it whole, this one included
            self.create(spec)
            return
        try:
            with netns.enter(_netns_path(spec)) as ns, Rtnl() as host:
                veth.plug(
                    host, ns, att, alias=spec.owner_alias, default_route=att == spec.gateway,
                    default_route6=att == spec.gateway6,
                )  # fmt: skip
        except OSError as exc:
            raise KernelError(f"attach {att.host_ifname} to {spec.name}: {exc}") from exc
        files.write_all(spec)  # in place: the running workload sees its new address in /etc/hosts

    def detach(self, spec: LaunchSpec, att: Attachment) -> None:
        """`spec` is the workload as it is after the detach. When the first network goes, the next one takes over
        the default route (and /etc/resolv.conf its gateway)."""
        try:
            with Rtnl() as host:
                host.batch(veth.unplug_plan([att]))
            if spec.attachments and not self._namespace_lost(spec):
                with netns.enter(_netns_path(spec)) as ns:  # the gateway may have moved to another network
                    gateway, gateway6 = spec.gateway, spec.gateway6
                    if gateway is not None and gateway.gateway is not None:
                        ns.rtnl.batch([default_route_add(gateway.gateway)])
                    if gateway6 is not None and gateway6.gateway6 is not None:
                        ns.rtnl.batch([default_route_add(gateway6.gateway6)])
        except OSError as exc:
            raise KernelError(f"detach {att.host_ifname} from {spec.name}: {exc}") from exc
        if spec.state_dir.is_dir():
            files.write_all(spec)

    # -- process ------------------------------------------------------------------------------------------
    def start(self, spec: LaunchSpec) -> Handle:
        self.validate(spec)
        image = self._image(spec)
        lower = images.ensure_busybox(self.image_cache) if image.builtin == images.BUSYBOX else image.rootfs
        if self._namespace_lost(spec):
            self.create(spec)
        if not _shares(spec):  # pinned by an older hyprd that made no pins' mount: moved into one now
            try:
                netns.mount_pins(_pins(spec))
            except OSError as exc:
                raise KernelError(f"mount {_pins(spec)} for the network namespace pins: {exc}") from exc
        files.write_all(spec)
        (spec.state_dir / "exit_code").unlink(missing_ok=True)
        command = _command(spec, image)
        config = oci.config(_bundle_inputs(spec, lower, command))
        key = crun.filter_key(config)
        compiled = key is not None and crun.use_cached_filter(config, self.filter_cache, key)
        bundle = crun.write_bundle(spec.state_dir, config)
        for mount in spec.confinement.mounts:
            if mount.create_source:  # Docker's -v makes a missing host directory
                try:
                    os.makedirs(mount.source, exist_ok=True)
                except OSError as exc:
                    raise KernelError(f"bind source {mount.source}: {exc}") from exc
        launch = spec.state_dir / "launch.json"
        launch.write_text(json.dumps(_launch_config(spec, bundle, lower, command)))
        report = self._launch(spec, launch)
        if "error" in report:
            cls = InvalidParameter if report.get("errno") in (errno.ENOENT, errno.EACCES) else KernelError
            raise cls(str(report["error"]))
        if key is not None and not compiled:
            crun.remember_filter(spec.state_dir, _container(spec), self.filter_cache, key)
        handle = Handle(int(report["pid"]), int(report["start_time"]), int(report["main_pid"]))
        handles.save(spec.state_dir, handle)
        return handle

    def _shim_argv(self, *args: str) -> list[str]:
        """`shim.main` with `args` (its sys.argv[1:])."""
        return [self.python, "-I", "-S", "-c", _SHIM_BOOT, str(SHIM), *args]

    def _launch(self, spec: LaunchSpec, launch: Path) -> dict[str, Any]:
        argv = self._shim_argv("run", str(launch))
        try:
            shim = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True, timeout=LAUNCH_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KernelError(f"start {spec.name}: {exc}") from exc
        try:
            report: dict[str, Any] = json.loads(shim.stdout)
        except ValueError as exc:
            detail = shim.stderr.decode(errors="replace").strip()
            raise KernelError(f"start {spec.name}: supervisor failed: {detail or shim.returncode}") from exc
        return report

    def adopt(self, spec: LaunchSpec) -> Handle | None:
        """The supervisor, if it still runs. A container that outlived its supervisor (killed on its own) has no one
        to record its exit: it is ended here, so nothing of a workload runs unowned."""
        handle = handles.adopt(spec.state_dir)
        if handle is None and crun.exists(spec.state_dir, _container(spec)):
            crun.delete(spec.state_dir, _container(spec))
        return handle

    def status(self, spec: LaunchSpec, handle: Handle) -> tuple[bool, int | None]:
        return handles.status(spec.state_dir, handle)

    def running(self, handle: Handle) -> bool:
        return handles.running(handle)

    def _send(self, spec: LaunchSpec, handle: Handle, sig: int) -> bool:
        """`crun kill`; False when the container no longer runs. A workload still under a supervisor from before
        sandboxes ran on crun (workloads outlive daemon upgrades) has no container: its command's process group
        gets the signal, as it did then."""
        if crun.exists(spec.state_dir, _container(spec)):
            return crun.kill(spec.state_dir, _container(spec), sig)
        if proc.session_of(handle.main_pid) != handle.pid:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(handle.main_pid, sig)
        return True

    def kill(self, spec: LaunchSpec, handle: Handle, signal: _signal.Signals) -> None:
        if not proc.alive(handle.pid, handle.start_time) or not self._send(spec, handle, signal):
            raise Conflict(f"Container {spec.name} is not running")

    def stop(self, spec: LaunchSpec, handle: Handle, timeout: float) -> int | None:
        """The StopSignal to the container's init (as in Docker, an init without a handler for it ignores it), then
        SIGKILL after `timeout`; the supervisor records the exit code."""
        if proc.alive(handle.pid, handle.start_time):
            self._send(spec, handle, stop_signal(spec))
            if not proc.wait_gone(handle.pid, handle.start_time, timeout):
                self._send(spec, handle, _signal.SIGKILL)
                if not proc.wait_gone(handle.pid, handle.start_time, KILL_GRACE):
                    raise KernelError(f"stop {spec.name}: supervisor {handle.pid} did not exit")
        return handles.exit_code(spec.state_dir)

    def _exec_target(
        self, spec: LaunchSpec, handle: Handle, argv: tuple[str, ...], env: Mapping[str, str], workdir: str | None,
        options: ExecOptions,
    ) -> dict[str, Any]:  # fmt: skip
        """What `shim.py exec` takes (see shim.exec_process): the workload's container and the exec's settings;
        `options.user` is resolved against the image's /etc, `options.privileged` gives every capability hyprd
        holds."""
        if not proc.alive(handle.pid, handle.start_time) or not crun.exists(spec.state_dir, _container(spec)):
            raise Conflict(f"Container {spec.name} is not running")
        if not argv:
            raise InvalidParameter("No exec command specified")
        target: dict[str, Any] = {
            "crun_root": str(crun.root_of(spec.state_dir)), "id": _container(spec),
            "bundle": str(spec.state_dir / crun.BUNDLE), "argv": list(argv), "env": dict(env), "workdir": workdir or "",
        }  # fmt: skip
        if options.user:
            image = self._image(spec)
            lower = images.ensure_busybox(self.image_cache) if image.builtin == images.BUSYBOX else image.rootfs
            creds = users.resolve_user(lower, options.user)
            target["user"] = {"uid": creds.uid, "gid": creds.gid, "additionalGids": list(creds.groups)}
        if options.privileged:
            target["capabilities"] = list(crun.available_capabilities())
        if options.console_socket:
            target["console_socket"] = options.console_socket
        return target

    def exec_argv(
        self, spec: LaunchSpec, handle: Handle, argv: tuple[str, ...], env: Mapping[str, str], workdir: str | None,
        options: ExecOptions = NO_OPTIONS,
    ) -> list[str]:  # fmt: skip
        """`crun exec` through the supervisor script's exec entry: the workload's user, capabilities and
        environment come from its bundle, with `env` over them."""
        target = self._exec_target(spec, handle, argv, env, workdir, options)
        return self._shim_argv("exec", json.dumps(target))

    def exec_process(
        self, spec: LaunchSpec, handle: Handle, argv: tuple[str, ...], env: Mapping[str, str], workdir: str | None,
        options: ExecOptions = NO_OPTIONS,
    ) -> ExecProcess:  # fmt: skip
        """`crun exec` itself, without the helper's Python start-up: the process object and crun's log are memfds
        inherited by crun (it opens them by /proc/self/fd); crun's own failure (its exit code 255 with an error
        logged) becomes Docker's 127/126 and message, as the helper makes it."""
        target = self._exec_target(spec, handle, argv, env, workdir, options)
        process = os.memfd_create("process", os.MFD_CLOEXEC)
        errors = os.memfd_create("crun-log", os.MFD_CLOEXEC)
        os.write(process, json.dumps(shim.exec_process(target)).encode())

        def failure(code: int) -> tuple[int, str] | None:
            message = shim.crun_error(f"/proc/self/fd/{errors}") if code == shim.CRUN_FAILED else ""
            if not message:
                return None
            found = shim.classify(message, argv[0])
            return (found.code, f"hypr exec: {message if 'chdir' in message else found.message}\n")

        def close() -> None:
            os.close(process)
            os.close(errors)

        return ExecProcess(shim.exec_command(crun.binary(), target, process, errors), (process, errors), failure, close)

    def log_path(self, spec: LaunchSpec) -> Path:
        """`log.json`; a workload started by a supervisor from before the streams were kept apart (workloads outlive
        daemon upgrades) still has its one raw `log`."""
        path = spec.state_dir / relay.LOG
        legacy = spec.state_dir / "log"
        return legacy if not path.exists() and legacy.exists() else path

    def attach_socket(self, spec: LaunchSpec) -> Path | None:
        return spec.state_dir / relay.ATTACH_SOCK

    def pause(self, spec: LaunchSpec, handle: Handle, *, paused: bool) -> None:
        """The cgroup freezer, through crun (Docker's pause): the processes stay, they get no CPU time."""
        if not proc.alive(handle.pid, handle.start_time) or not crun.exists(spec.state_dir, _container(spec)):
            raise Conflict(f"Container {spec.name} is not running")
        crun.freeze(spec.state_dir, _container(spec), frozen=paused)

    # -- removal ------------------------------------------------------------------------------------------
    def delete(self, spec: LaunchSpec) -> None:
        errors: list[str] = []
        container = _container(spec)
        handle = handles.adopt(spec.state_dir)
        if handle is not None:
            try:
                self._send(spec, handle, _signal.SIGKILL)
            except KernelError as exc:
                errors.append(str(exc))
            if not proc.wait_gone(handle.pid, handle.start_time, KILL_GRACE):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(handle.pid, _signal.SIGKILL)
                errors.append(f"supervisor {handle.pid} did not exit")
        try:
            crun.delete(spec.state_dir, container)  # a container left without its supervisor; its cgroup
        except KernelError as exc:
            errors.append(str(exc))
        self._remove_network(spec, errors)
        try:
            netns.unmount_pins(_pins(spec))  # with the last pin
        except OSError as exc:
            errors.append(f"unmount {_pins(spec)}: {exc}")
        handles.remove_state(spec.state_dir, errors)
        if errors:
            raise KernelError(f"delete {spec.name}: " + "; ".join(errors))

    def _remove_network(self, spec: LaunchSpec, errors: list[str]) -> None:
        """Host ends first (their peers go with them, synchronously), then the namespace pin."""
        if _shares(spec):
            return
        delete_host_links(spec.attachments, errors)
        try:
            netns.remove(_netns_path(spec))
        except OSError as exc:
            errors.append(f"remove network namespace: {exc}")
