"""The one place that picks a dialect's INSERT, whose ON CONFLICT clauses SQLite and PostgreSQL share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite


def dialect_insert(dialect_name: str, table: Table) -> Any:
    """INSERT for `table` with on_conflict_do_nothing / on_conflict_do_update available."""
    return (sqlite if dialect_name == "sqlite" else postgresql).insert(table)
