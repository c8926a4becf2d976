"""Reading a workload's log for `GET /containers/{id}/logs` (pure: files in, records out).

Two formats: a sandbox's `log.json`, Docker's json-file (runtime/relay.py writes it: one {"log", "stream", "time"}
object a line), and a VM's raw `log` (stdout and stderr as the guest wrote them, one stream, no times: served as
stdout). Docker's query: `stdout`/`stderr` select streams, `since`/`until` are Unix times (seconds, with an optional
fraction), `tail` counts the last records (lines) before the stream selection, as Docker's json-file reader does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from hypr.errors import InvalidParameter
from hypr.runtime.relay import NAMES, STDERR, STDOUT, rfc3339

CHUNK = 65536
_CODES = {name: code for code, name in NAMES.items()}


@dataclass(frozen=True)
class Record:
    stream: int  # 1 stdout, 2 stderr
    time: str  # RFC 3339 with nanoseconds, UTC ("" when the log has no times)
    data: bytes


@dataclass(frozen=True)
class Query:
    streams: frozenset[int]
    since: str = ""  # RFC 3339 (fixed width, so compared as text); "" for no bound
    until: str = ""
    tail: int | None = None  # None: all
    timestamps: bool = False

    def wants(self, record: Record) -> bool:
        if record.stream not in self.streams:
            return False
        if record.time and self.since and record.time < self.since:
            return False
        return not (record.time and self.until and record.time > self.until)


def parse_query(stdout: bool, stderr: bool, since: str, until: str, tail: str, timestamps: bool) -> Query:
    """Docker's checks and messages."""
    count = tail_count(tail)
    if not (stdout or stderr):
        raise InvalidParameter("Bad parameters: you must choose at least one stream")
    streams = frozenset(s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on)
    return Query(streams, unix_time(since, "since"), unix_time(until, "until"), count, timestamps)


def unix_time(text: str, name: str) -> str:
    """`1700000000`, `1700000000.5` (what the docker CLI sends for every form of --since) -> RFC 3339; 0 or ""
    is no bound."""
    if text in ("", "0"):
        return ""
    seconds, _, fraction = text.partition(".")
    if not seconds.lstrip("-").isdigit() or (fraction and not fraction.isdigit()):
        raise InvalidParameter(f"invalid value for {name}: {text}")
    return rfc3339(int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9]))


def tail_count(tail: str) -> int | None:
    """Docker's `tail`: "all" (None) or a number of lines; a negative number is all as well."""
    if tail in ("all", ""):
        return None
    try:
        count = int(tail)
    except ValueError:
        raise InvalidParameter(f"invalid tail value: {tail}") from None
    return None if count < 0 else count


def is_json_log(path: Path) -> bool:
    return path.suffix == ".json"


def parse(line: bytes, json_log: bool) -> Record | None:
    """One line of the log; None for a torn or foreign line."""
    if not json_log:
        return Record(STDOUT, "", line)
    try:
        entry = json.loads(line)
        return Record(_CODES[entry["stream"]], str(entry["time"]), str(entry["log"]).encode("utf-8", "surrogateescape"))
    except (ValueError, KeyError, TypeError):
        return None


def render(record: Record, query: Query) -> bytes:
    """The record's bytes as served: with `timestamps`, Docker's "<time> " before each one."""
    if query.timestamps and record.time:
        return record.time.encode() + b" " + record.data
    return record.data


def read_lines(handle: BinaryIO, limit: int) -> list[bytes]:
    """Up to `limit` complete lines from the current position; a last line without its newline (still being
    written) is left for the next read: the position stays at its start."""
    lines: list[bytes] = []
    while len(lines) < limit:
        start = handle.tell()
        line = handle.readline()
        if not line.endswith(b"\n"):
            handle.seek(start)
            break
        lines.append(line)
    return lines


def seek_to_last_lines(handle: BinaryIO, count: int) -> None:
    """Position `handle` at the start of its last `count` lines, reading backwards block by block: a log can be
    large, its tail is not."""
    end = handle.seek(0, os.SEEK_END)
    if count == 0:
        return
    position, data = end, b""
    while position > 0:
        step = min(CHUNK, position)
        position -= step
        handle.seek(position)
        data = handle.read(step) + data
        if data[:-1].count(b"\n") >= count:  # the final newline ends the last line, it does not start one
            break
    cut = len(data) - 1
    for _ in range(count):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            handle.seek(position)
            return
    handle.seek(position + cut + 1)


def now_rfc3339() -> str:
    return rfc3339(int(datetime.now(UTC).timestamp() * 1_000_000_000))
