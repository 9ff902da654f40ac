"""Integrity chain at scale: whole-store verification throughput and proof latency over HTTP.

1. Load (bench/_chain_load.py): N events (default 1,000,000) of the chained grid-forecast workload
   (bench/_workload.Workload, with registered bundles) into a real embedded data dir. Worker processes
   record chunks through the SDK (Recorder into an in-memory log, so the real encoder runs); this process
   appends them in order to the SQLite event log (SqliteEventLog.append, big batches). Then `lineage up`'s
   runner, in its own process (open_services(Settings(data_dir=..., checkpoint_every_events=10_000))
   .runner.catch_up()), indexes the log, chains every record into the Merkle tree and signs a checkpoint
   every 10,000 records; the tail is signed at the end so every output has a proof. With --data-dir, a log
   that already holds N records is reused as it is (the runner only catches up if it is behind).
2. Verify: streams.verify.verify_partition over the whole store in this process (wall and CPU time), the
   same walk's floor (raw sqlite3 reads of every log record and indexed body, each hashed once) and the
   user-facing `lineage verify --data-dir D` as a subprocess.
3. Proofs: create_app(open_services(...), run_projectors=False) under uvicorn in a separate process on
   127.0.0.1; from this process, sequential GET /v1/outputs/{id}/proof for random covered outputs and
   GET /healthz over one keep-alive httpx.Client, interleaved in rounds. A sample of the returned proofs is
   then checked offline (streams.proofs.verify_proof) against the keys from GET /v1/keys, untimed.

Prints one JSON object: verify records/s (wall and per CPU-second) against the floor, and proof latency
against /healthz.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _chain_load import CHECKPOINT_EVERY, load_log, run_runner, settings_for, store_facts
from _common import emit, goal, machine, percentiles, progress, ratio
from lookup_http import free_port, serve_main, timed_gets, wait_ready

from lineage_api.services import open_services
from streams.merkle import leaf_hash
from streams.proofs import verify_proof
from streams.verify import verify_partition


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000, help="workload events in the log (default 1000000)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="keep the store here; a log already holding --events records is reused without loading "
                        "(default: a temp dir, removed afterwards)")
    p.add_argument("--proofs", type=int, default=2_000, help="timed proof requests, and as many /healthz")
    p.add_argument("--check-proofs", type=int, default=500, help="returned proofs verified offline (default 500)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="encoder processes (default: cores)")
    p.add_argument("--profile", action="store_true", help="also run verify_partition under cProfile (untimed) "
                   "and print its top functions on stderr")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args()


# -- verification ----------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    gc.collect()
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0, time.process_time() - cpu0


def read_and_hash_floor(data_dir: Path, leaves: int) -> tuple[int, int]:
    """What any verifier must do at least: read every chained log record and every indexed body once and
    hash each (raw sqlite3, no comparisons, no SQLAlchemy). Returns (records, bodies)."""
    records = bodies = 0
    log = sqlite3.connect(f"file:{data_dir / 'log.db'}?mode=ro", uri=True)
    index = sqlite3.connect(f"file:{data_dir / 'index.db'}?mode=ro", uri=True)
    try:
        for (value,) in log.execute("SELECT value FROM events WHERE seq < ? ORDER BY seq", (leaves,)):
            leaf_hash(value)
            records += 1
        for (body,) in index.execute("SELECT body FROM outputs WHERE log_partition = 0"):
            leaf_hash(body)
            bodies += 1
    finally:
        log.close()
        index.close()
    return records, bodies


def verify_in_process(data_dir: Path, leaves: int, profile: bool) -> dict[str, Any]:
    (records, bodies), floor_wall, floor_cpu = timed(lambda: read_and_hash_floor(data_dir, leaves))
    progress(f"  floor: {records} records + {bodies} bodies read and hashed in {floor_wall:.1f}s")
    services = open_services(settings_for(data_dir))
    try:
        seen = {"n": 0, "next": 100_000}

        def tick(n: int) -> None:
            seen["n"] += n
            if seen["n"] >= seen["next"]:
                progress(f"  verify_partition: {seen['n']} records")
                seen["next"] += 100_000

        report, wall, cpu = timed(lambda: verify_partition(services.log, services.engine, services.public_keys,
                                                           progress=tick))
        if profile:
            import cProfile
            import pstats
            profiler = cProfile.Profile()
            profiler.runcall(verify_partition, services.log, services.engine, services.public_keys)
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    finally:
        services.close()
    return {
        "records": report.records, "checkpoints_checked": report.checkpoints,
        "outputs_checked": report.outputs_checked, "problems": len(report.problems),
        "first_problems": [str(p) for p in report.problems[:5]],
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "records_per_s": round(report.records / wall), "records_per_cpu_s": round(report.records / cpu),
        "records_and_outputs_per_cpu_s": round((report.records + report.outputs_checked) / cpu),
        "floor": {"records": records, "bodies": bodies, "wall_s": round(floor_wall, 2), "cpu_s": round(floor_cpu, 2),
                  "records_per_s": round(records / floor_wall), "records_per_cpu_s": round(records / floor_cpu)},
        "ratio_wall_to_floor": ratio(wall, floor_wall),
    }


def verify_cli(data_dir: Path) -> dict[str, Any]:
    exe = shutil.which("lineage")
    command = [exe] if exe else [sys.executable, "-m", "lineage_api.cli"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([*command, "verify", "--data-dir", str(data_dir)], capture_output=True, text=True,
                          check=False, env={**os.environ, "COLUMNS": "200"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return {"command": "lineage verify --data-dir D", "exit_code": done.returncode, "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "said": lines[-1] if lines else ""}


# -- proofs over HTTP ------------------------------------------------------------------------------

def covered_output_ids(data_dir: Path, count: int, rng: random.Random, covered_to: int) -> list[str]:
    """Random outputs (by rowid, fast on a large table) whose record a signed checkpoint covers."""
    conn = sqlite3.connect(f"file:{data_dir / 'index.db'}?mode=ro", uri=True)
    try:
        top = conn.execute("SELECT MAX(rowid) FROM outputs").fetchone()[0] or 0
        found: set[str] = set()
        for _ in range(1000):
            if len(found) >= count or not top:
                break
            rowids = [rng.randint(1, top) for _ in range(500)]
            found.update(r[0] for r in conn.execute(
                f"SELECT output_id FROM outputs WHERE rowid IN ({','.join('?' * len(rowids))}) AND log_offset <= ?",
                [*rowids, covered_to]))
    finally:
        conn.close()
    picked = sorted(found)[:count]
    rng.shuffle(picked)
    if not picked:
        raise RuntimeError(f"no outputs covered by a checkpoint in {data_dir}")
    return picked


def measure_proofs(client: httpx.Client, ids: list[str], requests: int, keep: int
                   ) -> tuple[dict[str, list[int]], list[bytes]]:
    """Interleaved rounds of /healthz and proofs; keeps `keep` proof bodies (spread out) for the offline check."""
    kept: list[bytes] = []
    every = max(1, requests // max(1, keep))
    count = {"proofs": 0}

    def keep_some(r: httpx.Response) -> None:
        if count["proofs"] % every == 0 and len(kept) < keep:
            kept.append(r.content)
        count["proofs"] += 1

    def nothing(_r: httpx.Response) -> None:
        return None

    paths: dict[str, Callable[[int], str]] = {
        "healthz": lambda i: "/healthz", "proof": lambda i: f"/v1/outputs/{ids[i % len(ids)]}/proof"}
    checks = {"healthz": nothing, "proof": keep_some}
    for name in paths:  # warm-up: connection, route, page cache for the code paths
        timed_gets(client, [paths[name](i + 7919) for i in range(min(200, requests))], [], nothing)
    samples: dict[str, list[int]] = {name: [] for name in paths}
    names, done, rounds = list(paths), dict.fromkeys(paths, 0), 50
    for r in range(rounds):
        for name in names[r % 2:] + names[:r % 2]:
            upto = requests * (r + 1) // rounds
            timed_gets(client, [paths[name](i) for i in range(done[name], upto)], samples[name], checks[name])
            done[name] = upto
        if (r + 1) % 10 == 0:
            progress(f"  round {r + 1}/{rounds}")
    return samples, kept


def check_proofs(bodies: list[bytes], keys: dict[str, str]) -> dict[str, Any]:
    failures, first, path_lengths = 0, None, []
    for body in bodies:
        proof = json.loads(body)
        path_lengths.append(len(proof["inclusion_path"]))
        problems = verify_proof(proof, trusted_keys=keys)
        if problems:
            failures += 1
            first = first or f"{proof.get('output_id')}: {problems[0]}"
    return {"checked": len(bodies), "failures": failures, "first_failure": first,
            "avg_proof_bytes": round(sum(map(len, bodies)) / max(1, len(bodies))),
            "avg_inclusion_path": round(sum(path_lengths) / max(1, len(path_lengths)), 1)}


def proofs_over_http(data_dir: Path, ids: list[str], args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    server = mp.get_context("spawn").Process(target=serve_main, args=(str(data_dir), port), name="api")
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as client:
            wait_ready(client)
            keys = {k["key_id"]: k["public_key"] for k in client.get("/v1/keys").json()["keys"]}
            progress(f"API up on 127.0.0.1:{port}; timing {args.proofs} proofs and {args.proofs} healthz")
            samples, kept = measure_proofs(client, ids, args.proofs, args.check_proofs)
    finally:
        server.terminate()
        server.join(30)
    ms = {name: percentiles(s, scale=1e-6, digits=3) for name, s in samples.items()}
    services = open_services(settings_for(data_dir))
    own = services.public_keys
    services.close()
    return {"distinct_ids": len(ids), "latency_ms": ms,
            "ratio_proof/healthz": {q: ratio(ms["proof"][q], ms["healthz"][q]) for q in ("p50", "p99", "p999", "mean")},
            "keys_served_match_store": keys == own, "offline_check": check_proofs(kept, keys)}


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        data_dir = (args.data_dir or Path(tmp)).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        progress(f"loading {args.events} events into {data_dir} with {args.workers} encoder processes")
        log_phase = load_log(data_dir, args.events, args.workers, args.seed)
        progress(f"log: {log_phase}")
        runner_phase = run_runner(data_dir)
        progress(f"runner: {runner_phase}")
        load_s = time.monotonic() - started
        facts = store_facts(data_dir)
        progress(f"store: {facts}; verifying in this process")
        in_process = verify_in_process(data_dir, facts["leaves"], args.profile)
        progress(f"verify: {in_process}; now `lineage verify`")
        cli = verify_cli(data_dir)
        progress(f"cli: {cli}")
        ids = covered_output_ids(data_dir, min(args.proofs, 20_000), random.Random(args.seed),
                                 facts["covered_to_offset"])
        proofs = proofs_over_http(data_dir, ids, args)
    per_core = in_process["records_per_cpu_s"]
    emit({
        "benchmark": "verify",
        "config": {"events": args.events, "proofs": args.proofs, "checkpoint_every_events": CHECKPOINT_EVERY,
                   "client": "httpx keep-alive", "server": "uvicorn, 1 process, run_projectors=False",
                   "index": "SQLite", "log": "SQLite"},
        "machine": info,
        "load": {"log": log_phase, "runner": runner_phase, "wall_s": round(load_s, 1)},
        "store": facts,
        "verify": in_process,
        "verify_cli": {**cli, "records_per_s": round(in_process["records"] / cli["wall_s"])},
        "proofs": proofs,
        "goals": {
            "verify_records_per_cpu_s": goal(per_core, 100_000, "records/s per core", at_least=True),
            "verify_problems": goal(in_process["problems"], 0, "problems"),
            "proof_p99_ms": goal(proofs["latency_ms"]["proof"]["p99"], 10, "ms"),
            "proof_offline_failures": goal(proofs["offline_check"]["failures"], 0, "failures"),
        },
        "wall_s": round(time.monotonic() - started, 1),
    })


if __name__ == "__main__":
    main()
