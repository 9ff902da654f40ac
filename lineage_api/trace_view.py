"""Terminal rendering of a traced output and of output listings (rich)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree


def render_trace(console: Console, r: dict[str, Any], graph: dict[str, Any]) -> None:
    status_style = "green" if r["status"] == "OK" else "red"
    head = Text.assemble(
        (r["output_id"], "bold"), "  ", (r["status"], status_style), f"  {r['feature']}  {r['occurred_at']}",
        f"  tenant {r['tenant']}",
    )
    console.print(Panel(head, title="output", expand=False))
    console.print(_facts(r))
    console.print(_prompt(r["prompt"]))
    if r["retrieval"] is not None:
        console.print(_documents(r["retrieval"]))
    console.print(_result(r))
    if r["attempts"]:
        console.print(_attempts(r["attempts"]))
    console.print(_chain(r, graph))


def _facts(r: dict[str, Any]) -> Table:
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold cyan")
    t.add_column()
    m, b, u, p = r["model"], r["bundle"], r["usage"], r["params"]
    t.add_row("model", f"{m['provider']} requested {m['requested']} served {m['served']}"
                       + (f" fingerprint {m['fingerprint']}" if m["fingerprint"] else ""))
    if b is not None:
        t.add_row("bundle", f"{b['name']} {b['version']}  {b['bundle_id']}"
                            + ("" if b["registered"] else "  (not registered)"))
    shown = {k: v for k, v in p.items() if v not in (None, [], {})}
    t.add_row("params", json.dumps(shown, ensure_ascii=False))
    t.add_row("usage", f"{u['prompt_tokens']} prompt + {u['completion_tokens']} completion tokens"
                       f" ({u['cached_tokens']} cached)")
    t.add_row("cost", f"${r['cost_usd_micros'] / 1e6:.6f}")
    t.add_row("latency", f"{r['latency_ms']:.0f} ms")
    if r["rollout"] is not None:
        ro = r["rollout"]
        t.add_row("rollout", f"arm {ro['arm']} alias {ro['alias']} weight {ro['weight']}")
    c = r["classification"]
    t.add_row("retention", f"{c['retention_class']}" + ("  PII" if c["pii"] else ""))
    t.add_row("trace", str(r["trace_id"]))
    t.add_row("log", f"partition {r['log_position']['partition']} offset {r['log_position']['offset']}")
    return t


def _prompt(p: dict[str, Any]) -> Panel:
    parts: list[Any] = [Text(f"{p['template_id']} v{p['template_version']}  sha256 {p['template_sha256'][:16]}…",
                             style="dim")]
    if p["variables"]:
        parts.append(Text("variables " + json.dumps(p["variables"], ensure_ascii=False)))
    for m in p["messages"]:
        parts.append(Text.assemble((f"{m['role']}: ", "bold"), _clip(m["content"], 600)))
    return Panel(Group(*parts), title="prompt", expand=False)


def _documents(retrieval: dict[str, Any]) -> Table:
    t = Table(title=f"retrieved context ({retrieval['config_id']}) query: {_clip(retrieval['query'], 80)}",
              title_justify="left")
    for col in ("doc_id", "version", "source", "score", "sha256"):
        t.add_column(col)
    for d in retrieval["documents"]:
        score = "" if d["score"] is None else f"{d['score']:.3f}"
        t.add_row(d["doc_id"], d["version"], d["source"], score, d["content_sha256"][:16] + "…")
    return t


def _result(r: dict[str, Any]) -> Panel:
    o = r["output"]
    parts: list[Any] = []
    if o["text"]:
        parts.append(Text(_clip(o["text"], 800)))
    if o["structured"] is not None:
        parts.append(Text(_clip(json.dumps(o["structured"], ensure_ascii=False), 800), style="cyan"))
    if r["error"]:
        parts.append(Text(f"{r['error']['type']}: {r['error']['message']}", style="red"))
    parts.append(Text(f"finish reason {o['finish_reason']}", style="dim"))
    return Panel(Group(*parts), title="output", expand=False)


def _attempts(attempts: list[dict[str, Any]]) -> Table:
    t = Table(title="provider attempts", title_justify="left")
    for col in ("#", "provider", "model", "status", "latency", "error"):
        t.add_column(col)
    for i, a in enumerate(attempts, 1):
        t.add_row(str(i), a["provider"], a["model"], a["status"], f"{a['latency_ms']:.0f} ms", a["error"] or "")
    return t


def _chain(r: dict[str, Any], graph: dict[str, Any]) -> Tree:
    tree = Tree(Text(f"lineage (depth {graph['depth']})", style="bold"))
    labels = {n["id"]: n.get("label", n["id"]) for n in graph["nodes"]}
    up = tree.add("upstream")
    for e in graph["edges"]:
        if e["target"] == graph["root"]:
            up.add(f"[cyan]{e['source'].partition(':')[0]}[/] {labels[e['source']]}  ({e['kind']})")
    down = tree.add("downstream")
    for e in graph["edges"]:
        if e["source"] == graph["root"]:
            down.add(f"[cyan]{e['target'].partition(':')[0]}[/] {labels[e['target']]}  ({e['kind']})")
    for c in r["consumers"]:
        down.add(f"consumed by {c['consumer']} ref {c['consumer_ref']} at {c['occurred_at']}"
                 + (f" for {c['purpose']}" if c["purpose"] else ""))
    if graph["truncated"]:
        tree.add("[yellow]graph truncated; use --json or the API with a smaller depth[/]")
    return tree


def render_outputs(console: Console, items: list[dict[str, Any]], next_cursor: str | None) -> None:
    t = Table()
    t.add_column("output_id", no_wrap=True, min_width=30)
    t.add_column("occurred (UTC)", no_wrap=True)
    for col in ("feature", "status", "model served", "cost $", "latency ms"):
        t.add_column(col)
    for i in items:
        when = i["occurred_at"][:19].replace("T", " ")
        t.add_row(i["output_id"], when, i["feature"], i["status"], i["model_served"],
                  f"{i['cost_usd_micros'] / 1e6:.4f}", f"{i['latency_ms']:.0f}")
    console.print(t)
    if next_cursor:
        console.print(f"more: --cursor {next_cursor}")
    elif not items:
        console.print("no outputs match")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
