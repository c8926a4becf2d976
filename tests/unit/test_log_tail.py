import io

import pytest

from hypr.api.logfile import CHUNK
from hypr.api.logfile import seek_to_last_lines as _seek_to_last_lines

CASES = [b"one\ntwo\nthree\n", b"one\ntwo\nthree", b"", b"x\n", b"line\n" * (3 * CHUNK // 5 + 7)]


@pytest.mark.parametrize("data", CASES)
@pytest.mark.parametrize("count", [0, 1, 2, 3, 10])
def test_tail_reads_only_the_last_lines(data: bytes, count: int) -> None:
    handle = io.BytesIO(data)
    _seek_to_last_lines(handle, count)
    assert handle.read() == (b"".join(data.splitlines(keepends=True)[-count:]) if count else b"")
