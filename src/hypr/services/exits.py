"""Which running workloads' processes have ended, for the refresher: one poll(2) over a pidfd per process.

Reading /proc/<pid>/stat of every running workload twice a second made the refresher's look grow with them (~25 ms
per look at 1000 workloads, on the worker every operation queues on). A pidfd (Linux >= 5.3) becomes readable when
its process ends, so one poll of all of them names the few that did; each is then asked the runtime as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
from collections.abc import Mapping

from hypr.reconcile.ports import HIGH_FD
from hypr.runtime import proc
from hypr.runtime.base import Handle


class ExitWatch:
    def __init__(self) -> None:
        self.watched: dict[str, tuple[Handle, int]] = {}  # workload ID -> (its handle, a pidfd of its process)
        self.by_fd: dict[int, str] = {}
        self.poller = select.poll()

    def candidates(self, running: Mapping[str, Handle]) -> set[str]:
        """The workloads of `running` (ID -> handle) whose process may have ended: its pidfd is readable, or it
        could not be watched (gone already, or no pidfd here): the caller asks the runtime about those."""
        for workload_id in [w for w, (handle, _fd) in self.watched.items() if running.get(w) != handle]:
            self._forget(workload_id)
        found = set()
        for workload_id, handle in running.items():
            if workload_id not in self.watched and not self._watch(workload_id, handle):
                found.add(workload_id)
        found.update(self.by_fd[fd] for fd, _events in self.poller.poll(0))
        return found

    def _watch(self, workload_id: str, handle: Handle) -> bool:
        try:
            first = os.pidfd_open(handle.pid)
        except OSError:
            return False  # ended (ESRCH), or a kernel without pidfds: asked every time
        try:
            # At or above 1024, as held ports are: a thousand pidfds below it would push the descriptors of
            # libraries that still select() (libnftables) past FD_SETSIZE, which aborts the process.
            fd = fcntl.fcntl(first, fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
        except OSError:
            return False  # no descriptor free up there: asked every time
        finally:
            os.close(first)
        if not proc.alive(handle.pid, handle.start_time):  # ended before, and its pid taken by another process
            os.close(fd)
            return False
        self.watched[workload_id] = (handle, fd)
        self.by_fd[fd] = workload_id
        self.poller.register(fd, select.POLLIN)
        return True

    def _forget(self, workload_id: str) -> None:
        _handle, fd = self.watched.pop(workload_id)
        del self.by_fd[fd]
        self.poller.unregister(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    def close(self) -> None:
        for workload_id in list(self.watched):
            self._forget(workload_id)
