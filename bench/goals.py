"""The one line format in which every bench/ script states a goal of issue #16 and whether this run met it:

    GOAL  cli: hypr ps / docker ps (same socket, median wall) ....... 1.84x   goal <= 2.5x   met

`make bench` output can be grepped for `^GOAL` to get the whole table at once.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def goal_line(what: str, value: float, goal: float, *, at_least: bool = False, unit: str = "x") -> str:
    """`value` against `goal`: at most `goal` (latency ratios, added ms) unless `at_least` (qps ratios)."""
    met = value >= goal if at_least else value <= goal
    sign = ">=" if at_least else "<="
    shown = f"{value:.2f}{unit}" if unit in ("x", " s") else f"{value:.0f}{unit}"  # ratios, seconds; ms, MB, counts
    target = f"{sign} {goal:g}{unit}"
    return f"GOAL  {what:<62} {shown:>9}   goal {target:<9}  {'met' if met else 'NOT met'}"


def report(what: str, value: float, goal: float, *, at_least: bool = False, unit: str = "x") -> bool:
    """Print the goal line; True when met."""
    print(goal_line(what, value, goal, at_least=at_least, unit=unit), flush=True)
    return value >= goal if at_least else value <= goal


def not_measured(what: str, why: str) -> None:
    """A goal this run could not measure (a tool missing): said on the same kind of line, never silently left out."""
    print(f"GOAL  {what:<62} NOT measured: {why}", flush=True)


def median_ms(seconds: Sequence[float]) -> float:
    return statistics.median(seconds) * 1000
