"""What every service operation works with: settings, the store, the reconciler, the runtimes and the held ports.
Passed explicitly; there is no module-level state."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hypr import ipam
from hypr.config import Settings
from hypr.errors import InvalidParameter
from hypr.images.registry import Skopeo
from hypr.images.store import ImageStore
from hypr.models import Snapshot
from hypr.reconcile.kernel import Reconciler
from hypr.reconcile.ports import PortHolder
from hypr.runtime.base import Runtime
from hypr.runtime.files import host_resolver
from hypr.services.events import EventLog
from hypr.services.exits import ExitWatch
from hypr.state import Store

if TYPE_CHECKING:
    from hypr.cluster.agent import Cluster


@dataclass
class Context:
    settings: Settings
    store: Store
    reconciler: Reconciler
    runtimes: Mapping[str, Runtime] = field(default_factory=dict)
    ports: PortHolder = field(default_factory=PortHolder)
    # Restart policy bookkeeping, per workload: (restarts in a row, monotonic time of the next one; inf: running).
    restarts: dict[str, tuple[int, float]] = field(default_factory=dict)
    events: EventLog = field(default_factory=EventLog)  # Docker's event stream (GET /events)
    # Workloads whose --rm removal waits: an attach still streams their output, or a wait has yet to read their exit
    # code (Docker removes an auto-remove container once its streams are done). Workload id -> holders.
    holds: Counter[str] = field(default_factory=Counter)
    # --rm workloads whose exit a client asked for (a wait or an attach held them): they go as soon as it is read.
    claimed: set[str] = field(default_factory=set)
    exits: ExitWatch = field(default_factory=ExitWatch)  # which running workloads' processes may have ended
    images: ImageStore = field(init=False)  # pulled images on disk, under <data dir>/images
    registry: Skopeo = field(init=False)
    cluster: Cluster | None = None  # set when hyprd runs with --cluster-store (overlay networks)
    _resolv: tuple[tuple[int, int], tuple[tuple[str, ...], tuple[str, ...]]] | None = None

    def host_resolver(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The host's resolv.conf search domains and options, re-read when the file changes."""
        try:
            st = self.settings.resolv_conf.stat()
            key = (st.st_mtime_ns, st.st_size)
            if self._resolv is None or self._resolv[0] != key:
                self._resolv = (key, host_resolver(self.settings.resolv_conf.read_text(errors="replace")))
        except OSError:
            return (), ()
        return self._resolv[1]

    def __post_init__(self) -> None:
        self.images = ImageStore(self.settings.paths.images)
        self.registry = Skopeo(self.settings.registry, tmp_dir=self.images.tmp)

    def pool6(self) -> ipam.DefaultPool6:
        """Where `--ipv6` networks without a subnet take one: HYPR_DEFAULT_POOL6 / daemon.json, else a ULA /48
        derived from this data directory's instance ID."""
        if not self.settings.pool6:
            return ipam.ula_pool(self.store.instance_id())
        try:
            return ipam.DefaultPool6.parse(self.settings.pool6)
        except ValueError as exc:
            raise InvalidParameter(f"HYPR_DEFAULT_POOL6: {exc}") from None

    def converge(self) -> None:
        """Bring the kernel in line with the database, as it is now."""
        self.reconciler.reconcile(self.store.snapshot())

    def cluster_view(self) -> Snapshot:
        """The database's snapshot plus, in a cluster, other hosts' running endpoints on our overlay networks."""
        snapshot = self.store.snapshot()
        return snapshot if self.cluster is None else self.cluster.with_remote(snapshot)

    def runtime(self, name: str) -> Runtime:
        try:
            return self.runtimes[name]
        except KeyError:
            raise InvalidParameter(f"runtime {name} is not available on this host") from None
