"""Running the image tools (skopeo, umoci): a missing tool and a hung one are errors that say so."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from hypr.errors import HyprError, Unavailable


def run_tool(
    argv: Sequence[str], *, timeout: float, package: str, timed_out: HyprError
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` with output captured and no stdin; the caller judges the exit code. Raises Unavailable when the
    tool is not installed (naming its Debian `package`) and `timed_out` after `timeout` seconds."""
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise Unavailable(f"images need {argv[0]} (Debian package {package})") from None
    except subprocess.TimeoutExpired:
        raise timed_out from None
