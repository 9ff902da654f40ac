"""Indexing records consumed from a partitioned log (Kafka), whatever client consumes them.

The index, not the consumer group, is the source of truth for where each partition stands: every batch
is applied together with the partition's new position, and only if the stored position is still the one
this consumer read (a fenced write). So a record delivered twice (a crash before the offset commit, a
rebalance, a seek) is skipped, and two consumers that both believe they own a partition cannot both
apply it. Consumers seek to `position(partition)` whenever they are given a partition.

No I/O to the broker here and no async: the faust worker and the plain consumer loop of the benchmark
drive the same calls (the worker from a thread, so the event loop keeps serving heartbeats).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schemas.errors import StalePositionError
from streams.applier import BatchApplier, Prepared
from streams.chain import Checkpointer
from streams.store import DeadLetter, IndexStore

log = logging.getLogger("llm_lineage.worker")


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    offset: int
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class Plan:
    """One partition's batch, prepared against the position it was read at."""

    partition: int
    position: int
    batch: Prepared
    keys: dict[int, bytes | None]  # offset -> message key, for dead letters sent on
    resume_at: int | None = None  # records after a hole were left out: seek here once this commits

    def dead_with_keys(self) -> list[tuple[DeadLetter, bytes | None]]:
        return [(d, self.keys.get(d.offset)) for d in self.batch.dead]


@dataclass(frozen=True, slots=True)
class Gap:
    """The records start after the stored position: the consumer must seek back to `position`."""

    partition: int
    position: int
    first_offset: int


@dataclass(slots=True)
class Totals:
    applied: int = 0  # events indexed (or recognised as already indexed)
    dead: int = 0
    skipped: int = 0  # deliveries below the stored position: already applied
    stale: int = 0  # batches another consumer applied first


class PartitionIndexer:
    """Prepares and commits consumed batches per partition, remembering each partition's position."""

    def __init__(self, store: IndexStore, applier: BatchApplier, checkpointer: Checkpointer | None = None) -> None:
        self.store, self.applier, self.checkpointer = store, applier, checkpointer
        self._positions: dict[int, int] = {}
        self._gap_seeks: dict[int, int] = {}  # partition -> position we last asked to seek to for a gap
        self.totals = Totals()

    def position(self, partition: int) -> int:
        """Where the partition stands in the index (read once, then followed as batches commit)."""
        if partition not in self._positions:
            self._positions[partition] = self.store.position(partition)
        return self._positions[partition]

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions handed to another consumer: re-read their position if they come back."""
        for p in partitions:
            self._positions.pop(p, None)
            self._gap_seeks.pop(p, None)

    def plan(self, partition: int, records: Sequence[ConsumedRecord]) -> Plan | Gap | None:
        """Decode and project the records not yet applied; None when all of them are."""
        position = self.position(partition)
        fresh = [r for r in records if r.offset >= position]
        self.totals.skipped += len(records) - len(fresh)
        if not fresh:
            return None
        first = fresh[0].offset
        if first > position and self._gap_seeks.get(partition) != position:
            # Records before `first` were never applied: a consumer that started from a committed offset
            # ahead of the index (a rebuilt index, say). Ask for a seek back once; if the log itself has a
            # hole there (compaction, transaction markers), the same gap comes back and is accepted.
            self._gap_seeks[partition] = position
            return Gap(partition, position, first)
        run = _contiguous(fresh)
        resume_at = run[-1].offset + 1 if len(run) < len(fresh) else None
        return Plan(partition, position, self.applier.prepare(partition, run), {r.offset: r.key for r in run},
                    resume_at)

    def commit(self, plan: Plan) -> bool:
        """Apply a plan; False when another consumer moved the partition first (nothing was written)."""
        try:
            self.applier.commit(plan.partition, plan.batch, expect_position=plan.position)
        except StalePositionError as exc:
            log.info("%s; re-reading the position", exc)
            self._positions.pop(plan.partition, None)
            self.totals.stale += 1
            return False
        self._positions[plan.partition] = plan.batch.next_offset
        self._gap_seeks.pop(plan.partition, None)
        self.totals.applied += len(plan.batch.events) + len(plan.batch.repeats)
        self.totals.dead += len(plan.batch.dead)
        return True

    def maybe_checkpoint(self, partitions: Iterable[int]) -> None:
        if self.checkpointer is not None:
            for p in partitions:
                self.checkpointer.maybe_checkpoint(p)


def _contiguous(records: list[ConsumedRecord]) -> list[ConsumedRecord]:
    """The leading run of consecutive offsets: a batch that skips offsets (a seek while it was being
    filled) is applied up to the hole, so no record is passed over and chained out of order."""
    end = 1
    while end < len(records) and records[end].offset == records[end - 1].offset + 1:
        end += 1
    return records[:end]


def by_partition(records: Iterable[tuple[int, ConsumedRecord]]) -> dict[int, list[ConsumedRecord]]:
    """Group (partition, record) pairs by partition, each group in offset order with each offset once (a
    consumer that seeks may hand over the same message twice in one batch)."""
    groups: dict[int, dict[int, ConsumedRecord]] = {}
    for partition, record in records:
        groups.setdefault(partition, {}).setdefault(record.offset, record)
    return {p: sorted(group.values(), key=lambda r: r.offset) for p, group in groups.items()}
