"""`lineage topics create` and `lineage worker` from a terminal: what they do, and the errors that say
what to fix."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.brokers import TansuBroker
from tests.servers import free_port, run_cli

pytestmark = pytest.mark.kafka


def _env(broker_url: str, topic: str, tmp_path: Path) -> dict[str, str]:
    return {"LINEAGE_LOG_URL": broker_url, "LINEAGE_TOPIC": topic, "LINEAGE_DLQ_TOPIC": f"{topic}.dlq",
            "LINEAGE_TOPIC_PARTITIONS": "6", "LINEAGE_DATA_DIR": str(tmp_path),
            "LINEAGE_INDEX_URL": f"sqlite:///{tmp_path / 'index.db'}"}


def test_topics_create_makes_both_topics_and_running_it_again_changes_nothing(
    kafka_broker: TansuBroker, tmp_path: Path,
) -> None:
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    env = _env(kafka_broker.log_url, topic, tmp_path)
    first = run_cli("topics", "create", env=env)
    assert first.returncode == 0, first.stderr
    assert f"created  {topic}: 6 partitions, replication 1, retention unlimited" in first.stdout
    assert f"created  {topic}.dlq: 3 partitions" in first.stdout
    meta = AdminClient({"bootstrap.servers": kafka_broker.bootstrap}).list_topics(timeout=10)
    assert len(meta.topics[topic].partitions) == 6

    again = run_cli("topics", "create", "--partitions", "8", env=env)
    assert again.returncode == 0, again.stderr
    assert f"exists   {topic}: 6 partitions (recommended 8; left as it is)" in again.stdout
    assert "created" not in again.stdout


def test_topics_create_names_an_unreachable_broker(tmp_path: Path) -> None:
    result = run_cli("topics", "create", env=_env(f"kafka://127.0.0.1:{free_port()}", "t", tmp_path), timeout=90)
    assert result.returncode == 1
    assert "unreachable" in result.stderr and "127.0.0.1" in result.stderr


@pytest.mark.parametrize("log_url", ["", "sqlite:///x/log.db"])
def test_worker_and_topics_need_a_kafka_url(log_url: str, tmp_path: Path) -> None:
    env = {"LINEAGE_LOG_URL": log_url} if log_url else {}
    for command in (("worker",), ("topics", "create")):
        result = run_cli(*command, env=env)
        assert result.returncode == 1, result
        assert "must be a kafka:// URL" in result.stderr


def test_worker_without_topics_says_to_create_them(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    result = run_cli("worker", env=_env(kafka_broker.log_url, f"missing-{uuid.uuid4().hex[:8]}", tmp_path))
    assert result.returncode == 1
    assert "lineage topics create" in result.stderr, result.stderr


def test_help_explains_the_commands() -> None:
    worker = run_cli("worker", "--help")
    assert worker.returncode == 0 and "SIGTERM" in worker.stdout and "LINEAGE_WORKER_GROUP" in worker.stdout
    topics = run_cli("topics", "create", "--help")
    assert topics.returncode == 0 and "retention.ms=-1" in topics.stdout
