"""The committed registry of stable schema IDs. IDs never change once committed; a schema evolves by
adding a new version (a new ID) that must be FULL_TRANSITIVE compatible with every earlier version.

`registry.json` lists every version ever published; `avro/history/<Name>.v<N>.avsc` holds its exact text;
`avro/<Name>.avsc` is the current version and must equal the newest history entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from fastavro.schema import to_parsing_canonical_form

from schemas.errors import UnknownSchemaError
from schemas.hashing import sha256_hex

NAMESPACE = "llm_lineage"
TOPIC = "llm_lineage.events.v1"
EVENT_TYPES = ("InferenceRecorded", "BundleRegistered", "AliasMoved", "OutputConsumed", "ChainCheckpoint")
# What applications record. ChainCheckpoint is written by the stream processor that signs the chain only.
PRODUCER_EVENT_TYPES = EVENT_TYPES[:4]


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaVersion:
    schema_id: int
    name: str  # short record name, e.g. InferenceRecorded
    version: int
    schema: dict[str, Any]  # the JSON schema as written
    fingerprint: str  # sha256 of the Parsing Canonical Form

    @property
    def full_name(self) -> str:
        return f"{NAMESPACE}.{self.name}"

    @property
    def subject(self) -> str:
        """Confluent TopicRecordNameStrategy subject: several record types share one topic."""
        return f"{TOPIC}-{self.full_name}"

    @property
    def schema_text(self) -> str:
        return json.dumps(self.schema, separators=(",", ":"))


def fingerprint(schema: dict[str, Any]) -> str:
    return sha256_hex(to_parsing_canonical_form(schema))


def _read_json(relative: str) -> Any:
    return json.loads(resources.files("schemas").joinpath(relative).read_text("utf-8"))


@dataclass(frozen=True, slots=True)
class SchemaRegistry:
    versions: tuple[SchemaVersion, ...]

    def by_id(self, schema_id: int) -> SchemaVersion:
        for v in self.versions:
            if v.schema_id == schema_id:
                return v
        raise UnknownSchemaError(schema_id)

    def latest(self, name: str) -> SchemaVersion:
        found = [v for v in self.versions if v.name == name]
        if not found:
            raise KeyError(f"no schema named {name!r}; known: {', '.join(EVENT_TYPES)}")
        return max(found, key=lambda v: v.version)

    def subjects(self) -> list[str]:
        return sorted({v.subject for v in self.versions})

    def history(self, name: str) -> list[SchemaVersion]:
        return sorted((v for v in self.versions if v.name == name), key=lambda v: v.version)


def current_schema(name: str) -> dict[str, Any]:
    """The schema in `avro/<name>.avsc`, as edited by developers."""
    schema: dict[str, Any] = _read_json(f"avro/{name}.avsc")
    return schema


@cache
def load_registry() -> SchemaRegistry:
    """Read registry.json and every historic schema it names (cached: the files ship with the package)."""
    entries = _read_json("registry.json")["schemas"]
    versions = []
    for e in entries:
        schema = _read_json(f"avro/history/{e['name']}.v{e['version']}.avsc")
        versions.append(
            SchemaVersion(
                schema_id=int(e["id"]),
                name=e["name"],
                version=int(e["version"]),
                schema=schema,
                fingerprint=e["fingerprint"],
            )
        )
    return SchemaRegistry(tuple(versions))
