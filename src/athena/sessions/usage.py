"""Usage figures from usage rows: per device and per local day, turns, sessions, session lengths, the share of
each answer path and latency percentiles per path. Pure functions (the manager reads the rows).

Percentiles are nearest-rank over the exact latencies (rows are kept, not histograms), so a test can compute
them independently. A session counts on the day of its first turn; "start over" and refused turns count as
turns but not towards sessions or their lengths.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from typing import Any

from athena.records import USAGE_PATHS, UsageRow

LATENCY_PATHS = ("local", "llm", "tools", "error")
# Turns per session, as the console's histogram shows them.
LENGTH_BUCKETS: tuple[tuple[str, int, float], ...] = (
    ("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6-10", 6, 10), ("11-20", 11, 20), ("21+", 21, math.inf),
)
_IN_SESSION = {"llm", "local", "tools", "error"}


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def local_day(ts: float, zone: tzinfo | None) -> str:
    return datetime.fromtimestamp(ts, zone).date().isoformat()


def summarize(rows: Iterable[UsageRow]) -> dict[str, Any]:
    """The figures of one set of rows (one device-day, one device, or everything)."""
    rows = list(rows)
    paths: dict[str, int] = dict.fromkeys(USAGE_PATHS, 0)
    latencies: dict[str, list[float]] = defaultdict(list)
    sessions: dict[str, list[UsageRow]] = defaultdict(list)
    tool_calls = 0
    for r in rows:
        paths[r.path] = paths.get(r.path, 0) + 1
        latencies[r.path].append(r.latency_ms)
        tool_calls += r.tools
        if r.path in _IN_SESSION and r.session_id:
            sessions[r.session_id].append(r)
    turns = len(rows)
    lengths = [len(s) for s in sessions.values()]
    durations = [max(r.ts for r in s) - min(r.ts for r in s) for s in sessions.values()]
    return {
        "turns": turns,
        "sessions": len(sessions),
        "paths": paths,
        "share": {p: (round(n / turns, 4) if turns else 0.0) for p, n in paths.items()},
        "tool_calls": tool_calls,
        "latency_ms": {
            p: {"n": len(ms), "p50": percentile(ms, 50), "p95": percentile(ms, 95)}
            for p in LATENCY_PATHS
            if (ms := latencies[p]) is not None
        },
        "session_turns": {
            label: sum(1 for n in lengths if low <= n <= high) for label, low, high in LENGTH_BUCKETS
        },
        "session_seconds": {"p50": percentile(durations, 50), "p95": percentile(durations, 95)},
    }


def first_turns(rows: Sequence[UsageRow]) -> dict[str, float]:
    """Each session's first turn, which files it under a day."""
    first: dict[str, float] = {}
    for r in rows:
        if r.path in _IN_SESSION and r.session_id and r.ts < first.get(r.session_id, math.inf):
            first[r.session_id] = r.ts
    return first


def report(rows: Sequence[UsageRow], zone: tzinfo | None) -> dict[str, Any]:
    """Totals, per local day and per device (each with its own days). A session's turns all count with the
    day its first turn fell on, so a session across midnight is one session of the right length."""
    first = first_turns(rows)

    def day_of(r: UsageRow) -> str:
        return local_day(first.get(r.session_id, r.ts) if r.path in _IN_SESSION else r.ts, zone)

    def by_day(some: Sequence[UsageRow]) -> list[dict[str, Any]]:
        days: dict[str, list[UsageRow]] = defaultdict(list)
        for r in some:
            days[day_of(r)].append(r)
        return [{"day": d, **summarize(days[d])} for d in sorted(days)]

    devices: dict[str, list[UsageRow]] = defaultdict(list)
    for r in rows:
        devices[r.device].append(r)
    return {
        "totals": summarize(rows),
        "days": by_day(rows),
        "devices": [
            {"device": d, **summarize(devices[d]), "days": by_day(devices[d])} for d in sorted(devices)
        ],
    }
