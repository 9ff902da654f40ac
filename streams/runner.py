"""The embedded runner: tails a readable log and applies the projectors in batches.

Each batch (rows, dead letters and the next offset) is one index transaction, so a crash at any moment
either applied a batch whole or not at all, and the runner resumes from the stored position.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from schemas.codec import DEFAULT_MAX_EVENT_BYTES, Codec, check_size
from schemas.errors import EventError, IndexRejectedError, LineageError
from streams.checks import check_fits, unfit
from streams.projector import RowBatch, SourceEvent, check_event, project
from streams.store import DeadLetter, IndexStore

log = logging.getLogger("llm_lineage.runner")


class SourceRecord(Protocol):
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes: ...


class LogSource(Protocol):
    """What the runner needs of a log (the embedded SQLite and memory logs fit this)."""

    partition: int

    def read(self, offset: int, limit: int) -> Sequence[SourceRecord]: ...
    def end_offset(self) -> int: ...


def decode_batch(
    codec: Codec, partition: int, records: Sequence[SourceRecord], max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> tuple[list[SourceEvent], list[DeadLetter]]:
    """Decode what decodes and can be indexed; everything else becomes a dead letter naming why, and the
    stream moves on."""
    good: list[SourceEvent] = []
    bad: list[DeadLetter] = []
    for rec in records:
        try:
            check_size(rec.value, max_event_bytes)
            event = codec.decode(rec.value)
            check_event(event)
            good.append(SourceEvent(partition, rec.offset, rec.value, event))
        except EventError as exc:
            bad.append(DeadLetter(partition, rec.offset, str(exc), rec.value))
    return good, bad


def _split_unfit(good: list[SourceEvent], bad: list[DeadLetter]) -> tuple[list[SourceEvent], list[DeadLetter]]:
    fits: list[SourceEvent] = []
    for item in good:
        try:
            check_fits(item.event)
            fits.append(item)
        except EventError as exc:
            bad.append(DeadLetter(item.partition, item.offset, str(exc), item.raw))
    return fits, bad


@dataclass(slots=True)
class _Prepared:
    events: list[SourceEvent]
    rows: RowBatch
    dead: list[DeadLetter]
    first_offset: int
    next_offset: int

    @property
    def consumed(self) -> int:
        return self.next_offset - self.first_offset


class EmbeddedRunner:
    def __init__(
        self,
        source: LogSource,
        store: IndexStore,
        *,
        codec: Codec | None = None,
        batch_size: int = 2000,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        poll_interval: float = 0.05,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.source, self.store = source, store
        self.codec = codec or Codec()
        self.batch_size, self.poll_interval = batch_size, poll_interval
        self.max_event_bytes = max_event_bytes
        self.on_batch = on_batch  # (events applied, dead letters) after each commit
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.applied = 0
        self.dead = 0

    def _prepare(self, offset: int) -> _Prepared | None:
        """Read, decode and project one batch from `offset`; None when caught up. No index writes."""
        records = self.source.read(offset, self.batch_size)
        if not records:
            return None
        good, bad = decode_batch(self.codec, self.source.partition, records, self.max_event_bytes)
        rows = project(good)
        if unfit(rows) is not None:  # rare: find the events at fault, dead-letter them, project the rest
            good, bad = _split_unfit(good, bad)
            rows = project(good)
        return _Prepared(good, rows, bad, records[0].offset, records[-1].offset + 1)

    def _commit(self, batch: _Prepared) -> None:
        try:
            self.store.apply(batch.rows, partition=self.source.partition, next_offset=batch.next_offset,
                             dead_letters=batch.dead)
        except IndexRejectedError as exc:
            log.warning("the index refused a batch (%s); applying it event by event", exc)
            self._commit_one_by_one(batch)
        self.applied += len(batch.events)
        self.dead += len(batch.dead)
        for d in batch.dead:
            log.warning("dead letter at partition %d offset %d: %s", d.partition, d.offset, d.reason)
        if self.on_batch is not None:
            self.on_batch(len(batch.events), len(batch.dead))

    def _commit_one_by_one(self, batch: _Prepared) -> None:
        """One row the index refuses must not stall the stream: find it, dead-letter it, apply the rest.
        Each step is its own transaction that also moves the position, so a crash here is safe too."""
        partition, store = self.source.partition, self.store
        store.apply(RowBatch(), partition=partition, next_offset=batch.first_offset, dead_letters=batch.dead)
        refused: list[SourceEvent] = []
        for event in batch.events:
            try:
                store.apply(project([event]), partition=partition, next_offset=event.offset + 1)
            except IndexRejectedError as exc:
                dead = DeadLetter(partition, event.offset, f"the index refused this event: {exc}", event.raw)
                store.apply(RowBatch(), partition=partition, next_offset=event.offset + 1, dead_letters=[dead])
                batch.dead.append(dead)
                refused.append(event)
        store.apply(RowBatch(), partition=partition, next_offset=batch.next_offset)
        batch.events = [e for e in batch.events if e not in refused]

    def run_once(self) -> int:
        """Process one batch; returns the number of log records consumed (0 when caught up)."""
        batch = self._prepare(self.store.position(self.source.partition))
        if batch is None:
            return 0
        self._commit(batch)
        return batch.consumed

    def catch_up(self) -> int:
        """Process until the log has nothing new; returns records consumed.

        Batches run one after another on this thread: decoding the next batch on a second thread while
        one commits was measured slower (sqlite3 holds the GIL while binding rows, so the threads trade
        the GIL at every step).
        """
        total, report_at = 0, time.monotonic() + 5.0
        while not self._stop.is_set() and (n := self.run_once()):
            total += n
            if time.monotonic() >= report_at:  # long backlogs (first start, a restart after downtime)
                log.info("indexed %d events so far; %d behind", total, self.lag())
                report_at = time.monotonic() + 5.0
        return total

    def lag(self) -> int:
        return max(0, self.source.end_offset() - self.store.position(self.source.partition))

    def run_forever(self) -> None:
        backoff = self.poll_interval
        while not self._stop.is_set():
            try:
                self.catch_up()
                backoff = self.poll_interval
            except LineageError as exc:
                # The log or index is briefly unusable (locked, restarting); nothing was committed.
                log.warning("runner: %s; retrying in %.2fs", exc, backoff)
                backoff = min(5.0, backoff * 2)
            self._stop.wait(backoff)

    def start(self) -> None:
        def main() -> None:
            try:
                self.run_forever()
            except BaseException as exc:  # surfaced by /readyz; the process supervisor restarts us
                self.error = exc
                log.exception("runner stopped")

        self._thread = threading.Thread(target=main, name="llm-lineage-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
