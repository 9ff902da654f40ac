"""Every read of the lineage index reports an unusable database as IndexError_ (HTTP 503, retried by the
runner), never as a raw SQLAlchemy error (HTTP 500): here, a database file without the index tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from schemas.errors import IndexError_
from streams.lineage import lineage_graph
from streams.reader import IndexReader, OutputFilter, recorded_bodies, recorded_outputs

READS: dict[str, Callable[[Engine], Any]] = {
    "output": lambda e: IndexReader(e).output("out_x"),
    "outputs": lambda e: IndexReader(e).outputs(OutputFilter()),
    "stats": lambda e: IndexReader(e).stats(),
    "dead_letters": lambda e: IndexReader(e).dead_letters(),
    "lineage_graph": lambda e: lineage_graph(e, "out_x"),
    "recorded_outputs": lambda e: recorded_outputs(e, ["out_x"]),
    "recorded_bodies": lambda e: recorded_bodies(e, ["out_x"]),
}


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'not-an-index.db'}")
    yield engine
    engine.dispose()


@pytest.mark.parametrize("read", READS.values(), ids=list(READS))
def test_a_read_of_an_unusable_index_raises_index_error(empty_database: Engine, read: Callable[[Engine], Any]) -> None:
    with pytest.raises(IndexError_, match=r"cannot read the lineage index: .*no such table"):
        read(empty_database)
