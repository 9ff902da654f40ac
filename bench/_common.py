"""Shared by the benchmarks: realistic grid-forecasting LLM calls, the SDK values an app builds from them,
percentiles, and output (one JSON object on stdout, progress on stderr).

A call here is what the forecasting assistant holds after the provider answers: a system and a user message
(~1 KB together), three retrieved documents of 300-500 characters, model and parameters, a structured JSON
forecast with a short text, and token usage. `CallInputs` is that raw material; `build_call` turns it into
the SDK value objects, which is the part of recording an app pays for on its own thread.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from producers.recorder import Recorder
from producers.values import (
    Bundle,
    Classification,
    Document,
    Message,
    ModelCall,
    Output,
    Params,
    Prompt,
    Retrieval,
    Rollout,
    Usage,
)
from schemas.hashing import sha256_hex

REGIONS = ("north", "south", "coastal", "metro", "valley", "highland", "lakes", "plains")
_WIND = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
_SHAPE = (0.80, 0.76, 0.74, 0.73, 0.74, 0.79, 0.90, 1.02, 1.08, 1.06, 1.03, 1.01,
          1.00, 0.99, 0.98, 1.00, 1.06, 1.15, 1.19, 1.16, 1.09, 1.00, 0.92, 0.85)
_START = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)



# -- output ----------------------------------------------------------------------------------------

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


# -- documents -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DocSpec:
    doc_id: str
    version: str
    source: str
    content: str
    sha256: str


def _pad(rng: random.Random, text: str, extra: Sequence[str], low: int = 300, high: int = 500) -> str:
    """Append extra sentences until the text is `low`..`high` characters long."""
    target = rng.randint(low, high)
    parts = list(extra)
    rng.shuffle(parts)
    for part in parts:
        if len(text) >= target:
            break
        text += " " + part
    return text[:high]


def _weather_doc(rng: random.Random, region: str, day: date) -> DocSpec:
    tmin = round(rng.uniform(-8, 12), 1)
    tmax = round(tmin + rng.uniform(4, 11), 1)
    run = datetime.combine(day - timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=6 * rng.randrange(4))
    text = (f"Met-service forecast for {region}, {day.isoformat()} (run {run:%Y-%m-%d %HZ}): min {tmin} °C, "
            f"max {tmax} °C, wind {rng.randrange(4, 45)} km/h {rng.choice(_WIND)}, cloud cover "
            f"{rng.randrange(0, 101, 5)}%, chance of precipitation {rng.randrange(0, 91, 10)}%.")
    extra = [f"Overnight frost likely in sheltered parts of {region}.",
             "A weak front crosses during the afternoon, bringing patchy rain and a wind shift.",
             f"Dew point near {round(tmin - 2, 1)} °C; fog possible around dawn in valleys.",
             "Confidence in the maximum is moderate: models disagree on cloud break-up after midday.",
             "Solar irradiance near the seasonal normal; rooftop PV output expected around 60% of clear-sky.",
             "Gusts to 55 km/h on exposed ridges; no severe-weather warnings in force."]
    return DocSpec(f"weather/{region}/{day.isoformat()}", f"run-{run:%Y-%m-%dT%HZ}", "met-service",
                   _pad(rng, text, extra), "")


def _scada_doc(rng: random.Random, region: str, day: date) -> DocSpec:
    base = rng.uniform(450, 2200)
    readings = ", ".join(f"{h:02d}:00 {base * _SHAPE[h] * rng.gauss(1, 0.01):.0f}" for h in range(6, 14))
    text = f"SCADA hourly load, {region}, {day.isoformat()} 06:00-13:00Z (MW): {readings}."
    extra = [f"Feeder {rng.randrange(10, 99)} back in service since 04:12Z after planned maintenance.",
             "Two industrial customers on interruptible tariffs curtailed 18 MW between 07:00 and 09:00.",
             "Telemetry gap of 4 minutes at 10:03Z filled by linear interpolation.",
             f"Embedded generation estimated at {rng.randrange(20, 140)} MW from sampled inverters.",
             "Readings are provisional until the end-of-day settlement run."]
    return DocSpec(f"scada/{region}/{day.isoformat()}", rng.choice(("through-1300Z", "through-1400Z", "final")),
                   "scada-historian", _pad(rng, text, extra), "")


def _calendar_doc(rng: random.Random, day: date) -> DocSpec:
    text = (f"{day.isoformat()} is a {day:%A}: "
            + ("weekend profile, later morning ramp, lower daytime load." if day.weekday() >= 5
               else "normal working day, schools in session, commercial load at seasonal level."))
    extra = ["District heating plant at reduced output for inspection.",
             "Large venue event in the metro area in the evening: expect +40 MW around 19:00.",
             "Street-lighting schedule follows the astronomical clock.",
             "No planned transmission outages affecting the region.",
             "Tariff change takes effect at midnight; demand response programmes unchanged."]
    return DocSpec(f"calendar/{day.isoformat()}", rng.choice(("2026-rev1", "2026-rev2")), "ops-calendar",
                   _pad(rng, text, extra), "")


def document_pool(rng: random.Random, size: int = 1000) -> list[DocSpec]:
    """`size` distinct (doc_id, version) documents across regions and days, with their content hashes."""
    docs: dict[tuple[str, str], DocSpec] = {}
    day0 = _START.date()
    while len(docs) < size:
        day = day0 + timedelta(days=rng.randrange(120))
        kind = rng.random()
        if kind < 0.45:
            d = _weather_doc(rng, rng.choice(REGIONS), day)
        elif kind < 0.9:
            d = _scada_doc(rng, rng.choice(REGIONS), day)
        else:
            d = _calendar_doc(rng, day)
        docs.setdefault((d.doc_id, d.version), DocSpec(d.doc_id, d.version, d.source, d.content,
                                                       sha256_hex(d.content)))
    return list(docs.values())


