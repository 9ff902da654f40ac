"""The lineage index contract: every index backend (SQLite, PostgreSQL) passes the same suite, driven through
the public API (open_engine, IndexStore, EmbeddedRunner over a MemoryEventLog, IndexReader, lineage_graph)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from sqlalchemy import Engine, func, select, text

from producers.memory_log import MemoryEventLog
from schemas.errors import IndexError_, InvalidRequestError, NotFoundError
from streams import tables as t
from streams.lineage import lineage_graph
from streams.projector import RowBatch, SourceEvent, project
from streams.reader import IndexReader, OutputFilter
from streams.runner import EmbeddedRunner
from streams.store import IndexStore, open_engine
from tests.factories import (
    GARBAGE,
    WORLD_START,
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
    micros,
    unknown_schema_bytes,
)

T0, MIN = WORLD_START, timedelta(minutes=1)


def all_pages(reader: IndexReader, flt: OutputFilter, limit: int = 50) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(10_000):
        page = reader.outputs(flt, cursor=cursor, limit=limit)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        assert len(page.items) == limit, "only the last page may be short"
        cursor = page.next_cursor
    raise AssertionError("paging did not terminate")


def table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in t.metadata.sorted_tables}


LINEAGE_TABLES = (t.outputs, t.bundles, t.prompts, t.documents, t.models, t.consumers, t.consumptions, t.edges,
                  t.aliases, t.dead_letters)


def lineage_counts(engine: Engine) -> dict[str, int]:
    """Row counts of the tables the projectors write (not the integrity chain, which grows with every record)."""
    with engine.connect() as conn:
        return {table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in LINEAGE_TABLES}


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything a client can ask the index, with wall-clock fields left out."""
    reader = IndexReader(engine)
    listing = all_pages(reader, OutputFilter(), limit=4)
    ids = [item["output_id"] for item in listing]
    return {
        "listing": listing,
        "records": {i: reader.output(i) for i in ids},
        "graphs": {i: lineage_graph(engine, i, direction="both", depth=3) for i in ids},
        "stats": reader.stats(),
        "dead": [{k: v for k, v in d.items() if k != "recorded_at"} for d in reader.dead_letters()],
        "rows": table_counts(engine),
    }


def node(kind: str, rec: dict[str, Any]) -> str:
    if kind == "output":
        return f"output:{rec['output_id']}"
    if kind == "prompt":
        p = rec["prompt"]
        return f"prompt:{p['template_id']}@{p['template_version']}#{p['template_sha256'][:12]}"
    m = rec["model"]
    return f"model:{m['provider']}/{m['served']}" + (f"@{m['fingerprint']}" if m["fingerprint"] else "")


def edges_into(rec: dict[str, Any]) -> set[tuple[str, str, str]]:
    """What went straight into one output: its bundle, prompt, model, documents and parent outputs."""
    dst = node("output", rec)
    edges = {(node("prompt", rec), dst, "prompted"), (node("model", rec), dst, "generated")}
    if rec["bundle"] is not None:
        edges.add(("bundle:" + rec["bundle"]["bundle_id"], dst, "configured"))
    for d in (rec["retrieval"] or {"documents": []})["documents"]:
        edges.add((f"document:{d['doc_id']}@{d['version']}#{d['content_sha256'][:12]}", dst, "retrieved"))
    edges.update(("output:" + p, dst, "fed") for p in rec["parent_output_ids"])
    return edges


def fed(src: dict[str, Any], dst: dict[str, Any]) -> tuple[str, str, str]:
    return node("output", src), node("output", dst), "fed"


def consumed(w: World) -> tuple[str, str, str]:
    return node("output", w.c), "consumer:dispatch-planner", "consumed_by"


GRAPHS: dict[str, tuple[str, str, int, Callable[[World], set[tuple[str, str, str]]]]] = {
    "C-up-1": ("c", "upstream", 1, lambda w: edges_into(w.c)),
    "C-up-2": ("c", "upstream", 2, lambda w: edges_into(w.c) | edges_into(w.b)),
    "C-up-3": ("c", "upstream", 3, lambda w: edges_into(w.c) | edges_into(w.b) | edges_into(w.a)),
    "A-down-1": ("a", "downstream", 1, lambda w: {fed(w.a, w.b)}),
    "A-down-2": ("a", "downstream", 2, lambda w: {fed(w.a, w.b), fed(w.b, w.c)}),
    "A-down-3": ("a", "downstream", 3, lambda w: {fed(w.a, w.b), fed(w.b, w.c), consumed(w)}),
    "C-down-3": ("c", "downstream", 3, lambda w: {consumed(w)}),
    "B-both-1": ("b", "both", 1, lambda w: edges_into(w.b) | {fed(w.b, w.c)}),
    "B-both-2": ("b", "both", 2, lambda w: edges_into(w.b) | edges_into(w.a) | {fed(w.b, w.c), consumed(w)}),
    "B-both-3": ("b", "both", 3, lambda w: edges_into(w.b) | edges_into(w.a) | {fed(w.b, w.c), consumed(w)}),
}

FILTERS: dict[str, tuple[OutputFilter, Callable[[World, dict[str, Any]], bool]]] = {
    "feature": (OutputFilter(feature="intraday-load"), lambda w, r: r["feature"] == "intraday-load"),
    "bundle": (OutputFilter(bundle_id="BUNDLE"), lambda w, r: (r["bundle"] or {}).get("bundle_id")
               == w.bundle["bundle_id"]),
    "model-served": (OutputFilter(model="gpt-4o-2024-11-20"),
                     lambda w, r: r["model"]["served"] == "gpt-4o-2024-11-20"),
    "model-requested": (OutputFilter(requested_model="claude-sonnet"),
                        lambda w, r: r["model"]["requested"] == "claude-sonnet"),
    "status": (OutputFilter(status="ERROR"), lambda w, r: r["status"] == "ERROR"),
    "trace": (OutputFilter(trace_id="trace-north"), lambda w, r: r["trace_id"] == "trace-north"),
    "since-until": (OutputFilter(since=T0 + 2 * MIN, until=T0 + 31 * MIN),
                    lambda w, r: micros(T0 + 2 * MIN) <= r["occurred_at"] < micros(T0 + 31 * MIN)),
    "naive-since": (OutputFilter(since=datetime(2026, 11, 3, 6, 24)),
                    lambda w, r: r["occurred_at"] >= micros(T0 + 24 * MIN)),
    "combined": (OutputFilter(feature="day-ahead-load", status="OK", model="gpt-4o-2024-08-06"),
                 lambda w, r: (r["feature"], r["status"], r["model"]["served"])
                 == ("day-ahead-load", "OK", "gpt-4o-2024-08-06")),
}


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


class IndexContract:
    """Subclassed once per backend; a subclass only provides the `index_url` fixture."""

    @pytest.fixture
    def index_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def engine(self, index_url: str) -> Iterator[Engine]:
        engine = open_engine(index_url)
        yield engine
        engine.dispose()

    @pytest.fixture
    def world(self) -> World:
        return build_world()

    def index(self, engine: Engine, events: list[Event] | MemoryEventLog, batch_size: int = 5) -> EmbeddedRunner:
        if isinstance(events, MemoryEventLog):
            log = events
        else:
            log = MemoryEventLog()
            log.append(log_values(events))
        runner = EmbeddedRunner(log, IndexStore(engine), batch_size=batch_size)
        runner.catch_up()
        assert runner.lag() == 0 and runner.store.position() == log.end_offset()
        return runner

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

    @pytest.mark.parametrize("case", FILTERS, ids=list(FILTERS))
    def test_listing_filters(self, engine: Engine, world: World, case: str) -> None:
        self.index(engine, world.events)
        flt, keep = FILTERS[case]
        if flt.bundle_id == "BUNDLE":
            flt = OutputFilter(bundle_id=world.bundle["bundle_id"])
        expected = sorted((r["output_id"] for r in world.outputs if keep(world, r)), reverse=True)
        assert 0 < len(expected) < len(world.outputs), "the case must select a proper subset"
        assert [i["output_id"] for i in all_pages(IndexReader(engine), flt, limit=2)] == expected

    @pytest.mark.parametrize("limit", [1, 3, 4, 12, 500])
    def test_paging_is_newest_first_and_visits_every_output_once(
        self, engine: Engine, world: World, limit: int
    ) -> None:
        self.index(engine, world.events)
        items = all_pages(IndexReader(engine), OutputFilter(), limit=limit)
        by_time = sorted(world.outputs, key=lambda r: r["occurred_at"], reverse=True)
        assert [i["output_id"] for i in items] == [r["output_id"] for r in by_time]
        assert items[0]["occurred_at"] == IndexReader(engine).output(items[0]["output_id"])["occurred_at"]

    @pytest.mark.parametrize("cursor", ["not a cursor", "zzzz", "!!!!", "-_-_" * 3],
                             ids=["spaces", "not-utf8", "no-base64-chars", "binary"])
    def test_a_bad_cursor_is_an_invalid_request(self, engine: Engine, world: World, cursor: str) -> None:
        self.index(engine, world.events)
        with pytest.raises(InvalidRequestError, match="cursor"):
            IndexReader(engine).outputs(OutputFilter(), cursor=cursor, limit=5)

    @pytest.mark.parametrize("limit", [0, -1, 501])
    def test_a_limit_out_of_range_is_an_invalid_request(self, engine: Engine, limit: int) -> None:
        with pytest.raises(InvalidRequestError, match="limit"):
            IndexReader(engine).outputs(OutputFilter(), limit=limit)

    def test_an_unknown_output_is_not_found_and_named(self, engine: Engine, world: World) -> None:
        self.index(engine, world.events)
        missing = "out_0000000000000000000000nope"
        with pytest.raises(NotFoundError, match=missing):
            IndexReader(engine).output(missing)
        with pytest.raises(NotFoundError, match=missing):
            lineage_graph(engine, missing)

    @pytest.mark.parametrize("case", GRAPHS, ids=list(GRAPHS))
    def test_lineage_graph(self, engine: Engine, world: World, case: str) -> None:
        self.index(engine, world.events)
        which, direction, depth, expect = GRAPHS[case]
        root: dict[str, Any] = getattr(world, which)
        graph = lineage_graph(engine, root["output_id"], direction=direction, depth=depth)
        edges = [(e["source"], e["target"], e["kind"]) for e in graph["edges"]]
        assert len(edges) == len(set(edges)) and set(edges) == expect(world)
        nodes = {n["id"]: n for n in graph["nodes"]}
        assert set(nodes) == {node("output", root)} | {s for s, _, _ in edges} | {d for _, d, _ in edges}
        assert all(n["type"] == i.partition(":")[0] for i, n in nodes.items())
        assert graph["root"] == node("output", root) and graph["truncated"] is False
        if (bundle := "bundle:" + world.bundle["bundle_id"]) in nodes:
            assert (nodes[bundle]["name"], nodes[bundle]["version"]) == ("load-forecaster", "2026.11.1")
        if node("output", world.a) in nodes:
            assert nodes[node("output", world.a)]["feature"] == "weather-summary"

    @pytest.mark.parametrize("direction", ["upstream", "downstream", "both"])
    def test_lineage_graph_never_has_more_nodes_than_max_nodes(
        self, engine: Engine, world: World, direction: str
    ) -> None:
        """Each cap from 1 node up to the whole graph: never more nodes than asked, every edge between nodes
        that are shown, truncated exactly when something was left out."""
        self.index(engine, world.events)
        root = world.b["output_id"]
        full = lineage_graph(engine, root, direction=direction, depth=3)
        whole = {n["id"] for n in full["nodes"]}
        all_edges = {(e["source"], e["target"], e["kind"]) for e in full["edges"]}
        assert full["truncated"] is False and len(whole) >= 3
        for cap in range(1, len(whole) + 2):
            graph = lineage_graph(engine, root, direction=direction, depth=3, max_nodes=cap)
            nodes = {n["id"] for n in graph["nodes"]}
            edges = {(e["source"], e["target"], e["kind"]) for e in graph["edges"]}
            assert len(nodes) <= cap, f"cap {cap}: {len(nodes)} nodes"
            assert node("output", world.b) in nodes and nodes <= whole and edges <= all_edges
            assert all(s in nodes and d in nodes for s, d, _ in edges), f"cap {cap}: an edge to a hidden node"
            assert graph["truncated"] is (cap < len(whole)), f"cap {cap}"
            if cap >= len(whole):
                assert graph == full

    def test_a_capped_graph_in_both_directions_keeps_the_nearest_nodes_of_each(
        self, engine: Engine, world: World
    ) -> None:
        """Walking level by level in both directions: a cap reached upstream still leaves room downstream."""
        self.index(engine, world.events)
        graph = lineage_graph(engine, world.b["output_id"], direction="both", depth=3, max_nodes=8)
        nodes = {n["id"] for n in graph["nodes"]}
        assert graph["truncated"] is True and len(nodes) == 8
        assert node("output", world.c) in nodes, "B's child is one step away downstream"
        assert node("output", world.a) in nodes, "B's parent is one step away upstream"

    @pytest.mark.parametrize(("direction", "depth"), [("sideways", 1), ("upstream", 0), ("both", 11)])
    def test_lineage_rejects_bad_direction_and_depth(
        self, engine: Engine, world: World, direction: str, depth: int
    ) -> None:
        self.index(engine, world.events)
        with pytest.raises(InvalidRequestError):
            lineage_graph(engine, world.a["output_id"], direction=direction, depth=depth)

    def test_replaying_the_log_into_a_fresh_index_gives_identical_answers(
        self, engine: Engine, index_url: str, world: World
    ) -> None:
        log = MemoryEventLog()
        log.append([*log_values(world.events[:6]), (None, GARBAGE), *log_values(world.events[6:])])
        self.index(engine, log, batch_size=3)
        first = snapshot(engine)
        assert first["stats"] == {"outputs": 12, "bundles": 1, "consumptions": 1, "dead_letters": 1}
        t.metadata.drop_all(engine)
        fresh = open_engine(index_url)
        try:
            assert IndexReader(fresh).stats()["outputs"] == 0
            self.index(fresh, log, batch_size=1000)
            assert snapshot(fresh) == first
        finally:
            fresh.dispose()


class TestSqliteIndex(IndexContract):
    @pytest.fixture
    def index_url(self, tmp_path: Any) -> str:
        return f"sqlite:///{tmp_path / 'index.db'}"


class TestPostgresIndex(IndexContract):
    @pytest.fixture
    def index_url(self, postgres_index_url: str) -> str:
        return postgres_index_url



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
