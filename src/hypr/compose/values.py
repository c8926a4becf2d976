"""Compose's shared value shapes (pure): string_or_list and byte sizes."""

from __future__ import annotations

import re
from typing import Any

from hypr.compose.errors import ComposeError

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmg]?)b?$", re.IGNORECASE)


def parse_bytes(value: Any, where: str) -> int:
    """compose's byte values: a number, or a string such as `64m`, `1.5g`, `512kb`."""
    match = _SIZE.match(str(value))
    if not match:
        raise ComposeError(f"{where}: invalid size {value!r}")
    units = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
    return int(float(match[1]) * units[match[2].lower()])


def one_or_many(value: Any) -> tuple[str, ...]:
    """compose's string_or_list; absent is empty."""
    if value is None:
        return ()
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)
