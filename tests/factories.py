"""Builders of realistic events for tests: Avro-ready dicts with sensible defaults, and their framed bytes.

Every builder takes keyword overrides. For a nested record (prompt, model, params, retrieval, output, ...) a
dict override is merged into the default record; any other value (None included) replaces the field.
IDs follow the product's rules: the event ID is a UUIDv7 of `occurred_at` and the output ID derives from the
same bytes, so "newest first" by output ID is also newest first by time. Without an explicit `occurred_at`,
each event gets the next millisecond of a process-wide clock, so events built in order stay in order.
`build_world()` assembles a small realistic history (a bundle, a consumed chain of calls, varied outputs).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.codec import Codec, DecodedEvent
from schemas.hashing import canonical_json, sha256_hex
from schemas.ids import event_id_text, output_id_from, uuid7_at

BASE_TIME = datetime(2026, 11, 3, 14, 5, tzinfo=UTC)
TEMPLATE_TEXT = "Forecast the day-ahead load for {region} over the next {horizon_h} hours."
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ticks = itertools.count()
_NESTED = ("prompt", "retrieval", "model", "params", "output", "usage", "rollout", "classification",
           "bundle", "error")

Event = tuple[str, dict[str, Any]]  # (event type, Avro-ready record)


@functools.cache
def codec() -> Codec:
    return Codec()


def encode(name: str, record: dict[str, Any]) -> bytes:
    """Confluent-framed Avro bytes, as the Recorder writes them to the log."""
    return codec().encode(name, record)


def decode(data: bytes) -> DecodedEvent:
    return codec().decode(data)


def next_time() -> datetime:
    return BASE_TIME + timedelta(milliseconds=next(_ticks))


def _when(value: datetime | int | None) -> datetime:
    if value is None:
        return next_time()
    if isinstance(value, int):
        return _EPOCH + timedelta(microseconds=value)
    return value


def micros(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(microseconds=1)


def ids_at(when: datetime) -> tuple[str, str]:
    """(event_id, output_id) for an event that occurred at `when`, as the Recorder derives them."""
    raw = uuid7_at(micros(when) * 1000)
    return event_id_text(raw), output_id_from(raw)


def document(doc_id: str = "grid-ops/north-load-2026-10", **overrides: Any) -> dict[str, Any]:
    content = overrides.pop("content", f"Hourly load history for {doc_id}: peak 4.2 GW at 18:00.")
    return {
        "doc_id": doc_id, "version": "v7", "source": "sharepoint://grid-ops",
        "content_sha256": sha256_hex(content or ""), "score": 0.87, "content": content, **overrides,
    }


def message(role: str, content: str, name: str | None = None) -> dict[str, Any]:
    return {"role": role, "content": content, "name": name}


def _defaults(when: datetime) -> dict[str, Any]:
    event_id, output_id = ids_at(when)
    variables = {"region": "north", "horizon_h": 24}
    return {
        "event_id": event_id,
        "output_id": output_id,
        "trace_id": None,
        "parent_output_ids": [],
        "occurred_at": micros(when),
        "tenant": "gridco",
        "feature": "day-ahead-load",
        "bundle": None,
        "prompt": {
            "template_id": "load-forecast", "template_version": "3",
            "template_sha256": sha256_hex(TEMPLATE_TEXT), "variables_json": canonical_json(variables),
            "messages": [message("system", "You are a grid forecasting assistant. Answer in JSON."),
                         message("user", TEMPLATE_TEXT.format(**variables))],
        },
        "retrieval": {
            "config_id": "grid-docs", "config_sha256": sha256_hex('{"index":"grid-docs","top_k":2}'),
            "query": "north region load history", "documents": [document(), document("weather/north-2026-11-03")],
        },
        "model": {
            "provider": "openai", "requested": "gpt-4o", "served": "gpt-4o-2024-08-06",
            "fingerprint": "fp_5f2c0a", "endpoint": "https://api.openai.com/v1/chat/completions", "region": "eu",
        },
        "params": {
            "temperature": 0.2, "top_p": 1.0, "max_tokens": 800, "seed": 7, "stop": ["</forecast>"],
            "response_format": "json_object", "tool_schemas_sha256": None,
            "extras_json": canonical_json({"logprobs": False}),
        },
        "output": {
            "text": '{"region":"north","peak_mw":4210}',
            "structured_json": canonical_json({"region": "north", "peak_mw": 4210, "hours": [3900, 4210]}),
            "finish_reason": "stop",
        },
        "usage": {"prompt_tokens": 1250, "completion_tokens": 180, "cached_tokens": 0},
        "cost_usd_micros": 4210,
        "latency_ms": 812.5,
        "status": "OK",
        "error": None,
        "attempts": [],
        "rollout": {"arm": "stable", "alias": "production", "weight": 1.0},
        "classification": {"retention_class": "standard", "pii": False, "subject_ids": []},
    }


def _merge(record: dict[str, Any], overrides: dict[str, Any], nested: Iterable[str]) -> dict[str, Any]:
    for key, value in overrides.items():
        if key not in record:
            raise KeyError(f"no field {key!r} in this event type")
        if key in nested and isinstance(value, dict) and isinstance(record[key], dict):
            record[key] = {**record[key], **value}
        else:
            record[key] = value
    return record


def inference_event(**overrides: Any) -> dict[str, Any]:
    """An InferenceRecorded record. `occurred_at` (datetime) also fixes event_id and output_id unless given."""
    when = _when(overrides.pop("occurred_at", None))
    return _merge(_defaults(when), overrides, _NESTED)


def bundle_event(**overrides: Any) -> dict[str, Any]:
    """A BundleRegistered record; bundle_id is the sha256 of its canonical content unless given."""
    when = _when(overrides.pop("occurred_at", None))
    content = {
        "prompt": {"template_id": "load-forecast", "template_version": "3",
                   "template_sha256": sha256_hex(TEMPLATE_TEXT)},
        "model": {"provider": "openai", "model": overrides.get("model_name", "gpt-4o")},
        "retrieval": {"config_id": "grid-docs", "config_sha256": sha256_hex('{"index":"grid-docs","top_k":2}')},
        "params": {"temperature": 0.2, "seed": 7},
        "release": overrides.get("version", "2026.11.1"),
    }
    text = canonical_json(content)
    record = {
        "event_id": ids_at(when)[0], "occurred_at": micros(when), "tenant": "gridco",
        "bundle_id": sha256_hex(text), "name": "load-forecaster", "version": "2026.11.1",
        "prompt_template_id": "load-forecast", "prompt_template_version": "3",
        "prompt_template_sha256": sha256_hex(TEMPLATE_TEXT), "model_provider": "openai",
        "model_name": "gpt-4o", "retrieval_config_id": "grid-docs",
        "retrieval_config_sha256": content["retrieval"]["config_sha256"],
        "params_json": canonical_json(content["params"]), "canonical_json": text,
        "registered_by": "release-bot",
    }
    return _merge(record, overrides, ())


def bundle_ref(bundle: dict[str, Any]) -> dict[str, Any]:
    """The `bundle` field of an InferenceRecorded made by a registered bundle."""
    return {"bundle_id": bundle["bundle_id"], "name": bundle["name"], "version": bundle["version"]}


def consumed_event(output_id: str, **overrides: Any) -> dict[str, Any]:
    """An OutputConsumed record: a downstream system used `output_id`."""
    when = _when(overrides.pop("occurred_at", None))
    record = {
        "event_id": ids_at(when)[0], "occurred_at": micros(when), "tenant": "gridco", "output_id": output_id,
        "consumer": "dispatch-planner", "consumer_ref": "plan-2026-11-04-north", "purpose": "day-ahead dispatch",
    }
    return _merge(record, overrides, ())


def alias_event(bundle_id: str, **overrides: Any) -> dict[str, Any]:
    """An AliasMoved record pointing a feature's alias at `bundle_id`."""
    when = _when(overrides.pop("occurred_at", None))
    record = {
        "event_id": ids_at(when)[0], "occurred_at": micros(when), "tenant": "gridco",
        "feature": "day-ahead-load", "alias": "production", "bundle_id": bundle_id, "previous_bundle_id": None,
        "weight": 1.0, "reason": "canary passed: MAPE 3.1% vs 3.4%", "approver": "ops-lead",
        "evaluation_ref": "eval-2026-11-02",
    }
    return _merge(record, overrides, ())


def unknown_schema_bytes(schema_id: int = 9999) -> bytes:
    """Correctly framed bytes whose schema ID is not in the registry."""
    return bytes([0]) + schema_id.to_bytes(4, "big") + b"\x02\x04ok"


GARBAGE = b"this is not an avro event"


def log_values(events: Sequence[Event]) -> list[tuple[bytes | None, bytes]]:
    """(key, value) pairs ready for EventLog.append, keyed by lineage root like the Recorder."""
    pairs: list[tuple[bytes | None, bytes]] = []
    for name, record in events:
        key = record.get("trace_id") or record.get("output_id") or record.get("bundle_id")
        pairs.append((None if key is None else str(key).encode(), encode(name, record)))
    return pairs


def chain(length: int = 3, **overrides: Any) -> list[dict[str, Any]]:
    """InferenceRecorded records where each one consumed the previous one (parent_output_ids)."""
    records: list[dict[str, Any]] = []
    for _ in range(length):
        parents = [records[-1]["output_id"]] if records else []
        records.append(inference_event(parent_output_ids=parents, **overrides))
    return records


WORLD_START = datetime(2026, 11, 3, 6, 0, tzinfo=UTC)
_MIN = timedelta(minutes=1)


@dataclass
class World:
    """A small realistic history: a registered bundle; a chain A -> B -> C (B fed by A, C fed by B, all on
    trace 'trace-north') with C consumed by 'dispatch-planner'; nine other outputs varying feature, status,
    model and bundle (registered, none, unregistered), every event at a known minute after WORLD_START."""

    bundle: dict[str, Any]
    a: dict[str, Any]
    b: dict[str, Any]
    c: dict[str, Any]
    others: list[dict[str, Any]]
    events: list[Event]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return [self.a, self.b, self.c, *self.others]


def build_world(start: datetime = WORLD_START) -> World:
    bundle = bundle_event(occurred_at=start)
    ref = bundle_ref(bundle)
    a = inference_event(
        occurred_at=start + _MIN, feature="weather-summary", trace_id="trace-north",
        prompt={"template_id": "weather-summary", "template_version": "1", "template_sha256": sha256_hex("w1")},
        retrieval={"documents": [document("weather/north-2026-11-03")]},
        model={"requested": "gpt-4o-mini", "served": "gpt-4o-mini-2024-07-18", "fingerprint": "fp_mini"},
    )
    b = inference_event(
        occurred_at=start + 2 * _MIN, trace_id="trace-north", bundle=ref, parent_output_ids=[a["output_id"]],
        retrieval={"documents": [document("grid-ops/north-load-2026-10"), document("grid-ops/outages")]},
        attempts=[
            {"provider": "azure", "model": "gpt-4o", "status": "TIMEOUT", "error": "read timeout after 30s",
             "latency_ms": 30000.0},
            {"provider": "openai", "model": "gpt-4o", "status": "OK", "error": None, "latency_ms": 812.5},
        ],
    )
    c = inference_event(
        occurred_at=start + 3 * _MIN, feature="dispatch-note", trace_id="trace-north", bundle=ref,
        parent_output_ids=[b["output_id"]], retrieval=None,
        prompt={"template_id": "dispatch-note", "template_version": "2", "template_sha256": sha256_hex("d2")},
    )
    unregistered = {"bundle_id": sha256_hex("never registered"), "name": "load-forecaster", "version": "0.9"}
    features = ["day-ahead-load", "intraday-load", "outage-summary"]
    statuses = ["OK", "OK", "ERROR", "REFUSED", "TIMEOUT"]
    served = ["gpt-4o-2024-08-06", "gpt-4o-2024-11-20", "claude-sonnet-4-5"]
    others = [
        inference_event(
            occurred_at=start + (10 + 7 * i) * _MIN, feature=features[i % 3], status=statuses[i % 5],
            model={"provider": "anthropic" if i % 3 == 2 else "openai",
                   "requested": "claude-sonnet" if i % 3 == 2 else "gpt-4o", "served": served[i % 3]},
            bundle=[ref, None, unregistered][i % 3],
            error={"type": "ProviderError", "message": f"failure {i}"} if statuses[i % 5] != "OK" else None,
        )
        for i in range(9)
    ]
    events: list[Event] = [
        ("BundleRegistered", bundle), ("InferenceRecorded", a), ("InferenceRecorded", b),
        ("InferenceRecorded", c),
        ("OutputConsumed", consumed_event(c["output_id"], occurred_at=start + 4 * _MIN)),
        ("AliasMoved", alias_event(bundle["bundle_id"], occurred_at=start + 5 * _MIN)),
        *[("InferenceRecorded", o) for o in others],
    ]
    return World(bundle, a, b, c, others, events)
