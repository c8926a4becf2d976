"""The reconciler: converge every kind of kernel object to one snapshot of the database.

Called at start-up and after every change, always from the daemon's single worker thread, so there is one netlink
socket and no concurrent applies. Failures of one step do not stop the others; they are collected and raised
together at the end.

Two modes, one result. The full reconcile reads the kernel and repairs whatever differs (start-up, and any
converge after one that failed). After a clean converge, the next one is incremental: links are looked at only for
the rows that changed since the last snapshot converged, and the steps apply only their own difference (the
firewall by set element and by chain). tests/integration/test_incremental.py checks that both give the same kernel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from pyroute2 import IPRoute

from hypr.errors import KernelError
from hypr.models import HostView, Snapshot
from hypr.reconcile import links

log = logging.getLogger(__name__)

# A later step of the reconcile (firewall, DNS, ports), run after the links exist.
Step = Callable[[Snapshot], None]
# Told before a full reconcile to forget what it applied last, so it re-applies everything (a step without one
# always does).
Reset = Callable[[], None]


class ReconcileError(KernelError):
    def __init__(self, errors: list[KernelError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


RECYCLE_AFTER = 200  # reconciles per netlink socket: pyroute2 0.9 keeps ~100 bytes per request on a socket


class Reconciler:
    def __init__(self, alias: str, proc_sys: Path = Path("/proc/sys")) -> None:
        self.alias = alias
        self.proc_sys = proc_sys
        self.ipr = IPRoute()
        self.uses = 0
        self.steps: list[tuple[str, Step]] = []
        self.resets: list[Reset] = []
        self.applied: Snapshot | None = None  # converged without an error: the next converge may be incremental
        self.broken: dict[str, str] = {}  # network ID -> why its bridge is not ours (as of the last reconcile)
        self.standing: set[str] = set()  # failures already reported: they do not fail every later operation
        self.our_links: set[int] = set()  # indexes of links known to be our bridges (links.host_view)

    def close(self) -> None:
        self.ipr.close()

    def add_step(self, name: str, step: Step, reset: Reset | None = None, *, before: str | None = None) -> None:
        """Run `step` after the links, in order of addition, or just before the step named `before`."""
        at = next((i for i, (known, _) in enumerate(self.steps) if known == before), len(self.steps))
        self.steps.insert(at, (name, step))
        if reset is not None:
            self.resets.append(reset)

    def host_view(self) -> HostView:
        return links.host_view(self.ipr, self.alias, self.our_links)

    def link_names(self) -> set[str]:
        """The names of every link in the daemon's namespace (one netlink dump)."""
        return {link.name for link in links.links(self.ipr)}

    def reconcile(self, snapshot: Snapshot, *, full: bool = False) -> None:
        """Converge everything; raise the failures this reconcile found that the previous one had not. A failure
        that stays (a foreign interface holding a network's bridge name) is raised once and then only logged, so
        one bad network never blocks operations on the others; operations on that network check `broken`.
        Incremental after a clean converge unless `full`; any failure makes the next one full."""
        self._recycle()
        previous, self.applied = self.applied, None
        whole = full or previous is None
        took: dict[str, float] = {}
        began = time.monotonic()
        if previous is None or full:
            self.our_links.clear()  # (any bridge may have gone)
            for reset in self.resets:
                reset()
            broken: dict[str, str] = {}
            errors = links.reconcile_bridges(self.ipr, snapshot.networks, self.alias, broken, self.proc_sys)
            self.broken = broken
            errors += links.reconcile_ports(self.ipr, snapshot, self.alias)
        else:
            change = links.delta(previous, snapshot)
            errors = links.update(self.ipr, change, self.alias, self.broken, self.our_links, self.proc_sys)
        took["links"] = time.monotonic() - began
        errors += self._run_steps(snapshot, took)
        if whole:  # rare (start-up, repair) and the one that grows with everything: say where its time went
            log.info("full reconcile of %d networks, %d endpoints: %s", len(snapshot.networks),
                     len(snapshot.endpoints), ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in took.items()))  # fmt: skip
        if not errors:
            self.applied = snapshot
        new = [e for e in errors if e.message not in self.standing]
        self.standing = {e.message for e in errors}
        for error in errors:
            if error not in new:
                log.debug("still failing: %s", error.message)
        if new:
            raise ReconcileError(new)

    def _run_steps(self, snapshot: Snapshot, took: dict[str, float]) -> list[KernelError]:
        errors: list[KernelError] = []
        for name, step in self.steps:
            began = time.monotonic()
            try:
                step(snapshot)
            except KernelError as exc:
                log.error("reconcile %s: %s", name, exc.message)
                errors.append(exc)
            except Exception as exc:  # a bug in one step must not stop the others (nor leave the kernel half-done)
                log.exception("reconcile %s failed", name)
                errors.append(KernelError(f"reconcile {name}: {exc!r}"))
            took[name] = time.monotonic() - began
        return errors

    def _recycle(self) -> None:
        """A fresh IPRoute now and then: what pyroute2 keeps per request is freed with its socket, so the daemon's
        memory stays flat however many operations it serves (it grew ~3 MB per 1000 operations)."""
        self.uses += 1
        if self.uses >= RECYCLE_AFTER:
            self.ipr.close()
            self.ipr = IPRoute()
            self.uses = 0

    def write_sysctl(self, key: str, value: str) -> None:
        path = self.proc_sys / key
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
                log.info("set %s = %s", key.replace("/", "."), value)
        except OSError as exc:
            raise KernelError(f"set sysctl {key} = {value}: {exc}") from exc
