"""The `hypr` console script: hypr.cli.main's `run`, started and ended the quick way.

A `hypr` command is a fresh interpreter whose start-up and exit are most of its cost (docs/performance.md):

- the cyclic garbage collector is off while click and the command's module are imported: they make tens of
  thousands of long-lived objects and no garbage, and the collections that those allocations trigger cost ~3 ms.
  The group's callback (`hypr.cli.main.cli`), which runs once the command is found, freezes what was imported
  (later collections skip it) and turns the collector back on for the command itself;
- the process ends with `os._exit` once stdout and stderr are flushed: an interpreter's normal exit tears down
  every module and object one by one (~7 ms here), for memory the kernel frees at once. No command leaves
  anything for that exit to do: no atexit handlers, threads only as daemons, files closed by their `with`.

This module is the console script's target, not `hypr.cli.main`, so that importing the CLI elsewhere (tests, the
bench) keeps the collector and the normal exit.
"""

import gc

gc.disable()

import os  # noqa: E402
import sys  # noqa: E402
from typing import NoReturn  # noqa: E402

from hypr.cli.main import run  # noqa: E402


def main() -> NoReturn:
    code = run()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except OSError:  # e.g. `hypr ps | head -1`: the ordinary exit reports it as it always did
        sys.exit(code)
    os._exit(code)
