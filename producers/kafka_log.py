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
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from confluent_kafka import KafkaError, KafkaException, Message, Producer

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
        config, url_topic = client_config(url, **PRODUCER_DEFAULTS, **(producer_config or {}))
        self.url, self.topic, self._config = url, topic or url_topic, config
        self._timeout = float(config.get("message.timeout.ms", 15_000)) / 1000
        self._producer: Producer | None = None
        self._suspect = True  # probe the broker before the first append, and after any failure
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

    def partitions(self) -> int:
        self.probe()
        meta = self._client().list_topics(topic=self.topic, timeout=_PROBE_SECONDS)
        return len(meta.topics[self.topic].partitions)

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
            if batch.fatal:  # the idempotent producer cannot go on: start a new one next time
                self._reset()
            failed = batch.undelivered()
            if failed:
                self._suspect = True
                raise LogPartlyWrittenError(
                    f"Kafka did not take {len(failed)} of {len(records)} records for topic {self.topic!r} "
                    f"({failed[0][1]})", [records[i] for i, _ in failed])

    def _produce(self, records: Sequence[tuple[bytes | None, bytes]], partition: int | None) -> _Batch:
        producer, topic = self._client(), self.topic
        batch = _Batch(len(records))
        extra = {} if partition is None else {"partition": partition}
        for i, (key, value) in enumerate(records):
            report = functools.partial(batch.report, i)
            while True:
                try:
                    producer.produce(topic, value, key, on_delivery=report, **extra)
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
