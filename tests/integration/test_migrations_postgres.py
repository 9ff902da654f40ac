"""Index schema migrations on PostgreSQL: the same suite as SQLite, plus `lineage db` as a deploy step against
a server (the index URL from the environment, as in production)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import create_engine

from streams import migrate
from streams import tables as t
from tests.servers import run_cli
from tests.unit.test_migrations_sqlite import MigrationContract

pytestmark = pytest.mark.postgres


def drop_everything(url: str) -> None:
    """The tests leave behind partial stores, foreign tables and unknown revisions; later tests share the database."""
    engine = create_engine(url)
    t.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {migrate.VERSION_TABLE}, squatter")
    engine.dispose()


@pytest.fixture
def empty_postgres(postgres_database: str) -> Iterator[str]:
    drop_everything(postgres_database)
    yield postgres_database
    drop_everything(postgres_database)


class TestPostgresMigrations(MigrationContract):
    @pytest.fixture
    def url(self, empty_postgres: str) -> str:
        return empty_postgres


@pytest.mark.e2e
def test_db_upgrade_as_a_deploy_step_then_current(empty_postgres: str) -> None:
    env = {"LINEAGE_INDEX_URL": empty_postgres}
    before = run_cli("db", "current", env=env)
    assert before.returncode == 1 and before.stdout.startswith("none (behind"), before.stdout + before.stderr

    done = run_cli("db", "upgrade", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"applied {migrate.BASELINE}" in done.stdout and f"now at {migrate.head()} (head)" in done.stdout

    now = run_cli("db", "current", env=env)
    assert now.returncode == 0 and now.stdout.strip() == f"{migrate.head()} (head)"
    assert run_cli("db", "upgrade", env=env).stdout.strip() == f"already at head {migrate.head()}"


def test_event_bodies_are_stored_with_lz4_and_the_downgrade_restores_pglz(empty_postgres: str) -> None:
    engine = create_engine(empty_postgres)
    query = ("SELECT attcompression FROM pg_attribute WHERE attrelid = %(t)s::regclass AND attname = %(c)s")
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql(query, {"t": "outputs", "c": "body"}).scalar() == "l"
            assert conn.exec_driver_sql(query, {"t": "dead_letters", "c": "raw"}).scalar() == "l"
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "0001")
        with engine.connect() as conn:
            assert conn.exec_driver_sql(query, {"t": "outputs", "c": "body"}).scalar() == "p"
    finally:
        engine.dispose()
