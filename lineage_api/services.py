"""The composition root: builds the log, index, reader and runner from settings."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from lineage_api.settings import Settings
from producers.log import ReadableEventLog, open_log
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


@dataclass(slots=True)
class Services:
    settings: Settings
    codec: Codec
    log: ReadableEventLog
    engine: Engine
    store: IndexStore
    reader: IndexReader
    runner: EmbeddedRunner
    key: SigningKey
    checkpointer: Checkpointer

    @property
    def public_keys(self) -> dict[str, str]:
        """key_id -> base64 raw Ed25519 public key of every key this store accepts checkpoints from."""
        return {self.key.key_id: self.key.public_info()["public_key"]}

    def close(self) -> None:
        self.runner.stop()
        self.log.close()
        self.engine.dispose()


def open_services(settings: Settings) -> Services:
    codec = Codec()
    event_log = open_log(settings.resolved_log_url)
    if not isinstance(event_log, ReadableEventLog):
        raise ConfigError(f"{settings.resolved_log_url} is not an embedded log; run `lineage worker` for Kafka")
    engine = open_engine(settings.resolved_index_url)
    store = IndexStore(engine)
    key = load_or_create_key(settings.resolved_signing_key_file)
    checkpointer = Checkpointer(
        engine, key, every_events=settings.checkpoint_every_events, every_seconds=settings.checkpoint_seconds,
        emit=lambda record: event_log.append([(CHECKPOINT_KEY, codec.encode("ChainCheckpoint", record))]),
        archive=_archiver(settings.archive_url),
    )
    runner = EmbeddedRunner(event_log, store, codec=codec, batch_size=settings.runner_batch_size,
                            max_event_bytes=settings.max_event_bytes, checkpointer=checkpointer)
    return Services(settings, codec, event_log, engine, store, IndexReader(engine, codec), runner, key,
                    checkpointer)


CHECKPOINT_KEY = b"llm_lineage.chain"


def _archiver(url: str | None) -> Callable[[Checkpoint, str], None] | None:
    """Checkpoints also go to the archive store, when one is configured: a copy outside the index."""
    if url is None:
        return None
    store = open_archive(url)

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
