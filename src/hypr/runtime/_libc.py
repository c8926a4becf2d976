"""The few libc calls Python 3.11 lacks (setns, unshare, mount, umount2, pivot_root, mount_setattr, prctl), through
ctypes.

Stdlib only: the shim imports this module too, and it must start fast without the hypr package.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_LIBC = ctypes.CDLL(None, use_errno=True)
_SYS_PIVOT_ROOT = 155  # x86_64; glibc has no wrapper
_SYS_MOUNT_SETATTR = 442  # x86_64 (and every architecture's new-syscall table); glibc 2.36 has no wrapper


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int) -> None:
    _check(_LIBC.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_LIBC.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else os.fsencode(s)

    _check(_LIBC.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def umount2(target: str, flags: int) -> None:
    _check(_LIBC.umount2(os.fsencode(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_LIBC.syscall(_SYS_PIVOT_ROOT, os.fsencode(new_root), os.fsencode(put_old)), "pivot_root")


def mount_setattr_rdonly(target: str) -> None:
    """Make the mount at `target` and every mount below it read-only (Linux 5.12; `mount -o ro,remount` only changes
    the top one)."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    result = _LIBC.syscall(
        _SYS_MOUNT_SETATTR, -100, os.fsencode(target), AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)
    )
    _check(result, f"mount_setattr {target}")


def set_parent_death_signal(signum: int) -> None:
    """The kernel sends `signum` to this process when the thread that forked it ends."""
    _check(_LIBC.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def set_child_subreaper() -> None:
    """Orphaned descendants are re-parented to this process (so it can wait for a container's init)."""
    _check(_LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from field 3 (state) on, or None when the process is gone.

    The command name (field 2) may hold spaces and parentheses, so split after the last ')'.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(b")") + 2 :].decode().split()


def start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot (field 22): with the pid, it names one process for good."""
    fields = proc_stat(pid)
    return None if fields is None else int(fields[19])
