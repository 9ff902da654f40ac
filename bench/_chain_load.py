"""Loading for bench/verify.py: N events of the chained grid-forecast workload into a real embedded data dir.

Worker processes (spawned; `_init_encoder`/`_encode_chunk`) record chunks through the SDK (Recorder into an
in-memory log, so the real encoder runs); `load_log` appends them in order to the SQLite event log
(SqliteEventLog.append, big batches). `run_runner` then runs `lineage up`'s runner in its own process
(`runner_main`), which indexes and chains the log and signs the tail. `store_facts` reads the resulting
store's shape (leaves, checkpoints, sizes) straight from index.db.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import sqlite3
import sys
import time
from collections import deque
from itertools import islice
from pathlib import Path
from typing import Any

from _common import progress
from _workload import CYCLE_EVENTS, Workload, record_events
from lookup_http import register_bundles

from lineage_api.server import tune_gc
from lineage_api.services import open_services
from lineage_api.settings import Settings
from producers.memory_log import MemoryEventLog
from producers.recorder import Recorder
from producers.sqlite_log import SqliteEventLog
from producers.values import Bundle

CHUNK_CYCLES = 250  # events per encoder task: CHUNK_CYCLES * CYCLE_EVENTS
APPEND_BATCH = 20_000  # records per SqliteEventLog.append (one transaction, one fsync)
CHECKPOINT_EVERY = 10_000


def settings_for(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, checkpoint_every_events=CHECKPOINT_EVERY)


# -- loading: the log ------------------------------------------------------------------------------

_WORKLOAD: Workload | None = None


def _init_encoder(seed: int, bundles: dict[tuple[str, bool], Bundle]) -> None:
    global _WORKLOAD
    _WORKLOAD = Workload(seed, bundles=bundles)


def _encode_chunk(task: tuple[int, int]) -> tuple[int, list[tuple[bytes | None, bytes]]]:
    """Record one chunk through the SDK into memory; returns its (key, encoded value) records in order."""
    chunk, events = task
    assert _WORKLOAD is not None
    log = MemoryEventLog()
    with Recorder(log, tenant="grid-ops", queue_size=events + 1) as recorder:
        record_events(recorder, _WORKLOAD, events, first_cycle=chunk * CHUNK_CYCLES, timed=True)
        recorder.flush()
    return chunk, [(r.key, r.value) for r in log.read(0, events)]


def load_log(data_dir: Path, events: int, workers: int, seed: int) -> dict[str, Any]:
    log = SqliteEventLog(data_dir / "log.db")
    try:
        have = log.end_offset()
        if have >= events:
            return {"skipped": True, "log_records": have}
        if have:
            raise SystemExit(f"{data_dir} holds {have} log records, fewer than --events {events}; use an empty dir")
        started = time.monotonic()
        bundles, prelude = register_bundles()
        log.append([(r.key, r.value) for r in prelude])
        per_chunk = CHUNK_CYCLES * CYCLE_EVENTS
        tasks = [(c, min(per_chunk, events - c * per_chunk)) for c in range(-(-events // per_chunk))]
        buffer: list[tuple[bytes | None, bytes]] = []
        loaded, value_bytes, append_s, report_at = 0, 0, 0.0, events // 10
        with mp.get_context("spawn").Pool(workers, initializer=_init_encoder, initargs=(seed, bundles)) as pool:
            pending: deque[Any] = deque()  # a bounded window in order: the log must hold the chunks in order
            todo = iter(tasks)
            for task in islice(todo, 2 * workers):
                pending.append(pool.apply_async(_encode_chunk, (task,)))
            while pending:
                _, records = pending.popleft().get()
                for task in islice(todo, 1):
                    pending.append(pool.apply_async(_encode_chunk, (task,)))
                buffer.extend(records)
                loaded += len(records)
                value_bytes += sum(len(v) for _, v in records)
                if len(buffer) >= APPEND_BATCH or not pending:
                    t0 = time.monotonic()
                    log.append(buffer)
                    append_s += time.monotonic() - t0
                    buffer = []
                if loaded >= report_at:
                    progress(f"  log: {loaded}/{events} events ({loaded / (time.monotonic() - started):,.0f}/s)")
                    report_at += events // 10
        seconds = time.monotonic() - started
        return {"skipped": False, "events": loaded, "bundle_events": len(prelude), "seconds": round(seconds, 1),
                "events_per_s": round(loaded / seconds), "encoder_processes": workers,
                "append_busy_s": round(append_s, 1), "append_batch": APPEND_BATCH,
                "avro_value_avg_bytes": round(value_bytes / max(1, loaded))}
    finally:
        log.close()


# -- loading: the runner (its own process, as `lineage up`) ----------------------------------------

def runner_main(data_dir: str, out: Any) -> None:
    tune_gc()  # as `lineage up` does at start
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="  runner: %(message)s")
    logging.getLogger("llm_lineage.chain").setLevel(logging.WARNING)  # one line per checkpoint is too many
    services = open_services(settings_for(Path(data_dir)))
    cpu0, t0 = time.process_time(), time.monotonic()
    consumed = services.runner.catch_up()
    # Sign the tail (fewer than CHECKPOINT_EVERY records) so every output has a proof, then chain the
    # ChainCheckpoint event that signing appended: the store is left as a caught-up `lineage up` leaves it.
    facts = store_facts(Path(data_dir))
    tail = None
    if facts["leaves"] > (facts["newest_checkpoint_size"] or 0):
        tail = services.checkpointer.checkpoint(services.log.partition)
    consumed += services.runner.catch_up()
    seconds, cpu = time.monotonic() - t0, time.process_time() - cpu0
    out.put({"consumed": consumed, "seconds": seconds, "cpu_s": cpu, "dead_letters": services.runner.dead,
             "tail_checkpoint_size": tail.tree_size if tail else None, "index": services.reader.stats()})
    services.close()


def run_runner(data_dir: Path) -> dict[str, Any]:
    services = open_services(settings_for(data_dir))
    behind = services.runner.lag()
    services.close()
    if not behind:
        return {"skipped": True}
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=runner_main, args=(str(data_dir), out), name="runner")
    proc.start()
    r = out.get()
    proc.join(60)
    if proc.exitcode != 0:
        raise RuntimeError(f"the runner exited with {proc.exitcode}")
    return {"skipped": False, "records": r["consumed"], "seconds": round(r["seconds"], 1),
            "events_per_s": round(r["consumed"] / r["seconds"]), "cpu_s": round(r["cpu_s"], 1),
            "cpu_us_per_event": round(r["cpu_s"] / r["consumed"] * 1e6, 1), "dead_letters": r["dead_letters"],
            "tail_checkpoint_size": r["tail_checkpoint_size"], "index": r["index"]}


# -- the store's shape -----------------------------------------------------------------------------

def store_facts(data_dir: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{data_dir / 'index.db'}?mode=ro", uri=True)
    try:
        (checkpoints, newest, covered_to), = conn.execute(
            "SELECT COUNT(*), MAX(tree_size), MAX(last_offset) FROM checkpoints WHERE log_partition = 0")
        (leaves,), = conn.execute("SELECT tree_size FROM chain_heads WHERE log_partition = 0")
    finally:
        conn.close()
    return {"leaves": leaves, "checkpoints": checkpoints, "newest_checkpoint_size": newest,
            "covered_to_offset": covered_to,
            "log_db_bytes": sum(f.stat().st_size for f in data_dir.glob("log.db*") if f.is_file()),
            "index_db_bytes": sum(f.stat().st_size for f in data_dir.glob("index.db*") if f.is_file())}

