"""Index schema migrations on SQLite, and `lineage db`. `MigrationContract` is the suite every backend passes;
tests/integration/test_migrations_postgres.py runs it on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, select, text

from lineage_api.services import open_services
from lineage_api.settings import Settings
from schemas.errors import ConfigError, IndexError_
from streams import migrate
from streams import tables as t
from streams.store import open_engine
from tests.servers import run_cli

REVISIONS = [revision for revision, _ in migrate.history()]


def schema_diff(engine: Engine) -> list[Any]:
    """What alembic autogenerate would change to make the database match streams/tables.py."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, t.metadata))


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def make_legacy_store(engine: Engine) -> None:
    """A store as open_engine made it before migrations: create_all, from before ix_outputs_trace existed,
    with a row in it."""
    t.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_outputs_trace")
        conn.execute(t.consumers.insert().values(consumer="dispatch", first_seen=1))


class MigrationContract:
    """Subclassed once per backend, which provides `url`: an empty database."""

    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def engine(self, url: str) -> Iterator[Engine]:
        engine = create_engine(url)
        yield engine
        engine.dispose()

    def test_upgrading_an_empty_database_gives_exactly_the_schema_of_tables_py(self, engine: Engine) -> None:
        assert migrate.current(engine) is None
        assert migrate.upgrade(engine) == REVISIONS
        assert table_names(engine) == {*t.metadata.tables, migrate.VERSION_TABLE}
        assert schema_diff(engine) == []

    def test_upgrading_again_changes_nothing_and_the_store_is_at_head(self, engine: Engine) -> None:
        migrate.upgrade(engine)
        assert migrate.upgrade(engine) == []
        assert migrate.current(engine) == migrate.head()
        migrate.ensure_schema(engine, auto=False)

    def test_open_engine_brings_a_new_store_to_head(self, url: str) -> None:
        engine = open_engine(url)
        try:
            assert migrate.current(engine) == migrate.head()
            assert schema_diff(engine) == []
        finally:
            engine.dispose()

    def test_a_store_made_before_migrations_is_adopted_with_its_rows(self, engine: Engine) -> None:
        make_legacy_store(engine)
        assert migrate.upgrade(engine) == REVISIONS  # the baseline by adoption, then any later revisions
        assert migrate.current(engine) == migrate.head()
        assert "ix_outputs_trace" in {ix["name"] for ix in inspect(engine).get_indexes("outputs")}
        assert schema_diff(engine) == []
        with engine.connect() as conn:
            assert conn.execute(select(t.consumers.c.consumer)).scalars().all() == ["dispatch"]

    def test_a_store_with_only_some_tables_is_refused_naming_the_missing_ones(self, engine: Engine) -> None:
        t.metadata.create_all(engine, tables=[t.outputs, t.bundles])
        with pytest.raises(IndexError_, match="only some of the index tables") as info:
            migrate.upgrade(engine)
        for name in set(t.metadata.tables) - {"outputs", "bundles"}:
            assert name in str(info.value)
        assert "outputs," not in str(info.value) and "bundles," not in str(info.value)
        assert table_names(engine) == {"outputs", "bundles"}  # rolled back: not even a version table

    def test_without_auto_a_store_that_is_behind_is_refused_with_the_command_that_upgrades_it(
        self, engine: Engine, url: str
    ) -> None:
        for behind in ("empty", "made before migrations"):
            if behind != "empty":
                make_legacy_store(engine)
            with pytest.raises(ConfigError) as info:
                migrate.ensure_schema(engine, auto=False)
            message = str(info.value)
            assert "revision none" in message and f"needs revision {migrate.head()}" in message
            assert "lineage db upgrade" in message
            with pytest.raises(ConfigError, match="lineage db upgrade"):
                open_engine(url, migrate=False).dispose()
            assert migrate.current(engine) is None

    def test_a_store_migrated_by_a_newer_version_is_refused(self, engine: Engine) -> None:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = 'f00d'"))
        for auto in (False, True):
            with pytest.raises(ConfigError, match="'f00d', which this version of llm-lineage does not know"):
                migrate.ensure_schema(engine, auto=auto)

    def test_a_store_whose_tables_were_dropped_to_rebuild_from_the_log_is_created_again(
        self, engine: Engine, url: str
    ) -> None:
        migrate.upgrade(engine)
        t.metadata.drop_all(engine)
        reopened = open_engine(url)
        try:
            assert migrate.current(reopened) == migrate.head()
            assert schema_diff(reopened) == []
        finally:
            reopened.dispose()

    def test_a_migration_that_fails_halfway_leaves_the_database_as_it_was(self, engine: Engine) -> None:
        with engine.begin() as conn:  # takes the name of an index the baseline creates after its tables
            conn.exec_driver_sql("CREATE TABLE squatter (x INTEGER)")
            conn.exec_driver_sql("CREATE INDEX ix_merkle_leaves_offset ON squatter (x)")
        with pytest.raises(IndexError_, match="cannot migrate the lineage index"):
            migrate.upgrade(engine)
        assert table_names(engine) == {"squatter"}

    def test_the_baseline_downgrades_to_an_empty_database_and_upgrades_again(self, engine: Engine) -> None:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "base")
        assert table_names(engine) == {migrate.VERSION_TABLE}
        assert migrate.upgrade(engine) == REVISIONS
        assert schema_diff(engine) == []

    def test_two_processes_upgrading_at_once_both_succeed(self, url: str) -> None:
        engines = [create_engine(url) for _ in range(2)]
        start = threading.Barrier(len(engines))
        results: list[list[str]] = []
        errors: list[BaseException] = []

        def run(engine: Engine) -> None:
            start.wait()
            try:
                results.append(migrate.upgrade(engine))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        try:
            assert errors == []
            assert sorted(results) == [[], REVISIONS]
            assert schema_diff(engines[0]) == []
        finally:
            for engine in engines:
                engine.dispose()

    def test_an_unknown_target_revision_is_a_config_error(self, engine: Engine) -> None:
        with pytest.raises(ConfigError, match="unknown schema revision 'nope'"):
            migrate.upgrade(engine, "nope")
        assert migrate.current(engine) is None


class TestSqliteMigrations(MigrationContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'index.db'}"

    def test_small_tables_keyed_by_text_are_without_rowid(self, engine: Engine) -> None:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            ddl = {row.name: row.sql for row in conn.execute(text("SELECT name, sql FROM sqlite_master"))}
        for name, table in t.metadata.tables.items():
            assert ("WITHOUT ROWID" in ddl[name]) == (table.dialect_options["sqlite"]["with_rowid"] is False), name

    def test_threads_migrating_different_stores_at_once_each_get_their_own_schema(self, tmp_path: Path) -> None:
        engines = [create_engine(f"sqlite:///{tmp_path / f'index-{i}.db'}") for i in range(4)]
        start = threading.Barrier(len(engines))
        errors: list[BaseException] = []

        def run(engine: Engine) -> None:
            start.wait()
            try:
                migrate.upgrade(engine)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        try:
            assert errors == []
            for engine in engines:
                assert migrate.current(engine) == migrate.head() and schema_diff(engine) == []
        finally:
            for engine in engines:
                engine.dispose()

    def test_the_api_with_auto_migrate_off_refuses_a_new_store(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path, auto_migrate=False)
        with pytest.raises(ConfigError, match="lineage db upgrade"):
            open_services(settings)
        engine = create_engine(settings.resolved_index_url)
        migrate.upgrade(engine)
        engine.dispose()
        services = open_services(settings)
        services.close()


def test_history_starts_at_the_baseline_and_ends_at_head() -> None:
    assert REVISIONS[0] == migrate.BASELINE and REVISIONS[-1] == migrate.head()
    assert all(message for _, message in migrate.history())


@pytest.mark.e2e
class TestDbCommand:
    def test_upgrade_creates_the_index_then_finds_it_at_head(self, tmp_path: Path) -> None:
        before = run_cli("db", "current", "--data-dir", str(tmp_path))
        assert before.returncode == 1 and "no lineage index" in before.stderr

        done = run_cli("db", "upgrade", "--data-dir", str(tmp_path))
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"applied {migrate.BASELINE}  baseline" in done.stdout
        assert f"now at {migrate.head()} (head)" in done.stdout

        again = run_cli("db", "upgrade", "--data-dir", str(tmp_path))
        assert again.returncode == 0 and again.stdout.strip() == f"already at head {migrate.head()}"
        now = run_cli("db", "current", "--data-dir", str(tmp_path))
        assert now.returncode == 0 and now.stdout.strip() == f"{migrate.head()} (head)"

    def test_current_exits_1_on_a_store_made_before_migrations_and_upgrade_adopts_it(self, tmp_path: Path) -> None:
        engine = create_engine(f"sqlite:///{tmp_path / 'index.db'}")
        make_legacy_store(engine)
        engine.dispose()
        behind = run_cli("db", "current", "-d", str(tmp_path))
        assert behind.returncode == 1
        assert f"none (behind: head is {migrate.head()}; run `lineage db upgrade`)" in behind.stdout
        done = run_cli("db", "upgrade", "-d", str(tmp_path))
        assert done.returncode == 0 and f"applied {migrate.BASELINE}" in done.stdout, done.stdout + done.stderr

    def test_an_unknown_target_is_refused_through_the_error_path(self, tmp_path: Path) -> None:
        done = run_cli("db", "upgrade", "--to", "nope", "-d", str(tmp_path))
        assert done.returncode == 1
        assert "error:" in done.stderr and "unknown schema revision 'nope'" in done.stderr

    def test_history_and_help(self) -> None:
        listed = run_cli("db", "history")
        assert listed.returncode == 0
        assert listed.stdout.splitlines()[-1].startswith(f"{migrate.head()}  ")
        assert listed.stdout.splitlines()[-1].endswith("(head)")
        helped = run_cli("db", "--help")
        assert helped.returncode == 0
        for name in ("upgrade", "current", "history"):
            assert name in helped.stdout
