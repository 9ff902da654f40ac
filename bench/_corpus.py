"""The material the benchmark workload's calls are built from: grid regions, a pool of retrieved documents
(weather forecasts, SCADA readings, the operations calendar; 300-500 characters each, with content hashes) and
the prompt templates of the assistant's four features."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from schemas.hashing import sha256_hex

REGIONS = ("north", "south", "coastal", "metro", "valley", "highland", "lakes", "plains")
_WIND = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
LOAD_SHAPE = (0.80, 0.76, 0.74, 0.73, 0.74, 0.79, 0.90, 1.02, 1.08, 1.06, 1.03, 1.01,
              1.00, 0.99, 0.98, 1.00, 1.06, 1.15, 1.19, 1.16, 1.09, 1.00, 0.92, 0.85)
START = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


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
    readings = ", ".join(f"{h:02d}:00 {base * LOAD_SHAPE[h] * rng.gauss(1, 0.01):.0f}" for h in range(6, 14))
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
    day0 = START.date()
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


# -- prompt templates ------------------------------------------------------------------------------

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
