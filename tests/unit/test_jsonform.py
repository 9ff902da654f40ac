"""Events as JSON: checked against the Avro schema, defaults filled, every problem named by its path."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.codec import Codec
from schemas.errors import EventValidationError
from schemas.jsonform import MAX_PROBLEMS, from_json
from schemas.registry import EVENT_TYPES, load_registry

WHEN_US = 1_714_567_890_123_456  # 2024-05-01T12:51:30.123456Z


def schema(name: str) -> dict[str, Any]:
    return load_registry().latest(name).schema


def inference_json() -> dict[str, Any]:
    """Only the required fields, in their natural JSON shape."""
    return {
        "event_id": "018f3a7c-1111-7abc-8def-0123456789ab",
        "output_id": "out_01hzz0000000000000000000aa",
        "occurred_at": "2024-05-01T12:51:30.123456Z",
        "feature": "day-ahead-load",
        "prompt": {
            "template_id": "forecast",
            "messages": [{"role": "system", "content": "You forecast."}, {"role": "user", "content": "Zürich?"}],
        },
        "model": {"provider": "openai", "requested": "gpt-4o"},
        "params": {},
        "output": {"text": "42 MW"},
        "usage": {},
        "status": "OK",
        "classification": {},
    }


MINIMAL = {
    "InferenceRecorded": inference_json,
    "BundleRegistered": lambda: {
        "event_id": "e2", "occurred_at": WHEN_US, "bundle_id": "ab" * 32, "name": "forecaster", "version": "1",
        "prompt_template_id": "forecast", "prompt_template_sha256": "cd" * 32, "model_provider": "openai",
        "model_name": "gpt-4o", "canonical_json": "{}",
    },
    "AliasMoved": lambda: {
        "event_id": "e3", "occurred_at": WHEN_US, "feature": "day-ahead-load", "alias": "production",
        "bundle_id": "ab" * 32,
    },
    "OutputConsumed": lambda: {
        "event_id": "e4", "occurred_at": WHEN_US, "output_id": "out_x", "consumer": "dispatch-planner",
    },
    "ChainCheckpoint": lambda: {
        "event_id": "e5", "occurred_at": WHEN_US, "log_partition": 0, "tree_size": 3, "root_hash": "ef" * 32,
        "first_offset": 0, "last_offset": 2, "key_id": "0123456789abcdef",
        "signed_body": '{"log_partition":0,"tree_size":3}', "signature": "c2lnbmF0dXJl",
    },
}


def problems_of(name: str, value: Any) -> str:
    with pytest.raises(EventValidationError) as info:
        from_json(schema(name), value)
    return str(info.value)


def with_change(path: list[Any], new: Any) -> dict[str, Any]:
    """inference_json() with the value at `path` replaced (or removed when `new` is REMOVE)."""
    value = inference_json()
    target: Any = value
    for step in path[:-1]:
        target = target[step]
    if new is REMOVE:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return value


REMOVE = object()


# -- accepted input ------------------------------------------------------------------------------------------


def test_fills_defaults_at_every_level() -> None:
    record = from_json(schema("InferenceRecorded"), inference_json())
    assert record["tenant"] == "default"
    assert record["trace_id"] is None
    assert record["parent_output_ids"] == []
    assert record["bundle"] is None and record["retrieval"] is None and record["rollout"] is None
    assert record["prompt"]["template_version"] == "" and record["prompt"]["variables_json"] == "{}"
    assert record["prompt"]["messages"][1] == {"role": "user", "content": "Zürich?", "name": None}
    assert record["model"]["served"] == "" and record["model"]["fingerprint"] is None
    assert record["params"] == {
        "temperature": None, "top_p": None, "max_tokens": None, "seed": None, "stop": [],
        "response_format": None, "tool_schemas_sha256": None, "extras_json": "{}",
    }
    assert record["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
    assert record["cost_usd_micros"] == 0 and record["latency_ms"] == 0.0
    assert record["classification"] == {"retention_class": "standard", "pii": False, "subject_ids": []}


def test_filled_defaults_are_fresh_values_not_the_schemas_own() -> None:
    # A caller that enriches one record (appends a parent) must not change the next record's defaults.
    # A private copy of the schema keeps a failure here from leaking into the cached registry.
    own = copy.deepcopy(schema("InferenceRecorded"))
    first = from_json(own, inference_json())
    first["parent_output_ids"].append("out_parent")
    first["params"]["stop"].append("\n")
    second = from_json(own, inference_json())
    assert second["parent_output_ids"] == []
    assert second["params"]["stop"] == []


@pytest.mark.parametrize(
    ("text", "expected_us"),
    [
        ("2024-05-01T12:51:30.123456Z", WHEN_US),
        ("2024-05-01T12:51:30.123456+00:00", WHEN_US),
        ("2024-05-01T14:51:30.123456+02:00", WHEN_US),
        ("2024-05-01T07:51:30.123456-05:00", WHEN_US),
        ("2024-05-01T12:51:30Z", WHEN_US - 123_456),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_accepts_iso_timestamps_with_a_zone(text: str, expected_us: int) -> None:
    record = from_json(schema("InferenceRecorded"), with_change(["occurred_at"], text))
    assert record["occurred_at"] == expected_us


@pytest.mark.parametrize("micros", [WHEN_US, 0, -1_000_000])
def test_accepts_integer_microsecond_timestamps(micros: int) -> None:
    record = from_json(schema("InferenceRecorded"), with_change(["occurred_at"], micros))
    assert record["occurred_at"] == micros


def test_accepts_integers_for_doubles_as_floats() -> None:
    record = from_json(schema("InferenceRecorded"), with_change(["latency_ms"], 812))
    assert record["latency_ms"] == 812.0 and isinstance(record["latency_ms"], float)


def test_accepts_nested_optional_records_and_named_types() -> None:
    value = inference_json()
    value["bundle"] = {"bundle_id": "ab" * 32, "name": "forecaster", "version": "7"}
    value["retrieval"] = {"config_id": "k5", "documents": [{"doc_id": "d1", "content_sha256": "01" * 32,
                                                           "score": 1}]}
    value["attempts"] = [{"provider": "openai", "model": "gpt-4o", "status": "TIMEOUT"}]
    value["rollout"] = {"alias": "canary"}
    record = from_json(schema("InferenceRecorded"), value)
    assert record["bundle"] == value["bundle"]
    assert record["retrieval"]["documents"][0] == {
        "doc_id": "d1", "version": "", "source": "", "content_sha256": "01" * 32, "score": 1.0, "content": None,
    }
    assert record["attempts"][0]["status"] == "TIMEOUT" and record["attempts"][0]["latency_ms"] == 0.0
    assert record["rollout"] == {"arm": "stable", "alias": "canary", "weight": None}


def test_accepts_null_for_nullable_fields() -> None:
    value = inference_json()
    value.update(trace_id=None, bundle=None, error=None)
    value["model"]["region"] = None
    record = from_json(schema("InferenceRecorded"), value)
    assert record["trace_id"] is None and record["model"]["region"] is None


def test_accepts_the_extreme_long_values() -> None:
    for edge in (2**63 - 1, -(2**63)):
        assert from_json(schema("InferenceRecorded"), with_change(["cost_usd_micros"], edge))["cost_usd_micros"] == edge


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_output_encodes_with_the_codec_and_decodes_back(name: str) -> None:
    codec = Codec()
    record = from_json(schema(name), MINIMAL[name]())
    decoded = codec.decode(codec.encode(name, record))
    assert decoded.name == name
    expected = copy.deepcopy(record)
    expected["occurred_at"] = datetime(2024, 5, 1, 12, 51, 30, 123456, tzinfo=UTC)
    assert decoded.record == expected


def test_does_not_modify_the_input() -> None:
    value = inference_json()
    from_json(schema("InferenceRecorded"), value)
    assert value == inference_json()


# -- rejected input, each problem named by its path ---------------------------------------------------------


@pytest.mark.parametrize("text", ["2024-05-01T12:51:30", "2024-05-01T12:51:30.123456", "2024-05-01"])
def test_rejects_naive_timestamps(text: str) -> None:
    message = problems_of("InferenceRecorded", with_change(["occurred_at"], text))
    assert "InferenceRecorded.occurred_at" in message
    assert "no time zone" in message


@pytest.mark.parametrize("bad", ["yesterday", "", "2024-13-01T00:00:00Z", 1.5, True, None, [2024]])
def test_rejects_values_that_are_not_timestamps(bad: Any) -> None:
    assert "InferenceRecorded.occurred_at" in problems_of("InferenceRecorded", with_change(["occurred_at"], bad))


def test_rejects_unknown_fields_at_the_top_and_nested() -> None:
    value = inference_json()
    value["colour"] = "blue"
    value["prompt"]["messages"][0]["tone"] = "dry"
    message = problems_of("InferenceRecorded", value)
    assert "InferenceRecorded.colour: unknown field" in message
    assert "InferenceRecorded.prompt.messages[0].tone: unknown field" in message


def test_rejects_missing_required_fields() -> None:
    assert "InferenceRecorded.feature: missing required field" in problems_of(
        "InferenceRecorded", with_change(["feature"], REMOVE)
    )
    assert "InferenceRecorded.model.requested: missing required field" in problems_of(
        "InferenceRecorded", with_change(["model", "requested"], REMOVE)
    )


def test_names_the_path_into_arrays_of_records() -> None:
    message = problems_of("InferenceRecorded", with_change(["prompt", "messages", 1, "role"], REMOVE))
    assert "InferenceRecorded.prompt.messages[1].role: missing required field" in message
    message = problems_of("InferenceRecorded", with_change(["prompt", "messages", 1, "role"], 7))
    assert "InferenceRecorded.prompt.messages[1].role: expected a string, got integer" in message


@pytest.mark.parametrize(
    ("path", "bad", "expected"),
    [
        (["feature"], 5, "InferenceRecorded.feature: expected a string, got integer"),
        (["latency_ms"], "fast", "InferenceRecorded.latency_ms: expected a number, got string"),
        (["parent_output_ids"], "out_x", "InferenceRecorded.parent_output_ids: expected an array, got string"),
        (["parent_output_ids"], ["out_x", 3], "InferenceRecorded.parent_output_ids[1]: expected a string"),
        (["prompt"], [], "InferenceRecorded.prompt: expected an object, got array"),
        (["classification", "pii"], "yes", "InferenceRecorded.classification.pii: expected true or false"),
        (["classification", "pii"], 1, "InferenceRecorded.classification.pii: expected true or false"),
        (["usage", "prompt_tokens"], 1.5, "InferenceRecorded.usage.prompt_tokens: expected an integer, got number"),
        (["params", "temperature"], "hot", "InferenceRecorded.params.temperature: expected a number, got string"),
        (["trace_id"], 12, "InferenceRecorded.trace_id: expected a string, got integer"),
    ],
)
def test_rejects_wrong_types_naming_path_and_types(path: list[Any], bad: Any, expected: str) -> None:
    assert expected in problems_of("InferenceRecorded", with_change(path, bad))


@pytest.mark.parametrize(
    "path",
    [["cost_usd_micros"], ["usage", "prompt_tokens"], ["params", "max_tokens"], ["params", "seed"]],
)
@pytest.mark.parametrize("flag", [True, False])
def test_booleans_are_not_accepted_as_integers(path: list[str], flag: bool) -> None:
    message = problems_of("InferenceRecorded", with_change(path, flag))
    assert f"InferenceRecorded.{'.'.join(path)}: expected an integer, got boolean" in message


@pytest.mark.parametrize("path", [["latency_ms"], ["params", "temperature"]])
def test_booleans_are_not_accepted_as_numbers(path: list[str]) -> None:
    message = problems_of("InferenceRecorded", with_change(path, True))
    assert f"InferenceRecorded.{'.'.join(path)}: expected a number, got boolean" in message


@pytest.mark.parametrize("bad", [2**63, -(2**63) - 1, 10**30])
def test_rejects_integers_out_of_range_for_a_long(bad: int) -> None:
    message = problems_of("InferenceRecorded", with_change(["cost_usd_micros"], bad))
    assert f"InferenceRecorded.cost_usd_micros: {bad} is out of range for a long" in message


@pytest.mark.parametrize("bad", [2**63, -(2**63) - 1])
def test_rejects_integer_timestamps_out_of_range_for_a_long(bad: int) -> None:
    # timestamp-micros is an Avro long; a value that cannot be encoded is not "Avro-ready".
    assert "InferenceRecorded.occurred_at" in problems_of("InferenceRecorded", with_change(["occurred_at"], bad))


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+05:00", "0001-01-01T04:59:59.999999+05:00",
                                  "9999-12-31T23:30:00-01:00"])
def test_rejects_iso_timestamps_outside_years_1_to_9999_in_utc(text: str) -> None:
    """Midnight of year 1 east of UTC is still year 0 in UTC (and late on 9999-12-31 west of UTC is year
    10000): no datetime holds it, so the index could never show it. Refused here like an out-of-range
    integer, not dead-lettered later."""
    message = problems_of("InferenceRecorded", with_change(["occurred_at"], text))
    assert "InferenceRecorded.occurred_at" in message and "out of range for a timestamp" in message


@pytest.mark.parametrize(("text", "expected_us"), [
    ("0001-01-01T05:00:00+05:00", -62_135_596_800_000_000),
    ("9999-12-31T23:59:59.999999Z", 253_402_300_799_999_999),
], ids=["first-utc-microsecond", "last-utc-microsecond"])
def test_accepts_iso_timestamps_at_the_ends_of_the_range(text: str, expected_us: int) -> None:
    record = from_json(schema("InferenceRecorded"), with_change(["occurred_at"], text))
    assert record["occurred_at"] == expected_us


def test_rejects_a_number_too_large_for_a_double_as_a_validation_error() -> None:
    assert "InferenceRecorded.latency_ms" in problems_of("InferenceRecorded", with_change(["latency_ms"], 10**400))


def test_rejects_bad_enum_symbols_listing_the_allowed_ones() -> None:
    message = problems_of("InferenceRecorded", with_change(["status"], "DONE"))
    assert "InferenceRecorded.status: 'DONE' is not one of OK, ERROR, REFUSED, TIMEOUT" in message
    assert "InferenceRecorded.status" in problems_of("InferenceRecorded", with_change(["status"], "ok"))


def test_rejects_bad_enum_symbols_through_a_named_type_reference() -> None:
    value = inference_json()
    value["attempts"] = [{"provider": "a", "model": "m", "status": "OK"},
                         {"provider": "b", "model": "m", "status": "LOST"}]
    message = problems_of("InferenceRecorded", value)
    assert "InferenceRecorded.attempts[1].status: 'LOST' is not one of" in message


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (["feature"], "InferenceRecorded.feature: expected a string, got null"),
        (["prompt"], "InferenceRecorded.prompt: expected an object, got null"),
        (["tenant"], "InferenceRecorded.tenant: expected a string, got null"),
        (["prompt", "messages", 0, "content"], "InferenceRecorded.prompt.messages[0].content: expected a string"),
    ],
)
def test_rejects_null_where_not_nullable(path: list[Any], expected: str) -> None:
    assert expected in problems_of("InferenceRecorded", with_change(path, None))


def test_rejects_a_wrong_field_inside_a_nullable_record_naming_it() -> None:
    value = inference_json()
    value["bundle"] = {"bundle_id": "ab" * 32, "name": 3, "version": "7"}
    assert "InferenceRecorded.bundle.name: expected a string, got integer" in problems_of("InferenceRecorded", value)


def test_rejects_a_non_object_event() -> None:
    for bad in ([], "event", None, 3):
        assert "InferenceRecorded: expected an object" in problems_of("InferenceRecorded", bad)


def test_reports_every_problem_at_once() -> None:
    value = inference_json()
    del value["feature"]
    value["status"] = "DONE"
    value["usage"]["prompt_tokens"] = "many"
    message = problems_of("InferenceRecorded", value)
    assert "InferenceRecorded.feature" in message
    assert "InferenceRecorded.status" in message
    assert "InferenceRecorded.usage.prompt_tokens" in message


def test_caps_the_number_of_reported_problems() -> None:
    value = inference_json()
    for i in range(MAX_PROBLEMS + 15):
        value[f"extra_{i:02d}"] = i
    message = problems_of("InferenceRecorded", value)
    assert message.count("unknown field") == MAX_PROBLEMS
    assert "and more" in message


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_every_event_type_rejects_unknown_and_missing_fields(name: str) -> None:
    value = MINIMAL[name]()
    del value["event_id"]
    value["bogus"] = 1
    message = problems_of(name, value)
    assert f"{name}.event_id: missing required field" in message
    assert f"{name}.bogus: unknown field" in message
