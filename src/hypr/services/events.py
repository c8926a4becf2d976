"""Docker's event stream (`GET /events`): what the services did, as Docker's `events.Message`.

The services emit on the daemon's worker thread; the API reads on the event loop. Events are kept in a bounded
in-memory ring (for `since`) and handed to live subscribers through their loop (`call_soon_threadsafe`), so a
slow reader never blocks an operation: each subscriber has a bounded queue, and one that falls that far behind is
dropped (its stream ends) rather than holding events without limit. Nothing survives a daemon restart, as in
Docker, whose ring is in memory too.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypr.errors import InvalidParameter

RING = 1024  # events kept for `since` (Docker keeps 256)
QUEUE = 4096  # events a subscriber may be behind before it is dropped
TYPES = ("container", "network", "image", "volume", "daemon", "plugin", "service", "node", "secret", "config")
FILTERS = ("type", "event", "container", "network", "label", "image", "volume", "daemon", "plugin", "scope", "node",
           "service", "secret", "config")  # fmt: skip


@dataclass(frozen=True)
class Event:
    type: str  # "container" | "network"
    action: str  # "create", "start", "die", "destroy", "connect", ...
    id: str  # the object's ID
    attributes: Mapping[str, str] = field(default_factory=dict)  # name, image, labels; for networks: container
    time_nano: int = 0

    def message(self) -> dict[str, Any]:
        """Docker's events.Message, with the pre-1.22 fields docker-py and old scripts still read."""
        message: dict[str, Any] = {
            "Type": self.type, "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": dict(self.attributes)}, "scope": "local",
            "time": self.time_nano // 1_000_000_000, "timeNano": self.time_nano,
        }  # fmt: skip
        if self.type == "container":
            message.update(status=self.action, id=self.id, **{"from": self.attributes.get("image", "")})
        return message


class Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE)

    def offer(self, event: Event | None) -> bool:
        """On the subscriber's loop: False when it is too far behind (it is then ended)."""
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            return False


class EventLog:
    def __init__(self, size: int = RING) -> None:
        self._ring: deque[Event] = deque(maxlen=size)
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()  # emit runs on the worker, subscribe on the event loop

    def emit(self, type_: str, action: str, id_: str, attributes: Mapping[str, str] | None = None) -> Event:
        event = Event(type_, action, id_, dict(attributes or {}), time.time_ns())
        with self._lock:
            self._ring.append(event)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            try:
                sub.loop.call_soon_threadsafe(self._deliver, sub, event)
            except RuntimeError:  # its loop is closed: the daemon is stopping
                self.unsubscribe(sub)
        return event

    def _deliver(self, sub: Subscriber, event: Event) -> None:
        if not sub.offer(event):
            self.unsubscribe(sub)
            sub.queue = asyncio.Queue(1)
            sub.queue.put_nowait(None)  # the stream ends: the client knows it missed events

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> tuple[Subscriber, list[Event]]:
        """A live subscriber and, taken atomically with it, the events kept so far (none is missed or doubled)."""
        sub = Subscriber(loop)
        with self._lock:
            self._subscribers.add(sub)
            return sub, list(self._ring)

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def past(self) -> list[Event]:
        with self._lock:
            return list(self._ring)


def check_filters(filters: Mapping[str, list[str]]) -> None:
    for key, values in filters.items():
        if key not in FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
        if key == "type" and any(v not in TYPES for v in values):
            raise InvalidParameter(f"invalid filter 'type={values[0]}'")


def matches(event: Event, filters: Mapping[str, list[str]]) -> bool:
    """Docker's event filters: values of one key are ORed, keys ANDed. `container`/`network` match a prefix of the
    actor's ID or name; `label` is `key` or `key=value` on the actor's attributes."""
    for key, values in filters.items():
        if not values:
            continue
        if key == "type" and event.type not in values:
            return False
        if key == "event" and not any(_action_matches(event.action, v) for v in values):
            return False
        if key in ("container", "network") and not _object_matches(event, key, values):
            return False
        if key == "label" and not all(_label(event.attributes, v) for v in values):
            return False
        if key == "image" and event.attributes.get("image") not in values:
            return False
        if key in ("volume", "daemon", "plugin", "node", "service", "secret", "config"):
            return False  # hypr emits none of these
    return True


def _action_matches(action: str, wanted: str) -> bool:
    """`exec_start: sh -c ...` matches `exec_start`, as in Docker."""
    return action == wanted or action.split(":", 1)[0] == wanted


def _object_matches(event: Event, key: str, values: Iterable[str]) -> bool:
    """Docker's fuzzy name match: a value is a prefix of the actor's ID or of its `name` attribute, whatever the
    event's type (so `container=web` keeps no network event, as in Docker)."""
    del key
    name = event.attributes.get("name", "")
    return any(v and (event.id.startswith(v) or name.startswith(v)) for v in values)


def _label(attributes: Mapping[str, str], spec: str) -> bool:
    key, sep, value = spec.partition("=")
    return key in attributes and (not sep or attributes[key] == value)
