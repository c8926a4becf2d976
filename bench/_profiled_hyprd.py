"""hyprd with every worker-thread call profiled (cProfile), stats written to $HYPR_PROFILE at exit.

The worker thread runs every database and kernel operation, so that is where per-operation cost shows; cProfile
only follows the thread that enables it, hence the wrapper around `Daemon.call`. Used by `bench/scale.py --profile`.
$HYPR_PROFILE_ONLY (comma-separated function names, e.g. `connect,disconnect`) profiles only those calls.
"""

from __future__ import annotations

import atexit
import cProfile
import os
from typing import Any

from hypr import daemon

profile = cProfile.Profile()
_call = daemon.Daemon.call


ONLY = {name for name in os.environ.get("HYPR_PROFILE_ONLY", "").split(",") if name}


async def _profiled(self: daemon.Daemon, fn: Any, *args: Any, **kwargs: Any) -> Any:
    if ONLY and getattr(fn, "__name__", "") not in ONLY:
        return await _call(self, fn, *args, **kwargs)
    return await _call(self, lambda: profile.runcall(fn, *args, **kwargs))


daemon.Daemon.call = _profiled  # type: ignore[method-assign]
atexit.register(lambda: profile.dump_stats(os.environ["HYPR_PROFILE"]))
daemon.main()
