"""Index schema migrations: which revision a store is at, and bringing it to the revision this code needs.

The revisions live in streams/migrations (alembic, configured here in code: there is no alembic.ini).
Upgrading is serialised across processes, by a transaction-level advisory lock on PostgreSQL and a write
transaction on SQLite, and the store's state is read again under it: of two processes starting at once, the
second finds the work done.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

from alembic import command
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, column, inspect, select, table, text
from sqlalchemy.exc import SQLAlchemyError

from schemas.errors import ConfigError, IndexError_, LineageError
from streams import tables as t

BASELINE = "0001"
VERSION_TABLE = "alembic_version"
# The pg_advisory_xact_lock key every llm-lineage process migrates under; any fixed bigint would do.
LOCK_KEY = int.from_bytes(b"lineage")

_VERSION = table(VERSION_TABLE, column("version_num"))
_HEAD_TABLES = frozenset(t.metadata.tables)
_ALEMBIC_ERRORS = (CommandError, RevisionError)
# alembic's `context` and `op` are module-level proxies to the migration running now, so one process runs
# one migration at a time even on different databases (threads would otherwise run DDL on each other's).
_RUNNING = threading.Lock()

log = logging.getLogger("llm_lineage")


@dataclass(frozen=True, slots=True)
class _State:
    version: str | None  # None: no version table, or an empty one
    tables: frozenset[str]


def alembic_config(connection: Connection | None = None) -> Config:
    """The index's alembic configuration; env.py runs migrations on `connection` (alembic.command needs one)."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The revision this code needs the index at."""
    found = _script().get_current_head()
    if found is None:
        raise ConfigError("no index schema revisions are installed (streams/migrations/versions is empty)")
    return found


def history() -> list[tuple[str, str]]:
    """Every revision, oldest first, as (revision, the first paragraph of its message)."""
    scripts = list(_script().walk_revisions("base", "heads"))
    return [(script.revision, script.doc) for script in reversed(scripts)]


def current(engine: Engine) -> str | None:
    """The revision the store is at; None for an empty store or one made before migrations existed."""
    try:
        with engine.connect() as conn:
            return _probe(conn).version
    except SQLAlchemyError as exc:
        raise IndexError_(f"cannot read the schema revision of the lineage index at {engine.url!r}: {exc}") from exc


def ensure_schema(engine: Engine, *, auto: bool) -> None:
    """Make sure the store has the schema this code needs. At head this costs two small queries. Otherwise
    `auto` upgrades it; without `auto`, ConfigError names both revisions and how to upgrade."""
    required = head()
    try:
        with engine.connect() as conn:
            state = _probe(conn)
    except SQLAlchemyError as exc:
        raise IndexError_(f"cannot open the lineage index at {engine.url!r}: {exc}") from exc
    if state.version == required and state.tables >= _HEAD_TABLES:
        return
    if state.version is not None:
        _require_known(state.version, engine)
    if not auto:
        found = state.version or "none"
        if state.version == required:
            found += f" but lacks tables {', '.join(sorted(_HEAD_TABLES - state.tables))}"
        raise ConfigError(
            f"the lineage index at {engine.url!r} is at schema revision {found}; this version of llm-lineage "
            f"needs revision {required}. Run `lineage db upgrade` to bring it up to date"
        )
    upgrade(engine)


def upgrade(engine: Engine, target: str = "head") -> list[str]:
    """Bring the store to `target`; returns the revisions this took, oldest first (empty when already there).

    A store made before migrations existed (every baseline table, no version table) is adopted: missing
    baseline indexes are created and it is stamped at the baseline, which counts as applied. A store with some
    baseline tables but not all is refused, naming the missing ones. A store whose version table survived its
    tables being dropped (to rebuild the index from the log) is built again from the start.
    """
    script = _script()
    _require_target(script, target)
    try:
        with engine.connect() as conn:
            _lock(conn)
            applied = _upgrade_locked(conn, script, target, engine)
            conn.commit()
    except LineageError:
        raise
    except (SQLAlchemyError, *_ALEMBIC_ERRORS) as exc:
        raise IndexError_(f"cannot migrate the lineage index at {engine.url!r} to {target}: {exc}") from exc
    return applied


def _upgrade_locked(conn: Connection, script: ScriptDirectory, target: str, engine: Engine) -> list[str]:
    state = _probe(conn)
    baseline_tables = frozenset(_baseline(script).TABLES)
    applied: list[str] = []
    if state.version is None and state.tables & baseline_tables:
        _adopt(conn, script, state, engine)
        applied.append(BASELINE)
    elif state.version is not None and not state.tables & (baseline_tables | _HEAD_TABLES):
        log.warning("the lineage index at %r is stamped %s but has no tables: creating them", engine.url,
                    state.version)
        MigrationContext.configure(conn).stamp(script, "base")
    elif state.version is not None:
        _require_known(state.version, engine)
    before = _probe(conn).version
    with _RUNNING:
        command.upgrade(alembic_config(conn), target)
    after = _probe(conn)
    if after.version is not None and after.version != before:
        ran = [s.revision for s in script.iterate_revisions(after.version, before or "base")]
        applied.extend(reversed(ran))
    if after.version == head() and not after.tables >= _HEAD_TABLES:
        missing = ", ".join(sorted(_HEAD_TABLES - after.tables))
        raise IndexError_(f"the lineage index at {engine.url!r} is at revision {after.version} but lacks tables "
                          f"{missing}: restore them, or rebuild the index from the log in an empty database")
    return applied


def _adopt(conn: Connection, script: ScriptDirectory, state: _State, engine: Engine) -> None:
    """Complete a store made before migrations existed to the baseline, and stamp it there."""
    baseline = _baseline(script)
    missing = sorted(set(baseline.TABLES) - state.tables)
    if missing:
        raise IndexError_(
            f"the lineage index at {engine.url!r} has no schema revision and only some of the index tables "
            f"(missing: {', '.join(missing)}); it cannot be adopted. Restore the missing tables, or rebuild the "
            "index from the log in an empty database"
        )
    operations = Operations(MigrationContext.configure(conn))
    inspector = inspect(conn)
    for table_name, name, columns, unique in baseline.INDEXES:
        if name not in {index["name"] for index in inspector.get_indexes(table_name)}:
            operations.create_index(name, table_name, list(columns), unique=unique)
    MigrationContext.configure(conn).stamp(script, BASELINE)
    log.info("adopted the lineage index at %r (made before schema migrations) at revision %s", engine.url, BASELINE)


def _lock(conn: Connection) -> None:
    """Hold the migration lock until the transaction ends (commit or rollback both release it)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        # pysqlite would only BEGIN before the first INSERT; IMMEDIATE takes the write lock now, and makes the
        # DDL that follows part of one transaction.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        raise ConfigError(f"schema migrations support SQLite and PostgreSQL, not {conn.dialect.name}")


def _probe(conn: Connection) -> _State:
    names = frozenset(inspect(conn).get_table_names())
    if VERSION_TABLE not in names:
        return _State(version=None, tables=names)
    versions = list(conn.execute(select(_VERSION.c.version_num)).scalars())
    if len(versions) > 1:
        raise IndexError_(f"the lineage index has several schema heads ({', '.join(versions)}); "
                          "its revisions must form one line")
    return _State(version=versions[0] if versions else None, tables=names)


def _require_known(version: str, engine: Engine) -> None:
    try:
        _script().get_revision(version)
    except _ALEMBIC_ERRORS as exc:
        raise ConfigError(
            f"the lineage index at {engine.url!r} is at schema revision {version!r}, which this version of "
            "llm-lineage does not know: a newer version migrated it. Run that version or a later one"
        ) from exc


def _require_target(script: ScriptDirectory, target: str) -> None:
    try:
        script.get_revision(target)
    except _ALEMBIC_ERRORS as exc:
        known = ", ".join(revision for revision, _ in history())
        raise ConfigError(f"unknown schema revision {target!r}; known revisions: {known}, or head") from exc


def _baseline(script: ScriptDirectory) -> ModuleType:
    return script.get_revision(BASELINE).module


@cache
def _script() -> ScriptDirectory:
    """Loaded once per process: it imports every revision file."""
    return ScriptDirectory.from_config(alembic_config())
