"""The HTTP API on the unix socket: Docker Engine API paths and shapes, with or without a `/v1.NN` prefix.

Handlers only parse the request, hand the work to a service on the daemon's worker thread, and shape the answer.
Every `HyprError` becomes `{"message": ...}` with its status, in one middleware.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hypr import __version__
from hypr.api import shapes
from hypr.errors import HyprError, InvalidParameter
from hypr.services import network_plan, networks, system
from hypr.services.context import Context

log = logging.getLogger(__name__)
API_VERSION = "1.56"
MIN_API_VERSION = "1.40"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Call = Callable[..., Awaitable[Any]]  # runs a service function on the worker thread: call(fn, ctx, *args)

HEADERS = {
    "Api-Version": API_VERSION,
    "Docker-Experimental": "false",
    "Ostype": "linux",
    "Server": f"hypr/{__version__}",
}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except HyprError as exc:
        response = json_response({"message": exc.message}, status=exc.status)
    except web.HTTPException as exc:
        response = json_response({"message": exc.reason}, status=exc.status)
    except Exception as exc:  # the API must answer, whatever broke; the log keeps the trace
        log.exception("unhandled error in %s %s", request.method, request.path)
        response = json_response({"message": f"internal error: {exc}"}, status=500)
    response.headers.update(HEADERS)
    return response


def json_response(data: Any, status: int = 200) -> web.Response:
    """Docker's client only decodes error bodies whose Content-Type is exactly `application/json` (no charset)."""
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json")


async def read_json(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return await request.json(loads=json.loads)
    except json.JSONDecodeError as exc:
        raise InvalidParameter(f"invalid JSON: {exc}") from None


def query_filters(request: web.Request) -> dict[str, list[str]]:
    """Docker's `filters` query: JSON map of name -> list (or the old map of name -> {value: true})."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidParameter(f"invalid filter: {raw}") from None
    if not isinstance(data, dict):
        raise InvalidParameter(f"invalid filter: {raw}")
    return {str(k): list(v) if isinstance(v, list) else [x for x, on in v.items() if on] for k, v in data.items()}


def query_bool(request: web.Request, key: str) -> bool:
    return request.query.get(key, "").lower() in ("1", "true", "yes")


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


def make_app(api: Api) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=16 * 1024 * 1024)
    for method, path, handler in api.routes():
        app.router.add_route(method, path, handler)
        app.router.add_route(method, r"/v{version:[0-9]+\.[0-9]+}" + path, handler)
    return app
