"""Read side of the lineage index: one output's whole record, filtered listings with cursor paging, and which
outputs are recorded already (and by which event), for the runner and the API to keep each recorded once."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from schemas.codec import Codec
from schemas.errors import IndexError_, InvalidRequestError, NotFoundError
from schemas.times import iso_from_micros
from streams import tables as t
from streams.projector import json_text, micros

MAX_PAGE = 500
LOOKUP_CHUNK = 500  # IDs per `IN (...)` query: well under SQLite's (999 in older builds) and PostgreSQL's limits


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputFilter:
    feature: str | None = None
    bundle_id: str | None = None
    model: str | None = None  # model served
    requested_model: str | None = None
    status: str | None = None
    trace_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


iso = iso_from_micros


class IndexReader:
    def __init__(self, engine: Engine, codec: Codec | None = None) -> None:
        self.engine = engine
        self.codec = codec or Codec()

    def output(self, output_id: str) -> dict[str, Any]:
        """The whole record behind an output: the event as recorded plus what the index knows around it."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(t.outputs.c.body, t.outputs.c.log_partition, t.outputs.c.log_offset)
                    .where(t.outputs.c.output_id == output_id)
                ).first()
                if row is None:
                    raise NotFoundError("output", output_id)
                record = self.codec.decode(row.body).record
                bundle = None
                if record["bundle"] is not None:
                    bundle = conn.execute(
                        select(t.bundles).where(t.bundles.c.bundle_id == record["bundle"]["bundle_id"])
                    ).mappings().first()
                consumers = conn.execute(
                    select(t.consumptions).where(t.consumptions.c.output_id == output_id)
                    .order_by(t.consumptions.c.occurred_at)
                ).mappings().all()
                children = conn.execute(
                    select(t.edges.c.dst).where(t.edges.c.src == "output:" + output_id, t.edges.c.kind == "fed")
                ).scalars().all()
        except SQLAlchemyError as exc:
            raise IndexError_(f"cannot read the lineage index: {exc}") from exc
        return _present(record, bundle, consumers, children, row.log_partition, row.log_offset)

    def outputs(self, flt: OutputFilter, *, cursor: str | None = None, limit: int = 50) -> Page:
        """Newest first. The cursor is opaque to callers: the last output ID of the previous page."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequestError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        o = t.outputs.c
        query = select(
            o.output_id, o.occurred_at, o.tenant, o.feature, o.trace_id, o.bundle_id, o.model_served,
            o.model_requested, o.status, o.cost_usd_micros, o.latency_ms, o.prompt_tokens, o.completion_tokens,
            o.rollout_arm,
        )
        for column, value in (
            (o.feature, flt.feature), (o.bundle_id, flt.bundle_id), (o.model_served, flt.model),
            (o.model_requested, flt.requested_model), (o.status, flt.status), (o.trace_id, flt.trace_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if flt.since is not None:
            query = query.where(o.occurred_at >= micros(_aware(flt.since)))
        if flt.until is not None:
            query = query.where(o.occurred_at < micros(_aware(flt.until)))
        if cursor:
            query = query.where(o.output_id < _decode_cursor(cursor))
        query = query.order_by(o.output_id.desc()).limit(limit + 1)
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).mappings().all()
        except SQLAlchemyError as exc:
            raise IndexError_(f"cannot read the lineage index: {exc}") from exc
        items = [{**r, "occurred_at": iso(r["occurred_at"])} for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, _encode_cursor(items[-1]["output_id"]) if more else None)

    def stats(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        try:
            with self.engine.connect() as conn:
                for name, table in (("outputs", t.outputs), ("bundles", t.bundles),
                                    ("consumptions", t.consumptions), ("dead_letters", t.dead_letters)):
                    counts[name] = int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)
        except SQLAlchemyError as exc:
            raise IndexError_(f"cannot read the lineage index: {exc}") from exc
        return counts

    def dead_letters(self, limit: int = 50) -> list[dict[str, Any]]:
        d = t.dead_letters.c
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(d.log_partition, d.log_offset, d.reason, d.recorded_at, func.length(d.raw).label("size"))
                    .order_by(d.log_partition, d.log_offset.desc()).limit(limit)
                ).mappings().all()
        except SQLAlchemyError as exc:
            raise IndexError_(f"cannot read the lineage index: {exc}") from exc
        return [{**r, "recorded_at": iso(r["recorded_at"])} for r in rows]


def recorded_outputs(engine: Engine, output_ids: Iterable[str]) -> dict[str, str]:
    """The event ID that recorded each of `output_ids` already in the index (absent IDs are left out)."""
    o = t.outputs.c
    return {row.output_id: row.event_id for row in _lookup(engine, [o.output_id, o.event_id], output_ids)}


def recorded_bodies(engine: Engine, output_ids: Iterable[str]) -> dict[str, bytes]:
    """The event bytes, as indexed, behind each of `output_ids` already in the index."""
    o = t.outputs.c
    return {row.output_id: bytes(row.body) for row in _lookup(engine, [o.output_id, o.body], output_ids)}


def _lookup(engine: Engine, columns: list[Any], output_ids: Iterable[str]) -> list[Any]:
    ids = sorted(set(output_ids))
    if not ids:
        return []
    rows: list[Any] = []
    try:
        with engine.connect() as conn:
            for start in range(0, len(ids), LOOKUP_CHUNK):
                chunk = ids[start : start + LOOKUP_CHUNK]
                rows.extend(conn.execute(select(*columns).where(t.outputs.c.output_id.in_(chunk))))
    except SQLAlchemyError as exc:
        raise IndexError_(f"cannot read the lineage index: {exc}") from exc
    return rows


def _present(
    r: dict[str, Any], bundle: Any, consumers: Any, children: Any, partition: int, offset: int
) -> dict[str, Any]:
    prompt, params, output = dict(r["prompt"]), dict(r["params"]), dict(r["output"])
    _parse_into(prompt, "variables_json", "variables")
    _parse_into(params, "extras_json", "extras")
    _parse_into(output, "structured_json", "structured")
    return {
        **r,
        "occurred_at": r["occurred_at"].isoformat().replace("+00:00", "Z"),
        "prompt": prompt,
        "params": params,
        "output": output,
        "bundle": None if r["bundle"] is None else {
            **r["bundle"],
            "registered": bundle is not None,
            **({} if bundle is None else {
                "registered_at": iso(bundle["registered_at"]), "canonical_json": bundle["canonical_json"],
                "registered_by": bundle["registered_by"],
            }),
        },
        "parents": r["parent_output_ids"],
        "children": [c.removeprefix("output:") for c in children],
        "consumers": [{**c, "occurred_at": iso(c["occurred_at"])} for c in consumers],
        "log_position": {"partition": partition, "offset": offset},
    }


def _parse_into(part: dict[str, Any], field: str, name: str) -> None:
    """Replace the JSON text `field` by its value under `name`. Text the projector would refuse today (an
    index built before it checked) is kept as recorded under `<name>_raw`, so the record stays readable."""
    text = part.pop(field)
    try:
        part[name] = None if text is None else json_text(text)
    except ValueError:
        part[name], part[name + "_raw"] = None, text


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _encode_cursor(output_id: str) -> str:
    return base64.urlsafe_b64encode(output_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        value = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = ""
    if not value:
        raise InvalidRequestError(f"bad cursor {cursor[:40]!r}: pass next_cursor from a previous page")
    return value
