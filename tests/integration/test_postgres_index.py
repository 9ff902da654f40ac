"""End to end on a real PostgreSQL: Recorder -> SQLite event log -> EmbeddedRunner -> PostgreSQL index, then
every recorded output is read back; connection pool restarts and dropped connections lose nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from producers.recorder import Recorder
from producers.sqlite_log import SqliteEventLog
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
from streams.reader import IndexReader, OutputFilter
from streams.runner import EmbeddedRunner
from streams.store import IndexStore, open_engine

TEMPLATE = PromptTemplate(template_id="load-forecast", version="3",
                          text="Forecast the day-ahead load for {region} on {day}, hourly, as JSON.")
REGIONS = ["north", "south", "east", "west", "coast"]
START = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)


@pytest.fixture
def engine(postgres_index_url: str) -> Iterator[Engine]:
    engine = open_engine(postgres_index_url)
    yield engine
    engine.dispose()


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "log.db"


def register(rec: Recorder) -> Bundle:
    return rec.register_bundle(
        name="load-forecaster", version="2026.11.1", prompt=TEMPLATE,
        model=ModelCall(provider="openai", requested="gpt-4o"),
        retrieval=RetrievalConfig(config_id="grid-docs", settings={"index": "grid-docs", "top_k": 2}),
        params=Params(temperature=0.2, seed=7, max_tokens=800), registered_by="release-bot",
    )


def record_batch(rec: Recorder, bundle: Bundle, first: int, count: int) -> list[str]:
    """`count` realistic forecasts; every fifth one is a chain step fed by the previous output, every
    tenth is consumed by the dispatch planner, a few fell back to a second provider or failed."""
    ids: list[str] = []
    for i in range(first, first + count):
        region = REGIONS[i % len(REGIONS)]
        day = (START + timedelta(days=i // 100)).date().isoformat()
        failed = i % 37 == 0
        out = rec.record(
            feature="day-ahead-load" if i % 5 else "dispatch-note",
            prompt=TEMPLATE.render(system="You are a grid forecasting assistant.", region=region, day=day),
            model=ModelCall(provider="openai", requested="gpt-4o",
                            served="gpt-4o-2024-11-20" if i % 3 else "gpt-4o-2024-08-06", fingerprint="fp_5f2c0a"),
            output=Output(text=None if failed else f'{{"region":"{region}","peak_mw":{3000 + i}}}',
                          structured=None if failed else {"region": region, "peak_mw": 3000 + i},
                          finish_reason="error" if failed else "stop"),
            bundle=bundle,
            retrieval=Retrieval(config_id="grid-docs", query=f"{region} load {day}", documents=[
                Document(doc_id=f"grid-ops/{region}-load", version=day, source="sharepoint://grid-ops",
                         content=f"{region} hourly load history up to {day}", score=0.9),
                Document(doc_id=f"weather/{region}", version=day, content=f"{region} forecast {day}", score=0.7),
            ]),
            params=Params(temperature=0.2, seed=7, max_tokens=800, extras={"attempt_budget": 2}),
            usage=Usage(prompt_tokens=1200 + i % 50, completion_tokens=150),
            cost_usd_micros=4000 + i % 100, latency_ms=700.0 + i % 300,
            status="ERROR" if failed else "OK",
            error=("RateLimitError", "429 from provider") if failed else None,
            attempts=[Attempt(provider="azure", model="gpt-4o", status="TIMEOUT", error="timeout after 30s",
                              latency_ms=30000.0)] if i % 11 == 0 else (),
            parents=[ids[-1]] if ids and i % 5 == 0 else (),
            trace_id=f"trace-{i // 5}",
            rollout=Rollout(arm="canary" if i % 10 == 9 else "stable", alias="production", weight=0.9),
            classification=Classification(retention_class="regulated"),
        )
        if i % 10 == 0:
            rec.consumed(out, consumer="dispatch-planner", consumer_ref=f"plan-{day}-{region}")
        ids.append(out)
    rec.flush(timeout=30)
    return ids


def all_ids(reader: IndexReader, limit: int = 500) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(1000):
        page = reader.outputs(OutputFilter(), cursor=cursor, limit=limit)
        ids.extend(item["output_id"] for item in page.items)
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor
    raise AssertionError("paging did not terminate")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_two_thousand_recorded_outputs_are_each_indexed_exactly_once(engine: Engine, log_path: Path) -> None:
    source = SqliteEventLog(log_path)
    runner = EmbeddedRunner(source, IndexStore(engine), batch_size=300)
    recorded: list[str] = []
    with Recorder(log=SqliteEventLog(log_path), tenant="gridco") as rec:
        bundle = register(rec)
        for first in range(0, 2000, 500):
            recorded += record_batch(rec, bundle, first, 500)
            runner.catch_up()
            assert runner.lag() == 0
        assert rec.stats()["rejected"] == 0
    source.close()
    assert len(set(recorded)) == 2000
    reader = IndexReader(engine)
    assert reader.stats() == {"outputs": 2000, "bundles": 1, "consumptions": 200, "dead_letters": 0}
    for output_id in recorded:
        assert reader.output(output_id)["output_id"] == output_id
    listed = all_ids(reader)
    assert len(listed) == 2000 and set(listed) == set(recorded)
    assert listed == sorted(recorded, reverse=True), "newest first"
    chained = reader.output(recorded[10])
    assert chained["parents"] == [recorded[9]] and chained["bundle"]["registered"] is True
    assert [c["consumer"] for c in chained["consumers"]] == ["dispatch-planner"]
    assert chained["output"]["structured"] == {"region": "north", "peak_mw": 3010}
    assert reader.output(recorded[9])["children"] == [recorded[10]]
    assert reader.output(recorded[37])["error"] == {"type": "RateLimitError", "message": "429 from provider"}


def test_disposing_the_connection_pool_between_batches_loses_nothing(engine: Engine, log_path: Path) -> None:
    source = SqliteEventLog(log_path)
    runner = EmbeddedRunner(source, IndexStore(engine), batch_size=70)
    recorded: list[str] = []
    with Recorder(log=SqliteEventLog(log_path), tenant="gridco") as rec:
        bundle = register(rec)
        for first in range(0, 1000, 100):
            recorded += record_batch(rec, bundle, first, 100)
            while runner.run_once():
                engine.dispose()  # the pool restarts between index batches
    try:
        reader = IndexReader(engine)
        assert runner.lag() == 0 and reader.stats()["outputs"] == 1000  # lag reads the log: close it after
        assert sorted(all_ids(reader, limit=100)) == sorted(recorded)
    finally:
        source.close()


def test_dropped_server_connections_are_retried_and_lose_nothing(
    engine: Engine, log_path: Path, postgres_index_url: str
) -> None:
    """Connections killed under a running runner (a failover, a restart) cost retries, never records."""
    killer = create_engine(postgres_index_url, poolclass=NullPool)
    source = SqliteEventLog(log_path)
    runner = EmbeddedRunner(source, IndexStore(engine), batch_size=50, poll_interval=0.01)
    recorded: list[str] = []
    killed = 0
    runner.start()
    try:
        with Recorder(log=SqliteEventLog(log_path), tenant="gridco") as rec:
            bundle = register(rec)
            for first in range(0, 1000, 100):
                recorded += record_batch(rec, bundle, first, 100)
                with killer.connect() as conn:
                    killed += len(conn.execute(text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )).all())
        wait_until(lambda: runner.lag() == 0, "the runner to catch up after dropped connections")
    finally:
        runner.stop()
        source.close()
        killer.dispose()
    assert killed > 0, "the test must actually drop connections"
    assert runner.error is None and runner.alive is False
    reader = IndexReader(engine)
    assert reader.stats()["outputs"] == 1000
    assert sorted(all_ids(reader)) == sorted(recorded)
