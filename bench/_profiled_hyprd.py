"""hyprd with every worker-thread call profiled (cProfile), stats written to $HYPR_PROFILE at exit.

The worker thread runs every database and kernel operation, so that is where per-operation cost shows; cProfile
only follows the thread that enables it, hence the wrapper around `Daemon.call`. Used by `bench/scale.py --profile`.
$HYPR_PROFILE_ONLY (comma-separated function names, `connect` or `hypr.services.networks.create`) profiles only
those calls. $HYPR_PROFILE.calls gets one line per profiled call: its name, ms waiting for the worker, ms on it;
$HYPR_PROFILE.gc one per garbage collection: its generation and pause in ms.
"""

from __future__ import annotations

import atexit
import cProfile
import gc
import os
import time
from typing import Any

from hypr import daemon

profile = cProfile.Profile()
_call = daemon.Daemon.call


ONLY = {name for name in os.environ.get("HYPR_PROFILE_ONLY", "").split(",") if name}


PROFILE = os.environ.get("HYPR_PROFILE_CPU", "1") != "0"  # 0: only time the calls (no cProfile overhead)
TIMES: list[str] = []  # per profiled call: name, ms waiting for the worker, ms running there


async def _profiled(self: daemon.Daemon, fn: Any, *args: Any, **kwargs: Any) -> Any:
    name = getattr(fn, "__name__", "")
    if ONLY and name not in ONLY and f"{getattr(fn, '__module__', '')}.{name}" not in ONLY:
        return await _call(self, fn, *args, **kwargs)
    asked = time.perf_counter()
    began: list[float] = []

    def timed() -> Any:
        began.append(time.perf_counter())
        return profile.runcall(fn, *args, **kwargs) if PROFILE else fn(*args, **kwargs)

    try:
        return await _call(self, timed)
    finally:
        if began:
            TIMES.append(f"{name} {(began[0] - asked) * 1000:.2f} {(time.perf_counter() - began[0]) * 1000:.2f}\n")


PAUSES: list[str] = []  # per garbage collection: generation, ms
_gc_began = [0.0]


def _gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_began[0] = time.perf_counter()
    else:
        PAUSES.append(f"{info['generation']} {(time.perf_counter() - _gc_began[0]) * 1000:.2f}\n")


def _dump() -> None:
    profile.dump_stats(os.environ["HYPR_PROFILE"])
    with open(os.environ["HYPR_PROFILE"] + ".calls", "w") as out:
        out.writelines(TIMES)
    with open(os.environ["HYPR_PROFILE"] + ".gc", "w") as out:
        out.writelines(PAUSES)


gc.callbacks.append(_gc)


daemon.Daemon.call = _profiled  # type: ignore[method-assign]
atexit.register(_dump)
daemon.main()
