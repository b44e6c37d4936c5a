"""The goals of issue 10 beside what a benchmark measured: one table per store.

A goal is stated for a workload (W10, or W50 = 5 x W10) and, for write goals, a change-set size;
at another scale it is printed for reference, not judged (even a ratio to the raw floor is not
scale-free: a start has fixed costs). Each row says ``met`` True or False, or None when not judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Goal:
    key: str  # the result's key
    what: str
    limit: float | Callable[[dict[str, Any]], float]  # at most this (a function of the results when it depends)
    unit: str = "s"
    scales: tuple[float, ...] = (1.0,)  # the workloads the goal is for, as fractions of W10
    stores: tuple[str, ...] = ("sqlite", "mysql")
    changes: int | None = None  # the change-set size the goal is for


def _write_limit(result: dict[str, Any]) -> float:
    # MariaDB: 2.5 s with a buffer pool that holds the tables, 3.5 s at the default 128 MiB
    return 3.5 if 0 < result.get("innodb_buffer_pool_mb", 0) <= 128 else 2.5


STORE_GOALS = (
    Goal("load_over_floor", "load (freeze included) / raw driver floor, same run", 1.5, "x", scales=(1.0, 5.0)),
    Goal("load_s", "load from SQLite at W50", 45.0, scales=(5.0,), stores=("sqlite",)),
    Goal("rss_mb", "RSS after load at W10", 1300.0, "MB"),
    Goal("rss_mb", "RSS after load at W50", 7000.0, "MB", scales=(5.0,)),
)

SERVER_GOALS = (
    Goal("load_s", "dynamod start -> ready line, SQLite", 8.0, stores=("sqlite",)),
    Goal("load_s", "dynamod start -> ready line, MariaDB", 12.0, stores=("mysql",)),
    Goal("load_over_floor", "start -> ready / raw driver floor, same run", 1.5, "x"),
    Goal("rss_mb", "dynamod RSS when ready", 1300.0, "MB"),
    Goal("walk_dirty_mb", "private memory a read-only walk of every file and block replica dirties", 200.0,
         "MB"),
    Goal("readers16_mb", "... 16 such readers (max_running), against 16 x the goal above", 3200.0, "MB"),
    Goal("first_line_ms_median", "dynamo call -> first output line, median", 40.0, "ms"),
    Goal("write_exit_to_done_s", "100k-record write application, exit -> done", _write_limit, changes=100_000),
    Goal("busy_write_p99_ms", "trivial call while a 100k-record write applies and commits, p99", 150.0, "ms",
         changes=100_000),
    Goal("busy_inject_p99_ms", "trivial call during a 1 M-file inject, p99", 150.0, "ms"),
)


def judge(goals: tuple[Goal, ...], kind: str, result: dict[str, Any], scale: float,
          changes: int | None = None) -> list[dict[str, Any]]:
    """The goals for store ``kind`` with what ``result`` measured (None when not measured)."""
    rows = []
    for goal in goals:
        if kind not in goal.stores:
            continue
        value = result.get(goal.key)
        limit = goal.limit(result) if callable(goal.limit) else goal.limit
        applies = scale in goal.scales and (goal.changes is None or goal.changes == changes)
        met = None if value is None or not applies else bool(value <= limit)
        workload = ", ".join(f"W{s * 10:g}" for s in goal.scales)
        rows.append({"goal": goal.what, "key": goal.key, "measured": value, "limit": limit, "unit": goal.unit,
                     "for": workload, "met": met})
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    """The rows as a text table: measured, goal, verdict."""
    lines = []
    width = max((len(r["goal"]) for r in rows), default=10)
    for r in rows:
        value = "not measured" if r["measured"] is None else f"{r['measured']:.2f} {r['unit']}"
        verdict = {True: "met", False: "NOT MET", None: "-"}[r["met"]]
        goal = f"<= {r['limit']:g} {r['unit']} ({r['for']})"
        lines.append(f"   {r['goal']:<{width}}  {value:>14}  {goal:<22} {verdict}")
    return "\n".join(lines)
