"""`lineage worker` against a real Kafka-protocol broker (tansu) and real PostgreSQL: the SDK's events are
indexed once each, through crashes, re-deliveries, rebalances and SIGTERM. Every scenario ends with the
same check: events sent == events indexed, no duplicates, no gaps in any partition."""

from __future__ import annotations

import time

import pytest

from tests.kafka.harness import (
    BackgroundRecording,
    Deployment,
    WorkerProcess,
    assert_exact,
    index_counts,
    positions,
    record_chains,
    wait_caught_up,
)
from tests.servers import run_cli, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]


def test_sdk_events_are_indexed_once_with_their_lineage(deployment: Deployment) -> None:
    with deployment.recorder() as recorder:
        recorded = record_chains(recorder, 200)
        assert recorder.stats()["spooled"] == 0
    worker = WorkerProcess(deployment)
    try:
        engine = deployment.engine()
        wait_caught_up(engine, recorded, workers=[worker])
        counts = assert_exact(engine, recorded, cycles=200)
        assert counts.leaves >= len(recorded)  # every record is a leaf (and so are the checkpoints)
        assert set(positions(engine)) == set(range(deployment.partitions)), "the chains spread over partitions"
        assert worker.terminate() == 0
    finally:
        worker.stop()

    # The auditor's check in production mode: every partition of the topic against the index's Merkle trees.
    verified = run_cli("verify", env=deployment.env(), timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"in {deployment.partitions} partitions: no problems" in verified.stdout
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE outputs SET body = overlay(body placing '\\x00'::bytea from 40 for 1) "
                             "WHERE output_id = %(o)s", {"o": recorded[7]})
    tampered = run_cli("verify", env=deployment.env(), timeout=120)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert f"copy of output {recorded[7]} differs from the log record" in tampered.stdout, tampered.stdout


def test_sigterm_stops_the_worker_cleanly_and_a_restart_resumes(deployment: Deployment) -> None:
    engine = deployment.engine()
    worker = WorkerProcess(deployment)
    try:
        worker.wait_assigned()
        with deployment.recorder() as recorder:
            first = record_chains(recorder, 100, tag="a")
        wait_caught_up(engine, first, workers=[worker])
        assert worker.terminate(timeout=30) == 0
        assert "Traceback" not in worker.output()

        with deployment.recorder() as recorder:  # recorded while no worker runs
            second = record_chains(recorder, 100, tag="b")
        again = WorkerProcess(deployment)
        try:
            wait_caught_up(engine, first + second, workers=[again])
            assert_exact(engine, first + second, cycles=200)
        finally:
            again.stop()
    finally:
        worker.stop()


def test_worker_killed_mid_stream_and_restarted_loses_and_doubles_nothing(deployment: Deployment) -> None:
    with deployment.recorder() as recorder:
        recorded = record_chains(recorder, 1200)  # 6,000 events: the worker is killed well before the end
    engine = deployment.engine()
    worker = WorkerProcess(deployment)
    try:
        wait_for(lambda: True if sum(positions(engine).values()) > 500 else None, timeout=60,
                 what="the worker to index a first batches", interval=0.02)
        worker.kill()  # SIGKILL: no shutdown, offsets uncommitted, a batch possibly half-sent to PostgreSQL
        indexed_at_kill = sum(positions(engine).values())
        assert indexed_at_kill < len(recorded), "killed too late to test anything"
        restarted = WorkerProcess(deployment)
        try:
            wait_caught_up(engine, recorded, workers=[restarted])
            assert_exact(engine, recorded, cycles=1200)
        finally:
            restarted.stop()
    finally:
        worker.stop()


def test_redelivery_to_a_new_consumer_group_changes_nothing(deployment: Deployment) -> None:
    """A consumer that reads the whole topic again (a new group, offsets from the start) skips every
    record already in the index: positions live with the rows, not in the consumer group."""
    with deployment.recorder() as recorder:
        recorded = record_chains(recorder, 150)
    engine = deployment.engine()
    worker = WorkerProcess(deployment)
    try:
        wait_caught_up(engine, recorded, workers=[worker])
        before = assert_exact(engine, recorded, cycles=150)
        worker.terminate()
    finally:
        worker.stop()

    deployment.extra_env["LINEAGE_WORKER_GROUP"] = f"another-group-{deployment.name}"
    second = WorkerProcess(deployment)
    try:
        second.wait_assigned()
        time.sleep(3)  # let it receive the whole topic again
        assert index_counts(engine) == before
        assert_exact(engine, recorded, cycles=150)
    finally:
        second.stop()


def test_two_workers_share_partitions_and_the_index_stays_exact_through_rebalances(
    deployment: Deployment,
) -> None:
    engine = deployment.engine()
    first = WorkerProcess(deployment)
    workers = [first]
    traffic = BackgroundRecording(deployment)
    try:
        first.wait_assigned()
        traffic.start()
        time.sleep(2)
        second = WorkerProcess(deployment)  # joins: the group rebalances under load
        workers.append(second)
        second.wait_assigned()
        time.sleep(3)
        first.kill()  # dies: its partitions move to the second worker after the session timeout
        time.sleep(2)
        recorded = traffic.stop()
        wait_caught_up(engine, recorded, workers=[second], timeout=180)
        assert_exact(engine, recorded, cycles=len(recorded) // 5)
        assert "assigned; resuming at index position" in second.output()
    finally:
        traffic.stop()
        for w in workers:
            w.stop()
