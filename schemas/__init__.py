"""Avro event schemas, their registry of stable IDs, the Confluent-framed codec, hashing and the error tree."""

from schemas.codec import DEFAULT_MAX_EVENT_BYTES, Codec, DecodedEvent, check_size, schema_id_of
from schemas.errors import LineageError
from schemas.hashing import canonical_json, sha256_hex
from schemas.registry import EVENT_TYPES, TOPIC, SchemaRegistry, load_registry

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "EVENT_TYPES",
    "TOPIC",
    "Codec",
    "DecodedEvent",
    "LineageError",
    "SchemaRegistry",
    "canonical_json",
    "check_size",
    "load_registry",
    "schema_id_of",
    "sha256_hex",
]
