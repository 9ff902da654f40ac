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
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from _common import emit, goal, machine, percentiles, progress, ratio
from _workload import CYCLE_EVENTS, Workload, record_events

from producers.log import open_log
from producers.recorder import Recorder

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=100_000, help="events to record (default 100000)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of the event topic (default 4)")
    p.add_argument("--batch-size", type=int, default=2000, help="LINEAGE_RUNNER_BATCH_SIZE for both consumers")
    p.add_argument("--batch-seconds", type=float, default=0.1, help="LINEAGE_WORKER_BATCH_SECONDS (default 0.1, as the worker)")
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


# -- CPU from /proc ------------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process and all its threads; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy_seconds() -> float:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / TICK  # all but idle and iowait


# -- PostgreSQL ----------------------------------------------------------------------------------------------

def create_database(admin_url: str, name: str) -> str:
    """A fresh database with the index schema (migrated here, so concurrent workers find it ready)."""
    from streams.store import open_engine

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    host = admin_url.split("://", 1)[1].rsplit("/", 1)[0]
    url = f"postgresql+psycopg://{host}/{name}"
    open_engine(url, migrate=True).dispose()
    return url


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


# -- sampling positions, lag markers and CPU every 50 ms ----------------------------------------------------

@dataclass(slots=True)
class Sample:
    t: float  # time.monotonic()
    positions: dict[int, int]
    cpu: dict[str, float]  # role -> CPU seconds since the poller started


@dataclass(slots=True)
class Poller:
    """A thread polling one index database: consumer positions, marker outputs becoming queryable, and CPU of
    the roles' processes plus the PostgreSQL backends serving that database."""

    url: str
    roles: dict[str, list[int]]
    markers: list[tuple[str, float]] = field(default_factory=list)  # (output_id, time recorded), appended live
    interval: float = 0.05
    samples: list[Sample] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bench-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def latest(self) -> Sample | None:
        if self.error is not None:
            raise RuntimeError(f"poller failed: {self.error!r}")
        return self.samples[-1] if self.samples else None

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self.error = exc

    def _loop(self) -> None:
        base: dict[int, float] = {}  # pid -> CPU at first sight (0 for backends born after the start)
        role_pids = {role: list(pids) for role, pids in self.roles.items()}
        machine0 = machine_busy_seconds()
        pending: dict[str, float] = {}
        taken, tick = 0, 0
        with psycopg.connect(plain_dsn(self.url), autocommit=True) as conn:
            while not self._stop.is_set():
                if tick % 20 == 0:
                    rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                        "AND pid <> pg_backend_pid()").fetchall()
                    role_pids["postgres"] = sorted(set(role_pids.get("postgres", [])) | {r[0] for r in rows})
                now = time.monotonic()
                while taken < len(self.markers):
                    output_id, at = self.markers[taken]
                    pending[output_id] = at
                    taken += 1
                if pending:
                    found = conn.execute("SELECT output_id FROM outputs WHERE output_id = ANY(%s)",
                                         (list(pending),)).fetchall()
                    for (output_id,) in found:
                        self.lags.append(now - pending.pop(output_id))
                rows = conn.execute("SELECT log_partition, next_offset FROM consumer_positions").fetchall()
                positions: dict[int, int] = dict(rows)
                cpu = {"machine": machine_busy_seconds() - machine0}
                for role, pids in role_pids.items():
                    total = 0.0
                    for pid in pids:
                        value = cpu_seconds(pid)
                        if value is None:
                            continue
                        first = base.setdefault(pid, value if tick == 0 else 0.0)
                        total += value - first
                    cpu[role] = total
                self.samples.append(Sample(now, positions, cpu))
                tick += 1
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - now)))

    def pending_markers(self) -> int:
        return len(self.markers) - len(self.lags)


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


# -- consumer processes ---------------------------------------------------------------------------------------

@dataclass(slots=True)
class Procs:
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]
    spies: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def check(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"consumer process {proc.pid} exited with {proc.returncode}:\n{tail}")

    def start_profiling(self, out: Path, label: str, flags: str) -> None:
        """py-spy on every process from now until stop_profiling (raw collapsed stacks, 200 Hz)."""
        spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if spy is None:
            raise RuntimeError("--profile needs py-spy on PATH (pip install py-spy)")
        for i, proc in enumerate(self.procs):
            self.spies.append(subprocess.Popen(
                [spy, "record", "--pid", str(proc.pid), "--rate", "200", "--nonblocking", *flags.split(),
                 "--format", "raw", "--output", str(out / f"{label}-{i}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop_profiling(self) -> None:
        for spy in self.spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        for spy in self.spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(10)
        self.spies.clear()

    def stop(self) -> None:
        self.stop_profiling()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def consumer_env(broker_url: str, index_url: str, topic: str, group: str, data_dir: Path,
                 args: argparse.Namespace) -> dict[str, str]:
    return dict(os.environ, LINEAGE_LOG_URL=broker_url, LINEAGE_INDEX_URL=index_url, LINEAGE_TOPIC=topic,
                LINEAGE_DLQ_TOPIC=f"{topic}.dlq", LINEAGE_WORKER_GROUP=group, LINEAGE_DATA_DIR=str(data_dir),
                LINEAGE_RUNNER_BATCH_SIZE=str(args.batch_size), LINEAGE_WORKER_BATCH_SECONDS=str(args.batch_seconds),
                LINEAGE_WORKER_SESSION_TIMEOUT="6")


def start_consumers(kind: str, env: dict[str, str], count: int, log_dir: Path, label: str) -> Procs:
    if kind == "faust":
        lineage = shutil.which("lineage", path=str(Path(sys.executable).parent)) or "lineage"
        argv = [lineage, "worker", "--loglevel", "warning"]
    else:
        argv = [sys.executable, str(Path(__file__).resolve()), "--plain-loop-child"]
    procs, logs = [], []
    for i in range(count):
        log = log_dir / f"{label}-{i}.log"
        with open(log, "wb") as out:
            procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT))
        logs.append(log)
    return Procs(procs, logs)


def readable(messages: list[Any]) -> Iterator[tuple[Any, int, int]]:
    """(message, partition, offset) of the messages that carry a record (not a consumer error)."""
    for m in messages:
        partition, offset = m.partition(), m.offset()
        if m.error() is None and partition is not None and offset is not None:
            yield m, partition, offset


def plain_loop_main() -> None:
    """A child process: a plain confluent-kafka consumer loop over the PartitionIndexer, from LINEAGE_* settings
    like `lineage worker`, until SIGTERM. Mirrors streams/worker.Worker.handle without faust."""
    from confluent_kafka import Consumer, TopicPartition

    from lineage_api.services import CHECKPOINT_KEY, archiver
    from lineage_api.settings import Settings
    from producers.kafka_log import KafkaEventLog, parse_kafka_url
    from schemas.codec import Codec
    from streams.applier import BatchApplier
    from streams.chain import Checkpointer
    from streams.partition_indexer import ConsumedRecord, Gap, PartitionIndexer, by_partition
    from streams.signing import load_or_create_key
    from streams.store import IndexStore, open_engine

    settings = Settings()
    url = settings.log_url or ""
    bootstrap, _ = parse_kafka_url(url)
    checkpoint_log = KafkaEventLog(url, topic=settings.topic)
    codec = Codec()
    engine = open_engine(settings.resolved_index_url, migrate=settings.auto_migrate)
    store = IndexStore(engine)
    checkpointer = Checkpointer(
        engine, load_or_create_key(settings.resolved_signing_key_file), every_events=settings.checkpoint_every_events,
        every_seconds=settings.checkpoint_seconds, log_name=settings.topic,
        archive=archiver(settings),
        emit=lambda record: checkpoint_log.append_to(
            record["log_partition"], [(CHECKPOINT_KEY, codec.encode("ChainCheckpoint", record))]),
    )
    indexer = PartitionIndexer(store, BatchApplier(store, codec, settings.max_event_bytes), checkpointer)
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": settings.worker_group, "auto.offset.reset": "earliest",
        "enable.auto.offset.store": False, "auto.commit.interval.ms": 1000,
        "session.timeout.ms": int(settings.worker_session_timeout * 1000), "heartbeat.interval.ms": 1000,
    })
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())

    def on_assign(c: Any, parts: list[Any]) -> None:
        indexer.forget(p.partition for p in parts)
        for p in parts:
            p.offset = indexer.position(p.partition)
        c.assign(parts)

    consumer.subscribe([settings.topic], on_assign=on_assign,
                       on_revoke=lambda _c, parts: indexer.forget(p.partition for p in parts))
    while not stopping.is_set():
        messages = consumer.consume(num_messages=settings.runner_batch_size, timeout=settings.worker_batch_seconds)
        groups = by_partition((p, ConsumedRecord(o, m.key(), m.value() or b"")) for m, p, o in readable(messages))
        for partition, records in groups.items():
            while True:
                plan = indexer.plan(partition, records)
                if plan is None:
                    break
                if isinstance(plan, Gap):
                    consumer.seek(TopicPartition(settings.topic, partition, plan.position))
                    break
                if indexer.commit(plan):
                    if plan.resume_at is not None:  # the batch stopped at a hole: read on from there
                        consumer.seek(TopicPartition(settings.topic, partition, plan.resume_at))
                    break
        if groups:
            indexer.maybe_checkpoint(list(groups))
            consumer.store_offsets(offsets=[TopicPartition(settings.topic, p, r[-1].offset + 1)
                                            for p, r in groups.items()])
    consumer.close()
    print(f"plain loop totals: {indexer.totals}", flush=True)


# -- the topic -------------------------------------------------------------------------------------------------

def scan_topic(bootstrap: str, topic: str, partitions: int) -> dict[str, Any]:
    """Read every record once (no group): per partition its true end and the end of the last SDK event."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from lineage_api.services import CHECKPOINT_KEY

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-scan-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    ends: dict[int, int] = {}
    last_event: dict[int, int] = {}
    count = checkpoints = value_bytes = idle = untimed = 0
    t0 = t_last = 0.0
    while idle < (40 if count else 400):  # 2 s without records once they flowed, 20 s before
        # consume() returns early only with num_messages in hand: a short timeout keeps the tail honest.
        messages = consumer.consume(num_messages=1000, timeout=0.05)
        if not messages:
            idle += 1
            continue
        if not t0:  # timed from the first batch received: connecting and the first fetch are not reading
            t0, untimed = time.monotonic(), len(messages)
        idle = 0
        for m, p, offset in readable(messages):
            value = m.value() or b""
            count += 1
            value_bytes += len(value)
            ends[p] = offset + 1
            if m.key() == CHECKPOINT_KEY:
                checkpoints += 1
            else:
                last_event[p] = offset + 1
        t_last = time.monotonic()
    consumer.close()
    seconds = t_last - t0
    rate = round((count - untimed) / seconds) if seconds else None
    return {"records": count, "checkpoint_records": checkpoints, "ends": ends, "last_event_ends": last_event,
            "avg_value_bytes": round(value_bytes / max(count, 1)),
            "raw_consume": {"seconds": round(seconds, 3), "events_per_s": rate}}


def wait_group_stable(bootstrap: str, group: str, timeout: float) -> float:
    """Seconds until the group has been STABLE for three checks a second apart (tansu lists no members)."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    t0, streak = time.monotonic(), 0
    while streak < 3:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"consumer group {group} not stable after {timeout}s")
        try:
            state = admin.describe_consumer_groups([group], request_timeout=5)[group].result().state
        except Exception:
            state = None
        streak = streak + 1 if state == ConsumerGroupState.STABLE else 0
        time.sleep(1.0)
    return time.monotonic() - t0


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
        return consumer_env(self.broker_url, index_url, self.topic, group, self.tmp / "data", self.args)


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
    procs = start_consumers("faust", e.env(url, group), args.workers, e.tmp, "e2e-faust")
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
    procs = start_consumers(kind, e.env(url, f"bench-{label}-{uuid.uuid4().hex[:8]}"), args.workers, e.tmp, label)
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
