"""One endpoint of a VM: a persistent TAP on the bridge, which QEMU opens by name at boot.

The TAP is made with the tun ioctls (netlink cannot make one) in the caller's network namespace, then enslaved and
configured in one netlink batch: master + MTU, then alias, hairpin, no IPv6 address generation, up. It persists
across VM restarts (stop/start keeps the same port) until `rtnl.delete_host_links` deletes it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from hypr.errors import KernelError
from hypr.runtime import rtnl
from hypr.runtime.base import Attachment
from hypr.runtime.rtnl import Request, Rtnl

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000


def make_tap(name: str) -> None:
    """A persistent TAP named `name`; one that exists already (and is not in use) is kept."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)


def enslave(name: str, *, master: int, mtu: int) -> Request:
    body = rtnl.ifinfo() + rtnl.attr(rtnl.IFLA_IFNAME, name.encode() + b"\0")
    body += rtnl.attr(rtnl.IFLA_MASTER, struct.pack("=I", master)) + rtnl.attr(rtnl.IFLA_MTU, struct.pack("=I", mtu))
    return Request(f"attach {name} to its bridge", rtnl.RTM_NEWLINK, 0, body)


def port_plan(att: Attachment, *, bridge_index: int, alias: str) -> list[Request]:
    # Hairpin lets a VM reach its own published ports through the host's DNAT.
    return [
        enslave(att.host_ifname, master=bridge_index, mtu=att.mtu),
        rtnl.bridge_port_set(att.host_ifname, alias=alias, hairpin=True),
    ]


def plug(host: Rtnl, att: Attachment, *, alias: str) -> None:
    """Idempotent: makes the TAP when missing, then (re)applies the port settings."""
    try:
        bridge_index = host.link_index(att.bridge)
        if bridge_index is None:
            raise KernelError(f"attach {att.host_ifname}: bridge {att.bridge} does not exist")
        if host.link_index(att.host_ifname) is None:
            make_tap(att.host_ifname)
        host.batch(port_plan(att, bridge_index=bridge_index, alias=alias))
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise KernelError(f"attach {att.host_ifname}: the TAP is in use by another process") from exc
        raise KernelError(f"attach {att.host_ifname} to {att.bridge}: {exc}") from exc
