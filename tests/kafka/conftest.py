"""Kafka fixtures: one memory-backed tansu broker for the session, and on request a broker on moto's S3
server that survives restarts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.brokers import MotoServer, TansuBroker, require_moto, require_tansu, running_broker, running_moto


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
