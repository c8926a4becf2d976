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

    def request(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None, wait: bool = False
    ) -> Any:
        """`wait`: the call may legitimately take as long as a workload runs (no timeout)."""
        try:
            if wait:
                response = self.http.request(method, path, json=body, params=params, timeout=None)
            else:
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

    def nodes(self) -> list[dict[str, Any]]:
        """The hosts of this daemon's cluster (overlay networks; hypr's own path)."""
        return list(self.request("GET", "/hypr/nodes"))

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

    def connect(
        self, network: str, container: str, *, ip: str | None = None, aliases: list[str] | None = None,
        gw_priority: int = 0,
    ) -> None:  # fmt: skip
        config: dict[str, Any] = {"Aliases": aliases or [], "GwPriority": gw_priority}
        if ip:
            config["IPAMConfig"] = {"IPv4Address": ip}
        self.request(
            "POST", f"/networks/{_quote(network)}/connect", body={"Container": container, "EndpointConfig": config}
        )

    def disconnect(self, network: str, container: str, *, force: bool = False) -> None:
        self.request("POST", f"/networks/{_quote(network)}/disconnect", body={"Container": container, "Force": force})

    # -- workloads ----------------------------------------------------------------------------------------------

    def containers(self, *, all: bool = False, filters: Mapping[str, list[str]] | None = None) -> list[dict[str, Any]]:
        params: dict[str, str] = {"all": "1" if all else "0"}
        if filters:
            params["filters"] = json.dumps(filters)
        return list(self.request("GET", "/containers/json", params=params))

    def container(self, ref: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/containers/{_quote(ref)}/json"))

    def create_container(self, body: Mapping[str, Any], name: str | None = None) -> str:
        params = {"name": name} if name else None
        return str(self.request("POST", "/containers/create", body=body, params=params)["Id"])

    def start(self, ref: str) -> None:
        self.request("POST", f"/containers/{_quote(ref)}/start")

    def stop(self, ref: str, timeout: float | None = None) -> None:
        params = {"t": str(timeout)} if timeout is not None else None
        self.request("POST", f"/containers/{_quote(ref)}/stop", params=params)

    def restart(self, ref: str, timeout: float | None = None) -> None:
        params = {"t": str(timeout)} if timeout is not None else None
        self.request("POST", f"/containers/{_quote(ref)}/restart", params=params)

    def kill(self, ref: str, signal: str = "KILL") -> None:
        self.request("POST", f"/containers/{_quote(ref)}/kill", params={"signal": signal})

    def remove(self, ref: str, *, force: bool = False) -> None:
        self.request("DELETE", f"/containers/{_quote(ref)}", params={"force": "1"} if force else None)

    def rename(self, ref: str, new_name: str) -> None:
        self.request("POST", f"/containers/{_quote(ref)}/rename", params={"name": new_name})

    def wait(self, ref: str) -> int:
        return int(self.request("POST", f"/containers/{_quote(ref)}/wait", wait=True)["StatusCode"])

    def logs(self, ref: str, *, follow: bool = False, tail: str = "all") -> Iterator[bytes]:
        params = {"follow": "1" if follow else "0", "tail": tail, "stdout": "1", "stderr": "1"}
        return self.stream("GET", f"/containers/{_quote(ref)}/logs", params=params)

    def exec_argv(
        self, ref: str, cmd: list[str], *, env: list[str] | None = None, workdir: str | None = None
    ) -> list[str]:
        body = {"Cmd": cmd, "Env": env or [], "WorkingDir": workdir or ""}
        return list(self.request("POST", f"/containers/{_quote(ref)}/hypr-exec", body=body)["Argv"])

    # -- images -------------------------------------------------------------------------------------------------

    def pull(self, ref: str, *, platform: str | None = None) -> Iterator[dict[str, Any]]:
        """Docker's streamed pull progress, one JSON message at a time; an `error` message raises."""
        params = {"fromImage": ref, **({"platform": platform} if platform else {})}
        buffer = b""
        for chunk in self.stream("POST", "/images/create", params=params):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in filter(None, (raw.strip() for raw in lines)):
                message = json.loads(line)
                if "error" in message:
                    raise HyprError(str(message["error"]))
                yield message

    def images(self, *, filters: Mapping[str, list[str]] | None = None, all: bool = False) -> list[dict[str, Any]]:
        params: dict[str, str] = {"all": "1" if all else "0"}
        if filters:
            params["filters"] = json.dumps(filters)
        return list(self.request("GET", "/images/json", params=params))

    def image(self, ref: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/images/{_path(ref)}/json"))

    def image_history(self, ref: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/images/{_path(ref)}/history"))

    def remove_image(self, ref: str, *, force: bool = False) -> list[dict[str, str]]:
        return list(self.request("DELETE", f"/images/{_path(ref)}", params={"force": "1"} if force else None))

    def tag_image(self, ref: str, repo: str, tag: str | None = None) -> None:
        params = {"repo": repo, **({"tag": tag} if tag else {})}
        self.request("POST", f"/images/{_path(ref)}/tag", params=params)

    def prune_images(self, filters: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
        params = {"filters": json.dumps(filters)} if filters else None
        return dict(self.request("POST", "/images/prune", params=params))


def _path(ref: str) -> str:
    """Image names keep their slashes in the path, as the docker client sends them."""
    return urllib.parse.quote(ref, safe="/:@")


def _quote(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["message"])
    except (json.JSONDecodeError, KeyError, TypeError):
        return response.text or response.reason_phrase
