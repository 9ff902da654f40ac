"""The composition root: builds the log, index, reader and runner from settings."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from sqlalchemy import Engine

from lineage_api.settings import Settings
from producers.log import EventLog, ReadableEventLog, open_log
from producers.spool import Spool
from retention.archive import open_archive
from schemas.codec import Codec
from schemas.errors import ConfigError, LogError
from streams.chain import Checkpoint, Checkpointer
from streams.reader import IndexReader
from streams.runner import EmbeddedRunner
from streams.signing import SigningKey, load_or_create_key
from streams.store import IndexStore, open_engine

log = logging.getLogger("llm_lineage")


class IndexProgress(Protocol):
    """How far the index is behind the log, whoever indexes it."""

    def lag(self) -> int: ...
    def end_offset(self) -> int: ...


@dataclass(frozen=True, slots=True)
class _EmbeddedProgress:
    runner: EmbeddedRunner
    log: ReadableEventLog

    def lag(self) -> int:
        return self.runner.lag()

    def end_offset(self) -> int:
        return self.log.end_offset()


@dataclass(frozen=True, slots=True)
class _WorkerProgress:
    """Production mode: `lineage worker` processes index the topic; compare their positions in the index
    with the topic's end offsets."""

    log: KafkaLog
    store: IndexStore

    def lag(self) -> int:
        ends = self.log.end_offsets()
        return sum(max(0, end - self.store.position(p)) for p, end in ends.items())

    def end_offset(self) -> int:
        return sum(self.log.end_offsets().values())


class KafkaLog(EventLog, Protocol):
    def end_offsets(self) -> dict[int, int]: ...


@dataclass(slots=True)
class Services:
    settings: Settings
    codec: Codec
    log: EventLog
    engine: Engine
    store: IndexStore
    reader: IndexReader
    runner: EmbeddedRunner | None  # None in production mode, where `lineage worker` indexes
    progress: IndexProgress
    key: SigningKey
    checkpointer: Checkpointer | None

    @property
    def public_keys(self) -> dict[str, str]:
        """key_id -> base64 raw Ed25519 public key of every key this store accepts checkpoints from."""
        return {self.key.key_id: self.key.public_info()["public_key"]}

    @property
    def embedded(self) -> EmbeddedRunner:
        """The embedded runner, for commands that only make sense in embedded mode."""
        if self.runner is None:
            raise ConfigError(f"this needs the embedded store; {self.settings.resolved_log_url} is indexed by "
                              "`lineage worker`")
        return self.runner

    def close(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        self.log.close()
        self.engine.dispose()


def open_services(settings: Settings) -> Services:
    """Embedded (a readable log: the runner indexes it in this process) or production mode (Kafka: the API
    appends to the topic and reads the index the workers build)."""
    codec = Codec()
    event_log = open_log(settings.resolved_log_url, topic=settings.topic)
    engine = open_engine(settings.resolved_index_url, migrate=settings.auto_migrate)
    store = IndexStore(engine)
    key = load_or_create_key(settings.resolved_signing_key_file)
    reader = IndexReader(engine, codec)
    if not isinstance(event_log, ReadableEventLog):
        if not hasattr(event_log, "end_offsets"):
            raise ConfigError(f"{settings.resolved_log_url}: no index progress can be read from this log")
        progress = _WorkerProgress(cast(KafkaLog, event_log), store)
        return Services(settings, codec, event_log, engine, store, reader, None, progress, key, None)
    readable = event_log
    checkpointer = Checkpointer(
        engine, key, every_events=settings.checkpoint_every_events, every_seconds=settings.checkpoint_seconds,
        emit=lambda record: readable.append([(CHECKPOINT_KEY, codec.encode("ChainCheckpoint", record))]),
        archive=archiver(settings),
    )
    runner = EmbeddedRunner(readable, store, codec=codec, batch_size=settings.runner_batch_size,
                            max_event_bytes=settings.max_event_bytes, checkpointer=checkpointer)
    return Services(settings, codec, readable, engine, store, reader, runner, _EmbeddedProgress(runner, readable),
                    key, checkpointer)


CHECKPOINT_KEY = b"llm_lineage.chain"


def archiver(settings: Settings) -> Callable[[Checkpoint, str], None] | None:
    """Checkpoints also go to the archive store, when one is configured: a copy outside the index."""
    if settings.archive_url is None:
        return None
    store = open_archive(settings.archive_url, s3_endpoint=settings.s3_endpoint)

    def put(cp: Checkpoint, signature: str) -> None:
        document = {"signed_body": cp.body().decode("utf-8"), "signature": signature, "key_id": cp.key_id}
        store.put(f"checkpoints/{cp.log_partition}/{cp.tree_size:020d}.json",
                  json.dumps(document, indent=2).encode("utf-8"))

    return put


def drain_spool(services: Services) -> int:
    """Move records that SDKs spooled into this data dir while the log was unwritable into the log."""
    try:
        moved = Spool(services.settings.spool_dir).drain(services.log)
    except LogError as exc:
        log.warning("could not drain the spool yet: %s", exc)
        return 0
    if moved:
        log.info("drained %d spooled records into the log", moved)
    return moved
