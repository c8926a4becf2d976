"""hyprd with every worker-thread call profiled (cProfile), stats written to $HYPR_PROFILE at exit.

The worker thread runs every database and kernel operation, so that is where per-operation cost shows; cProfile
only follows the thread that enables it, hence the wrapper around `Daemon.call`. Used by `bench/scale.py --profile`.
"""

from __future__ import annotations

import atexit
import cProfile
import os
from typing import Any

from hypr import daemon

profile = cProfile.Profile()
_call = daemon.Daemon.call


async def _profiled(self: daemon.Daemon, fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await _call(self, lambda: profile.runcall(fn, *args, **kwargs))


daemon.Daemon.call = _profiled  # type: ignore[method-assign]
atexit.register(lambda: profile.dump_stats(os.environ["HYPR_PROFILE"]))
daemon.main()
