"""Persistent network namespaces made in-process: no `ip netns` fork, no pyroute2 netns helper (which fork).

A worker thread unshares its own network namespace (CLONE_NEWNET affects only the calling thread), bind-mounts
/proc/thread-self/ns/net onto a file so the namespace outlives the thread, and opens a netlink socket there. The
socket stays in that namespace for its whole life, so the caller keeps using it from its own thread.
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

from hypr.runtime import _libc
from hypr.runtime.rtnl import Rtnl

T = TypeVar("T")


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
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
    _libc.mount(source, str(path), None, _libc.MS_BIND)


def remove(path: Path) -> None:
    """Unpin and delete; the namespace dies with its last user. Not mounted / not there counts as done."""
    try:
        _libc.umount2(str(path), _libc.MNT_DETACH)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
