"""The simulated grid-forecasting assistant behind `lineage demo`: days of regional day-ahead load forecasts
with two bundle releases, a canary, a silent provider model swap, fallbacks and dispatch consumption, all
recorded through the SDK. Deterministic for a seed; no network, the "model" is `demo_world.forecast`."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from lineage_api import demo_world as world
from producers.values import (
    Attempt,
    Bundle,
    Classification,
    ModelCall,
    Output,
    Params,
    Prompt,
    PromptTemplate,
    Retrieval,
    RetrievalConfig,
    Rollout,
    Usage,
)
from schemas.hashing import canonical_json, sha256_hex

DEFAULT_REGIONS: tuple[str, ...] = ("north", "south", "coastal", "metro", "valley")
ISSUES_PER_DAY = 4  # 00Z, 06Z, 12Z, 18Z
FEATURE, SUMMARY_FEATURE = "day-ahead-load", "system-summary"
DISPATCH, REVIEW = "dispatch-planner", "control-room-review"

_SYSTEM = ("You are the day-ahead load forecasting assistant of a regional grid operator. Your forecasts feed "
           "unit commitment: be conservative on peaks, and say so when inputs look stale or incomplete.")
_TASK = ("Issue time: {issue_time}\nRegion: {region}\nTarget day: {target_date} ({weekday})\n\n"
         "Retrieved context:\n{context}\n\n")
_V3 = PromptTemplate(template_id="grid.day_ahead_load", version="3", text=_TASK + (
    "Forecast the hourly load in MW for the target day. Reply with JSON (hourly_mw, peak_mw, peak_hour, min_mw, "
    "min_hour, confidence) and one short paragraph for the dispatch engineer."))
_V4 = PromptTemplate(template_id="grid.day_ahead_load", version="4", text=_TASK + (
    "Forecast the hourly load in MW for the target day. Reply with JSON (hourly_mw, peak_mw, peak_hour, min_mw, "
    "min_hour, energy_mwh, confidence with a calibrated 90% band on the peak, drivers) and one short paragraph "
    "for the dispatch engineer naming the main drivers. Use the analogue day only to shape the profile."))
_SUMMARY = PromptTemplate(template_id="grid.system_summary", version="2", text=(
    "Issue time: {issue_time}\nTarget day: {target_date}\n\nRegional forecasts:\n{regional}\n\n"
    "Add the regional hourly forecasts into the system forecast, report the coincident peak and its hour, "
    "and list regions without a forecast. Reply with JSON and one sentence for the dispatch planner."))
_SUMMARY_SYSTEM = "You consolidate regional load forecasts for the system dispatch planner. Do not re-forecast."

_REQUESTED = ModelCall(provider="northwind-ai", requested="gridcast-large")
_OLD = ("gridcast-large-2026-06", "fp_7c1e2a90d4")  # served and fingerprint before the provider's swap
_NEW = ("gridcast-large-2026-11", "fp_b43d0f17e2")
_ENDPOINT = "https://api.northwind-ai.example/v1/chat/completions"
_FALLBACK = ModelCall(provider="eastgate-llm", requested="eg-forecaster-2", served="eg-forecaster-2.3",
                      fingerprint="eg-2.3.1", endpoint="https://inference.eastgate.example/v2/generate",
                      region="eu-central")
_RETRIEVAL_V1 = RetrievalConfig(config_id="grid-context", settings={
    "index": "grid-context-2026-11", "sources": ("met-service", "scada-historian", "ops-calendar"),
    "top_k": 3, "max_age_hours": 12})
_RETRIEVAL_V2 = RetrievalConfig(config_id="grid-context", settings={**_RETRIEVAL_V1.settings, "top_k": 5})
_PARAMS = Params(temperature=0.2, max_tokens=1200, seed=20261101, response_format="json_object")
_SUMMARY_PARAMS = Params(temperature=0.0, max_tokens=800, seed=20261101, response_format="json_object")
# Micro-USD per token (== USD per million tokens): prompt, completion.
_PRICES = {"northwind-ai": (2.5, 10.0), "eastgate-llm": (1.2, 4.8)}
_KEEP = Classification(retention_class="operational-7y", pii=False)
_TIMEOUT_MS = 30_000.0


class ScenarioRecorder(Protocol):
    """The part of producers.Recorder the scenario drives; tests pass a fake with the same methods."""

    def register_bundle(self, *, name: str, version: str, prompt: PromptTemplate, model: ModelCall,
                        retrieval: RetrievalConfig | None = None, params: Params | None = None,
                        registered_by: str | None = None, occurred_at: datetime | None = None) -> Bundle: ...

    def move_alias(self, *, feature: str, alias: str, bundle: Bundle, previous: Bundle | None = None,
                   weight: float = 1.0, reason: str = "", approver: str | None = None,
                   evaluation_ref: str | None = None, occurred_at: datetime | None = None) -> None: ...

    def record(self, *, feature: str, prompt: Prompt, model: ModelCall, output: Output,
               bundle: Bundle | None = None, retrieval: Retrieval | None = None, params: Params | None = None,
               usage: Usage | None = None, cost_usd_micros: int = 0, latency_ms: float = 0.0,
               status: str = "OK", error: BaseException | tuple[str, str] | None = None,
               attempts: Sequence[Attempt] = (), parents: Sequence[str] = (), trace_id: str | None = None,
               rollout: Rollout | None = None, classification: Classification | None = None,
               occurred_at: datetime | None = None) -> str: ...

    def consumed(self, output_id: str, *, consumer: str, consumer_ref: str | None = None,
                 purpose: str | None = None, occurred_at: datetime | None = None) -> None: ...

    def flush(self, timeout: float | None = None) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSummary:
    forecasts: int  # record() calls in total, system summaries included
    consumed: int  # consumed() calls
    bundles: tuple[Bundle, ...]
    sample_outputs: tuple[tuple[str, str], ...]  # (output_id, one-line description) worth opening first
    model_swap_at: datetime  # when the provider started serving the replacement model


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    """When things happen, fixed before the first call so planned_calls() and the run always agree."""

    issues: tuple[datetime, ...]
    canary_at: int  # index of the first issue with canary traffic
    promote_at: int  # index of the first issue served by the second release in production
    swap_at: int  # index of the first issue after the provider's model swap
    model_swap_at: datetime
    fallbacks: frozenset[tuple[int, int]]  # (issue index, region index) that time out and fall back
    errors: frozenset[tuple[int, int]]  # ... that fail on the fallback as well


@dataclass(frozen=True, slots=True, kw_only=True)
class _Made:
    output_id: str
    feature: str
    region: str
    issue: datetime
    served: str
    status: str
    fallback: bool
    dispatched: bool = False


def planned_calls(days: int, regions: Sequence[str]) -> int:
    """Exactly how many record() calls run_scenario makes: every region per issue, plus one summary."""
    return days * ISSUES_PER_DAY * (len(regions) + 1)


def run_scenario(recorder: ScenarioRecorder, *, days: int = 7, regions: Sequence[str] = DEFAULT_REGIONS,
                 seed: int = 7, end: datetime | None = None,
                 progress: Callable[[int, int], None] | None = None) -> DemoSummary:
    """Record `days` of forecasting ending at `end` (default: now, down to the hour) and flush."""
    if days < 1 or not regions or len(set(regions)) != len(regions):
        raise ValueError("the demo needs days >= 1 and a non-empty list of distinct regions")
    if end is None:
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    elif end.tzinfo is None:
        raise ValueError("end must be timezone-aware (UTC)")
    rng = random.Random(seed)
    run = _Run(recorder, rng=rng, seed=seed, regions=tuple(regions),
               plan=_plan(rng, days, len(regions), end.astimezone(UTC)), progress=progress)
    return run.execute()


def _plan(rng: random.Random, days: int, n_regions: int, end: datetime) -> _Plan:
    n = days * ISSUES_PER_DAY
    last = end - timedelta(hours=1)  # leave room so an issue's calls all land before `end`
    last = last.replace(hour=last.hour - last.hour % 6, minute=0, second=0, microsecond=0)
    issues = tuple(last - timedelta(hours=6 * (n - 1 - i)) for i in range(n))
    canary = max(1, round(0.25 * n))
    promote = max(canary + 1, round(0.4 * n))
    swap = min(n - 1, max(1, round(0.6 * n)))
    slots = [(i, k) for i in range(n) for k in range(n_regions)]
    # Guaranteed, if few, so every run (even one day) has something to trace; never a whole issue failing.
    n_errors = 0 if n_regions < 2 else max(1, round(0.012 * len(slots)))
    error_issues = rng.sample(range(n), min(n, n_errors))
    errors = frozenset((i, rng.randrange(n_regions)) for i in error_issues)
    fallbacks = rng.sample([s for s in slots if s not in errors], max(1, round(0.04 * len(slots))))
    return _Plan(issues=issues, canary_at=canary, promote_at=promote, swap_at=swap,
                 model_swap_at=issues[swap] - timedelta(hours=2, minutes=17),
                 fallbacks=frozenset(fallbacks), errors=errors)


def _tokens(text: str) -> int:
    return max(1, round(len(text) / 3.8))


def _usage_cost(provider: str, prompt: Prompt, output: Output) -> tuple[Usage, int]:
    sent = sum(_tokens(m.content) + 4 for m in prompt.messages)
    got = _tokens(json.dumps(output.structured) + (output.text or ""))
    price_in, price_out = _PRICES[provider]
    return Usage(prompt_tokens=sent, completion_tokens=got), round(sent * price_in + got * price_out)


class _Run:
    """One scenario run: the mutable state (clock, counters, outputs made) kept out of the public API."""

    def __init__(self, recorder: ScenarioRecorder, *, rng: random.Random, seed: int, regions: tuple[str, ...],
                 plan: _Plan, progress: Callable[[int, int], None] | None) -> None:
        self.rec, self.rng, self.seed, self.regions, self.plan = recorder, rng, seed, regions, plan
        self.progress = progress
        self.total = planned_calls(len(plan.issues) // ISSUES_PER_DAY, regions)
        self.made: list[_Made] = []
        self.n_consumed = 0
        self.bundles: list[Bundle] = []

    def execute(self) -> DemoSummary:
        for i, issue in enumerate(self.plan.issues):
            self.releases(i, issue)
            self.issue(i, issue)
        self.rec.flush()
        return DemoSummary(forecasts=len(self.made), consumed=self.n_consumed, bundles=tuple(self.bundles),
                           sample_outputs=_samples(self.made, self.plan), model_swap_at=self.plan.model_swap_at)

    def releases(self, i: int, issue: datetime) -> None:
        """Registrations and alias moves, a few hours before the issue they first apply to."""
        rec, plan = self.rec, self.plan
        if i == 0:
            self.bundles += [
                rec.register_bundle(name="grid-forecast", version="2026.11.1", prompt=_V3, model=_REQUESTED,
                                    retrieval=_RETRIEVAL_V1, params=_PARAMS, registered_by="release-pipeline",
                                    occurred_at=issue - timedelta(hours=3)),
                rec.register_bundle(name="grid-summary", version="2026.10.3", prompt=_SUMMARY, model=_REQUESTED,
                                    params=_SUMMARY_PARAMS, registered_by="release-pipeline",
                                    occurred_at=issue - timedelta(hours=3)),
            ]
            for feature, bundle in ((FEATURE, self.bundles[0]), (SUMMARY_FEATURE, self.bundles[1])):
                rec.move_alias(feature=feature, alias="production", bundle=bundle, reason="initial release",
                               approver="dispatch-lead", occurred_at=issue - timedelta(hours=2))
        elif i == plan.canary_at:
            self.bundles.append(rec.register_bundle(
                name="grid-forecast", version="2026.11.2", prompt=_V4, model=_REQUESTED, retrieval=_RETRIEVAL_V2,
                params=_PARAMS, registered_by="release-pipeline", occurred_at=issue - timedelta(hours=2, minutes=30)))
            rec.move_alias(feature=FEATURE, alias="canary", bundle=self.bundles[2], weight=0.1,
                           reason="canary: template v4 with calibrated peak band, retrieval top_k 3 -> 5",
                           approver="forecasting-lead", evaluation_ref=f"eval_{issue:%Y_%m_%d}_offline",
                           occurred_at=issue - timedelta(hours=2))
        elif i == plan.promote_at:
            old, new = self.bundles[0], self.bundles[2]
            rec.move_alias(feature=FEATURE, alias="production", bundle=new, previous=old,
                           reason="backtest: peak MAPE 2.9% -> 2.4% over 14 days; canary clean",
                           approver="dispatch-lead", evaluation_ref=f"eval_{issue:%Y_%m_%d}_backtest",
                           occurred_at=issue - timedelta(hours=1, minutes=30))
            rec.move_alias(feature=FEATURE, alias="canary", bundle=new, previous=new, weight=0.0,
                           reason="canary ended: release promoted to production", approver="dispatch-lead",
                           occurred_at=issue - timedelta(hours=1, minutes=29))

    def issue(self, i: int, issue: datetime) -> None:
        """All regional forecasts of one issue time, the chained system summary, then who used them."""
        trace = f"trc_{self.rng.getrandbits(64):016x}"
        clock = issue + timedelta(seconds=self.rng.uniform(20, 90))
        forecasts: dict[str, dict[str, Any] | None] = {}
        made: list[_Made] = []
        for k, region in enumerate(self.regions):
            one, forecasts[region], clock = self.forecast(i, k, region, issue, trace, clock)
            made.append(one)
        summary, clock = self.summary(issue, trace, clock, made, forecasts)
        self.consume(issue, clock, made, summary)

    def forecast(self, i: int, k: int, region: str, issue: datetime, trace: str,
                 clock: datetime) -> tuple[_Made, dict[str, Any] | None, datetime]:
        plan, rng = self.plan, self.rng
        ctx = world.gather_context(self.seed, region, issue)
        canary = plan.canary_at <= i < plan.promote_at and rng.random() < 0.1
        second = canary or i >= plan.promote_at
        template, config, bundle = (_V4, _RETRIEVAL_V2, self.bundles[2]) if second else \
            (_V3, _RETRIEVAL_V1, self.bundles[0])
        docs = world.documents(ctx, top_k=int(config.settings["top_k"]))
        prompt = template.render(
            system=_SYSTEM, region=region, target_date=ctx.target.isoformat(), weekday=f"{ctx.target:%A}",
            issue_time=f"{issue:%Y-%m-%d %H:%M}Z",
            context="\n".join(f"- [{d.doc_id}@{d.version}] {d.content}" for d in docs))
        retrieval = Retrieval(config_id=config.config_id, documents=docs, query=f"{region} load drivers {ctx.target}",
                              config_sha256=sha256_hex(canonical_json(dict(config.settings))))
        if canary:
            rollout = Rollout(arm="canary", alias="canary", weight=0.1)
        else:
            in_canary = plan.canary_at <= i < plan.promote_at
            rollout = Rollout(arm="stable", alias="production", weight=0.9 if in_canary else 1.0)
        served, fingerprint = _NEW if i >= plan.swap_at else _OLD
        primary = ModelCall(provider=_REQUESTED.provider, requested=_REQUESTED.requested, served=served,
                            fingerprint=fingerprint, endpoint=_ENDPOINT, region="eu-west")
        common: dict[str, Any] = dict(feature=FEATURE, prompt=prompt, bundle=bundle, retrieval=retrieval,
                                      params=_PARAMS, trace_id=trace, rollout=rollout, classification=_KEEP)
        timeout = Attempt(provider=primary.provider, model=primary.requested, status="TIMEOUT",
                          error=f"ReadTimeout: no response within {_TIMEOUT_MS / 1000:.0f} s",
                          latency_ms=_TIMEOUT_MS)
        if (i, k) in plan.errors:
            latency = _TIMEOUT_MS + rng.uniform(400, 1200)
            failed = Attempt(provider=_FALLBACK.provider, model=_FALLBACK.requested, status="ERROR",
                             error="HTTP 503: upstream overloaded", latency_ms=latency - _TIMEOUT_MS)
            clock += timedelta(milliseconds=round(latency))
            out_id = self.record(**common, model=ModelCall(provider=_FALLBACK.provider,
                                                            requested=_FALLBACK.requested),
                                 output=Output(), status="ERROR", latency_ms=latency, attempts=(timeout, failed),
                                 error=("ProviderUnavailableError", "all providers failed: northwind-ai timed "
                                        "out after 30 s, eastgate-llm returned HTTP 503"), occurred_at=clock)
            return _Made(output_id=out_id, feature=FEATURE, region=region, issue=issue, served="",
                         status="ERROR", fallback=True), None, clock
        fallback = (i, k) in plan.fallbacks
        if fallback:
            model, uplift, band = _FALLBACK, rng.uniform(0.985, 0.995), 5.5
        else:
            uplift = rng.uniform(1.015, 1.03) if i >= plan.swap_at else 1.0
            model, band = primary, 3.5 if second else 4.5
        fc = world.forecast(ctx, rng, uplift=uplift, band_pct=band)
        output = Output(text=world.forecast_text(fc), structured=fc, finish_reason="stop")
        usage, cost = _usage_cost(model.provider, prompt, output)
        latency = 900 + usage.completion_tokens * rng.uniform(9, 14)
        attempts: tuple[Attempt, ...] = ()
        if fallback:
            attempts = (timeout, Attempt(provider=model.provider, model=model.requested, status="OK",
                                         latency_ms=round(latency, 1)))
            latency += _TIMEOUT_MS
        clock += timedelta(milliseconds=round(latency + rng.uniform(200, 1500)))
        out_id = self.record(**common, model=model, output=output, usage=usage, cost_usd_micros=cost,
                             latency_ms=round(latency, 1), attempts=attempts, occurred_at=clock)
        return _Made(output_id=out_id, feature=FEATURE, region=region, issue=issue, served=model.served,
                     status="OK", fallback=fallback), fc, clock

    def summary(self, issue: datetime, trace: str, clock: datetime, regional: list[_Made],
                forecasts: dict[str, dict[str, Any] | None]) -> tuple[_Made, datetime]:
        """The chained call: its parents are the regional outputs it read, in the same trace."""
        target = issue.date() + timedelta(days=1)
        table = "\n".join(f"- {r}: " + (json.dumps({k: fc[k] for k in ("peak_mw", "peak_hour", "hourly_mw")})
                                        if fc else "no forecast (provider error)") for r, fc in forecasts.items())
        prompt = _SUMMARY.render(system=_SUMMARY_SYSTEM, issue_time=f"{issue:%Y-%m-%d %H:%M}Z",
                                 target_date=target.isoformat(), regional=table)
        data = world.system_summary(target, issue, forecasts)
        output = Output(text=world.summary_text(data), structured=data, finish_reason="stop")
        usage, cost = _usage_cost(_REQUESTED.provider, prompt, output)
        latency = 700 + usage.completion_tokens * self.rng.uniform(9, 14)
        clock += timedelta(milliseconds=round(latency + self.rng.uniform(500, 3000)))
        served, fingerprint = _NEW if issue > self.plan.model_swap_at else _OLD
        model = ModelCall(provider=_REQUESTED.provider, requested=_REQUESTED.requested, served=served,
                          fingerprint=fingerprint, endpoint=_ENDPOINT, region="eu-west")
        out_id = self.record(
            feature=SUMMARY_FEATURE, prompt=prompt, model=model, output=output, bundle=self.bundles[1],
            params=_SUMMARY_PARAMS, usage=usage, cost_usd_micros=cost, latency_ms=round(latency, 1),
            parents=tuple(m.output_id for m in regional if m.status == "OK"), trace_id=trace,
            rollout=Rollout(arm="stable", alias="production", weight=1.0), classification=_KEEP,
            occurred_at=clock)
        return _Made(output_id=out_id, feature=SUMMARY_FEATURE, region="system", issue=issue, served=served,
                     status="OK", fallback=False), clock

    def consume(self, issue: datetime, clock: datetime, regional: list[_Made], summary: _Made) -> None:
        """Dispatch plans on most summaries (always the 06Z one) and checks some regions; the control room
        reviews fallbacks and, once peaks start running high after the swap, more forecasts."""
        plan_ref = f"plan-{issue.date() + timedelta(days=1)}-{issue:%H}"
        uses: list[tuple[_Made, str, str, str]] = []
        if issue.hour == 6 or self.rng.random() < 0.75:
            uses.append((summary, DISPATCH, plan_ref, "day-ahead unit commitment"))
        review_p = 0.12 if issue > self.plan.model_swap_at else 0.03
        for m in regional:
            if m.status != "OK":
                continue
            if self.rng.random() < 0.1:
                uses.append((m, DISPATCH, plan_ref, "day-ahead unit commitment"))
            if self.rng.random() < (0.5 if m.fallback else review_p):
                uses.append((m, REVIEW, f"review-{issue:%Y%m%d-%H}-{m.region}",
                             "fallback provider check" if m.fallback else "peak plausibility review"))
        for m, consumer, ref, purpose in uses:
            clock += timedelta(seconds=self.rng.uniform(30, 400))
            self.rec.consumed(m.output_id, consumer=consumer, consumer_ref=ref, purpose=purpose, occurred_at=clock)
            self.n_consumed += 1
            if consumer == DISPATCH:
                self.made[self.made.index(m)] = replace(m, dispatched=True)
