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
from ipaddress import IPv4Address
from pathlib import Path

from hypr.dns import DnsServer, Records, build_records, load_upstreams
from hypr.dns.upstream import Upstream
from hypr.errors import KernelError
from hypr.models import Snapshot

log = logging.getLogger(__name__)
HANDOVER_TIMEOUT = 10.0


class Upstreams:
    """Where forwarded names go: fixed (HYPR_DNS_UPSTREAMS), or the host's resolv.conf, re-read when it changes
    (DHCP, VPNs) so the server follows the host without a restart."""

    def __init__(self, fixed: Sequence[Upstream], resolv_conf: Path) -> None:
        self.fixed = list(fixed)
        self.resolv_conf = resolv_conf
        self.seen: tuple[float, frozenset[str]] | None = None

    def changed(self, gateways: set[IPv4Address]) -> list[Upstream] | None:
        """The upstream list when it may differ from the last one handed out, else None."""
        if self.fixed:
            return None if self.seen else self._remember(0.0, gateways, self.fixed)
        try:
            mtime = self.resolv_conf.stat().st_mtime
        except FileNotFoundError:
            mtime = 0.0
        if self.seen == (mtime, frozenset(map(str, gateways))):
            return None
        return self._remember(mtime, gateways, load_upstreams(skip={str(g) for g in gateways}, path=self.resolv_conf))

    def _remember(self, mtime: float, gateways: set[IPv4Address], upstreams: list[Upstream]) -> list[Upstream]:
        self.seen = (mtime, frozenset(map(str, gateways)))
        return upstreams


class DnsStep:
    def __init__(self, server: DnsServer, loop: asyncio.AbstractEventLoop, upstreams: Upstreams) -> None:
        self.server = server
        self.loop = loop
        self.upstreams = upstreams
        self.gateways: set[IPv4Address] = set()

    async def follow_upstreams(self) -> None:
        """Called now and then between changes: pick up an edited resolv.conf."""
        fresh = self.upstreams.changed(self.gateways)
        if fresh is not None:
            log.info("DNS upstreams: %s", ", ".join(f"{h}:{p}" for h, p in fresh) or "none")
            await self.server.set_upstreams(fresh)

    def __call__(self, snapshot: Snapshot) -> None:
        records = build_records(snapshot)
        gateways = {n.gateway for n in snapshot.networks}
        self.gateways = gateways
        handover = asyncio.run_coroutine_threadsafe(self._apply(records, gateways), self.loop)
        try:
            handover.result(timeout=HANDOVER_TIMEOUT)
        except TimeoutError as exc:
            raise KernelError("hand the DNS records to the server: timed out") from exc

    async def _apply(self, records: Records, gateways: set[IPv4Address]) -> None:
        await self.follow_upstreams()  # our own gateways are never upstreams: the list depends on them
        await self.server.set_records(records)
        await self.server.set_listen_addresses(gateways)


class ResolvedStep:
    """On hosts with systemd-resolved, route `~hypr` to each network's gateway (the seed's `resolvectl domain vbr0
    ~hypr; resolvectl dns vbr0 10.88.0.1`). Elsewhere, say once how to do it by hand."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and resolved_running()
        self.configured: dict[str, str] = {}
        self.told = False

    def __call__(self, snapshot: Snapshot) -> None:
        wanted = {n.bridge: str(n.gateway) for n in snapshot.networks}
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
