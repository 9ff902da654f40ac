"""What both halves of the lineage index contract share: the suite's base class (engine, the shared world, indexing
through EmbeddedRunner over a MemoryEventLog), one mixin per backend providing `index_url`, and the helpers
that read everything back (paging, row counts, snapshots)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from producers.memory_log import MemoryEventLog
from streams import tables as t
from streams.lineage import lineage_graph
from streams.reader import IndexReader, OutputFilter
from streams.runner import EmbeddedRunner
from streams.store import IndexStore, open_engine
from tests.factories import Event, World, build_world, log_values


def all_pages(reader: IndexReader, flt: OutputFilter, limit: int = 50) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(10_000):
        page = reader.outputs(flt, cursor=cursor, limit=limit)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        assert len(page.items) == limit, "only the last page may be short"
        cursor = page.next_cursor
    raise AssertionError("paging did not terminate")


def table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in t.metadata.sorted_tables}


LINEAGE_TABLES = (t.outputs, t.bundles, t.prompts, t.documents, t.models, t.consumers, t.consumptions, t.edges,
                  t.aliases, t.dead_letters)


def lineage_counts(engine: Engine) -> dict[str, int]:
    """Row counts of the tables the projectors write (not the integrity chain, which grows with every record)."""
    with engine.connect() as conn:
        return {table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in LINEAGE_TABLES}


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything a client can ask the index, with wall-clock fields left out."""
    reader = IndexReader(engine)
    listing = all_pages(reader, OutputFilter(), limit=4)
    ids = [item["output_id"] for item in listing]
    return {
        "listing": listing,
        "records": {i: reader.output(i) for i in ids},
        "graphs": {i: lineage_graph(engine, i, direction="both", depth=3) for i in ids},
        "stats": reader.stats(),
        "dead": [{k: v for k, v in d.items() if k != "recorded_at"} for d in reader.dead_letters()],
        "rows": table_counts(engine),
    }


class IndexContract:
    """Subclassed by each half of the suite, then once per backend; a backend only provides `index_url`."""

    @pytest.fixture
    def index_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def engine(self, index_url: str) -> Iterator[Engine]:
        engine = open_engine(index_url)
        yield engine
        engine.dispose()

    @pytest.fixture
    def world(self) -> World:
        return build_world()

    def index(self, engine: Engine, events: list[Event] | MemoryEventLog, batch_size: int = 5) -> EmbeddedRunner:
        if isinstance(events, MemoryEventLog):
            log = events
        else:
            log = MemoryEventLog()
            log.append(log_values(events))
        runner = EmbeddedRunner(log, IndexStore(engine), batch_size=batch_size)
        runner.catch_up()
        assert runner.lag() == 0 and runner.store.position() == log.end_offset()
        return runner


class OnSqlite:
    @pytest.fixture
    def index_url(self, tmp_path: Any) -> str:
        return f"sqlite:///{tmp_path / 'index.db'}"


class OnPostgres:
    @pytest.fixture
    def index_url(self, postgres_index_url: str) -> str:
        return postgres_index_url
