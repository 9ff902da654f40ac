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


# -- calls -----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Template:
    template_id: str
    version: str
    system: str
    user: str  # str.format template
    sha256: str


def _template(template_id: str, version: str, system: str, user: str) -> Template:
    return Template(template_id, version, system, user, sha256_hex(user))


_FORECAST_TASK = (
    "Forecast the hourly load in MW for the target day. Reply with JSON (hourly_mw, peak_mw, peak_hour, "
    "min_mw, min_hour, energy_mwh, confidence with a calibrated 90% band on the peak, drivers) and one short "
    "paragraph for the dispatch engineer naming the main drivers. Use the analogue day only to shape the "
    "profile, not its level. If the weather run is older than 12 hours, widen the band and say why. "
    "Never extrapolate SCADA readings across a holiday boundary.")
TEMPLATES = {
    "grid.day_ahead_load": _template(
        "grid.day_ahead_load", "4",
        "You are the day-ahead load forecasting assistant of a regional grid operator. Your forecasts feed "
        "unit commitment and reserve scheduling: be conservative on peaks, keep the hourly profile "
        "consistent with the retrieved metering, and say so plainly when inputs look stale or incomplete.",
        "Issue time: {issue_time}\nRegion: {region}\nTarget day: {target_date} ({weekday})\n\n"
        "Retrieved context (ids only, full text attached):\n{context}\n\n" + _FORECAST_TASK),
    "grid.system_summary": _template(
        "grid.system_summary", "2",
        "You consolidate regional day-ahead load forecasts for the system dispatch planner. Do not re-forecast "
        "a region; add the hourly values, find the coincident peak, and flag any region whose forecast is "
        "missing or was produced by a fallback model. Keep the answer short and machine-readable.",
        "Issue time: {issue_time}\nTarget day: {target_date} ({weekday})\nRegion: {region} and the others\n\n"
        "Regional forecasts (output ids attached):\n{context}\n\nAdd the regional hourly forecasts into the "
        "system forecast, report the coincident peak and its hour, the largest contributor, and list regions "
        "without a forecast. Reply with JSON (system_hourly_mw, system_peak_mw, system_peak_hour, "
        "regional_peaks_mw, missing_regions) and one sentence for the dispatch planner. If two regions peak "
        "within the same hour, say which one drives the system peak and by how much. Round to whole MW."),
    "grid.dispatch_note": _template(
        "grid.dispatch_note", "1",
        "You write the shift note that dispatch engineers read at handover. Be brief and specific: what "
        "changed since the last issue, which units may need to be committed, which risks to watch. Never "
        "invent numbers that are not in the forecast or the retrieved context; cite document ids in brackets.",
        "Issue time: {issue_time}\nTarget day: {target_date} ({weekday})\nLead region: {region}\n\n"
        "System forecast and retrieved context:\n{context}\n\nWrite the handover note for the evening shift: "
        "three bullet points at most, then a JSON block (commit_units, watch_items, confidence). Mention "
        "reserve margins only when they fall below 12%. Flag any input older than one issue cycle. Keep the "
        "note under 120 words; engineers read it on a console, not a report."),
    "grid.outage_triage": _template(
        "grid.outage_triage", "3",
        "You triage outage and alarm reports for the control room. Classify each report, estimate the load "
        "at risk from the retrieved metering, and recommend who should act. Say 'insufficient data' rather "
        "than guessing, and never recommend switching actions yourself.",
        "Issue time: {issue_time}\nRegion: {region}\nReport day: {target_date} ({weekday})\n\n"
        "Alarm and metering context:\n{context}\n\nClassify the reports (equipment, weather, third-party, "
        "unknown), estimate the MW at risk for the next six hours, and name the responsible team. Reply with "
        "JSON (category, mw_at_risk, team, urgency, evidence) and a two-sentence summary for the shift lead. "
        "Use urgency 'high' only when more than 50 MW or a hospital feeder is at risk."),
}
FEATURES = tuple(TEMPLATES)


@dataclass(frozen=True, slots=True)
class CallInputs:
    """What the app holds after the provider answered: strings and numbers, no SDK values yet."""

    feature: str
    template: Template
    region: str
    issue_time: str
    target_date: str
    weekday: str
    user: str
    query: str
    docs: tuple[tuple[str, str, str, str, float], ...]  # doc_id, version, source, content, score
    provider: str
    requested: str
    served: str
    fingerprint: str
    temperature: float
    max_tokens: int
    seed: int
    text: str
    structured: dict[str, Any]
    status: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd_micros: int
    latency_ms: float
    bundle: Bundle
    arm: str


def bundle_for(feature: str, canary: bool) -> Bundle:
    """Stand-in releases; the loader registers real ones (BundleRegistered) with `register_bundles`."""
    version = "2.1.0-rc1" if canary else "2.0.3"
    return Bundle(bundle_id=sha256_hex(f"bench/{feature}/{version}"), name=feature, version=version)


MODELS = (("northwind-ai", "nw-large", "nw-large-2026-01-15", "fp_7c1e2a"),
          ("eastgate-llm", "eg-pro", "eg-pro-0412", "fp_eg0412"))


def forecast_json(rng: random.Random, region: str, target: str) -> dict[str, Any]:
    base = rng.uniform(450, 2200)
    mw = [round(base * s * rng.gauss(1.0, 0.01), 1) for s in _SHAPE]
    peak, low = max(mw), min(mw)
    return {
        "region": region, "target_date": target, "unit": "MW", "hourly_mw": mw, "peak_mw": peak,
        "peak_hour": mw.index(peak), "min_mw": low, "min_hour": mw.index(low), "energy_mwh": round(sum(mw), 1),
        "confidence": {"level": 0.9, "peak_low_mw": round(peak * 0.96, 1), "peak_high_mw": round(peak * 1.04, 1)},
        "drivers": ["forecast minimum temperature drives heating load", "weekday profile"],
    }


def make_call(rng: random.Random, docs: Sequence[DocSpec], i: int,
              feature: str = "grid.day_ahead_load", bundles: dict[tuple[str, bool], Bundle] | None = None,
              ) -> CallInputs:
    """One varied call of `feature`; `i` moves the issue time forward. The system summary has no retrieval
    (its inputs are parent outputs); the other features retrieve three documents."""
    tpl = TEMPLATES[feature]
    region = REGIONS[i % len(REGIONS)]
    issue = _START + timedelta(hours=i // len(REGIONS))
    target = issue.date() + timedelta(days=1)
    picked = [] if feature == "grid.system_summary" else rng.sample(list(docs), 3)
    scores = sorted((round(rng.uniform(0.6, 0.95), 3) for _ in picked), reverse=True)
    if picked:
        context = "\n".join(f"- [{d.doc_id}@{d.version}] ({d.source})" for d in picked)
    else:
        context = "\n".join(f"- {r}: peak {rng.uniform(450, 2200):.0f} MW at {rng.randint(16, 19)}:00"
                            for r in REGIONS[:5])
    variables = {"issue_time": f"{issue:%Y-%m-%d %H:%M}Z", "region": region, "target_date": target.isoformat(),
                 "weekday": f"{target:%A}", "context": context}
    fc = forecast_json(rng, region, target.isoformat())
    provider, requested, served, fingerprint = MODELS[0] if rng.random() < 0.8 else MODELS[1]
    text = (f"{region.capitalize()} {feature.split('.')[1].replace('_', ' ')} for {target.isoformat()}: peak "
            f"{fc['peak_mw']:.0f} MW at {fc['peak_hour']:02d}:00 (90% band {fc['confidence']['peak_low_mw']:.0f}-"
            f"{fc['confidence']['peak_high_mw']:.0f} MW). Main drivers: {'; '.join(fc['drivers'])}.")
    canary = rng.random() < 0.1
    bundle = (bundles or {}).get((feature, canary)) or bundle_for(feature, canary)
    return CallInputs(
        feature=feature, template=tpl, region=region, issue_time=variables["issue_time"],
        target_date=variables["target_date"], weekday=variables["weekday"], user=tpl.user.format(**variables),
        query=f"{region} {feature} {target.isoformat()}",
        docs=tuple((d.doc_id, d.version, d.source, d.content, s) for d, s in zip(picked, scores, strict=True)),
        provider=provider, requested=requested, served=served, fingerprint=fingerprint, temperature=0.2,
        max_tokens=1200, seed=1234, text=text, structured=fc, status="OK" if rng.random() < 0.98 else "ERROR",
        prompt_tokens=rng.randint(900, 1300), completion_tokens=rng.randint(250, 420),
        cost_usd_micros=rng.randint(4000, 9000), latency_ms=round(rng.uniform(800, 4000), 1), bundle=bundle,
        arm="canary" if canary else "stable",
    )


@dataclass(slots=True)
class Call:
    """The SDK values for one call. Mutable on purpose: a frozen dataclass's __init__ costs more, and this
    container is part of what `build_call` is timed for."""

    feature: str
    prompt: Prompt
    model: ModelCall
    output: Output
    bundle: Bundle
    retrieval: Retrieval | None
    params: Params
    usage: Usage
    cost_usd_micros: int
    latency_ms: float
    status: str
    rollout: Rollout
    classification: Classification
    parents: Sequence[str]
    trace_id: str | None


_CLASSIFICATION = Classification(retention_class="operational-7y")


def build_call(c: CallInputs, parents: Sequence[str] = (), trace_id: str | None = None) -> Call:
    """The value objects an app builds from a finished call (what it would pass to Recorder.record)."""
    tpl = c.template
    return Call(
        feature=c.feature,
        prompt=Prompt(
            template_id=tpl.template_id, template_version=tpl.version, template_sha256=tpl.sha256,
            variables={"issue_time": c.issue_time, "region": c.region, "target_date": c.target_date,
                       "weekday": c.weekday},
            messages=(Message(role="system", content=tpl.system), Message(role="user", content=c.user)),
        ),
        model=ModelCall(provider=c.provider, requested=c.requested, served=c.served, fingerprint=c.fingerprint,
                        region="eu-west"),
        output=Output(text=c.text, structured=c.structured, finish_reason="stop"),
        bundle=c.bundle,
        retrieval=Retrieval(
            config_id="grid-context-v2", config_sha256="9f2c41d07a", query=c.query,
            documents=tuple(Document(doc_id=d[0], version=d[1], source=d[2], content=d[3], score=d[4])
                            for d in c.docs),
        ) if c.docs else None,
        params=Params(temperature=c.temperature, max_tokens=c.max_tokens, seed=c.seed, response_format="json"),
        usage=Usage(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens),
        cost_usd_micros=c.cost_usd_micros,
        latency_ms=c.latency_ms,
        status=c.status,
        rollout=Rollout(arm=c.arm, alias="production" if c.arm == "stable" else "canary"),
        classification=_CLASSIFICATION,
        parents=parents,
        trace_id=trace_id,
    )


def record_call(recorder: Recorder, v: Call, occurred_at: datetime | None = None) -> str:
    """Recorder.record with explicit keywords, as application code would write it."""
    return recorder.record(
        feature=v.feature, prompt=v.prompt, model=v.model, output=v.output, bundle=v.bundle,
        retrieval=v.retrieval, params=v.params, usage=v.usage, cost_usd_micros=v.cost_usd_micros,
        latency_ms=v.latency_ms, status=v.status, rollout=v.rollout, classification=v.classification,
        parents=v.parents, trace_id=v.trace_id, occurred_at=occurred_at,
    )


def call_pool(seed: int, size: int, docs: int = 200) -> list[CallInputs]:
    """`size` varied day-ahead forecast calls over a pool of `docs` documents (deterministic for a seed)."""
    rng = random.Random(seed)
    pool = document_pool(rng, docs)
    return [make_call(rng, pool, i) for i in range(size)]


def message_bytes(c: CallInputs) -> int:
    return len(c.template.system.encode()) + len(c.user.encode())


# -- the workload: cycles of chained calls ---------------------------------------------------------

CYCLE_OUTPUTS = 8  # 5 regional forecasts, 1 system summary, 1 dispatch note, 1 outage triage
CYCLE_EVENTS = 9  # ... plus the dispatch console consuming the summary
CYCLE_SECONDS = 120


class Workload:
    """The assistant's traffic in cycles: five regional forecasts feed a system summary (parents), the
    summary feeds a dispatch note, an unrelated outage triage runs beside them, and the dispatch console
    consumes the summary. Calls come from per-feature pools over `docs` distinct documents."""

    def __init__(self, seed: int, *, per_feature: int = 128, docs: int = 1000,
                 bundles: dict[tuple[str, bool], Bundle] | None = None) -> None:
        rng = random.Random(seed)
        self.documents = document_pool(rng, docs)
        self.pools = {f: [make_call(rng, self.documents, i, f, bundles) for i in range(per_feature)]
                      for f in FEATURES}

    def record_cycle(self, recorder: Recorder, k: int, *, timed: bool = False, limit: int = CYCLE_EVENTS) -> int:
        """Record cycle `k` (at most `limit` events); returns the number of events recorded. With `timed`,
        events carry explicit times (CYCLE_SECONDS apart per cycle), as a backfill would."""
        at = _START + timedelta(seconds=k * CYCLE_SECONDS) if timed else None
        trace = f"trc_{k:010d}"
        n = 0

        def call(feature: str, j: int, parents: Sequence[str] = ()) -> str:
            nonlocal n
            pool = self.pools[feature]
            when = None if at is None else at + timedelta(seconds=j)
            n += 1
            return record_call(recorder, build_call(pool[(k * 7 + j) % len(pool)], parents, trace), when)

        regional = []
        for j in range(5):
            if n >= limit:
                return n
            regional.append(call("grid.day_ahead_load", j))
        if n >= limit:
            return n
        summary = call("grid.system_summary", 5, regional)
        for feature, j, parents in (("grid.dispatch_note", 6, [summary]), ("grid.outage_triage", 7, ())):
            if n >= limit:
                return n
            call(feature, j, parents)
        if n < limit:
            recorder.consumed(summary, consumer="dispatch-console", consumer_ref=f"shift-{k % 3}",
                              purpose="unit commitment",
                              occurred_at=None if at is None else at + timedelta(seconds=9))
            n += 1
        return n


def record_events(recorder: Recorder, workload: Workload, events: int, *, first_cycle: int = 0,
                  timed: bool = False) -> int:
    """Record exactly `events` events in whole cycles from `first_cycle` (the last one may be cut short)."""
    done, k = 0, first_cycle
    while done < events:
        done += workload.record_cycle(recorder, k, timed=timed, limit=events - done)
        k += 1
    return done
