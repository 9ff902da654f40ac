"""The demo scenario against a fake recorder (its own logic), and once against the real Recorder."""

from __future__ import annotations

import hashlib
import itertools
import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from lineage_api import demo_world as world
from lineage_api.demo import (
    DEFAULT_REGIONS,
    DISPATCH,
    FEATURE,
    REVIEW,
    SUMMARY_FEATURE,
    DemoSummary,
    planned_calls,
    run_scenario,
)
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

END = datetime(2026, 12, 1, 9, tzinfo=UTC)
OLD, NEW = "gridcast-large-2026-06", "gridcast-large-2026-11"


@dataclass
class FakeRecorder:
    """Keeps every call in order; output IDs are random so tests notice any reliance on their values."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    flushed: int = 0

    def register_bundle(self, *, name: str, version: str, prompt: PromptTemplate, model: ModelCall,
                        retrieval: RetrievalConfig | None = None, params: Params | None = None,
                        registered_by: str | None = None, occurred_at: datetime | None = None) -> Bundle:
        bundle = Bundle(bundle_id=hashlib.sha256(f"{name}/{version}".encode()).hexdigest(), name=name,
                        version=version)
        self.calls.append(("register_bundle", {"name": name, "version": version, "prompt": prompt,
                                               "model": model, "retrieval": retrieval, "params": params,
                                               "registered_by": registered_by, "occurred_at": occurred_at,
                                               "bundle": bundle}))
        return bundle

    def move_alias(self, *, feature: str, alias: str, bundle: Bundle, previous: Bundle | None = None,
                   weight: float = 1.0, reason: str = "", approver: str | None = None,
                   evaluation_ref: str | None = None, occurred_at: datetime | None = None) -> None:
        self.calls.append(("move_alias", {"feature": feature, "alias": alias, "bundle": bundle,
                                          "previous": previous, "weight": weight, "reason": reason,
                                          "approver": approver, "evaluation_ref": evaluation_ref,
                                          "occurred_at": occurred_at}))

    def record(self, *, feature: str, prompt: Prompt, model: ModelCall, output: Output,
               bundle: Bundle | None = None, retrieval: Retrieval | None = None, params: Params | None = None,
               usage: Usage | None = None, cost_usd_micros: int = 0, latency_ms: float = 0.0,
               status: str = "OK", error: BaseException | tuple[str, str] | None = None,
               attempts: Sequence[Attempt] = (), parents: Sequence[str] = (), trace_id: str | None = None,
               rollout: Rollout | None = None, classification: Classification | None = None,
               occurred_at: datetime | None = None) -> str:
        output_id = f"out_{uuid.uuid4().hex}"
        self.calls.append(("record", {
            "output_id": output_id, "feature": feature, "prompt": prompt, "model": model, "output": output,
            "bundle": bundle, "retrieval": retrieval, "params": params, "usage": usage,
            "cost_usd_micros": cost_usd_micros, "latency_ms": latency_ms, "status": status, "error": error,
            "attempts": tuple(attempts), "parents": tuple(parents), "trace_id": trace_id, "rollout": rollout,
            "classification": classification, "occurred_at": occurred_at}))
        return output_id

    def consumed(self, output_id: str, *, consumer: str, consumer_ref: str | None = None,
                 purpose: str | None = None, occurred_at: datetime | None = None) -> None:
        self.calls.append(("consumed", {"output_id": output_id, "consumer": consumer,
                                        "consumer_ref": consumer_ref, "purpose": purpose,
                                        "occurred_at": occurred_at}))

    def flush(self, timeout: float | None = None) -> None:
        self.flushed += 1

    def of(self, method: str) -> list[dict[str, Any]]:
        return [kw for name, kw in self.calls if name == method]


@dataclass
class Run:
    rec: FakeRecorder
    summary: DemoSummary
    progress: list[tuple[int, int]]

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.rec.of("record")


def scenario(*, days: int = 7, seed: int = 7, regions: Sequence[str] = DEFAULT_REGIONS) -> Run:
    rec, progress = FakeRecorder(), []
    summary = run_scenario(rec, days=days, seed=seed, regions=regions, end=END,
                           progress=lambda done, total: progress.append((done, total)))
    return Run(rec, summary, progress)


@pytest.fixture(scope="module")
def week() -> Run:
    return scenario()


def normalised(rec: FakeRecorder) -> list[tuple[str, dict[str, Any]]]:
    """The calls with output IDs replaced by their position among record() calls."""
    index = {kw["output_id"]: n for n, kw in enumerate(rec.of("record"))}
    out = []
    for name, kw in rec.calls:
        kw = dict(kw)
        if "output_id" in kw:
            kw["output_id"] = index[kw["output_id"]]
        if "parents" in kw:
            kw["parents"] = tuple(index[p] for p in kw["parents"])
        out.append((name, kw))
    return out


def test_same_seed_gives_the_same_calls_and_outputs() -> None:
    first, second = scenario(days=2), scenario(days=2)
    assert normalised(first.rec) == normalised(second.rec)
    assert normalised(scenario(days=2, seed=8).rec) != normalised(first.rec)


@pytest.mark.parametrize(("days", "regions"), [(1, DEFAULT_REGIONS), (2, ("north", "metro")), (3, ("valley",))])
def test_planned_calls_is_exactly_the_number_of_records(days: int, regions: tuple[str, ...]) -> None:
    run = scenario(days=days, regions=regions)
    assert planned_calls(days, regions) == len(run.records) == run.summary.forecasts


def test_default_week_is_a_few_hundred_forecasts(week: Run) -> None:
    assert 100 <= len(week.records) <= 500
    assert week.summary.consumed == len(week.rec.of("consumed")) > 0
    assert week.rec.flushed == 1 and week.rec.calls[-1][0] != "flush"


def test_summaries_chain_over_earlier_regional_outputs_of_their_trace(week: Run) -> None:
    seen: dict[str, dict[str, Any]] = {}
    summaries = 0
    for kw in week.records:
        if kw["feature"] == SUMMARY_FEATURE:
            summaries += 1
            assert kw["parents"], "a summary without parents"
            for parent in kw["parents"]:
                assert parent in seen, "parent recorded after its child, or never"
                assert seen[parent]["feature"] == FEATURE and seen[parent]["status"] == "OK"
                assert seen[parent]["trace_id"] == kw["trace_id"]
        else:
            assert kw["parents"] == ()
        seen[kw["output_id"]] = kw
    assert summaries == len(week.records) // (len(DEFAULT_REGIONS) + 1)
    traces = [kw["trace_id"] for kw in week.records if kw["feature"] == SUMMARY_FEATURE]
    assert len(set(traces)) == len(traces) and all(t.startswith("trc_") for t in traces)


def test_model_swap_changes_served_model_and_fingerprint_only_after_swap_time(week: Run) -> None:
    swap = week.summary.model_swap_at
    primary = [kw for kw in week.records if kw["model"].provider == "northwind-ai"]
    before = [kw["model"] for kw in primary if kw["occurred_at"] < swap]
    after = [kw["model"] for kw in primary if kw["occurred_at"] > swap]
    assert before and after
    assert {(m.requested, m.served) for m in before} == {("gridcast-large", OLD)}
    assert {(m.requested, m.served) for m in after} == {("gridcast-large", NEW)}
    assert len({m.fingerprint for m in before}) == len({m.fingerprint for m in after}) == 1
    assert before[0].fingerprint != after[0].fingerprint


def test_replacement_model_forecasts_peaks_higher() -> None:
    """Same inputs, other served model: the regional peaks move up by 1.5-3 % (plus small noise)."""
    ctx = world.gather_context(7, "metro", datetime(2026, 11, 28, 6, tzinfo=UTC))
    old = world.forecast(ctx, random.Random(1), uplift=1.0, band_pct=4.5)
    new = world.forecast(ctx, random.Random(1), uplift=1.02, band_pct=4.5)
    assert 1.01 < new["peak_mw"] / old["peak_mw"] < 1.03


def test_both_releases_registered_and_aliases_moved(week: Run) -> None:
    registered = {(kw["name"], kw["version"]): kw for kw in week.rec.of("register_bundle")}
    first, second = registered["grid-forecast", "2026.11.1"], registered["grid-forecast", "2026.11.2"]
    assert (first["prompt"].template_id, first["prompt"].version) == ("grid.day_ahead_load", "3")
    assert (second["prompt"].template_id, second["prompt"].version) == ("grid.day_ahead_load", "4")
    assert first["retrieval"].settings["top_k"] != second["retrieval"].settings["top_k"]
    assert first["params"].temperature == 0.2 and first["params"].seed is not None
    v1, v2 = first["bundle"], second["bundle"]
    assert {b.version for b in week.summary.bundles} >= {"2026.11.1", "2026.11.2"}

    moves = [kw for kw in week.rec.of("move_alias") if kw["feature"] == FEATURE]
    production = [kw for kw in moves if kw["alias"] == "production"]
    assert [kw["bundle"] for kw in production] == [v1, v2]
    promote = production[1]
    assert promote["previous"] == v1 and promote["approver"] == "dispatch-lead"
    assert promote["evaluation_ref"].startswith("eval_") and promote["reason"]
    canary = [kw for kw in moves if kw["alias"] == "canary"]
    assert canary[0]["bundle"] == v2 and canary[0]["weight"] == 0.1

    start, end = canary[0]["occurred_at"], promote["occurred_at"]
    canaries = [kw for kw in week.records if kw["rollout"].arm == "canary"]
    assert canaries, "seed 7 sends some traffic to the canary"
    for kw in canaries:
        assert kw["rollout"] == Rollout(arm="canary", alias="canary", weight=0.1)
        assert kw["bundle"] == v2 and kw["prompt"].template_version == "4"
        assert start < kw["occurred_at"] < end
    regional = [kw for kw in week.records if kw["feature"] == FEATURE]
    assert all(kw["bundle"] == v1 for kw in regional if kw["occurred_at"] < start)
    assert all(kw["bundle"] == v2 for kw in regional if kw["occurred_at"] > end)


def test_some_calls_fall_back_and_a_few_fail(week: Run) -> None:
    fallbacks = [kw for kw in week.records if kw["attempts"] and kw["status"] == "OK"]
    errors = [kw for kw in week.records if kw["status"] == "ERROR"]
    assert fallbacks and errors and len(errors) < len(fallbacks) < len(week.records) // 10
    for kw in fallbacks:
        assert [a.status for a in kw["attempts"]] == ["TIMEOUT", "OK"]
        assert kw["attempts"][0].provider == "northwind-ai"
        assert (kw["model"].provider, kw["model"].requested) == ("eastgate-llm", "eg-forecaster-2")
        assert kw["output"].structured["peak_mw"] > 0 and kw["latency_ms"] > 30_000
    for kw in errors:
        assert [a.status for a in kw["attempts"]] == ["TIMEOUT", "ERROR"]
        assert isinstance(kw["error"], tuple) and len(kw["error"]) == 2
        assert kw["output"].structured is None and kw["output"].text is None


def test_consumption_references_real_earlier_outputs(week: Run) -> None:
    recorded: dict[str, dict[str, Any]] = {}
    for name, kw in week.rec.calls:
        if name == "record":
            recorded[kw["output_id"]] = kw
        elif name == "consumed":
            source = recorded[kw["output_id"]]
            assert source["status"] == "OK" and kw["occurred_at"] > source["occurred_at"]
    consumed = week.rec.of("consumed")
    assert {kw["consumer"] for kw in consumed} == {DISPATCH, REVIEW}
    dispatch = [kw for kw in consumed if kw["consumer"] == DISPATCH]
    assert all(re.fullmatch(r"plan-\d{4}-\d\d-\d\d-\d\d", kw["consumer_ref"]) for kw in dispatch)
    assert all(kw["purpose"] == "day-ahead unit commitment" for kw in dispatch)
    summaries = {kw["output_id"] for kw in week.records if kw["feature"] == SUMMARY_FEATURE}
    used = {kw["output_id"] for kw in dispatch}
    assert len(used & summaries) > len(summaries) / 2 and used - summaries


def test_timestamps_are_utc_and_follow_call_order(week: Run) -> None:
    stamps = [kw["occurred_at"] for _, kw in week.rec.calls]
    assert all(t is not None and t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in stamps)
    assert stamps == sorted(stamps)
    assert stamps[-1] < END and stamps[0] > END - timedelta(days=7, hours=4)


def test_end_in_another_timezone_is_converted_to_utc() -> None:
    rec = FakeRecorder()
    run_scenario(rec, days=1, end=END.astimezone(timezone(timedelta(hours=5))))
    assert all(kw["occurred_at"].tzinfo == UTC for _, kw in rec.calls)


def test_progress_reaches_the_total(week: Run) -> None:
    total = len(week.records)
    assert week.progress[-1] == (total, total)
    done = [0] + [d for d, _ in week.progress]
    assert all(0 < b - a <= 50 for a, b in itertools.pairwise(done))
    assert {t for _, t in week.progress} == {total}


def test_forecasts_look_like_forecasts(week: Run) -> None:
    for kw in week.records:
        assert kw["classification"] == Classification(retention_class="operational-7y", pii=False)
        if kw["status"] != "OK":
            continue
        assert kw["usage"].prompt_tokens > 100 and kw["usage"].completion_tokens > 50
        assert kw["cost_usd_micros"] > 0 and kw["latency_ms"] > 0
        assert kw["prompt"].messages[0].role == "system"
        data = kw["output"].structured
        if kw["feature"] == SUMMARY_FEATURE:
            assert data["system_peak_mw"] == max(data["system_hourly_mw"])
            continue
        assert len(data["hourly_mw"]) == 24 and 0 < data["min_mw"] < data["peak_mw"]
        band = data["confidence"]
        assert band["peak_low_mw"] < data["peak_mw"] < band["peak_high_mw"]
        assert kw["prompt"].variables["region"] == data["region"]


def test_documents_are_stable_per_region_and_day(week: Run) -> None:
    versions: dict[str, set[str]] = {}
    for kw in week.records:
        if kw["retrieval"] is None:
            assert kw["feature"] == SUMMARY_FEATURE
            continue
        sources = {d.source for d in kw["retrieval"].documents}
        assert {"met-service", "scada-historian"} <= sources
        for doc in kw["retrieval"].documents:
            assert doc.score is not None and 0 <= doc.score <= 1 and doc.content
            assert re.fullmatch(r"(weather|scada)/[a-z]+/\d{4}-\d\d-\d\d|calendar/\d{4}-\d\d-\d\d", doc.doc_id)
            versions.setdefault(doc.doc_id, set()).add(doc.version)
    # The met service re-issues each day's forecast every run, so the same doc ID carries several versions.
    weather = [v for doc_id, v in versions.items() if doc_id.startswith("weather/")]
    assert max(len(v) for v in weather) > 1
    assert any(doc_id.startswith("calendar/") for doc_id in versions)


def test_sample_outputs_point_at_recorded_outputs(week: Run) -> None:
    by_id = {kw["output_id"]: kw for kw in week.records}
    samples = week.summary.sample_outputs
    assert 5 <= len(samples) <= 6
    assert all(output_id in by_id and text for output_id, text in samples)
    kinds = [by_id[output_id] for output_id, _ in samples]
    swap = week.summary.model_swap_at
    assert kinds[0]["model"].served == OLD and kinds[0]["occurred_at"] < swap
    assert kinds[1]["model"].served == NEW and kinds[1]["occurred_at"] > swap
    assert kinds[2]["feature"] == SUMMARY_FEATURE and kinds[1]["output_id"] in kinds[2]["parents"]
    assert any(kw["status"] == "ERROR" for kw in kinds)
    assert any(kw["model"].provider == "eastgate-llm" and kw["status"] == "OK" for kw in kinds)


@pytest.mark.parametrize("kwargs", [
    {"days": 0}, {"regions": ()}, {"regions": ("north", "north")}, {"end": datetime(2026, 12, 1, 9)},
])
def test_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        run_scenario(FakeRecorder(), **kwargs)


def test_one_day_through_the_real_recorder() -> None:
    from producers.memory_log import MemoryEventLog
    from producers.recorder import Recorder
    from schemas.codec import Codec

    log = MemoryEventLog()
    with Recorder(log) as recorder:
        summary = run_scenario(recorder, days=1, end=END)
    events = [Codec().decode(r.value) for r in log.read(0, 10_000)]
    names = [e.name for e in events]
    assert names.count("InferenceRecorded") == planned_calls(1, DEFAULT_REGIONS) == summary.forecasts
    assert names.count("OutputConsumed") == summary.consumed
    assert names.count("BundleRegistered") == 3 and names.count("AliasMoved") >= 3
    inferences = {e.record["output_id"]: e.record for e in events if e.name == "InferenceRecorded"}
    assert {output_id for output_id, _ in summary.sample_outputs} <= inferences.keys()
    for record in inferences.values():
        assert set(record["parent_output_ids"]) <= inferences.keys()
