"""Kafka fixtures: one memory-backed tansu broker for the session, and on request a broker on moto's S3
server that survives restarts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import MotoServer, TansuBroker, require_moto, require_tansu, running_broker, running_moto
from tests.conftest import new_postgres_database
from tests.kafka.harness import Deployment


@pytest.fixture(scope="session")
def kafka_broker(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    require_tansu(pytestconfig)
    with running_broker(tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


@pytest.fixture(scope="session")
def moto_server(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    require_moto(pytestconfig)
    with running_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def durable_broker(
    pytestconfig: pytest.Config, moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TansuBroker]:
    """A broker of its own that keeps its data in S3 (moto), so a test can kill and restart it."""
    require_tansu(pytestconfig)
    bucket = f"tansu-{tmp_path_factory.getbasetemp().name[-6:]}-{id(object()) % 100000}"
    moto_server.create_bucket(bucket)
    broker = TansuBroker(tmp_path_factory.mktemp("tansu-s3"), s3=moto_server, bucket=bucket)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def fresh_index_url(pytestconfig: pytest.Config) -> Iterator[str]:
    """A PostgreSQL database of the test's own (a deployment's index), dropped afterwards."""
    with new_postgres_database(pytestconfig, "lineage_kafka") as url:
        yield url


@pytest.fixture
def deployment(kafka_broker: TansuBroker, fresh_index_url: str, tmp_path: Path) -> Iterator[Deployment]:
    """Topics, a consumer group, an index database and a data dir of the test's own, on the shared broker;
    the topics exist, the index schema is migrated."""
    from streams.store import open_engine

    dep = Deployment(kafka_broker.bootstrap, fresh_index_url, tmp_path / "data")
    dep.create_topics()
    open_engine(fresh_index_url).dispose()
    yield dep
    dep.close()
