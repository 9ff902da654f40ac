"""Avro encoding with Confluent framing: magic byte 0, 4-byte big-endian schema ID, Avro binary body.

Standard Kafka tooling (Confluent deserializers, kafkajs' registry client) reads this framing, fetching
the writer schema by ID from our registry endpoint. Records are plain dicts in Avro's Python shape.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.validation import ValidationError, validate

from schemas.errors import (
    EventTooLargeError,
    MalformedEventError,
    SerializationError,
    UnknownSchemaError,
)
from schemas.registry import SchemaRegistry, load_registry

MAGIC = 0
_HEADER = struct.Struct(">BI")
DEFAULT_MAX_EVENT_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    name: str  # record name, e.g. InferenceRecorded
    schema_id: int
    record: dict[str, Any]


class Codec:
    """Encodes the current version of each event type; decodes any registered version into the current one."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or load_registry()
        self._parsed: dict[int, Any] = {}
        self._writer_ids: dict[str, int] = {}
        self._reader_for: dict[int, Any] = {}
        named: dict[str, Any] = {}
        for v in self.registry.versions:
            self._parsed[v.schema_id] = fastavro.parse_schema(v.schema, named_schemas={})
        for name in {v.name for v in self.registry.versions}:
            latest = self.registry.latest(name)
            self._writer_ids[name] = latest.schema_id
            named[name] = self._parsed[latest.schema_id]
        for v in self.registry.versions:
            latest_id = self._writer_ids[v.name]
            # None tells fastavro the writer schema is also the reader schema: the fast path.
            self._reader_for[v.schema_id] = None if v.schema_id == latest_id else named[v.name]

    def schema_id(self, name: str) -> int:
        return self._writer_ids[name]

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        try:
            schema_id = self._writer_ids[name]
        except KeyError:
            raise SerializationError(f"unknown event type {name!r}") from None
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, schema_id))
        try:
            fastavro.schemaless_writer(buf, self._parsed[schema_id], record)
        except Exception as exc:
            raise SerializationError(f"{name}: {self.explain(name, record) or exc}") from exc
        return buf.getvalue()

    def explain(self, name: str, record: dict[str, Any]) -> str | None:
        """Why `record` does not fit the schema, naming the field paths; None when it fits."""
        try:
            validate(record, self._parsed[self._writer_ids[name]], raise_errors=True, strict=True)
        except ValidationError as exc:
            return "; ".join(_describe(e) for e in exc.errors)
        except Exception as exc:  # validate itself can trip on deeply wrong shapes
            return f"invalid record ({type(exc).__name__}: {exc})"
        return None

    def decode(self, data: bytes) -> DecodedEvent:
        if len(data) < 5:
            raise MalformedEventError(f"event is {len(data)} bytes, shorter than the 5-byte Confluent header")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise MalformedEventError(f"bad magic byte {magic}: not Confluent-framed Avro")
        writer = self._parsed.get(schema_id)
        if writer is None:
            raise UnknownSchemaError(schema_id)
        buf = io.BytesIO(data)
        buf.seek(5)
        try:
            record = fastavro.schemaless_reader(buf, writer, self._reader_for[schema_id])
        except UnicodeDecodeError as exc:
            raise MalformedEventError(f"text field is not valid UTF-8 at byte {exc.start} of the string") from exc
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
            raise MalformedEventError(f"corrupt Avro body for schema id {schema_id}: {problem}") from exc
        if buf.tell() != len(data):
            raise MalformedEventError(
                f"{len(data) - buf.tell()} trailing bytes after the Avro body (schema id {schema_id})"
            )
        name = self.registry.by_id(schema_id).name
        return DecodedEvent(name, schema_id, record)  # type: ignore[arg-type]


def check_size(data: bytes, limit: int) -> None:
    if len(data) > limit:
        raise EventTooLargeError(len(data), limit)


def _describe(error: Any) -> str:
    text = str(error)
    # fastavro reports "<path> is <value> of type <type> expected <schema>"; keep it short.
    return text if len(text) < 300 else text[:297] + "..."


def schema_id_of(data: bytes) -> int | None:
    """The schema ID in a framed event, or None if the framing is wrong."""
    if len(data) < 5 or data[0] != MAGIC:
        return None
    return int(_HEADER.unpack_from(data)[1])


__all__ = ["DEFAULT_MAX_EVENT_BYTES", "Codec", "DecodedEvent", "UnknownSchemaError", "check_size", "schema_id_of"]
