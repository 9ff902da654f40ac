"""project(): decoded events in, index rows out; pure, deterministic, with every field in its column.
check_event(): what the index cannot hold is refused before projection, naming the field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.errors import EventValidationError
from schemas.hashing import sha256_hex
from streams.checks import check_fits
from streams.projector import RowBatch, SourceEvent, check_event, project
from tests.factories import (
    alias_event,
    bundle_event,
    bundle_ref,
    consumed_event,
    decode,
    document,
    encode,
    inference_event,
    micros,
)

WHEN = datetime(2026, 11, 3, 14, 5, 1, 250_000, tzinfo=UTC)


def source(events: list[tuple[str, dict[str, Any]]], first_offset: int = 0, partition: int = 0) -> list[SourceEvent]:
    """SourceEvents as the runner builds them: the framed bytes and what the codec decodes from them."""
    out = []
    for i, (name, record) in enumerate(events):
        raw = encode(name, record)
        out.append(SourceEvent(partition, first_offset + i, raw, decode(raw)))
    return out


def test_an_inference_maps_to_an_output_row_with_every_column() -> None:
    bundle = bundle_event()
    rec = inference_event(
        occurred_at=WHEN, trace_id="trace-7", bundle=bundle_ref(bundle), status="REFUSED",
        usage={"prompt_tokens": 900, "completion_tokens": 12}, cost_usd_micros=1234, latency_ms=97.25,
        rollout={"arm": "canary", "weight": 0.1}, classification={"retention_class": "regulated", "pii": True},
        model={"requested": "gpt-4o", "served": "gpt-4o-2024-11-20"},
    )
    [item] = source([("InferenceRecorded", rec)], first_offset=41, partition=3)
    [row] = project([item]).outputs
    p = rec["prompt"]
    assert row == {
        "output_id": rec["output_id"], "event_id": rec["event_id"], "occurred_at": micros(WHEN),
        "tenant": "gridco", "feature": "day-ahead-load", "trace_id": "trace-7",
        "bundle_id": bundle["bundle_id"],
        "prompt_key": f"load-forecast@3#{p['template_sha256'][:12]}",
        "model_key": "openai/gpt-4o-2024-11-20@fp_5f2c0a",
        "model_served": "gpt-4o-2024-11-20", "model_requested": "gpt-4o", "status": "REFUSED",
        "cost_usd_micros": 1234, "latency_ms": 97.25, "prompt_tokens": 900, "completion_tokens": 12,
        "rollout_arm": "canary", "retention_class": "regulated", "pii": True,
        "log_partition": 3, "log_offset": 41, "body": item.raw,
    }


def test_optional_parts_become_nulls() -> None:
    rec = inference_event(bundle=None, rollout=None, retrieval=None, model={"fingerprint": None})
    rows = project(source([("InferenceRecorded", rec)]))
    [row] = rows.outputs
    assert (row["bundle_id"], row["rollout_arm"], row["trace_id"]) == (None, None, None)
    assert row["model_key"] == "openai/gpt-4o-2024-08-06"  # no '@' without a fingerprint
    assert rows.documents == {} and rows.edges == {}


def test_prompt_model_and_document_dimension_rows() -> None:
    doc = document("grid-ops/north-load-2026-10", version="v9", source="s3://docs", content="load table")
    rec = inference_event(occurred_at=WHEN, retrieval={"documents": [doc]})
    rows = project(source([("InferenceRecorded", rec)]))
    p, m = rec["prompt"], rec["model"]
    pkey = f"load-forecast@3#{p['template_sha256'][:12]}"
    assert rows.prompts == {pkey: {
        "prompt_key": pkey, "template_id": "load-forecast", "template_version": "3",
        "template_sha256": p["template_sha256"], "first_seen": micros(WHEN)}}
    mkey = "openai/gpt-4o-2024-08-06@fp_5f2c0a"
    assert rows.models == {mkey: {"model_key": mkey, "provider": "openai", "served": m["served"],
                                  "fingerprint": "fp_5f2c0a", "first_seen": micros(WHEN)}}
    dkey = f"grid-ops/north-load-2026-10@v9#{sha256_hex('load table')[:12]}"
    assert rows.documents == {dkey: {
        "document_key": dkey, "doc_id": "grid-ops/north-load-2026-10", "version": "v9", "source": "s3://docs",
        "content_sha256": sha256_hex("load table"), "first_seen": micros(WHEN)}}


def test_edges_retrieved_and_fed_and_consumptions_as_rows() -> None:
    parent_a, parent_b = inference_event(), inference_event()
    doc = document("weather/north")
    child = inference_event(parent_output_ids=[parent_a["output_id"], parent_b["output_id"]],
                            retrieval={"documents": [doc]})
    use = consumed_event(child["output_id"], consumer="dispatch-planner")
    rows = project(source([("InferenceRecorded", child), ("OutputConsumed", use)]))
    out = "output:" + child["output_id"]
    dnode = f"document:weather/north@v7#{doc['content_sha256'][:12]}"
    assert {(e["src"], e["dst"], e["kind"]) for e in rows.edges.values()} == {
        (dnode, out, "retrieved"),
        ("output:" + parent_a["output_id"], out, "fed"),
        ("output:" + parent_b["output_id"], out, "fed"),
    }  # consumer edges come from the consumptions table at read time
    assert [(c["output_id"], c["consumer"]) for c in rows.consumptions] == [(child["output_id"], "dispatch-planner")]
    assert all(key == (e["src"], e["dst"]) for key, e in rows.edges.items())


def test_a_consumption_row_and_its_consumer() -> None:
    use = consumed_event("out_06gq3ehus9ratfski4qdl8ual4", occurred_at=WHEN, consumer="dispatch-planner",
                         consumer_ref="plan-77", purpose=None)
    rows = project(source([("OutputConsumed", use)]))
    assert rows.consumptions == [{
        "event_id": use["event_id"], "output_id": "out_06gq3ehus9ratfski4qdl8ual4",
        "consumer": "dispatch-planner", "consumer_ref": "plan-77", "purpose": None, "occurred_at": micros(WHEN)}]
    assert rows.consumers == {"dispatch-planner": {"consumer": "dispatch-planner", "first_seen": micros(WHEN)}}
    assert rows.outputs == []


def test_dimension_rows_are_deduplicated_within_a_batch_keeping_the_first() -> None:
    doc = document("grid-ops/north-load-2026-10")
    first = inference_event(retrieval={"documents": [doc, doc]})
    later = [inference_event(retrieval={"documents": [doc]}, parent_output_ids=[first["output_id"]])
             for _ in range(3)]
    uses = [consumed_event(first["output_id"]), consumed_event(first["output_id"])]
    bundle = bundle_event()
    relabelled = {**bundle_event(), "bundle_id": bundle["bundle_id"], "name": "renamed"}
    rows = project(source([("InferenceRecorded", first), *[("InferenceRecorded", r) for r in later],
                           *[("OutputConsumed", u) for u in uses],
                           ("BundleRegistered", bundle), ("BundleRegistered", relabelled)]))
    assert len(rows.outputs) == 4
    assert len(rows.prompts) == len(rows.models) == len(rows.documents) == len(rows.consumers) == 1
    assert next(iter(rows.prompts.values()))["first_seen"] == first["occurred_at"]
    assert next(iter(rows.documents.values()))["first_seen"] == first["occurred_at"]
    assert len(rows.consumptions) == 2  # two facts, two event IDs
    assert len(rows.edges) == 1 + 3 * 2  # doc->first once, doc->each later, first->each later (no consumer edge rows)
    assert list(rows.bundles) == [bundle["bundle_id"]] and rows.bundles[bundle["bundle_id"]]["name"] == bundle["name"]


def test_a_bundle_registration_row() -> None:
    bundle = bundle_event(occurred_at=WHEN, registered_by=None, retrieval_config_id=None,
                          retrieval_config_sha256=None)
    rows = project(source([("BundleRegistered", bundle)]))
    expected = {k: v for k, v in bundle.items() if k != "occurred_at"}
    assert rows.bundles == {bundle["bundle_id"]: {**expected, "registered_at": micros(WHEN)}}


def test_alias_moves_become_rows_in_order() -> None:
    old, new = bundle_event(version="2026.10.2"), bundle_event(version="2026.11.1")
    canary = alias_event(new["bundle_id"], occurred_at=WHEN, alias="canary", weight=0.1, approver=None,
                         evaluation_ref=None, previous_bundle_id=old["bundle_id"])
    promote = alias_event(new["bundle_id"], previous_bundle_id=old["bundle_id"])
    rows = project(source([("AliasMoved", canary), ("AliasMoved", promote)]))
    assert rows.aliases == [{**canary, "occurred_at": micros(WHEN)},
                            {**promote, "occurred_at": promote["occurred_at"]}]
    assert rows.outputs == [] and rows.bundles == {}


def test_project_is_pure_and_deterministic() -> None:
    bundle = bundle_event()
    first = inference_event(bundle=bundle_ref(bundle))
    events = source([("BundleRegistered", bundle), ("InferenceRecorded", first),
                     ("InferenceRecorded", inference_event(parent_output_ids=[first["output_id"]])),
                     ("OutputConsumed", consumed_event(first["output_id"])),
                     ("AliasMoved", alias_event(bundle["bundle_id"]))])
    before = copy.deepcopy(events)
    once, twice = project(events), project(events)
    assert once == twice
    assert events == before, "project must not change its input"
    assert once is not twice and once.outputs is not twice.outputs


def test_an_empty_batch_projects_to_no_rows() -> None:
    assert project([]) == RowBatch()


@pytest.mark.parametrize(("name", "record", "message"), [
    ("InferenceRecorded", inference_event(model={"served": "s" * 257}),
     "InferenceRecorded: outputs.model_served is 257 characters, over 256"),
    ("InferenceRecorded", inference_event(bundle={"bundle_id": "b" * 65, "name": "n", "version": "1"}),
     "InferenceRecorded: outputs.bundle_id is 65 characters, over 64"),
    ("InferenceRecorded", inference_event(output_id=""), "InferenceRecorded.output_id: must not be empty"),
    ("InferenceRecorded", inference_event(parent_output_ids=["out_ok", ""]), "parent_output_ids[1]"),
    ("InferenceRecorded", inference_event(parent_output_ids=["o" * 600]), "edges.src is 607 characters, over 512"),
    ("OutputConsumed", consumed_event("out_x", consumer="planner\x00"),
     "OutputConsumed: consumers.consumer contains a NUL character"),
    ("AliasMoved", alias_event("b" * 64, alias="a" * 129), "AliasMoved: alias_moves.alias is 129 characters, over 128"),
], ids=["nested-length", "bundle-ref", "empty-output-id", "empty-parent", "long-parent", "nul", "alias"])
def test_checks_name_the_field_the_index_cannot_hold(name: str, record: dict[str, Any], message: str) -> None:
    decoded = decode(encode(name, record))
    with pytest.raises(EventValidationError) as caught:
        check_event(decoded)
        check_fits(decoded)
    assert message in str(caught.value)


TAMPERED = {
    "relabelled-content": (lambda: bundle_event(canonical_json='{"release":"forged"}'),
                           "does not match the sha256 of its canonical_json"),
    "made-up-id": (lambda: bundle_event(bundle_id="ab" * 32), "BundleRegistered.bundle_id"),
    "uppercase-hex": (lambda: {**bundle_event(), "bundle_id": bundle_event()["bundle_id"].upper()},
                      "BundleRegistered.bundle_id"),
}


@pytest.mark.parametrize("build", [c[0] for c in TAMPERED.values()], ids=list(TAMPERED))
def test_a_bundle_whose_id_is_not_the_hash_of_its_content_is_refused(build: Any) -> None:
    """bundle_id is content-addressed: a registration claiming an ID its content does not hash to would let
    anyone relabel a release another team registered."""
    record = build()
    with pytest.raises(EventValidationError) as caught:
        check_event(decode(encode("BundleRegistered", record)))
    assert "BundleRegistered.bundle_id" in str(caught.value)
    assert "sha256" in str(caught.value)


BAD_JSON = {
    "variables-not-json": (inference_event(prompt={"variables_json": "{region: north}"}),
                           "InferenceRecorded.prompt.variables_json: not valid JSON"),
    "variables-an-array": (inference_event(prompt={"variables_json": "[1, 2]"}),
                           "InferenceRecorded.prompt.variables_json: expected a JSON object, got an array"),
    "variables-null": (inference_event(prompt={"variables_json": "null"}),
                       "InferenceRecorded.prompt.variables_json: expected a JSON object, got null"),
    "variables-empty": (inference_event(prompt={"variables_json": ""}),
                        "InferenceRecorded.prompt.variables_json: not valid JSON"),
    "extras-truncated": (inference_event(params={"extras_json": '{"logprobs": tru'}),
                         "InferenceRecorded.params.extras_json: not valid JSON"),
    "extras-a-string": (inference_event(params={"extras_json": '"x"'}),
                        "InferenceRecorded.params.extras_json: expected a JSON object, got a string"),
    "structured-not-json": (inference_event(output={"structured_json": "peak 4210 MW"}),
                            "InferenceRecorded.output.structured_json: not valid JSON"),
    "structured-nan": (inference_event(output={"structured_json": '{"mw": NaN}'}),
                       "InferenceRecorded.output.structured_json: not valid JSON"),
    "structured-too-deep": (inference_event(output={"structured_json": "[" * 200 + "]" * 200}),
                            "InferenceRecorded.output.structured_json: nested deeper than"),
    "structured-deeper-than-the-parser": (inference_event(output={"structured_json": "[" * 5000 + "]" * 5000}),
                                          "InferenceRecorded.output.structured_json: nested deeper than"),
}


@pytest.mark.parametrize(("record", "message"), BAD_JSON.values(), ids=list(BAD_JSON))
def test_json_text_fields_must_hold_json_the_reader_can_show(record: dict[str, Any], message: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        check_event(decode(encode("InferenceRecorded", record)))
    assert message in str(caught.value)


@pytest.mark.parametrize("structured", [None, "null", "42", '"text"', "[1,2]", '{"a":{"b":[true]}}',
                                        "[" * 60 + "]" * 60])
def test_structured_output_may_be_any_json_value_or_absent(structured: str | None) -> None:
    check_event(decode(encode("InferenceRecorded", inference_event(
        output={"structured_json": structured}, prompt={"variables_json": "{}"}, params={"extras_json": "{}"}))))


def test_check_event_accepts_realistic_events_at_the_limits() -> None:
    for name, record in [("InferenceRecorded", inference_event(feature="f" * 256, trace_id="t" * 128)),
                         ("OutputConsumed", consumed_event("out_x", consumer="c" * 256)),
                         ("BundleRegistered", bundle_event()), ("AliasMoved", alias_event("b" * 64))]:
        check_event(decode(encode(name, record)))
        check_fits(decode(encode(name, record)))
