"""What every service operation works with: settings, the store, and the reconciler. Passed explicitly; there is no
module-level state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hypr.config import Settings
from hypr.reconcile.kernel import Reconciler
from hypr.state import Store


@dataclass
class Context:
    settings: Settings
    store: Store
    reconciler: Reconciler
    # Set by the workloads service once it exists: detach every workload from a network (used by `network rm -f`).
    detach_all: Callable[[str], None] = field(default=lambda network_id: None)

    def converge(self) -> None:
        """Bring the kernel in line with the database, as it is now."""
        self.reconciler.reconcile(self.store.snapshot())
