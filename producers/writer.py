"""The Recorder's background writer: encodes queued items and delivers them to the log, or to the spool
when the log is down, retrying the log with capped exponential backoff."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from producers.log import EventLog
from producers.spool import Spool
from schemas.codec import Codec, check_size
from schemas.errors import LogError, LogPartlyWrittenError

log = logging.getLogger("llm_lineage.recorder")

Build = Callable[[tuple[Any, ...]], tuple[str, bytes | None, dict[str, Any]]]
_MARKER = -1  # a flush marker: (_MARKER, threading.Event)


class Writer(threading.Thread):
    def __init__(
        self, *, log: EventLog, queue: deque[tuple[Any, ...]], spool: Spool | None, codec: Codec, build: Build,
        batch_size: int, max_event_bytes: int, on_space: Callable[[], None],
        backoff: tuple[float, float] = (0.05, 5.0),
    ) -> None:
        super().__init__(name="llm-lineage-writer", daemon=True)
        self.log, self.queue, self.spool, self.codec, self.build = log, queue, spool, codec, build
        self.batch_size, self.max_event_bytes, self.on_space = batch_size, max_event_bytes, on_space
        self._backoff_min, self._backoff_max = backoff
        self._backoff = 0.0
        self._retry_at = 0.0
        self._wake = threading.Event()
        self._idle = False
        self._stopping = False
        self._rejections: list[str] = []
        # Spool files another (crashed or closed) recorder left behind: drain them once the log answers.
        self._orphans = spool is not None and spool.has_files()
        self._counts = {"recorded": 0, "acknowledged": 0, "spooled": 0, "drained": 0, "rejected": 0}

    # -- called from other threads -------------------------------------------------------------------

    def wake_if_idle(self) -> None:
        if self._idle:
            self._wake.set()

    def flush(self, timeout: float | None) -> bool:
        done = threading.Event()
        self.queue.append((_MARKER, done))
        self._wake.set()
        return done.wait(timeout)

    def stop(self, timeout: float | None) -> None:
        self._stopping = True
        self._wake.set()
        self.join(timeout)
        if self.is_alive():
            # Still retrying an unreachable log: closing what it writes to under it would lose records.
            log.error("llm-lineage: writer still busy after %ss; %d records queued; leaving it to finish",
                      timeout, len(self.queue))
            return
        if self.spool is not None:
            if self.spool.pending or self._orphans:
                try:  # one last try, so a short outage does not leave records waiting for the next process
                    self._counts["drained"] += self.spool.drain(self.log, batch_size=self.batch_size)
                except (LogError, OSError) as exc:
                    log.warning("llm-lineage: %d records stay spooled for the next run (%s)", self.spool.pending, exc)
            self.spool.close()
        self.log.close()

    def take_rejections(self) -> list[str]:
        taken, self._rejections = self._rejections, []
        return taken

    def counters(self) -> dict[str, int]:
        return dict(self._counts)

    # -- the thread ----------------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            try:
                if not self._step():
                    return
            except Exception:  # never die silently: record() would go on accepting what nobody writes
                log.exception("llm-lineage: recorder writer error; retrying")
                time.sleep(self._backoff_min)

    def _step(self) -> bool:
        """One round; False once stopping and the queue is empty."""
        items = self._take()
        if not items:
            if self._stopping:
                return False
            self._idle = True
            if not self.queue:  # re-check after raising the flag: a producer may have just appended
                self._wake.wait(self._idle_wait())
            self._wake.clear()
            self._idle = False
            self._maybe_drain()
            return True
        # Under steady load the queue never empties: drain here too, oldest records first, once due.
        self._maybe_drain()
        self._process(items)
        return True

    def _take(self) -> list[tuple[Any, ...]]:
        items: list[tuple[Any, ...]] = []
        pop, q = self.queue.popleft, self.queue
        while q and len(items) < self.batch_size:
            items.append(pop())
        if items:
            self.on_space()
        return items

    def _process(self, items: list[tuple[Any, ...]]) -> None:
        records: list[tuple[bytes | None, bytes]] = []
        markers: list[threading.Event] = []
        for item in items:
            if item[0] == _MARKER:
                # Everything before the marker must be durable before it fires.
                self._deliver(records)
                records = []
                markers.append(item[1])
                continue
            encoded = self._encode(item)
            if encoded is not None:
                records.append(encoded)
        self._deliver(records)
        for m in markers:
            m.set()

    def _encode(self, item: tuple[Any, ...]) -> tuple[bytes | None, bytes] | None:
        try:
            name, key, record = self.build(item)
            value = self.codec.encode(name, record)
            check_size(value, self.max_event_bytes)
        except Exception as exc:  # whatever the caller's values do (even a failing __str__), reject just this one
            what = item[2] if isinstance(item[2], str) else "event"
            problem = f"{what}: {exc}"
            log.error("llm-lineage: record not recorded: %s", problem)
            self._rejections.append(problem)
            self._counts["rejected"] += 1
            return None
        self._counts["recorded"] += 1
        return key, value

    def _deliver(self, records: list[tuple[bytes | None, bytes]]) -> None:
        """Log, else spool; if neither will take them, retry until one does (the queue then fills and
        callers are told they are overloaded) rather than drop acknowledged-to-be records."""
        if not records:
            return
        while True:
            if self.spool is None or (not self.spool.pending and not self._retry_at):
                try:
                    self.log.append(records)
                    self._counts["acknowledged"] += len(records)
                    self._retry_at, self._backoff = 0.0, 0.0
                    return
                except Exception as exc:  # LogError, or whatever a custom EventLog raises: keep the records
                    if isinstance(exc, LogPartlyWrittenError):  # a networked log took some: keep the rest
                        self._counts["acknowledged"] += len(records) - len(exc.undelivered)
                        records = exc.undelivered
                    self._schedule_retry(exc)
                    if self.spool is None:  # nowhere else to put them: wait, keep them, try again
                        time.sleep(self._backoff)
                        continue
            try:
                self.spool.append(records)
                self._counts["acknowledged"] += len(records)
                self._counts["spooled"] += len(records)
                return
            except OSError as exc:
                log.error("llm-lineage: log and spool both unavailable (%s); retrying", exc)
                time.sleep(self._backoff or self._backoff_min)
                self._retry_at = 0.0  # try the log again

    def _schedule_retry(self, exc: Exception) -> None:
        self._backoff = min(self._backoff_max, max(self._backoff_min, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff
        action = "spooling" if self.spool is not None else "holding records in memory"
        log.warning("llm-lineage: event log unavailable (%s); %s, retry in %.2fs", exc, action, self._backoff)

    def _idle_wait(self) -> float:
        if self._retry_at and self.spool is not None:
            return max(0.01, self._retry_at - time.monotonic())
        return 0.5

    def _maybe_drain(self) -> None:
        if self.spool is None or (not self._retry_at and not self.spool.pending and not self._orphans):
            return
        if time.monotonic() < self._retry_at:
            return
        try:
            moved = self.spool.drain(self.log, batch_size=self.batch_size)
        except Exception as exc:  # the log still down, or the disk: the files stay for the next try
            self._schedule_retry(exc)
            return
        self._counts["drained"] += moved
        self._retry_at, self._backoff, self._orphans = 0.0, 0.0, False
        if moved:
            log.info("llm-lineage: event log back; drained %d spooled records", moved)
