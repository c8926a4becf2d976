"""The vm runtime runs images from a read-only disk: pulled-image specs (rootfs + image ID + user), rootfs directories,
the disk cache, and a 200 MB image in a 256 MB VM (root only; real QEMU microVMs, slow under TCG: few boots).

Each test gets its own host netns `hyprimg-<pid>-<n>` with a bridge and runs with the test thread switched into it,
as tests/integration/test_vm_runtime.py does; everything (VMs, TAPs, namespace, files) is removed in `finally`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hypr.runtime import _libc, proc, vm_disk
from hypr.runtime.base import Attachment, Handle, LaunchSpec
from hypr.runtime.vm import VmRuntime, disk_cache
from tests.integration.harness import vm_marks

pytestmark = vm_marks()

_counter = itertools.count()
ALIAS = "hypr:test"
BOOT = 120.0  # seconds a guest may take: TCG on a shared 2-core machine, maybe next to another boot
BUSYBOX = Path("/bin/busybox")
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nextra:x:2000:app\nother:x:3000:root\n"


def make_image(root: Path) -> Path:
    """A small image tree: busybox-static with its applets, /etc/passwd with user app (1000:1000, also in group
    extra 2000), an app-owned home and working directory, a marker only the image has."""
    for d in ("bin", "etc", "root", "tmp", "home/app", "srv/app"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "etc" / "hosts").symlink_to("/nonexistent/hosts")  # ours replaces it, the link is not followed
    (root / "image-marker").write_text("from the image\n")
    (root / "srv" / "app" / "data").write_text("original\n")
    (root / "notes").write_text("not executable\n")
    os.chmod(root / "tmp", 0o1777)
    for path in (root / "home" / "app", root / "srv" / "app", root / "srv" / "app" / "data"):
        os.chown(path, 1000, 1000)
    return root


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Host:
    name: str
    vm: VmRuntime
    root: Path
    specs: list[LaunchSpec] = field(default_factory=list)

    def spec(self, name: str, n: int, command: tuple[str, ...], **kw: object) -> LaunchSpec:
        att = Attachment(
            host_ifname=f"hi{name[:8]}{n}",
            bridge="vbr0",
            guest_ifname="eth0",
            ip=IPv4Address(f"10.94.0.{n}"),
            prefixlen=24,
            gateway=IPv4Address("10.94.0.1"),
            mac=f"02:42:0a:5e:00:{n:02x}",
        )
        values: dict[str, object] = dict(
            workload_id=f"{name}-id",
            name=name,
            hostname=name,
            image="busybox",
            command=command,
            env={},
            attachments=(att,),
            nameserver=att.gateway,
            state_dir=self.root / "run" / name,
            owner_alias=ALIAS,
            memory_mb=128,
            data_dir=self.root / "data",
        )
        values.update(kw)
        spec = LaunchSpec(**values)  # type: ignore[arg-type]
        self.specs.append(spec)
        return spec

    def start(self, spec: LaunchSpec) -> Handle:
        self.vm.create(spec)
        return self.vm.start(spec)

    def exec(
        self,
        spec: LaunchSpec,
        handle: Handle,
        *argv: str,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = self.vm.exec_argv(spec, handle, argv, env or {}, workdir)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=BOOT + 30)

    def finish(self, spec: LaunchSpec, handle: Handle) -> int | None:
        """Wait for the workload to end (the VM powers off); its exit code."""
        assert proc.wait_gone(handle.pid, handle.start_time, BOOT), self.vm.console_path(spec).read_text()
        return self.vm.status(spec, handle)[1]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    name = f"hyprimg-{os.getpid()}-{next(_counter)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    h = Host(name, VmRuntime(image_cache=tmp_path / "images"), tmp_path)
    try:
        batch = "link add vbr0 type bridge\naddr add 10.94.0.1/24 dev vbr0\nlink set vbr0 up\nlink set lo up\n"
        subprocess.run(["ip", "-n", name, "-batch", "-"], input=batch, text=True, check=True)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _libc.setns(target, _libc.CLONE_NEWNET)
        finally:
            os.close(target)
        yield h
    finally:
        try:
            for spec in h.specs:
                h.vm.delete(spec)
        finally:
            _libc.setns(back, _libc.CLONE_NEWNET)
            os.close(back)
            subprocess.run(["ip", "netns", "delete", name], check=False)


def test_pulled_image_user_workdir_env_overlay_exec_and_one_disk(host: Host) -> None:
    rootfs = make_image(host.root / "images" / "rootfs" / "ab12")
    image_id = "sha256:" + hashlib.sha256(b"test image config").hexdigest()
    pulled = dict(image="example.test/app:1", rootfs=rootfs, image_id=image_id)
    env = {"PATH": "/bin", "GREETING": "hi 'there'", "MULTI": "a\nb", "app.mode": "dotted"}  # merged by services
    script = (
        'id; pwd; echo "$GREETING|$HOME|$HOSTNAME";'
        " echo changed > /srv/app/data; echo new > /home/app/new; echo tmp > /tmp/t;"
        " touch /forbidden 2>/dev/null || echo read-only-root-for-app;"
        " echo via /dev/stdout > /dev/stdout; echo via /dev/stderr > /dev/stderr;"  # as nginx's logs: reopened
        " exec sleep 3600"
    )
    app = host.spec(
        "app", 2, ("sh", "-c", script), user="app", workdir="/srv/app", env=env, stop_signal="QUIT", **pulled
    )
    handle = host.start(app)
    disk = vm_disk.disk_path(disk_cache(host.vm.image_cache), image_id.removeprefix("sha256:"))
    built = disk.stat()
    disk_hash = sha256_file(disk)

    # exec: in the image's root, as the workload's user, in its working directory, with its environment
    assert host.exec(app, handle, "cat", "/image-marker").stdout == "from the image\n"
    ident = host.exec(app, handle, "id").stdout
    assert ident.startswith("uid=1000(app) gid=1000(app) groups=") and "2000(extra)" in ident
    assert "3000" not in ident
    assert host.exec(app, handle, "pwd").stdout == "/srv/app\n"
    assert not host.exec(app, handle, "ls", "/.hypr").stdout  # the initramfs is not the workload's root
    log = host.vm.log_path(app).read_text()
    lines = log.splitlines()
    assert lines[0].startswith("uid=1000(app) gid=1000(app)") and "2000(extra)" in lines[0], log
    assert lines[1:3] == ["/srv/app", "hi 'there'|/home/app|app"], log
    assert lines[3:6] == ["read-only-root-for-app", "via /dev/stdout", "via /dev/stderr"], log
    # exactly the workload's environment: nothing of the guest init's leaks in
    assert host.exec(app, handle, "env").stdout.splitlines() == [
        "PATH=/bin",
        "HOSTNAME=app",
        "HOME=/home/app",
        "GREETING=hi 'there'",
        "MULTI=a",
        "b",
        "app.mode=dotted",
    ]
    both = host.exec(app, handle, "sh", "-c", 'echo "$GREETING|$X|$(pwd)"', env={"X": "y z"}, workdir="/tmp")
    assert both.stdout == "hi 'there'|y z|/tmp\n", both.stderr

    # writes land in the overlay: visible to exec, the disk unchanged
    assert host.exec(app, handle, "cat", "/srv/app/data", "/home/app/new", "/tmp/t").stdout == "changed\nnew\ntmp\n"
    assert (rootfs / "srv" / "app" / "data").read_text() == "original\n"
    assert not (rootfs / "home" / "app" / "new").exists()

    # Docker's exit codes for what cannot run
    missing = host.exec(app, handle, "no-such-command")
    assert missing.returncode == 127 and 'exec: "no-such-command": executable file not found in $PATH' in missing.stderr
    assert host.exec(app, handle, "/bin/no-such").returncode == 127
    assert host.exec(app, handle, "/notes").returncode == 126
    assert host.exec(app, handle, "pwd", workdir="/no/such/dir").returncode == 126
    assert host.exec(app, handle, "sh", "-c", "exit 42").returncode == 42
    # default signal dispositions (a shell's `&` would have left SIGINT and SIGQUIT ignored)
    assert host.exec(app, handle, "sh", "-c", "kill -INT $$; echo survived").returncode == 130
    reopened = host.exec(app, handle, "sh", "-c", "echo out > /dev/stdout; echo err > /dev/stderr")
    assert (reopened.stdout, reopened.stderr) == ("out\n", "err\n")

    # our /etc files replace the image's (the image's /etc/hosts is a dangling symlink)
    assert "10.94.0.2\tapp" in host.exec(app, handle, "cat", "/etc/hosts").stdout
    assert host.exec(app, handle, "cat", "/etc/hostname").stdout == "app\n"
    assert "nameserver 10.94.0.1" in host.exec(app, handle, "cat", "/etc/resolv.conf").stdout

    # a second VM of the same image, as root: the disk is not built again; its writes stay its own
    script2 = "id -u; cat /srv/app/data /proc/sys/kernel/domainname; echo root > /etc/motd; rm /image-marker; ls /"
    second = host.spec("second", 3, ("sh", "-c", script2), domainname="example.test", **pulled)
    handle2 = host.start(second)
    again = disk.stat()
    assert (again.st_ino, again.st_mtime_ns) == (built.st_ino, built.st_mtime_ns)
    assert host.finish(second, handle2) == 0
    out = host.vm.log_path(second).read_text().splitlines()
    assert out[:3] == ["0", "original", "example.test"], out
    assert "image-marker" not in out and "etc" in out
    assert host.exec(app, handle, "cat", "/image-marker").stdout == "from the image\n"
    assert sorted(p.name for p in disk.parent.iterdir()) == [disk.name]  # no lock or temporary files left
    assert sha256_file(disk) == disk_hash

    # stop sends the image's StopSignal (here SIGQUIT: 128 + 3)
    assert host.vm.stop(app, handle, timeout=30) == 131
    assert not proc.alive(handle.pid, handle.start_time)


def test_missing_command_in_the_image_exits_127(host: Host) -> None:
    rootfs = make_image(host.root / "tree")
    spec = host.spec("nocmd", 4, ("no-such-program", "arg"), image=str(rootfs))
    handle = host.start(spec)
    assert host.finish(spec, handle) == 127
    assert 'exec: "no-such-program": executable file not found in $PATH' in host.vm.log_path(spec).read_text()
    # a rootfs directory is keyed by its contents: the same tree, the same disk; a change, a new one (the old pruned)
    disks = disk_cache(host.vm.image_cache)
    first = sorted(p.name for p in disks.glob("*.erofs"))
    assert len(first) == 1 and first[0].startswith("dir-")
    (rootfs / "added").write_text("x")
    host.vm.disk(spec)
    second = sorted(p.name for p in disks.glob("*.erofs"))
    assert len(second) == 1 and second != first


def test_200mb_image_boots_in_256mb(host: Host) -> None:
    rootfs = make_image(host.root / "big")
    big = rootfs / "big.bin"
    with open(big, "wb") as f:
        for _ in range(200):
            f.write(os.urandom(1 << 20))
    want = sha256_file(big)
    spec = host.spec("big", 5, ("sha256sum", "/big.bin"), image=str(rootfs), memory_mb=256)
    handle = host.start(spec)
    assert host.finish(spec, handle) == 0, host.vm.log_path(spec).read_text()
    assert host.vm.log_path(spec).read_text() == f"{want}  /big.bin\n"
    initrd = spec.state_dir / "initrd"
    assert initrd.stat().st_size < 16 << 20  # busybox, init, modules: the image is not in guest RAM


def test_disk_keeps_owners_modes_links_devices_xattrs(tmp_path: Path) -> None:
    """What mkfs.erofs puts on the disk, read back through the host kernel (loop mount)."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("hello\n")
    os.chown(src / "d" / "f", 1000, 1001)
    os.chmod(src / "d" / "f", 0o4751)
    os.link(src / "d" / "f", src / "hard")
    (src / "sym").symlink_to("d/f")
    os.mknod(src / "null", stat.S_IFCHR | 0o620, os.makedev(1, 3))
    os.chmod(src / "null", 0o620)  # past the umask
    os.mkfifo(src / "fifo")
    os.setxattr(src / "d" / "f", "user.note", b"kept")
    os.setxattr(src / "d", "trusted.overlay.opaque", b"y")
    os.chmod(src / "d", 0o710)
    os.utime(src / "d" / "f", ns=(1_000_000_000, 1_234_567_890_123_456_789))
    disk = vm_disk.ensure_disk(src, "test", tmp_path / "disks")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "erofs", "-o", "ro,loop", str(disk), str(mnt)], check=True)
    try:
        f = os.lstat(mnt / "d" / "f")
        assert (f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode), f.st_nlink) == (1000, 1001, 0o4751, 2)
        assert f.st_mtime_ns == 1_234_567_890_123_456_789
        assert os.lstat(mnt / "hard").st_ino == f.st_ino
        assert os.readlink(mnt / "sym") == "d/f"
        null = os.lstat(mnt / "null")
        assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3) and stat.S_IMODE(null.st_mode) == 0o620
        assert stat.S_ISFIFO(os.lstat(mnt / "fifo").st_mode)
        assert os.getxattr(mnt / "d" / "f", "user.note") == b"kept"
        assert os.getxattr(mnt / "d", "trusted.overlay.opaque") == b"y"
        assert stat.S_IMODE(os.lstat(mnt / "d").st_mode) == 0o710
        assert (mnt / "d" / "f").read_text() == "hello\n"
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
