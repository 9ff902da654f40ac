"""The Confluent-framed Avro codec: round trips, framing, and a clear error for every kind of bad input."""

from __future__ import annotations

import copy
import random
import struct
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.codec import DEFAULT_MAX_EVENT_BYTES, Codec, check_size, schema_id_of
from schemas.errors import (
    DeserializationError,
    EventError,
    EventTooLargeError,
    MalformedEventError,
    SerializationError,
    UnknownSchemaError,
)
from schemas.registry import EVENT_TYPES, SchemaRegistry, SchemaVersion, fingerprint, load_registry

OCCURRED_US = 1_714_567_890_123_456  # 2024-05-01T12:51:30.123456Z


def inference_recorded() -> dict[str, Any]:
    """Every field set to a non-default value, so a field the codec dropped would show."""
    return {
        "event_id": "018f3a7c-1111-7abc-8def-0123456789ab",
        "output_id": "out_01hzz0000000000000000000aa",
        "trace_id": "trace-42",
        "parent_output_ids": ["out_parent1", "out_parent2"],
        "occurred_at": OCCURRED_US,
        "tenant": "grid-ops",
        "feature": "day-ahead-load",
        "bundle": {"bundle_id": "ab" * 32, "name": "forecaster", "version": "2024.05.1"},
        "prompt": {
            "template_id": "forecast",
            "template_version": "7",
            "template_sha256": "cd" * 32,
            "variables_json": '{"region":"Zürich"}',
            "messages": [
                {"role": "system", "content": "You forecast load.", "name": None},
                {"role": "user", "content": "Forecast ⚡ for Zürich", "name": "dispatcher"},
            ],
        },
        "retrieval": {
            "config_id": "weather-k5",
            "config_sha256": "ef" * 32,
            "query": "heat wave",
            "documents": [
                {"doc_id": "d1", "version": "3", "source": "met", "content_sha256": "01" * 32,
                 "score": 0.91, "content": "Hot."},
                {"doc_id": "d2", "version": "", "source": "", "content_sha256": "02" * 32,
                 "score": None, "content": None},
            ],
        },
        "model": {"provider": "openai", "requested": "gpt-4o", "served": "gpt-4o-2024-05-13",
                  "fingerprint": "fp_123", "endpoint": "https://api.example", "region": "eu"},
        "params": {"temperature": 0.2, "top_p": 0.9, "max_tokens": 512, "seed": 7, "stop": ["\n\n"],
                   "response_format": "json", "tool_schemas_sha256": "03" * 32, "extras_json": '{"n":1}'},
        "output": {"text": "42 MW", "structured_json": '{"mw":42}', "finish_reason": "stop"},
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "cached_tokens": 64},
        "cost_usd_micros": 1234,
        "latency_ms": 812.5,
        "status": "OK",
        "error": {"type": "RateLimited", "message": "retry"},
        "attempts": [
            {"provider": "anthropic", "model": "claude", "status": "TIMEOUT", "error": "slow", "latency_ms": 30.0},
            {"provider": "openai", "model": "gpt-4o", "status": "OK", "error": None, "latency_ms": 782.5},
        ],
        "rollout": {"arm": "canary", "alias": "canary", "weight": 0.1},
        "classification": {"retention_class": "regulated", "pii": True, "subject_ids": ["subj-1"]},
    }


def bundle_registered() -> dict[str, Any]:
    return {
        "event_id": "018f3a7c-2222-7abc-8def-0123456789ab", "occurred_at": OCCURRED_US, "tenant": "grid-ops",
        "bundle_id": "ab" * 32, "name": "forecaster", "version": "2024.05.1", "prompt_template_id": "forecast",
        "prompt_template_version": "7", "prompt_template_sha256": "cd" * 32, "model_provider": "openai",
        "model_name": "gpt-4o", "retrieval_config_id": "weather-k5", "retrieval_config_sha256": "ef" * 32,
        "params_json": '{"temperature":0.2}', "canonical_json": '{"a":1}', "registered_by": "release-bot",
    }


def alias_moved() -> dict[str, Any]:
    return {
        "event_id": "018f3a7c-3333-7abc-8def-0123456789ab", "occurred_at": OCCURRED_US, "tenant": "grid-ops",
        "feature": "day-ahead-load", "alias": "production", "bundle_id": "ab" * 32,
        "previous_bundle_id": "cd" * 32, "weight": 0.5, "reason": "eval passed", "approver": "ops-lead",
        "evaluation_ref": "eval-9",
    }


def output_consumed() -> dict[str, Any]:
    return {
        "event_id": "018f3a7c-4444-7abc-8def-0123456789ab", "occurred_at": OCCURRED_US, "tenant": "grid-ops",
        "output_id": "out_01hzz0000000000000000000aa", "consumer": "dispatch-planner",
        "consumer_ref": "plan-77", "purpose": "dispatch",
    }


def chain_checkpoint() -> dict[str, Any]:
    return {
        "event_id": "018f3a7c-5555-7abc-8def-0123456789ab", "occurred_at": OCCURRED_US,
        "log": "llm_lineage.events.v1", "log_partition": 0, "tree_size": 1024, "root_hash": "ab" * 32,
        "first_offset": 0, "last_offset": 1023, "key_id": "0123456789abcdef", "signed_body": "{}",
        "signature": "c2lnbmF0dXJl",
    }


SAMPLES = {
    "InferenceRecorded": inference_recorded,
    "BundleRegistered": bundle_registered,
    "AliasMoved": alias_moved,
    "OutputConsumed": output_consumed,
    "ChainCheckpoint": chain_checkpoint,
}


def as_decoded(record: dict[str, Any]) -> dict[str, Any]:
    """What decode returns for `record`: the timestamp-micros logical type comes back as an aware datetime."""
    out = copy.deepcopy(record)
    out["occurred_at"] = datetime.fromtimestamp(record["occurred_at"] // 1_000_000, UTC).replace(
        microsecond=record["occurred_at"] % 1_000_000
    )
    return out


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


def test_samples_cover_every_event_type() -> None:
    assert set(SAMPLES) == set(EVENT_TYPES)


# -- round trips and framing ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_every_event_type_round_trips(codec: Codec, name: str) -> None:
    record = SAMPLES[name]()
    decoded = codec.decode(codec.encode(name, record))
    assert decoded.name == name
    assert decoded.schema_id == codec.schema_id(name)
    assert decoded.record == as_decoded(record)
    assert decoded.record["occurred_at"] == datetime(2024, 5, 1, 12, 51, 30, 123456, tzinfo=UTC)


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_encoding_does_not_mutate_the_record(codec: Codec, name: str) -> None:
    record = SAMPLES[name]()
    codec.encode(name, record)
    assert record == SAMPLES[name]()


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_frame_is_magic_zero_then_big_endian_registry_schema_id(codec: Codec, name: str) -> None:
    data = codec.encode(name, SAMPLES[name]())
    expected_id = load_registry().latest(name).schema_id
    assert data[0] == 0
    assert data[1:5] == expected_id.to_bytes(4, "big")
    assert schema_id_of(data) == expected_id


def test_committed_schema_ids_are_used_on_the_wire(codec: Codec) -> None:
    ids = {name: codec.encode(name, SAMPLES[name]())[1:5] for name in EVENT_TYPES}
    assert ids == {
        "InferenceRecorded": b"\x00\x00\x00\x01",
        "BundleRegistered": b"\x00\x00\x00\x02",
        "AliasMoved": b"\x00\x00\x00\x03",
        "OutputConsumed": b"\x00\x00\x00\x04",
        "ChainCheckpoint": b"\x00\x00\x00\x05",
    }


def test_encode_fills_schema_defaults_for_absent_optional_fields(codec: Codec) -> None:
    minimal = {"event_id": "e", "occurred_at": 0, "output_id": "out_x", "consumer": "c"}
    decoded = codec.decode(codec.encode("OutputConsumed", minimal)).record
    assert decoded["tenant"] == "default"
    assert decoded["consumer_ref"] is None and decoded["purpose"] is None


def test_decodes_an_older_registered_version_into_the_current_shape() -> None:
    """A reader on a newer schema reads events written with an older registered version (schema resolution)."""
    current = load_registry().latest("OutputConsumed").schema
    v1 = copy.deepcopy(current)
    v1["fields"] = [f for f in v1["fields"] if f["name"] != "purpose"]
    v2 = copy.deepcopy(current)
    version_1 = SchemaVersion(schema_id=40, name="OutputConsumed", version=1, schema=v1, fingerprint=fingerprint(v1))
    version_2 = SchemaVersion(schema_id=41, name="OutputConsumed", version=2, schema=v2, fingerprint=fingerprint(v2))
    old_only = SchemaRegistry((version_1,))
    both = SchemaRegistry((version_1, version_2))
    record = {k: v for k, v in output_consumed().items() if k != "purpose"}
    old_bytes = Codec(old_only).encode("OutputConsumed", record)
    assert schema_id_of(old_bytes) == 40

    decoded = Codec(both).decode(old_bytes)
    assert decoded.schema_id == 40
    assert decoded.name == "OutputConsumed"
    assert decoded.record == as_decoded({**record, "purpose": None})


# -- decode errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00\x00", b"\x00\x00\x01"])
def test_decode_rejects_input_shorter_than_the_header(codec: Codec, data: bytes) -> None:
    with pytest.raises(MalformedEventError, match="shorter than the 5-byte"):
        codec.decode(data)
    assert schema_id_of(data) is None


@pytest.mark.parametrize("magic", [1, 0x7F, 0x80, 0xFF])
def test_decode_rejects_a_bad_magic_byte_naming_it(codec: Codec, magic: int) -> None:
    data = bytes([magic]) + codec.encode("OutputConsumed", output_consumed())[1:]
    with pytest.raises(MalformedEventError, match=f"bad magic byte {magic}\\b"):
        codec.decode(data)
    assert schema_id_of(data) is None


@pytest.mark.parametrize("schema_id", [0, 6, 999, 2**32 - 1])
def test_decode_rejects_an_unknown_schema_id_naming_it(codec: Codec, schema_id: int) -> None:
    body = codec.encode("OutputConsumed", output_consumed())[5:]
    data = struct.pack(">BI", 0, schema_id) + body
    with pytest.raises(UnknownSchemaError, match=f"unknown schema id {schema_id}\\b") as info:
        codec.decode(data)
    assert info.value.schema_id == schema_id
    assert isinstance(info.value, DeserializationError)


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_every_truncation_of_the_body_is_a_malformed_event(codec: Codec, name: str) -> None:
    data = codec.encode(name, SAMPLES[name]())
    for cut in range(5, len(data)):
        with pytest.raises(MalformedEventError, match="corrupt Avro body"):
            codec.decode(data[:cut])


@pytest.mark.parametrize("extra", [b"\x00", b"\x01\x02\x03"])
def test_decode_rejects_trailing_bytes(codec: Codec, extra: bytes) -> None:
    data = codec.encode("AliasMoved", alias_moved()) + extra
    with pytest.raises(MalformedEventError, match=f"{len(extra)} trailing bytes"):
        codec.decode(data)


def test_decode_rejects_invalid_utf8_in_a_string_field(codec: Codec) -> None:
    record = {**output_consumed(), "consumer": "zz"}
    data = codec.encode("OutputConsumed", record)
    # Avro strings are zigzag length + bytes: length 2 is 0x04. Keep the length, break the bytes.
    marker = b"\x04zz"
    assert data.count(marker) == 1
    patched = data.replace(marker, b"\x04\xff\xfe")
    assert len(patched) == len(data)
    with pytest.raises(MalformedEventError, match="UTF-8"):
        codec.decode(patched)


def test_decode_of_random_bodies_only_raises_deserialization_errors(codec: Codec) -> None:
    rng = random.Random(1234)
    for _ in range(400):
        schema_id = rng.choice([1, 2, 3, 4])
        data = struct.pack(">BI", 0, schema_id) + rng.randbytes(rng.randint(0, 120))
        try:
            decoded = codec.decode(data)
        except DeserializationError:
            continue
        assert decoded.schema_id == schema_id


# -- encode errors ------------------------------------------------------------------------------------------


def test_encode_names_the_field_with_the_wrong_type(codec: Codec) -> None:
    record = {**inference_recorded(), "feature": 123}
    with pytest.raises(SerializationError, match=r"InferenceRecorded\.feature") as info:
        codec.encode("InferenceRecorded", record)
    assert "123" in str(info.value)
    assert isinstance(info.value, EventError)


def test_encode_names_a_nested_field_with_the_wrong_type(codec: Codec) -> None:
    record = inference_recorded()
    record["prompt"]["messages"][1]["role"] = 5
    with pytest.raises(SerializationError, match=r"Message\.role"):
        codec.encode("InferenceRecorded", record)


def test_encode_rejects_a_bad_enum_symbol_naming_the_field(codec: Codec) -> None:
    with pytest.raises(SerializationError, match=r"InferenceRecorded\.status"):
        codec.encode("InferenceRecorded", {**inference_recorded(), "status": "DONE"})


def test_encode_rejects_a_missing_required_field(codec: Codec) -> None:
    record = output_consumed()
    del record["consumer"]
    with pytest.raises(SerializationError, match="consumer"):
        codec.encode("OutputConsumed", record)


def test_encode_rejects_an_unknown_event_type(codec: Codec) -> None:
    with pytest.raises(SerializationError, match="unknown event type 'ModelDriftDetected'"):
        codec.encode("ModelDriftDetected", {})


def test_explain_is_none_for_a_valid_record_and_names_problems_otherwise(codec: Codec) -> None:
    assert codec.explain("AliasMoved", alias_moved()) is None
    problem = codec.explain("AliasMoved", {**alias_moved(), "weight": "half"})
    assert problem is not None and "weight" in problem


# -- size limit ----------------------------------------------------------------------------------------------


def test_check_size_raises_event_too_large_over_the_limit() -> None:
    with pytest.raises(EventTooLargeError, match="11 bytes, over the limit of 10 bytes") as info:
        check_size(b"x" * 11, 10)
    assert (info.value.size, info.value.limit) == (11, 10)


def test_check_size_accepts_exactly_the_limit() -> None:
    check_size(b"x" * 10, 10)
    check_size(b"", 0)


def test_an_encoded_event_with_a_huge_text_trips_the_default_limit(codec: Codec) -> None:
    record = inference_recorded()
    record["output"]["text"] = "x" * DEFAULT_MAX_EVENT_BYTES
    data = codec.encode("InferenceRecorded", record)
    with pytest.raises(EventTooLargeError):
        check_size(data, DEFAULT_MAX_EVENT_BYTES)
    check_size(codec.encode("InferenceRecorded", inference_recorded()), DEFAULT_MAX_EVENT_BYTES)
