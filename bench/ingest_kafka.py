"""Production ingest, SDK to queryable index, on Kafka (tansu) + `lineage worker` (faust) + PostgreSQL, with the
faust worker measured beside a plain confluent-kafka consumer loop driving the same PartitionIndexer.

  end_to_end  `--workers` `lineage worker` processes (a fresh consumer group and database) index the topic while
              this process records N events through the SDK at full speed (or `--rate`); from the first record() to the
              poll at which the index positions cover every recorded event; index lag of every `--mark-every`-th
              record (record() call to its output being queryable in `outputs`), polled every 50 ms
  catch_up    the backlog end_to_end left on the topic (N events, warm-up and checkpoint records), indexed from
              scratch, fresh group and database each time, in rounds that alternate the two consumers:
              plain  a confluent-kafka Consumer loop (consume(num_messages=batch)) -> PartitionIndexer, built as
                     `lineage worker` builds it, minus faust, in `--workers` child processes
              faust  `lineage worker`, `--workers` processes
              Rate = records indexed from the first committed batch to the last target (start-up and group join
              are reported apart, as `startup_s`), so both are timed over the same steady catch-up.

CPU comes from /proc/<pid>/stat (utime+stime) of the workers, the broker, the PostgreSQL backends serving the
bench's database and this process (the producer), sampled with the positions, so `cpu_us_per_event` and
`cores` show where the cores went; `machine_cores_busy` (from /proc/stat) includes the neighbours.
tansu reports wrong high watermarks, so the topic is read once after end_to_end to learn each partition's true end
and last event (`reference.raw_consume`: confluent-kafka reading the records and nothing else, a ceiling).
`--profile DIR` runs py-spy (`record --idle --threads`, raw collapsed stacks) on every catch-up process, from
its first committed batch until it has caught up.
Prints one JSON object; the headline is `ratios.faust_vs_plain` and the end-to-end goals.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from _common import emit, goal, machine, percentiles, progress, ratio
from _kafka_bench import (
    ROOT,
    Poller,
    Procs,
    Sample,
    create_database,
    drop_database,
    plain_dsn,
    plain_loop_main,
    scan_topic,
    start_consumers,
    wait_group_stable,
)
from _workload import CYCLE_EVENTS, Workload, record_events

from producers.log import open_log
from producers.recorder import Recorder

SCRIPT = Path(__file__).resolve()  # the plain loop's children run this file with --plain-loop-child


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=100_000, help="events to record (default 100000)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of the event topic (default 4)")
    p.add_argument("--batch-size", type=int, default=2000, help="LINEAGE_RUNNER_BATCH_SIZE for both consumers")
    p.add_argument("--batch-seconds", type=float, default=0.1,
                   help="LINEAGE_WORKER_BATCH_SECONDS (default 0.1, as the worker)")
    p.add_argument("--workers", type=int, default=1, help="consumer processes per phase (default 1)")
    p.add_argument("--rounds", type=int, default=2,
                   help="catch-up rounds, each plain then faust (default 2; 0: end to end only)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="record at this many events/s instead of full speed (lag below saturation)")
    p.add_argument("--mark-every", type=int, default=200, help="lag sample: every k-th record() (default 200)")
    p.add_argument("--warmup", type=int, default=300, help="events recorded before timing, to settle the group")
    p.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin URL")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for any one phase")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the databases (names in the output)")
    p.add_argument("--profile", type=Path, default=None, help="py-spy each catch-up process into this dir")
    p.add_argument("--profile-flags", default="--idle --threads",
                   help="py-spy record flags (default '--idle --threads': wall time; '--gil --threads': CPU)")
    p.add_argument("--plain-loop-child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args()


# -- figures: when a phase is done, and where the CPU went ----------------------------------------------------

def first_covering(samples: list[Sample], targets: dict[int, int]) -> Sample | None:
    for s in samples:
        if all(s.positions.get(p, 0) >= end for p, end in targets.items()):
            return s
    return None


def cpu_between(a: Sample, b: Sample, records: int, wall: float) -> dict[str, Any]:
    roles = [r for r in b.cpu if r != "machine"]
    used = {r: b.cpu[r] - a.cpu.get(r, 0.0) for r in roles}
    return {
        "cpu_us_per_event": {r: round(used[r] / records * 1e6, 1) for r in roles},
        "cores": {r: round(used[r] / wall, 2) for r in roles},
        "machine_cores_busy": round((b.cpu["machine"] - a.cpu["machine"]) / wall, 2),
        "others_cores": round((b.cpu["machine"] - a.cpu["machine"] - sum(used.values())) / wall, 2),
    }


# -- phases ----------------------------------------------------------------------------------------------------

class MarkingRecorder(Recorder):
    """The SDK's Recorder noting (output_id, time.monotonic()) of every `every`-th record() for the lag poller."""

    def __init__(self, *a: Any, every: int, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.every, self.calls = every, 0
        self.markers: list[tuple[str, float]] = []
        self.last: tuple[str, float] | None = None

    def record(self, **kw: Any) -> str:
        output_id = super().record(**kw)
        self.calls += 1
        self.last = (output_id, time.monotonic())
        if self.calls % self.every == 0:
            self.markers.append(self.last)
        return output_id


@dataclass(slots=True)
class Env:
    """What every phase shares: the arguments, the broker and topic, the temp dir, the databases to drop."""

    args: argparse.Namespace
    bootstrap: str
    broker_url: str
    broker_pid: int
    topic: str
    tmp: Path
    databases: list[str] = field(default_factory=list)

    def database(self, label: str) -> str:
        name = f"bench_kafka_{os.getpid()}_{label}"
        self.databases.append(name)
        return create_database(self.args.postgres, name)

    def env(self, index_url: str, group: str) -> dict[str, str]:
        """The LINEAGE_* settings both consumers start from, as `lineage worker` reads them."""
        args = self.args
        return dict(os.environ, LINEAGE_LOG_URL=self.broker_url, LINEAGE_INDEX_URL=index_url, LINEAGE_TOPIC=self.topic,
                    LINEAGE_DLQ_TOPIC=f"{self.topic}.dlq", LINEAGE_WORKER_GROUP=group,
                    LINEAGE_DATA_DIR=str(self.tmp / "data"), LINEAGE_RUNNER_BATCH_SIZE=str(args.batch_size),
                    LINEAGE_WORKER_BATCH_SECONDS=str(args.batch_seconds), LINEAGE_WORKER_SESSION_TIMEOUT="6")


def record_paced(recorder: Recorder, workload: Workload, events: int, rate: float) -> int:
    """record_events at full speed, or at `rate` events/s in steps of ten cycles."""
    if rate <= 0:
        return record_events(recorder, workload, events)
    done, cycle, t0 = 0, 0, time.monotonic()
    while done < events:
        done += record_events(recorder, workload, min(10 * CYCLE_EVENTS, events - done), first_cycle=cycle)
        cycle += 10
        time.sleep(max(0.0, t0 + done / rate - time.monotonic()))
    return done


def warm_up(recorder: Recorder, workload: Workload, procs: Procs, url: str, args: argparse.Namespace) -> None:
    """Record warm-up events (as many rounds as needed) until every partition has an index position."""
    with psycopg.connect(plain_dsn(url), autocommit=True) as conn:
        for attempt in range(5):
            record_events(recorder, workload, args.warmup, first_cycle=1_000_000 + attempt * 100_000)
            recorder.flush(60)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                procs.check()
                if conn.execute("SELECT count(*) FROM consumer_positions").fetchone() == (args.partitions,):
                    return
                time.sleep(0.2)
    raise RuntimeError(f"the workers did not index the warm-up events on all {args.partitions} partitions")


def end_to_end(e: Env) -> tuple[dict[str, Any], dict[str, Any]]:
    args = e.args
    url = e.database("e2e")
    group = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    procs = start_consumers("faust", e.env(url, group), args.workers, e.tmp, "e2e-faust", script=SCRIPT)
    recorder = MarkingRecorder(open_log(e.broker_url, topic=e.topic), spool_dir=e.tmp / "spool", tenant="grid-ops",
                               every=args.mark_every)
    workload = Workload(args.seed)
    t_start = time.monotonic()
    try:
        warm_up(recorder, workload, procs, url, args)
        ready_s = time.monotonic() - t_start
        stable_s = wait_group_stable(e.bootstrap, group, args.timeout)
        progress(f"  workers ready after {ready_s:.1f}s, group stable {stable_s:.1f}s later; recording {args.events}")
        recorder.markers.clear()
        recorder.calls = 0
        poller = Poller(url, {"workers": procs.pids, "broker": [e.broker_pid], "producer": [os.getpid()]},
                        markers=recorder.markers)
        poller.start()
        time.sleep(0.1)
        cpu0 = time.process_time()
        t0 = time.monotonic()
        recorded = record_paced(recorder, workload, args.events, args.rate)
        t1 = time.monotonic()
        if recorder.last is not None and recorder.calls % args.mark_every:
            recorder.markers.append(recorder.last)
        recorder.flush(args.timeout)
        t2 = time.monotonic()
        producer_cpu = time.process_time() - cpu0
        stats = recorder.stats()
        recorder.close()
        last_change, last_sum = time.monotonic(), -1
        while time.monotonic() - t0 < args.timeout:  # until every marker is queryable and positions stand still
            procs.check()
            s = poller.latest()
            total = sum(s.positions.values()) if s else 0
            if total != last_sum:
                last_change, last_sum = time.monotonic(), total
            if poller.pending_markers() == 0 and time.monotonic() - last_change > 2.0:
                break
            time.sleep(0.1)
        poller.stop()
    finally:
        procs.stop()
    scan = scan_topic(e.bootstrap, e.topic, args.partitions)
    done = first_covering(poller.samples, scan["last_event_ends"])
    if done is None:
        raise RuntimeError(f"the index never covered all recorded events: {poller.samples[-1].positions} "
                           f"< {scan['last_event_ends']}")
    start = next(s for s in poller.samples if s.t >= t0 - 0.2)
    seconds = done.t - t0
    result = {
        "events": recorded, "seconds": round(seconds, 3), "events_per_s": round(recorded / seconds),
        "producer": {"record_loop_s": round(t1 - t0, 3), "record_calls_per_s": round(recorded / (t1 - t0)),
                     "acknowledged_s": round(t2 - t0, 3), "events_per_s": round(recorded / (t2 - t0)),
                     "cpu_us_per_event": round(producer_cpu / recorded * 1e6, 1), "stats": stats},
        "indexed_after_last_ack_s": round(done.t - t2, 3),
        "lag_s": percentiles(poller.lags, digits=3),
        "workers_ready_s": round(ready_s, 1),
        **cpu_between(start, done, recorded, seconds),
        "database": url.rsplit("/", 1)[1],
    }
    return result, scan


def catch_up(e: Env, kind: str, targets: dict[int, int], label: str) -> dict[str, Any]:
    args = e.args
    url = e.database(label)
    group = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    procs = start_consumers(kind, e.env(url, group), args.workers, e.tmp, label, script=SCRIPT)
    t_spawn = time.monotonic()
    poller = Poller(url, {"workers": procs.pids, "broker": [e.broker_pid]})
    poller.start()
    try:
        while True:
            procs.check()
            s = poller.latest()
            if args.profile is not None and not procs.spies and s is not None and s.positions:
                procs.start_profiling(args.profile, label, args.profile_flags)  # the steady catch-up only
            if s is not None and all(s.positions.get(p, 0) >= end for p, end in targets.items()):
                break
            if time.monotonic() - t_spawn > args.timeout:
                raise RuntimeError(f"{label}: not caught up after {args.timeout}s: {s.positions if s else None}")
            time.sleep(0.05)
        procs.stop_profiling()
        poller.stop()
    finally:
        procs.stop()
    first = next(s for s in poller.samples if s.positions)
    done = first_covering(poller.samples, targets)
    assert done is not None
    records = sum(targets.values()) - sum(min(first.positions.get(p, 0), end) for p, end in targets.items())
    seconds = done.t - first.t
    return {
        "records_timed": records, "seconds": round(seconds, 3), "events_per_s": round(records / seconds),
        "startup_s": round(first.t - t_spawn, 2), **cpu_between(first, done, records, seconds),
        "database": url.rsplit("/", 1)[1],
    }


def run(e: Env) -> dict[str, Any]:
    args = e.args
    progress(f"end to end: {args.workers} faust worker(s), {args.events} events, {args.partitions} partitions")
    e2e, scan = end_to_end(e)
    progress(f"  {e2e['events_per_s']} events/s end to end, lag p99 {e2e['lag_s'].get('p99')} s; "
             f"topic holds {scan['records']} records")
    rounds = []
    for k in range(args.rounds):
        row: dict[str, Any] = {}
        for kind in ("plain", "faust"):
            row[kind] = catch_up(e, kind, scan["ends"], f"{kind}{k}")
            progress(f"  round {k} {kind}: {row[kind]['events_per_s']} records/s catching up")
        row["faust_vs_plain"] = ratio(row["faust"]["events_per_s"], row["plain"]["events_per_s"])
        rounds.append(row)
    plain = statistics.median(r["plain"]["events_per_s"] for r in rounds) if rounds else 0
    faust = statistics.median(r["faust"]["events_per_s"] for r in rounds) if rounds else 0
    return {
        "end_to_end": e2e,
        "topic": {k: scan[k] for k in ("records", "checkpoint_records", "avg_value_bytes")} | {
            "records_per_partition": scan["ends"]},
        "catch_up": {"backlog_records": sum(scan["ends"].values()), "rounds": rounds,
                     "plain_events_per_s_median": plain, "faust_events_per_s_median": faust},
        "reference": {"raw_consume": scan["raw_consume"]},
        "ratios": {
            "faust_vs_plain": ratio(faust, plain),
            "faust_vs_raw_consume": ratio(faust, scan["raw_consume"]["events_per_s"] or 0),
            "end_to_end/faust_catch_up": ratio(e2e["events_per_s"], faust),
            "end_to_end/producer": ratio(e2e["events_per_s"], e2e["producer"]["events_per_s"]),
        },
        "goals": {
            "end_to_end": goal(e2e["events_per_s"], 5_000, "events/s", at_least=True),
            "end_to_end_stretch": goal(e2e["events_per_s"], 10_000, "events/s", at_least=True),
            "lag_p99": goal(e2e["lag_s"].get("p99", float("inf")), 2.0, "s"),
        },
    }


def main() -> None:
    args = parse_args()
    if args.plain_loop_child:
        plain_loop_main()
        return
    sys.path.insert(0, str(ROOT))  # tests/brokers.py starts tansu
    from producers.kafka_log import ensure_topics, recommended_topics
    from streams.signing import load_or_create_key
    from tests.brokers import running_broker

    started = time.monotonic()
    info = machine()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp, running_broker(Path(tmp) / "broker") as broker:
        assert broker.proc is not None
        topic = f"bench.events.{uuid.uuid4().hex[:8]}"
        ensure_topics(broker.log_url, recommended_topics(topic, f"{topic}.dlq", args.partitions, brokers=1))
        load_or_create_key(Path(tmp) / "data" / "signing-key.pem")  # one key, created before workers race for it
        e = Env(args, broker.bootstrap, broker.log_url, broker.proc.pid, topic, Path(tmp))
        try:
            figures = run(e)
        finally:
            if not args.keep:
                for name in e.databases:
                    drop_database(args.postgres, name)
    emit({
        "benchmark": "ingest_kafka",
        "config": {"events": args.events, "partitions": args.partitions, "workers": args.workers,
                   "batch_size": args.batch_size, "batch_seconds": args.batch_seconds, "rounds": args.rounds,
                   "rate": args.rate or "full speed", "mark_every": args.mark_every, "warmup_events": args.warmup,
                   "seed": args.seed,
                   "broker": "tansu, memory storage", "index": "PostgreSQL", "profiled": args.profile is not None,
                   "databases_kept": e.databases if args.keep else []},
        "machine": info,
        **figures,
        "wall_s": round(time.monotonic() - started, 1),
    })


if __name__ == "__main__":
    main()
