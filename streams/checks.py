"""Will the index hold these rows? Checked against the table definitions themselves, so a column added
later is covered without anyone remembering to list it. PostgreSQL refuses over-long values and NUL
characters where SQLite would store them: checking first keeps both backends building the same index
from the same log, and keeps one bad event from failing its whole batch."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String

from schemas.codec import DecodedEvent
from schemas.errors import EventValidationError
from streams import tables as t
from streams.projector import RowBatch, SourceEvent, project

# RowBatch attribute -> (table name, [(column, max length or None for unbounded text)])
_COLUMNS: dict[str, tuple[str, list[tuple[str, int | None]]]] = {
    attr: (table.name, [(c.name, c.type.length) for c in table.columns if isinstance(c.type, String)])
    for attr, table in (
        ("outputs", t.outputs), ("bundles", t.bundles), ("prompts", t.prompts), ("documents", t.documents),
        ("models", t.models), ("consumers", t.consumers), ("consumptions", t.consumptions), ("edges", t.edges),
        ("aliases", t.aliases),
    )
}


def unfit(rows: RowBatch) -> str | None:
    """The first value the index could not store, described; None when everything fits."""
    for attr, (table, columns) in _COLUMNS.items():
        found: Any = getattr(rows, attr)
        for row in found.values() if isinstance(found, dict) else found:
            for name, limit in columns:
                value = row[name]
                if not isinstance(value, str):
                    continue
                if "\x00" in value:
                    return f"{table}.{name} contains a NUL character"
                if limit is not None and len(value) > limit:
                    return f"{table}.{name} is {len(value)} characters, over {limit}"
    return None


def check_fits(event: DecodedEvent) -> None:
    """Raise EventValidationError naming the column if the event's rows would not fit the index."""
    problem = unfit(project([SourceEvent(0, 0, b"", event)]))
    if problem is not None:
        raise EventValidationError(f"{event.name}: {problem}")
