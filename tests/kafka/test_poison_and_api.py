"""Production mode end to end: poison records on the topic go to the dead-letter topic with the reason in
headers while the stream moves on; duplicate records on the topic are indexed once; and the API, run on the
Kafka log, takes events over HTTP that the worker indexes."""

from __future__ import annotations

import struct

import httpx
import pytest
from confluent_kafka import Producer

from lineage_api.app import create_app
from lineage_api.services import open_services
from tests.factories import encode, inference_event
from tests.kafka.harness import Deployment, WorkerProcess, assert_exact, read_topic, record_chains, wait_caught_up
from tests.servers import inference_event as json_event
from tests.servers import serve_app, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]


def _produce(deployment: Deployment, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": deployment.bootstrap, "enable.idempotence": True, "acks": "all"})
    for key, value in records:
        producer.produce(deployment.topic, value, key)
    assert producer.flush(30) == 0


def test_poison_records_go_to_the_dead_letter_topic_and_the_stream_moves_on(deployment: Deployment) -> None:
    deployment.extra_env["LINEAGE_MAX_EVENT_BYTES"] = "20000"
    good = encode("InferenceRecorded", inference_event())
    poison = {
        b"not-avro": b"this is not an Avro event",
        b"unknown-schema": b"\x00" + struct.pack(">I", 999) + b"\x02\x04",
        b"truncated": good[: len(good) // 2],
        b"oversized": encode("InferenceRecorded", inference_event(output={"text": "x" * 30_000})),
        b"nul-in-key": encode("InferenceRecorded", inference_event(feature="load\x00forecast")),
    }
    with deployment.recorder() as recorder:
        before = record_chains(recorder, 40, tag="before")
    _produce(deployment, list(poison.items()))
    with deployment.recorder() as recorder:
        after = record_chains(recorder, 40, tag="after")

    worker = WorkerProcess(deployment)
    try:
        engine = deployment.engine()
        wait_caught_up(engine, before + after, workers=[worker])
        assert_exact(engine, before + after, cycles=80, dead_letters=len(poison))
    finally:
        worker.stop()

    dead = {m.key(): m for m in read_topic(deployment, deployment.dlq_topic, expected=len(poison))}
    assert set(dead) == set(poison)
    reasons = {key: dict(m.headers())["lineage.reason"].decode() for key, m in dead.items()}
    assert "unknown schema id 999" in reasons[b"unknown-schema"]
    assert "over the limit of 20000 bytes" in reasons[b"oversized"]
    assert "NUL" in reasons[b"nul-in-key"] or "\\x00" in reasons[b"nul-in-key"], reasons[b"nul-in-key"]
    for key, message in dead.items():
        assert message.value() == poison[key], "the dead letter carries the exact bytes"
        headers = dict(message.headers())
        assert headers["lineage.source.topic"].decode() == deployment.topic
        assert int(headers["lineage.source.offset"]) >= 0


def test_the_same_record_twice_on_the_topic_is_indexed_once(deployment: Deployment) -> None:
    """A producer retry without idempotence writes a record twice; the second copy changes nothing."""
    events = [inference_event(feature=f"dup-{i}") for i in range(30)]
    records = [(b"root-%d" % i, encode("InferenceRecorded", e)) for i, e in enumerate(events)]
    _produce(deployment, records + records[:10] + records)
    worker = WorkerProcess(deployment)
    try:
        engine = deployment.engine()
        outputs = [e["output_id"] for e in events]
        wait_caught_up(engine, outputs, workers=[worker])
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT output_id, count(*) FROM outputs GROUP BY output_id").all()
            dead = conn.exec_driver_sql("SELECT count(*) FROM dead_letters").scalar_one()
        assert sorted(r[0] for r in rows) == sorted(outputs)
        assert {r[1] for r in rows} == {1}
        assert dead == 0, "a re-delivery of the same event is not a dead letter"
    finally:
        worker.stop()


def test_the_api_on_kafka_takes_events_that_the_worker_indexes(deployment: Deployment) -> None:
    services = open_services(deployment.settings())
    worker = WorkerProcess(deployment)
    try:
        with serve_app(create_app(services)) as url, httpx.Client(base_url=url, timeout=15) as client:
            ready = client.get("/readyz").json()
            assert ready["runner"] == "lineage worker", ready
            event = json_event(feature="posted-over-http")
            response = client.post("/v1/events", json=event)
            assert response.status_code == 202, response.text
            output_id = response.json()["events"][0]["output_id"]

            def indexed() -> dict[str, object] | None:
                r = client.get(f"/v1/outputs/{output_id}")
                return r.json() if r.status_code == 200 else None

            record = wait_for(indexed, timeout=60, what="the posted event in the index", interval=0.2)
            assert record["feature"] == "posted-over-http"
            stats = client.get("/v1/stats").json()
            assert stats["outputs"] == 1 and stats["log_end_offset"] >= 1, stats
    finally:
        worker.stop()
