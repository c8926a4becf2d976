"""The cluster store: etcd 3.4 through its v3 JSON gateway (the etcd3gw client), synchronous and thread-safe per
call. Only what the cluster needs: reads of a prefix with the revision they saw, transactions, leases and a watch
loop that survives etcd restarts.

Every failure to reach etcd becomes `Unavailable` naming the store, so an overlay change made while etcd is down
fails with a message the user can act on; nothing here retries a write behind the caller's back.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import Etcd3Exception

from hypr.errors import InvalidParameter, Unavailable

log = logging.getLogger(__name__)
TIMEOUT = 2.0  # seconds per request: a change made while etcd is down fails this fast


Change = tuple[str, bytes | None]  # (key, new value); None: deleted


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    lease: int = 0


def parse_store_url(text: str) -> tuple[tuple[str, int], ...]:
    """`etcd://HOST:PORT[,HOST:PORT...]` -> ((host, port), ...). Raises InvalidParameter."""
    scheme, _, rest = text.partition("://")
    if scheme != "etcd" or not rest:
        raise InvalidParameter(f"cluster store {text}: expected etcd://HOST:PORT[,HOST:PORT...]")
    members = []
    for part in rest.rstrip("/").split(","):
        parsed = urlsplit(f"//{part}")
        if not parsed.hostname:
            raise InvalidParameter(f"cluster store {text}: {part} is not HOST:PORT")
        try:
            port = parsed.port or 2379
        except ValueError:
            raise InvalidParameter(f"cluster store {text}: bad port in {part}") from None
        members.append((parsed.hostname, port))
    return tuple(members)


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def _prefix_end(prefix: str) -> str:
    """The range end that covers every key starting with `prefix` (etcd's `--prefix`)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return _b64(bytes(raw))


# -- transaction operations (etcd's RequestOp / Compare as the gateway's JSON) ---------------------------------------


def put(key: str, value: str, lease: int = 0) -> dict[str, Any]:
    request: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        request["lease"] = str(lease)
    return {"request_put": request}


def delete(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": _b64(key)}}


def absent(key: str) -> dict[str, Any]:
    """Compare: the key does not exist (its create revision is 0)."""
    return {"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}


def present(key: str) -> dict[str, Any]:
    """Compare: the key exists."""
    return {"key": _b64(key), "result": "GREATER", "target": "CREATE", "create_revision": "0"}


def value_is(key: str, value: str) -> dict[str, Any]:
    return {"key": _b64(key), "result": "EQUAL", "target": "VALUE", "value": _b64(value)}


def prefix_empty(prefix: str) -> dict[str, Any]:
    """Compare over a range: no key under `prefix` exists (every key's create revision is below 1)."""
    return {"key": _b64(prefix), "range_end": _prefix_end(prefix), "result": "LESS", "target": "CREATE",
            "create_revision": "1"}  # fmt: skip


class EtcdStore:
    """One client per etcd member; a request goes to the member that answered last, then to the others."""

    def __init__(self, url: str, timeout: float = TIMEOUT) -> None:
        self.url = url
        self.members = parse_store_url(url)
        self.clients = [Etcd3Client(host=h, port=p, timeout=timeout, api_path="/v3/") for h, p in self.members]
        self.current = 0
        self.lock = threading.Lock()

    def _post(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        errors = []
        for step in range(len(self.clients)):
            index = (self.current + step) % len(self.clients)
            client = self.clients[index]
            try:
                answer: dict[str, Any] = client.post(client.get_url(path), json=body)
                self.current = index
                return answer
            except Etcd3Exception as exc:
                errors.append(f"{client.host}:{client.port}: {exc.detail_text or exc}")
            except requests.RequestException as exc:
                errors.append(f"{client.host}:{client.port}: {exc}")
        raise Unavailable(f"cluster store {self.url} is unreachable ({what}): {'; '.join(errors)}")

    def get_prefix(self, prefix: str) -> tuple[int, list[KeyValue]]:
        """Every key under `prefix` and the store revision the read saw (a watch from revision+1 misses nothing)."""
        answer = self._post("/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)}, f"read {prefix}")
        revision = int(answer["header"]["revision"])
        kvs = [
            KeyValue(
                base64.b64decode(kv["key"]).decode(), base64.b64decode(kv.get("value", "")), int(kv.get("lease", 0))
            )
            for kv in answer.get("kvs", [])
        ]
        return revision, kvs

    def txn(self, compare: Sequence[dict[str, Any]], success: Sequence[dict[str, Any]], what: str) -> bool:
        """One etcd transaction: `success` runs only when every comparison holds. True when it did."""
        answer = self._post("/kv/txn", {"compare": list(compare), "success": list(success)}, what)
        return bool(answer.get("succeeded"))

    def grant(self, ttl: int) -> int:
        answer = self._post("/lease/grant", {"TTL": str(ttl), "ID": "0"}, "grant a lease")
        return int(answer["ID"])

    def keepalive(self, lease: int) -> int:
        """The lease's new TTL in seconds; 0 when it has expired (its keys are gone)."""
        answer = self._post("/lease/keepalive", {"ID": str(lease)}, "keep the node's lease alive")
        return int(answer.get("result", {}).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        self._post("/kv/lease/revoke", {"ID": str(lease)}, "revoke the node's lease")

    def watch(self, prefix: str, revision: int, stop: threading.Event) -> Iterator[list[Change]]:
        """Batches of changes under `prefix` from `revision` on, until the stream breaks (etcd went away: the
        caller reads everything again and watches anew) or `stop` is set."""
        client = self.clients[self.current]
        request = {"create_request": {"key": _b64(prefix), "range_end": _prefix_end(prefix),
                                      "start_revision": str(revision)}}  # fmt: skip
        try:
            with client.session.post(client.get_url("/watch"), json=request, stream=True, timeout=(TIMEOUT, None)) as r:
                for line in r.iter_lines():
                    if stop.is_set():
                        return
                    if not line:
                        continue
                    result = json.loads(line).get("result", {})
                    if result.get("canceled") or result.get("compact_revision"):
                        return
                    if result.get("events"):
                        yield [_change(event) for event in result["events"]]
        except (requests.RequestException, ValueError) as exc:
            log.debug("watch %s ended: %s", prefix, exc)


def _change(event: dict[str, Any]) -> Change:
    kv = event["kv"]
    value = None if event.get("type") == "DELETE" else base64.b64decode(kv.get("value", ""))
    return base64.b64decode(kv["key"]).decode(), value


def watch_forever(
    store: EtcdStore,
    prefix: str,
    on_reset: Callable[[], int | None],
    on_changes: Callable[[list[Change]], None],
    stop: threading.Event,
    retry: float = 0.5,
) -> None:
    """Run in a thread: `on_reset()` reads the whole prefix (returning the revision it saw, or None when etcd was
    unreachable) at start and after every reconnect; `on_changes` gets every batch of changes in between."""
    while not stop.is_set():
        revision = on_reset()
        if revision is None:
            stop.wait(retry)
            continue
        for changes in store.watch(prefix, revision + 1, stop):
            if stop.is_set():
                return
            on_changes(changes)
        stop.wait(retry)
