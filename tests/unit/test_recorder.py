"""The Recorder SDK against real in-process logs, with injected log faults (blocking, outage)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from producers.log import ReadableEventLog
from producers.memory_log import MemoryEventLog
from producers.recorder import Recorder
from producers.spool import SUFFIX, Spool
from producers.sqlite_log import SqliteEventLog
from producers.values import (
    Attempt,
    Bundle,
    Classification,
    Document,
    Message,
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
from schemas.codec import Codec, DecodedEvent
from schemas.errors import (
    LogUnavailableError,
    RecorderClosedError,
    RecorderError,
    RecorderOverloadedError,
    RecordsRejectedError,
)
from schemas.hashing import canonical_json, sha256_hex
from schemas.ids import timestamp_from_uuid7

CODEC = Codec()
PROMPT = Prompt(template_id="forecast", messages=(Message(role="user", content="Load for Zürich?"),))
MODEL = ModelCall(provider="openai", requested="gpt-4o")
OUTPUT = Output(text="42 MW", finish_reason="stop")
TEMPLATE = PromptTemplate(template_id="forecast", version="7", text="Forecast the load for {region}.")


# -- helpers and injected faults ------------------------------------------------------------------------


def decoded(log: ReadableEventLog) -> list[DecodedEvent]:
    return [CODEC.decode(r.value) for r in log.read(0, 1_000_000)]


def wait_until(condition: Callable[[], bool], *, deadline_s: float = 15.0) -> bool:
    """Poll until `condition` holds; a generous deadline, not a performance assertion."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def record_simple(recorder: Recorder, **overrides: Any) -> str:
    kwargs: dict[str, Any] = {"feature": "day-ahead-load", "prompt": PROMPT, "model": MODEL, "output": OUTPUT}
    kwargs.update(overrides)
    return recorder.record(**kwargs)


class BlockingLog:
    """A log whose append waits until the test opens the gate: the log is slow or hung."""

    def __init__(self) -> None:
        self.inner = MemoryEventLog()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def append(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        self.entered.set()
        self.gate.wait(30)
        self.inner.append(records)

    def close(self) -> None:
        self.gate.set()


class OutageLog:
    """A readable log that raises LogUnavailableError (after an optional stall) while `down` is set."""

    partition = 0

    def __init__(self, inner: ReadableEventLog, *, stall_s: float = 0.0) -> None:
        self.inner = inner
        self.down = threading.Event()
        self.stall_s = stall_s
        self.failing_append_started = threading.Event()
        self.failing_append_finished = threading.Event()
        self.failed_appends = 0

    def append(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        if self.down.is_set():
            self.failing_append_started.set()
            time.sleep(self.stall_s)
            self.failed_appends += 1
            self.failing_append_finished.set()
            raise LogUnavailableError("injected: the log is down")
        self.inner.append(records)

    def read(self, offset: int, limit: int) -> list[Any]:
        return self.inner.read(offset, limit)

    def end_offset(self) -> int:
        return self.inner.end_offset()

    def close(self) -> None:
        pass  # the test still reads the inner log after the recorder closes


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


# -- concurrency, lifecycle, back-pressure ----------------------------------------------------------------


def test_records_from_many_threads_all_arrive_exactly_once(recorder: Recorder, log: MemoryEventLog) -> None:
    per_thread, threads_n = 400, 8
    made: list[list[str]] = [[] for _ in range(threads_n)]
    start = threading.Barrier(threads_n)

    def work(n: int) -> None:
        start.wait()
        for i in range(per_thread):
            made[n].append(record_simple(recorder, feature=f"t{n}-{i}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorder.flush()
    in_log = [e.record["output_id"] for e in decoded(log)]
    assert len(in_log) == per_thread * threads_n
    assert sorted(in_log) == sorted(i for ids in made for i in ids)
    features = [e.record["feature"] for e in decoded(log)]
    for n in range(threads_n):  # each thread's records keep its order
        assert [f for f in features if f.startswith(f"t{n}-")] == [f"t{n}-{i}" for i in range(per_thread)]
    assert recorder.stats()["acknowledged"] == per_thread * threads_n


def test_stats_count_recorded_and_acknowledged(recorder: Recorder) -> None:
    for _ in range(5):
        record_simple(recorder)
    recorder.flush()
    stats = recorder.stats()
    assert (stats["recorded"], stats["acknowledged"], stats["spooled"], stats["rejected"], stats["queued"]) == (
        5, 5, 0, 0, 0,
    )


def test_close_flushes_and_then_every_call_raises_recorder_closed(log: MemoryEventLog) -> None:
    rec = Recorder(log)
    out_id = record_simple(rec)
    rec.close()
    assert [e.record["output_id"] for e in decoded(log)] == [out_id]
    with pytest.raises(RecorderClosedError):
        record_simple(rec)
    with pytest.raises(RecorderClosedError):
        rec.consumed(out_id, consumer="c")
    with pytest.raises(RecorderClosedError):
        rec.move_alias(feature="f", alias="a", bundle=Bundle(bundle_id="b", name="b", version="1"))
    rec.close()  # closing twice is harmless


def test_a_recorder_needs_a_log_or_a_url() -> None:
    with pytest.raises(RecorderError, match="log_url"):
        Recorder()


def test_a_recorder_opens_its_log_from_a_url(tmp_path: Path) -> None:
    with Recorder(log_url=f"sqlite:///{tmp_path}/log.db") as rec:
        out_id = record_simple(rec)
    log = SqliteEventLog(tmp_path / "log.db")
    try:
        assert [e.record["output_id"] for e in decoded(log)] == [out_id]
    finally:
        log.close()


def test_records_are_durable_in_a_sqlite_log_after_flush(tmp_path: Path) -> None:
    rec = Recorder(SqliteEventLog(tmp_path / "log.db"), batch_size=7)
    ids = [record_simple(rec, feature=f"f{i}") for i in range(30)]
    rec.flush()
    reader = SqliteEventLog(tmp_path / "log.db")  # a separate connection sees them once flush returns
    try:
        assert [e.record["output_id"] for e in decoded(reader)] == ids
    finally:
        reader.close()
        rec.close()


def test_a_full_queue_raises_overloaded_after_the_block_timeout() -> None:
    stuck = BlockingLog()
    rec = Recorder(stuck, queue_size=10, block_timeout=0.2)
    accepted: list[str] = []
    try:
        with pytest.raises(RecorderOverloadedError, match="stayed full"):
            for _ in range(10_000):
                accepted.append(record_simple(rec))
        assert 10 <= len(accepted) < 10_000
    finally:
        stuck.gate.set()
        rec.close()
    # Everything the caller was not told about was accepted and reaches the log.
    assert [e.record["output_id"] for e in decoded(stuck.inner)] == accepted


# -- log outage: spool, then drain ---------------------------------------------------------------------------


def test_records_made_during_an_outage_are_spooled_then_drained_in_order(tmp_path: Path) -> None:
    log = OutageLog(SqliteEventLog(tmp_path / "log.db"))
    spool_dir = tmp_path / "spool"
    rec = Recorder(log, spool_dir=spool_dir, batch_size=50)
    try:
        before = [record_simple(rec, feature="before")]
        rec.flush()
        log.down.set()
        during = [record_simple(rec, feature=f"during-{i}") for i in range(120)]
        rec.flush()  # acknowledged: durable in the spool
        assert rec.stats()["spooled"] > 0
        assert log.inner.end_offset() == 1
        assert list(spool_dir.glob("*" + SUFFIX))

        log.down.clear()
        after = [record_simple(rec, feature="after")]
        rec.flush()
        expected = before + during + after
        assert wait_until(lambda: log.inner.end_offset() >= len(expected)), rec.stats()
        assert wait_until(lambda: not list(spool_dir.glob("*" + SUFFIX)))
        assert [e.record["output_id"] for e in decoded(log.inner)] == expected
        # The writer counts a drain after the spool file is gone: wait for the counter, not just the file.
        assert wait_until(lambda: rec.stats()["drained"] == rec.stats()["spooled"] > 0), rec.stats()
        assert log.failed_appends > 0
    finally:
        rec.close()
        log.inner.close()


def test_record_does_not_wait_for_a_failing_log(tmp_path: Path) -> None:
    log = OutageLog(MemoryEventLog(), stall_s=1.0)
    log.down.set()
    rec = Recorder(log, spool_dir=tmp_path / "spool")
    try:
        ids = [record_simple(rec)]
        assert log.failing_append_started.wait(10)
        ids += [record_simple(rec) for _ in range(100)]
        # All 100 calls came back while the writer was still inside the first failing append.
        assert not log.failing_append_finished.is_set()
        rec.flush()
        log.down.clear()
        assert wait_until(lambda: log.end_offset() == 101), rec.stats()
        assert [e.record["output_id"] for e in decoded(log)] == ids
    finally:
        log.down.clear()
        rec.close()


def test_a_new_recorder_drains_spool_files_left_by_an_earlier_one(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    leftover = Spool(spool_dir)  # a recorder that spooled during an outage and then exited
    old_events = [(b"k", CODEC.encode("OutputConsumed", {"event_id": f"e{i}", "occurred_at": i,
                                                         "output_id": "out_x", "consumer": "c"}))
                  for i in range(3)]
    leftover.append(old_events)
    leftover.close()

    log = MemoryEventLog()
    with Recorder(log, spool_dir=spool_dir) as rec:
        record_simple(rec)
        rec.flush()
        drained = wait_until(lambda: log.end_offset() == 4, deadline_s=5.0)
    assert drained, f"{log.end_offset()} records in the log; spool files left: {list(spool_dir.iterdir())}"
    assert {r.value for r in log.read(0, 10)} >= {v for _, v in old_events}
    assert not list(spool_dir.glob("*" + SUFFIX))
