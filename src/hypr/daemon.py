"""hyprd: one asyncio process. Opens the database, converges the kernel to it, then serves the API.

All database and kernel work runs on ONE worker thread, so operations are serialised without locks and the event
loop stays free for the API and DNS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from pathlib import Path
from typing import IO, Any, TypeVar

from aiohttp import web

from hypr import names
from hypr.api.server import API_IDLE, LIMITS, ApiSite, make_app
from hypr.config import Paths, Settings, settings_from_env
from hypr.dns import DnsServer
from hypr.errors import HyprError, KernelError
from hypr.models import Snapshot
from hypr.reconcile import firewall
from hypr.reconcile.dns import DnsStep, ResolvedStep, Upstreams
from hypr.reconcile.kernel import Reconciler
from hypr.reconcile.ports import PortHolder
from hypr.reconcile.proxy import LoopbackProxy
from hypr.runtime import netns, shim
from hypr.runtime.sandbox import SandboxRuntime
from hypr.runtime.vm import VmRuntime
from hypr.services import networks, workloads
from hypr.services.context import Context
from hypr.state import Store

log = logging.getLogger("hyprd")
T = TypeVar("T")
REFRESH_INTERVAL = 0.5  # seconds between looks for workloads that ended on their own (--rm, restart policies)


class AlreadyRunning(Exception):
    pass


def lock_file(path: Path) -> IO[str]:
    """Hold an exclusive lock for the daemon's lifetime: a second daemon on the same directory refuses to start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held open until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        raise AlreadyRunning(f"another hyprd (pid {owner}) is already using {path.parent}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def raise_open_files_limit() -> None:
    """Held ports and workloads each cost descriptors: allow as many as the hard limit does (Docker's systemd unit
    sets LimitNOFILE=infinity for the same reason)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def secure_dirs(paths: Paths) -> None:
    """Root-only, as Docker's /var/lib/docker: the database and launch files hold every workload's environment
    (`-e` secrets). The runtime dir stays traversable (0711) so the socket's group can reach hypr.sock (0660);
    the workloads' state under it is 0700."""
    for path, mode in ((paths.data_dir, 0o700), (paths.runtime_dir, 0o711), (paths.workloads, 0o700)):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)


def secure_database(paths: Paths) -> None:
    """The database and its WAL files: 0600 (they are made with the process umask)."""
    for db_file in paths.data_dir.glob(paths.db.name + "*"):
        os.chmod(db_file, 0o600)


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dns_step: DnsStep | None = None
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hypr-worker")
        raise_open_files_limit()
        secure_dirs(settings.paths)
        self.locks = [lock_file(settings.paths.data_dir / "hyprd.lock"), lock_file(settings.paths.pidfile)]
        self.store = Store(settings.paths.db)
        secure_database(settings.paths)
        self.reconciler = Reconciler(names.owner_alias(self.store.instance_id()))
        self.ctx = Context(
            settings=settings,
            store=self.store,
            reconciler=self.reconciler,
            runtimes={
                "sandbox": SandboxRuntime(image_cache=settings.paths.images),
                "vm": VmRuntime(image_cache=settings.paths.images),
            },
            ports=PortHolder(),
        )
        self.firewall = firewall.Applier()
        self.sysctls_set: set[tuple[str, str]] = set()  # as of the last converge; a full reconcile writes them all
        self.reconciler.add_step("firewall", self.apply_firewall, self.forget_firewall)
        self.reconciler.add_step("ports", self.ctx.ports.converge, self.ctx.ports.forget)
        if settings.cluster_store:
            self.join_cluster()

    def join_cluster(self) -> None:
        """Overlay networks: the cluster agent (etcd) and the VXLAN data plane, as one more reconcile step."""
        from hypr.cluster.agent import Cluster, ClusterSettings
        from hypr.cluster.overlay import OverlayPlane

        s = self.settings
        cluster = Cluster(
            ClusterSettings(s.cluster_store, s.advertise_addr, s.node_name or socket.gethostname(), s.cluster_ttl),
            self.store.instance_id(),
            self.store,
            lambda: frozenset(self.reconciler.host_view().interfaces),
        )
        plane = OverlayPlane(self.reconciler.ipr, names.ALIAS_PREFIX + "overlay:" + self.store.instance_id(),
                             cluster.node, s.advertise_addr)  # fmt: skip

        def overlay_step(snapshot: Snapshot) -> None:
            plane.ipr = self.reconciler.ipr  # the reconciler recycles its socket now and then
            cluster.publish(snapshot)
            plane.converge(snapshot, cluster.state)

        served: list[object] = [None]  # (snapshot, remote endpoints) the DNS step last got from here

        def on_state(networks_changed: bool) -> None:
            """A new registry read, on the worker: a network came or went -> the whole converge; otherwise only
            the VXLAN entries and the DNS records (the bench's 1000 endpoints must not re-render the firewall)."""
            try:
                if networks_changed:
                    self.ctx.converge()
                    return
                snapshot = self.store.snapshot()
                plane.converge(snapshot, cluster.state, full=False)
                seen = (snapshot, cluster.remote(snapshot))
                if self.dns_step is not None and seen != served[0]:  # most registry changes rename nothing
                    self.dns_step(cluster.with_remote(snapshot))
                    served[0] = seen
            except HyprError as exc:
                log.error("apply the cluster's state: %s", exc.message)

        cluster.on_state = on_state
        self.ctx.cluster = cluster
        self.reconciler.add_step("overlay", overlay_step)

    def apply_firewall(self, snapshot: Snapshot) -> None:
        """Sysctls, then the table. A sysctl that cannot be written (a bridge that failed to come up, a module
        that is not loaded) is reported, but never keeps the rules of every other network from being applied."""
        problems = []
        wanted = firewall.sysctls(snapshot)
        done = self.sysctls_set
        self.sysctls_set = set()
        for key, value in wanted:
            try:
                if (key, value) not in done:  # a new bridge starts with its defaults: it is not in `done`
                    self.reconciler.write_sysctl(key, value)
                self.sysctls_set.add((key, value))
            except KernelError as exc:
                problems.append(exc.message)
        self.firewall(snapshot)
        if problems:
            raise KernelError("; ".join(problems))

    def forget_firewall(self) -> None:
        self.firewall.forget()
        self.sysctls_set = set()

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.worker, lambda: fn(*args, **kwargs))

    def start_up(self) -> None:
        """Runs on the worker, the first job: the default network exists, and the kernel matches the database (a
        full reconcile: links, DNS records, firewall, held ports)."""
        began = time.monotonic()
        networks.ensure_default(self.ctx)
        log.info("database read in %.2f s", time.monotonic() - began)
        self.ctx.converge()

    def adopt(self) -> None:
        """Runs on the worker right after start-up, while the API already answers: running workloads are ours again
        (and their interfaces repaired), and other tables' drop policies are checked. At 1000 workloads this takes
        seconds; every operation queues behind it on the worker, so none sees a workload not yet adopted, and the
        workloads' networking never depended on it (the kernel state was converged before). Nothing to do when
        the start-up failed for good (no built-in network: the daemon exits)."""
        if not any(n.builtin for n in self.store.snapshot().networks):
            return
        try:
            firewall.check_foreign_drops()
        except HyprError as exc:
            log.warning("could not check other tables for drop policies: %s", exc.message)
        began = time.monotonic()
        try:
            workloads.adopt_all(self.ctx)
        except HyprError as exc:
            log.error("re-adopt workloads: %s", exc.message)
        log.info("running workloads re-adopted in %.2f s", time.monotonic() - began)

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            if self.dns_step is not None:
                await self.dns_step.follow_upstreams()
            snapshot = await self.call(self.store.snapshot)
            if self.ctx.restarts or any(
                w.state == "running" or (w.state == "exited" and w.auto_remove) for w in snapshot.workloads
            ):
                try:
                    await self.call(workloads.refresh, self.ctx)
                except HyprError as exc:
                    log.error("refresh workloads: %s", exc.message)
                except Exception:  # the refresher must outlive any one bad workload (--rm, restarts depend on it)
                    log.exception("refresh workloads failed")

    def start_dns(self) -> DnsServer:
        """The DNS server runs on the event loop; the reconcile hands it records after every change."""
        server = DnsServer()
        self.dns_step = DnsStep(
            server, asyncio.get_running_loop(), Upstreams(self.settings.dns_upstreams, self.settings.resolv_conf)
        )
        # Right after the links, before the firewall and the held ports: at start-up, names answer a full firewall
        # transaction sooner (at 1000 workloads ~0.3 s), and DNS needs nothing of theirs (the listeners bind the
        # gateways' addresses, which the links step set).
        cluster = self.ctx.cluster
        if cluster is None:
            self.reconciler.add_step("dns", self.dns_step, before="firewall")
        else:  # other hosts' endpoints on our overlays resolve too
            step = self.dns_step
            self.reconciler.add_step("dns", lambda snapshot: step(cluster.with_remote(snapshot)), before="firewall")
        self.reconciler.add_step("host resolver", ResolvedStep(self.settings.configure_resolved), before="firewall")
        return server

    async def serve(self) -> None:
        dns = self.start_dns()
        loop = asyncio.get_running_loop()
        self.ctx.ports.proxy = LoopbackProxy(loop)
        # The worker's first jobs, before any API call's: the start-up reconcile, then the re-adoption. The API
        # serves meanwhile (`_ping` and `version` answer at once; every other call waits on the worker behind
        # them, so none sees the kernel before it matches the database or a workload not yet adopted), and DNS
        # answers from the reconcile's DNS step, which runs right after the links (reconcile/kernel.py).
        started = loop.run_in_executor(self.worker, self.start_up)
        loop.run_in_executor(self.worker, self.adopt)
        runner, socket_path = await self.open_api()
        try:
            await started
        except HyprError as exc:
            log.error("start-up reconcile: %s", exc.message)
            if not any(n.builtin for n in self.store.snapshot().networks):
                await runner.cleanup()
                socket_path.unlink(missing_ok=True)
                raise
        log.info("hyprd ready on %s (data %s)", socket_path, self.settings.paths.data_dir)
        refresher = asyncio.create_task(self.refresh_forever())
        if self.ctx.cluster is not None:
            self.ctx.cluster.start(self.submit)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: networks and workloads stay as they are")
        refresher.cancel()
        await dns.close()
        await runner.cleanup()
        socket_path.unlink(missing_ok=True)

    async def open_api(self) -> tuple[web.AppRunner, Path]:
        """The API on its unix socket (born 0660: root and the socket's group only, never a window wider)."""
        app = make_app(self.ctx, self.call)
        # keepalive_timeout: a connection without a whole request head for API_IDLE seconds is closed (aiohttp
        # starts that timer on connect and after every answer, never during a request: long streams stay).
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=API_IDLE)
        await runner.setup()
        socket_path = self.settings.paths.socket
        socket_path.unlink(missing_ok=True)  # stale: we hold the lock, so nobody else serves it
        site = ApiSite(runner, str(socket_path), app[LIMITS])  # at most API_MAX_CONNECTIONS, oldest idle out
        previous = os.umask(0o117)
        try:
            await site.start()
        finally:
            os.umask(previous)
        return runner, socket_path

    def submit(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the worker (from the cluster's threads); failures are logged, never lost silently."""

        def guarded() -> None:
            try:
                fn()
            except HyprError as exc:
                log.error("cluster: %s", exc.message)
            except Exception:
                log.exception("cluster task failed")

        with contextlib.suppress(RuntimeError):  # the worker is shutting down
            self.worker.submit(guarded)

    def close(self) -> None:
        if self.ctx.cluster is not None:
            self.ctx.cluster.close()
        self.worker.shutdown(wait=True)
        with contextlib.suppress(OSError):  # if no pin is left: one a file held open kept (netns.unmount_pins)
            netns.unmount_pins(self.settings.paths.workloads)
        self.ctx.ports.close()
        self.reconciler.close()
        self.store.close()
        for handle in self.locks:
            handle.close()


def run(settings: Settings) -> int:
    log.info("hyprd starting (data %s)", settings.paths.data_dir)  # start-up at scale is timed from here
    try:
        shim.see_host_cgroups()  # before any thread: mounts act on this namespace alone
    except OSError as exc:
        log.warning("cgroups are not mounted here and could not be: exec, pause and stats will fail (%s)", exc)
    try:
        daemon = Daemon(settings)
    except AlreadyRunning as exc:
        log.error("%s", exc)
        return 1
    try:
        try:
            import uvloop

            uvloop.run(daemon.serve())
        except ImportError:
            asyncio.run(daemon.serve())
    except HyprError as exc:
        log.error("%s", exc.message)
        return 1
    finally:
        daemon.close()
    return 0


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("HYPR_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if os.geteuid() != 0:
        log.error("hyprd must run as root (it manages bridges, namespaces and nftables)")
        sys.exit(1)
    try:
        settings = apply_flags(settings_from_env(), sys.argv[1:])
    except ValueError as exc:
        log.error("%s", exc)
        sys.exit(2)
    sys.exit(run(settings))


def apply_flags(settings: Settings, argv: list[str]) -> Settings:
    """`hyprd [--cluster-store etcd://HOST:PORT[,...]] [--advertise-addr IP] [--node-name NAME]`: flags win over
    the environment and the config file. Raises ValueError for a bad combination."""
    parser = argparse.ArgumentParser(prog="hyprd", description="The hypr daemon.")
    parser.add_argument("--cluster-store", default=settings.cluster_store, help="etcd://HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--advertise-addr", default=settings.advertise_addr, help="this host's underlay IPv4 address")
    parser.add_argument("--node-name", default=settings.node_name, help="this host's name in the cluster")
    args = parser.parse_args(argv)
    settings = dataclasses.replace(
        settings, cluster_store=args.cluster_store, advertise_addr=args.advertise_addr, node_name=args.node_name
    )
    if settings.cluster_store:
        from hypr.cluster.store import parse_store_url

        try:
            parse_store_url(settings.cluster_store)
            IPv4Address(settings.advertise_addr)
        except HyprError as exc:
            raise ValueError(exc.message) from None
        except ValueError:
            raise ValueError(
                f"--advertise-addr {settings.advertise_addr!r}: a cluster needs this host's IPv4 underlay address"
            ) from None
        if settings.cluster_ttl < 2:
            raise ValueError(f"cluster TTL {settings.cluster_ttl}: at least 2 seconds")
    return settings
