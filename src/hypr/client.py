"""The Python client for hyprd's API (the CLI and the tests use it). HTTP over the daemon's unix socket."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from hypr.config import paths_from_env
from hypr.errors import HyprError, Unavailable, from_status

API_PREFIX = "/v1.56"


def socket_from_host(host: str | None) -> str:
    """`-H unix:///path` (or a bare path) -> the socket path; default from HYPR_RUNTIME_DIR."""
    if not host:
        return str(paths_from_env().socket)
    if host.startswith("unix://"):
        return host[len("unix://") :]
    if host.startswith("/"):
        return host
    raise Unavailable(f"unsupported host {host!r}: only unix:// sockets are supported")


class Client:
    def __init__(self, host: str | None = None, *, timeout: float = 120.0) -> None:
        self.socket = socket_from_host(host)
        self.http = httpx.Client(
            transport=httpx.HTTPTransport(uds=self.socket), base_url="http://hypr" + API_PREFIX, timeout=timeout
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        try:
            response = self.http.request(method, path, json=body, params=params)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise from_status(response.status_code, _message(response))
        if not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def stream(self, method: str, path: str, *, params: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        try:
            with self.http.stream(method, path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise from_status(response.status_code, _message(response))
                yield from response.iter_raw()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> HyprError:
        cause = exc.__cause__ or exc.__context__ or exc
        if isinstance(cause, PermissionError) or "Permission denied" in str(exc):
            return Unavailable(
                f"permission denied while trying to connect to the hypr daemon socket at unix://{self.socket}"
            )
        return Unavailable(f"Cannot connect to the hypr daemon at unix://{self.socket}. Is hyprd running?")

    # -- system -------------------------------------------------------------------------------------------------

    def ping(self) -> bool:
        return bool(self.request("GET", "/_ping") == "OK")

    def version(self) -> dict[str, Any]:
        return dict(self.request("GET", "/version"))

    def info(self) -> dict[str, Any]:
        return dict(self.request("GET", "/info"))

    # -- networks -----------------------------------------------------------------------------------------------

    def networks(self, filters: Mapping[str, list[str]] | None = None) -> list[dict[str, Any]]:
        params = {"filters": json.dumps(filters)} if filters else None
        return list(self.request("GET", "/networks", params=params))

    def network(self, ref: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/networks/{_quote(ref)}"))

    def create_network(self, body: Mapping[str, Any]) -> str:
        return str(self.request("POST", "/networks/create", body=body)["Id"])

    def remove_network(self, ref: str, *, force: bool = False) -> None:
        self.request("DELETE", f"/networks/{_quote(ref)}", params={"force": "1"} if force else None)

    def prune_networks(self, filters: Mapping[str, list[str]] | None = None) -> list[str]:
        params = {"filters": json.dumps(filters)} if filters else None
        return list(self.request("POST", "/networks/prune", params=params)["NetworksDeleted"] or [])


def _quote(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["message"])
    except (json.JSONDecodeError, KeyError, TypeError):
        return response.text or response.reason_phrase
