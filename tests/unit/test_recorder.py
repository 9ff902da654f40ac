"""What the Recorder SDK writes, against a real in-process log: every field of a call, defaults, the other
event types, and records rejected before they reach the log. Delivery (threads, lifecycle, back-pressure, log
outages and the spool) is in test_recorder_delivery.py."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from producers.memory_log import MemoryEventLog
from producers.recorder import Recorder
from producers.values import (
    Attempt,
    Bundle,
    Classification,
    Document,
    ModelCall,
    Output,
    Params,
    PromptTemplate,
    Retrieval,
    RetrievalConfig,
    Rollout,
    Usage,
)
from schemas.errors import RecordsRejectedError
from schemas.hashing import canonical_json, sha256_hex
from schemas.ids import timestamp_from_uuid7
from tests.unit.recorder_fakes import CODEC, MODEL, BlockingLog, decoded, record_simple

TEMPLATE = PromptTemplate(template_id="forecast", version="7", text="Forecast the load for {region}.")


@pytest.fixture
def log() -> MemoryEventLog:
    return MemoryEventLog()


@pytest.fixture
def recorder(log: MemoryEventLog) -> Iterator[Recorder]:
    rec = Recorder(log, tenant="grid-ops")
    yield rec
    rec.close()


# -- what gets recorded --------------------------------------------------------------------------------


def test_record_returns_a_time_ordered_output_id_before_the_log_has_it() -> None:
    slow = BlockingLog()
    rec = Recorder(slow)
    try:
        first = record_simple(rec)
        assert slow.entered.wait(10)  # the writer is stuck inside append
        second = record_simple(rec)  # ...and the caller still gets its ID at once
        assert first.startswith("out_") and len(first) == 30
        assert second > first
        assert slow.inner.end_offset() == 0
    finally:
        slow.gate.set()
        rec.close()
    assert [e.record["output_id"] for e in decoded(slow.inner)] == [first, second]


def test_every_field_of_a_recorded_request_reaches_the_log(recorder: Recorder, log: MemoryEventLog) -> None:
    when = datetime(2024, 5, 1, 12, 51, 30, 123456, tzinfo=UTC)
    prompt = TEMPLATE.render(system="You forecast load.", region="Zürich")
    bundle = Bundle(bundle_id="ab" * 32, name="forecaster", version="2024.05.1")
    retrieval = Retrieval(
        config_id="weather-k5", config_sha256="ef" * 32, query="heat wave",
        documents=(
            Document(doc_id="d1", version="3", source="met", content="Hot and dry.", score=0.9),
            Document(doc_id="d2", content="Secret grid plan", keep_content=False),
            Document(doc_id="d3", content_sha256="01" * 32),
        ),
    )
    params = Params(temperature=0.2, top_p=0.9, max_tokens=512, seed=7, stop=("\n\n",), response_format="json",
                    tool_schemas_sha256="02" * 32, extras={"z": 1, "a": [1, 2]})
    out_id = recorder.record(
        feature="day-ahead-load", prompt=prompt, model=ModelCall(provider="openai", requested="gpt-4o",
                                                                 fingerprint="fp_1", region="eu"),
        output=Output(text="42 MW", structured={"mw": 42, "area": "ZH"}, finish_reason="stop"),
        bundle=bundle, retrieval=retrieval, params=params,
        usage=Usage(prompt_tokens=120, completion_tokens=30, cached_tokens=64),
        cost_usd_micros=1234, latency_ms=812.5, status="OK", error=TimeoutError("first try timed out"),
        attempts=(Attempt(provider="anthropic", model="claude", status="TIMEOUT", error="slow", latency_ms=30),
                  Attempt(provider="openai", model="gpt-4o", status="OK", latency_ms=782.5)),
        parents=("out_parent1", "out_parent2"), trace_id="trace-42",
        rollout=Rollout(arm="canary", alias="canary", weight=0.1),
        classification=Classification(retention_class="regulated", pii=True, subject_ids=("subj-1",)),
        occurred_at=when,
    )
    recorder.flush()
    (event,) = decoded(log)
    r = event.record
    assert event.name == "InferenceRecorded"
    assert r["output_id"] == out_id
    assert r["occurred_at"] == when
    assert timestamp_from_uuid7(bytes.fromhex(r["event_id"].replace("-", ""))) == int(when.timestamp() * 1000)
    assert (r["tenant"], r["feature"], r["trace_id"]) == ("grid-ops", "day-ahead-load", "trace-42")
    assert r["parent_output_ids"] == ["out_parent1", "out_parent2"]
    assert r["bundle"] == {"bundle_id": "ab" * 32, "name": "forecaster", "version": "2024.05.1"}
    assert r["prompt"] == {
        "template_id": "forecast", "template_version": "7", "template_sha256": sha256_hex(TEMPLATE.text),
        "variables_json": '{"region":"Zürich"}',
        "messages": [{"role": "system", "content": "You forecast load.", "name": None},
                     {"role": "user", "content": "Forecast the load for Zürich.", "name": None}],
    }
    docs = r["retrieval"]["documents"]
    assert docs[0] == {"doc_id": "d1", "version": "3", "source": "met", "content_sha256": sha256_hex("Hot and dry."),
                       "score": 0.9, "content": "Hot and dry."}
    assert docs[1]["content_sha256"] == sha256_hex("Secret grid plan") and docs[1]["content"] is None
    assert docs[2]["content_sha256"] == "01" * 32 and docs[2]["content"] is None
    assert (r["retrieval"]["config_id"], r["retrieval"]["query"]) == ("weather-k5", "heat wave")
    assert r["model"] == {"provider": "openai", "requested": "gpt-4o", "served": "gpt-4o", "fingerprint": "fp_1",
                          "endpoint": None, "region": "eu"}
    assert r["params"] == {"temperature": 0.2, "top_p": 0.9, "max_tokens": 512, "seed": 7, "stop": ["\n\n"],
                           "response_format": "json", "tool_schemas_sha256": "02" * 32,
                           "extras_json": '{"a":[1,2],"z":1}'}
    assert r["output"] == {"text": "42 MW", "structured_json": '{"area":"ZH","mw":42}', "finish_reason": "stop"}
    assert r["usage"] == {"prompt_tokens": 120, "completion_tokens": 30, "cached_tokens": 64}
    assert (r["cost_usd_micros"], r["latency_ms"], r["status"]) == (1234, 812.5, "OK")
    assert r["error"] == {"type": "TimeoutError", "message": "first try timed out"}
    assert r["attempts"] == [
        {"provider": "anthropic", "model": "claude", "status": "TIMEOUT", "error": "slow", "latency_ms": 30.0},
        {"provider": "openai", "model": "gpt-4o", "status": "OK", "error": None, "latency_ms": 782.5},
    ]
    assert r["rollout"] == {"arm": "canary", "alias": "canary", "weight": 0.1}
    assert r["classification"] == {"retention_class": "regulated", "pii": True, "subject_ids": ["subj-1"]}


def test_defaults_when_only_the_required_arguments_are_given(recorder: Recorder, log: MemoryEventLog) -> None:
    before = datetime.now(UTC)
    record_simple(recorder)
    recorder.flush()
    r = decoded(log)[0].record
    assert before <= r["occurred_at"] <= datetime.now(UTC)
    assert r["model"]["served"] == "gpt-4o"  # served defaults to the requested model
    assert r["params"]["extras_json"] == "{}" and r["params"]["stop"] == []
    assert r["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
    assert r["classification"] == {"retention_class": "standard", "pii": False, "subject_ids": []}
    assert r["bundle"] is None and r["retrieval"] is None and r["rollout"] is None and r["error"] is None
    assert r["trace_id"] is None and r["parent_output_ids"] == [] and r["attempts"] == []


def test_served_model_is_kept_when_the_provider_reports_it(recorder: Recorder, log: MemoryEventLog) -> None:
    record_simple(recorder, model=ModelCall(provider="openai", requested="gpt-4o", served="gpt-4o-2024-05-13"))
    recorder.flush()
    assert decoded(log)[0].record["model"]["served"] == "gpt-4o-2024-05-13"


def test_error_given_as_a_type_and_message_pair(recorder: Recorder, log: MemoryEventLog) -> None:
    record_simple(recorder, status="ERROR", error=("RateLimited", "429 from provider"))
    recorder.flush()
    r = decoded(log)[0].record
    assert r["status"] == "ERROR"
    assert r["error"] == {"type": "RateLimited", "message": "429 from provider"}


def test_tenant_can_be_overridden_per_call(recorder: Recorder, log: MemoryEventLog) -> None:
    record_simple(recorder, tenant="other")
    record_simple(recorder)
    recorder.flush()
    assert [e.record["tenant"] for e in decoded(log)] == ["other", "grid-ops"]


def test_key_is_the_trace_id_else_the_output_id(recorder: Recorder, log: MemoryEventLog) -> None:
    traced = record_simple(recorder, trace_id="trace-7")
    untraced = record_simple(recorder)
    recorder.flush()
    keys = {CODEC.decode(r.value).record["output_id"]: r.key for r in log.read(0, 10)}
    assert keys == {traced: b"trace-7", untraced: untraced.encode()}


def test_consumed_writes_output_consumed(recorder: Recorder, log: MemoryEventLog) -> None:
    when = datetime(2024, 5, 2, 6, 0, tzinfo=UTC)
    out_id = record_simple(recorder)
    recorder.consumed(out_id, consumer="dispatch-planner", consumer_ref="plan-77", purpose="dispatch",
                      occurred_at=when)
    recorder.flush()
    records = log.read(0, 10)
    event = CODEC.decode(records[1].value)
    assert event.name == "OutputConsumed"
    assert records[1].key == out_id.encode()
    assert {k: v for k, v in event.record.items() if k != "event_id"} == {
        "occurred_at": when, "tenant": "grid-ops", "output_id": out_id, "consumer": "dispatch-planner",
        "consumer_ref": "plan-77", "purpose": "dispatch",
    }


def test_register_bundle_is_content_addressed(recorder: Recorder, log: MemoryEventLog) -> None:
    def register(version: str, temperature: float, **kw: Any) -> Bundle:
        return recorder.register_bundle(
            name="forecaster", version=version, prompt=kw.get("prompt", TEMPLATE), model=MODEL,
            retrieval=RetrievalConfig(config_id="weather", settings={"k": 5}),
            params=Params(temperature=temperature), registered_by="release-bot",
        )

    first = register("1.0", 0.2)
    relabelled = register("1.0-final", 0.2)
    hotter = register("1.1", 0.7)
    new_text = register("1.2", 0.2, prompt=PromptTemplate(template_id="forecast", version="7", text="Other."))
    assert first.bundle_id == relabelled.bundle_id
    assert (first.version, relabelled.version) == ("1.0", "1.0-final")
    assert hotter.bundle_id != first.bundle_id
    assert new_text.bundle_id != first.bundle_id
    assert len(first.bundle_id) == 64

    recorder.flush()
    events = decoded(log)
    assert [e.name for e in events] == ["BundleRegistered"] * 4
    r = events[0].record
    assert r["bundle_id"] == first.bundle_id == sha256_hex(r["canonical_json"])  # anyone can re-hash it
    assert (r["name"], r["version"], r["tenant"], r["registered_by"]) == ("forecaster", "1.0", "grid-ops",
                                                                         "release-bot")
    assert (r["prompt_template_id"], r["prompt_template_version"]) == ("forecast", "7")
    assert r["prompt_template_sha256"] == TEMPLATE.sha256
    assert (r["model_provider"], r["model_name"]) == ("openai", "gpt-4o")
    assert r["retrieval_config_id"] == "weather"
    assert r["retrieval_config_sha256"] == sha256_hex(canonical_json({"k": 5}))
    assert '"temperature":0.2' in r["params_json"]
    assert [rec.key for rec in log.read(0, 1)] == [first.bundle_id.encode()]


def test_move_alias_writes_alias_moved(recorder: Recorder, log: MemoryEventLog) -> None:
    old = Bundle(bundle_id="aa" * 32, name="forecaster", version="1")
    new = Bundle(bundle_id="bb" * 32, name="forecaster", version="2")
    recorder.move_alias(feature="day-ahead-load", alias="canary", bundle=new, previous=old, weight=0.1,
                        reason="eval passed", approver="ops-lead", evaluation_ref="eval-9")
    recorder.flush()
    (event,) = decoded(log)
    assert event.name == "AliasMoved"
    assert {k: v for k, v in event.record.items() if k not in ("event_id", "occurred_at")} == {
        "tenant": "grid-ops", "feature": "day-ahead-load", "alias": "canary", "bundle_id": "bb" * 32,
        "previous_bundle_id": "aa" * 32, "weight": 0.1, "reason": "eval passed", "approver": "ops-lead",
        "evaluation_ref": "eval-9",
    }


NAIVE = datetime(2024, 5, 1, 12, 0)
CALLS_WITH_NAIVE_TIME: dict[str, Callable[[Recorder], object]] = {
    "record": lambda rec: record_simple(rec, occurred_at=NAIVE),
    "consumed": lambda rec: rec.consumed("out_x", consumer="c", occurred_at=NAIVE),
    "register_bundle": lambda rec: rec.register_bundle(name="b", version="1", prompt=TEMPLATE, model=MODEL,
                                                       occurred_at=NAIVE),
    "move_alias": lambda rec: rec.move_alias(feature="f", alias="a", bundle=Bundle(bundle_id="b", name="b",
                                                                                   version="1"),
                                             occurred_at=NAIVE),
}


@pytest.mark.parametrize("call", sorted(CALLS_WITH_NAIVE_TIME))
def test_a_naive_occurred_at_raises_value_error_on_the_caller(log: MemoryEventLog, call: str) -> None:
    rec = Recorder(log)
    try:
        with pytest.raises(ValueError, match="timezone-aware"):
            CALLS_WITH_NAIVE_TIME[call](rec)
        rec.flush()  # nothing was queued, so nothing is rejected later either
        assert log.end_offset() == 0
    finally:
        with contextlib.suppress(RecordsRejectedError):  # only reached when the check above already failed
            rec.close()


# -- rejected records ---------------------------------------------------------------------------------------


def test_a_record_that_cannot_be_encoded_is_reported_once_and_the_others_are_written(
    recorder: Recorder, log: MemoryEventLog
) -> None:
    good_before = record_simple(recorder)
    bad = record_simple(recorder, feature=123)
    good_after = record_simple(recorder)
    with pytest.raises(RecordsRejectedError) as info:
        recorder.flush()
    assert len(info.value.problems) == 1
    problem = info.value.problems[0]
    assert bad in problem and "feature" in problem
    assert "1 record(s) could not be encoded" in str(info.value)
    assert [e.record["output_id"] for e in decoded(log)] == [good_before, good_after]
    recorder.flush()  # reported once, not again
    assert recorder.stats()["rejected"] == 1


def test_a_document_without_content_or_hash_is_rejected(recorder: Recorder, log: MemoryEventLog) -> None:
    record_simple(recorder, retrieval=Retrieval(config_id="k", documents=(Document(doc_id="empty"),)))
    with pytest.raises(RecordsRejectedError, match="neither content nor content_sha256"):
        recorder.flush()
    assert log.end_offset() == 0


def test_an_event_over_the_size_limit_is_rejected(log: MemoryEventLog) -> None:
    with Recorder(log, max_event_bytes=2000) as rec:
        record_simple(rec, output=Output(text="x" * 5000))
        small = record_simple(rec)
        with pytest.raises(RecordsRejectedError, match="over the limit of 2000 bytes"):
            rec.flush()
    assert [e.record["output_id"] for e in decoded(log)] == [small]
