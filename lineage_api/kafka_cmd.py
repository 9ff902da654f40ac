"""`lineage worker` and `lineage topics create`: production mode on Kafka, wired from settings."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console

from lineage_api.settings import Settings
from schemas.errors import ConfigError, LineageError, LogError

if TYPE_CHECKING:
    from streams.worker import Worker

console = Console()
err = Console(stderr=True)
log = logging.getLogger("llm_lineage.worker")

topics_app = typer.Typer(help="Create and inspect the Kafka topics llm-lineage uses.", no_args_is_help=True)


def _kafka_url(settings: Settings) -> str:
    url = settings.log_url or ""
    if not url.startswith("kafka://"):
        raise ConfigError(f"LINEAGE_LOG_URL must be a kafka:// URL for this command (got {url or 'nothing'!r}); "
                          "e.g. LINEAGE_LOG_URL=kafka://127.0.0.1:9092")
    return url


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


@topics_app.command("create")
def topics_create(
    partitions: Annotated[Optional[int], typer.Option(  # noqa: UP045 - typer reads the annotation at runtime
        min=1, help="Partitions of the event topic (env LINEAGE_TOPIC_PARTITIONS, default 12)")] = None,
) -> None:
    """Create the event topic and the dead-letter topic, if missing, with the settings we recommend.

    The event topic keeps every record (retention.ms=-1): it is the source of truth the index is rebuilt
    from and the Merkle chain covers. Deletion belongs to the archive's retention policies and legal holds,
    never to Kafka. Replication is 3 (2 in sync) where the cluster has 3 brokers. Running it again changes
    nothing and says so; a topic that exists is never altered.
    """
    from producers.kafka_log import broker_count, ensure_topics, recommended_topics

    settings = Settings()
    try:
        url = _kafka_url(settings)
        specs = recommended_topics(settings.topic, settings.dlq_topic, partitions or settings.topic_partitions,
                                   broker_count(url))
        for line in ensure_topics(url, specs):
            console.print(line)
    except LineageError as exc:
        raise _fail(str(exc)) from exc


def worker(
    loglevel: Annotated[str, typer.Option(help="faust/worker log level")] = "info",
) -> None:
    """Index the Kafka event topic into the lineage index (PostgreSQL in production).

    Runs a faust app in the consumer group LINEAGE_WORKER_GROUP: run one per core, on as many machines as
    you like; partitions are shared among them and handed over on rebalance without losing or doubling
    anything, because each partition's position is stored in the index with the rows. Poison records go to
    LINEAGE_DLQ_TOPIC with the reason in headers. SIGTERM stops it cleanly after the batch in hand.
    Reads LINEAGE_LOG_URL (kafka://...), LINEAGE_INDEX_URL, LINEAGE_SIGNING_KEY_FILE and the worker settings.
    """
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        runnable = build_worker(Settings())
    except LineageError as exc:
        raise _fail(str(exc)) from exc
    runnable.run(loglevel=loglevel)


def build_worker(settings: Settings) -> Worker:
    """The Worker for these settings; checks that the topics exist first, with a clear error if not."""
    from lineage_api.services import CHECKPOINT_KEY, archiver
    from producers.kafka_log import KafkaEventLog, parse_kafka_url
    from schemas.codec import Codec
    from streams.applier import BatchApplier
    from streams.chain import Checkpointer
    from streams.partition_indexer import PartitionIndexer
    from streams.signing import load_or_create_key
    from streams.store import IndexStore, open_engine
    from streams.worker import Worker, WorkerConfig

    url = _kafka_url(settings)
    bootstrap, _ = parse_kafka_url(url)
    checkpoint_log = KafkaEventLog(url, topic=settings.topic)
    checkpoint_log.probe()  # the event topic must exist: faust is told not to create topics
    KafkaEventLog(url, topic=settings.dlq_topic).probe()
    codec = Codec()
    engine = open_engine(settings.resolved_index_url, migrate=settings.auto_migrate)
    store = IndexStore(engine)
    key = load_or_create_key(settings.resolved_signing_key_file)

    def emit(record: dict[str, Any]) -> None:
        """The ChainCheckpoint event goes to the partition it signs, so that partition's chain covers it."""
        try:
            checkpoint_log.append_to(record["log_partition"],
                                     [(CHECKPOINT_KEY, codec.encode("ChainCheckpoint", record))])
        except LogError as exc:  # signed and stored in the index (and the archive) already
            log.warning("checkpoint of partition %d (size %d) is in the index, not yet in the log: %s",
                        record["log_partition"], record["tree_size"], exc)

    checkpointer = Checkpointer(
        engine, key, every_events=settings.checkpoint_every_events, every_seconds=settings.checkpoint_seconds,
        log_name=settings.topic, archive=archiver(settings), emit=emit)
    indexer = PartitionIndexer(store, BatchApplier(store, codec, settings.max_event_bytes), checkpointer)
    config = WorkerConfig(bootstrap=bootstrap, topic=settings.topic, dlq_topic=settings.dlq_topic,
                          group=settings.worker_group, batch_size=settings.runner_batch_size,
                          batch_seconds=settings.worker_batch_seconds,
                          session_timeout=settings.worker_session_timeout,
                          fetch_wait_ms=settings.worker_fetch_wait_ms, index_threads=settings.worker_index_threads)
    return Worker(config, indexer)
