"""POST /v1/events refuses what the index would dead-letter or misfile: a second recording of an output, a
bundle whose ID is not its content hash, JSON text fields that are not JSON, timestamps outside years
1-9999 in UTC. IDs it makes for the caller come from occurred_at, and the parsing runs off the event loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from lineage_api.app import create_app
from lineage_api.routes_events import AVRO_MEDIA_TYPE
from lineage_api.services import open_services
from lineage_api.settings import Settings
from schemas.codec import Codec, DecodedEvent
from schemas.ids import output_id_from, timestamp_from_uuid7
from schemas.jsonform import from_json
from tests.factories import bundle_event
from tests.integration.bad_input_checks import Server, assert_unharmed, error_of
from tests.servers import inference_event, new_ids, serve_app, wait_indexed


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


@pytest.fixture
def before(client: httpx.Client) -> dict[str, Any]:
    return wait_indexed(client)


def _avro(envelope: dict[str, Any]) -> bytes:
    codec = Codec()
    name = envelope["type"]
    return codec.encode(name, from_json(codec.registry.latest(name).schema, envelope["event"]))


def _rival(original: dict[str, Any]) -> dict[str, Any]:
    """Another event (new event ID, other parents) claiming the original's output ID."""
    rival = inference_event(feature="rival", parent_output_ids=["out_somebody_else"])
    rival["event"]["output_id"] = original["event"]["output_id"]
    return rival


# -- an output is recorded once ---------------------------------------------------------------------------


def test_an_output_already_recorded_by_another_event_is_refused_naming_that_event(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    original = inference_event(feature="recorded-once")
    assert client.post("/v1/events", json=original).status_code == 202
    before = wait_indexed(client)

    message = error_of(client.post("/v1/events", json=_rival(original)), 422)

    oid, eid = original["event"]["output_id"], original["event"]["event_id"]
    assert message == (f"event: InferenceRecorded.output_id {oid!r} is already recorded by event {eid}; "
                       "an output is recorded once")
    assert_unharmed(client, server, before)
    assert client.get(f"/v1/outputs/{oid}").json()["parents"] == []


def test_an_output_already_recorded_is_refused_in_avro_too(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    original = inference_event(feature="recorded-once-avro")
    assert client.post("/v1/events", json=original).status_code == 202
    before = wait_indexed(client)

    response = client.post("/v1/events", content=_avro(_rival(original)), headers={"Content-Type": AVRO_MEDIA_TYPE})

    assert f"is already recorded by event {original['event']['event_id']}" in error_of(response, 422)
    assert_unharmed(client, server, before)


def test_two_events_recording_one_output_in_one_request_are_refused(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    first = inference_event(feature="twice-in-one-request")

    message = error_of(client.post("/v1/events", json=[first, _rival(first)]), 422)

    assert message.startswith("events[1]: InferenceRecorded.output_id")
    assert f"also recorded by event {first['event']['event_id']} in this request" in message
    assert_unharmed(client, server, before)
    assert client.get(f"/v1/outputs/{first['event']['output_id']}").status_code == 404


def test_a_retried_request_with_the_same_events_is_accepted_and_indexed_once(
    client: httpx.Client, server: Server
) -> None:
    event = inference_event(feature="retried")
    assert client.post("/v1/events", json=event).status_code == 202
    before = wait_indexed(client)

    again = client.post("/v1/events", json=[event, event])

    assert again.status_code == 202, again.text
    assert_unharmed(client, server, before, appended=2)
    assert [i["output_id"] for i in client.get("/v1/outputs", params={"feature": "retried"}).json()["items"]] == [
        event["event"]["output_id"]]


# -- what the index would dead-letter, refused at the door ------------------------------------------------


def _bundle(**overrides: Any) -> dict[str, Any]:
    return {"type": "BundleRegistered", "event": bundle_event(**overrides)}


def test_a_bundle_registration_is_accepted_when_its_id_is_the_hash_of_its_content(
    client: httpx.Client, server: Server, before: dict[str, Any]
) -> None:
    assert client.post("/v1/events", json=_bundle()).status_code == 202
    stats = wait_indexed(client)
    assert (stats["bundles"], stats["dead_letters"]) == (before["bundles"] + 1, before["dead_letters"])


@pytest.mark.parametrize("overrides", [{"bundle_id": "ab" * 32}, {"canonical_json": '{"release":"other"}'}],
                         ids=["made-up-id", "other-content"])
def test_a_bundle_whose_id_is_not_the_hash_of_its_content_is_422(
    client: httpx.Client, server: Server, before: dict[str, Any], overrides: dict[str, Any]
) -> None:
    message = error_of(client.post("/v1/events", json=_bundle(**overrides)), 422)

    assert message.startswith("event: BundleRegistered.bundle_id") and "sha256 of its canonical_json" in message
    assert_unharmed(client, server, before)


JSON_FIELDS = {
    "variables": ({"prompt": {"template_id": "t", "messages": [], "variables_json": "{region: north}"}},
                  "event: InferenceRecorded.prompt.variables_json: not valid JSON"),
    "extras": ({"params": {"extras_json": "[1]"}},
               "event: InferenceRecorded.params.extras_json: expected a JSON object, got an array"),
    "structured": ({"output": {"text": "x", "structured_json": "peak 4 GW"}},
                   "event: InferenceRecorded.output.structured_json: not valid JSON"),
}


@pytest.mark.parametrize(("fields", "expected"), JSON_FIELDS.values(), ids=list(JSON_FIELDS))
def test_json_text_fields_that_are_not_json_are_422(
    client: httpx.Client, server: Server, before: dict[str, Any], fields: dict[str, Any], expected: str
) -> None:
    message = error_of(client.post("/v1/events", json=inference_event(**fields)), 422)

    assert message.startswith(expected), message
    assert_unharmed(client, server, before)


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:30:00-01:00"])
def test_iso_timestamps_outside_years_1_to_9999_in_utc_are_422_not_dead_letters(
    client: httpx.Client, server: Server, before: dict[str, Any], when: str
) -> None:
    event = inference_event()
    event["event"]["occurred_at"] = when

    message = error_of(client.post("/v1/events", json=event), 422)

    assert "InferenceRecorded.occurred_at" in message and "out of range" in message
    assert_unharmed(client, server, before)


# -- IDs made for the caller ------------------------------------------------------------------------------


BACKFILL = datetime(2024, 2, 29, 23, 59, 58, 765_432, tzinfo=UTC)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def test_ids_made_for_a_backfilled_event_come_from_its_occurred_at(client: httpx.Client) -> None:
    events = [inference_event(feature="backfill", occurred_at=BACKFILL, explicit_ids=False),
              {"type": "BundleRegistered", "event": {**_bundle()["event"], "occurred_at": BACKFILL.isoformat()}}]
    del events[1]["event"]["event_id"]

    response = client.post("/v1/events", json=events)

    assert response.status_code == 202, response.text
    inference, bundle = response.json()["events"]
    raw = uuid.UUID(inference["event_id"]).bytes
    assert timestamp_from_uuid7(raw) == _ms(BACKFILL) and uuid.UUID(inference["event_id"]).version == 7
    assert inference["output_id"] == output_id_from(raw), "the output ID derives from the same UUID"
    assert _output_uuid(inference["output_id"]) == raw
    assert timestamp_from_uuid7(uuid.UUID(bundle["event_id"]).bytes) == _ms(BACKFILL)
    wait_indexed(client)
    assert client.get(f"/v1/outputs/{inference['output_id']}").json()["event_id"] == inference["event_id"]


def test_ids_the_caller_gives_are_kept(client: httpx.Client) -> None:
    event_id, output_id = new_ids()
    only_event_id = inference_event(occurred_at=BACKFILL, explicit_ids=False, event_id=event_id)
    only_output_id = inference_event(occurred_at=BACKFILL, explicit_ids=False, output_id=output_id)

    first, second = client.post("/v1/events", json=[only_event_id, only_output_id]).raise_for_status().json()["events"]

    assert first["event_id"] == event_id
    assert timestamp_from_uuid7(_output_uuid(first["output_id"])) == _ms(BACKFILL)
    assert second["output_id"] == output_id
    assert timestamp_from_uuid7(uuid.UUID(second["event_id"]).bytes) == _ms(BACKFILL)


def _output_uuid(output_id: str) -> bytes:
    """The UUIDv7 bytes an output ID was made from ('out_' + base32hex digits 0-9a-v of the bits << 2)."""
    return (int(output_id.removeprefix("out_"), 32) >> 2).to_bytes(16, "big")


# -- off the event loop -----------------------------------------------------------------------------------


class LoopWatchingCodec(Codec):
    """Notes, for every encode and decode, whether it ran on a thread with a running event loop."""

    def __init__(self) -> None:
        super().__init__()
        self.on_loop: list[bool] = []

    def _note(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.on_loop.append(False)
        else:
            self.on_loop.append(True)

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        self._note()
        return super().encode(name, record)

    def decode(self, data: bytes) -> DecodedEvent:
        self._note()
        return super().decode(data)


def test_parsing_checking_and_encoding_run_off_the_event_loop(tmp_path: Path) -> None:
    """A full request takes ~0.1 s of CPU: on the event loop it would stall every other request meanwhile."""
    services = open_services(Settings(data_dir=tmp_path))
    watcher = services.codec = LoopWatchingCodec()
    with serve_app(create_app(services)) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert client.post("/v1/events", json=[inference_event() for _ in range(3)]).status_code == 202
        avro = client.post("/v1/events", content=_avro(inference_event()), headers={"Content-Type": AVRO_MEDIA_TYPE})
        assert avro.status_code == 202, avro.text
        bad = client.post("/v1/events", json=inference_event(status="MAYBE"))
        assert bad.status_code == 422
    assert len(watcher.on_loop) == 4
    assert not any(watcher.on_loop), "codec work ran on the event loop thread"
