"""The lineage index contract, reading side: listing filters, paging, lookups, lineage graphs and rebuilding
the index from the log, the same on every backend (SQLite, PostgreSQL). The writing side is in
test_index_contract.py; the shared base class and helpers in index_support.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from producers.memory_log import MemoryEventLog
from schemas.errors import InvalidRequestError, NotFoundError
from streams import tables as t
from streams.lineage import lineage_graph
from streams.reader import IndexReader, OutputFilter
from streams.store import open_engine
from tests.contract.index_support import IndexContract, OnPostgres, OnSqlite, all_pages, snapshot
from tests.factories import GARBAGE, WORLD_START, World, log_values, micros

T0, MIN = WORLD_START, timedelta(minutes=1)


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


class IndexReadContract(IndexContract):
    """Listing, paging, lookups, lineage graphs and rebuilds."""

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


class TestSqliteIndexReads(OnSqlite, IndexReadContract):
    pass


class TestPostgresIndexReads(OnPostgres, IndexReadContract):
    pass
