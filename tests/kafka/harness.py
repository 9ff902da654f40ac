"""What the Kafka tests share: a deployment (topics, consumer group, index database and data dir of its
own on a shared broker), `lineage worker` subprocesses, the SDK recording realistic chains, and the checks
that end every scenario: events sent == events indexed, no duplicates, no gaps."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import Engine, create_engine, func, select

from lineage_api.settings import Settings
from producers.kafka_log import ensure_topics, recommended_topics
from producers.recorder import Recorder
from producers.values import Document, ModelCall, Output, Params, PromptTemplate, Retrieval, Usage
from streams import tables as t
from tests.servers import cli_env, lineage_command, wait_for

TEMPLATE = PromptTemplate(template_id="grid.load", version="3", text="Forecast {region} for {day}.")
BASE = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


@dataclass
class Deployment:
    """One isolated production-mode deployment on the shared broker and PostgreSQL server."""

    bootstrap: str
    index_url: str
    data_dir: Path
    partitions: int = 4
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    extra_env: dict[str, str] = field(default_factory=dict)
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def log_url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def topic(self) -> str:
        return f"lineage-test-{self.name}"

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    def env(self) -> dict[str, str]:
        env = cli_env()
        env.update({
            "LINEAGE_LOG_URL": self.log_url, "LINEAGE_INDEX_URL": self.index_url,
            "LINEAGE_DATA_DIR": str(self.data_dir), "LINEAGE_TOPIC": self.topic, "LINEAGE_DLQ_TOPIC": self.dlq_topic,
            "LINEAGE_WORKER_GROUP": f"indexer-{self.name}", "LINEAGE_WORKER_SESSION_TIMEOUT": "6",
            "LINEAGE_TOPIC_PARTITIONS": str(self.partitions), "LINEAGE_RUNNER_BATCH_SIZE": "500",
            "LINEAGE_WORKER_BATCH_SECONDS": "0.1",
        })
        env.update(self.extra_env)
        return env

    def settings(self) -> Settings:
        return Settings(log_url=self.log_url, index_url=self.index_url, data_dir=self.data_dir, topic=self.topic,
                        dlq_topic=self.dlq_topic, topic_partitions=self.partitions)

    def create_topics(self) -> None:
        ensure_topics(self.log_url, recommended_topics(self.topic, self.dlq_topic, self.partitions, 1))

    def recorder(self, producer_config: dict[str, Any] | None = None, **options: Any) -> Recorder:
        from producers.kafka_log import KafkaEventLog

        options.setdefault("spool_dir", self.data_dir / "spool")
        return Recorder(KafkaEventLog(self.log_url, topic=self.topic, producer_config=producer_config), **options)

    def engine(self) -> Engine:
        """The test's engine on the index (one per deployment; `close` disposes of it)."""
        if self._engine is None:
            self._engine = create_engine(self.index_url)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class WorkerProcess:
    """One `lineage worker` subprocess; output to a log file in the data dir."""

    count = 0

    def __init__(self, deployment: Deployment) -> None:
        WorkerProcess.count += 1
        self.deployment = deployment
        deployment.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = deployment.data_dir / f"worker-{WorkerProcess.count}.log"
        self._out: IO[bytes] = open(self.log_path, "wb")  # closed by terminate, kill or stop
        self.proc = subprocess.Popen([*lineage_command(), "worker"], stdout=self._out, stderr=subprocess.STDOUT,
                                     env=deployment.env())

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_assigned(self, timeout: float = 60.0) -> None:
        def assigned() -> bool | None:
            if not self.alive():
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.output()}")
            return True if "assigned; resuming at index position" in self.output() else None

        wait_for(assigned, timeout=timeout, what="the worker to be assigned partitions", interval=0.1)

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._out.close()
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._out.close()

    def stop(self) -> None:
        if self.alive():
            self.kill()
        self._out.close()


def record_chains(recorder: Recorder, cycles: int, *, tag: str = "") -> list[str]:
    """Record `cycles` chains of four regional forecasts and one summary that consumes them; returns every
    output ID in recording order."""
    outputs: list[str] = []
    for k in range(cycles):
        when = BASE + timedelta(minutes=k)
        regional = [recorder.record(
            feature="day-ahead-load", occurred_at=when, trace_id=f"trc-{tag}{k}",
            prompt=TEMPLATE.render(region=region, day=f"2026-12-{k % 28 + 1:02d}"),
            retrieval=Retrieval(config_id="grid-context", query=f"{region} load", documents=[
                Document(doc_id=f"weather/{region}/{k}", version="00Z", source="met", content="min 3 °C", score=0.9)]),
            model=ModelCall(provider="northwind", requested="gridcast-large", served="gridcast-large-2026-11"),
            params=Params(temperature=0.2, seed=k), usage=Usage(prompt_tokens=800, completion_tokens=120),
            output=Output(text=f"{region} peak {1000 + k} MW", structured={"peak_mw": 1000 + k}),
            cost_usd_micros=2400 + k, latency_ms=1800.0,
        ) for region in ("north", "south", "east", "west")]
        summary = recorder.record(
            feature="system-summary", occurred_at=when + timedelta(seconds=30), parents=regional,
            trace_id=f"trc-{tag}{k}", prompt=TEMPLATE.render(region="all", day="2026-12-01"),
            model=ModelCall(provider="northwind", requested="gridcast-large"),
            output=Output(text=f"system peak {4000 + k} MW"))
        outputs += [*regional, summary]
    return outputs


class BackgroundRecording:
    """Chains recorded on a thread, 20 at a time, until `stop()`; `recorded` lists their outputs."""

    def __init__(self, deployment: Deployment, pause: float = 0.05) -> None:
        self.deployment, self.pause = deployment, pause
        self.recorded: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-recording")

    def _run(self) -> None:
        with self.deployment.recorder() as recorder:
            k = 0
            while not self._done.is_set():
                self.recorded.extend(record_chains(recorder, 20, tag=f"r{k}-"))
                k += 1
                time.sleep(self.pause)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[str]:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(60)
        return self.recorded


def positions(engine: Engine) -> dict[int, int]:
    c = t.positions.c
    with engine.connect() as conn:
        return {int(p): int(o) for p, o in conn.execute(select(c.log_partition, c.next_offset))}


def indexed_outputs(engine: Engine, wanted: set[str]) -> int:
    with engine.connect() as conn:
        return sum(1 for (oid,) in conn.execute(select(t.outputs.c.output_id)) if oid in wanted)


def wait_caught_up(engine: Engine, recorded: list[str], *, timeout: float = 120.0,
                   workers: list[WorkerProcess] | None = None, settle: float = 1.5) -> dict[int, int]:
    """Wait until every recorded output is indexed and the positions then stay put for `settle` seconds
    (the broker's high watermarks are not used: tansu's can lag what it has stored)."""
    wanted = set(recorded)

    def check_workers() -> None:
        for w in workers or []:
            if not w.alive():
                raise AssertionError(f"a worker exited with {w.proc.returncode}:\n{w.output()[-4000:]}")

    def all_there() -> bool | None:
        check_workers()
        return True if indexed_outputs(engine, wanted) == len(wanted) else None

    wait_for(all_there, timeout=timeout, what=f"{len(wanted)} outputs in the index", interval=0.2)
    last: dict[int, int] = {}

    def settled() -> dict[int, int] | None:
        nonlocal last
        check_workers()
        now = positions(engine)
        if now == last:
            return now
        last = now
        return None

    return wait_for(settled, timeout=60, what="the positions to settle", interval=settle)


@dataclass(frozen=True)
class IndexCounts:
    outputs: int
    distinct_outputs: int
    edges: int
    dead_letters: int
    leaves: int
    output_ids: frozenset[str]


def index_counts(engine: Engine) -> IndexCounts:
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(select(t.outputs.c.output_id))]
        edges = conn.execute(select(func.count()).select_from(t.edges)).scalar_one()
        dead = conn.execute(select(func.count()).select_from(t.dead_letters)).scalar_one()
        leaves = conn.execute(select(func.count()).select_from(t.merkle_leaves)).scalar_one()
    return IndexCounts(len(ids), len(set(ids)), int(edges), int(dead), int(leaves), frozenset(ids))


def assert_exact(engine: Engine, recorded: list[str], *, cycles: int, dead_letters: int = 0) -> IndexCounts:
    """Everything recorded is indexed once: no loss, no duplicates, the edges of every chain, no gaps in
    any partition's Merkle leaves."""
    counts = index_counts(engine)
    missing = set(recorded) - counts.output_ids
    assert not missing, f"{len(missing)} recorded outputs are not indexed, e.g. {sorted(missing)[:3]}"
    assert counts.outputs == counts.distinct_outputs == len(set(recorded)) == len(recorded), counts
    document_edges = 4 * cycles
    parent_edges = 4 * cycles
    assert counts.edges == document_edges + parent_edges, counts.edges
    assert counts.dead_letters == dead_letters, counts.dead_letters
    assert_no_gaps(engine)
    return counts


def assert_no_gaps(engine: Engine) -> None:
    """Each partition's leaves are numbered 0..n-1 with strictly increasing offsets ending at its position."""
    lc = t.merkle_leaves.c
    at = positions(engine)
    with engine.connect() as conn:
        for partition, next_offset in at.items():
            rows = conn.execute(select(lc.leaf_index, lc.log_offset).where(lc.log_partition == partition)
                                .order_by(lc.leaf_index)).all()
            assert [r[0] for r in rows] == list(range(len(rows))), f"partition {partition}: leaf numbering"
            offsets = [r[1] for r in rows]
            assert offsets == list(range(next_offset)), (
                f"partition {partition}: leaves must cover offsets 0..{next_offset - 1} once each")


def read_topic(deployment: Deployment, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """The first `expected` messages of a topic (all partitions, from the beginning), read with a fresh
    group; fails if fewer arrive within `timeout`."""
    consumer = Consumer({"bootstrap.servers": deployment.bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            got += [m for m in consumer.consume(500, 0.5) if not m.error()]
    finally:
        consumer.close()
    assert len(got) >= expected, f"read {len(got)} of {expected} messages from {topic}"
    return got
