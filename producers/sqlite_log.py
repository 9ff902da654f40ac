"""The embedded event log: one append-only SQLite table in WAL mode, shared by every process on the host."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from producers.log import LogRecord
from schemas.errors import LogError, LogUnavailableError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    key BLOB,
    value BLOB NOT NULL,
    appended_at INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
"""

# Errors that may clear up by themselves (a writer holding the lock too long, a full or
# unmounted disk); everything else is a bug or corruption and is raised as LogError.
_TRANSIENT = ("locked", "busy", "disk i/o", "unable to open", "database or disk is full", "readonly")


# Rows go in as multi-row INSERTs rather than executemany: sqlite3 releases the GIL around every row it
# steps, and in an app whose threads keep the GIL busy, getting it back takes up to the 5 ms switch
# interval, per row. Measured: the writer stalled for the whole of a 1.5 s recording burst. 200 rows x 4
# parameters stays under SQLite's oldest parameter limit (999).
_ROWS_PER_INSERT = 200


@functools.cache
def _insert_sql(rows: int) -> str:
    return "INSERT INTO events (seq, key, value, appended_at) VALUES " + ",".join(["(?, ?, ?, ?)"] * rows)


class SqliteEventLog:
    """One partition. Offsets are assigned inside BEGIN IMMEDIATE, so several processes may append at once.

    synchronous=FULL: an append is on disk before it returns, so acknowledged records survive a power cut,
    not just a process crash. Batching amortises the fsync.
    """

    partition = 0

    def __init__(self, path: Path, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._closed = False  # connects on first use: a Recorder must start even while the log is down

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise LogError(f"event log {self.path} is closed")
        if self._conn is None:
            conn = None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_SCHEMA)
            except (sqlite3.Error, OSError) as exc:
                if conn is not None:
                    conn.close()
                raise _translate(exc, f"cannot open event log {self.path}") from exc
            self._conn = conn
        return self._conn

    def append(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        if not records:
            return
        now = time.time_ns() // 1000
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    start = conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM events").fetchone()[0]
                    for first in range(0, len(records), _ROWS_PER_INSERT):
                        chunk = records[first : first + _ROWS_PER_INSERT]
                        params = [x for i, (k, v) in enumerate(chunk, start + first) for x in (i, k, v, now)]
                        conn.execute(_insert_sql(len(chunk)), params)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
                        try:
                            conn.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass  # keep the original error, which says what went wrong
                    raise
            except sqlite3.Error as exc:
                raise _translate(exc, f"cannot append to event log {self.path}") from exc

    def read(self, offset: int, limit: int) -> list[LogRecord]:
        with self._lock:
            conn = self._connect()
            try:
                rows = conn.execute(
                    "SELECT seq, key, value, appended_at FROM events WHERE seq >= ? ORDER BY seq LIMIT ?",
                    (offset, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc, f"cannot read event log {self.path}") from exc
        return [LogRecord(r[0], r[1], r[2], r[3]) for r in rows]

    def end_offset(self) -> int:
        with self._lock:
            try:
                row = self._connect().execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM events").fetchone()
            except sqlite3.Error as exc:
                raise _translate(exc, f"cannot read event log {self.path}") from exc
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _translate(exc: BaseException, context: str) -> LogError:
    text = str(exc).lower()
    if isinstance(exc, OSError) or any(t in text for t in _TRANSIENT):
        return LogUnavailableError(f"{context}: {exc}")
    return LogError(f"{context}: {exc}")
