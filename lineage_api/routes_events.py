"""POST /v1/events: how producers in other languages record events. JSON is checked against the Avro
schema field by field; Confluent-framed Avro is decoded to prove it is readable. Either way the events are
durable in the log when the 202 comes back, and a bad event rejects the request without storing any."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.requests import ClientDisconnect

from lineage_api.services import Services
from schemas.codec import Codec, DecodedEvent, check_size
from schemas.errors import EventValidationError, InvalidRequestError, RequestTooLargeError
from schemas.ids import event_id_text, output_id_from, uuid7_at
from schemas.jsonform import from_json
from schemas.registry import PRODUCER_EVENT_TYPES
from streams.checks import check_fits
from streams.projector import check_event
from streams.reader import recorded_outputs

router = APIRouter(prefix="/v1", tags=["events"])
AVRO_MEDIA_TYPE = "application/vnd.llm-lineage.avro"
MAX_EVENTS_PER_REQUEST = 1000

_KEY_FIELD = {"InferenceRecorded": "output_id", "OutputConsumed": "output_id",
              "BundleRegistered": "bundle_id", "AliasMoved": "feature"}
_GENERATED = {"InferenceRecorded": ("event_id", "output_id")}  # IDs made when absent; other types: event_id

_DOC = f"""Body: one event `{{"type": "InferenceRecorded", "event": {{...}}}}` or a JSON array of up to
{MAX_EVENTS_PER_REQUEST}. `type` is one of {", ".join(PRODUCER_EVENT_TYPES)}. Fields follow the Avro schema
(`GET /subjects`), in natural JSON: nullable fields are the value or null, timestamps an ISO-8601 string
with a zone or integer µs. `event_id` (and `output_id` for InferenceRecorded) are generated when absent,
from `occurred_at` (UUIDv7), so backfilled events sort by when they happened. An output is recorded once:
an InferenceRecorded whose `output_id` is already recorded by another event is refused (422).
With `Content-Type: {AVRO_MEDIA_TYPE}` the body is one Confluent-framed Avro event instead.
Answers 202 once every event is durable in the log; 4xx names the first problems and stores nothing."""


@router.post("/events", status_code=202, summary="Record events over HTTP", description=_DOC)
async def post_events(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    body = await _read_body(request, services.settings.max_request_bytes)
    avro = request.headers.get("content-type", "").split(";")[0].strip() == AVRO_MEDIA_TYPE
    # Parsing, checking and encoding a full request is CPU work of ~0.1 s, and the index lookup and the log
    # append are blocking I/O: all of it runs on a worker thread, never on the event loop.
    accepted = await run_in_threadpool(_record, services, body, avro)
    return JSONResponse({"accepted": len(accepted), "events": accepted}, status_code=202)


def _record(services: Services, body: bytes, avro: bool) -> list[dict[str, Any]]:
    """Check every event of the request, then append them all to the log; returns their IDs."""
    if avro:
        records, decoded = _from_avro(services.codec, body, services.settings.max_event_bytes)
    else:
        records, decoded = _from_json(services.codec, body, services.settings.max_event_bytes)
    _check_first_recordings(services.engine, decoded)
    services.log.append(records)
    return [_ids(event.record) for _, event in decoded]


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(int(declared), limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:  # a chunked body with no Content-Length: stop reading early
                raise RequestTooLargeError(size, limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidRequestError("the client went away before the body arrived") from None
    if not size:
        raise InvalidRequestError("empty body: send a JSON event or an array of events")
    return b"".join(chunks)


Encoded = list[tuple[bytes, bytes]]
Checked = list[tuple[str, DecodedEvent]]  # (where in the request, the event as it will be stored)


def _from_avro(codec: Codec, body: bytes, max_event_bytes: int) -> tuple[Encoded, Checked]:
    check_size(body, max_event_bytes)
    decoded = codec.decode(body)
    if decoded.name not in PRODUCER_EVENT_TYPES:
        raise EventValidationError(f"{decoded.name} events are written by the lineage store itself, not posted")
    check_event(decoded)
    check_fits(decoded)
    return [(_key(decoded.name, decoded.record), body)], [("event", decoded)]


def _from_json(codec: Codec, body: bytes, max_event_bytes: int) -> tuple[Encoded, Checked]:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = body[exc.start : exc.start + 1]
        raise InvalidRequestError(f"request body is not valid UTF-8 (byte {exc.start}: {bad!r})") from None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    items = payload if isinstance(payload, list) else [payload]
    if not items or len(items) > MAX_EVENTS_PER_REQUEST:
        raise InvalidRequestError(f"send between 1 and {MAX_EVENTS_PER_REQUEST} events per request, got {len(items)}")
    records: Encoded = []
    checked: Checked = []
    for i, item in enumerate(items):
        where = f"events[{i}]" if isinstance(payload, list) else "event"
        name, event = _envelope(item, where)
        missing = _hold_ids(name, event)
        try:
            record = from_json(codec.registry.latest(name).schema, event)
            _fill_ids(record, missing)
            decoded = DecodedEvent(name, codec.schema_id(name), record)
            check_event(decoded)  # what the index would refuse, refused now rather than dead-lettered later
            check_fits(decoded)
            value = codec.encode(name, record)
            check_size(value, max_event_bytes)
        except EventValidationError as exc:
            raise EventValidationError(f"{where}: {exc}") from None
        records.append((_key(name, record), value))
        checked.append((where, decoded))
    return records, checked


def _check_first_recordings(engine: Engine, checked: Checked) -> None:
    """An output is recorded once. Outputs are written once and a second recording's lineage would attach
    to an output it did not produce, so the runner dead-letters it; refusing it here tells the caller. The
    same event again (same event ID: a retried request) is accepted, and indexed once."""
    claims = [(where, e.record["output_id"], e.record["event_id"]) for where, e in checked
              if e.name == "InferenceRecorded"]
    first: dict[str, str] = {}
    for where, output_id, event_id in claims:
        if first.setdefault(output_id, event_id) != event_id:
            raise EventValidationError(
                f"{where}: InferenceRecorded.output_id {output_id!r} is also recorded by event "
                f"{first[output_id]} in this request; an output is recorded once")
    indexed = recorded_outputs(engine, first) if first else {}
    for where, output_id, event_id in claims:
        if indexed.get(output_id, event_id) != event_id:
            raise EventValidationError(
                f"{where}: InferenceRecorded.output_id {output_id!r} is already recorded by event "
                f"{indexed[output_id]}; an output is recorded once")


def _envelope(item: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(item, dict) or set(item) - {"type", "event"} or "type" not in item or "event" not in item:
        raise EventValidationError(f'{where}: expected an object {{"type": ..., "event": {{...}}}}')
    name, event = item["type"], item["event"]
    if name not in PRODUCER_EVENT_TYPES:
        known = ", ".join(PRODUCER_EVENT_TYPES)
        raise EventValidationError(f"{where}.type: unknown event type {name!r}; expected one of {known}")
    if not isinstance(event, dict):
        raise EventValidationError(f"{where}.event: expected an object")
    return name, event


def _hold_ids(name: str, event: dict[str, Any]) -> list[str]:
    """The IDs the caller left out, held by placeholders until occurred_at is parsed (see _fill_ids)."""
    missing = [f for f in _GENERATED.get(name, ("event_id",)) if f not in event]
    for f in missing:
        event[f] = ""
    return missing


def _fill_ids(record: dict[str, Any], missing: list[str]) -> None:
    """UUIDv7 from occurred_at, as the SDK makes them, so a backfilled event sorts by when it happened."""
    if not missing:
        return
    raw = uuid7_at(max(0, record["occurred_at"]) * 1000)  # a UUIDv7 has no time before 1970
    if "event_id" in missing:
        record["event_id"] = event_id_text(raw)
    if "output_id" in missing:
        record["output_id"] = output_id_from(raw)


def _key(name: str, record: dict[str, Any]) -> bytes:
    if name == "InferenceRecorded" and record.get("trace_id"):
        return str(record["trace_id"]).encode()
    return str(record.get(_KEY_FIELD[name], "")).encode()


def _ids(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("event_id", "output_id") if k in record}
