"""The Python client for hyprd's API (the CLI and the tests use it). HTTP/1.1 over the daemon's unix socket.

The HTTP is a few lines over a socket, not httpx or http.client: every `hypr` command pays for what the client
imports, and those two cost 120 ms and 40 ms of a command's start (http.client pulls in email and ssl). The socket
is `_socket`'s, the C module under `socket`: socket.py itself builds four enums of every constant and imports
selectors, ~2 ms more of every command for nothing the client uses. What is
spoken is exactly what hyprd (aiohttp) needs: requests with a JSON or empty body, responses framed by
Content-Length, chunked transfer coding or the connection's end (RFC 9112 6.3). A connection is kept for the
next request unless the daemon closes it; a stream (logs, pull) has a connection of its own.
"""

from __future__ import annotations

import _socket
import io
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from hypr.errors import HyprError, Unavailable, from_status

API_PREFIX = "/v1.56"
DEFAULT_SOCKET = "/run/hypr/hypr.sock"  # config.Paths.socket for the default runtime dir (config imports too much)
READ_SIZE = 65536
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")  # RFC 3986 2.3


def quote(text: str, safe: str = "") -> str:
    """Percent-encoding of a path segment or query value (RFC 3986 2.1), UTF-8 first; what urllib.parse.quote
    does, without importing urllib.parse (and ipaddress with it) into every command."""
    keep = UNRESERVED | frozenset(safe.encode())
    # surrogateescape: an argument that is not UTF-8 (`hypr inspect $'caf\xe9'`) goes as the bytes it was
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in text.encode(errors="surrogateescape"))


def urlencode(params: Mapping[str, Any]) -> str:
    return "&".join(f"{quote(str(key))}={quote(str(value))}" for key, value in params.items())


def socket_from_host(host: str | None) -> str:
    """`-H unix:///path` (or a bare path) -> the socket path; default from HYPR_RUNTIME_DIR."""
    if not host:
        runtime_dir = os.environ.get("HYPR_RUNTIME_DIR")
        return f"{runtime_dir}/hypr.sock" if runtime_dir else DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://") :]
    if host.startswith("/"):
        return host
    raise Unavailable(f"unsupported host {host!r}: only unix:// sockets are supported")


class ProtocolError(OSError):
    """The daemon's answer was not HTTP/1.1 we can read (or the connection ended inside it)."""


class Closed(ProtocolError):
    """The connection ended before any byte of a response."""


class Response:
    """One HTTP/1.1 response read from `stream`: status line and headers at once, the body on demand."""

    def __init__(self, stream: Any, method: str) -> None:
        self._stream = stream  # a buffered binary reader over the socket
        line = stream.readline(65537)
        if not line:
            raise Closed("connection closed before the response")
        version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, self.reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {line[:80]!r}")
        self.status = int(code)
        self.headers: dict[str, str] = {}
        while (line := stream.readline(65537)) not in (b"\r\n", b"\n"):
            if not line:
                raise ProtocolError("connection closed inside the response headers")
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self._left: int | None = 0
        elif chunked:
            self._left = None
        else:
            self._left = int(length) if length is not None else -1  # -1: until the connection ends
        self._chunked = chunked and self._left is None
        connection = self.headers.get("connection", "").lower()
        persistent = connection == "keep-alive" if version == "HTTP/1.0" else connection != "close"  # RFC 9112 9.3
        self.reusable = self._left != -1 and persistent
        self.done = self._left == 0

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives (transfer coding removed); the response is `done` once this is exhausted."""
        if self._chunked:
            yield from self._dechunk()
        elif self._left is not None and self._left >= 0:
            while self._left > 0:
                data = self._stream.read1(min(self._left, READ_SIZE))
                if not data:
                    raise ProtocolError("connection closed inside the response body")
                self._left -= len(data)
                yield data
        else:
            while data := self._stream.read1(READ_SIZE):
                yield data
        self.done = True

    def _dechunk(self) -> Iterator[bytes]:
        while True:
            line = self._stream.readline(65537)
            size_text = line.split(b";", 1)[0].strip()
            if not line.endswith(b"\n") or not size_text:
                raise ProtocolError("connection closed inside a chunked body")
            size = int(size_text, 16)
            if size == 0:
                while self._stream.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields: none that we use
                return
            data = self._stream.read(size)
            if len(data) < size:
                raise ProtocolError("connection closed inside a chunk")
            self._stream.readline(65537)  # the CRLF after the chunk
            yield data

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def message(self, body: bytes) -> str:
        """The error text of a >= 400 answer: Docker's `{"message": ...}`, else the body, else the reason."""
        try:
            return str(json.loads(body)["message"])
        except (ValueError, KeyError, TypeError):
            return body.decode("utf-8", "replace") or self.reason


class _SocketReader(io.RawIOBase):
    """The raw stream `socket.makefile("rb")` would wrap the socket in: reads with the socket's timeout."""

    def __init__(self, sock: _socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)


class _Connection:
    def __init__(self, path: str, timeout: float | None) -> None:
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        except BaseException:
            self.sock.close()
            raise
        self.stream = io.BufferedReader(_SocketReader(self.sock))

    def alive(self) -> bool:
        """Whether an idle kept connection can carry another request: the daemon has not closed it (EOF) or
        sent anything unasked."""
        try:
            self.sock.settimeout(0)  # with a timeout, recv would wait for data first
            self.sock.recv(1, _socket.MSG_PEEK)  # b"": the daemon closed it; bytes: it sent something unasked
        except BlockingIOError:
            return True
        except OSError:
            pass
        return False

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


def _request_bytes(method: str, target: str, body: bytes | None) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: hypr\r\nAccept: */*\r\nUser-Agent: hypr\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    elif method in ("POST", "PUT", "PATCH"):
        head += "Content-Length: 0\r\n"
    return (head + "\r\n").encode("latin-1") + (body or b"")


class Client:
    def __init__(self, host: str | None = None, *, timeout: float = 120.0) -> None:
        self.socket = socket_from_host(host)
        self.timeout = timeout
        self._idle: list[_Connection] = []  # kept connections (list.pop/append: safe across threads)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self, method: str, path: str, body: Any, params: Mapping[str, Any] | None, timeout: float | None, *,
        keep: bool,
    ) -> tuple[_Connection, Response]:  # fmt: skip
        """Send one request on a kept connection (`keep`) or a new one; the response's head read."""
        target = API_PREFIX + path + ("?" + urlencode(params) if params else "")
        payload = None if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        request = _request_bytes(method, target, payload)
        while keep and self._idle:
            kept = self._idle.pop()
            if not kept.alive():
                kept.close()
                continue
            try:
                kept.sock.settimeout(timeout)
                kept.sock.sendall(request)
                return kept, Response(kept.stream, method)
            except (BrokenPipeError, ConnectionResetError, Closed):
                # The daemon closed it just now (its idle timeout) and answered nothing: the request goes again,
                # once, on a new connection, as browsers and urllib3 do for a kept connection.
                kept.close()
                break
            except (OSError, ValueError) as exc:
                kept.close()
                raise self._unreachable(exc) from exc
        connection = None
        try:
            connection = _Connection(self.socket, timeout)
            connection.sock.sendall(request)
            return connection, Response(connection.stream, method)
        except (OSError, ValueError) as exc:
            if connection is not None:
                connection.close()
            raise self._unreachable(exc) from exc

    def request(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None, wait: bool = False
    ) -> Any:
        """`wait`: the call may legitimately take as long as a workload runs (no timeout)."""
        connection, response = self._send(method, path, body, params, None if wait else self.timeout, keep=True)
        try:
            content = response.read()
        except (OSError, ValueError) as exc:
            connection.close()
            raise self._unreachable(exc) from exc
        if response.reusable:
            self._idle.append(connection)
        else:
            connection.close()
        if response.status >= 400:
            raise from_status(response.status, response.message(content))
        if not content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return json.loads(content)
        return content.decode("utf-8", "replace")

    def stream(self, method: str, path: str, *, params: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        """The response body as it arrives, on a connection of its own (closed when the stream ends or is
        dropped), without a timeout: a followed log may be quiet for hours."""
        connection, response = self._send(method, path, None, params, None, keep=False)
        try:
            if response.status >= 400:
                raise from_status(response.status, response.message(response.read()))
            yield from response.chunks()
        except (OSError, ValueError) as exc:
            raise self._unreachable(exc) from exc
        finally:
            connection.close()

    def _unreachable(self, exc: BaseException) -> HyprError:
        cause = exc.__cause__ or exc.__context__ or exc
        if isinstance(exc, PermissionError) or isinstance(cause, PermissionError) or "Permission denied" in str(exc):
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
        gw_priority: int = 0, ip6: str | None = None,
    ) -> None:  # fmt: skip
        config: dict[str, Any] = {"Aliases": aliases or [], "GwPriority": gw_priority}
        if ip:
            config["IPAMConfig"] = {"IPv4Address": ip}
        if ip6:
            config.setdefault("IPAMConfig", {})["IPv6Address"] = ip6
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

    def create_container(self, body: Mapping[str, Any], name: str | None = None, platform: str | None = None) -> str:
        params = {**({"name": name} if name else {}), **({"platform": platform} if platform else {})} or None
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

    def pause(self, ref: str, *, paused: bool = True) -> None:
        self.request("POST", f"/containers/{_quote(ref)}/{'pause' if paused else 'unpause'}")

    def top(self, ref: str, ps_args: str = "") -> dict[str, Any]:
        """Docker's top: {"Titles": [...], "Processes": [[...], ...]}."""
        params = {"ps_args": ps_args} if ps_args else None
        found: dict[str, Any] = self.request("GET", f"/containers/{_quote(ref)}/top", params=params)
        return found

    def remove(self, ref: str, *, force: bool = False) -> None:
        self.request("DELETE", f"/containers/{_quote(ref)}", params={"force": "1"} if force else None)

    def stats(self, ref: str) -> dict[str, Any]:
        """One sample of Docker's stats (stream=false), paired with one taken a second earlier (precpu_stats)."""
        found: dict[str, Any] = self.request("GET", f"/containers/{_quote(ref)}/stats", params={"stream": "0"})
        return found

    def update(self, ref: str, body: Mapping[str, Any]) -> list[str]:
        """Docker's container update (UpdateConfig); its Warnings."""
        answer = self.request("POST", f"/containers/{_quote(ref)}/update", body=dict(body))
        return list(answer.get("Warnings") or [])

    def rename(self, ref: str, new_name: str) -> None:
        self.request("POST", f"/containers/{_quote(ref)}/rename", params={"name": new_name})

    def wait(self, ref: str) -> int:
        return int(self.request("POST", f"/containers/{_quote(ref)}/wait", wait=True)["StatusCode"])

    def logs(self, ref: str, *, follow: bool = False, tail: str = "all") -> Iterator[bytes]:
        params = {"follow": "1" if follow else "0", "tail": tail, "stdout": "1", "stderr": "1"}
        return self.stream("GET", f"/containers/{_quote(ref)}/logs", params=params)

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
    return quote(ref, safe="/:@")


def _quote(ref: str) -> str:
    return quote(ref, safe="")
