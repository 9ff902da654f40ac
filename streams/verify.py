"""Full verification of a partition: every log record against its leaf, every signed checkpoint against
the root recomputed from the log, consecutive checkpoints against each other, and the index's copies of
events against the log. Names the first bad record: (partition, offset, event ID) and what is wrong."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, bindparam, select

from schemas.codec import Codec
from schemas.errors import DeserializationError
from streams import tables as t
from streams.chain import node_getter
from streams.merkle import CompactRange, consistency_proof, leaf_hash, verify_consistency
from streams.signing import verify_signature


class _Record(Protocol):
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes: ...


class _Log(Protocol):
    partition: int

    def read(self, offset: int, limit: int) -> Sequence[_Record]: ...
    def end_offset(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Problem:
    partition: int
    offset: int | None
    event_id: str | None
    what: str

    def __str__(self) -> str:
        where = f"partition {self.partition}" + ("" if self.offset is None else f" offset {self.offset}")
        return f"{where}" + (f" event {self.event_id}" if self.event_id else "") + f": {self.what}"


@dataclass(slots=True)
class Report:
    records: int = 0
    checkpoints: int = 0
    outputs_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_partition(
    log: _Log, engine: Engine, public_keys: dict[str, str], *, batch_size: int = 5000,
    progress: Callable[[int], None] | None = None, codec: Codec | None = None,
) -> Report:
    report, codec = Report(), codec or Codec()
    partition = log.partition
    with engine.connect() as conn:
        checkpoints = _checkpoints(conn, partition)
        frontier = _walk_log(conn, log, partition, checkpoints, public_keys, report, codec, batch_size, progress)
        _check_tail(conn, partition, frontier.size, report)
        _check_consistency(conn, partition, checkpoints, report)
        _check_unchained_copies(conn, partition, _chain_end(conn, partition), report)
    return report


def _walk_log(
    conn: Connection, log: _Log, partition: int, checkpoints: list[dict[str, Any]], keys: dict[str, str],
    report: Report, codec: Codec, batch_size: int, progress: Callable[[int], None] | None,
) -> CompactRange:
    frontier, expected, pending = CompactRange(), 0, list(checkpoints)
    # Records past the chain head are not chained yet (the runner is behind): nothing to check them against.
    end = _chain_end(conn, partition)
    while records := [r for r in log.read(expected, batch_size) if r.offset < end]:
        hashes = [leaf_hash(r.value) for r in records]
        stored = conn.execute(_LEAVES, {"p": partition, "lo": frontier.size,
                                        "hi": frontier.size + len(records)}).all()
        # Fast path: the whole batch matches (offsets contiguous, every leaf as chained).
        if [(r.offset, d) for r, d in zip(records, hashes, strict=True)] != [(o, bytes(x)) for o, x in stored] \
                or records[0].offset != expected or records[-1].offset != expected + len(records) - 1:
            bad = _locate(records, hashes, dict(enumerate(stored, frontier.size)), frontier.size, expected,
                          partition, report, codec)
        else:
            bad = set()
        _compare_copies(conn, records, bad, partition, report, codec)
        expected = records[-1].offset + 1
        # Append up to each checkpoint that falls inside this batch, and check it at exactly its size.
        done = 0
        while pending and pending[0]["tree_size"] <= frontier.size + len(hashes) - done:
            cut = pending[0]["tree_size"] - frontier.size
            frontier = frontier.append(hashes[done : done + cut])
            done += cut
            _check_checkpoint(pending.pop(0), frontier, keys, partition, report)
        frontier = frontier.append(hashes[done:])
        report.records += len(records)
        if progress is not None:
            progress(len(records))
    for cp in pending:
        _bad(report, partition, None, None, f"checkpoint at tree size {cp['tree_size']} covers more records "
             f"than the log holds ({frontier.size})")
    return frontier


_LEAVES = (select(t.merkle_leaves.c.log_offset, t.merkle_leaves.c.leaf_hash)
           .where(t.merkle_leaves.c.log_partition == bindparam("p"),
                  t.merkle_leaves.c.leaf_index >= bindparam("lo"), t.merkle_leaves.c.leaf_index < bindparam("hi"))
           .order_by(t.merkle_leaves.c.leaf_index))
_COPIES = (select(t.outputs.c.log_offset, t.outputs.c.output_id, t.outputs.c.body)
           .where(t.outputs.c.log_partition == bindparam("p"),
                  t.outputs.c.log_offset.between(bindparam("lo"), bindparam("hi"))))


def _locate(
    records: Sequence[_Record], hashes: list[bytes], stored: dict[int, Any], base: int, expected: int,
    partition: int, report: Report, codec: Codec,
) -> set[int]:
    """The slow path, for a batch that does not match: name each bad record; returns their offsets."""
    bad: set[int] = set()
    for i, (rec, digest) in enumerate(zip(records, hashes, strict=True)):
        index = base + i
        if rec.offset != expected:
            _bad(report, partition, expected, None, f"log record missing: offsets jump from {expected - 1} "
                 f"to {rec.offset} (deleted or reordered rows)")
        leaf = stored.get(index)
        if leaf is None:
            _bad(report, partition, rec.offset, _event_id(codec, rec.value), f"leaf {index} is missing")
            bad.add(rec.offset)
        elif (leaf[0], bytes(leaf[1])) != (rec.offset, digest):
            bad.add(rec.offset)
            what = ("the record's bytes differ from what was chained at leaf "
                    f"{index}: altered, replaced or reordered" if bytes(leaf[1]) != digest
                    else f"leaf {index} names offset {leaf[0]}")
            _bad(report, partition, rec.offset, _event_id(codec, rec.value), what)
        expected = rec.offset + 1
    return bad


def _compare_copies(
    conn: Connection, records: Sequence[_Record], bad: set[int], partition: int, report: Report, codec: Codec
) -> None:
    """The index keeps a copy of each output's event: it must be the log record's bytes exactly (a byte
    comparison, no hashing: the log record itself was just checked against its leaf)."""
    by_offset = {r.offset: r.value for r in records}
    for offset, output_id, body in conn.execute(
            _COPIES, {"p": partition, "lo": records[0].offset, "hi": records[-1].offset}):
        report.outputs_checked += 1
        if offset not in bad and by_offset.get(offset) != bytes(body):  # a bad log record is reported already
            _bad(report, partition, offset, _event_id(codec, bytes(body)),
                 f"the index's copy of output {output_id} differs from the log record")


def _check_checkpoint(
    cp: dict[str, Any], frontier: CompactRange, keys: dict[str, str], partition: int, report: Report
) -> None:
    report.checkpoints += 1
    size = cp["tree_size"]
    where = f"checkpoint at tree size {size}"
    if frontier.root().hex() != cp["root_hash"]:
        _bad(report, partition, None, None, f"{where}: its root differs from the root recomputed from the log")
    body = cp["signed_body"]
    try:
        signed = json.loads(body)
    except ValueError:
        signed = {}
    claimed = (signed.get("tree_size"), signed.get("root_hash"), signed.get("key_id"))
    if claimed != (size, cp["root_hash"], cp["key_id"]):
        _bad(report, partition, None, None, f"{where}: the stored fields differ from the signed body")
    public = keys.get(cp["key_id"])
    if public is None:
        _bad(report, partition, None, None, f"{where}: signed with unknown key {cp['key_id']}")
    elif not verify_signature(public, body.encode("utf-8"), cp["signature"]):
        _bad(report, partition, None, None, f"{where}: the signature does not verify (forged or altered)")


def _check_tail(conn: Connection, partition: int, size: int, report: Report) -> None:
    c = t.merkle_leaves.c
    extra = conn.execute(select(c.leaf_index, c.log_offset).where(
        c.log_partition == partition, c.leaf_index >= size).order_by(c.leaf_index).limit(1)).first()
    if extra is not None:
        _bad(report, partition, extra.log_offset, None,
             f"leaf {extra.leaf_index} has no record in the log (log rows deleted at the end)")


def _check_consistency(conn: Connection, partition: int, checkpoints: list[dict[str, Any]], report: Report) -> None:
    get = node_getter(conn, partition)
    for old, new in itertools.pairwise(checkpoints):
        try:
            path = consistency_proof(old["tree_size"], new["tree_size"], get)
        except LookupError as exc:
            _bad(report, partition, None, None, f"stored tree nodes missing: {exc}")
            continue
        if not verify_consistency(old["tree_size"], new["tree_size"], bytes.fromhex(old["root_hash"]),
                                  bytes.fromhex(new["root_hash"]), path):
            _bad(report, partition, None, None, f"checkpoints at sizes {old['tree_size']} and {new['tree_size']} "
                 "are not consistent: the later tree does not extend the earlier one")


def _check_unchained_copies(conn: Connection, partition: int, end: int, report: Report) -> None:
    """Indexed outputs whose record is past the chain's end: the runner indexes and chains in one
    transaction, so there should be none."""
    o = t.outputs.c
    row = conn.execute(select(o.output_id, o.log_offset).where(o.log_partition == partition, o.log_offset >= end)
                       .limit(1)).first()
    if row is not None:
        _bad(report, partition, row.log_offset, None,
             f"output {row.output_id} is indexed but its record is not in the chain")


def _chain_end(conn: Connection, partition: int) -> int:
    h = t.chain_heads.c
    return int(conn.execute(select(h.next_offset).where(h.log_partition == partition)).scalar() or 0)


def _checkpoints(conn: Connection, partition: int) -> list[dict[str, Any]]:
    c = t.checkpoints.c
    return [dict(r) for r in conn.execute(select(t.checkpoints).where(c.log_partition == partition)
                                          .order_by(c.tree_size)).mappings()]


def _event_id(codec: Codec, raw: bytes) -> str | None:
    try:
        return str(codec.decode(raw).record["event_id"])
    except DeserializationError:
        return None


def _bad(report: Report, partition: int, offset: int | None, event_id: str | None, what: str) -> None:
    report.problems.append(Problem(partition, offset, event_id, what))
