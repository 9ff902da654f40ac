"""Runs migrations on the connection `streams.migrate` hands in (`config.attributes["connection"]`).

The caller owns the engine, the transaction and the lock that keeps two processes from migrating at once, so
this file opens nothing itself. SQLite runs in batch mode: it cannot ALTER most things in place, and batch
operations rebuild the table instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from streams.tables import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "the lineage migrations run on a connection handed in by streams.migrate "
        "(use `lineage db upgrade`, or streams.migrate.alembic_config(connection) with alembic.command)"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    compare_server_default=True,
)
with context.begin_transaction():
    context.run_migrations()
