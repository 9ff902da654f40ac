"""The embedded runner: tails a readable log and applies the projectors in batches.

Each batch (rows, dead letters and the next offset) is one index transaction, so a crash at any moment
either applied a batch whole or not at all, and the runner resumes from the stored position.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Engine

from schemas.codec import DEFAULT_MAX_EVENT_BYTES, Codec, check_size
from schemas.errors import EventError, IndexRejectedError, LineageError
from streams.chain import Checkpointer
from streams.checks import check_fits, unfit
from streams.projector import RowBatch, SourceEvent, check_event, project
from streams.reader import recorded_bodies, recorded_outputs
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


def _chain_of(batch: _Prepared) -> list[tuple[int, bytes]]:
    """Every record of the batch, good or dead-lettered, as (offset, exact bytes), in log order."""
    records = [(e.offset, e.raw) for e in (*batch.events, *batch.repeats)] + [(d.offset, d.raw) for d in batch.dead]
    records.sort(key=lambda r: r[0])
    return records


class _FirstRecordings:
    """Keeps each output's first recording out of a batch.

    Outputs are written once (the insert ignores conflicts), but an event's edges would still be written,
    so a second event claiming a recorded output would attach its parents and documents to an output it
    did not produce: it becomes a dead letter. A re-delivery of the recording event itself (same event ID,
    same content) is skipped, as its rows are in the index already.
    """

    def __init__(self, engine: Engine, codec: Codec, events: list[SourceEvent]) -> None:
        self.codec = codec
        ids = [e.event.record["output_id"] for e in events if e.event.name == "InferenceRecorded"]
        self.indexed = recorded_outputs(engine, ids)  # output_id -> event_id, one query per 500 IDs
        repeated = {e.event.record["output_id"] for e in events if e.event.name == "InferenceRecorded"
                    and self.indexed.get(e.event.record["output_id"]) == e.event.record["event_id"]}
        self.bodies = recorded_bodies(engine, repeated) if repeated else {}

    def keep(
        self, events: list[SourceEvent], dead: list[DeadLetter]
    ) -> tuple[list[SourceEvent], list[SourceEvent]]:
        """(events to project, re-deliveries to skip); the rest is appended to `dead`."""
        first: dict[str, tuple[str, bytes]] = {
            oid: (eid, self.bodies.get(oid, b"")) for oid, eid in self.indexed.items()}
        kept: list[SourceEvent] = []
        repeats: list[SourceEvent] = []
        for item in events:
            if item.event.name != "InferenceRecorded":
                kept.append(item)
                continue
            oid, eid = item.event.record["output_id"], item.event.record["event_id"]
            if oid not in first:
                first[oid] = (eid, item.raw)
                kept.append(item)
            elif first[oid][0] != eid:
                dead.append(DeadLetter(item.partition, item.offset, f"InferenceRecorded.output_id {oid!r} is "
                                       f"already recorded by event {first[oid][0]}; an output is recorded once",
                                       item.raw))
            elif self._same(first[oid][1], item):
                repeats.append(item)
            else:
                dead.append(DeadLetter(item.partition, item.offset, f"InferenceRecorded event {eid} is already "
                                       f"recorded for output {oid!r} with other content; an event is recorded "
                                       "once", item.raw))
        return kept, repeats

    def _same(self, recorded: bytes, item: SourceEvent) -> bool:
        if recorded == item.raw:
            return True
        try:  # the same fact may have been encoded with an earlier schema version
            return self.codec.decode(recorded).record == item.event.record
        except EventError:
            return False


@dataclass(slots=True)
class _Prepared:
    events: list[SourceEvent]
    rows: RowBatch
    dead: list[DeadLetter]
    first_offset: int
    next_offset: int
    repeats: list[SourceEvent] = field(default_factory=list)  # re-deliveries: in the index already

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
        checkpointer: Checkpointer | None = None,
        poll_interval: float = 0.05,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.source, self.store = source, store
        self.codec = codec or Codec()
        self.batch_size, self.poll_interval = batch_size, poll_interval
        self.max_event_bytes = max_event_bytes
        self.checkpointer = checkpointer  # signs the partition's Merkle tree every N records or T seconds
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
        decoded, undecodable = decode_batch(self.codec, self.source.partition, records, self.max_event_bytes)
        recordings = _FirstRecordings(self.store.engine, self.codec, decoded)
        bad = list(undecodable)
        good, repeats = recordings.keep(decoded, bad)
        rows = project(good)
        if unfit(rows) is not None:  # rare: find the events at fault, dead-letter them, project the rest
            fits, bad = _split_unfit(decoded, list(undecodable))  # an unfit event claims no output
            good, repeats = recordings.keep(fits, bad)
            rows = project(good)
        return _Prepared(good, rows, bad, records[0].offset, records[-1].offset + 1, repeats)

    def _commit(self, batch: _Prepared) -> None:
        try:
            self.store.apply(batch.rows, partition=self.source.partition, next_offset=batch.next_offset,
                             dead_letters=batch.dead, chain=_chain_of(batch))
        except IndexRejectedError as exc:
            log.warning("the index refused a batch (%s); applying it event by event", exc)
            self._commit_one_by_one(batch)
        self.applied += len(batch.events) + len(batch.repeats)
        self.dead += len(batch.dead)
        for d in batch.dead:
            log.warning("dead letter at partition %d offset %d: %s", d.partition, d.offset, d.reason)
        if self.on_batch is not None:
            self.on_batch(len(batch.events) + len(batch.repeats), len(batch.dead))

    def _commit_one_by_one(self, batch: _Prepared) -> None:
        """One row the index refuses must not stall the stream: find it, dead-letter it, apply the rest.
        Each step is its own transaction that also moves the position, so a crash here is safe too."""
        partition, store = self.source.partition, self.store
        store.apply(RowBatch(), partition=partition, next_offset=batch.first_offset, dead_letters=batch.dead,
                    chain=_chain_of(batch))  # every record is chained once, whatever happens to its rows
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
            self._maybe_checkpoint()
            if time.monotonic() >= report_at:  # long backlogs (first start, a restart after downtime)
                log.info("indexed %d events so far; %d behind", total, self.lag())
                report_at = time.monotonic() + 5.0
        return total

    def _maybe_checkpoint(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.maybe_checkpoint(self.source.partition)

    def lag(self) -> int:
        return max(0, self.source.end_offset() - self.store.position(self.source.partition))

    def run_forever(self) -> None:
        backoff = self.poll_interval
        while not self._stop.is_set():
            try:
                self.catch_up()
                self._maybe_checkpoint()  # time-based checkpoints come due while idle too
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
