"""Machinery for bench/ingest_kafka.py: CPU from /proc, the index databases on PostgreSQL, the poller that samples
index positions, lag markers and CPU, the consumer processes (`lineage worker` or the plain confluent-kafka loop
child, `plain_loop_main`), and reading the topic itself (`scan_topic`, `wait_group_stable`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


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


# -- consumer processes ---------------------------------------------------------------------------------------

@dataclass(slots=True)
class Procs:
    """The consumer processes of one phase, their log files and the py-spy processes attached to them."""

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
            _reap(spy)
        self.spies.clear()

    def stop(self) -> None:
        self.stop_profiling()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            _reap(proc)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Wait 30 s for a signalled process to exit, then kill it."""
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def start_consumers(kind: str, env: dict[str, str], count: int, log_dir: Path, label: str, *,
                    script: Path) -> Procs:
    """`count` consumers logging to `log_dir/<label>-<i>.log`: `lineage worker` for "faust", else the bench
    `script` run as `--plain-loop-child` (which calls plain_loop_main)."""
    if kind == "faust":
        lineage = shutil.which("lineage", path=str(Path(sys.executable).parent)) or "lineage"
        argv = [lineage, "worker", "--loglevel", "warning"]
    else:
        argv = [sys.executable, str(script), "--plain-loop-child"]
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
