"""The HTTP API on the unix socket: Docker Engine API paths and shapes, with or without a `/v1.NN` prefix.

Handlers only parse the request, hand the work to a service on the daemon's worker thread, and shape the answer.
Every `HyprError` becomes `{"message": ...}` with its status, in one middleware.

Connections are limited (`ConnectionLimits`, issue 13 item 11) so that clients that connect and send nothing, or
send too slowly, cannot lock the API out: a connection must send a whole request head within API_IDLE seconds
of connecting or of its last answer (aiohttp's keep-alive timer), and its body within API_BODY_TIMEOUT. At most
API_MAX_CONNECTIONS are served at once; a new one past that closes the connection idle longest (one that has no
request in progress), and is refused with a 503 only when every connection is in a request. A request in progress
is never timed out: `logs -f`, `wait`, a pull stream as long as they need to.
"""

from __future__ import annotations

import asyncio
import logging
import platform
from collections.abc import Callable
from os import PathLike
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from hypr import __version__
from hypr.api import schema, shapes
from hypr.api.common import (
    API_VERSION,
    MIN_API_VERSION,
    Call,
    Handler,
    errors_middleware,
    json_response,
    query_bool,
    query_filters,
    read_object,
)
from hypr.api.containers import ContainerApi
from hypr.api.execs import ExecApi
from hypr.api.images import ImageApi
from hypr.api.system import SystemApi
from hypr.errors import Forbidden, HyprError, Unavailable
from hypr.services import network_plan, networks, system
from hypr.services.context import Context

log = logging.getLogger(__name__)

API_MAX_CONNECTIONS = 1024  # connections served at once (each costs a descriptor and a few kB)
API_IDLE = 10.0  # seconds a connection may sit without a whole request head (after connecting or an answer)
API_BODY_TIMEOUT = 30.0  # seconds to send a request body (at most 16 MB: milliseconds over a unix socket)
API_BACKLOG = 1024  # connections waiting to be accepted: a burst of clients must not get EAGAIN from connect()
FORGET = 60.0  # seconds after which a closed connection's bookkeeping goes
_REFUSED_BODY = b'{"message": "too many connections, every one with a request running"}'
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY)
)


class _Refused(asyncio.Protocol):
    """A connection past the cap when none can be closed for it: a 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(REFUSED)
        transport.close()


class ConnectionLimits:
    """The API socket's connection cap, and which connections are idle (no request in progress) and since when.
    `middleware` marks requests; `protocol_factory` makes room for new connections (see the module docstring)."""

    def __init__(self, cap: int = API_MAX_CONNECTIONS, body_timeout: float = API_BODY_TIMEOUT) -> None:
        self.cap = cap
        self.body_timeout = body_timeout
        self.busy: set[RequestHandler] = set()  # connections with a request in progress
        self.since: dict[RequestHandler, float] = {}  # when each was accepted or last answered
        self.refused = 0
        self.closed_for_room = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        protocol = request.protocol
        self.busy.add(protocol)
        try:
            return await self._handle(request, handler)
        except ConnectionError:
            if protocol.transport is not None:
                raise
            # The client went away (mid-body, or leaving a `logs -f` stream): nobody to answer, nothing to log.
            return web.Response(status=400)
        finally:
            self.busy.discard(protocol)
            self.since[protocol] = asyncio.get_running_loop().time()

    async def _handle(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.content.is_eof():
            result: web.StreamResponse = await handler(request)
            return result
        # The body is still on its way: the deadline runs until its last byte arrives, then stops. Handlers read
        # their body before they start any work, so only a client that sends too slowly is cut off.
        running = True

        def arrived() -> None:
            if running:
                deadline.reschedule(None)

        try:
            async with asyncio.timeout(self.body_timeout) as deadline:
                request.content.on_eof(arrived)
                result = await handler(request)
            return result
        except TimeoutError:
            if not deadline.expired():
                raise
        finally:
            running = False
        message = f"request body not received within {self.body_timeout:g} s"
        response = json_response({"message": message}, status=408)
        response.force_close()
        return response

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for the listening socket: aiohttp's, once there is room for one more."""
        loop = asyncio.get_running_loop()

        def make() -> asyncio.Protocol:
            live = [h for h in server.connections if h.transport is not None]
            now = loop.time()
            if len(self.since) > 2 * max(self.cap, len(live)):
                # Forget closed connections (a handler only just made has no transport yet either: keep those).
                self.since = {h: t for h, t in self.since.items() if h.transport is not None or now - t < FORGET}
            if len(live) >= self.cap:
                idle = [h for h in live if h not in self.busy]
                if not idle:
                    self.refused += 1
                    return _Refused()
                oldest = min(idle, key=lambda h: self.since.get(h, now))
                oldest.force_close()
                self.closed_for_room += 1
            handler = server()
            self.since[handler] = now
            return handler

        return make


class ApiSite(web.BaseSite):
    """aiohttp's UnixSite, with `ConnectionLimits` deciding who is served."""

    def __init__(self, runner: web.BaseRunner, path: str | PathLike[str], limits: ConnectionLimits) -> None:
        super().__init__(runner, backlog=API_BACKLOG)
        self.path = path
        self.limits = limits

    @property
    def name(self) -> str:
        return f"http://unix:{self.path}:"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        factory = self.limits.protocol_factory(server)
        self._server = await asyncio.get_running_loop().create_unix_server(factory, self.path, backlog=self._backlog)


class Api:
    def __init__(self, ctx: Context, call: Call) -> None:
        self.ctx = ctx
        self.call = call

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/_ping", self.ping),
            ("HEAD", "/_ping", self.ping),
            ("GET", "/version", self.version),
            ("GET", "/info", self.info),
            ("GET", "/hypr/nodes", self.node_list),
            ("GET", "/networks", self.network_list),
            ("POST", "/networks/create", self.network_create),
            ("POST", "/networks/prune", self.network_prune),
            ("GET", "/networks/{ref}", self.network_inspect),
            ("DELETE", "/networks/{ref}", self.network_remove),
        ]

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text="OK", headers={"Cache-Control": "no-cache, no-store, must-revalidate"})

    async def version(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "Version": __version__,
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
                "KernelVersion": platform.release(),
                "Components": [{"Name": "hyprd", "Version": __version__, "Details": {}}],
            }
        )

    async def info(self, request: web.Request) -> web.Response:
        return json_response(await self.call(system.info, self.ctx))

    async def node_list(self, request: web.Request) -> web.Response:
        cluster = self.ctx.cluster
        if cluster is None:
            raise Unavailable("this hyprd is not part of a cluster: start it with --cluster-store etcd://HOST:PORT")
        return json_response(await self.call(cluster.nodes))

    async def network_list(self, request: web.Request) -> web.Response:
        filters = query_filters(request)
        snapshot = await self.call(self.ctx.store.snapshot)
        found = network_plan.list_networks(snapshot, filters)
        predefined = network_plan.list_predefined(snapshot, filters)
        return json_response([
            *(shapes.network_inspect(n, snapshot) for n in found),
            *(shapes.predefined_inspect(snapshot, name) for name in predefined),
        ])  # fmt: skip

    async def network_inspect(self, request: web.Request) -> web.Response:
        snapshot = await self.call(self.ctx.cluster_view)  # an overlay lists every host's endpoints
        ref = request.match_info["ref"]
        predefined = network_plan.find_predefined(snapshot, ref)
        if predefined is not None:
            return json_response(shapes.predefined_inspect(snapshot, predefined))
        network = network_plan.find_network(snapshot, ref)
        return json_response(shapes.network_inspect(network, snapshot))

    async def network_create(self, request: web.Request) -> web.Response:
        body = await read_object(request, schema.NETWORK_CREATE, "CreateRequest")
        network = await self.call(networks.create, self.ctx, body)
        return json_response({"Id": network.id, "Warning": ""}, status=201)

    async def network_remove(self, request: web.Request) -> web.Response:
        snapshot = await self.call(self.ctx.store.snapshot)
        predefined = network_plan.find_predefined(snapshot, request.match_info["ref"])
        if predefined is not None:
            raise Forbidden(f"{predefined} is a pre-defined network and cannot be removed")
        await self.call(networks.remove, self.ctx, request.match_info["ref"], force=query_bool(request, "force"))
        return web.Response(status=204)

    async def network_prune(self, request: web.Request) -> web.Response:
        deleted = await self.call(networks.prune, self.ctx, query_filters(request))
        return json_response({"NetworksDeleted": deleted})


LIMITS = web.AppKey("limits", ConnectionLimits)


def make_app(ctx: Context, call: Call, limits: ConnectionLimits | None = None) -> web.Application:
    """The API. Serve it with `ApiSite(runner, path, app[LIMITS])` and a runner with
    `keepalive_timeout=API_IDLE`, so the connection limits hold."""
    limits = limits if limits is not None else ConnectionLimits()
    app = web.Application(middlewares=[errors_middleware, limits.middleware], client_max_size=16 * 1024 * 1024)
    app[LIMITS] = limits
    image_api = ImageApi(ctx, call)

    async def images_start_up(_app: web.Application) -> None:
        try:
            await image_api.start_up()
        except HyprError as exc:  # the daemon still serves networks and built-in images
            log.error("image store: %s", exc.message)
        except Exception:
            log.exception("image store start-up failed")

    app.on_startup.append(images_start_up)
    every = [
        *Api(ctx, call).routes(),
        *ContainerApi(ctx, call, image_api.collect_garbage).routes(),
        *ExecApi(ctx, call).routes(),
        *image_api.routes(),
        *SystemApi(ctx, call).routes(),
    ]
    for method, path, handler in every:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, r"/v{version:[0-9]+\.[0-9]+}" + path, handler)
    app.router.add_route("*", "/{path:.*}", unsupported)  # last: whatever no route above takes
    return app


SWARM = ("swarm", "services", "nodes", "tasks", "secrets", "configs")


async def unsupported(request: web.Request) -> web.Response:
    """Anything hypr does not implement says so by name, never a bare "Not Found". Swarm answers as a Docker
    engine outside a swarm does (503), so clients that clean up after themselves carry on."""
    path = request.match_info["path"]
    parts = path.split("/")
    if parts and parts[0].startswith("v") and parts[0][1:].replace(".", "").isdigit():
        parts = parts[1:]
    if parts and parts[0] in SWARM:
        message = "This node is not part of a swarm"
        return json_response({"message": message}, status=503)
    return json_response({"message": f"{request.method} /{'/'.join(parts)} is not implemented by hypr"}, status=404)
