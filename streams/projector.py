"""Pure projection: decoded events in, index rows out. No I/O, so the embedded runner and the Kafka worker
apply exactly the same code, and replaying the log rebuilds the same index."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from schemas.codec import DecodedEvent
from schemas.errors import EventValidationError
from schemas.hashing import sha256_hex
from schemas.times import to_micros


@dataclass(slots=True)
class SourceEvent:
    """One log record with its decoded event."""

    partition: int
    offset: int
    raw: bytes
    event: DecodedEvent


@dataclass(slots=True)
class RowBatch:
    """Rows for one transaction. Dimension rows are keyed so a batch carries each once."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    bundles: dict[str, dict[str, Any]] = field(default_factory=dict)
    prompts: dict[str, dict[str, Any]] = field(default_factory=dict)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    consumers: dict[str, dict[str, Any]] = field(default_factory=dict)
    consumptions: list[dict[str, Any]] = field(default_factory=list)
    edges: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    aliases: list[dict[str, Any]] = field(default_factory=list)


def micros(value: datetime | int) -> int:
    return value if isinstance(value, int) else to_micros(value)


def prompt_key(template_id: str, template_version: str, template_sha256: str) -> str:
    return f"{template_id}@{template_version}#{template_sha256[:12]}"


def document_key(doc_id: str, version: str, content_sha256: str) -> str:
    return f"{doc_id}@{version}#{content_sha256[:12]}"


def model_key(provider: str, served: str, fingerprint: str | None) -> str:
    return f"{provider}/{served}" + (f"@{fingerprint}" if fingerprint else "")


def check_event(event: DecodedEvent) -> None:
    """Raise EventValidationError for an event the index cannot key (empty IDs), a bundle whose ID is not
    the hash of its content, or JSON text fields the reader could not show. Whether values fit their
    columns is checked on the projected rows (streams/checks.py)."""
    record = event.record
    if event.name in ("InferenceRecorded", "OutputConsumed") and not record["output_id"]:
        raise EventValidationError(f"{event.name}.output_id: must not be empty")
    if not record["event_id"]:
        raise EventValidationError(f"{event.name}.event_id: must not be empty")
    if event.name == "InferenceRecorded":
        for i, parent in enumerate(record["parent_output_ids"]):
            if not parent:
                raise EventValidationError(f"InferenceRecorded.parent_output_ids[{i}]: must not be empty")
        _check_json("prompt.variables_json", record["prompt"]["variables_json"], want_object=True)
        _check_json("params.extras_json", record["params"]["extras_json"], want_object=True)
        structured = record["output"]["structured_json"]
        if structured is not None:
            _check_json("output.structured_json", structured, want_object=False)
    elif event.name == "BundleRegistered":
        digest = sha256_hex(record["canonical_json"])
        if record["bundle_id"] != digest:
            raise EventValidationError(
                f"BundleRegistered.bundle_id {record['bundle_id'][:80]!r} does not match the sha256 of its "
                f"canonical_json ({digest}): a bundle ID is the hash of the bundle's content")


# Deep enough for any real prompt variables or structured output; shallow enough that a whole output record
# still renders as JSON (orjson stops at 255 levels, and these values sit three levels down).
MAX_JSON_DEPTH = 128


def json_text(text: str) -> Any:
    """Parse strict JSON (RFC 8259: no NaN, no lone surrogates) nested at most MAX_JSON_DEPTH levels.
    Raises ValueError saying what is wrong."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
        raise ValueError(f"not valid JSON ({exc})") from None
    # Only text with that many brackets can nest that deep: a C-speed count spares most values the walk.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


_JSON_KIND = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
              float: "a number", type(None): "null"}


def _check_json(path: str, text: str, *, want_object: bool) -> None:
    try:
        value = json_text(text)
    except ValueError as exc:
        raise EventValidationError(f"InferenceRecorded.{path}: {exc}") from None
    if want_object and not isinstance(value, dict):
        raise EventValidationError(
            f"InferenceRecorded.{path}: expected a JSON object, got {_JSON_KIND.get(type(value), 'a value')}")


def project(events: list[SourceEvent]) -> RowBatch:
    rows = RowBatch()
    for item in events:
        name = item.event.name
        if name == "InferenceRecorded":
            _inference(rows, item)
        elif name == "OutputConsumed":
            _consumed(rows, item.event.record)
        elif name == "BundleRegistered":
            _bundle(rows, item.event.record)
        elif name == "AliasMoved":
            r = item.event.record
            rows.aliases.append({**r, "occurred_at": micros(r["occurred_at"])})
    return rows


def _inference(rows: RowBatch, item: SourceEvent) -> None:
    r = item.event.record
    at = micros(r["occurred_at"])
    out = "output:" + r["output_id"]
    p = r["prompt"]
    pkey = prompt_key(p["template_id"], p["template_version"], p["template_sha256"])
    if pkey not in rows.prompts:
        rows.prompts[pkey] = {"prompt_key": pkey, "template_id": p["template_id"],
                              "template_version": p["template_version"],
                              "template_sha256": p["template_sha256"], "first_seen": at}
    m = r["model"]
    mkey = model_key(m["provider"], m["served"], m["fingerprint"])
    if mkey not in rows.models:
        rows.models[mkey] = {"model_key": mkey, "provider": m["provider"], "served": m["served"],
                             "fingerprint": m["fingerprint"], "first_seen": at}
    retrieval = r["retrieval"]
    if retrieval is not None:
        for d in retrieval["documents"]:
            dkey = document_key(d["doc_id"], d["version"], d["content_sha256"])
            if dkey not in rows.documents:
                rows.documents[dkey] = {"document_key": dkey, "doc_id": d["doc_id"], "version": d["version"],
                                        "source": d["source"], "content_sha256": d["content_sha256"],
                                        "first_seen": at}
            src = "document:" + dkey
            rows.edges[(src, out)] = {"src": src, "dst": out, "kind": "retrieved"}
    for parent in r["parent_output_ids"]:
        src = "output:" + parent
        rows.edges[(src, out)] = {"src": src, "dst": out, "kind": "fed"}
    bundle, usage, rollout = r["bundle"], r["usage"], r["rollout"]
    rows.outputs.append({
        "output_id": r["output_id"],
        "event_id": r["event_id"],
        "occurred_at": at,
        "tenant": r["tenant"],
        "feature": r["feature"],
        "trace_id": r["trace_id"],
        "bundle_id": None if bundle is None else bundle["bundle_id"],
        "prompt_key": pkey,
        "model_key": mkey,
        "model_served": m["served"],
        "model_requested": m["requested"],
        "status": r["status"],
        "cost_usd_micros": r["cost_usd_micros"],
        "latency_ms": r["latency_ms"],
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "rollout_arm": None if rollout is None else rollout["arm"],
        "retention_class": r["classification"]["retention_class"],
        "pii": r["classification"]["pii"],
        "log_partition": item.partition,
        "log_offset": item.offset,
        "body": item.raw,
    })


def _consumed(rows: RowBatch, r: dict[str, Any]) -> None:
    at = micros(r["occurred_at"])
    consumer = r["consumer"]
    if consumer not in rows.consumers:
        rows.consumers[consumer] = {"consumer": consumer, "first_seen": at}
    # No edge row: the lineage walk reads consumer edges from `consumptions`, keyed by event_id, so an
    # event that reuses another's event_id (and is ignored there) cannot attach a consumer either.
    rows.consumptions.append({
        "event_id": r["event_id"], "output_id": r["output_id"], "consumer": consumer,
        "consumer_ref": r["consumer_ref"], "purpose": r["purpose"], "occurred_at": at,
    })


def _bundle(rows: RowBatch, r: dict[str, Any]) -> None:
    if r["bundle_id"] in rows.bundles:
        return
    rows.bundles[r["bundle_id"]] = {
        "bundle_id": r["bundle_id"], "event_id": r["event_id"], "registered_at": micros(r["occurred_at"]),
        "tenant": r["tenant"], "name": r["name"], "version": r["version"],
        "prompt_template_id": r["prompt_template_id"], "prompt_template_version": r["prompt_template_version"],
        "prompt_template_sha256": r["prompt_template_sha256"], "model_provider": r["model_provider"],
        "model_name": r["model_name"], "retrieval_config_id": r["retrieval_config_id"],
        "retrieval_config_sha256": r["retrieval_config_sha256"], "params_json": r["params_json"],
        "canonical_json": r["canonical_json"], "registered_by": r["registered_by"],
    }
