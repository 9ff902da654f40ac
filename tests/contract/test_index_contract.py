"""The lineage index contract, writing side: every index backend (SQLite, PostgreSQL) passes the same suite,
driven through the public API (open_engine, IndexStore, EmbeddedRunner over a MemoryEventLog, IndexReader,
lineage_graph). Recording, idempotency, transactions and dead letters here; listing, paging, lineage graphs and
rebuilds in test_index_contract_reads.py; the shared base class and helpers in index_support.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from sqlalchemy import Engine, select, text

from producers.memory_log import MemoryEventLog
from schemas.errors import IndexError_, NotFoundError
from streams import tables as t
from streams.lineage import lineage_graph
from streams.projector import RowBatch, SourceEvent, project
from streams.reader import IndexReader, OutputFilter
from streams.runner import EmbeddedRunner
from streams.store import IndexStore, open_engine
from tests.contract.index_support import (
    IndexContract,
    OnPostgres,
    OnSqlite,
    all_pages,
    lineage_counts,
    snapshot,
    table_counts,
)
from tests.factories import (
    GARBAGE,
    Event,
    World,
    alias_event,
    build_world,
    bundle_event,
    consumed_event,
    decode,
    document,
    inference_event,
    log_values,
    unknown_schema_bytes,
)

# Valid Avro whose values do not fit an index column (length limits, NUL in text), and the field the
# dead letter's reason must name.
UNFIT: dict[str, tuple[str, Callable[[], dict[str, Any]], str]] = {
    "feature-300": ("InferenceRecorded", lambda: inference_event(feature="f" * 300), "feature"),
    "feature-nul": ("InferenceRecorded", lambda: inference_event(feature="load\x00forecast"), "feature"),
    "trace-200": ("InferenceRecorded", lambda: inference_event(trace_id="t" * 200), "trace_id"),
    "rollout-arm-40": ("InferenceRecorded", lambda: inference_event(rollout={"arm": "canary-" + "x" * 33}), "arm"),
    "doc-id-600": ("InferenceRecorded", lambda: inference_event(retrieval={"documents": [document("d" * 600)]}),
                   "doc"),
    "fingerprint-300": ("InferenceRecorded", lambda: inference_event(model={"fingerprint": "f" * 300}),
                        "fingerprint"),
    "template-version-200": ("InferenceRecorded", lambda: inference_event(prompt={"template_version": "v" * 200}),
                             "template_version"),
    "purpose-600": ("OutputConsumed", lambda: consumed_event("out_x", purpose="p" * 600), "purpose"),
    "approver-300": ("AliasMoved", lambda: alias_event("b" * 64, approver="a" * 300), "approver"),
    "bundle-model-300": ("BundleRegistered", lambda: bundle_event(model_name="m" * 300), "model_name"),
}


class IndexWriteContract(IndexContract):
    """Recording, idempotency, transactions and dead letters."""

    def test_applied_events_make_the_full_record_queryable(self, engine: Engine, world: World) -> None:
        self.index(engine, world.events)
        reader = IndexReader(engine)
        b, rec = world.b, reader.output(world.b["output_id"])
        assert (rec["output_id"], rec["feature"], rec["trace_id"]) == (b["output_id"], b["feature"], "trace-north")
        assert rec["occurred_at"] == "2026-11-03T06:02:00Z"
        assert rec["prompt"]["variables"] == {"region": "north", "horizon_h": 24}
        assert rec["prompt"]["messages"] == b["prompt"]["messages"]
        assert rec["retrieval"]["documents"] == b["retrieval"]["documents"]
        assert rec["model"] == b["model"]
        assert rec["params"]["extras"] == {"logprobs": False} and "extras_json" not in rec["params"]
        assert (rec["params"]["temperature"], rec["params"]["seed"], rec["params"]["stop"]) == (0.2, 7, ["</forecast>"])
        assert rec["output"]["structured"] == {"region": "north", "peak_mw": 4210, "hours": [3900, 4210]}
        assert (rec["output"]["text"], rec["usage"]) == (b["output"]["text"], b["usage"])
        assert (rec["cost_usd_micros"], rec["latency_ms"], rec["status"]) == (4210, 812.5, "OK")
        assert rec["attempts"] == b["attempts"]
        assert (rec["parents"], rec["children"]) == ([world.a["output_id"]], [world.c["output_id"]])
        assert {k: rec["bundle"][k] for k in ("registered", "bundle_id", "registered_by", "canonical_json")} == {
            "registered": True, "bundle_id": world.bundle["bundle_id"], "registered_by": "release-bot",
            "canonical_json": world.bundle["canonical_json"]}
        consumers = reader.output(world.c["output_id"])["consumers"]
        assert [(x["consumer"], x["consumer_ref"], x["purpose"]) for x in consumers] == [
            ("dispatch-planner", "plan-2026-11-04-north", "day-ahead dispatch")]
        assert reader.output(world.a["output_id"])["bundle"] is None
        failed = reader.output(world.others[2]["output_id"])
        assert failed["bundle"]["registered"] is False and failed["error"]["message"] == "failure 2"

    def test_the_same_records_appended_twice_are_indexed_once(self, engine: Engine, world: World) -> None:
        log = MemoryEventLog()
        log.append(log_values(world.events))
        self.index(engine, log)
        once = lineage_counts(engine)  # the chain has a leaf per log record, copies included
        log.append(log_values(world.events))
        runner = self.index(engine, log)
        assert runner.catch_up() == 0 and (runner.applied, runner.dead) == (len(world.events), 0)
        assert lineage_counts(engine) == once
        assert len(IndexReader(engine).output(world.c["output_id"])["consumers"]) == 1

    def test_rewinding_the_position_replays_without_duplicates(self, engine: Engine, world: World) -> None:
        log = MemoryEventLog()
        log.append(log_values(world.events))
        runner = self.index(engine, log)
        before = snapshot(engine)
        runner.store.apply(RowBatch(), partition=0, next_offset=0)
        assert runner.lag() == len(world.events)
        self.index(engine, log, batch_size=3)
        assert snapshot(engine) == before

    def test_a_failed_position_write_leaves_no_rows_of_that_batch(self, engine: Engine, world: World) -> None:
        log = MemoryEventLog()
        log.append(log_values(world.events[:4]))
        self.index(engine, log, batch_size=100)
        before = table_counts(engine)
        log.append(log_values(world.events[4:]))
        store = IndexStore(engine)
        broken = text("INSERT INTO no_such_table (projector) VALUES (:projector)")
        with mock.patch.object(store, "_position_stmt", broken), pytest.raises(IndexError_, match="no_such_table"):
            EmbeddedRunner(log, store, batch_size=100).run_once()
        assert table_counts(engine) == before
        assert store.position() == 4
        with pytest.raises(NotFoundError):
            IndexReader(engine).output(world.others[0]["output_id"])
        self.index(engine, log)
        assert IndexReader(engine).stats()["outputs"] == len(world.outputs)

    def test_undecodable_records_become_dead_letters_and_the_rest_is_indexed(self, engine: Engine) -> None:
        good = [inference_event(), inference_event()]
        log = MemoryEventLog()
        log.append([log_values([("InferenceRecorded", good[0])])[0], (None, GARBAGE), (b"k", unknown_schema_bytes(99)),
                    log_values([("InferenceRecorded", good[1])])[0]])
        runner = self.index(engine, log, batch_size=10)
        assert (runner.applied, runner.dead) == (2, 2)
        reader = IndexReader(engine)
        assert [reader.output(g["output_id"])["output_id"] for g in good] == [g["output_id"] for g in good]
        with engine.connect() as conn:
            rows = conn.execute(select(t.dead_letters).order_by(t.dead_letters.c.log_offset)).mappings().all()
        assert [(r["log_offset"], bytes(r["raw"])) for r in rows] == [(1, GARBAGE), (2, unknown_schema_bytes(99))]
        assert "magic" in rows[0]["reason"] and "unknown schema id 99" in rows[1]["reason"]
        listed = reader.dead_letters()
        assert {(d["log_offset"], d["size"]) for d in listed} == {(1, len(GARBAGE)), (2, 9)}

    @pytest.mark.parametrize("case", UNFIT, ids=list(UNFIT))
    def test_a_valid_event_the_columns_cannot_hold_is_dead_lettered_naming_the_field(
        self, engine: Engine, case: str
    ) -> None:
        """Same outcome on every backend: SQLite would store any length, PostgreSQL refuses it."""
        name, build, field = UNFIT[case]
        good = [inference_event(), inference_event()]
        self.index(engine, [("InferenceRecorded", good[0]), (name, build()), ("InferenceRecorded", good[1])])
        reader = IndexReader(engine)
        assert [reader.output(g["output_id"])["output_id"] for g in good] == [g["output_id"] for g in good]
        dead = {d["log_offset"]: d["reason"] for d in reader.dead_letters()}
        assert list(dead) == [1] and field in dead[1], dead

    def test_an_output_recorded_again_by_another_event_is_dead_lettered_and_attaches_nothing(
        self, engine: Engine, world: World
    ) -> None:
        """Outputs are written once (ON CONFLICT DO NOTHING): a second event claiming output C must not slip
        its parents and documents in as C's lineage."""
        log = MemoryEventLog()
        log.append(log_values(world.events))
        self.index(engine, log)
        before, counts = snapshot(engine), lineage_counts(engine)
        forged = inference_event(output_id=world.c["output_id"], feature="forged",
                                 parent_output_ids=[world.others[0]["output_id"]],
                                 retrieval={"documents": [document("forged/evidence")]},
                                 prompt={"template_id": "forged-template"})
        log.append(log_values([("InferenceRecorded", forged)]))
        runner = self.index(engine, log)
        assert (runner.applied, runner.dead) == (0, 1)
        after = snapshot(engine)
        assert lineage_counts(engine) == {**counts, "dead_letters": counts["dead_letters"] + 1}
        assert {k: v for k, v in after.items() if k not in ("dead", "stats", "rows")} == {
            k: v for k, v in before.items() if k not in ("dead", "stats", "rows")}
        [letter] = after["dead"]
        assert letter["log_offset"] == len(world.events)
        assert letter["reason"] == (f"InferenceRecorded.output_id {world.c['output_id']!r} is already recorded by "
                                    f"event {world.c['event_id']}; an output is recorded once")

    def test_within_one_batch_the_first_recording_of_an_output_wins(self, engine: Engine) -> None:
        other, first = inference_event(), inference_event()
        rival = inference_event(output_id=first["output_id"], feature="rival",
                                parent_output_ids=[other["output_id"]])
        events: list[Event] = [("InferenceRecorded", e) for e in (other, first, first, rival, first)]
        runner = self.index(engine, events, batch_size=10)
        assert (runner.applied, runner.dead) == (4, 1), "the repeats of `first` are re-deliveries"
        reader = IndexReader(engine)
        shown = reader.output(first["output_id"])
        assert (shown["event_id"], shown["feature"], shown["parents"]) == (first["event_id"], first["feature"], [])
        assert reader.output(other["output_id"])["children"] == []
        assert [(d["log_offset"], d["reason"]) for d in reader.dead_letters()] == [
            (3, f"InferenceRecorded.output_id {first['output_id']!r} is already recorded by event "
                f"{first['event_id']}; an output is recorded once")]
        assert lineage_counts(engine)["outputs"] == 2

    @pytest.mark.parametrize("same_batch", [False, True], ids=["later-batch", "same-batch"])
    def test_an_event_id_reused_with_other_content_is_dead_lettered_and_attaches_nothing(
        self, engine: Engine, world: World, same_batch: bool
    ) -> None:
        """Re-delivering an event is harmless; the same event ID and output carrying other parents is not the
        same event, and must not add lineage either."""
        variant = {**world.c, "parent_output_ids": [world.others[0]["output_id"]], "feature": "variant"}
        log = MemoryEventLog()
        log.append(log_values([*world.events, ("InferenceRecorded", world.c)]))
        if not same_batch:
            self.index(engine, log)
        log.append(log_values([("InferenceRecorded", variant)]))
        self.index(engine, log, batch_size=100)
        reader = IndexReader(engine)
        shown = reader.output(world.c["output_id"])
        assert (shown["feature"], shown["parents"]) == (world.c["feature"], [world.b["output_id"]])
        assert reader.output(world.others[0]["output_id"])["children"] == []
        assert [(d["log_offset"], d["reason"]) for d in reader.dead_letters()] == [
            (len(world.events) + 1, f"InferenceRecorded event {world.c['event_id']} is already recorded for output "
                                    f"{world.c['output_id']!r} with other content; an event is recorded once")]

    def test_outputs_already_recorded_are_found_past_one_lookup_chunk(self, engine: Engine) -> None:
        """The lookup is split into queries of at most 500 IDs (SQLite's parameter limit can be 999)."""
        originals = [inference_event() for _ in range(1100)]
        log = MemoryEventLog()
        log.append(log_values([("InferenceRecorded", o) for o in originals]))
        self.index(engine, log, batch_size=2000)
        rivals = [inference_event(output_id=o["output_id"], feature="rival") for o in originals]
        log.append(log_values([("InferenceRecorded", r) for r in rivals]))
        runner = self.index(engine, log, batch_size=2000)
        assert (runner.applied, runner.dead) == (0, 1100)
        assert all_pages(IndexReader(engine), OutputFilter(feature="rival")) == []

    def test_an_indexed_output_with_unreadable_json_fields_is_shown_with_the_raw_text(self, engine: Engine) -> None:
        """An index built before the projector checked these fields may hold them: the record must still be
        readable (and renderable as JSON), with the text as recorded instead of the parsed value."""
        deep = "[" * 300 + "]" * 300
        legacy = inference_event(prompt={"variables_json": "{region: north}"}, params={"extras_json": "NaN"},
                                 output={"structured_json": deep})
        huge = inference_event(prompt={"variables_json": '{"n": 123456789012345678901234567890}'})
        events = [("InferenceRecorded", legacy), ("InferenceRecorded", huge)]
        raws = [raw for _, raw in log_values(events)]
        store = IndexStore(engine)
        store.apply(project([SourceEvent(0, i, raw, decode(raw)) for i, raw in enumerate(raws)]),
                    partition=0, next_offset=2)
        reader = IndexReader(engine)

        shown = reader.output(legacy["output_id"])
        assert (shown["prompt"]["variables"], shown["prompt"]["variables_raw"]) == (None, "{region: north}")
        assert (shown["params"]["extras"], shown["params"]["extras_raw"]) == (None, "NaN")
        assert (shown["output"]["structured"], shown["output"]["structured_raw"]) == (None, deep)
        assert "variables_json" not in shown["prompt"] and "structured_json" not in shown["output"]
        assert shown["output"]["text"] == legacy["output"]["text"]
        orjson.dumps(shown)  # what the API answers with

        number = reader.output(huge["output_id"])["prompt"]["variables"]
        assert number == {"n": 1.2345678901234568e29}
        orjson.dumps(number)


class TestSqliteIndex(OnSqlite, IndexWriteContract):
    pass


class TestPostgresIndex(OnPostgres, IndexWriteContract):
    pass


def test_a_consumption_reusing_an_event_id_attaches_no_consumer(tmp_path: Path) -> None:
    """Regression: the second event's consumption row was ignored, but its consumer edge was kept."""
    world = build_world()
    engine = open_engine(f"sqlite:///{tmp_path / 'index.db'}")
    log = MemoryEventLog()
    log.append(log_values(world.events))
    first = consumed_event(world.a["output_id"], consumer="dispatch-planner")
    forged = {**first, "output_id": world.b["output_id"], "consumer": "shadow-system"}
    log.append(log_values([("OutputConsumed", first), ("OutputConsumed", forged)]))
    EmbeddedRunner(log, IndexStore(engine)).catch_up()
    graph = lineage_graph(engine, world.b["output_id"], direction="downstream", depth=1)
    assert "consumer:shadow-system" not in {n["id"] for n in graph["nodes"]}
    engine.dispose()
