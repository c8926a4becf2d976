"""DNS step of the reconcile: fresh record tables and listeners on every gateway, handed to the running server.

The reconcile runs on the worker thread; the DNS server lives on the event loop. The step builds the (pure) record
tables here and passes them over with one call; the server swaps them in with one assignment and never re-binds a
socket for it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from hypr.dns import DnsServer, Records, load_upstreams
from hypr.dns.records import RecordsBuilder, search_domains
from hypr.dns.upstream import Upstream
from hypr.errors import KernelError
from hypr.models import Snapshot
from hypr.runtime.files import host_resolver

log = logging.getLogger(__name__)
HANDOVER_TIMEOUT = 10.0


class Upstreams:
    """What DNS takes from the host's resolv.conf (HYPR_RESOLV_CONF), re-read when the file changes (DHCP, VPNs)
    so the server follows the host without a restart: where forwarded names go (fixed by HYPR_DNS_UPSTREAMS, else
    its nameservers without our own gateways), and its search domains, which workloads without `--dns-search`
    carry in their resolv.conf (so `peer.<domain>` must be answered as `peer`) whichever upstreams are used."""

    def __init__(self, fixed: Sequence[Upstream], resolv_conf: Path) -> None:
        self.fixed = list(fixed)
        self.resolv_conf = resolv_conf
        self.seen: tuple[tuple[int, int, int] | None, frozenset[str]] | None = None
        self.upstreams: list[Upstream] = []
        self.search: tuple[str, ...] = ()

    def refresh(self, gateways: set[IPv4Address | IPv6Address]) -> tuple[bool, bool]:
        """Re-read the file when it (or our gateways) changed since the last look: (the upstream list changed or
        was never handed out, the search list changed)."""
        try:
            st = self.resolv_conf.stat()
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        seen = (stamp, frozenset(map(str, gateways)))
        if seen == self.seen:
            return False, False
        first = self.seen is None
        self.seen = seen
        try:
            text = self.resolv_conf.read_text(errors="replace")
        except OSError:
            text = ""
        upstreams = self.fixed or load_upstreams(skip={str(g) for g in gateways}, path=self.resolv_conf)
        search = search_domains(host_resolver(text)[0])
        changed = (first or upstreams != self.upstreams, search != self.search)
        self.upstreams, self.search = upstreams, search
        return changed

    def changed(self, gateways: set[IPv4Address | IPv6Address]) -> list[Upstream] | None:
        """The upstream list when it may differ from the last one handed out, else None."""
        return list(self.upstreams) if self.refresh(gateways)[0] else None


class DnsStep:
    def __init__(self, server: DnsServer, loop: asyncio.AbstractEventLoop, upstreams: Upstreams) -> None:
        self.server = server
        self.loop = loop
        self.upstreams = upstreams
        self.gateways: set[IPv4Address | IPv6Address] = set()
        self.snapshot: Snapshot | None = None  # the last one handed to the server: rebuilt from when search changes
        self.builder = RecordsBuilder()  # used on the worker only: follow_upstreams builds with a fresh one

    async def follow_upstreams(self) -> None:
        """Called now and then between changes: pick up an edited resolv.conf (its nameservers and its search
        list; the records hold the latter, so they are rebuilt from the last snapshot when it changes)."""
        upstreams, search = self.upstreams.refresh(self.gateways)
        if upstreams:
            fresh = self.upstreams.upstreams
            log.info("DNS upstreams: %s", ", ".join(f"{h}:{p}" for h, p in fresh) or "none")
            await self.server.set_upstreams(fresh)
        if search:
            log.info("DNS: the host's search domains: %s", " ".join(self.upstreams.search) or "none")
        if self.snapshot is not None and self.server.records.host_search != self.upstreams.search:
            await self.server.set_records(RecordsBuilder().build(self.snapshot, self.upstreams.search))

    def __call__(self, snapshot: Snapshot) -> None:
        records = self.builder.build(snapshot, self.upstreams.search)
        gateways: set[IPv4Address | IPv6Address] = {n.gateway for n in snapshot.networks if n.gateway is not None}
        gateways |= {n.gateway6 for n in snapshot.networks if n.gateway6 is not None}
        self.gateways = gateways
        handover = asyncio.run_coroutine_threadsafe(self._apply(snapshot, records, gateways), self.loop)
        try:
            handover.result(timeout=HANDOVER_TIMEOUT)
        except TimeoutError as exc:
            raise KernelError("hand the DNS records to the server: timed out") from exc

    async def _apply(self, snapshot: Snapshot, records: Records, gateways: set[IPv4Address | IPv6Address]) -> None:
        self.snapshot = snapshot
        await self.server.set_records(records)
        # Our own gateways are never upstreams, so the list depends on them; and when the host's search list
        # changed since `records` were built on the worker, they are built again with the new one.
        await self.follow_upstreams()
        await self.server.set_listen_addresses(gateways)


class ResolvedStep:
    """On hosts with systemd-resolved, route `~hypr` to each network's gateway (the seed's `resolvectl domain vbr0
    ~hypr; resolvectl dns vbr0 10.88.0.1`). Elsewhere, say once how to do it by hand."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and resolved_running()
        self.configured: dict[str, str] = {}
        self.told = False

    def __call__(self, snapshot: Snapshot) -> None:
        wanted = {n.bridge: str(n.gateway or n.gateway6) for n in snapshot.networks}
        if not self.enabled:
            if not self.told and wanted:
                bridge, gateway = next(iter(wanted.items()))
                log.info(
                    "systemd-resolved not found: to resolve *.hypr on this host, point a resolver at %s "
                    "(e.g. `resolvectl domain %s ~hypr; resolvectl dns %s %s`, or dnsmasq `server=/hypr/%s`)",
                    gateway, bridge, bridge, gateway, gateway,
                )  # fmt: skip
                self.told = True
            return
        for bridge, gateway in sorted(wanted.items()):
            if self.configured.get(bridge) != gateway:
                _resolvectl("dns", bridge, gateway)
                _resolvectl("domain", bridge, "~hypr")
                self.configured[bridge] = gateway
        for bridge in set(self.configured) - set(wanted):
            self.configured.pop(bridge)  # the link is gone, and resolved forgets its settings with it


def resolved_running() -> bool:
    return Path("/run/systemd/resolve/stub-resolv.conf").exists() and shutil.which("resolvectl") is not None


def _resolvectl(*argv: str) -> None:
    proc = subprocess.run(["resolvectl", *argv], capture_output=True, text=True, timeout=10, check=False)
    if proc.returncode != 0:
        raise KernelError(f"resolvectl {' '.join(argv)}: {proc.stderr.strip()}")
