"""Small parsers shared by every request validator: booleans, labels, timestamps. Pure."""

from __future__ import annotations

import re
import secrets
import signal as signals
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from hypr.errors import InvalidParameter

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_signal(text: str) -> signals.Signals:
    """A signal by name (`TERM`, `SIGTERM`, any case) or number; Docker's `Invalid signal: X` otherwise."""
    name = text.upper()
    try:
        return (
            signals.Signals(int(name))
            if name.isdigit()
            else signals.Signals[name if name.startswith("SIG") else "SIG" + name]
        )
    except (KeyError, ValueError):
        raise InvalidParameter(f"Invalid signal: {text}") from None


def new_id() -> str:
    return secrets.token_hex(32)


def now_rfc3339() -> str:
    """UTC with nanosecond digits, the way Docker prints `Created`."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"


def parse_bool(key: str, value: Any) -> bool:
    """Go's strconv.ParseBool, which Docker uses for driver options."""
    if isinstance(value, bool):
        return value
    text = str(value)
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidParameter(f'invalid value for {key}: "{text}" is not a boolean')


def string_map(what: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidParameter(f"invalid {what}: expected a map of strings")
    return dict(value)


def parse_until(text: str, now: datetime) -> datetime:
    """Docker's `until` filter: a unix timestamp, an RFC 3339 time, or a Go duration back from now."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidParameter(f"invalid filter 'until={text}': not a timestamp or duration")
    return now - timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


def parse_created(text: str) -> datetime:
    """Our own `Created` stamps (nanoseconds) back to a datetime."""
    return datetime.fromisoformat(text[:26] + "+00:00")


def label_matches(labels: Mapping[str, str], want: str) -> bool:
    """A `label` filter value: `k` (present) or `k=v` (equal)."""
    key, sep, value = want.partition("=")
    return key in labels and (not sep or labels[key] == value)


def strings(value: Any, what: str) -> list[str]:
    """A list of strings, Docker's []string; a bare string is refused (it would be split or silently wrapped)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameter(f"invalid {what}: expected a list of strings")
    return value


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    """A JSON object; an absent one is empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidParameter(f"invalid {what}: expected an object")
    return value


def flag(config: Mapping[str, Any], key: str) -> bool:
    """A boolean field: absent is false, anything but a JSON boolean is refused (Docker's "false" is not false)."""
    value = config.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidParameter(f"invalid {key}: expected a boolean, not {value!r}")
    return bool(value)
