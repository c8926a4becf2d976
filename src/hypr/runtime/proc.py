"""Processes we did not fork: liveness by (pid, start time), waiting on a pidfd until a deadline."""

from __future__ import annotations

import math
import os
import select
import time

from hypr.runtime import _libc


def alive(pid: int, start_time: int) -> bool:
    """Running, and the same process that was recorded (a recycled pid has another start time)."""
    fields = _libc.proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X") and int(fields[19]) == start_time


def session_of(pid: int) -> int | None:
    fields = _libc.proc_stat(pid)
    return None if fields is None or fields[0] in ("Z", "X") else int(fields[3])


def wait_gone(pid: int, start_time: int, timeout: float) -> bool:
    """Wait until the process has exited (zombies count as exited); False when the deadline passes first."""
    if not alive(pid, start_time):
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        if not alive(pid, start_time):  # the pid may have been reused between the check and pidfd_open
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if math.isinf(timeout):
            poller.poll()  # no deadline (docker stop -t -1)
            return True
        deadline = time.monotonic() + timeout
        while not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            if time.monotonic() >= deadline:
                return False
        return True
    finally:
        os.close(fd)


def start_time_in_session(pid: int, session: int) -> int | None:
    """The start time of `pid` if it is alive and still in `session` (so it is the process we started)."""
    fields = _libc.proc_stat(pid)
    if fields is None or fields[0] in ("Z", "X") or int(fields[3]) != session:
        return None
    return int(fields[19])
