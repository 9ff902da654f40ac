"""The FULL_TRANSITIVE guard: every schema version must read, and be read by, every other version.

A schema may only evolve by adding fields with defaults. Editing `schemas/avro/<Name>.avsc` without
publishing a new version (a history file plus a registry.json entry with a new ID) fails here, as does
any change that would leave some consumer unable to read some event on the topic.
"""

from __future__ import annotations

import copy
import itertools
import json
from importlib import resources
from typing import Any

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas.registry import EVENT_TYPES, NAMESPACE, current_schema, fingerprint, load_registry

# IDs are forever: once a (name, version) got an ID and a fingerprint on the topic, neither may change.
COMMITTED = {
    1: ("InferenceRecorded", 1, "2c1aa4adab4767fca3216c9122e935c38ab6ea00b265d2ece14c064032a02234"),
    2: ("BundleRegistered", 1, "9a2f06f8648f6b3f0ceec4e07ba25291bbae25b25c6d66eaf59479ea86d111fe"),
    3: ("AliasMoved", 1, "1ac8f733480e6106eea22b031b81df08dda216412ae813f62c3ecb2930c2e0c7"),
    4: ("OutputConsumed", 1, "898be58ec564a162c2c789fc4935f7f785c666aae3e161657ff21c61add829c2"),
    5: ("ChainCheckpoint", 1, "0ab5791f4862943b92c2044ea993c9352f62b3fb2c321c012bf7feb117c96333"),
}


def full_compatible(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Problems that stop `new` being FULL compatible with `old`; empty when it is.

    Backward: a consumer on `new` reads events written with `old`. Forward: a consumer still on `old`
    reads events written with `new`. FULL needs both; checking every pair of versions makes it transitive.
    """
    old_schema = avro.schema.parse(json.dumps(old))
    new_schema = avro.schema.parse(json.dumps(new))
    problems = []
    for direction, reader, writer in (
        ("backward (new reader, old writer)", new_schema, old_schema),
        ("forward (old reader, new writer)", old_schema, new_schema),
    ):
        result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
        if result.compatibility is not SchemaCompatibilityType.compatible:
            where = ", ".join(sorted(result.locations))
            problems.append(f"{direction}: {'; '.join(sorted(result.messages))} at {where}")
    return problems


def history_text(name: str, version: int) -> dict[str, Any]:
    text = resources.files("schemas").joinpath(f"avro/history/{name}.v{version}.avsc").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def registry_entries() -> list[dict[str, Any]]:
    text = resources.files("schemas").joinpath("registry.json").read_text("utf-8")
    entries: list[dict[str, Any]] = json.loads(text)["schemas"]
    return entries


# -- the real schemas ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_current_schema_is_the_newest_registered_version(name: str) -> None:
    newest = load_registry().latest(name)
    current = current_schema(name)
    assert fingerprint(current) == newest.fingerprint, (
        f"schemas/avro/{name}.avsc changed but was not published. Copy it to "
        f"schemas/avro/history/{name}.v{newest.version + 1}.avsc and add an entry to schemas/registry.json "
        f"with a new id, version {newest.version + 1} and fingerprint {fingerprint(current)}; never edit a "
        "published version in place."
    )


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_every_pair_of_versions_is_compatible_both_ways(name: str) -> None:
    registry = load_registry()
    versions = [(f"v{v.version}", v.schema) for v in registry.history(name)]
    versions.append(("current .avsc", current_schema(name)))
    problems = []
    for (old_label, old), (new_label, new) in itertools.combinations(versions, 2):
        problems += [f"{name} {old_label} -> {new_label}: {p}" for p in full_compatible(old, new)]
    assert not problems, "schema change is not FULL_TRANSITIVE compatible:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_schema_is_a_namespaced_record_named_after_its_file(name: str) -> None:
    schema = current_schema(name)
    assert schema["type"] == "record"
    assert schema["name"] == name
    assert schema["namespace"] == NAMESPACE


def test_registry_ids_are_unique() -> None:
    ids = [int(e["id"]) for e in registry_entries()]
    assert len(ids) == len(set(ids)), f"duplicate schema ids in registry.json: {sorted(ids)}"
    assert all(i > 0 for i in ids)


def test_each_name_has_versions_numbered_one_to_n_without_gaps() -> None:
    by_name: dict[str, list[int]] = {}
    for e in registry_entries():
        by_name.setdefault(e["name"], []).append(int(e["version"]))
    assert set(by_name) == set(EVENT_TYPES)
    for name, versions in by_name.items():
        assert sorted(versions) == list(range(1, len(versions) + 1)), f"{name}: versions {sorted(versions)}"


def test_each_history_file_matches_the_fingerprint_in_the_registry() -> None:
    for e in registry_entries():
        actual = fingerprint(history_text(e["name"], int(e["version"])))
        assert actual == e["fingerprint"], (
            f"schemas/avro/history/{e['name']}.v{e['version']}.avsc was edited after publication "
            f"(id {e['id']}): published versions are immutable; add a new version instead"
        )


def test_committed_ids_never_change() -> None:
    entries = {int(e["id"]): (e["name"], int(e["version"]), e["fingerprint"]) for e in registry_entries()}
    for schema_id, expected in COMMITTED.items():
        assert entries.get(schema_id) == expected, f"schema id {schema_id} was renumbered or republished"


def test_loaded_registry_agrees_with_the_files() -> None:
    registry = load_registry()
    assert {(v.schema_id, v.name, v.version) for v in registry.versions} == {
        (int(e["id"]), e["name"], int(e["version"])) for e in registry_entries()
    }
    for v in registry.versions:
        assert fingerprint(v.schema) == v.fingerprint


# -- the guard catches breaking changes ------------------------------------------------------------------


def inference_schema() -> dict[str, Any]:
    return copy.deepcopy(current_schema("InferenceRecorded"))


def field_named(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def test_identical_schemas_are_compatible() -> None:
    assert full_compatible(inference_schema(), inference_schema()) == []


def test_adding_a_nullable_field_with_null_default_is_compatible_both_ways() -> None:
    new = inference_schema()
    new["fields"].append({"name": "reviewer", "type": ["null", "string"], "default": None})
    assert full_compatible(inference_schema(), new) == []


def test_adding_a_field_without_a_default_breaks_backward_only() -> None:
    # A new reader finds no value for the field in old events and has no default to use.
    new = inference_schema()
    new["fields"].append({"name": "reviewer", "type": "string"})
    problems = full_compatible(inference_schema(), new)
    assert len(problems) == 1
    assert problems[0].startswith("backward")
    assert "reviewer" in problems[0]


def test_removing_a_field_without_a_default_breaks_forward_only() -> None:
    # An old reader needs `feature`; new events no longer carry it and the old schema has no default.
    new = inference_schema()
    new["fields"] = [f for f in new["fields"] if f["name"] != "feature"]
    problems = full_compatible(inference_schema(), new)
    assert len(problems) == 1
    assert problems[0].startswith("forward")
    assert "feature" in problems[0]


def test_removing_a_field_with_a_default_is_compatible() -> None:
    new = inference_schema()
    new["fields"] = [f for f in new["fields"] if f["name"] != "cost_usd_micros"]
    assert full_compatible(inference_schema(), new) == []


def test_changing_a_field_type_string_to_int_breaks_both_ways() -> None:
    new = inference_schema()
    field_named(new, "feature")["type"] = "int"
    problems = full_compatible(inference_schema(), new)
    assert [p.split(" ")[0] for p in problems] == ["backward", "forward"]


def test_widening_long_to_double_breaks_forward() -> None:
    # Avro promotes long -> double when reading, but an old reader cannot read a double as a long.
    new = inference_schema()
    field_named(new, "cost_usd_micros")["type"] = "double"
    problems = full_compatible(inference_schema(), new)
    assert len(problems) == 1 and problems[0].startswith("forward")


def test_adding_a_required_field_to_a_nested_record_breaks_backward() -> None:
    new = inference_schema()
    message = field_named(new, "prompt")["type"]["fields"][-1]["type"]["items"]
    assert message["name"] == "Message"
    message["fields"].append({"name": "tokens", "type": "long"})
    problems = full_compatible(inference_schema(), new)
    assert len(problems) == 1 and problems[0].startswith("backward")
    assert "tokens" in problems[0]


def test_making_a_nullable_field_required_breaks_backward() -> None:
    new = inference_schema()
    field = field_named(new, "trace_id")
    del field["default"]
    field["type"] = "string"
    problems = full_compatible(inference_schema(), new)
    assert any(p.startswith("backward") for p in problems)


def test_enum_symbols_may_change_because_status_has_a_default() -> None:
    # Readers map unknown symbols to the enum default (ERROR), so adding or removing a symbol is safe.
    new = inference_schema()
    field_named(new, "status")["type"]["symbols"].append("CANCELLED")
    assert full_compatible(inference_schema(), new) == []


def test_enum_symbols_without_a_default_cannot_grow() -> None:
    old = inference_schema()
    del field_named(old, "status")["type"]["default"]
    new = copy.deepcopy(old)
    field_named(new, "status")["type"]["symbols"].append("CANCELLED")
    problems = full_compatible(old, new)
    assert len(problems) == 1 and problems[0].startswith("forward")
    assert "CANCELLED" in problems[0]


def test_renaming_the_record_breaks_both_ways() -> None:
    new = inference_schema()
    new["name"] = "InferenceLogged"
    assert len(full_compatible(inference_schema(), new)) == 2
