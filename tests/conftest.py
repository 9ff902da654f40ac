"""Shared fixtures. Tests that need a server skip when it is absent, and fail under --require-services."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

POSTGRES_ADMIN_URL = os.environ.get("LINEAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-services",
        action="store_true",
        default=False,
        help="Fail (instead of skip) tests whose servers (PostgreSQL, ...) are not reachable. CI sets this.",
    )


def service_missing(config: pytest.Config, what: str) -> None:
    if config.getoption("--require-services"):
        pytest.fail(f"{what} is required (--require-services) but not reachable", pytrace=False)
    pytest.skip(f"{what} not reachable")


@contextmanager
def new_postgres_database(config: pytest.Config, prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database; yields its SQLAlchemy URL and drops it afterwards."""
    try:
        import psycopg
    except ImportError:
        service_missing(config, "psycopg (pip install -e '.[dev]')")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        service_missing(config, f"PostgreSQL at {POSTGRES_ADMIN_URL} ({exc})")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_database(pytestconfig: pytest.Config) -> Iterator[str]:
    """A fresh PostgreSQL database for this test session."""
    with new_postgres_database(pytestconfig, "lineage_test") as url:
        yield url


@pytest.fixture
def postgres_index_url(postgres_database: str) -> Iterator[str]:
    """The session database with no index tables and no schema revision for each test (open_engine creates them)."""
    from sqlalchemy import create_engine

    from streams.migrate import VERSION_TABLE
    from streams.tables import metadata

    engine = create_engine(postgres_database)
    metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {VERSION_TABLE}")
    engine.dispose()
    yield postgres_database
