"""Embedded ingest, SDK to queryable index, on however many cores the host has (the goal is set for 2).

Two processes, as in a real embedded deployment: the app (process A) records events through the Recorder
into the SQLite event log; `lineage up` (process B: open_services(Settings(data_dir=...)).runner) tails the
log into the SQLite index. Three phases, each with fresh processes:

  producer_only  A records N events into an empty log; rate of record() calls and of acknowledged events
  runner_only    B catches up on that pre-filled log into an empty index (EmbeddedRunner.catch_up)
  end_to_end     B tails an empty log while A records N events; from A's first record() call to the moment
                 B's runner has applied all N events (its on_batch callback), then B checks the index counts

Clock: time.monotonic_ns, which is CLOCK_MONOTONIC on Linux and so comparable between processes.
The workload is bench/_workload.Workload: chained grid-forecast calls (~4 KB events) and consumptions.
Prints one JSON object; the headline is the end-to-end rate against the slower of the two single phases.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import emit, goal, machine, progress, ratio
from _workload import Workload, record_events

from lineage_api.server import tune_gc
from lineage_api.services import open_services
from lineage_api.settings import Settings
from producers.recorder import Recorder


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=100_000, help="events to record per phase (default 100000)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for any one phase")
    p.add_argument("--keep", type=Path, default=None,
                   help="put the data dirs here and keep them (default: a temp dir, removed)")
    return p.parse_args()


# -- process A: the app ----------------------------------------------------------------------------

def producer_main(data_dir: str, events: int, seed: int, ready: Any, go: Any, out: Any) -> None:
    workload = Workload(seed)
    recorder = Recorder(log_url=f"sqlite:///{Path(data_dir) / 'log.db'}", tenant="grid-ops")
    ready.set()
    go.wait()
    cpu0 = time.process_time()
    t0 = time.monotonic_ns()
    n = record_events(recorder, workload, events)
    t1 = time.monotonic_ns()
    recorder.flush(timeout=1800)
    t2 = time.monotonic_ns()
    stats = recorder.stats()
    recorder.close()
    out.put({"role": "producer", "events": n, "t_first_record_ns": t0, "t_recorded_ns": t1, "t_flushed_ns": t2,
             "cpu_s": time.process_time() - cpu0, "stats": stats})


# -- process B: `lineage up`'s runner --------------------------------------------------------------

def runner_main(data_dir: str, expected: int, mode: str, timeout: float, ready: Any, out: Any) -> None:
    tune_gc()  # as `lineage up` does at start
    services = open_services(Settings(data_dir=Path(data_dir)))
    runner = services.runner
    cpu0 = time.process_time()
    result: dict[str, Any] = {"role": "runner", "mode": mode}
    if mode == "catch_up":
        ready.set()
        t0 = time.monotonic_ns()
        consumed = runner.catch_up()
        result.update(t_start_ns=t0, t_done_ns=time.monotonic_ns(), consumed=consumed)
    else:
        done = threading.Event()
        state = {"applied": 0, "t_first_batch_ns": 0, "t_done_ns": 0, "batches": 0}

        def on_batch(good: int, dead: int) -> None:
            now = time.monotonic_ns()
            state["applied"] += good + dead
            state["batches"] += 1
            state["t_first_batch_ns"] = state["t_first_batch_ns"] or now
            if state["applied"] >= expected and not done.is_set():
                state["t_done_ns"] = now
                done.set()

        runner.on_batch = on_batch
        runner.start()  # as `lineage up` does: a thread polling the log
        ready.set()
        finished = done.wait(timeout)
        runner.stop()
        result.update(state, finished=finished, runner_error=repr(runner.error) if runner.error else None)
    result["cpu_s"] = time.process_time() - cpu0
    result["index"] = services.reader.stats()
    result["lag"] = runner.lag()
    services.close()
    out.put(result)


# -- the phases ------------------------------------------------------------------------------------

def _collect(out: Any, procs: list[Any], count: int, timeout: float) -> list[dict[str, Any]]:
    results = [out.get(timeout=timeout) for _ in range(count)]
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"{p.name} exited with {p.exitcode}")
    return results


def producer_only(ctx: Any, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    ready, go, out = ctx.Event(), ctx.Event(), ctx.Queue()
    a = ctx.Process(target=producer_main, name="app", args=(str(data_dir), args.events, args.seed, ready, go, out))
    a.start()
    ready.wait(args.timeout)
    go.set()
    (r,) = _collect(out, [a], 1, args.timeout)
    record_s = (r["t_recorded_ns"] - r["t_first_record_ns"]) / 1e9
    acked_s = (r["t_flushed_ns"] - r["t_first_record_ns"]) / 1e9
    return {
        "events": r["events"], "record_loop_s": round(record_s, 3),
        "record_calls_per_s": round(r["events"] / record_s),
        "acknowledged_s": round(acked_s, 3), "events_per_s": round(r["events"] / acked_s),
        "cpu_s": round(r["cpu_s"], 2), "cpu_us_per_event": round(r["cpu_s"] / r["events"] * 1e6, 1),
        "acknowledged": r["stats"]["acknowledged"],
        "rejected": r["stats"]["rejected"], "spooled": r["stats"]["spooled"],
    }


def runner_only(ctx: Any, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    ready, out = ctx.Event(), ctx.Queue()
    b = ctx.Process(target=runner_main, name="runner", args=(str(data_dir), args.events, "catch_up",
                                                             args.timeout, ready, out))
    b.start()
    (r,) = _collect(out, [b], 1, args.timeout)
    seconds = (r["t_done_ns"] - r["t_start_ns"]) / 1e9
    return {"events": r["consumed"], "seconds": round(seconds, 3), "events_per_s": round(r["consumed"] / seconds),
            "cpu_s": round(r["cpu_s"], 2), "cpu_us_per_event": round(r["cpu_s"] / r["consumed"] * 1e6, 1),
            "index": r["index"], "lag_after": r["lag"]}


def end_to_end(ctx: Any, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    b_ready, a_ready, go, out = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    b = ctx.Process(target=runner_main, name="runner", args=(str(data_dir), args.events, "tail", args.timeout,
                                                             b_ready, out))
    b.start()
    b_ready.wait(args.timeout)  # B has created the log and index and is polling
    a = ctx.Process(target=producer_main, name="app", args=(str(data_dir), args.events, args.seed, a_ready, go, out))
    a.start()
    a_ready.wait(args.timeout)
    go.set()
    results = {r["role"]: r for r in _collect(out, [a, b], 2, args.timeout)}
    p, r = results["producer"], results["runner"]
    if not r["finished"]:
        raise RuntimeError(f"the runner applied {r['applied']} of {args.events} events within {args.timeout}s")
    seconds = (r["t_done_ns"] - p["t_first_record_ns"]) / 1e9
    return {
        "events": p["events"], "seconds": round(seconds, 3), "events_per_s": round(p["events"] / seconds),
        "producer_acknowledged_s": round((p["t_flushed_ns"] - p["t_first_record_ns"]) / 1e9, 3),
        "first_batch_indexed_after_s": round((r["t_first_batch_ns"] - p["t_first_record_ns"]) / 1e9, 3),
        "indexed_after_last_ack_s": round((r["t_done_ns"] - p["t_flushed_ns"]) / 1e9, 3),
        "runner_batches": r["batches"], "producer_cpu_s": round(p["cpu_s"], 2), "runner_cpu_s": round(r["cpu_s"], 2),
        # Cores the two processes got on average, and the rate if each had had a core to itself.
        "cores_used": round((p["cpu_s"] + r["cpu_s"]) / seconds, 2),
        "cpu_bound_ceiling_events_per_s": round(p["events"] / max(p["cpu_s"], r["cpu_s"])),
        "index": r["index"], "lag_after": r["lag"],
    }


def sizes(data_dir: Path, events: int) -> dict[str, Any]:
    def size(name: str) -> int:
        return sum(f.stat().st_size for f in data_dir.glob(f"{name}*") if f.is_file())

    with sqlite3.connect(data_dir / "log.db") as conn:
        avg = conn.execute("SELECT AVG(LENGTH(value)) FROM events").fetchone()[0]
    return {"avro_value_avg": round(avg or 0), "log_db_per_event": round(size("log.db") / events),
            "index_db_per_event": round(size("index.db") / events)}


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    info = machine()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = args.keep or Path(tmp)
        phase1, phase3 = root / "prefilled", root / "tailing"
        for d in (phase1, phase3):
            d.mkdir(parents=True, exist_ok=False)
        progress(f"producer only: recording {args.events} events")
        prod = producer_only(ctx, phase1, args)
        progress(f"  {prod['events_per_s']} events/s acknowledged; runner only: catching up")
        run = runner_only(ctx, phase1, args)
        progress(f"  {run['events_per_s']} events/s; end to end")
        e2e = end_to_end(ctx, phase3, args)
        progress(f"  {e2e['events_per_s']} events/s")
        bytes_ = sizes(phase3, e2e["events"])
    slower = min(prod["events_per_s"], run["events_per_s"])
    emit({
        "benchmark": "ingest_embedded",
        "config": {"events": args.events, "seed": args.seed, "log": "SqliteEventLog (WAL, synchronous=FULL)",
                   "index": "SQLite via open_services", "processes": "app + runner, spawn"},
        "machine": info,
        "producer_only": prod,
        "runner_only": run,
        "end_to_end": e2e,
        "bytes_per_event": bytes_,
        "ratios": {
            "end_to_end/producer_only": ratio(e2e["events_per_s"], prod["events_per_s"]),
            "end_to_end/runner_only": ratio(e2e["events_per_s"], run["events_per_s"]),
            "end_to_end/slower_single_phase": ratio(e2e["events_per_s"], slower),
        },
        "goal": goal(e2e["events_per_s"], 10_000, "events/s end to end", at_least=True),
        "wall_s": round(time.monotonic() - started, 1),
    })


if __name__ == "__main__":
    main()
