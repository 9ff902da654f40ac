"""EmbeddedRunner over a MemoryEventLog and a SQLite index: batches, lag, crashes at any moment, threads."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from sqlalchemy import Engine, event, func, select

from producers import ModelCall, Params, PromptTemplate, Recorder, RetrievalConfig
from producers.log import LogRecord
from producers.memory_log import MemoryEventLog
from schemas.errors import IndexError_, IndexRejectedError, LogUnavailableError
from streams import tables as t
from streams.reader import IndexReader, OutputFilter
from streams.runner import EmbeddedRunner
from streams.store import IndexStore, open_engine
from tests.factories import (
    GARBAGE,
    Event,
    alias_event,
    bundle_event,
    bundle_ref,
    consumed_event,
    decode,
    encode,
    inference_event,
    log_values,
    unknown_schema_bytes,
)

REAL_APPLY = IndexStore.apply


class Crash(Exception):
    """Stands for the process dying at that point."""


REFUSED_TENANT = "gridco-archive"


class RefusingStore(IndexStore):
    """Injected fault: the database refuses any batch holding an output of REFUSED_TENANT, which sends the
    runner down its event-by-event path."""

    def apply(self, rows: Any, **kwargs: Any) -> None:
        if any(o["tenant"] == REFUSED_TENANT for o in rows.outputs):
            raise IndexRejectedError("value too long for type character varying(128) (injected)")
        super().apply(rows, **kwargs)


def workload() -> tuple[list[tuple[bytes | None, bytes]], dict[str, int]]:
    """30 log records (bundles, chained inferences, consumptions, alias moves, 2 undecodable) and the row
    counts a correct index holds after all of them."""
    bundle = bundle_event()
    events: list[Event] = [("BundleRegistered", bundle)]
    previous: str | None = None
    for i in range(20):
        rec = inference_event(bundle=bundle_ref(bundle) if i % 2 else None,
                              parent_output_ids=[previous] if previous and i % 4 else [],
                              tenant=REFUSED_TENANT if i == 0 else "gridco")
        events.append(("InferenceRecorded", rec))
        previous = rec["output_id"]
        if i % 4 == 3:
            events.append(("OutputConsumed", consumed_event(rec["output_id"], consumer=f"planner-{i % 3}")))
    events += [("AliasMoved", alias_event(bundle["bundle_id"])), ("AliasMoved", alias_event(bundle["bundle_id"]))]
    records = log_values(events)
    records[7:7] = [(None, GARBAGE)]
    records.append((b"k", unknown_schema_bytes()))
    fed = sum(1 for i in range(1, 20) if i % 4)
    expected = {"outputs": 20, "bundles": 1, "consumptions": 5, "dead_letters": 2, "alias_moves": 2,
                "edges": 20 * 2 + fed}  # two documents each, parent links (consumers: read from consumptions)
    assert len(records) == 30
    return records, expected


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (t.outputs, t.bundles, t.consumptions, t.dead_letters, t.aliases, t.edges)}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def index_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'index.db'}"


@pytest.fixture
def engine(index_url: str) -> Iterator[Engine]:
    engine = open_engine(index_url)
    yield engine
    engine.dispose()


@pytest.fixture
def loaded() -> tuple[MemoryEventLog, dict[str, int]]:
    records, expected = workload()
    log = MemoryEventLog()
    log.append(records)
    return log, expected


def test_catch_up_processes_everything_and_lag_goes_to_zero(engine: Engine, loaded: Any) -> None:
    log, expected = loaded
    batches: list[tuple[int, int]] = []
    runner = EmbeddedRunner(log, IndexStore(engine), batch_size=7, on_batch=lambda a, d: batches.append((a, d)))
    assert runner.lag() == 30
    assert runner.catch_up() == 30
    assert runner.lag() == 0 and runner.store.position() == 30
    assert counts(engine) == expected
    assert (runner.applied, runner.dead) == (28, 2)
    assert [a + d for a, d in batches] == [7, 7, 7, 7, 2]


def test_run_once_takes_one_batch_and_returns_zero_when_caught_up(engine: Engine, loaded: Any) -> None:
    log, _ = loaded
    runner = EmbeddedRunner(log, IndexStore(engine), batch_size=8)
    assert runner.run_once() == 8 and runner.lag() == 22
    runner.catch_up()
    assert runner.run_once() == 0 and runner.store.position() == 30


def test_run_once_on_an_empty_log_returns_zero_and_writes_nothing(engine: Engine) -> None:
    runner = EmbeddedRunner(MemoryEventLog(), IndexStore(engine))
    assert runner.run_once() == 0 and runner.catch_up() == 0 and runner.lag() == 0
    assert sum(counts(engine).values()) == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.positions)).scalar_one() == 0


def crashing_apply(n: int, after_commit: bool) -> Callable[..., None]:
    calls = 0

    def apply(self: IndexStore, rows: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == n and not after_commit:
            raise Crash(f"before commit of batch {n}")
        REAL_APPLY(self, rows, **kwargs)
        if calls == n:
            raise Crash(f"after commit of batch {n}")

    return apply


def crash_at_statement(k: int) -> Callable[..., None]:
    executed = 0

    def fault(*_: Any) -> None:
        nonlocal executed
        executed += 1
        if executed == k:
            raise Crash(f"statement {k}")

    return fault


@pytest.mark.parametrize("after_commit", [False, True], ids=["before-commit", "after-commit"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_a_new_runner_after_a_crash_on_the_nth_batch_indexes_everything_once(
    index_url: str, loaded: Any, n: int, after_commit: bool
) -> None:
    log, expected = loaded
    first = open_engine(index_url)
    with mock.patch.object(IndexStore, "apply", autospec=True, side_effect=crashing_apply(n, after_commit)), \
            pytest.raises(Crash):
        EmbeddedRunner(log, IndexStore(first), batch_size=7).catch_up()
    first.dispose()
    committed = min(30, 7 * (n if after_commit else n - 1))
    engine = open_engine(index_url)
    try:
        runner = EmbeddedRunner(log, IndexStore(engine), batch_size=7)
        assert runner.store.position() == committed
        assert runner.catch_up() == 30 - committed
        assert counts(engine) == expected and runner.lag() == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("store_type", [IndexStore, RefusingStore], ids=["batch", "event-by-event"])
def test_a_crash_at_any_statement_loses_and_duplicates_nothing(
    tmp_path: Path, loaded: Any, store_type: type[IndexStore]
) -> None:
    log, expected = loaded
    if store_type is RefusingStore:  # the first output is dead-lettered, with its two document edges
        expected = {**expected, "outputs": 19, "dead_letters": 3, "edges": expected["edges"] - 2}

    def statements_in_a_full_run() -> int:
        engine = open_engine(f"sqlite:///{tmp_path / 'dry.db'}")
        seen = []
        event.listen(engine, "before_cursor_execute", lambda *a: seen.append(1))
        EmbeddedRunner(log, store_type(engine), batch_size=7).catch_up()
        engine.dispose()
        return len(seen)

    total = statements_in_a_full_run()
    assert total > 20
    for k in range(1, total + 1):
        url = f"sqlite:///{tmp_path / f'crash-{k}.db'}"
        engine = open_engine(url)
        event.listen(engine, "before_cursor_execute", crash_at_statement(k))
        with pytest.raises(Crash):
            EmbeddedRunner(log, store_type(engine), batch_size=7).catch_up()
        engine.dispose()
        engine = open_engine(url)
        EmbeddedRunner(log, store_type(engine), batch_size=7).catch_up()
        assert counts(engine) == expected, f"after a crash at statement {k}"
        engine.dispose()


def test_threaded_runner_picks_up_records_appended_after_start(engine: Engine) -> None:
    log = MemoryEventLog()
    runner = EmbeddedRunner(log, IndexStore(engine), batch_size=5, poll_interval=0.01)
    reader = IndexReader(engine)
    runner.start()
    try:
        assert runner.alive
        first = [inference_event() for _ in range(12)]
        log.append(log_values([("InferenceRecorded", r) for r in first]))
        wait_until(lambda: reader.stats()["outputs"] == 12, "the first 12 outputs")
        later = inference_event()
        log.append(log_values([("InferenceRecorded", later)]))
        wait_until(lambda: runner.lag() == 0 and reader.stats()["outputs"] == 13, "the 13th output")
        assert reader.output(later["output_id"])["output_id"] == later["output_id"]
    finally:
        runner.stop()
    assert not runner.alive and runner.error is None


class FlakyLog:
    """A MemoryEventLog whose first read fails the way a locked or restarting log does."""

    def __init__(self, inner: MemoryEventLog) -> None:
        self.inner, self.partition, self.failures = inner, inner.partition, 0

    def read(self, offset: int, limit: int) -> list[LogRecord]:
        if self.failures == 0:
            self.failures += 1
            raise LogUnavailableError("event log is locked")
        return self.inner.read(offset, limit)

    def end_offset(self) -> int:
        return self.inner.end_offset()


def test_run_forever_retries_after_a_transient_index_error(
    engine: Engine, loaded: Any, caplog: pytest.LogCaptureFixture
) -> None:
    log, expected = loaded
    calls = 0

    def flaky_apply(self: IndexStore, rows: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise IndexError_("cannot write to the lineage index: database is locked")
        REAL_APPLY(self, rows, **kwargs)

    runner = EmbeddedRunner(log, IndexStore(engine), batch_size=7, poll_interval=0.01)
    with caplog.at_level(logging.WARNING, logger="llm_lineage.runner"), \
            mock.patch.object(IndexStore, "apply", autospec=True, side_effect=flaky_apply):
        runner.start()
        try:
            wait_until(lambda: runner.lag() == 0, "the runner to recover and catch up")
        finally:
            runner.stop()
    assert runner.error is None and calls == 6  # one failed attempt, then five batches
    assert counts(engine) == expected
    assert "database is locked" in caplog.text


def test_run_forever_retries_after_the_log_is_briefly_unavailable(engine: Engine, loaded: Any) -> None:
    log, expected = loaded
    flaky = FlakyLog(log)
    runner = EmbeddedRunner(flaky, IndexStore(engine), batch_size=7, poll_interval=0.01)
    runner.start()
    try:
        wait_until(lambda: runner.lag() == 0, "the runner to catch up after the log came back")
    finally:
        runner.stop()
    assert flaky.failures == 1 and runner.error is None
    assert counts(engine) == expected


def test_an_unexpected_error_stops_the_thread_and_is_kept(engine: Engine, loaded: Any) -> None:
    log, _ = loaded
    boom = RuntimeError("projector bug")
    runner = EmbeddedRunner(log, IndexStore(engine), poll_interval=0.01)
    with mock.patch.object(IndexStore, "apply", autospec=True, side_effect=boom):
        runner.start()
        try:
            wait_until(lambda: not runner.alive, "the runner thread to stop")
        finally:
            runner.stop()
    assert runner.error is boom
    assert runner.store.position() == 0


def test_bundles_registered_through_the_sdk_are_indexed_and_a_tampered_copy_is_dead_lettered(
    engine: Engine,
) -> None:
    """The SDK's bundle_id is the sha256 of the canonical content, which the projector now checks: its own
    registrations (with and without retrieval and params) must pass, a relabelled content must not."""
    log = MemoryEventLog()
    template = PromptTemplate(template_id="load-forecast", version="3", text="Forecast {region} load.")
    with Recorder(log) as recorder:
        plain = recorder.register_bundle(name="forecaster", version="1", prompt=template,
                                         model=ModelCall(provider="openai", requested="gpt-4o"))
        full = recorder.register_bundle(
            name="forecaster", version="2", prompt=template, model=ModelCall(provider="openai", requested="gpt-4o"),
            retrieval=RetrievalConfig(config_id="grid-docs", settings={"top_k": 4, "index": "grid-docs"}),
            params=Params(temperature=0.2, seed=7, stop=("END",), extras={"région": "nord"}),
            registered_by="release-bot")
    [first, _] = log.read(0, 10)
    tampered = decode(first.value).record
    tampered["canonical_json"] = tampered["canonical_json"].replace("gpt-4o", "gpt-4o-mini")
    log.append([(b"k", encode("BundleRegistered", tampered))])

    runner = EmbeddedRunner(log, IndexStore(engine))
    runner.catch_up()

    with engine.connect() as conn:
        indexed = conn.execute(select(t.bundles.c.bundle_id)).scalars().all()
    assert sorted(indexed) == sorted([plain.bundle_id, full.bundle_id])
    [dead] = IndexReader(engine).dead_letters()
    assert dead["log_offset"] == 2
    assert f"BundleRegistered.bundle_id '{plain.bundle_id}' does not match the sha256" in dead["reason"]


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("prompt", {"variables_json": "{'region': 'north'}"}, "InferenceRecorded.prompt.variables_json: not valid JSON"),
    ("params", {"extras_json": "[]"}, "InferenceRecorded.params.extras_json: expected a JSON object, got an array"),
    ("output", {"structured_json": "4210 MW"}, "InferenceRecorded.output.structured_json: not valid JSON"),
], ids=["variables", "extras", "structured"])
def test_an_event_whose_json_fields_cannot_be_shown_is_dead_lettered(
    engine: Engine, field: str, value: dict[str, Any], reason: str
) -> None:
    """Indexed, it would make GET /v1/outputs/{id} fail for as long as the index exists."""
    good, bad = inference_event(), inference_event(**{field: value})
    log = MemoryEventLog()
    log.append(log_values([("InferenceRecorded", bad), ("InferenceRecorded", good)]))
    EmbeddedRunner(log, IndexStore(engine)).catch_up()
    reader = IndexReader(engine)
    assert [i["output_id"] for i in reader.outputs(OutputFilter()).items] == [good["output_id"]]
    [dead] = reader.dead_letters()
    assert dead["log_offset"] == 0 and reason in dead["reason"]
