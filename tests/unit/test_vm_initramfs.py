"""The VM initramfs: reproducible newc archives, the cache key, the per-workload config the guest init sources."""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hypr.runtime import vm_initramfs as vi
from hypr.runtime.base import Attachment, LaunchSpec
from hypr.runtime.users import Credentials

BUSYBOX = Path("/bin/busybox")
ATT = Attachment("htabc", "vbr0", "eth0", IPv4Address("192.0.2.5"), 24, IPv4Address("192.0.2.1"), "02:42:C0:00:02:05")
ATT1 = Attachment(
    "htdef", "vbr1", "eth1", IPv4Address("198.51.100.7"), 25, IPv4Address("198.51.100.1"), "02:42:00:00:00:07", 1400
)


def parse_cpio(data: bytes) -> list[dict[str, object]]:
    """A minimal newc reader for checking what we wrote."""
    out: list[dict[str, object]] = []
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, size = f[11], f[6]
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        body = data[pos : pos + size]
        pos += size + (-size % 4)
        if name == "TRAILER!!!":
            return out
        out.append({"name": name, "mode": f[1], "uid": f[2], "mtime": f[5], "rdev": (f[9], f[10]), "body": body})


def inputs(tmp_path: Path) -> vi.Inputs:
    modules = []
    for name in ("virtio_ring", "virtio_net", "erofs"):
        module = tmp_path / "mods" / f"{name}.ko"
        module.parent.mkdir(exist_ok=True)
        module.write_bytes(name.encode() * 3)
        modules.append(module)
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF fake busybox")
    return vi.Inputs(busybox, ("ls", "sh"), tuple(modules))


def test_archive_is_reproducible_sorted_and_image_independent(tmp_path: Path) -> None:
    first = vi.write_cpio(vi.base_entries(inputs(tmp_path)))
    os.utime(tmp_path / "busybox", (1, 1))  # mtimes never reach the archive
    second = vi.write_cpio(vi.base_entries(inputs(tmp_path)))
    assert first == second and len(first) % 512 == 0
    members = {m["name"]: m for m in parse_cpio(first)}
    names = [m["name"] for m in parse_cpio(first)]
    assert names == sorted(names)
    assert all(m["mtime"] == 0 and m["uid"] == 0 for m in members.values())
    assert members["init"]["body"] == vi.INIT.read_bytes() and members["init"]["mode"] == stat.S_IFREG | 0o755
    assert members["dev/console"]["rdev"] == (5, 1)
    assert members[".hypr/busybox"]["body"] == b"\x7fELF fake busybox"
    assert members[".hypr/bin/sh"]["body"] == b"/.hypr/busybox"  # symlink target
    assert members[".hypr/modules/virtio_net.ko"]["body"] == b"virtio_net" * 3
    # the guest init loads the modules in the order given (vm_kernel.MODULE_PATHS)
    assert members[vi.MODULE_ORDER]["body"] == b"virtio_ring\nvirtio_net\nerofs\n"
    # nothing of an image: the image is a disk (vm_disk); only our skeleton and /.hypr
    assert {n.split("/")[0] for n in members} == {".hypr", "dev", "etc", "init", "proc", "root", "run", "sys", "tmp"}
    assert not any(n.startswith(("bin", "usr")) for n in members)


def test_cache_key_follows_every_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = inputs(tmp_path)
    key = vi.cache_key(base)
    assert vi.cache_key(base) == key
    os.utime(base.modules[0], ns=(1, 1))
    assert vi.cache_key(base) != key
    key = vi.cache_key(base)
    assert vi.cache_key(replace(base, applets=("ls",))) != key
    init = tmp_path / "init"
    init.write_text("#!/bin/sh\n")
    monkeypatch.setattr(vi, "INIT", init)
    assert vi.cache_key(base) != key
    built = vi.ensure_base(base, tmp_path / "cache")
    assert vi.ensure_base(base, tmp_path / "cache") == built and built.name.startswith("initramfs-")
    os.utime(base.busybox, ns=(1, 1))
    rebuilt = vi.ensure_base(base, tmp_path / "cache")
    assert rebuilt != built and not built.exists()  # earlier inputs' archives go


def spec(**kw: object) -> LaunchSpec:
    values: dict[str, object] = dict(
        workload_id="id",
        name="web",
        hostname="web",
        image="busybox",
        command=("httpd", "-f"),
        env={},
        attachments=(ATT, ATT1),
        nameserver=IPv4Address("192.0.2.1"),
        state_dir=Path("/nonexistent"),
        owner_alias="hypr:x",
    )
    values.update(kw)
    return LaunchSpec(**values)  # type: ignore[arg-type]


@pytest.mark.skipif(not BUSYBOX.exists(), reason="needs busybox-static")
def test_config_survives_the_guest_shell(tmp_path: Path) -> None:
    """What the guest init does with config.sh, done by the same busybox sh on the host."""
    command = ("sh", "-c", "echo \"$1\" 'it''s'", "x y", "$HOME", "")
    env = {"QUOTED": "a 'b' \"c\" $d `e`\nline2", "PATH": "/custom"}
    creds = Credentials(1000, 1001, (20, 2000), "/home/app")
    config = vi.render_config(spec(command=command, env=env, workdir="/srv"), command, creds)
    (tmp_path / "config.sh").write_text(config)
    probe = (
        '. ./config.sh; eval "set -- $HYPR_ARGV"; printf "<%s>" "$@"; echo; eval "set -- $HYPR_ENV";'
        ' printf "[%s]" "$@"; echo; printf "%s|" "$HYPR_WORKDIR" "$HYPR_GATEWAY" "$HYPR_UID" "$HYPR_GID" "$HYPR_GROUPS";'
        ' echo; printf "%s" "$HYPR_NETS"'
    )
    out = subprocess.run([str(BUSYBOX), "sh", "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    argv_line, env_line, env_line2, values, *nets = out.stdout.split("\n")
    assert argv_line == "".join(f"<{a}>" for a in command)
    # the whole environment as K=V words, later ones winning: our defaults, then the image's/user's
    assert env_line + "\n" + env_line2 == (
        "[PATH=/custom][HOSTNAME=web][HOME=/home/app][QUOTED=a 'b' \"c\" $d `e`\nline2]"
    )
    assert values == "/srv|192.0.2.1|1000|1001|20 2000|"
    assert nets[0:2] == [
        "02:42:c0:00:02:05|eth0|192.0.2.5|24|192.0.2.1|1500||",
        "02:42:00:00:00:07|eth1|198.51.100.7|25|198.51.100.1|1400||",
    ]
    assert "nameserver 192.0.2.1" in config and "192.0.2.5\tweb" in config


def test_config_defaults_root_home_and_docker_path() -> None:
    config = vi.render_config(spec(env={"HOME": "/data"}), ("true",))
    assert "HYPR_UID=0\nHYPR_GID=0\nHYPR_GROUPS=''\n" in config
    assert f"PATH={vi.GUEST_PATH}" in config and "HOME=/data" in config and "HOME=/root" not in config
    assert "HYPR_WORKDIR=/\n" in config and "HYPR_DOMAINNAME=''\n" in config
    assert "HYPR_DOMAINNAME=example.test\n" in vi.render_config(spec(domainname="example.test"), ("true",))


def test_per_workload_archive_is_appended_to_the_base(tmp_path: Path) -> None:
    base = tmp_path / "base.cpio"
    base.write_bytes(vi.write_cpio([vi.Entry("a", stat.S_IFREG | 0o644, data=b"x")]))
    vi.write_initrd(base, "HYPR_NETS=''\n", tmp_path / "initrd")
    data = (tmp_path / "initrd").read_bytes()
    assert data.startswith(base.read_bytes())
    tail = parse_cpio(data[len(base.read_bytes()) :])
    assert [(m["name"], m["body"]) for m in tail] == [(".hypr/config.sh", b"HYPR_NETS=''\n")]


def test_config_carries_ipv6_addresses_and_the_ipv6_gateway() -> None:
    import dataclasses
    from ipaddress import IPv6Address

    dual = dataclasses.replace(
        ATT1, ip6=IPv6Address("2001:db8:1::7"), prefixlen6=64, gateway6=IPv6Address("2001:db8:1::1")
    )
    config = vi.render_config(spec(attachments=(ATT, dual)), ("true",))
    assert "02:42:00:00:00:07|eth1|198.51.100.7|25|198.51.100.1|1400|2001:db8:1::7|64\n" in config
    assert "HYPR_GATEWAY6=2001:db8:1::1\n" in config
    assert "HYPR_GATEWAY6=''\n" in vi.render_config(spec(), ("true",))


def test_an_internal_network_never_carries_the_default_route() -> None:
    """Docker's bridge driver gives an internal network no gateway: a VM only on internal networks gets no default
    route (and no IPv6 one), and an internal attachment ahead of others is passed over."""
    from ipaddress import IPv6Address

    inside = replace(ATT, internal=True, ip6=IPv6Address("fd00:1::5"), gateway6=IPv6Address("fd00:1::1"))
    alone = vi.render_config(spec(attachments=(inside,)), ("true",))
    assert "HYPR_GATEWAY=''\n" in alone and "HYPR_GATEWAY6=''\n" in alone
    both = spec(attachments=(inside, ATT1))
    assert both.gateway == ATT1 and both.gateway6 is None
    assert "HYPR_GATEWAY=198.51.100.1\n" in vi.render_config(both, ("true",))
