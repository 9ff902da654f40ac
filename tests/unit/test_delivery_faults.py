"""Faults in the SDK's delivery path: each case once lost records or stalled the writer."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from producers.memory_log import MemoryEventLog
from producers.recorder import Recorder
from producers.spool import SUFFIX, Spool
from schemas.errors import RecordsRejectedError
from tests.unit.recorder_fakes import OutageLog, decoded, record_simple, wait_until


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ failed (injected)")


def test_a_value_that_fails_while_encoding_rejects_that_record_only(tmp_path: Path) -> None:
    log = MemoryEventLog()
    rec = Recorder(log)
    try:
        good = record_simple(rec)
        record_simple(rec, error=Unprintable())
        after = record_simple(rec)
        with pytest.raises(RecordsRejectedError, match="__str__ failed"):
            rec.flush(timeout=10)
        assert [e.record["output_id"] for e in decoded(log)] == [good, after]
        later = record_simple(rec)  # the writer is still alive and working
        rec.flush(timeout=10)
        assert decoded(log)[-1].record["output_id"] == later
    finally:
        rec.close()


class ExplodingLog(MemoryEventLog):
    """Injected fault: a custom log raising something that is not a LogError, a set number of times."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def append(self, records: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("driver bug (injected)")
        super().append(records)


def test_a_log_raising_an_unexpected_error_loses_nothing(tmp_path: Path) -> None:
    log = ExplodingLog(failures=2)
    rec = Recorder(log, spool_dir=tmp_path / "spool")
    try:
        ids = [record_simple(rec) for _ in range(30)]
        rec.flush(timeout=10)  # acknowledged: in the spool, since the log failed
        assert wait_until(lambda: log.end_offset() == 30)
        assert [e.record["output_id"] for e in decoded(log)] == ids
    finally:
        rec.close()


def test_without_a_spool_the_writer_waits_and_then_resets_its_backoff() -> None:
    outage = OutageLog(MemoryEventLog())
    outage.down.set()
    rec = Recorder(outage)
    try:
        first = record_simple(rec)
        assert wait_until(lambda: outage.failed_appends >= 1)
        outage.down.clear()
        rec.flush(timeout=15)
        assert [e.record["output_id"] for e in decoded(outage.inner)] == [first]
        writer = rec._writer
        # Once the log answered, no retry stays scheduled: an idle writer sleeps instead of spinning.
        assert writer._retry_at == 0.0 and writer._backoff == 0.0
        assert writer._idle_wait() == 0.5
    finally:
        rec.close()


def test_a_failed_spool_write_is_cut_back_so_later_frames_stay_readable(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([(b"k1", b"first")])
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device (injected)")
        real_fsync(fd)

    with mock.patch("producers.spool.os.fsync", failing_fsync), pytest.raises(OSError):
        spool.append([(b"k2", b"never acknowledged")])
    spool.append([(b"k3", b"third")])
    log = MemoryEventLog()
    assert spool.drain(log) == 2
    assert [(r.key, r.value) for r in log.read(0, 10)] == [(b"k1", b"first"), (b"k3", b"third")]


def test_a_spool_file_damaged_in_the_middle_is_set_aside_not_deleted(tmp_path: Path) -> None:
    writer = Spool(tmp_path)
    writer.append([(None, b"a" * 50)])
    writer.append([(None, b"b" * 50)])
    path = next(tmp_path.glob("*" + SUFFIX))
    writer.close()
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # corrupt the first frame's body: the second frame follows it
    path.write_bytes(bytes(data))
    assert Spool(tmp_path).drain(MemoryEventLog()) == 0
    assert not path.exists()
    assert path.with_name(path.name + ".corrupt").exists()


def test_a_new_spool_file_is_never_visible_unlocked(tmp_path: Path) -> None:
    """Another process's drain must not be able to take (and unlink) a file before its owner locks it."""
    seen: list[list[Path]] = []
    real_flock = __import__("fcntl").flock

    def spying_flock(f: Any, op: int) -> None:
        seen.append(sorted(tmp_path.glob("*" + SUFFIX)))  # what a drainer's glob sees right now
        real_flock(f, op)

    owner = Spool(tmp_path)
    with mock.patch("producers.spool.fcntl.flock", spying_flock):
        owner.append([(None, b"x")])
    assert seen and seen[0] == []
    assert Spool(tmp_path).drain(MemoryEventLog()) == 0  # locked by its owner: left alone
    assert owner.pending == 1 and list(tmp_path.glob("*" + SUFFIX))
    owner.close()


def test_spooled_records_drain_while_recording_continues(tmp_path: Path) -> None:
    """Under steady load the queue never empties; the spool must still drain once the log is back."""
    outage = OutageLog(MemoryEventLog())
    outage.down.set()
    rec = Recorder(outage, spool_dir=tmp_path / "spool", batch_size=20)
    stop = threading.Event()

    def keep_recording() -> None:
        while not stop.is_set():
            record_simple(rec)

    producer = threading.Thread(target=keep_recording)
    producer.start()
    try:
        assert wait_until(lambda: rec.stats()["spooled"] > 0)
        outage.down.clear()
        assert wait_until(lambda: rec.stats()["drained"] > 0), rec.stats()
        assert producer.is_alive()
    finally:
        stop.set()
        producer.join()
        rec.close()
    assert outage.inner.end_offset() == rec.stats()["recorded"]
