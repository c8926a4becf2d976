"""Byte-level checks of Docker's stream framing, the json-file log records and the detach keys."""

from __future__ import annotations

import io
import json
import os

import pytest

from hypr.api import logfile, streams
from hypr.errors import InvalidParameter
from hypr.runtime import relay


def test_a_frame_is_docker_s_eight_byte_header_then_the_payload() -> None:
    assert streams.frame(1, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert streams.frame(2, b"") == b"\x02\x00\x00\x00\x00\x00\x00\x00"
    big = b"x" * 70000
    assert streams.frame(2, big)[:8] == b"\x02\x00\x00\x00\x00\x01\x11\x70" and streams.frame(2, big)[8:] == big
    assert relay.frame(1, b"abc") == streams.frame(1, b"abc")


def test_client_messages_to_the_supervisor() -> None:
    assert streams.message(b"i", b"ab") == b"i\x00\x00\x00\x02ab"
    assert streams.message(b"c") == b"c\x00\x00\x00\x00"


def test_the_log_keeps_lines_per_stream_with_fixed_width_times() -> None:
    r, w = os.pipe()
    try:
        writer = relay.LogWriter(w)
        writer.write(relay.STDOUT, b"one\ntw")
        writer.write(relay.STDERR, b"err\n")
        writer.write(relay.STDOUT, b"o\n\xff\xfe\n")
        writer.write(relay.STDOUT, b"no newline")
        writer.flush()
        os.close(w)
        w = -1
        lines = os.read(r, 65536).splitlines(keepends=True)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    records = [logfile.parse(line, json_log=True) for line in lines]
    assert [(x.stream, x.data) for x in records if x] == [
        (1, b"one\n"), (2, b"err\n"), (1, b"two\n"), (1, b"\xff\xfe\n"), (1, b"no newline"),
    ]  # fmt: skip
    times = [json.loads(line)["time"] for line in lines]
    assert all(len(t) == 30 and t.endswith("Z") for t in times) and times == sorted(times)


def test_a_long_line_is_logged_in_pieces() -> None:
    r, w = os.pipe()
    writer = relay.LogWriter(w)
    writer.write(relay.STDOUT, b"y" * (relay.LINE_MAX + 5))
    writer.flush()
    os.close(w)
    with os.fdopen(r, "rb") as f:
        pieces = [logfile.parse(line, True) for line in f]
    assert [len(p.data) for p in pieces if p] == [relay.LINE_MAX, 5]


def test_replay_gives_frames_of_the_wanted_streams(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "log.json")
    with open(path, "wb") as f:
        f.write(relay.record(1, b"a\n", 1) + relay.record(2, b"b\n", 2) + b"torn")
    assert relay.replay_frames(path, 0, {1, 2}) == streams.frame(1, b"a\n") + streams.frame(2, b"b\n")
    assert relay.replay_frames(path, 0, {2}) == streams.frame(2, b"b\n")


def test_query_checks_and_time_bounds() -> None:
    with pytest.raises(InvalidParameter, match="at least one stream"):
        logfile.parse_query(False, False, "", "", "all", False)
    with pytest.raises(InvalidParameter, match="tail"):
        logfile.tail_count("ten")
    assert logfile.tail_count("-1") is None and logfile.tail_count("3") == 3
    query = logfile.parse_query(True, False, "1700000000.5", "1700000001", "all", True)
    assert query.since == "2023-11-14T22:13:20.500000000Z" and query.until == "2023-11-14T22:13:21.000000000Z"
    inside = logfile.Record(1, "2023-11-14T22:13:20.700000000Z", b"x\n")
    assert query.wants(inside) and logfile.render(inside, query) == b"2023-11-14T22:13:20.700000000Z x\n"
    assert not query.wants(logfile.Record(2, inside.time, b"x\n"))
    assert not query.wants(logfile.Record(1, "2023-11-14T22:13:21.000000001Z", b"late\n"))
    with pytest.raises(InvalidParameter):
        logfile.unix_time("yesterday", "since")


def test_raw_logs_are_stdout_and_torn_lines_wait() -> None:
    handle = io.BytesIO(b"one\ntwo")
    assert logfile.read_lines(handle, 10) == [b"one\n"] and handle.read() == b"two"
    assert logfile.parse(b"x\n", json_log=False) == logfile.Record(1, "", b"x\n")
    assert logfile.parse(b'{"log": 1}\n', json_log=True) is None


@pytest.mark.parametrize(
    ("chunks", "passed", "detached"),
    [
        ([b"abc"], b"abc", False),
        ([b"a\x10\x11b"], b"a", True),
        ([b"a\x10", b"\x11"], b"a", True),
        ([b"a\x10b"], b"a\x10b", False),  # a lone ctrl-p is passed on once it is clear it starts nothing
    ],
)
def test_detach_keys(chunks: list[bytes], passed: bytes, detached: bool) -> None:
    scanner = streams.DetachScanner(streams.DEFAULT_DETACH)
    out, seen = b"", False
    for chunk in chunks:
        data, seen = scanner.feed(chunk)
        out += data
    assert (out, seen) == (passed, detached)


def test_detach_keys_parse_docker_s_notation() -> None:
    assert streams.parse_detach_keys("") == b"\x10\x11"
    assert streams.parse_detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(InvalidParameter, match="Invalid detach keys"):
        streams.parse_detach_keys("ctrl-aa")


def test_the_client_demuxes_frames_fed_in_any_pieces() -> None:
    from hypr.stream_client import Demuxer

    wire = streams.frame(1, b"out\n") + streams.frame(2, b"err\n") + streams.frame(1, b"")
    for cut in range(len(wire) + 1):
        demux = Demuxer()
        got = demux.feed(wire[:cut]) + demux.feed(wire[cut:])
        assert got == [(1, b"out\n"), (2, b"err\n"), (1, b"")]


def test_the_client_reads_chunked_bodies() -> None:
    from hypr.stream_client import _chunks

    assert _chunks(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n") == ([b"abc", b"de"], None)
    assert _chunks(b"3\r\nabc\r\n5\r\nde") == ([b"abc"], b"5\r\nde")


def test_cli_times_for_since_and_until() -> None:
    from hypr.cli.workloads import unix_time

    assert unix_time("") == "" and unix_time("1700000000.5") == "1700000000.5"
    assert unix_time("10m", now=1000.0) == "400.000000000"
    assert unix_time("1h30m", now=10000.0) == "4600.000000000"
    assert unix_time("2023-11-14T22:13:20Z") == "1700000000.000000000"
