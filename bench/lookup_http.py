"""HTTP read latency on a large index: GET /v1/outputs/{id} and 3-level lineage walks, against GET /healthz.

1. Load: N events (default 1,000,000) of the chained grid-forecast workload (bench/_workload.Workload: five
   regional forecasts feed a system summary, which feeds a dispatch note; an outage triage beside them; the
   dispatch console consumes each summary; ~1000 distinct documents; registered bundles). Worker processes
   record them through the SDK (Recorder into an in-memory log, so the real encoder runs), decode and project
   them exactly as the runner does (decode_batch + project); this process writes each chunk with
   IndexStore.apply in order. The index then holds what the runner would have built from such a log (no
   log.db is written, so log positions in the index point at a log that is not there).
   With --data-dir, an index whose consumer position already covers N events is reused as it is.
2. Serve: create_app(open_services(...), run_projectors=False) under uvicorn in a separate process on
   127.0.0.1 (the index is loaded; nothing to project).
3. Measure from this process, sequentially over one keep-alive httpx.Client, in interleaved rounds:
   /healthz (HTTP + framework baseline), /v1/outputs/{id} for random existing outputs, and
   /v1/outputs/{id}/lineage?direction=both&depth=3 for random outputs that have parents.

Prints one JSON object; the ratios lookup/healthz and lineage/healthz show our cost over the framework's.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import socket
import sqlite3
import tempfile
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
from _common import emit, goal, machine, percentiles, progress, ratio
from _corpus import FEATURES, TEMPLATES
from _workload import CYCLE_EVENTS, Workload, record_events

from lineage_api.services import open_services
from lineage_api.settings import Settings
from producers.log import LogRecord
from producers.memory_log import MemoryEventLog
from producers.recorder import Recorder
from producers.values import Bundle, ModelCall, Params, PromptTemplate, RetrievalConfig
from schemas.codec import Codec
from streams.projector import RowBatch, project
from streams.runner import decode_batch
from streams.store import DeadLetter

CHUNK_CYCLES = 250  # events per loader task: CHUNK_CYCLES * CYCLE_EVENTS


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000, help="events in the index (default 1000000)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="keep the index here; reused without loading when it already holds --events events "
                        "(default: a temp dir, removed afterwards)")
    p.add_argument("--requests", type=int, default=5_000, help="timed output lookups, and as many /healthz")
    p.add_argument("--lineage-requests", type=int, default=2_000, help="timed lineage walks (default 2000)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="loader processes (default: cores)")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args()


# -- loading ---------------------------------------------------------------------------------------

_WORKLOAD: Workload | None = None
_CODEC: Codec | None = None


def register_bundles() -> tuple[dict[tuple[str, bool], Bundle], list[LogRecord]]:
    """A stable and a canary release per feature, registered through the SDK; returns them and their events."""
    log = MemoryEventLog()
    bundles: dict[tuple[str, bool], Bundle] = {}
    with Recorder(log, tenant="grid-ops") as recorder:
        for feature in FEATURES:
            tpl = TEMPLATES[feature]
            for canary in (False, True):
                bundles[(feature, canary)] = recorder.register_bundle(
                    name=feature, version="2.1.0-rc1" if canary else "2.0.3",
                    prompt=PromptTemplate(template_id=tpl.template_id, version=tpl.version, text=tpl.user),
                    model=ModelCall(provider="eastgate-llm" if canary else "northwind-ai",
                                    requested="eg-pro" if canary else "nw-large"),
                    retrieval=RetrievalConfig(config_id="grid-context-v2", settings={"top_k": 3, "index": "ops"}),
                    params=Params(temperature=0.2, max_tokens=1200, seed=1234, response_format="json"),
                    registered_by="release-pipeline", occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
                )
        recorder.flush()
        records = log.read(0, 1000)
    return bundles, records


def _init_worker(seed: int, bundles: dict[tuple[str, bool], Bundle]) -> None:
    global _WORKLOAD, _CODEC
    _WORKLOAD = Workload(seed, bundles=bundles)
    _CODEC = Codec()


def _load_chunk(task: tuple[int, int, int]) -> tuple[int, RowBatch, list[DeadLetter], int, int]:
    """Record one chunk through the SDK, then decode and project it as the runner would."""
    chunk, events, base_offset = task
    assert _WORKLOAD is not None and _CODEC is not None
    log = MemoryEventLog()
    with Recorder(log, tenant="grid-ops", queue_size=events + 1) as recorder:
        record_events(recorder, _WORKLOAD, events, first_cycle=chunk * CHUNK_CYCLES, timed=True)
        recorder.flush()
    records = [LogRecord(base_offset + r.offset, r.key, r.value, r.timestamp_us) for r in log.read(0, events)]
    good, bad = decode_batch(_CODEC, 0, records)
    return chunk, project(good), bad, len(records), sum(len(r.value) for r in records)


def load(data_dir: Path, events: int, workers: int, seed: int) -> dict[str, Any]:
    services = open_services(Settings(data_dir=data_dir))
    store = services.store
    have = store.position(0)
    if have >= events:
        stats = services.reader.stats()
        services.close()
        return {"skipped": True, "position": have, "index": stats}
    if have:
        services.close()
        raise SystemExit(f"{data_dir} holds {have} events, fewer than --events {events}; use an empty dir")
    started = time.monotonic()
    bundles, prelude = register_bundles()
    codec = Codec()
    good, bad = decode_batch(codec, 0, prelude)
    store.apply(project(good), partition=0, next_offset=len(prelude), dead_letters=bad)
    per_chunk = CHUNK_CYCLES * CYCLE_EVENTS
    tasks = [(c, min(per_chunk, events - c * per_chunk), len(prelude) + c * per_chunk)
             for c in range(-(-events // per_chunk))]
    loaded, value_bytes, dead, apply_s = 0, 0, 0, 0.0
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(seed, bundles)) as pool:
        # A bounded window of chunks in flight (imap would buffer every finished chunk if the writer lags).
        pending: deque[Any] = deque()
        todo = iter(tasks)
        for task in islice(todo, 2 * workers):
            pending.append(pool.apply_async(_load_chunk, (task,)))
        while pending:
            chunk, rows, bad, n, nbytes = pending.popleft().get()
            for task in islice(todo, 1):
                pending.append(pool.apply_async(_load_chunk, (task,)))
            _, count, base = tasks[chunk]
            t0 = time.monotonic()
            store.apply(rows, partition=0, next_offset=base + count, dead_letters=bad)
            apply_s += time.monotonic() - t0
            loaded, value_bytes, dead = loaded + n, value_bytes + nbytes, dead + len(bad)
            if chunk % 40 == 0:
                rate = loaded / (time.monotonic() - started)
                progress(f"  loaded {loaded}/{events} events ({rate:,.0f}/s)")
    seconds = time.monotonic() - started
    stats = services.reader.stats()
    services.close()
    return {"skipped": False, "events": loaded, "bundle_events": len(prelude), "seconds": round(seconds, 1),
            "events_per_s": round(loaded / seconds), "workers": workers, "index_writer_busy_s": round(apply_s, 1),
            "dead_letters": dead,
            "avro_value_avg_bytes": round(value_bytes / max(1, loaded)), "index": stats}


# -- serving ---------------------------------------------------------------------------------------

def serve_main(data_dir: str, port: int) -> None:
    import uvicorn

    from lineage_api.app import create_app

    app = create_app(open_services(Settings(data_dir=Path(data_dir))), run_projectors=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(client: httpx.Client, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the API did not answer /healthz in time")
        time.sleep(0.2)


# -- sampling and timing ---------------------------------------------------------------------------

def sample_ids(index_db: Path, count: int, rng: random.Random, *, with_parents: bool) -> list[str]:
    """Random existing output IDs (by rowid, so it is fast on a large table); optionally only outputs that
    have parent outputs (an incoming 'fed' edge)."""
    conn = sqlite3.connect(f"file:{index_db}?mode=ro", uri=True)
    try:
        top = conn.execute("SELECT MAX(rowid) FROM outputs").fetchone()[0] or 0
        found: set[str] = set()
        for _ in range(1000):
            if len(found) >= count or not top:
                break
            rowids = [rng.randint(1, top) for _ in range(500)]
            ids = [r[0] for r in conn.execute(
                f"SELECT output_id FROM outputs WHERE rowid IN ({','.join('?' * len(rowids))})", rowids)]
            if with_parents and ids:
                dsts = ["output:" + i for i in ids]
                ids = [r[0].removeprefix("output:") for r in conn.execute(
                    f"SELECT DISTINCT dst FROM edges WHERE kind = 'fed' AND dst IN ({','.join('?' * len(dsts))})",
                    dsts)]
            found.update(ids)
    finally:
        conn.close()
    picked = sorted(found)[:count]
    rng.shuffle(picked)
    if not picked:
        raise RuntimeError(f"no outputs{' with parents' if with_parents else ''} in {index_db}")
    return picked


def timed_gets(client: httpx.Client, paths: list[str], out: list[int], check: Callable[[httpx.Response], None]
               ) -> None:
    clock = time.perf_counter_ns
    for path in paths:
        t0 = clock()
        response = client.get(path)
        body = response.content
        out.append(clock() - t0)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status_code}: {body[:300]!r}")
        check(response)


def measure(client: httpx.Client, lookups: list[str], walks: list[str], requests: int, lineage_requests: int
            ) -> tuple[dict[str, list[int]], dict[str, float]]:
    graph = {"walks": 0, "nodes": 0, "edges": 0, "lookup_bytes": 0, "lineage_bytes": 0, "lookups": 0}

    def check_lookup(r: httpx.Response) -> None:
        graph["lookups"] += 1
        graph["lookup_bytes"] += len(r.content)

    def check_walk(r: httpx.Response) -> None:
        body = r.json()
        graph["walks"] += 1
        graph["nodes"] += len(body["nodes"])
        graph["edges"] += len(body["edges"])
        graph["lineage_bytes"] += len(r.content)

    def nothing(_r: httpx.Response) -> None:
        return None

    paths = {
        "healthz": lambda i: "/healthz",
        "lookup": lambda i: f"/v1/outputs/{lookups[i % len(lookups)]}",
        "lineage": lambda i: f"/v1/outputs/{walks[i % len(walks)]}/lineage?direction=both&depth=3",
    }
    checks = {"healthz": nothing, "lookup": check_lookup, "lineage": check_walk}
    totals = {"healthz": requests, "lookup": requests, "lineage": lineage_requests}
    rounds = 50
    for name in paths:  # warm-up: connection, route compilation, page cache for code paths
        timed_gets(client, [paths[name](i + 7919) for i in range(min(200, totals[name]))], [], nothing)
    samples: dict[str, list[int]] = {name: [] for name in paths}
    names = list(paths)
    done = dict.fromkeys(paths, 0)
    for r in range(rounds):
        order = names[r % 3:] + names[:r % 3]
        for name in order:
            upto = totals[name] * (r + 1) // rounds
            batch = [paths[name](i) for i in range(done[name], upto)]
            timed_gets(client, batch, samples[name], checks[name])
            done[name] = upto
        if (r + 1) % 10 == 0:
            progress(f"  round {r + 1}/{rounds}")
    walks_done = max(1, graph["walks"])
    summary = {"avg_nodes": round(graph["nodes"] / walks_done, 1), "avg_edges": round(graph["edges"] / walks_done, 1),
               "avg_lineage_response_bytes": round(graph["lineage_bytes"] / walks_done),
               "avg_lookup_response_bytes": round(graph["lookup_bytes"] / max(1, graph["lookups"]))}
    return samples, summary


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    info = machine()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-lookup-") as tmp:
        data_dir = (args.data_dir or Path(tmp)).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        progress(f"loading {args.events} events into {data_dir} with {args.workers} workers")
        loader = load(data_dir, args.events, args.workers, args.seed)
        progress(f"loader: {loader}")
        index_db = data_dir / "index.db"
        index_bytes = sum(f.stat().st_size for f in data_dir.glob("index.db*") if f.is_file())
        lookups = sample_ids(index_db, min(args.requests, 20_000), rng, with_parents=False)
        walks = sample_ids(index_db, min(args.lineage_requests, 20_000), rng, with_parents=True)
        port = free_port()
        server = mp.get_context("spawn").Process(target=serve_main, args=(str(data_dir), port), name="api")
        server.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as client:
                wait_ready(client)
                progress(f"API up on 127.0.0.1:{port}; timing {args.requests} lookups, {args.requests} healthz, "
                         f"{args.lineage_requests} lineage walks")
                samples, graph = measure(client, lookups, walks, args.requests, args.lineage_requests)
        finally:
            server.terminate()
            server.join(30)
    ms = {name: percentiles(s, scale=1e-6, digits=3) for name, s in samples.items()}
    base = ms["healthz"]
    emit({
        "benchmark": "lookup_http",
        "config": {"events": args.events, "requests": args.requests, "lineage_requests": args.lineage_requests,
                   "lineage_query": "direction=both&depth=3 on outputs with parents", "client": "httpx keep-alive",
                   "server": "uvicorn, 1 process, run_projectors=False", "index": "SQLite"},
        "machine": info,
        "loader": loader,
        "index_db_bytes": index_bytes,
        "distinct_ids": {"lookup": len(lookups), "lineage": len(walks)},
        "latency_ms": ms,
        "lineage_graph": graph,
        "ratios": {f"{name}/healthz": {q: ratio(ms[name][q], base[q]) for q in ("p50", "p99", "mean")}
                   for name in ("lookup", "lineage")},
        "goals": {"lookup_p99_ms": goal(ms["lookup"]["p99"], 10, "ms"),
                  "lineage_p99_ms": goal(ms["lineage"]["p99"], 25, "ms")},
        "wall_s": round(time.monotonic() - started, 1),
    })


if __name__ == "__main__":
    main()
