"""Outages under load: the broker killed and restarted mid-stream (the SDK spools, then drains), and the
index's PostgreSQL crashed and restarted while the worker writes to it. Each ends with events sent ==
events indexed, no duplicates, no gaps."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.store import open_engine
from tests.brokers import TansuBroker
from tests.conftest import service_missing
from tests.kafka.harness import (
    BackgroundRecording,
    Deployment,
    WorkerProcess,
    assert_exact,
    positions,
    record_chains,
    wait_caught_up,
)
from tests.pg_server import PostgresServer, own_postgres, postgres_bin
from tests.servers import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]


def test_broker_killed_mid_stream_sdk_spools_and_everything_arrives(
    durable_broker: TansuBroker, fresh_index_url: str, tmp_path: Path,
) -> None:
    # The S3-backed broker serves fetches slowly when the wait is short: keep the consumer's default wait.
    dep = Deployment(durable_broker.bootstrap, fresh_index_url, tmp_path / "data",
                     extra_env={"LINEAGE_WORKER_FETCH_WAIT_MS": "500"})
    dep.create_topics()
    open_engine(fresh_index_url).dispose()
    worker = WorkerProcess(dep)
    try:
        worker.wait_assigned()
        with dep.recorder(producer_config={"message.timeout.ms": 3000}) as recorder:
            recorded = record_chains(recorder, 60, tag="up-")
            recorder.flush(60)
            durable_broker.kill()
            started = time.monotonic()
            recorded += record_chains(recorder, 60, tag="down-")  # the caller never waits on the dead broker
            recording_took = time.monotonic() - started
            recorder.flush(60)  # what was recorded while the broker is down is acknowledged: spooled
            assert recorder.stats()["spooled"] > 0, recorder.stats()
            durable_broker.start()
            recorded += record_chains(recorder, 60, tag="back-")
        stats = recorder.stats()
        assert stats["drained"] == stats["spooled"], stats
        assert recording_took < 3.0, f"record() calls took {recording_took:.1f}s in all while the broker was down"
        engine = dep.engine()
        wait_caught_up(engine, recorded, workers=[worker], timeout=180)
        assert_exact(engine, recorded, cycles=180)
    finally:
        worker.stop()
        dep.close()


@pytest.fixture
def own_pg(pytestconfig: pytest.Config) -> Iterator[PostgresServer]:
    if postgres_bin() is None:
        service_missing(pytestconfig, "PostgreSQL server binaries (initdb, pg_ctl)")
    with own_postgres() as server:
        yield server


def test_postgres_crashed_and_restarted_under_load(kafka_broker: TansuBroker, own_pg: PostgresServer,
                                                   tmp_path: Path) -> None:
    dep = Deployment(kafka_broker.bootstrap, own_pg.url, tmp_path / "data")
    dep.create_topics()
    open_engine(own_pg.url).dispose()
    worker = WorkerProcess(dep)
    traffic = BackgroundRecording(dep, pause=0.02)
    try:
        worker.wait_assigned()
        traffic.start()
        engine = dep.engine()
        wait_for(lambda: True if sum(positions(engine).values()) > 300 else None, timeout=60,
                 what="the worker to index under load", interval=0.05)
        dep.close()
        own_pg.crash()  # connections drop mid-transaction; the worker retries, holding its batch
        time.sleep(3)
        own_pg.start()
        time.sleep(2)
        recorded = traffic.stop()
        engine = dep.engine()
        wait_caught_up(engine, recorded, workers=[worker], timeout=180)
        assert_exact(engine, recorded, cycles=len(recorded) // 5)
        assert "index unavailable" in worker.output(), "the worker saw the outage and retried"
    finally:
        traffic.stop()
        worker.stop()
        dep.close()
