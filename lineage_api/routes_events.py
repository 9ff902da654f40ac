"""POST /v1/events: how producers in other languages record events. JSON is checked against the Avro
schema field by field; Confluent-framed Avro is decoded to prove it is readable. Either way the events are
durable in the log when the 202 comes back, and a bad event rejects the request without storing any."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from lineage_api.services import Services
from schemas.codec import Codec, DecodedEvent, check_size
from schemas.errors import EventValidationError, InvalidRequestError, RequestTooLargeError
from schemas.ids import event_id_text, output_id_from, uuid7_bytes
from schemas.jsonform import from_json
from schemas.registry import PRODUCER_EVENT_TYPES
from streams.checks import check_fits
from streams.projector import check_event

router = APIRouter(prefix="/v1", tags=["events"])
AVRO_MEDIA_TYPE = "application/vnd.llm-lineage.avro"
MAX_EVENTS_PER_REQUEST = 1000

_KEY_FIELD = {"InferenceRecorded": "output_id", "OutputConsumed": "output_id",
              "BundleRegistered": "bundle_id", "AliasMoved": "feature"}

_DOC = f"""Body: one event `{{"type": "InferenceRecorded", "event": {{...}}}}` or a JSON array of up to
{MAX_EVENTS_PER_REQUEST}. `type` is one of {", ".join(PRODUCER_EVENT_TYPES)}. Fields follow the Avro schema
(`GET /subjects`), in natural JSON: nullable fields are the value or null, timestamps an ISO-8601 string
with a zone or integer µs. `event_id` (and `output_id` for InferenceRecorded) are generated when absent.
With `Content-Type: {AVRO_MEDIA_TYPE}` the body is one Confluent-framed Avro event instead.
Answers 202 once every event is durable in the log; 4xx names the first problems and stores nothing."""


@router.post("/events", status_code=202, summary="Record events over HTTP", description=_DOC)
async def post_events(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    body = await _read_body(request, services.settings.max_request_bytes)
    if request.headers.get("content-type", "").split(";")[0].strip() == AVRO_MEDIA_TYPE:
        check_size(body, services.settings.max_event_bytes)
        decoded = services.codec.decode(body)
        if decoded.name not in PRODUCER_EVENT_TYPES:
            raise EventValidationError(f"{decoded.name} events are written by the lineage store itself, not posted")
        check_event(decoded)
        check_fits(decoded)
        records = [(_key(decoded.name, decoded.record), body)]
        accepted = [_ids(decoded.record)]
    else:
        records, accepted = _from_json(services.codec, body, services.settings.max_event_bytes)
    await run_in_threadpool(services.log.append, records)
    return JSONResponse({"accepted": len(records), "events": accepted}, status_code=202)


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


def _from_json(codec: Codec, body: bytes, max_event_bytes: int) -> tuple[Encoded, list[dict[str, Any]]]:
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
    records, accepted = [], []
    for i, item in enumerate(items):
        where = f"events[{i}]" if isinstance(payload, list) else "event"
        name, event = _envelope(item, where)
        _fill_ids(name, event)
        try:
            record = from_json(codec.registry.latest(name).schema, event)
            decoded = DecodedEvent(name, codec.schema_id(name), record)
            check_event(decoded)  # what the index would refuse, refused now rather than dead-lettered later
            check_fits(decoded)
            value = codec.encode(name, record)
            check_size(value, max_event_bytes)
        except EventValidationError as exc:
            raise EventValidationError(f"{where}: {exc}") from None
        records.append((_key(name, record), value))
        accepted.append(_ids(record))
    return records, accepted


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


def _fill_ids(name: str, event: dict[str, Any]) -> None:
    raw = uuid7_bytes()
    event.setdefault("event_id", event_id_text(raw))
    if name == "InferenceRecorded":
        event.setdefault("output_id", output_id_from(raw))


def _key(name: str, record: dict[str, Any]) -> bytes:
    if name == "InferenceRecorded" and record.get("trace_id"):
        return str(record["trace_id"]).encode()
    return str(record.get(_KEY_FIELD[name], "")).encode()


def _ids(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("event_id", "output_id") if k in record}
