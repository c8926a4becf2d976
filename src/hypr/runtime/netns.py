"""Persistent network namespaces made in-process: no `ip netns` fork, no pyroute2 netns helper (which fork).

A worker thread unshares its own network namespace (CLONE_NEWNET affects only the calling thread), bind-mounts
/proc/thread-self/ns/net onto a file so the namespace outlives the thread, and opens a netlink socket there. The
socket stays in that namespace for its whole life, so the caller keeps using it from its own thread.

The pins (those bind mounts) of the sandboxes live under one directory, which is a private bind mount of itself
while any pin exists (`mount_pins`, `unmount_pins`): every supervisor inherits a copy of the whole mount table and
must let go of the other workloads' pins, and with them under one mount that is one umount whatever their number.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from hypr.runtime import _libc, shim
from hypr.runtime.rtnl import Rtnl

T = TypeVar("T")
# Pins are made and removed, and the pins' mount made or removed, one at a time: a pin made while mount_pins moves
# the others would end up beneath the new mount, out of sight and never removed.
_PINS = threading.RLock()


@dataclass
class Namespace:
    """An open namespace: a netlink socket inside it and an fd naming it (for IFLA_NET_NS_FD)."""

    rtnl: Rtnl
    fd: int

    def close(self) -> None:
        self.rtnl.close()
        os.close(self.fd)

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _in_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a fresh thread, so namespace switches never touch the caller's thread."""
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the caller below, re-raised there
            failure.append(exc)

    worker = threading.Thread(target=body, name="hypr-netns")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


def is_netns(path: Path) -> bool:
    """True when `path` is a bind mount of a network namespace (nsfs has one device for all namespaces)."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/thread-self/ns/net").st_dev
    except FileNotFoundError:
        return False


def _open(path: Path) -> Namespace:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return Namespace(Rtnl(), fd)
    except BaseException:
        os.close(fd)
        raise


def _ipv4_only() -> None:
    """Interfaces made from now on in this thread's namespace get no IPv6 (as Docker does for IPv4-only
    networks): no link-local chatter flooded across the bridge each time a workload comes up. A dual-stack
    endpoint turns it on for its own interface (veth.ipv6_sysctls).

    /proc/sys/net shows the namespace of the task that opens it, i.e. this thread's new namespace.
    """
    with open("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w") as f:
        f.write("1")


def create(path: Path) -> Namespace:
    """A new namespace pinned at `path` (an existing one is reused: create is idempotent)."""
    if is_netns(path):
        return enter(path)

    def make() -> Namespace:
        _libc.unshare(_libc.CLONE_NEWNET)
        _ipv4_only()
        with _PINS:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
            _libc.mount("/proc/thread-self/ns/net", str(path), None, _libc.MS_BIND)
        return _open(path)

    return _in_thread(make)


def enter(path: Path) -> Namespace:
    """Open the namespace pinned at `path`."""

    def join() -> Namespace:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _libc.setns(fd, _libc.CLONE_NEWNET)
        finally:
            os.close(fd)
        return _open(path)

    return _in_thread(join)


def write_sysctls(ns: Namespace, settings: list[tuple[str, str]]) -> None:
    """Write sysctls (path under /proc/sys, value) of the namespace `ns`: /proc/sys/net shows the namespace of
    the thread that opens it, so a fresh thread joins it first."""

    def write() -> None:
        _libc.setns(ns.fd, _libc.CLONE_NEWNET)
        for key, value in settings:
            with open(f"/proc/sys/{key}", "w") as f:
                f.write(value)

    if settings:
        _in_thread(write)


def pin(source: str, path: Path) -> None:
    """Pin the namespace `source` names (`/proc/<pid>/ns/net`) at `path` again: a daemon started in another mount
    namespace does not see the pins the previous one made, but a running workload still holds its namespace."""
    with _PINS:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
        _libc.mount(source, str(path), None, _libc.MS_BIND)


def remove(path: Path) -> None:
    """Unpin and delete; the namespace dies with its last user. Not mounted / not there counts as done."""
    with _PINS:
        try:
            _libc.umount2(str(path), _libc.MNT_DETACH)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _mount_id(path: Path) -> int:
    """The ID of the mount `path` is on (/proc/self/fdinfo's mnt_id)."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("mnt_id:"))
    finally:
        os.close(fd)


def own_mount(directory: Path) -> bool:
    """True when `directory` is the pins' mount: a mount of its own, of the file system its parent is on (a bind of
    itself, as `mount_pins` makes it; a file system mounted there is someone else's and never taken for it)."""
    try:
        parent = directory.parent
        return _mount_id(directory) != _mount_id(parent) and os.stat(directory).st_dev == os.stat(parent).st_dev
    except FileNotFoundError:
        return False


def mount_pins(directory: Path) -> None:
    """Make `directory` (the one holding the workloads' state dirs) a private bind mount of itself, so that the pins
    made under it are its children: a supervisor detaches them all with one umount of it (shim._detach_pins).
    Idempotent. Private: no copy of a pin propagates to another mount namespace.

    Pins made under it before (a hyprd that did not mount it, or that found it gone) are moved into it: each is
    held by a descriptor, unmounted, and bound again from the descriptor once the mount is made. A kill -9 in
    between loses only the pins of stopped workloads (a running one still holds its namespace and is pinned again
    from its process); their namespaces are made again at their next start, as after a reboot. O(mount table) once.
    """
    with _PINS:
        if not own_mount(directory) and os.stat(directory).st_dev == os.stat(directory.parent).st_dev:
            _mount_pins(directory)  # (another file system mounted there is not ours: pins are dropped one by one)


def _mount_pins(directory: Path) -> None:
    prefix = f"{os.path.realpath(directory)}/"
    held = {target: os.open(target, os.O_RDONLY | os.O_CLOEXEC)
            for target, _, fstype, _, _ in shim.mounts() if fstype == "nsfs" and target.startswith(prefix)}  # fmt: skip
    moved: list[str] = []
    try:
        for target in held:
            _libc.umount2(target, _libc.MNT_DETACH)
            moved.append(target)
        try:
            _libc.mount(str(directory), str(directory), None, _libc.MS_BIND)
            _libc.mount(None, str(directory), None, _libc.MS_PRIVATE)
        finally:  # in the new mount, or where they were if it could not be made
            for target in moved:
                pin(f"/proc/self/fd/{held[target]}", Path(target))
    finally:
        for fd in held.values():
            os.close(fd)


def unmount_pins(directory: Path) -> None:
    """Remove the pins' mount once no pin is left in it: umount without MNT_DETACH fails with EBUSY while a mount is
    below it (or a file in it is open; then it stays, harmlessly, until a later call), so the kernel counts."""
    with _PINS:
        if not own_mount(directory):
            return
        try:
            _libc.umount2(str(directory), 0)
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.EINVAL, errno.ENOENT):
                raise
