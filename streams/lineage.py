"""Lineage graphs around an output: typed nodes (output:, bundle:, prompt:, document:, model:, consumer:)
and the edges between them, walked breadth-first one batched query per level and direction.

Upstream is what went into an output (bundle, prompt, model, documents, parent outputs); downstream is what
used it (child outputs, consumers). Only output nodes are expanded further: a bundle or document feeds
thousands of outputs, and walking into them would answer a different question.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from schemas.errors import IndexError_, InvalidRequestError, NotFoundError
from streams import tables as t
from streams.reader import iso

Direction = Literal["upstream", "downstream", "both"]
MAX_DEPTH = 10
DEFAULT_MAX_NODES = 1000


def lineage_graph(
    engine: Engine, output_id: str, *, direction: str = "upstream", depth: int = 3,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> dict[str, Any]:
    if direction not in ("upstream", "downstream", "both"):
        raise InvalidRequestError(f"direction must be upstream, downstream or both, got {direction!r}")
    if not 1 <= depth <= MAX_DEPTH:
        raise InvalidRequestError(f"depth must be between 1 and {MAX_DEPTH}, got {depth}")
    root = "output:" + output_id
    try:
        with engine.connect() as conn:
            if not conn.execute(select(t.outputs.c.output_id).where(t.outputs.c.output_id == output_id)).first():
                raise NotFoundError("output", output_id)
            ways = [way for way in ("upstream", "downstream") if direction in (way, "both")]
            edges, nodes, truncated = _walk(conn, root, ways, depth, max_nodes)
            return {
                "root": root,
                "direction": direction,
                "depth": depth,
                "truncated": truncated,
                "nodes": _describe(conn, nodes),
                "edges": [{"source": s, "target": d, "kind": k} for (s, d), k in sorted(edges.items())],
            }
    except SQLAlchemyError as exc:
        raise IndexError_(f"cannot read the lineage index: {exc}") from exc


def _walk(
    conn: Connection, root: str, ways: list[str], depth: int, max_nodes: int
) -> tuple[dict[tuple[str, str], str], set[str], bool]:
    """Edges and nodes within `depth` steps, level by level in each direction in turn, so a graph cut at
    `max_nodes` keeps the nearest nodes on both sides. A node is added only while there is room; an edge
    only between nodes that are in. Truncated when a node was left out for lack of room."""
    edges: dict[tuple[str, str], str] = {}
    seen, frontiers, truncated = {root}, {way: [root] for way in ways}, False
    for _ in range(depth):
        for way in ways:
            outputs = [n.removeprefix("output:") for n in frontiers[way] if n.startswith("output:")]
            frontiers[way] = []
            if not outputs:
                continue
            found = _upstream(conn, outputs) if way == "upstream" else _downstream(conn, outputs)
            for src, dst, kind in sorted(found):  # sorted: the same cut every time
                new = src if way == "upstream" else dst
                if new not in seen:
                    if len(seen) >= max_nodes:
                        truncated = True
                        continue
                    seen.add(new)
                    frontiers[way].append(new)
                edges[(src, dst)] = kind
        if truncated or not any(frontiers.values()):
            break
    return edges, seen, truncated


def _upstream(conn: Connection, output_ids: list[str]) -> list[tuple[str, str, str]]:
    o = t.outputs.c
    found: list[tuple[str, str, str]] = []
    for row in conn.execute(
        select(o.output_id, o.bundle_id, o.prompt_key, o.model_key).where(o.output_id.in_(output_ids))
    ):
        dst = "output:" + row.output_id
        if row.bundle_id:
            found.append(("bundle:" + row.bundle_id, dst, "configured"))
        found.append(("prompt:" + row.prompt_key, dst, "prompted"))
        found.append(("model:" + row.model_key, dst, "generated"))
    e = t.edges.c
    dsts = ["output:" + i for i in output_ids]
    found.extend((r.src, r.dst, r.kind) for r in conn.execute(select(e.src, e.dst, e.kind).where(e.dst.in_(dsts))))
    return found


def _downstream(conn: Connection, output_ids: list[str]) -> list[tuple[str, str, str]]:
    e, c = t.edges.c, t.consumptions.c
    srcs = ["output:" + i for i in output_ids]
    found = [(r.src, r.dst, r.kind) for r in conn.execute(select(e.src, e.dst, e.kind).where(e.src.in_(srcs)))]
    found.extend(("output:" + r.output_id, "consumer:" + r.consumer, "consumed_by") for r in conn.execute(
        select(c.output_id, c.consumer).where(c.output_id.in_(output_ids)).distinct()))
    return found


def _describe(conn: Connection, node_ids: Iterable[str]) -> list[dict[str, Any]]:
    by_type: dict[str, list[str]] = {}
    for node in node_ids:
        kind, _, key = node.partition(":")
        by_type.setdefault(kind, []).append(key)
    attrs: dict[str, dict[str, Any]] = {}
    for kind, keys in by_type.items():
        attrs.update(_ATTRS[kind](conn, keys))
    return [
        {"id": node, "type": node.partition(":")[0], **attrs.get(node, {"label": node.partition(":")[2]})}
        for node in sorted(set(node_ids))
    ]


def _outputs(conn: Connection, keys: list[str]) -> dict[str, dict[str, Any]]:
    o = t.outputs.c
    rows = conn.execute(select(o.output_id, o.feature, o.status, o.occurred_at, o.model_served, o.bundle_id)
                        .where(o.output_id.in_(keys)))
    return {"output:" + r.output_id: {"label": f"{r.feature} {r.output_id}", "feature": r.feature,
                                      "status": r.status, "occurred_at": iso(r.occurred_at),
                                      "model_served": r.model_served} for r in rows}


def _bundles(conn: Connection, keys: list[str]) -> dict[str, dict[str, Any]]:
    b = t.bundles.c
    rows = conn.execute(select(b.bundle_id, b.name, b.version, b.model_name).where(b.bundle_id.in_(keys)))
    return {"bundle:" + r.bundle_id: {"label": f"{r.name} {r.version}", "name": r.name, "version": r.version,
                                      "model": r.model_name} for r in rows}


def _prompts(conn: Connection, keys: list[str]) -> dict[str, dict[str, Any]]:
    p = t.prompts.c
    rows = conn.execute(select(p.prompt_key, p.template_id, p.template_version, p.template_sha256)
                        .where(p.prompt_key.in_(keys)))
    return {"prompt:" + r.prompt_key: {"label": f"{r.template_id} v{r.template_version}",
                                       "template_id": r.template_id, "template_version": r.template_version,
                                       "template_sha256": r.template_sha256} for r in rows}


def _documents(conn: Connection, keys: list[str]) -> dict[str, dict[str, Any]]:
    d = t.documents.c
    rows = conn.execute(select(d.document_key, d.doc_id, d.version, d.source, d.content_sha256)
                        .where(d.document_key.in_(keys)))
    return {"document:" + r.document_key: {"label": f"{r.doc_id} ({r.version})", "doc_id": r.doc_id,
                                           "version": r.version, "source": r.source,
                                           "content_sha256": r.content_sha256} for r in rows}


def _models(conn: Connection, keys: list[str]) -> dict[str, dict[str, Any]]:
    m = t.models.c
    rows = conn.execute(select(m.model_key, m.provider, m.served, m.fingerprint).where(m.model_key.in_(keys)))
    return {"model:" + r.model_key: {"label": f"{r.provider}/{r.served}", "provider": r.provider,
                                     "served": r.served, "fingerprint": r.fingerprint} for r in rows}


def _consumers(conn: Connection, keys: list[str]) -> dict[str, dict[str, Any]]:
    return {"consumer:" + k: {"label": k} for k in keys}


_ATTRS = {"output": _outputs, "bundle": _bundles, "prompt": _prompts, "document": _documents,
          "model": _models, "consumer": _consumers}
