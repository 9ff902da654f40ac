"""The Kafka event log: the production transport of the SDK, on confluent-kafka (librdkafka).

The only module that imports `confluent_kafka` for producing; its errors become ours here. The producer is
idempotent with `acks=all` (a retried batch is never written twice by the broker), zstd-compressed, and
lingers a few milliseconds to send large batches. Records keep the key the SDK gives them (the lineage
root), and the murmur2 partitioner (the Java client's) maps a key to the same partition whatever the client.

`append` returns once every record has a delivery report; records the broker did not take are raised back
in a `LogPartlyWrittenError`, so the Recorder spools exactly those. A record whose fate is unknown (the
broker went away after it was sent) is raised back too: at worst it is written twice, and the index skips
the copy, as it skips every re-delivery.

URL: `kafka://host:9092[,host2:9092][?topic=name&<librdkafka property>=<value>...]`, e.g.
`kafka://b1:9093?security.protocol=SASL_SSL&sasl.mechanisms=PLAIN&sasl.username=u&sasl.password=p`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from producers.log import LogRecord
from schemas.errors import ConfigError, LogPartlyWrittenError, LogUnavailableError
from schemas.registry import TOPIC

log = logging.getLogger("llm_lineage.kafka")

# Events may be up to LINEAGE_MAX_EVENT_BYTES (1 MiB by default) before framing and key: leave room.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "zstd",
    "linger.ms": 10,
    "batch.size": 1_000_000,
    "batch.num.messages": 10_000,
    "message.max.bytes": MAX_MESSAGE_BYTES,
    "message.timeout.ms": 15_000,  # how long a record may wait for the broker before it is spooled instead
    "partitioner": "murmur2_random",
    "socket.keepalive.enable": True,
    # Never let a broker create our topic with its defaults (finite retention!): `lineage topics create`.
    "allow.auto.create.topics": False,
}

_PROBE_SECONDS = 3.0


def parse_kafka_url(url: str) -> tuple[str, dict[str, str]]:
    """kafka://host:port[,host:port][?options] -> (bootstrap servers, options)."""
    parts = urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc:
        raise ConfigError(f"bad Kafka URL {url!r}; expected kafka://host:9092[,host2:9092]")
    for server in parts.netloc.split(","):
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"bad Kafka bootstrap server {server!r} in {url!r}; expected host:port")
    return parts.netloc, dict(parse_qsl(parts.query, keep_blank_values=True))


def client_config(url: str, **overrides: Any) -> tuple[dict[str, Any], str]:
    """librdkafka settings for a kafka:// URL (its query may set any property) and the topic it names."""
    bootstrap, options = parse_kafka_url(url)
    topic = options.pop("topic", TOPIC)
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": log, **overrides, **options}
    return config, topic


class _Batch:
    """Delivery reports for one append, by record position: None until reported, "" once delivered, else
    the error."""

    def __init__(self, size: int) -> None:
        self.outcome: list[str | None] = [None] * size
        self.outstanding = size
        self.fatal = False

    def report(self, index: int, err: KafkaError | None, _msg: Message | None) -> None:
        if self.outcome[index] is None:
            self.outstanding -= 1
        self.outcome[index] = "" if err is None else err.str()
        if err is not None and err.fatal():
            self.fatal = True

    def undelivered(self) -> list[tuple[int, str]]:
        """(position, why) of every record without a successful delivery report, in order."""
        return [(i, "no delivery report" if why is None else why) for i, why in enumerate(self.outcome) if why != ""]


class KafkaEventLog:
    """An EventLog on a Kafka topic. Not readable: the stream worker consumes the topic."""

    def __init__(self, url: str, *, topic: str | None = None, producer_config: dict[str, Any] | None = None) -> None:
        config, url_topic = client_config(url, **{**PRODUCER_DEFAULTS, **(producer_config or {})})
        self.url, self.topic, self._config = url, topic or url_topic, config
        self._timeout = float(config.get("message.timeout.ms", 15_000)) / 1000
        self._producer: Producer | None = None
        self._suspect = True  # probe the broker before the first append, and after any failure
        self._watermarks: Consumer | None = None
        self._lock = threading.Lock()

    def _client(self) -> Producer:
        if self._producer is None:
            try:
                self._producer = Producer(self._config)
            except KafkaException as exc:
                raise ConfigError(f"bad Kafka producer settings in {self.url!r}: {exc}") from exc
        return self._producer

    def probe(self) -> None:
        """Ask the cluster for the topic's metadata; raise LogUnavailableError naming what is wrong."""
        try:
            meta = self._client().list_topics(topic=self.topic, timeout=_PROBE_SECONDS)
        except KafkaException as exc:
            raise LogUnavailableError(f"Kafka at {self._config['bootstrap.servers']} is unreachable: "
                                      f"{exc.args[0].str() if exc.args else exc}") from exc
        found = meta.topics.get(self.topic)
        if found is None or found.error is not None or not found.partitions:
            why = found.error.str() if found is not None and found.error is not None else "no partitions"
            raise LogUnavailableError(f"Kafka topic {self.topic!r} is not usable ({why}); "
                                      "create it with `lineage topics create`")

    def end_offsets(self) -> dict[int, int]:
        """The topic's end offset (high watermark) per partition, for the API's view of index lag."""
        with self._lock:
            if self._watermarks is None:
                self._watermarks = Consumer({
                    "bootstrap.servers": self._config["bootstrap.servers"], "group.id": "llm-lineage-watermarks",
                    "enable.auto.commit": False, "logger": log,
                    **{k: v for k, v in self._config.items() if k.startswith(("security.", "sasl.", "ssl."))}})
            consumer = self._watermarks
        try:
            meta = consumer.list_topics(self.topic, timeout=_PROBE_SECONDS)
            return {p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=_PROBE_SECONDS)[1]
                    for p in meta.topics[self.topic].partitions}
        except (KafkaException, KeyError) as exc:
            raise LogUnavailableError(f"cannot read the end offsets of Kafka topic {self.topic!r}: {exc}") from exc

    def append(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        self._send(records, partition=None)

    def append_to(self, partition: int, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Append to one partition (the stream worker's chain checkpoints go to the partition they sign)."""
        self._send(records, partition=partition)

    def _send(self, records: Sequence[tuple[bytes | None, bytes]], partition: int | None) -> None:
        if not records:
            return
        with self._lock:
            if self._suspect:
                self.probe()
                self._suspect = False
            batch = self._produce(records, partition)
            self._await(batch)
            failed = batch.undelivered()
            if failed or batch.fatal:
                # A new producer next time: after records timed out, the idempotent producer's sequence
                # state is suspect, and a broker that restarted meanwhile may fence it (seen with tansu:
                # PRODUCER_FENCED for the old producer, while a new one writes at once).
                self._reset()
            if failed:
                raise LogPartlyWrittenError(
                    f"Kafka did not take {len(failed)} of {len(records)} records for topic {self.topic!r} "
                    f"({failed[0][1]})", [records[i] for i, _ in failed])

    def _produce(self, records: Sequence[tuple[bytes | None, bytes]], partition: int | None) -> _Batch:
        producer, topic = self._client(), self.topic
        batch = _Batch(len(records))
        target = -1 if partition is None else partition  # -1: librdkafka's partitioner picks by key
        for i, (key, value) in enumerate(records):
            report = functools.partial(batch.report, i)
            while True:
                try:
                    producer.produce(topic, value, key, target, on_delivery=report)
                    break
                except BufferError:  # librdkafka's local queue is full: let it send, then retry
                    producer.poll(0.05)
                except KafkaException as exc:
                    batch.report(i, exc.args[0], None)
                    break
        return batch

    def _await(self, batch: _Batch) -> None:
        producer = self._client()
        deadline = time.monotonic() + self._timeout + 5.0
        while batch.outstanding > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("Kafka: %d delivery reports still missing after %.0fs", batch.outstanding, self._timeout)
                break
            producer.flush(min(left, 1.0))
        if batch.outstanding > 0:
            # No report means no proof of delivery: those records are raised back. Purge so they cannot
            # also be delivered later by this producer; a purged in-flight record may still have been
            # written, which the index absorbs as a re-delivery.
            producer.purge(in_queue=True, in_flight=True)
            producer.flush(1.0)
            self._reset()

    def _reset(self) -> None:
        self._producer = None
        self._suspect = True

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                left = self._producer.flush(10.0)
                if left:
                    log.error("Kafka: %d records undelivered at close", left)
                self._producer = None
            if self._watermarks is not None:
                self._watermarks.close()
                self._watermarks = None


class KafkaPartitionReader:
    """Reads one partition of the topic by offset, as the embedded logs are read: what `lineage verify`
    walks in production mode. The broker's end offset is not trusted to stop a read (some Kafka-protocol
    brokers report it late); a read ends when `limit` records came or none arrived for `idle` seconds."""

    def __init__(self, url: str, partition: int, *, topic: str | None = None, idle: float = 2.0) -> None:
        config, url_topic = client_config(url, **{"group.id": "llm-lineage-reader", "enable.auto.commit": False,
                                                  "enable.partition.eof": False, "auto.offset.reset": "earliest"})
        self.topic, self.partition, self.idle = topic or url_topic, partition, idle
        self._consumer = Consumer(config)
        self._next: int | None = None

    def read(self, offset: int, limit: int) -> list[LogRecord]:
        if self._next != offset:
            self._consumer.assign([TopicPartition(self.topic, self.partition, offset)])
        out: list[LogRecord] = []
        while len(out) < limit:
            # The first wait may be long (a fetch after the seek); once records flow, a pause means the end.
            messages = self._consumer.consume(min(limit - len(out), 5000), self.idle if not out else 0.2)
            if not messages:
                break
            for m in messages:
                err = m.error()
                if err is not None:
                    raise LogUnavailableError(f"reading {self.topic!r} partition {self.partition}: {err.str()}")
                out.append(LogRecord(int(m.offset() or 0), m.key(), m.value() or b"", m.timestamp()[1] * 1000))
        self._next = out[-1].offset + 1 if out else offset
        return [r for r in out if r.offset >= offset]

    def end_offset(self) -> int:
        try:
            return int(self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, self.partition), timeout=_PROBE_SECONDS)[1])
        except KafkaException as exc:
            raise LogUnavailableError(f"cannot read the end of {self.topic!r} partition {self.partition}: "
                                      f"{exc}") from exc

    def close(self) -> None:
        self._consumer.close()


# -- topics --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: dict[str, str]


def recommended_topics(topic: str, dlq_topic: str, partitions: int, brokers: int) -> list[TopicSpec]:
    """The event topic and the dead-letter topic as we recommend them (docs/running-on-kafka.md says why).

    The event topic keeps every record forever: it is the source of truth the index is rebuilt from and
    the Merkle chain covers, so Kafka must never delete from it; the archive, under retention policies and
    legal holds, owns deletion. Three replicas with two in sync where the cluster has them."""
    replication = min(3, brokers)
    durable = {
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
        "min.insync.replicas": str(min(2, replication)),
        "unclean.leader.election.enable": "false",
        "max.message.bytes": str(MAX_MESSAGE_BYTES),
        "message.timestamp.type": "CreateTime",
    }
    return [TopicSpec(topic, partitions, replication, durable),
            TopicSpec(dlq_topic, max(1, min(partitions, 3)), replication, durable)]


def ensure_topics(url: str, specs: Sequence[TopicSpec], *, timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist; returns one line per topic saying what was done."""
    config, _ = client_config(url)
    admin = AdminClient(config)
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise LogUnavailableError(f"Kafka at {config['bootstrap.servers']} is unreachable: {exc}") from exc
    said: list[str] = []
    wanted = [s for s in specs if s.name not in existing]
    for spec in specs:
        if spec.name in existing:
            found = len(existing[spec.name].partitions)
            note = "" if found == spec.partitions else f" (recommended {spec.partitions}; left as it is)"
            said.append(f"exists   {spec.name}: {found} partitions{note}")
    if wanted:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication, config=s.config)
             for s in wanted], request_timeout=timeout)
        for spec in wanted:
            try:
                futures[spec.name].result(timeout)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    said.append(f"exists   {spec.name}: created meanwhile by another client")
                    continue
                raise LogUnavailableError(f"could not create topic {spec.name!r}: {exc}") from exc
            retention = spec.config["retention.ms"]
            said.append(f"created  {spec.name}: {spec.partitions} partitions, replication {spec.replication}, "
                        f"retention {'unlimited' if retention == '-1' else retention + ' ms'}")
    return said


def broker_count(url: str, *, timeout: float = 10.0) -> int:
    config, _ = client_config(url)
    try:
        return len(AdminClient(config).list_topics(timeout=timeout).brokers)
    except KafkaException as exc:
        raise LogUnavailableError(f"Kafka at {config['bootstrap.servers']} is unreachable: {exc}") from exc
