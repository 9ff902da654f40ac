"""How the Recorder SDK delivers records: from many threads, through flush and close, into a durable log;
under back-pressure from a hung log; and through a log outage via the disk spool, drained in order."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.memory_log import MemoryEventLog
from producers.recorder import Recorder
from producers.spool import SUFFIX, Spool
from producers.sqlite_log import SqliteEventLog
from producers.values import Bundle
from schemas.errors import RecorderClosedError, RecorderError, RecorderOverloadedError
from tests.unit.recorder_fakes import CODEC, BlockingLog, OutageLog, decoded, record_simple, wait_until


@pytest.fixture
def log() -> MemoryEventLog:
    return MemoryEventLog()


@pytest.fixture
def recorder(log: MemoryEventLog) -> Iterator[Recorder]:
    rec = Recorder(log, tenant="grid-ops")
    yield rec
    rec.close()


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
