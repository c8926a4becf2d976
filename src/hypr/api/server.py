"""The HTTP API on the unix socket: Docker Engine API paths and shapes, with or without a `/v1.NN` prefix.

Handlers only parse the request, hand the work to a service on the daemon's worker thread, and shape the answer.
Every `HyprError` becomes `{"message": ...}` with its status, in one middleware.
"""

from __future__ import annotations

import logging
import platform

from aiohttp import web

from hypr import __version__
from hypr.api import shapes
from hypr.api.common import (
    API_VERSION,
    MIN_API_VERSION,
    Call,
    Handler,
    errors_middleware,
    json_response,
    query_bool,
    query_filters,
    read_json,
)
from hypr.api.containers import ContainerApi
from hypr.api.images import ImageApi
from hypr.errors import HyprError
from hypr.services import network_plan, networks, system
from hypr.services.context import Context

log = logging.getLogger(__name__)


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

    async def network_list(self, request: web.Request) -> web.Response:
        filters = query_filters(request)
        snapshot = await self.call(self.ctx.store.snapshot)
        found = network_plan.list_networks(snapshot, filters)
        return json_response([shapes.network_inspect(n, snapshot) for n in found])

    async def network_inspect(self, request: web.Request) -> web.Response:
        snapshot = await self.call(self.ctx.store.snapshot)
        network = network_plan.find_network(snapshot, request.match_info["ref"])
        return json_response(shapes.network_inspect(network, snapshot))

    async def network_create(self, request: web.Request) -> web.Response:
        network = await self.call(networks.create, self.ctx, await read_json(request))
        return json_response({"Id": network.id, "Warning": ""}, status=201)

    async def network_remove(self, request: web.Request) -> web.Response:
        await self.call(networks.remove, self.ctx, request.match_info["ref"], force=query_bool(request, "force"))
        return web.Response(status=204)

    async def network_prune(self, request: web.Request) -> web.Response:
        deleted = await self.call(networks.prune, self.ctx, query_filters(request))
        return json_response({"NetworksDeleted": deleted})


def make_app(ctx: Context, call: Call) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=16 * 1024 * 1024)
    image_api = ImageApi(ctx, call)

    async def images_start_up(_app: web.Application) -> None:
        try:
            await image_api.start_up()
        except HyprError as exc:  # the daemon still serves networks and built-in images
            log.error("image store: %s", exc.message)
        except Exception:
            log.exception("image store start-up failed")

    app.on_startup.append(images_start_up)
    for method, path, handler in [*Api(ctx, call).routes(), *ContainerApi(ctx, call).routes(), *image_api.routes()]:
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
