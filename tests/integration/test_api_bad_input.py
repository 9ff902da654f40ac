"""Bad input over HTTP gets a clear 4xx naming the problem, stores nothing, and harms nothing else: after
each bad request a good event is still accepted and indexed, and what was indexed before is still there.
Bad queries and odd output IDs on reads are in test_api_bad_input_reads.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from lineage_api.app import create_app
from lineage_api.routes_events import AVRO_MEDIA_TYPE, MAX_EVENTS_PER_REQUEST
from lineage_api.services import open_services
from lineage_api.settings import Settings
from producers.log import sqlite_path
from producers.sqlite_log import SqliteEventLog
from schemas.codec import Codec
from schemas.jsonform import from_json
from tests.integration.bad_input_checks import (
    MAX_EVENT_BYTES,
    MAX_REQUEST_BYTES,
    Server,
    assert_unharmed,
    error_of,
)
from tests.servers import inference_event, serve_app, wait_indexed


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


@pytest.fixture
def before(client: httpx.Client) -> dict[str, Any]:
    """Stats with the index caught up, taken before the test sends anything."""
    return wait_indexed(client)


# -- bodies that are not JSON events ----------------------------------------------------------------------


def test_malformed_json_is_400_naming_json(client: httpx.Client, server: Server, before: dict[str, Any]) -> None:
    response = client.post("/v1/events", content=b'{"type": "InferenceRecorded", "event": {',
                           headers={"Content-Type": "application/json"})

    assert "JSON" in error_of(response, 400)
    assert_unharmed(client, server, before)


def test_body_that_is_not_utf8_is_400_naming_utf8(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    response = client.post("/v1/events", content=b'{"type": "Inference\xff\xfeRecorded"}',
                           headers={"Content-Type": "application/json"})

    assert "UTF-8" in error_of(response, 400)
    assert_unharmed(client, server, before)


@pytest.mark.parametrize(("body", "expected"), [(b"", "empty body"), (b"[]", "between 1 and")],
                         ids=["no-bytes", "empty-array"])
def test_empty_body_is_400(
    client: httpx.Client, server: Server, before: dict[str, Any], body: bytes, expected: str
) -> None:
    response = client.post("/v1/events", content=body, headers={"Content-Type": "application/json"})

    assert expected in error_of(response, 400)
    assert_unharmed(client, server, before)


WRONG_ENVELOPES = {
    "no-type": {"event": inference_event()["event"]},
    "no-event": {"type": "InferenceRecorded"},
    "extra-key": {**inference_event(), "schema": 1},
    "bare-event": inference_event()["event"],
    "a-string": "InferenceRecorded",
    "a-number": 42,
}


@pytest.mark.parametrize("body", WRONG_ENVELOPES.values(), ids=WRONG_ENVELOPES.keys())
def test_wrong_envelope_is_422_showing_the_expected_shape(
    client: httpx.Client, server: Server, before: dict[str, Any], body: Any
) -> None:
    message = error_of(client.post("/v1/events", json=body), 422)

    assert '{"type": ..., "event": {...}}' in message
    assert_unharmed(client, server, before)


def test_event_that_is_not_an_object_is_422(client: httpx.Client, server: Server, before: dict[str, Any]) -> None:
    message = error_of(client.post("/v1/events", json={"type": "InferenceRecorded", "event": [1, 2]}), 422)

    assert "event.event: expected an object" in message
    assert_unharmed(client, server, before)


def test_unknown_event_type_is_422_naming_it_and_the_known_types(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    body = {"type": "InferenceRecordedd", "event": inference_event()["event"]}

    message = error_of(client.post("/v1/events", json=body), 422)

    assert "'InferenceRecordedd'" in message and "InferenceRecorded, BundleRegistered" in message
    assert_unharmed(client, server, before)


# -- events that break the schema -------------------------------------------------------------------------


def _without_message_content() -> dict[str, Any]:
    event = inference_event()
    del event["event"]["prompt"]["messages"][0]["content"]
    return event


def _with(**fields: Any) -> dict[str, Any]:
    event = inference_event()
    event["event"].update(fields)
    return event


def _without(name: str) -> dict[str, Any]:
    event = inference_event()
    del event["event"][name]
    return event


SCHEMA_BREAKS = {
    "missing-nested": (_without_message_content(), "event: InferenceRecorded.prompt.messages[0].content: missing"),
    "missing-top": (_without("feature"), "InferenceRecorded.feature: missing required field"),
    "mistyped-number": (_with(params={"temperature": "hot"}), "InferenceRecorded.params.temperature: expected a num"),
    "mistyped-int": (_with(usage={"prompt_tokens": "10"}), "InferenceRecorded.usage.prompt_tokens: expected an int"),
    "float-for-int": (_with(cost_usd_micros=1.5), "InferenceRecorded.cost_usd_micros: expected an integer"),
    "bad-enum": (_with(status="MAYBE"), "InferenceRecorded.status: 'MAYBE' is not one of OK, ERROR"),
    "null-required": (_with(feature=None), "InferenceRecorded.feature: expected a string, got null"),
    "unknown-field": (_with(colour="red"), "InferenceRecorded.colour: unknown field"),
    "bad-timestamp": (_with(occurred_at="yesterday"), "InferenceRecorded.occurred_at: 'yesterday' is not an ISO"),
    "naive-timestamp": (_with(occurred_at="2026-03-01T00:00:00"), "InferenceRecorded.occurred_at: timestamp"),
    "long-overflow": (_with(latency_ms=1.0, cost_usd_micros=2**63), "cost_usd_micros: 9223372036854775808 is out"),
}


@pytest.mark.parametrize(("body", "expected"), SCHEMA_BREAKS.values(), ids=SCHEMA_BREAKS.keys())
def test_event_breaking_the_schema_is_422_naming_the_field_path(
    client: httpx.Client, server: Server, before: dict[str, Any], body: dict[str, Any], expected: str
) -> None:
    message = error_of(client.post("/v1/events", json=body), 422)

    assert expected in message
    assert_unharmed(client, server, before)


def test_timestamp_beyond_year_9999_is_rejected_at_the_api_not_dead_lettered_later(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    """Integer µs fit an Avro long far past the last date Python (and the index reader) can represent;
    accepting them would answer 202 and then dead-letter the event."""
    event = inference_event()
    event["event"]["occurred_at"] = 2**62

    message = error_of(client.post("/v1/events", json=event), 422)

    assert "occurred_at" in message
    assert_unharmed(client, server, before)


def test_event_at_the_last_representable_microsecond_does_not_break_reads(tmp_path: Path) -> None:
    """Either the API refuses the timestamp, or every read that shows it works: one odd event must not
    turn listings and lineage graphs into 500s for everyone."""
    services = open_services(Settings(data_dir=tmp_path))
    with serve_app(create_app(services)) as url, httpx.Client(base_url=url, timeout=10) as client:
        ordinary = inference_event(feature="edge")
        edge = inference_event(feature="edge", occurred_at=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
        assert client.post("/v1/events", json=ordinary).status_code == 202
        response = client.post("/v1/events", json=edge)
        if response.status_code != 202:
            assert "occurred_at" in error_of(response, 422)
        wait_indexed(client)

        listing = client.get("/v1/outputs", params={"feature": "edge"})
        assert listing.status_code == 200, listing.text
        graph = client.get(f"/v1/outputs/{ordinary['event']['output_id']}/lineage", params={"direction": "both"})
        assert graph.status_code == 200, graph.text
        if response.status_code == 202:
            oid = edge["event"]["output_id"]
            assert client.get(f"/v1/outputs/{oid}").json()["occurred_at"] == "9999-12-31T23:59:59.999999Z"
            listed = {i["output_id"]: i["occurred_at"] for i in listing.json()["items"]}
            assert listed[oid] == "9999-12-31T23:59:59.999999Z"


def test_batch_with_one_bad_event_stores_none_of_the_batch(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    good = [inference_event(feature="batch-good") for _ in range(3)]
    bad = _with(params={"temperature": "hot"})

    message = error_of(client.post("/v1/events", json=[good[0], good[1], bad, good[2]]), 422)

    assert message.startswith("events[2]: ") and "params.temperature" in message
    assert_unharmed(client, server, before)
    for event in good:
        assert client.get(f"/v1/outputs/{event['event']['output_id']}").status_code == 404
    assert client.get("/v1/outputs", params={"feature": "batch-good"}).json()["items"] == []


# -- sizes ------------------------------------------------------------------------------------------------


def test_event_over_max_event_bytes_is_413_naming_the_limit(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    body = inference_event(text="x" * (MAX_EVENT_BYTES + 100))

    message = error_of(client.post("/v1/events", json=body), 413)

    assert str(MAX_EVENT_BYTES) in message and "LINEAGE_MAX_EVENT_BYTES" in message
    assert_unharmed(client, server, before)


def test_event_in_a_batch_over_max_event_bytes_rejects_the_batch(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    small = inference_event(feature="batch-with-big")
    big = inference_event(feature="batch-with-big", text="x" * (MAX_EVENT_BYTES + 100))

    assert str(MAX_EVENT_BYTES) in error_of(client.post("/v1/events", json=[small, big]), 413)
    assert_unharmed(client, server, before)
    assert client.get(f"/v1/outputs/{small['event']['output_id']}").status_code == 404


def test_body_over_max_request_bytes_by_content_length_is_413(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    body = b"[" + b" " * MAX_REQUEST_BYTES + b"]"

    response = client.post("/v1/events", content=body, headers={"Content-Type": "application/json"})

    assert response.request.headers["content-length"] == str(len(body))
    assert str(MAX_REQUEST_BYTES) in error_of(response, 413)
    assert_unharmed(client, server, before)


def test_chunked_body_over_max_request_bytes_without_content_length_is_413(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(3 * MAX_REQUEST_BYTES // 1024):
            yield b" " * 1024
        yield b"]"

    response = client.post("/v1/events", content=chunks(), headers={"Content-Type": "application/json"})

    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert str(MAX_REQUEST_BYTES) in error_of(response, 413)
    assert_unharmed(client, server, before)


def test_too_many_events_in_one_request_is_400_naming_the_maximum(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    body = [{}] * (MAX_EVENTS_PER_REQUEST + 1)

    message = error_of(client.post("/v1/events", json=body), 400)

    assert str(MAX_EVENTS_PER_REQUEST) in message and str(MAX_EVENTS_PER_REQUEST + 1) in message
    assert_unharmed(client, server, before)


# -- Avro bodies and the dead-letter store ----------------------------------------------------------------


def _valid_avro() -> bytes:
    codec = Codec()
    record = from_json(codec.registry.latest("InferenceRecorded").schema, inference_event()["event"])
    return codec.encode("InferenceRecorded", record)


AVRO_GARBAGE = {
    "text": (b"this is not avro at all", "bad magic byte"),
    "too-short": (b"\x00\x00\x01", "shorter than the 5-byte"),
    "unknown-schema-id": (b"\x00\x00\x00\x03\xe7" + _valid_avro()[5:], "unknown schema id 999"),
    "corrupt-body": (b"\x00\x00\x00\x00\x01" + b"\xff" * 40, "corrupt Avro body for schema id 1"),
    "truncated": (_valid_avro()[:-7], "schema id 1"),
    "trailing-bytes": (_valid_avro() + b"\x00\x00", "trailing bytes"),
}


@pytest.mark.parametrize(("body", "expected"), AVRO_GARBAGE.values(), ids=AVRO_GARBAGE.keys())
def test_avro_body_that_does_not_decode_is_422_naming_the_problem(
    client: httpx.Client, server: Server, before: dict[str, Any], body: bytes, expected: str
) -> None:
    response = client.post("/v1/events", content=body, headers={"Content-Type": AVRO_MEDIA_TYPE})

    assert expected in error_of(response, 422)
    assert_unharmed(client, server, before)


def test_avro_body_over_max_event_bytes_is_413(client: httpx.Client, server: Server, before: dict[str, Any]) -> None:
    codec = Codec()
    event = inference_event(text="y" * (MAX_EVENT_BYTES + 10))["event"]
    body = codec.encode("InferenceRecorded", from_json(codec.registry.latest("InferenceRecorded").schema, event))

    response = client.post("/v1/events", content=body, headers={"Content-Type": AVRO_MEDIA_TYPE})

    assert str(MAX_EVENT_BYTES) in error_of(response, 413)
    assert_unharmed(client, server, before)


def test_garbage_written_straight_to_the_log_becomes_dead_letters_and_the_stream_moves_on(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    unknown_schema = b"\x00\x00\x00\x03\xe7" + _valid_avro()[5:]
    log = SqliteEventLog(sqlite_path(server.settings.resolved_log_url))
    try:
        log.append([(b"k1", unknown_schema), (None, b"garbage, not framed")])
    finally:
        log.close()

    assert_unharmed(client, server, before, appended=2, dead=2)

    letters = client.get("/v1/dead-letters").raise_for_status().json()["items"]
    first = before["log_end_offset"]
    reasons = {d["log_offset"]: d for d in letters if d["log_offset"] >= first}
    assert sorted(reasons) == [first, first + 1]
    assert "unknown schema id 999" in reasons[first]["reason"]
    assert reasons[first]["size"] == len(unknown_schema)
    assert "bad magic byte" in reasons[first + 1]["reason"]


def test_chain_checkpoints_cannot_be_posted(client: httpx.Client, before: dict[str, Any]) -> None:
    """Only the store signs the chain: a ChainCheckpoint posted from outside is refused in both encodings."""
    event = {"event_id": "018f3a7c-5555-7abc-8def-0123456789ab", "occurred_at": 0, "log_partition": 0,
             "tree_size": 1, "root_hash": "ab" * 32, "first_offset": 0, "last_offset": 0, "key_id": "k",
             "signed_body": "{}", "signature": "c2ln"}
    r = client.post("/v1/events", json={"type": "ChainCheckpoint", "event": event})
    assert r.status_code == 422 and "unknown event type 'ChainCheckpoint'" in r.json()["error"]["message"]
    r = client.post("/v1/events", content=Codec().encode("ChainCheckpoint", event),
                    headers={"content-type": AVRO_MEDIA_TYPE})
    assert r.status_code == 422 and "written by the lineage store itself" in r.json()["error"]["message"]
