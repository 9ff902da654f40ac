"""The simulated grid-forecasting assistant behind `lineage demo`: days of regional day-ahead load forecasts
with two bundle releases, a canary, a silent provider model swap, fallbacks and dispatch consumption, all
recorded through the SDK. Deterministic for a seed; no network: the "model" lives in `demo_world`."""

from __future__ import annotations

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

_REQUESTED = ModelCall(provider="northwind-ai", requested="gridcast-large")
_OLD = ("gridcast-large-2026-06", "fp_7c1e2a90d4")  # served model and fingerprint before the provider's swap
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
_KEEP = Classification(retention_class="operational-7y", pii=False)
_TIMEOUT_MS = 30_000.0
_TIMED_OUT = Attempt(provider=_REQUESTED.provider, model=_REQUESTED.requested, status="TIMEOUT",
                     error="ReadTimeout: no response within 30 s", latency_ms=_TIMEOUT_MS)
_ALL_FAILED = ("ProviderUnavailableError",
               "all providers failed: northwind-ai timed out after 30 s, eastgate-llm returned HTTP 503")
_PLAN_PURPOSE = "day-ahead unit commitment"


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
    errors: frozenset[tuple[int, int]]  # ... that then fail on the fallback too


@dataclass(frozen=True, slots=True, kw_only=True)
class _Made:
    output_id: str
    feature: str
    region: str  # "system" for summaries
    issue: datetime
    served: str
    status: str
    fallback: bool


def planned_calls(days: int, regions: Sequence[str]) -> int:
    """Exactly how many record() calls run_scenario makes: every region per issue, plus one summary."""
    return days * ISSUES_PER_DAY * (len(regions) + 1)


def run_scenario(recorder: ScenarioRecorder, *, days: int = 7, regions: Sequence[str] = DEFAULT_REGIONS,
                 seed: int = 7, end: datetime | None = None,
                 progress: Callable[[int, int], None] | None = None) -> DemoSummary:
    """Record `days` of forecasting ending at `end` (default: now, down to the hour), then flush."""
    if days < 1 or not regions or len(set(regions)) != len(regions):
        raise ValueError("the demo needs days >= 1 and a non-empty list of distinct regions")
    if end is None:
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    elif end.tzinfo is None:
        raise ValueError("end must be timezone-aware (UTC)")
    rng = random.Random(seed)
    plan = _plan(rng, days, len(regions), end.astimezone(UTC))
    run = _Run(recorder, rng=rng, seed=seed, regions=tuple(regions), plan=plan, progress=progress)
    return run.execute()


def _plan(rng: random.Random, days: int, n_regions: int, end: datetime) -> _Plan:
    n = days * ISSUES_PER_DAY
    last = end - timedelta(hours=1)  # room for the last issue's calls to land before `end`
    last = last.replace(hour=last.hour - last.hour % 6, minute=0, second=0, microsecond=0)
    issues = tuple(last - timedelta(hours=6 * (n - 1 - i)) for i in range(n))
    canary = max(1, round(0.25 * n))
    promote = max(canary + 1, round(0.4 * n))
    swap = min(n - 1, max(1, round(0.6 * n)))
    # At least one of each so even a one-day run has something to trace; at most one error per issue, and
    # none with a single region, so every system summary has a parent.
    slots = [(i, k) for i in range(n) for k in range(n_regions)]
    n_errors = 0 if n_regions < 2 else min(n, max(1, round(0.012 * len(slots))))
    errors = frozenset((i, rng.randrange(n_regions)) for i in rng.sample(range(n), n_errors))
    fallbacks = rng.sample([s for s in slots if s not in errors], max(1, round(0.04 * len(slots))))
    return _Plan(issues=issues, canary_at=canary, promote_at=promote, swap_at=swap,
                 model_swap_at=issues[swap] - timedelta(hours=2, minutes=17),
                 fallbacks=frozenset(fallbacks), errors=errors)


def _primary(*, after_swap: bool) -> ModelCall:
    served, fingerprint = _NEW if after_swap else _OLD
    return ModelCall(provider=_REQUESTED.provider, requested=_REQUESTED.requested, served=served,
                     fingerprint=fingerprint, endpoint=_ENDPOINT, region="eu-west")


class _Run:
    """One scenario run: the clock, the counters and the outputs made so far."""

    def __init__(self, recorder: ScenarioRecorder, *, rng: random.Random, seed: int, regions: tuple[str, ...],
                 plan: _Plan, progress: Callable[[int, int], None] | None) -> None:
        self.rec, self.rng, self.seed, self.regions, self.plan = recorder, rng, seed, regions, plan
        self.progress = progress
        self.total = len(plan.issues) * (len(regions) + 1)
        self.made: list[_Made] = []  # one per record() call, in call order
        self.dispatched: dict[str, str] = {}  # output_id -> the dispatch plan that used it
        self.n_consumed = 0
        self.bundles: list[Bundle] = []

    def execute(self) -> DemoSummary:
        for i, issue in enumerate(self.plan.issues):
            self.releases(i, issue)
            self.issue(i, issue)
        self.rec.flush()
        return DemoSummary(forecasts=len(self.made), consumed=self.n_consumed, bundles=tuple(self.bundles),
                           sample_outputs=_samples(self.made, self.plan, self.dispatched),
                           model_swap_at=self.plan.model_swap_at)

    def releases(self, i: int, issue: datetime) -> None:
        """Registrations and alias moves, a few hours before the first issue they apply to."""
        rec, plan, minute = self.rec, self.plan, timedelta(minutes=1)
        if i == 0:
            self.bundles += [
                rec.register_bundle(name="grid-forecast", version="2026.11.1", prompt=world.TEMPLATE_V3,
                                    model=_REQUESTED, retrieval=_RETRIEVAL_V1, params=_PARAMS,
                                    registered_by="release-pipeline", occurred_at=issue - 180 * minute),
                rec.register_bundle(name="grid-summary", version="2026.10.3", prompt=world.SUMMARY_TEMPLATE,
                                    model=_REQUESTED, params=_SUMMARY_PARAMS,
                                    registered_by="release-pipeline", occurred_at=issue - 179 * minute),
            ]
            for feature, bundle in ((FEATURE, self.bundles[0]), (SUMMARY_FEATURE, self.bundles[1])):
                rec.move_alias(feature=feature, alias="production", bundle=bundle, reason="initial release",
                               approver="dispatch-lead", occurred_at=issue - 120 * minute)
        elif i == plan.canary_at:
            self.bundles.append(rec.register_bundle(
                name="grid-forecast", version="2026.11.2", prompt=world.TEMPLATE_V4, model=_REQUESTED,
                retrieval=_RETRIEVAL_V2, params=_PARAMS, registered_by="release-pipeline",
                occurred_at=issue - 150 * minute))
            rec.move_alias(feature=FEATURE, alias="canary", bundle=self.bundles[2], weight=0.1,
                           reason="canary: template v4 with a calibrated peak band, retrieval top_k 3 -> 5",
                           approver="forecasting-lead", evaluation_ref=f"eval_{issue:%Y_%m_%d}_offline",
                           occurred_at=issue - 120 * minute)
        elif i == plan.promote_at:
            old, new = self.bundles[0], self.bundles[2]
            rec.move_alias(feature=FEATURE, alias="production", bundle=new, previous=old,
                           reason="backtest: peak MAPE 2.9% -> 2.4% over 14 days; canary clean",
                           approver="dispatch-lead", evaluation_ref=f"eval_{issue:%Y_%m_%d}_backtest",
                           occurred_at=issue - 90 * minute)
            rec.move_alias(feature=FEATURE, alias="canary", bundle=new, previous=new, weight=0.0,
                           reason="canary ended: release promoted to production", approver="dispatch-lead",
                           occurred_at=issue - 89 * minute)

    def issue(self, i: int, issue: datetime) -> None:
        """All regional forecasts of one issue time, the chained system summary, then who used them."""
        trace = f"trc_{self.rng.getrandbits(64):016x}"
        clock = issue + timedelta(seconds=self.rng.uniform(20, 90))
        forecasts: dict[str, dict[str, Any] | None] = {}
        for k, region in enumerate(self.regions):
            ctx = world.gather_context(self.seed, region, issue)
            forecasts[region], clock = self.forecast(i, k, ctx, trace, clock)
        regional = self.made[-len(self.regions):]
        clock = self.summary(issue, trace, clock, regional, forecasts)
        self.consume(issue, clock, regional, self.made[-1])

    def forecast(self, i: int, k: int, ctx: world.Context, trace: str,
                 clock: datetime) -> tuple[dict[str, Any] | None, datetime]:
        plan, rng = self.plan, self.rng
        in_canary = plan.canary_at <= i < plan.promote_at
        canary = in_canary and rng.random() < 0.1
        second = canary or i >= plan.promote_at
        template, config = (world.TEMPLATE_V4, _RETRIEVAL_V2) if second else \
            (world.TEMPLATE_V3, _RETRIEVAL_V1)
        docs = world.documents(ctx, top_k=int(config.settings["top_k"]))
        common: dict[str, Any] = {
            "feature": FEATURE, "prompt": world.regional_prompt(ctx, template, docs), "params": _PARAMS,
            "bundle": self.bundles[2 if second else 0], "trace_id": trace, "classification": _KEEP,
            "retrieval": Retrieval(config_id=config.config_id, documents=docs,
                                   query=f"{ctx.region} load {ctx.target}",
                                   config_sha256=sha256_hex(canonical_json(config.settings))),
            "rollout": Rollout(arm="canary", alias="canary", weight=0.1) if canary else
            Rollout(arm="stable", alias="production", weight=0.9 if in_canary else 1.0),
        }
        if (i, k) in plan.errors:
            latency = rng.uniform(400, 1200)
            clock += timedelta(milliseconds=round(_TIMEOUT_MS + latency))
            failed = Attempt(provider=_FALLBACK.provider, model=_FALLBACK.requested, status="ERROR",
                             error="HTTP 503: upstream overloaded", latency_ms=round(latency, 1))
            self.record(ctx.region, ctx.issue, fallback=True, **common, output=Output(), status="ERROR",
                        model=ModelCall(provider=_FALLBACK.provider, requested=_FALLBACK.requested),
                        latency_ms=round(_TIMEOUT_MS + latency, 1), attempts=(_TIMED_OUT, failed),
                        occurred_at=clock, error=_ALL_FAILED)
            return None, clock
        return self.answered(i, k, ctx, common, clock, band=3.5 if second else 4.5)

    def answered(self, i: int, k: int, ctx: world.Context, common: dict[str, Any], clock: datetime, *,
                 band: float) -> tuple[dict[str, Any], datetime]:
        """A forecast that came back: from the primary, or from the fallback after the primary timed out."""
        rng, fallback = self.rng, (i, k) in self.plan.fallbacks
        if fallback:
            model, uplift, band = _FALLBACK, rng.uniform(0.985, 0.995), band + 1.5
        else:
            model = _primary(after_swap=i >= self.plan.swap_at)
            # The replacement model runs a little hot on peaks: the drift this demo lets people trace.
            uplift = rng.uniform(1.015, 1.03) if i >= self.plan.swap_at else 1.0
        fc = world.forecast(ctx, rng, uplift=uplift, band_pct=band)
        output = Output(text=world.forecast_text(fc), structured=fc, finish_reason="stop")
        usage, cost = world.usage_and_cost(model.provider, common["prompt"], output)
        latency = round(900 + usage.completion_tokens * rng.uniform(9, 14), 1)
        attempts: tuple[Attempt, ...] = ()
        if fallback:
            attempts = (_TIMED_OUT, Attempt(provider=model.provider, model=model.requested, status="OK",
                                            latency_ms=latency))
            latency += _TIMEOUT_MS
        clock += timedelta(milliseconds=round(latency + rng.uniform(200, 1500)))
        self.record(ctx.region, ctx.issue, fallback=fallback, **common, model=model, output=output,
                    usage=usage, cost_usd_micros=cost, latency_ms=latency, attempts=attempts,
                    occurred_at=clock)
        return fc, clock

    def summary(self, issue: datetime, trace: str, clock: datetime, regional: list[_Made],
                forecasts: dict[str, dict[str, Any] | None]) -> datetime:
        """The chained call: its parents are the regional outputs it read, and it joins their trace."""
        prompt = world.summary_prompt(issue, forecasts)
        data = world.system_summary(issue.date() + timedelta(days=1), issue, forecasts)
        output = Output(text=world.summary_text(data), structured=data, finish_reason="stop")
        usage, cost = world.usage_and_cost(_REQUESTED.provider, prompt, output)
        latency = round(700 + usage.completion_tokens * self.rng.uniform(9, 14), 1)
        clock += timedelta(milliseconds=round(latency + self.rng.uniform(500, 3000)))
        self.record(
            "system", issue, feature=SUMMARY_FEATURE, prompt=prompt, output=output,
            model=_primary(after_swap=issue > self.plan.model_swap_at), bundle=self.bundles[1],
            params=_SUMMARY_PARAMS, usage=usage, cost_usd_micros=cost, latency_ms=latency,
            parents=tuple(m.output_id for m in regional if m.status == "OK"), trace_id=trace,
            rollout=Rollout(arm="stable", alias="production", weight=1.0), classification=_KEEP,
            occurred_at=clock)
        return clock

    def consume(self, issue: datetime, clock: datetime, regional: list[_Made], summary: _Made) -> None:
        """Dispatch plans on most summaries (always the 06Z one) and checks some regions; the control room
        reviews fallbacks and, once peaks run high after the swap, more forecasts."""
        plan_ref = f"plan-{issue.date() + timedelta(days=1)}-{issue:%H}"
        uses: list[tuple[_Made, str, str, str]] = []
        if issue.hour == 6 or self.rng.random() < 0.75:
            uses.append((summary, DISPATCH, plan_ref, _PLAN_PURPOSE))
        review_p = 0.12 if issue > self.plan.model_swap_at else 0.03
        for m in (m for m in regional if m.status == "OK"):
            if self.rng.random() < 0.1:
                uses.append((m, DISPATCH, plan_ref, _PLAN_PURPOSE))
            if self.rng.random() < (0.5 if m.fallback else review_p):
                uses.append((m, REVIEW, f"review-{issue:%Y%m%d-%H}-{m.region}",
                             "fallback provider check" if m.fallback else "peak plausibility review"))
        for m, consumer, ref, purpose in uses:
            clock += timedelta(seconds=self.rng.uniform(30, 400))
            self.rec.consumed(m.output_id, consumer=consumer, consumer_ref=ref, purpose=purpose,
                              occurred_at=clock)
            self.n_consumed += 1
            if consumer == DISPATCH:
                self.dispatched.setdefault(m.output_id, ref)

    def record(self, region: str, issue: datetime, *, fallback: bool = False, **kwargs: Any) -> None:
        """Hand one call to the recorder, remember what it was for the samples, and report progress."""
        out_id = self.rec.record(**kwargs)
        self.made.append(_Made(output_id=out_id, feature=kwargs["feature"], region=region, issue=issue,
                               served=kwargs["model"].served, status=kwargs.get("status", "OK"),
                               fallback=fallback))
        if self.progress is not None and (len(self.made) % 20 == 0 or len(self.made) == self.total):
            self.progress(len(self.made), self.total)


def _samples(made: list[_Made], plan: _Plan, dispatched: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The outputs that tell the story: one region either side of the swap, the summary chained over the
    second, an output dispatch planned on, a fallback and a failure."""
    primary = [m for m in made if m.feature == FEATURE and m.status == "OK" and not m.fallback]
    before = [m for m in primary if m.issue < plan.model_swap_at][-1:]
    after_all = [m for m in primary if m.issue > plan.model_swap_at]
    after = ([m for m in after_all if before and m.region == before[0].region] or after_all)[:1]
    chained = [m for m in made if m.feature == SUMMARY_FEATURE and after and m.issue == after[0].issue]
    used = sorted((m for m in made if m.output_id in dispatched), key=lambda m: m.feature != FEATURE)[:1]
    stories = [
        (before, "forecast issued {issued}, before the provider's model swap (served {served})"),
        (after, "forecast issued {issued}, after the swap: same requested model, now served {served}"),
        (chained, "summary issued {issued}, chained over that issue's regional forecasts"),
        (used, "output issued {issued}, used by dispatch-planner for {plan}"),
        ([m for m in made if m.fallback and m.status == "OK"][:1],
         "forecast issued {issued}: northwind-ai timed out, eastgate-llm answered"),
        ([m for m in made if m.status == "ERROR"][:1],
         "forecast issued {issued}: both providers failed (status ERROR)"),
    ]
    return tuple(
        (m.output_id, f"{m.region} " + text.format(issued=f"{m.issue:%Y-%m-%d %H}Z", served=m.served,
                                                   plan=dispatched.get(m.output_id, "")))
        for found, text in stories for m in found)
