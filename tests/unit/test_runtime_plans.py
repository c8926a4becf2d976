"""Pure parts of the runtime: image resolution, rendered files, netlink message building (no root)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hypr.errors import InvalidParameter
from hypr.runtime import files, images, rtnl, veth
from hypr.runtime.base import Attachment, LaunchSpec

ATT = Attachment("hvabc0", "vbr0", "eth0", IPv4Address("192.0.2.5"), 24, IPv4Address("192.0.2.1"), "02:42:c0:00:02:05")


def spec(**kw: object) -> LaunchSpec:
    base: dict[str, object] = dict(
        workload_id="id",
        name="web",
        hostname="web",
        image="host",
        command=("true",),
        env={},
        attachments=(ATT,),
        nameserver=IPv4Address("192.0.2.1"),
        state_dir=Path("/nonexistent"),
        owner_alias="hypr:x",
    )
    base.update(kw)
    return LaunchSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("image", "rootfs", "builtin"),
    [("host", None, None), ("busybox", Path("/cache/busybox"), "busybox"), ("/", Path("/"), None)],
)
def test_resolve_supported_images(image: str, rootfs: Path | None, builtin: str | None) -> None:
    got = images.resolve(image, Path("/cache"))
    assert (got.rootfs, got.builtin) == (rootfs, builtin)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("nginx", "unsupported image 'nginx': supported images are 'host', 'busybox' or an absolute path"),
        ("/no/such/dir", "no such root filesystem directory"),
        ("relative/dir", "unsupported image"),
    ],
)
def test_resolve_rejects_with_what_is_supported(image: str, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        images.resolve(image, Path("/cache"))


def test_rootfs_path_needs_a_command() -> None:
    assert images.resolve("/", Path("/c")).default_command == ()
    assert images.resolve("busybox", Path("/c")).default_command == ("sh",)


def test_hosts_lists_every_address_and_extra_entries() -> None:
    second = Attachment(
        "hvabc1", "vbr1", "eth1", IPv4Address("198.51.100.7"), 24, IPv4Address("198.51.100.1"), "02:00:00:00:00:01"
    )
    text = files.render_hosts(spec(attachments=(ATT, second), hosts=(("db", IPv4Address("203.0.113.9")),)))
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert text.endswith("203.0.113.9\tdb\n192.0.2.5\tweb\n198.51.100.7\tweb\n")
    # Its name (written for its first address) is its hostname when none was given: one line, not two.
    text = files.render_hosts(spec(hosts=(("web", ATT.ip),)))
    assert text.endswith("ip6-allrouters\n192.0.2.5\tweb\n"), text


def test_resolv_conf() -> None:
    assert files.render_resolv(spec()) == "nameserver 192.0.2.1\noptions ndots:0\n"
    assert files.render_resolv(spec(nameserver=None)) == "options ndots:0\n"
    # The host's (or --dns-option's) ndots is kept, and nothing is added; other options follow ndots:0 otherwise.
    mine = spec(search=("corp.test",), dns_options=("timeout:1", "ndots:2"))
    assert files.render_resolv(mine) == "nameserver 192.0.2.1\nsearch corp.test\noptions timeout:1 ndots:2\n"
    assert files.render_resolv(spec(dns_options=("edns0",))).endswith("options ndots:0 edns0\n")


def test_guest_plan_routes_only_for_the_first_network() -> None:
    assert [r.type for r in veth.guest_plan(ATT, index=2, default_route=True)][-1] == rtnl.RTM_NEWROUTE
    assert rtnl.RTM_NEWROUTE not in [r.type for r in veth.guest_plan(ATT, index=2, default_route=False)]


def test_attributes_are_padded_to_four_bytes() -> None:
    encoded = rtnl.attr(rtnl.IFLA_IFNAME, b"eth0\0")
    assert len(encoded) == 12 and struct.unpack_from("=HH", encoded) == (9, rtnl.IFLA_IFNAME)


def test_removals_count_already_gone_as_success() -> None:
    (req,) = veth.unplug_plan([ATT])
    assert req.type == rtnl.RTM_DELLINK and 19 in req.ok  # ENODEV
