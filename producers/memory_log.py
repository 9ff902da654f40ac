"""An in-process log for tests and throwaway runs; it forgets everything when the process ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from producers.log import LogRecord


class MemoryEventLog:
    partition = 0

    def __init__(self) -> None:
        self._records: list[LogRecord] = []
        self._lock = threading.Lock()

    def append(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        now = time.time_ns() // 1000
        with self._lock:
            base = len(self._records)
            self._records.extend(LogRecord(base + i, k, v, now) for i, (k, v) in enumerate(records))

    def read(self, offset: int, limit: int) -> list[LogRecord]:
        with self._lock:
            return self._records[offset : offset + limit]

    def end_offset(self) -> int:
        with self._lock:
            return len(self._records)

    def close(self) -> None:
        pass
