"""What every API handler shares: the error middleware, JSON in and out, Docker's query conventions."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hypr import __version__
from hypr.api import schema
from hypr.errors import HyprError, InvalidParameter

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
    """The body as JSON: not UTF-8, not JSON, or nested too deep for the parser are 400s, never 500s."""
    if not request.can_read_body:
        return {}
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidParameter(f"invalid JSON: the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InvalidParameter(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise InvalidParameter("invalid JSON: nested too deeply") from None


def query_filters(request: web.Request) -> dict[str, list[str]]:
    """Docker's `filters` query: JSON map of name -> list (or the old map of name -> {value: true})."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidParameter(f"invalid filter: {raw}") from None
    if not isinstance(data, dict) or not all(isinstance(v, list | dict) for v in data.values()):
        raise InvalidParameter(f"invalid filter: {raw}")
    return {
        str(k): [str(x) for x in v] if isinstance(v, list) else [x for x, on in v.items() if on]
        for k, v in data.items()
    }


async def read_object(request: web.Request, shape: schema.Schema | None = None, struct: str = "") -> dict[str, Any]:
    """A JSON object body (an absent body is an empty one), its fields' types checked against `shape` (Docker's
    Go struct `struct`) before anything reads them."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: expected an object")
    if shape is not None:
        schema.check(body, shape, struct)
    return body


def query_bool(request: web.Request, key: str) -> bool:
    """Docker's httputils.BoolValue: anything but empty, 0, no, false or none is true (`force=1`, `force=yes`)."""
    return request.query.get(key, "").strip().lower() not in ("", "0", "no", "false", "none")
