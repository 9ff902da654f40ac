"""The per-partition indexing core of the Kafka worker, without a broker: re-deliveries are skipped, a
batch that starts past the index's position asks for a seek back, a batch with a hole is applied up to the
hole, and a consumer whose partition moved on is fenced off."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.codec import Codec
from streams.applier import BatchApplier
from streams.partition_indexer import ConsumedRecord, Gap, PartitionIndexer, Plan, by_partition
from streams.store import IndexStore, open_engine
from tests.factories import encode, inference_event


@pytest.fixture
def store(tmp_path: Path) -> IndexStore:
    return IndexStore(open_engine(f"sqlite:///{tmp_path / 'index.db'}"))


def _indexer(store: IndexStore) -> PartitionIndexer:
    return PartitionIndexer(store, BatchApplier(store, Codec()))


def _records(first: int, count: int) -> list[ConsumedRecord]:
    return [ConsumedRecord(first + i, b"k", encode("InferenceRecorded", inference_event(feature=f"f{first + i}")))
            for i in range(count)]


def _apply(indexer: PartitionIndexer, partition: int, records: list[ConsumedRecord]) -> Plan | Gap | None:
    plan = indexer.plan(partition, records)
    if isinstance(plan, Plan):
        assert indexer.commit(plan)
    return plan


def test_records_below_the_position_are_skipped(store: IndexStore) -> None:
    indexer = _indexer(store)
    records = _records(0, 10)
    _apply(indexer, 3, records)
    assert store.position(3) == 10
    assert indexer.plan(3, records) is None  # the same batch again: nothing to do
    plan = indexer.plan(3, records + _records(10, 5))
    assert isinstance(plan, Plan) and plan.batch.first_offset == 10 and plan.batch.next_offset == 15
    assert indexer.totals.skipped == 20


def test_a_batch_that_starts_past_the_position_asks_for_a_seek_back_once(store: IndexStore) -> None:
    indexer = _indexer(store)
    later = _records(5, 5)
    gap = indexer.plan(0, later)
    assert gap == Gap(0, 0, 5)
    assert store.position(0) == 0
    # Sought back, the same offsets come again: a hole in the log itself, accepted the second time.
    plan = indexer.plan(0, later)
    assert isinstance(plan, Plan) and plan.batch.first_offset == 5


def test_a_batch_with_a_hole_is_applied_up_to_the_hole(store: IndexStore) -> None:
    indexer = _indexer(store)
    plan = indexer.plan(1, _records(0, 4) + _records(7, 3))
    assert isinstance(plan, Plan)
    assert plan.batch.next_offset == 4 and plan.resume_at == 4
    assert indexer.commit(plan)
    assert store.position(1) == 4


def test_a_consumer_whose_partition_moved_on_is_fenced_off(store: IndexStore) -> None:
    first, second = _indexer(store), _indexer(store)
    records = _records(0, 6)
    stale = first.plan(2, records)
    _apply(second, 2, records)  # another consumer took the partition over and applied the batch
    assert isinstance(stale, Plan)
    assert first.commit(stale) is False
    assert first.totals.stale == 1
    assert first.plan(2, records) is None  # re-read position: everything was applied once
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM outputs").scalar_one() == 6
        assert conn.exec_driver_sql("SELECT count(*) FROM merkle_leaves").scalar_one() == 6


def test_by_partition_groups_orders_and_drops_repeated_offsets() -> None:
    a, b, c = (ConsumedRecord(o, None, b"x") for o in (5, 3, 4))
    groups = by_partition([(0, a), (1, b), (0, c), (0, a)])
    assert [r.offset for r in groups[0]] == [4, 5]
    assert [r.offset for r in groups[1]] == [3]
