"""The `vm` backend: a QEMU microvm per workload, one persistent TAP per attachment on its bridge, the guest init
(runtime/guest/init) as PID 1 in a small image-independent initramfs (vm_initramfs.py), and the image as a read-only
disk (vm_disk.py, built once per image) that the guest mounts under a tmpfs overlay and chroots the workload into.

QEMU daemonizes itself (`-daemonize`, own session): it is the workload's supervisor, outlives hyprd, and is
re-adopted from handle.json by (pid, start time). QEMU runs with the state directory as working directory.

Images: a pulled image (`spec.rootfs`, keyed by `spec.image_id`), `busybox` (built once under the image cache) or an
absolute path to a root filesystem directory (keyed by its path and contents). Disks live under
<image cache>/vm/disks, base initramfs archives under <image cache>/vm.

State directory layout:
    initrd        cached base initramfs + this workload's /.hypr/config.sh (rewritten at every start)
    qemu.pid      written by QEMU;  handle.json  the running QEMU, for adopt()
    log           the workload's stdout+stderr (virtio-serial port, appended);  console.log  the guest console
    exit_code     the workload's exit code (virtio-serial port, written by the guest init when the command ends)
    agent.sock    exec channel (vmexec.py);  ctl.sock  signals for the workload ("S <signal number>")
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal as _signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypr.errors import Conflict, InvalidParameter, KernelError
from hypr.runtime import _libc, handles, images, proc, relay, users, vm_disk, vm_initramfs, vm_kernel, vm_tap
from hypr.runtime.base import NO_OPTIONS, Attachment, ExecOptions, ExecProcess, Handle, LaunchSpec
from hypr.runtime.rtnl import Rtnl, delete_host_links
from hypr.runtime.sandbox import stop_signal

VMEXEC = Path(__file__).with_name("vmexec.py")
HOSTNAME_MAX = 64
MIN_MEMORY_MB = 64
LAUNCH_TIMEOUT = 30.0
KILL_GRACE = 5.0
EXIT_KILLED = 137
_ENV_NAME = re.compile(r"[^=\0]+\Z")  # what `env -i NAME=VALUE` can set: any name without "="


QMP_TIMEOUT = 5.0  # seconds for QEMU's monitor to answer


def qmp(state_dir: Path, command: str) -> None:
    """One QMP command on the VM's monitor socket: the greeting, capabilities negotiation, then `command`; its
    reply must be a `return` (events QEMU sends meanwhile are skipped). Connected through the directory's fd: state
    directories can exceed the 108-byte socket path limit."""
    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(QMP_TIMEOUT)
            try:
                sock.connect(f"/proc/self/fd/{fd}/{vm_kernel.QMP_SOCK}")
            except (ConnectionRefusedError, FileNotFoundError) as exc:
                raise FileNotFoundError(str(exc)) from exc
            lines = sock.makefile("rwb")
            _qmp_reply(lines, greeting=True)
            for execute in ("qmp_capabilities", command):
                lines.write(json.dumps({"execute": execute}).encode() + b"\n")
                lines.flush()
                _qmp_reply(lines)
    finally:
        os.close(fd)


def _qmp_reply(lines: Any, *, greeting: bool = False) -> None:
    while True:
        raw = lines.readline()
        if not raw:
            raise ValueError("the monitor closed the connection")
        message = json.loads(raw)
        if "event" in message:
            continue
        if greeting and "QMP" in message:
            return
        if "error" in message:
            raise ValueError(message["error"].get("desc", message["error"]))
        if "return" in message:
            return


def disk_cache(image_cache: Path) -> Path:
    """Where VM disks of images live: <data dir>/images/vm/disks."""
    return image_cache / "vm" / "disks"


def _bad_env_names(env: Mapping[str, str]) -> list[str]:
    return [k for k in env if not _ENV_NAME.match(k)]


class VmRuntime:
    name = "vm"

    def __init__(
        self,
        *,
        image_cache: Path,
        kernel_dir: Path | None = None,
        qemu: str = vm_kernel.QEMU,
        python: str = sys.executable,
    ) -> None:
        self.image_cache = image_cache  # built-in images and built initramfs archives (under <image_cache>/vm)
        self.kernel_dir = kernel_dir  # None: $HYPR_KERNEL, <data dir>/kernel, /var/lib/hypr/kernel
        self.qemu = qemu
        self.python = python
        self._accel: tuple[str, int | None] | None = None  # probed once, on first use
        self._applet_names: tuple[str, ...] | None = None

    # -- images -------------------------------------------------------------------------------------------
    def _image(self, spec: LaunchSpec) -> images.Image | None:
        """The built-in or directory image `spec.image` names; None for a pulled image (`spec.rootfs`)."""
        if spec.rootfs is not None:
            return None
        if spec.image == images.HOST:
            raise InvalidParameter(
                "image 'host' cannot run in a VM (a VM has its own kernel and file system): use 'busybox', a pulled"
                " image or an absolute path to a root filesystem directory"
            )
        return images.resolve(spec.image, self.image_cache)

    def _command(self, spec: LaunchSpec) -> tuple[str, ...]:
        image = self._image(spec)
        return spec.command or (image.default_command if image is not None else ())

    def _rootfs(self, spec: LaunchSpec, *, build: bool) -> Path | None:
        """The image's root filesystem on the host; the built-in busybox one is built when `build` (else None
        until it exists)."""
        image = self._image(spec)
        if image is None:
            return spec.rootfs
        if image.builtin == images.BUSYBOX:
            if build:
                return images.ensure_busybox(self.image_cache)
            return image.rootfs if image.rootfs is not None and image.rootfs.is_dir() else None
        return image.rootfs

    def disk(self, spec: LaunchSpec) -> Path:
        """The image's read-only disk, built on first use (once per image, shared by its VMs)."""
        rootfs = self._rootfs(spec, build=True)
        assert rootfs is not None
        key = vm_disk.image_key(spec.image_id) if spec.rootfs is not None else vm_disk.dir_key(rootfs)
        return vm_disk.ensure_disk(rootfs, key, disk_cache(self.image_cache))

    # -- validation ---------------------------------------------------------------------------------------
    def validate(self, spec: LaunchSpec) -> None:
        image = self._image(spec)
        if image is None:
            assert spec.rootfs is not None
            vm_disk.image_key(spec.image_id)
            if not spec.rootfs.is_dir():
                raise InvalidParameter(f"image {spec.image}: its root filesystem {spec.rootfs} is missing")
        if not self._command(spec):
            raise InvalidParameter("No command specified")
        if not 0 < len(spec.hostname) <= HOSTNAME_MAX:
            raise InvalidParameter(f"invalid hostname {spec.hostname!r}: 1 to {HOSTNAME_MAX} characters")
        if spec.stdio.tty or spec.stdio.open_stdin:  # the guest's output is one virtio-serial port, no stdin
            raise InvalidParameter("Tty and OpenStdin (-t, -i) are not supported by the vm runtime; use a sandbox")
        if len(spec.attachments) > vm_kernel.MAX_ATTACHMENTS:
            raise InvalidParameter(f"a VM can be attached to at most {vm_kernel.MAX_ATTACHMENTS} networks")
        if spec.memory_mb < MIN_MEMORY_MB:
            raise InvalidParameter(f"a VM needs at least {MIN_MEMORY_MB} MB of memory, not {spec.memory_mb} MB")
        if not spec.cpus > 0:
            raise InvalidParameter(f"invalid number of CPUs {spec.cpus}")
        bad = _bad_env_names(spec.env)
        if bad:
            raise InvalidParameter(f"invalid environment variable names: {bad}")
        if spec.workdir and not spec.workdir.startswith("/"):
            raise InvalidParameter(f"the working directory {spec.workdir!r} is not an absolute path")
        rootfs = self._rootfs(spec, build=False)
        if rootfs is not None:
            users.resolve_user(rootfs, spec.user)
        if shutil.which(self.qemu) is None:
            raise InvalidParameter(f"the vm runtime needs {self.qemu} (Debian package qemu-system-x86)")
        if shutil.which(vm_disk.MKFS) is None:
            raise InvalidParameter(f"the vm runtime needs {vm_disk.MKFS} (Debian package erofs-utils)")
        self._kernel(spec)

    def _kernel(self, spec: LaunchSpec) -> vm_kernel.Kernel:
        if self.kernel_dir is not None:
            kernel = vm_kernel.load_kernel(self.kernel_dir)
            if kernel is None:
                raise InvalidParameter(f"no guest kernel in {self.kernel_dir}")
            return kernel
        return vm_kernel.find_kernel(spec.data_dir)

    def _applets(self) -> tuple[str, ...]:
        if self._applet_names is None:
            self._applet_names = vm_initramfs.busybox_applets(images.BUSYBOX_BINARY)
        return self._applet_names

    def accel(self) -> tuple[str, int | None]:
        if self._accel is None:
            self._accel = vm_kernel.probe_accel()
        return self._accel

    # -- network ------------------------------------------------------------------------------------------
    def create(self, spec: LaunchSpec) -> None:
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            with Rtnl() as host:
                for att in spec.attachments:
                    vm_tap.plug(host, att, alias=spec.owner_alias)
        except (OSError, KernelError) as exc:
            delete_host_links(spec.attachments, [])
            if isinstance(exc, KernelError):
                raise
            raise KernelError(f"create TAPs for {spec.name}: {exc}") from exc

    def attach(self, spec: LaunchSpec, att: Attachment) -> None:
        if self.adopt(spec) is not None:
            raise InvalidParameter(
                f"cannot connect running VM {spec.name} to a network: the microvm machine has no hot-plug;"
                " stop it, connect, then start it"
            )
        try:
            with Rtnl() as host:
                vm_tap.plug(host, att, alias=spec.owner_alias)
        except OSError as exc:
            raise KernelError(f"attach {att.host_ifname} to {spec.name}: {exc}") from exc

    def detach(self, spec: LaunchSpec, att: Attachment) -> None:
        if self.adopt(spec) is not None:
            raise InvalidParameter(
                f"cannot disconnect running VM {spec.name} from a network: the microvm machine has no hot-plug;"
                " stop it first"
            )
        errors: list[str] = []
        delete_host_links((att,), errors)
        if errors:
            raise KernelError(f"detach {att.host_ifname} from {spec.name}: " + "; ".join(errors))

    # -- process ------------------------------------------------------------------------------------------
    def _initramfs_inputs(self, kernel: vm_kernel.Kernel) -> vm_initramfs.Inputs:
        return vm_initramfs.Inputs(busybox=images.BUSYBOX_BINARY, applets=self._applets(), modules=kernel.modules)

    def start(self, spec: LaunchSpec) -> Handle:
        self.validate(spec)
        kernel = self._kernel(spec)
        command = self._command(spec)
        rootfs = self._rootfs(spec, build=True)
        assert rootfs is not None
        creds = users.resolve_user(rootfs, spec.user)
        disk = self.disk(spec)
        if not self._taps_present(spec):
            self.create(spec)
        base = vm_initramfs.ensure_base(self._initramfs_inputs(kernel), self.image_cache / "vm")
        state = spec.state_dir
        config = vm_initramfs.render_config(spec, command, creds)
        vm_initramfs.write_initrd(base, config, state / vm_kernel.INITRD)
        for stale in (vm_kernel.EXIT_CODE, vm_kernel.PIDFILE, vm_kernel.AGENT_SOCK, vm_kernel.CONTROL_SOCK):
            (state / stale).unlink(missing_ok=True)
        log = state / vm_kernel.LOG
        (state / relay.LOG_START).write_text(
            f"{log.stat().st_size if log.exists() else 0}\n"
        )  # attach replays from here
        accel, khz = self.accel()
        argv = vm_kernel.qemu_argv(spec, kernel, disk=disk, accel=accel, tsc_khz=khz, qemu=self.qemu)
        try:
            done = subprocess.run(
                argv, cwd=state, stdin=subprocess.DEVNULL, capture_output=True, timeout=LAUNCH_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KernelError(f"start VM {spec.name}: {exc}") from exc
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip()
            raise KernelError(f"start VM {spec.name}: qemu exited with {done.returncode}: {detail}")
        try:
            pid = int((state / vm_kernel.PIDFILE).read_text())
        except (OSError, ValueError) as exc:
            raise KernelError(f"start VM {spec.name}: no pid file from qemu: {exc}") from exc
        start_time = _libc.start_time(pid)
        if start_time is None or not proc.alive(pid, start_time):
            code = handles.exit_code(spec.state_dir)
            raise KernelError(f"start VM {spec.name}: qemu {pid} ended at once (exit code {code})")
        handle = Handle(pid, start_time, pid)
        handles.save(state, handle)
        return handle

    def _taps_present(self, spec: LaunchSpec) -> bool:
        with Rtnl() as host:
            return all(host.link_index(att.host_ifname) is not None for att in spec.attachments)

    def adopt(self, spec: LaunchSpec) -> Handle | None:
        return handles.adopt(spec.state_dir)

    def status(self, spec: LaunchSpec, handle: Handle) -> tuple[bool, int | None]:
        return handles.status(spec.state_dir, handle)

    def running(self, handle: Handle) -> bool:
        return handles.running(handle)

    def _control(self, spec: LaunchSpec, signum: int) -> bool:
        """Ask the guest init to signal the workload's process group; False when the channel is not there."""
        try:
            fd = os.open(spec.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                # Through the directory's fd: state directories can exceed the 108-byte socket path limit.
                sock.connect(f"/proc/self/fd/{fd}/{vm_kernel.CONTROL_SOCK}")
                sock.sendall(f"S {signum}\n".encode())
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def kill(self, spec: LaunchSpec, handle: Handle, signal: _signal.Signals) -> None:
        if not proc.alive(handle.pid, handle.start_time):
            raise Conflict(f"Container {spec.name} is not running")
        if not self._control(spec, int(signal)) and signal == _signal.SIGKILL:
            self._kill_qemu(spec, handle)

    def _kill_qemu(self, spec: LaunchSpec, handle: Handle) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(handle.pid, _signal.SIGKILL)
        if not proc.wait_gone(handle.pid, handle.start_time, KILL_GRACE):
            raise KernelError(f"stop VM {spec.name}: qemu {handle.pid} did not exit")
        if handles.exit_code(spec.state_dir) is None:
            with contextlib.suppress(FileNotFoundError):
                (spec.state_dir / vm_kernel.EXIT_CODE).write_text(f"{EXIT_KILLED}\n")

    def stop(self, spec: LaunchSpec, handle: Handle, timeout: float) -> int | None:
        """The image's StopSignal (SIGTERM by default) to the workload through the guest init, which powers the
        VM off when it ends; then SIGKILL to QEMU after `timeout`."""
        if proc.alive(handle.pid, handle.start_time):
            asked = self._control(spec, int(stop_signal(spec)))
            if not asked or not proc.wait_gone(handle.pid, handle.start_time, timeout):
                self._kill_qemu(spec, handle)
        return handles.exit_code(spec.state_dir)

    def exec_argv(
        self, spec: LaunchSpec, handle: Handle, argv: tuple[str, ...], env: Mapping[str, str], workdir: str | None,
        options: ExecOptions = NO_OPTIONS,
    ) -> list[str]:  # fmt: skip
        """Over the guest agent (vmexec.py): the output comes when the command has ended, without stdin."""
        for name, given in (
            ("Tty", options.console_socket),
            ("User", options.user),
            ("Privileged", options.privileged),
        ):
            if given:
                raise InvalidParameter(f"exec with {name} is not supported by the vm runtime (the guest agent runs "
                                       "commands as the workload's user, without a terminal)")  # fmt: skip
        if not proc.alive(handle.pid, handle.start_time):
            raise Conflict(f"Container {spec.name} is not running")
        if not argv:
            raise InvalidParameter("No exec command specified")
        bad = _bad_env_names(env)
        if bad:
            raise InvalidParameter(f"invalid environment variable names: {bad}")
        target = {"argv": list(argv), "env": dict(env), "workdir": workdir}
        return [self.python, "-I", "-S", str(VMEXEC), str(spec.state_dir), json.dumps(target)]

    def exec_process(
        self, spec: LaunchSpec, handle: Handle, argv: tuple[str, ...], env: Mapping[str, str], workdir: str | None,
        options: ExecOptions = NO_OPTIONS,
    ) -> ExecProcess:  # fmt: skip
        return ExecProcess(self.exec_argv(spec, handle, argv, env, workdir, options))

    def log_path(self, spec: LaunchSpec) -> Path:
        return spec.state_dir / vm_kernel.LOG

    def attach_socket(self, spec: LaunchSpec) -> Path | None:
        return None

    def pause(self, spec: LaunchSpec, handle: Handle, *, paused: bool) -> None:
        """QEMU's `stop` / `cont` over its monitor (QMP): the vCPUs halt, memory and devices stay (Docker's pause)."""
        if not proc.alive(handle.pid, handle.start_time):
            raise Conflict(f"Container {spec.name} is not running")
        try:
            qmp(spec.state_dir, "stop" if paused else "cont")
        except FileNotFoundError:
            raise InvalidParameter(
                f"{spec.name} was started without a QEMU monitor (before hypr had pause for VMs): restart it first"
            ) from None
        except (OSError, ValueError) as exc:
            raise KernelError(f"{'pause' if paused else 'unpause'} VM {spec.name}: QMP: {exc}") from exc

    def console_path(self, spec: LaunchSpec) -> Path:
        return spec.state_dir / vm_kernel.CONSOLE

    # -- removal ------------------------------------------------------------------------------------------
    def _running_qemu(self, spec: LaunchSpec) -> Handle | None:
        """The workload's QEMU: from handle.json, or else from QEMU's own pid file when a start failed after QEMU
        had daemonized (a timeout under load), checked against its command line so a reused pid is never hit."""
        handle = self.adopt(spec)
        if handle is not None:
            return handle
        try:
            pid = int((spec.state_dir / vm_kernel.PIDFILE).read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        start_time = _libc.start_time(pid)
        if start_time is None or vm_kernel.process_name(spec).encode() not in cmdline:
            return None
        return Handle(pid, start_time, pid)

    def delete(self, spec: LaunchSpec) -> None:
        errors: list[str] = []
        handle = self._running_qemu(spec)
        if handle is not None:
            try:
                self._kill_qemu(spec, handle)
            except KernelError as exc:
                errors.append(str(exc))
        delete_host_links(spec.attachments, errors)
        handles.remove_state(spec.state_dir, errors)
        if errors:
            raise KernelError(f"delete {spec.name}: " + "; ".join(errors))
