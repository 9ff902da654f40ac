"""The EventLog contract: every readable backend passes the same suite (subclass EventLogContract)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.log import EventLog, ReadableEventLog, open_log, sqlite_path
from producers.memory_log import MemoryEventLog
from producers.sqlite_log import SqliteEventLog
from schemas.errors import ConfigError, LogError


def values_of(log: ReadableEventLog) -> list[bytes]:
    return [r.value for r in log.read(0, 1_000_000)]


class EventLogContract:
    """Subclass once per backend and provide `make_log`, returning a fresh, empty log."""

    @pytest.fixture
    def log(self, tmp_path: Path) -> Iterator[ReadableEventLog]:
        log = self.make_log(tmp_path)
        yield log
        log.close()

    def make_log(self, tmp_path: Path) -> ReadableEventLog:
        raise NotImplementedError

    def test_implements_the_readable_port(self, log: ReadableEventLog) -> None:
        assert isinstance(log, EventLog)
        assert isinstance(log, ReadableEventLog)
        assert log.partition == 0

    def test_a_new_log_is_empty(self, log: ReadableEventLog) -> None:
        assert log.end_offset() == 0
        assert log.read(0, 10) == []

    def test_offsets_start_at_zero_and_are_contiguous_across_appends(self, log: ReadableEventLog) -> None:
        log.append([(None, b"a"), (None, b"b"), (None, b"c")])
        log.append([(None, b"d")])
        log.append([(None, b"e"), (None, b"f")])
        records = log.read(0, 100)
        assert [r.offset for r in records] == [0, 1, 2, 3, 4, 5]
        assert [r.value for r in records] == [b"a", b"b", b"c", b"d", b"e", b"f"]
        assert log.end_offset() == 6

    def test_read_honours_offset_and_limit(self, log: ReadableEventLog) -> None:
        log.append([(None, b"v%d" % i) for i in range(10)])
        assert [r.offset for r in log.read(3, 4)] == [3, 4, 5, 6]
        assert [r.value for r in log.read(3, 4)] == [b"v3", b"v4", b"v5", b"v6"]
        assert [r.offset for r in log.read(8, 100)] == [8, 9]
        assert log.read(10, 5) == []
        assert log.read(50, 5) == []
        assert log.read(0, 0) == []
        assert [r.offset for r in log.read(0, 1)] == [0]

    def test_reading_page_by_page_sees_every_record_once(self, log: ReadableEventLog) -> None:
        log.append([(None, b"%d" % i) for i in range(25)])
        seen, offset = [], 0
        while page := log.read(offset, 7):
            seen += [r.value for r in page]
            offset = page[-1].offset + 1
        assert seen == [b"%d" % i for i in range(25)]
        assert offset == log.end_offset()

    def test_end_offset_is_the_offset_of_the_next_record(self, log: ReadableEventLog) -> None:
        log.append([(None, b"x")] * 3)
        end = log.end_offset()
        log.append([(b"k", b"next")])
        assert log.read(end, 1)[0].value == b"next"
        assert log.end_offset() == end + 1

    def test_keys_none_empty_and_bytes_are_preserved(self, log: ReadableEventLog) -> None:
        keys: list[bytes | None] = [None, b"", b"trace-1", b"\x00\xff\x10", None]
        log.append([(k, b"v") for k in keys])
        assert [r.key for r in log.read(0, 10)] == keys

    def test_values_are_byte_exact(self, log: ReadableEventLog) -> None:
        values = [bytes(range(256)), b"\x00" * 17, b"", b"\x00\x00\x00\x00\x01Avro", "Zürich ⚡".encode(),
                  bytes(range(255, -1, -1)) * 300]
        log.append([(None, v) for v in values])
        got = log.read(0, 10)
        assert [r.value for r in got] == values
        assert all(type(r.value) is bytes for r in got)

    def test_appending_an_empty_list_is_a_no_op(self, log: ReadableEventLog) -> None:
        log.append([])
        assert log.end_offset() == 0
        log.append([(None, b"a")])
        log.append([])
        assert log.end_offset() == 1
        log.append([(None, b"b")])
        assert [r.offset for r in log.read(0, 10)] == [0, 1]

    def test_timestamps_are_when_the_log_accepted_the_record(self, log: ReadableEventLog) -> None:
        before = time.time_ns() // 1000
        log.append([(None, b"a")])
        log.append([(None, b"b")])
        after = time.time_ns() // 1000
        stamps = [r.timestamp_us for r in log.read(0, 10)]
        assert all(before <= s <= after for s in stamps)
        assert stamps == sorted(stamps)

    def test_concurrent_appends_through_one_instance_get_unique_contiguous_offsets(
        self, log: ReadableEventLog
    ) -> None:
        def append(tag: int) -> None:
            for i in range(50):
                log.append([(None, b"%d:%d:%d" % (tag, i, j)) for j in range(3)])

        threads = [threading.Thread(target=append, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        records = log.read(0, 10_000)
        assert [r.offset for r in records] == list(range(600))
        values = [r.value for r in records]
        assert len(set(values)) == 600
        for tag in range(4):  # each writer's records in its own order, each batch kept together
            mine = [v for v in values if v.startswith(b"%d:" % tag)]
            assert mine == [b"%d:%d:%d" % (tag, i, j) for i in range(50) for j in range(3)]
            starts = [values.index(b"%d:%d:0" % (tag, i)) for i in range(50)]
            assert all(values[s + 1 : s + 3] == [b"%d:%d:1" % (tag, i), b"%d:%d:2" % (tag, i)]
                       for i, s in enumerate(starts))


class TestMemoryEventLog(EventLogContract):
    def make_log(self, tmp_path: Path) -> ReadableEventLog:
        return MemoryEventLog()


class TestSqliteEventLog(EventLogContract):
    def make_log(self, tmp_path: Path) -> ReadableEventLog:
        return SqliteEventLog(tmp_path / "log.db")


# -- SQLite only ----------------------------------------------------------------------------------------


CONCURRENT_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from producers.sqlite_log import SqliteEventLog

    path, tag, batches = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    log = SqliteEventLog(path)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    for i in range(batches):
        log.append([(tag.encode(), f"{tag}:{i}:{j}".encode()) for j in range(1 + i % 3)])
    log.close()
    """
)


class TestSqliteEventLogOnly:
    def test_records_survive_closing_and_reopening(self, tmp_path: Path) -> None:
        path = tmp_path / "log.db"
        first = SqliteEventLog(path)
        first.append([(b"k", b"one"), (None, b"two")])
        first.close()

        reopened = SqliteEventLog(path)
        try:
            assert reopened.end_offset() == 2
            assert [(r.offset, r.key, r.value) for r in reopened.read(0, 10)] == [(0, b"k", b"one"),
                                                                                   (1, None, b"two")]
            reopened.append([(None, b"three")])
            assert [r.offset for r in reopened.read(0, 10)] == [0, 1, 2]
        finally:
            reopened.close()

    def test_a_closed_log_refuses_further_use_and_a_new_one_sees_everything(self, tmp_path: Path) -> None:
        log = SqliteEventLog(tmp_path / "log.db")
        log.append([(None, b"a")])
        log.close()
        with pytest.raises(LogError, match="closed"):
            log.append([(None, b"b")])
        reopened = SqliteEventLog(tmp_path / "log.db")
        reopened.append([(None, b"b")])
        assert values_of(reopened) == [b"a", b"b"]
        reopened.close()

    def test_creates_missing_parent_directories(self, tmp_path: Path) -> None:
        log = SqliteEventLog(tmp_path / "deep" / "er" / "log.db")
        log.append([(None, b"a")])
        assert (tmp_path / "deep" / "er" / "log.db").exists()
        log.close()

    @pytest.mark.parametrize(
        "statement",
        ["UPDATE events SET value = x'00' WHERE seq = 0", "DELETE FROM events WHERE seq = 0", "DELETE FROM events"],
    )
    def test_triggers_reject_update_and_delete(self, tmp_path: Path, statement: str) -> None:
        path = tmp_path / "log.db"
        log = SqliteEventLog(path)
        log.append([(None, b"fact")])
        raw = sqlite3.connect(path)
        try:
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                raw.execute(statement)
            raw.rollback()
        finally:
            raw.close()
        assert values_of(log) == [b"fact"]
        log.close()

    def test_two_instances_on_one_file_get_unique_contiguous_offsets(self, tmp_path: Path) -> None:
        path = tmp_path / "log.db"
        a, b = SqliteEventLog(path), SqliteEventLog(path)
        try:
            a.append([(None, b"a0")])
            b.append([(None, b"b0"), (None, b"b1")])
            a.append([(None, b"a1")])
            assert [(r.offset, r.value) for r in a.read(0, 10)] == [(0, b"a0"), (1, b"b0"), (2, b"b1"), (3, b"a1")]
            assert b.end_offset() == 4
        finally:
            a.close()
            b.close()

    def test_processes_appending_concurrently_get_unique_contiguous_offsets(self, tmp_path: Path) -> None:
        path = tmp_path / "log.db"
        creator = SqliteEventLog(path)
        assert creator.end_offset() == 0  # first use creates the schema, before the race
        creator.close()
        tags, batches = ["p0", "p1", "p2"], 60
        procs = [
            subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(path), tag, str(batches)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for tag in tags
        ]
        try:
            for p in procs:
                assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            for p in procs:
                assert p.wait(timeout=60) == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                for stream in (p.stdin, p.stdout):
                    if stream is not None:
                        stream.close()
                p.wait()

        log = SqliteEventLog(path)
        try:
            records = log.read(0, 100_000)
        finally:
            log.close()
        per_tag = sum(1 + i % 3 for i in range(batches))
        assert [r.offset for r in records] == list(range(per_tag * len(tags)))
        for tag in tags:
            mine = [r.value.decode() for r in records if r.key == tag.encode()]
            assert mine == [f"{tag}:{i}:{j}" for i in range(batches) for j in range(1 + i % 3)]

    def test_an_unusable_path_is_a_log_error(self, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        log = SqliteEventLog(blocker / "log.db")  # opens lazily: a recorder starts even while the log is down
        with pytest.raises(LogError, match="cannot open event log"):
            log.append([(None, b"a")])


# -- open_log --------------------------------------------------------------------------------------------


def test_open_log_memory_url() -> None:
    log = open_log("memory://")
    assert isinstance(log, MemoryEventLog)
    log.close()


def test_open_log_sqlite_url(tmp_path: Path) -> None:
    log = open_log(f"sqlite:///{tmp_path}/log.db")
    try:
        assert isinstance(log, SqliteEventLog)
        assert log.path == tmp_path / "log.db"
        log.append([(None, b"a")])
    finally:
        log.close()
    assert (tmp_path / "log.db").exists()


def test_sqlite_path_follows_sqlalchemy_spelling() -> None:
    assert sqlite_path("sqlite:///relative/log.db") == Path("relative/log.db")
    assert sqlite_path("sqlite:////abs/log.db") == Path("/abs/log.db")


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://host/log.db", "sqlite:/log.db"])
def test_open_log_rejects_malformed_sqlite_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="bad SQLite URL"):
        open_log(url)


@pytest.mark.parametrize(("url", "scheme"), [("bogus://x", "bogus"), ("http://127.0.0.1/log", "http"),
                                             ("/tmp/log.db", "")])
def test_open_log_rejects_unknown_schemes_naming_them(url: str, scheme: str) -> None:
    with pytest.raises(ConfigError, match=f"unsupported log URL scheme '{scheme}'"):
        open_log(url)


@pytest.mark.parametrize(("url", "problem"), [("kafka://", "bad Kafka URL"), ("kafka://host", "bootstrap server"),
                                              ("kafka://h:9092,h2", "bootstrap server 'h2'")])
def test_open_log_rejects_malformed_kafka_urls(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        open_log(url)
