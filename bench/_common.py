"""Shared by the benchmarks: progress on stderr, the one JSON object on stdout, the host, percentiles, ratios
and goals. The workload they measure is in _workload.py (calls and cycles) and _corpus.py (documents and
prompt templates)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

_T0 = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """The one JSON object a benchmark prints on stdout."""
    print(json.dumps(result, indent=2, sort_keys=False, default=str), flush=True)


def machine() -> dict[str, Any]:
    """Enough about the host to read absolute numbers with care (load average: the machine is shared)."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def percentiles(samples: Sequence[float], scale: float = 1.0, digits: int = 2) -> dict[str, float]:
    """p50/p99/p999/mean/max of `samples` times `scale` (nearest-rank percentiles)."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    n = len(ordered)

    def rank(q: float) -> float:
        return ordered[min(n - 1, max(0, int(q * n + 0.5) - 1))] * scale

    return {
        "n": n,
        "p50": round(rank(0.50), digits),
        "p90": round(rank(0.90), digits),
        "p99": round(rank(0.99), digits),
        "p999": round(rank(0.999), digits),
        "mean": round(sum(ordered) / n * scale, digits),
        "max": round(ordered[-1] * scale, digits),
    }


def ratio(ours: float, theirs: float, digits: int = 2) -> float | None:
    return None if not theirs else round(ours / theirs, digits)


def goal(value: float, limit: float, unit: str, *, at_least: bool = False) -> dict[str, Any]:
    met = value >= limit if at_least else value <= limit
    return {"value": value, "goal": f"{'>=' if at_least else '<='} {limit:g} {unit}", "met": met}
