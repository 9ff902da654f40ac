"""The integrity chain: each partition's Merkle tree grows in the same transaction as the index rows, and
signed checkpoints of it are taken every N records or T seconds (DESIGN.md invariant 4)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, select

from schemas.hashing import canonical_json
from schemas.ids import new_event_id
from schemas.registry import TOPIC
from streams import tables as t
from streams.merkle import CompactRange, leaf_hash
from streams.signing import SigningKey
from streams.sql import dialect_insert

log = logging.getLogger("llm_lineage.chain")


InsertRows = Callable[[Connection, str, list[dict[str, Any]]], None]


def _plain_insert(conn: Connection, table: str, rows: list[dict[str, Any]]) -> None:
    conn.execute(t.metadata.tables[table].insert(), rows)


def extend_chain(
    conn: Connection, partition: int, records: Sequence[tuple[int, bytes]], insert: InsertRows = _plain_insert
) -> int:
    """Append (offset, exact bytes) records to the partition's tree, skipping those already in it, so a
    batch retried after a crash never adds a leaf twice. Returns the new tree size. `insert` lets the
    store pass its bulk insert (the hot path); rows are plain dicts keyed by column name."""
    c = t.chain_heads.c
    head = conn.execute(select(c.tree_size, c.next_offset, c.frontier).where(c.log_partition == partition)).first()
    frontier = CompactRange.from_bytes(head.frontier) if head else CompactRange()
    next_offset = head.next_offset if head else 0
    fresh: list[tuple[int, bytes]] = []
    for offset, raw in records:  # each offset once, in increasing order: one leaf per record
        if offset >= next_offset:
            fresh.append((offset, raw))
            next_offset = offset + 1
    if not fresh:
        return frontier.size
    hashes = [leaf_hash(raw) for _, raw in fresh]
    grown, nodes = frontier.append_with_nodes(hashes)
    base = frontier.size
    insert(conn, "merkle_leaves", [
        {"log_partition": partition, "leaf_index": base + i, "log_offset": offset, "leaf_hash": h}
        for i, ((offset, _), h) in enumerate(zip(fresh, hashes, strict=True))
    ])
    if nodes:
        insert(conn, "merkle_nodes", [
            {"log_partition": partition, "level": level, "node_index": index, "node_hash": h}
            for level, index, h in nodes
        ])
    upsert = dialect_insert(conn.dialect.name, t.chain_heads).values(
        log_partition=partition, tree_size=grown.size, next_offset=fresh[-1][0] + 1, frontier=grown.to_bytes())
    conn.execute(upsert.on_conflict_do_update(
        index_elements=["log_partition"],
        set_={"tree_size": grown.size, "next_offset": fresh[-1][0] + 1, "frontier": grown.to_bytes()}))
    return grown.size


_LEAF = select(t.merkle_leaves.c.leaf_hash).where(
    t.merkle_leaves.c.log_partition == bindparam("p"), t.merkle_leaves.c.leaf_index == bindparam("i"))
_NODE = select(t.merkle_nodes.c.node_hash).where(
    t.merkle_nodes.c.log_partition == bindparam("p"), t.merkle_nodes.c.level == bindparam("l"),
    t.merkle_nodes.c.node_index == bindparam("i"))


def node_getter(conn: Connection, partition: int) -> Callable[[int, int], bytes]:
    """get_node(level, index) for streams.merkle proofs: level 0 from the leaves, higher from stored nodes.
    The statements are built once: building a select() cost ~10x running it (measured ~90 us vs ~8 us)."""
    def get(level: int, index: int) -> bytes:
        if level == 0:
            value = conn.execute(_LEAF, {"p": partition, "i": index}).scalar()
        else:
            value = conn.execute(_NODE, {"p": partition, "l": level, "i": index}).scalar()
        if value is None:
            raise LookupError(f"merkle node level {level} index {index} of partition {partition} is missing")
        return bytes(value)
    return get


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """What is signed. `body()` is the canonical JSON of these fields: the exact bytes the signature covers."""

    log: str
    log_partition: int
    tree_size: int
    root_hash: str  # hex
    first_offset: int
    last_offset: int
    timestamp_us: int
    key_id: str

    def body(self) -> bytes:
        return canonical_json(asdict(self)).encode("utf-8")


class Checkpointer:
    """Signs a checkpoint when `every_events` leaves were added since the last one, or `every_seconds`
    passed and the tree grew. Each checkpoint goes to the index, to `emit` (the ChainCheckpoint event,
    appended to the log) and to `archive` when one is configured."""

    def __init__(
        self, engine: Engine, key: SigningKey, *, every_events: int = 10_000, every_seconds: float = 60.0,
        log_name: str = TOPIC, emit: Callable[[dict[str, Any]], None] | None = None,
        archive: Callable[[Checkpoint, str], None] | None = None, clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine, self.key, self.log_name = engine, key, log_name
        self.every_events, self.every_seconds = every_events, every_seconds
        self.emit, self.archive, self.clock = emit, archive, clock

    def maybe_checkpoint(self, partition: int) -> Checkpoint | None:
        with self.engine.connect() as conn:
            size = _tree_size(conn, partition)
            last_size, last_at = _last_checkpoint(conn, partition)
        # Each checkpoint adds its own ChainCheckpoint record to the tree; that one alone is no reason to
        # sign again, or an idle store would sign a new checkpoint every `every_seconds`, forever.
        grown = size - last_size - (1 if last_size else 0)
        if grown <= 0:
            return None
        due_by_time = (self.clock() * 1_000_000 - last_at) >= self.every_seconds * 1_000_000
        if grown < self.every_events and not due_by_time:
            return None
        return self.checkpoint(partition)

    def checkpoint(self, partition: int) -> Checkpoint | None:
        """Sign the partition's tree as it is now (None when it is empty)."""
        with self.engine.begin() as conn:
            c = t.chain_heads.c
            head = conn.execute(select(c.tree_size, c.frontier).where(c.log_partition == partition)).first()
            if head is None or head.tree_size == 0:
                return None
            frontier = CompactRange.from_bytes(head.frontier)
            leaves = t.merkle_leaves.c
            first, last = (conn.execute(select(leaves.log_offset).where(
                leaves.log_partition == partition, leaves.leaf_index == i)).scalar_one()
                for i in (0, frontier.size - 1))
            cp = Checkpoint(log=self.log_name, log_partition=partition, tree_size=frontier.size,
                            root_hash=frontier.root().hex(), first_offset=first, last_offset=last,
                            timestamp_us=int(self.clock() * 1_000_000), key_id=self.key.key_id)
            body = cp.body()
            signature = self.key.sign(body)
            conn.execute(dialect_insert(conn.dialect.name, t.checkpoints).values(
                log_partition=partition, tree_size=cp.tree_size, root_hash=cp.root_hash,
                first_offset=first, last_offset=last, created_at=cp.timestamp_us, key_id=cp.key_id,
                signed_body=body.decode("utf-8"), signature=signature).on_conflict_do_nothing())
        log.info("signed checkpoint: partition %d, %d records, root %s", partition, cp.tree_size, cp.root_hash[:16])
        if self.archive is not None:
            self.archive(cp, signature)
        if self.emit is not None:
            self.emit(checkpoint_event(cp, signature))
        return cp


def checkpoint_event(cp: Checkpoint, signature: str) -> dict[str, Any]:
    """The ChainCheckpoint event (Avro-ready) recording a signed checkpoint in the log itself."""
    return {
        "event_id": new_event_id(), "occurred_at": cp.timestamp_us, "log": cp.log,
        "log_partition": cp.log_partition, "tree_size": cp.tree_size, "root_hash": cp.root_hash,
        "first_offset": cp.first_offset, "last_offset": cp.last_offset, "key_id": cp.key_id,
        "signed_body": cp.body().decode("utf-8"), "signature": signature,
    }


def _tree_size(conn: Connection, partition: int) -> int:
    c = t.chain_heads.c
    return int(conn.execute(select(c.tree_size).where(c.log_partition == partition)).scalar() or 0)


def _last_checkpoint(conn: Connection, partition: int) -> tuple[int, int]:
    c = t.checkpoints.c
    row = conn.execute(
        select(func.max(c.tree_size), func.max(c.created_at)).where(c.log_partition == partition)).first()
    return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
