"""The index store: writes projected rows and the consumer position in one transaction (effects exactly
once), for SQLite and PostgreSQL through SQLAlchemy Core. `open_index(url)` picks the backend."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, select
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from schemas.errors import ConfigError, IndexError_, IndexRejectedError, StalePositionError
from streams import tables as t
from streams.chain import extend_chain
from streams.projector import RowBatch
from streams.sql import dialect_insert

DEFAULT_PROJECTOR = "lineage"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    reason: str
    raw: bytes


def open_engine(url: str, *, migrate: bool = True) -> Engine:
    """An engine with the settings each backend needs, on a schema at the revision this code needs: `migrate`
    upgrades a store that is behind (creating the tables of a new one), else ConfigError says how to."""
    engine = create_index_engine(url)
    from streams.migrate import ensure_schema  # alembic loads only when an index is opened

    try:
        ensure_schema(engine, auto=migrate)
    except BaseException:
        engine.dispose()  # the caller never gets the engine, so its pooled connections are closed here
        raise
    return engine


def create_index_engine(url: str) -> Engine:
    """The engine alone, with the settings each backend needs, and no look at the schema (`lineage db`
    uses it to inspect and upgrade a store that is behind)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # hide_parameters: error messages must not carry event bodies and prompt text into logs.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql"):
        if not url.startswith("postgresql+psycopg://"):
            raise ConfigError(f"use the psycopg 3 driver for PostgreSQL: postgresql+psycopg://… (got {url!r})")
        return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True, hide_parameters=True)
    raise ConfigError(f"unsupported index URL {url!r}; use sqlite:///path/index.db or postgresql+psycopg://…")


class _Compiled:
    """An INSERT compiled once for the engine's dialect and run with the driver's executemany.

    SQLAlchemy's per-row parameter processing costs more than the insert itself on the hot path
    (measured ~12 us per row); our values are plain str/int/float/bytes that need none of it.
    """

    def __init__(self, engine: Engine, stmt: Any, table: Table) -> None:
        dialect = engine.dialect
        if dialect.name == "sqlite":
            dialect = type(dialect)(paramstyle="named")  # type: ignore[call-arg]  # sqlite3 binds dicts in C
        compiled = stmt.compile(dialect=dialect, column_keys=[c.name for c in table.columns])
        if compiled.positional:
            raise ConfigError(f"{engine.dialect.name}: expected a named parameter style for bulk inserts")
        self.sql = str(compiled)

    def executemany(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        conn.exec_driver_sql(self.sql, rows)


def _sqlite_pragmas(conn: Any, _record: Any) -> None:
    cur = conn.cursor()
    cur.execute("PRAGMA page_size=16384")  # bodies are ~1-4 KB: several fit a page; only applies to new files
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL is safe against process crashes in WAL mode; the index can be rebuilt from the log anyway.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA wal_autocheckpoint=16384")
    cur.close()


class IndexStore:
    """Writes one RowBatch plus dead letters plus the new position, atomically."""

    def __init__(self, engine: Engine, *, projector: str = DEFAULT_PROJECTOR) -> None:
        self.engine = engine
        self.projector = projector
        name = engine.dialect.name
        self._ignore = {table.name: _Compiled(engine, dialect_insert(name, table).on_conflict_do_nothing(), table)
                        for table in t.metadata.sorted_tables}
        upsert = dialect_insert(name, t.positions)
        self._position_stmt = upsert.on_conflict_do_update(
            index_elements=["projector", "log_partition"],
            set_={"next_offset": upsert.excluded.next_offset, "updated_at": upsert.excluded.updated_at},
        )

    def _bulk(self, conn: Connection, table: str, rows: list[dict[str, Any]]) -> None:
        self._ignore[table].executemany(conn, rows)

    def position(self, partition: int = 0) -> int:
        """The next offset to process on `partition` (0 when nothing was processed)."""
        query = select(t.positions.c.next_offset).where(
            t.positions.c.projector == self.projector, t.positions.c.log_partition == partition
        )
        try:
            with self.engine.connect() as conn:
                value = conn.execute(query).scalar()
        except SQLAlchemyError as exc:
            raise IndexError_(f"cannot read the consumer position: {exc}") from exc
        return int(value or 0)

    def apply(
        self, rows: RowBatch, *, partition: int, next_offset: int, dead_letters: Sequence[DeadLetter] = (),
        chain: Sequence[tuple[int, bytes]] = (), expect_position: int | None = None,
    ) -> None:
        """Write rows, dead letters, the batch's leaves in the partition's Merkle tree (`chain`: every log
        record of the batch as (offset, exact bytes)) and the new position, in one transaction.

        With `expect_position`, the stored position is locked first and must still be that value, or nothing
        is written (StalePositionError): two consumers that both think they own a partition, as during a
        rebalance, cannot both apply the same records."""
        now = time.time_ns() // 1000
        writes: list[tuple[str, list[dict[str, Any]]]] = [
            ("bundles", list(rows.bundles.values())),
            ("prompts", list(rows.prompts.values())),
            ("models", list(rows.models.values())),
            ("documents", list(rows.documents.values())),
            ("consumers", list(rows.consumers.values())),
            ("outputs", rows.outputs),
            ("edges", list(rows.edges.values())),
            ("consumptions", rows.consumptions),
            ("alias_moves", rows.aliases),
            ("dead_letters", [
                {"log_partition": d.partition, "log_offset": d.offset, "reason": d.reason, "raw": d.raw,
                 "recorded_at": now} for d in dead_letters
            ]),
        ]
        try:
            with self.engine.begin() as conn:
                if expect_position is not None:
                    self._check_position(conn, partition, expect_position)
                for name, batch in writes:
                    if batch:
                        self._ignore[name].executemany(conn, batch)
                if chain:
                    extend_chain(conn, partition, chain, self._bulk)
                conn.execute(self._position_stmt, {
                    "projector": self.projector, "log_partition": partition, "next_offset": next_offset,
                    "updated_at": now,
                })
        except (IntegrityError, DataError) as exc:
            raise IndexRejectedError(f"the lineage index refused the batch: {exc.orig}") from exc
        except IndexError_:
            raise
        except SQLAlchemyError as exc:
            raise IndexError_(f"cannot write to the lineage index: {exc}") from exc

    def _check_position(self, conn: Connection, partition: int, expected: int) -> None:
        c = t.positions.c
        query = select(c.next_offset).where(c.projector == self.projector, c.log_partition == partition)
        if conn.dialect.name == "sqlite":
            # SQLite has no FOR UPDATE: a write statement takes the database's write lock for the transaction.
            conn.exec_driver_sql("UPDATE consumer_positions SET next_offset = next_offset WHERE 0")
        else:
            query = query.with_for_update()
        found = int(conn.execute(query).scalar() or 0)
        if found != expected:
            raise StalePositionError(partition, expected, found)
