"""The simulated world behind `lineage demo`: regional weather, metered load, the documents and prompts a
forecast is built from, and the stand-in "model" that turns them into numbers. Pure functions of a seed."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from producers.values import Document, Output, Prompt, PromptTemplate, Usage

# Winter-evening-peaking demand shape, relative to the daily mean (hour 0..23, UTC taken as local time).
_SHAPE = (0.80, 0.76, 0.74, 0.73, 0.74, 0.79, 0.90, 1.02, 1.08, 1.06, 1.03, 1.01,
          1.00, 0.99, 0.98, 1.00, 1.06, 1.15, 1.19, 1.16, 1.09, 1.00, 0.92, 0.85)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionProfile:
    base_mw: float  # mean load at 15 °C on a working day
    temp_offset_c: float  # against the seasonal mean
    diurnal_range_c: float


_PROFILES = {
    "north": RegionProfile(base_mw=820.0, temp_offset_c=-3.0, diurnal_range_c=7.0),
    "south": RegionProfile(base_mw=1150.0, temp_offset_c=4.0, diurnal_range_c=9.0),
    "coastal": RegionProfile(base_mw=640.0, temp_offset_c=2.0, diurnal_range_c=5.0),
    "metro": RegionProfile(base_mw=2100.0, temp_offset_c=1.0, diurnal_range_c=7.5),
    "valley": RegionProfile(base_mw=480.0, temp_offset_c=-1.0, diurnal_range_c=11.0),
}
_PRICES = {"northwind-ai": (2.5, 10.0), "eastgate-llm": (1.2, 4.8)}  # USD per 1M tokens == µUSD per token
_HOLIDAYS = {(1, 1): "New Year's Day", (12, 25): "Christmas Day", (12, 26): "Boxing Day",
             (12, 31): "New Year's Eve", (5, 1): "Labour Day"}
_WIND_DIRS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")


def profile(region: str) -> RegionProfile:
    """Known regions have fixed profiles; any other name gets a stable made-up one so custom lists work."""
    if region in _PROFILES:
        return _PROFILES[region]
    rng = random.Random(f"profile/{region}")
    return RegionProfile(base_mw=round(rng.uniform(400, 1500), -1), temp_offset_c=rng.uniform(-3, 3),
                         diurnal_range_c=rng.uniform(5, 10))


@dataclass(frozen=True, slots=True, kw_only=True)
class Weather:
    tmin_c: float
    tmax_c: float
    wind_kmh: float
    wind_dir: str
    cloud_pct: int
    precip_pct: int


def weather_truth(seed: int, region: str, day: date) -> Weather:
    """What the weather on `day` actually was; keyed by its own seed so it never depends on call order."""
    rng = random.Random(f"{seed}/wx/{region}/{day.isoformat()}")
    prof = profile(region)
    seasonal = 11.0 + 9.0 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 200) / 365.25)
    mean = seasonal + prof.temp_offset_c + rng.gauss(0.0, 2.5)
    spread = prof.diurnal_range_c * rng.uniform(0.7, 1.2)
    return Weather(tmin_c=round(mean - spread / 2, 1), tmax_c=round(mean + spread / 2, 1),
                   wind_kmh=round(rng.uniform(4, 45)), wind_dir=rng.choice(_WIND_DIRS),
                   cloud_pct=rng.randrange(0, 101, 5), precip_pct=rng.randrange(0, 91, 10))


def met_run_for(issue: datetime) -> datetime:
    """Latest met-service model run available at `issue`: runs are 6-hourly and published ~4 h later."""
    ready = issue - timedelta(hours=4)
    return ready.replace(hour=ready.hour - ready.hour % 6, minute=0, second=0, microsecond=0)


def weather_forecast(seed: int, region: str, day: date, run: datetime) -> Weather:
    """The forecast for `day` issued by `run`: the truth plus an error that grows with lead time."""
    truth = weather_truth(seed, region, day)
    rng = random.Random(f"{seed}/wxfc/{region}/{day.isoformat()}/{run.isoformat()}")
    lead_h = max(6.0, (datetime.combine(day, datetime.min.time(), run.tzinfo) - run).total_seconds() / 3600)
    err = rng.gauss(0.0, 0.5 + lead_h / 24)
    return Weather(tmin_c=round(truth.tmin_c + err, 1), tmax_c=round(truth.tmax_c + err * 0.8, 1),
                   wind_kmh=max(0.0, round(truth.wind_kmh + rng.gauss(0, 4))), wind_dir=truth.wind_dir,
                   cloud_pct=min(100, max(0, truth.cloud_pct + 5 * round(rng.gauss(0, 2)))),
                   precip_pct=min(100, max(0, truth.precip_pct + 10 * round(rng.gauss(0, 1)))))


def day_label(day: date) -> str | None:
    """The holiday or weekend name that makes `day` depart from a normal working day, if any."""
    holiday = _HOLIDAYS.get((day.month, day.day))
    return holiday or (f"{day:%A}" if day.weekday() >= 5 else None)


def calendar_note(day: date) -> str | None:
    label = day_label(day)
    if label is None:
        return None
    if day.weekday() < 5 or (day.month, day.day) in _HOLIDAYS:
        return f"{day.isoformat()} is {label} (public holiday): commercial and industrial load well down."
    return f"{day.isoformat()} is a {label}: weekend profile, later morning ramp, lower daytime load."


def _day_factor(day: date) -> float:
    if (day.month, day.day) in _HOLIDAYS:
        return 0.84
    return {5: 0.90, 6: 0.86}.get(day.weekday(), 1.0)


def _hour_temp(wx: Weather, hour: int) -> float:
    """Minimum at 05:00, maximum at 15:00, cosine rise and linear fall between them."""
    if 5 <= hour <= 15:
        return wx.tmin_c + (wx.tmax_c - wx.tmin_c) * (1 - math.cos(math.pi * (hour - 5) / 10)) / 2
    since_max = (hour - 15) % 24
    return wx.tmax_c - (wx.tmax_c - wx.tmin_c) * since_max / 14


def expected_load(region: str, day: date, wx: Weather) -> list[float]:
    """Hourly MW implied by the weather: heating below 15 °C, cooling above 22 °C, rooftop solar at midday."""
    prof, factor = profile(region), _day_factor(day)
    sun = 1.0 - wx.cloud_pct / 100
    out = []
    for h in range(24):
        temp = _hour_temp(wx, h)
        weather = 1 + 0.018 * max(0.0, 15 - temp) + 0.025 * max(0.0, temp - 22)
        weather += 0.0003 * wx.wind_kmh if temp < 10 else 0.0  # wind chill raises heating demand
        solar = 0.06 * sun if 10 <= h <= 15 else 0.0
        out.append(prof.base_mw * _SHAPE[h] * weather * factor * (1 - solar))
    return out


def actual_load(seed: int, region: str, day: date) -> list[float]:
    """What the SCADA historian metered on `day`, hourly MW."""
    rng = random.Random(f"{seed}/scada/{region}/{day.isoformat()}")
    level = rng.gauss(1.0, 0.015)  # day-level error: what the SCADA calibration corrects
    return [round(mw * level * rng.gauss(1.0, 0.008), 1)
            for mw in expected_load(region, day, weather_truth(seed, region, day))]


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Everything one regional forecast can see at its issue time."""

    region: str
    issue: datetime
    target: date
    met_run: datetime
    weather: Weather
    recent: tuple[tuple[datetime, float], ...]  # the last 8 hourly SCADA readings before `issue`
    analogue: tuple[float, ...]  # metered hourly load on the same weekday a week before `target`
    scada_level: float  # recent metered load over its weather-normalised expectation
    calendar: str | None


def gather_context(seed: int, region: str, issue: datetime) -> Context:
    target = issue.date() + timedelta(days=1)
    run = met_run_for(issue)
    recent, expected = [], 0.0
    for back in range(8, 0, -1):
        ts = issue - timedelta(hours=back)
        recent.append((ts, actual_load(seed, region, ts.date())[ts.hour]))
        expected += expected_load(region, ts.date(), weather_truth(seed, region, ts.date()))[ts.hour]
    return Context(region=region, issue=issue, target=target, met_run=run,
                   weather=weather_forecast(seed, region, target, run), recent=tuple(recent),
                   analogue=tuple(actual_load(seed, region, target - timedelta(days=7))),
                   scada_level=sum(mw for _, mw in recent) / expected, calendar=calendar_note(target))


def weather_text(ctx: Context) -> str:
    wx = ctx.weather
    return (f"Met-service forecast for {ctx.region}, {ctx.target.isoformat()} "
            f"(run {ctx.met_run:%Y-%m-%d %HZ}): "
            f"min {wx.tmin_c:.1f} °C, max {wx.tmax_c:.1f} °C, wind {wx.wind_kmh:.0f} km/h {wx.wind_dir}, "
            f"cloud cover {wx.cloud_pct}%, chance of precipitation {wx.precip_pct}%.")


def scada_text(ctx: Context) -> str:
    readings = ", ".join(f"{ts:%H}:00 {mw:.0f}" for ts, mw in ctx.recent)
    return f"SCADA hourly load, {ctx.region}, 8 h to {ctx.issue:%Y-%m-%d %H:%M}Z (MW): {readings}."


def analogue_text(ctx: Context) -> str:
    day = ctx.target - timedelta(days=7)
    peak = max(ctx.analogue)
    return (f"Metered load, {ctx.region}, {day.isoformat()} ({day:%A}): peak {peak:.0f} MW at "
            f"{ctx.analogue.index(peak):02d}:00, minimum {min(ctx.analogue):.0f} MW, "
            f"energy {sum(ctx.analogue):.0f} MWh.")


def documents(ctx: Context, *, top_k: int) -> tuple[Document, ...]:
    """What retrieval returns, best first; IDs are stable per region/day and versions change on re-issue."""
    target, before = ctx.target.isoformat(), (ctx.target - timedelta(days=7)).isoformat()
    docs = [
        Document(doc_id=f"weather/{ctx.region}/{target}", version=f"run-{ctx.met_run:%Y-%m-%dT%HZ}",
                 source="met-service", content=weather_text(ctx), score=0.93),
        Document(doc_id=f"scada/{ctx.region}/{ctx.issue.date().isoformat()}",
                 version=f"through-{ctx.issue:%H%M}Z", source="scada-historian", content=scada_text(ctx),
                 score=0.88),
        Document(doc_id=f"scada/{ctx.region}/{before}", version="final", source="scada-historian",
                 content=analogue_text(ctx), score=0.71),
    ]
    if ctx.calendar:
        docs.append(Document(doc_id=f"calendar/{target}", version="2026-rev2", source="ops-calendar",
                             content=ctx.calendar, score=0.82))
    docs.sort(key=lambda d: -(d.score or 0.0))
    return tuple(docs[:top_k])


def forecast(ctx: Context, rng: random.Random, *, uplift: float, band_pct: float) -> dict[str, Any]:
    """The stand-in model: weather-driven load, calibrated on recent SCADA, times `uplift` plus noise.

    `uplift` is how the served model version leans (1.0 for the original, a few percent up for its
    replacement); `band_pct` is the half-width of the 90% band around the peak.
    """
    hourly = expected_load(ctx.region, ctx.target, ctx.weather)
    calib = 1 + 0.5 * (ctx.scada_level - 1)  # trust recent metering halfway: part of it is noise
    mw = [round(v * calib * uplift * rng.gauss(1.0, 0.004), 1) for v in hourly]
    peak, low = max(mw), min(mw)
    drivers = [f"forecast min {ctx.weather.tmin_c:.1f} °C drives heating load"]
    label = day_label(ctx.target)
    if label:
        drivers.append(f"{label} profile")
    if ctx.weather.cloud_pct < 40:
        drivers.append("clear skies: rooftop solar trims midday net load")
    return {
        "region": ctx.region, "target_date": ctx.target.isoformat(), "unit": "MW",
        "hourly_mw": mw, "peak_mw": peak, "peak_hour": mw.index(peak), "min_mw": low,
        "min_hour": mw.index(low), "energy_mwh": round(sum(mw), 1),
        "confidence": {"level": 0.9, "peak_low_mw": round(peak * (1 - band_pct / 100), 1),
                       "peak_high_mw": round(peak * (1 + band_pct / 100), 1)},
        "drivers": drivers,
    }


def forecast_text(fc: dict[str, Any]) -> str:
    band = fc["confidence"]
    return (f"{fc['region'].capitalize()} day-ahead for {fc['target_date']}: peak {fc['peak_mw']:.0f} MW at "
            f"{fc['peak_hour']:02d}:00 (90% band {band['peak_low_mw']:.0f}-{band['peak_high_mw']:.0f} MW), "
            f"overnight minimum {fc['min_mw']:.0f} MW at {fc['min_hour']:02d}:00. "
            f"Main drivers: {'; '.join(fc['drivers'])}.")


def system_summary(target: date, issue: datetime,
                   regional: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Coincident system peak from the regional hourly forecasts; regions without one are listed missing."""
    have = {r: fc for r, fc in regional.items() if fc is not None}
    total = [round(sum(fc["hourly_mw"][h] for fc in have.values()), 1) for h in range(24)]
    peak = max(total)
    return {
        "target_date": target.isoformat(), "issue_time": issue.isoformat(), "unit": "MW",
        "system_hourly_mw": total, "system_peak_mw": peak, "system_peak_hour": total.index(peak),
        "regional_peaks_mw": {r: fc["peak_mw"] for r, fc in have.items()},
        "missing_regions": sorted(r for r, fc in regional.items() if fc is None),
    }


def summary_text(s: dict[str, Any]) -> str:
    largest = max(s["regional_peaks_mw"].items(), key=lambda kv: kv[1])
    text = (f"System day-ahead for {s['target_date']}: coincident peak {s['system_peak_mw']:,.0f} MW at "
            f"{s['system_peak_hour']:02d}:00; largest contributor {largest[0]} ({largest[1]:,.0f} MW).")
    if s["missing_regions"]:
        text += f" No forecast for {', '.join(s['missing_regions'])}: use the previous issue there."
    return text


_SYSTEM = ("You are the day-ahead load forecasting assistant of a regional grid operator. Your forecasts "
           "feed unit commitment: be conservative on peaks, and say so when inputs look stale or incomplete.")
_TASK = ("Issue time: {issue_time}\nRegion: {region}\nTarget day: {target_date} ({weekday})\n\n"
         "Retrieved context:\n{context}\n\nForecast the hourly load in MW for the target day. ")
TEMPLATE_V3 = PromptTemplate(template_id="grid.day_ahead_load", version="3", text=_TASK + (
    "Reply with JSON (hourly_mw, peak_mw, peak_hour, min_mw, min_hour, confidence) and one short paragraph "
    "for the dispatch engineer."))
TEMPLATE_V4 = PromptTemplate(template_id="grid.day_ahead_load", version="4", text=_TASK + (
    "Reply with JSON (hourly_mw, peak_mw, peak_hour, min_mw, min_hour, energy_mwh, confidence with a "
    "calibrated 90% band on the peak, drivers) and one short paragraph for the dispatch engineer naming the "
    "main drivers. Use the analogue day only to shape the profile, not its level."))
SUMMARY_TEMPLATE = PromptTemplate(template_id="grid.system_summary", version="2", text=(
    "Issue time: {issue_time}\nTarget day: {target_date}\n\nRegional forecasts:\n{regional}\n\n"
    "Add the regional hourly forecasts into the system forecast, report the coincident peak and its hour, "
    "and list regions without a forecast. Reply with JSON and one sentence for the dispatch planner."))


def regional_prompt(ctx: Context, template: PromptTemplate, docs: Sequence[Document]) -> Prompt:
    return template.render(
        system=_SYSTEM, region=ctx.region, target_date=ctx.target.isoformat(), weekday=f"{ctx.target:%A}",
        issue_time=f"{ctx.issue:%Y-%m-%d %H:%M}Z",
        context="\n".join(f"- [{d.doc_id}@{d.version}] {d.content}" for d in docs))


def summary_prompt(issue: datetime, regional: dict[str, dict[str, Any] | None]) -> Prompt:
    lines = [f"- {region}: " + (json.dumps({k: fc[k] for k in ("peak_mw", "peak_hour", "hourly_mw")})
                                if fc else "no forecast (provider error)") for region, fc in regional.items()]
    return SUMMARY_TEMPLATE.render(
        system="You consolidate regional load forecasts for the system dispatch planner. Do not re-forecast.",
        issue_time=f"{issue:%Y-%m-%d %H:%M}Z", target_date=(issue.date() + timedelta(days=1)).isoformat(),
        regional="\n".join(lines))


def usage_and_cost(provider: str, prompt: Prompt, output: Output) -> tuple[Usage, int]:
    """Tokens at roughly 3.8 characters each plus a little framing per message; cost in micro-USD."""
    sent = sum(round(len(m.content) / 3.8) + 4 for m in prompt.messages)
    got = round(len(json.dumps(output.structured) + (output.text or "")) / 3.8)
    price_in, price_out = _PRICES[provider]
    return Usage(prompt_tokens=sent, completion_tokens=got), round(sent * price_in + got * price_out)
