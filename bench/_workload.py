"""The benchmark workload: realistic grid-forecasting LLM calls, the SDK values an app builds from them,
and the assistant's traffic as cycles of chained calls (documents and templates come from _corpus.py).

A call here is what the forecasting assistant holds after the provider answers: a system and a user message
(~1 KB together), three retrieved documents of 300-500 characters, model and parameters, a structured JSON
forecast with a short text, and token usage. `CallInputs` is that raw material; `build_call` turns it into
the SDK value objects, which is the part of recording an app pays for on its own thread.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from _corpus import FEATURES, LOAD_SHAPE, REGIONS, START, TEMPLATES, DocSpec, Template, document_pool

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

# -- calls -----------------------------------------------------------------------------------------

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
    mw = [round(base * s * rng.gauss(1.0, 0.01), 1) for s in LOAD_SHAPE]
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
    issue = START + timedelta(hours=i // len(REGIONS))
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
        at = START + timedelta(seconds=k * CYCLE_SECONDS) if timed else None
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
