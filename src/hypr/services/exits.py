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
from collections.abc import Callable

from hypr.models import Snapshot, Workload, changes
from hypr.reconcile.ports import HIGH_FD
from hypr.runtime import proc
from hypr.runtime.base import Handle


class ExitWatch:
    def __init__(self) -> None:
        self.watched: dict[str, tuple[Handle, int]] = {}  # workload ID -> (its handle, a pidfd of its process)
        self.by_fd: dict[int, str] = {}
        self.unwatched: set[str] = set()  # running, but no pidfd could be had: asked about at every look
        self.last: Snapshot | None = None
        self.poller = select.poll()

    def candidates(self, snapshot: Snapshot, handle_of: Callable[[Workload], Handle | None]) -> set[str]:
        """The running workloads of `snapshot` whose process may have ended: its pidfd is readable, or it could
        not be watched (gone already, or no pidfd here); the caller asks the runtime about those. Only the
        workloads that changed since the last look (`models.changes`) are looked at to keep the watch current."""
        looked_at = (
            {w.id for w in snapshot.workloads} if self.last is None else set(changes(self.last, snapshot).workloads)
        )
        self.last = snapshot
        for workload_id in looked_at | self.unwatched:
            workload = snapshot.workload(workload_id) if snapshot.has_workload(workload_id) else None
            handle = handle_of(workload) if workload is not None and workload.state == "running" else None
            if workload_id in self.watched and self.watched[workload_id][0] != handle:
                self._forget(workload_id)
            self.unwatched.discard(workload_id)
            if handle is not None and workload_id not in self.watched and not self._watch(workload_id, handle):
                self.unwatched.add(workload_id)
        return self.unwatched | {self.by_fd[fd] for fd, _events in self.poller.poll(0)}

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
        self.last = None
