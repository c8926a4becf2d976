"""The client's HTTP/1.1 over a unix socket, against a scripted peer: framing (Content-Length, chunked, until
close), kept connections, a kept connection the daemon closed meanwhile, and the error mapping."""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hypr.client import Client, quote
from hypr.errors import Conflict, NotFound, Unavailable


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
            while len(body) < length:
                body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


Script = Callable[[socket.socket, list[bytes]], None]


@pytest.fixture
def peer() -> Iterator[Callable[[Script], tuple[Client, list[bytes], list[int]]]]:
    """A unix socket served by `script(connection, requests)` per accepted connection."""
    directory = tempfile.mkdtemp(prefix="hypr-client-")
    path = str(Path(directory) / "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    requests: list[bytes] = []
    accepted = [0]
    clients: list[Client] = []

    def start(script: Script) -> tuple[Client, list[bytes], list[int]]:
        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                accepted[0] += 1
                with conn:
                    script(conn, requests)

        threading.Thread(target=serve, daemon=True).start()
        client = Client(f"unix://{path}", timeout=5)
        clients.append(client)
        return client, requests, accepted

    yield start
    for client in clients:
        client.close()
    listener.close()
    Path(path).unlink()
    Path(directory).rmdir()


def answer(status: str, body: bytes, headers: str = "Content-Type: application/json\r\n") -> bytes:
    return f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body


def keep_answering(reply: bytes) -> Script:
    def script(conn: socket.socket, requests: list[bytes]) -> None:
        while request := _read_request(conn):
            requests.append(request)
            conn.sendall(reply)

    return script


def test_a_kept_connection_carries_the_next_request(peer) -> None:  # type: ignore[no-untyped-def]
    client, requests, accepted = peer(keep_answering(answer("200 OK", b'{"Version": "1"}')))
    assert client.version() == {"Version": "1"}
    assert client.version() == {"Version": "1"}
    assert accepted[0] == 1
    assert requests[0].startswith(b"GET /v1.56/version HTTP/1.1\r\n")


def test_the_body_is_json_with_its_length_and_params_are_encoded(peer) -> None:  # type: ignore[no-untyped-def]
    client, requests, _ = peer(keep_answering(answer("201 Created", b'{"Id": "abc"}')))
    assert client.create_container({"Image": "busybox", "Cmd": ["echo", "hé"]}, name="a b") == "abc"
    head, _, body = requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1.56/containers/create?name=a%20b HTTP/1.1\r\n")
    assert b"Content-Type: application/json" in head
    assert body == '{"Image":"busybox","Cmd":["echo","hé"]}'.encode()


def test_quoting_is_urllib_s() -> None:
    from urllib.parse import quote as reference

    for text in ("a b/c:d@e", "é+&=?#%", "nginx:1.25", "~._-", "127.0.0.1:5000/app@sha256:ab", '{"label":["a=b c"]}'):
        for safe in ("", "/:@"):
            assert quote(text, safe) == reference(text, safe=safe)


def test_errors_map_to_their_status(peer) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = peer(keep_answering(answer("404 Not Found", b'{"message": "No such container: x"}')))
    with pytest.raises(NotFound, match="No such container: x"):
        client.container("x")


def test_an_error_without_json_keeps_its_text(peer) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = peer(keep_answering(answer("409 Conflict", b"taken", "Content-Type: text/plain\r\n")))
    with pytest.raises(Conflict, match="^taken$"):
        client.start("x")


def test_a_chunked_stream_arrives_chunk_by_chunk(peer) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()

    def script(conn: socket.socket, requests: list[bytes]) -> None:
        requests.append(_read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        release.wait(5)  # the first chunk must reach the reader before the rest is sent
        conn.sendall(b"6;ext=1\r\n world\r\n0\r\n\r\n")

    client, _, _ = peer(script)
    chunks = client.logs("w", follow=True)
    assert next(chunks) == b"hello"
    release.set()
    assert list(chunks) == [b" world"]


def test_a_body_until_the_connection_ends(peer) -> None:  # type: ignore[no-untyped-def]
    def script(conn: socket.socket, requests: list[bytes]) -> None:
        requests.append(_read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nOK")

    client, _, accepted = peer(script)
    assert client.ping() and client.ping()
    assert accepted[0] == 2  # a connection that ends its body is not kept


def test_a_kept_connection_closed_by_the_daemon_is_replaced(peer) -> None:  # type: ignore[no-untyped-def]
    def script(conn: socket.socket, requests: list[bytes]) -> None:
        requests.append(_read_request(conn))
        conn.sendall(answer("200 OK", b"OK", "Content-Type: text/plain\r\n"))
        # then the daemon's idle timeout closes it

    client, requests, accepted = peer(script)
    assert client.ping()
    threading.Event().wait(0.05)  # liveness: let the peer close its end
    assert client.ping()
    assert accepted[0] == 2 and len(requests) == 2


def test_a_response_cut_short_is_unavailable(peer) -> None:  # type: ignore[no-untyped-def]
    def script(conn: socket.socket, requests: list[bytes]) -> None:
        requests.append(_read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{")

    client, _, _ = peer(script)
    with pytest.raises(Unavailable, match="Cannot connect to the hypr daemon"):
        client.info()


def test_no_daemon_is_unavailable(tmp_path: Path) -> None:
    with Client(f"unix://{tmp_path / 'none.sock'}") as client, pytest.raises(Unavailable, match="Is hyprd running"):
        client.ping()


def test_the_default_socket_is_the_daemon_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client computes it without importing hypr.config (start-up time): both must agree."""
    from hypr.client import socket_from_host
    from hypr.config import paths_from_env

    monkeypatch.delenv("HYPR_RUNTIME_DIR", raising=False)
    assert socket_from_host(None) == str(paths_from_env().socket)
    monkeypatch.setenv("HYPR_RUNTIME_DIR", "/tmp/x")
    assert socket_from_host(None) == str(paths_from_env().socket) == "/tmp/x/hypr.sock"
