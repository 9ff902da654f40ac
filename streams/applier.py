"""Applying a batch of log records to the index, shared by the embedded runner and the Kafka worker.

`BatchApplier.prepare` decodes and projects a batch of one partition's records (no index writes);
`BatchApplier.commit` writes its rows, dead letters, Merkle leaves and the partition's new position in one
index transaction. A row the index refuses is found event by event and dead-lettered, so the stream moves on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Engine

from schemas.codec import DEFAULT_MAX_EVENT_BYTES, Codec, check_size
from schemas.errors import EventError, IndexRejectedError
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


def _chain_of(batch: Prepared) -> list[tuple[int, bytes]]:
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
class Prepared:
    events: list[SourceEvent]
    rows: RowBatch
    dead: list[DeadLetter]
    first_offset: int
    next_offset: int
    repeats: list[SourceEvent] = field(default_factory=list)  # re-deliveries: in the index already

    @property
    def consumed(self) -> int:
        return self.next_offset - self.first_offset


class BatchApplier:
    """Prepares and commits batches of log records for one index store."""

    def __init__(self, store: IndexStore, codec: Codec, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.store, self.codec, self.max_event_bytes = store, codec, max_event_bytes

    def prepare(self, partition: int, records: Sequence[SourceRecord]) -> Prepared:
        """Decode and project one batch (non-empty, in offset order). No index writes."""
        decoded, undecodable = decode_batch(self.codec, partition, records, self.max_event_bytes)
        recordings = _FirstRecordings(self.store.engine, self.codec, decoded)
        bad = list(undecodable)
        good, repeats = recordings.keep(decoded, bad)
        rows = project(good)
        if unfit(rows) is not None:  # rare: find the events at fault, dead-letter them, project the rest
            fits, bad = _split_unfit(decoded, list(undecodable))  # an unfit event claims no output
            good, repeats = recordings.keep(fits, bad)
            rows = project(good)
        return Prepared(good, rows, bad, records[0].offset, records[-1].offset + 1, repeats)

    def commit(self, partition: int, batch: Prepared, *, expect_position: int | None = None) -> None:
        """Apply the batch in one transaction; with `expect_position`, only if the stored position is still
        that (else StalePositionError: another consumer moved it, and this batch must be prepared again)."""
        try:
            self.store.apply(batch.rows, partition=partition, next_offset=batch.next_offset,
                             dead_letters=batch.dead, chain=_chain_of(batch), expect_position=expect_position)
        except IndexRejectedError as exc:
            log.warning("the index refused a batch (%s); applying it event by event", exc)
            self._commit_one_by_one(partition, batch, expect_position)
        for d in batch.dead:
            log.warning("dead letter at partition %d offset %d: %s", d.partition, d.offset, d.reason)

    def _commit_one_by_one(self, partition: int, batch: Prepared, expect_position: int | None) -> None:
        """One row the index refuses must not stall the stream: find it, dead-letter it, apply the rest.
        Each step is its own transaction that also moves the position, so a crash here is safe too."""
        store = self.store
        # Every record is chained once, whatever happens to its rows; the first step is the fenced one.
        store.apply(RowBatch(), partition=partition, next_offset=batch.first_offset, dead_letters=batch.dead,
                    chain=_chain_of(batch), expect_position=expect_position)
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
