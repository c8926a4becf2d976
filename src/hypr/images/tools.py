"""Running the image tools (skopeo, umoci): a missing tool and a hung one are errors that say so, and no tool
outlives the daemon that started it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from hypr.errors import HyprError, Unavailable

SETPRIV = "setpriv"  # util-linux


def bound_to_daemon(argv: Sequence[str], *, package: str) -> list[str]:
    """`argv` under `setpriv --pdeathsig KILL`: the tool dies with the daemon thread that started it (kill -9 of
    hyprd included). An orphaned skopeo or umoci would otherwise go on writing into the layout and tmp/ that the
    next hyprd cleans up and pulls into. Raises Unavailable when the tool is not installed (naming its Debian
    `package`)."""
    if shutil.which(argv[0]) is None:
        raise Unavailable(f"images need {argv[0]} (Debian package {package})")
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv]


def run_tool(
    argv: Sequence[str], *, timeout: float, package: str, timed_out: HyprError
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` (bound to the daemon) with output captured and no stdin; the caller judges the exit code. Raises
    Unavailable when the tool is not installed and `timed_out` after `timeout` seconds."""
    try:
        return subprocess.run(
            bound_to_daemon(argv, package=package), capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise timed_out from None
