"""The composition root: builds the log, index, reader and runner from settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from lineage_api.settings import Settings
from producers.log import ReadableEventLog, open_log
from producers.spool import Spool
from schemas.codec import Codec
from schemas.errors import ConfigError, LogError
from streams.reader import IndexReader
from streams.runner import EmbeddedRunner
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
    runner = EmbeddedRunner(event_log, store, codec=codec, batch_size=settings.runner_batch_size,
                            max_event_bytes=settings.max_event_bytes)
    return Services(settings, codec, event_log, engine, store, IndexReader(engine, codec), runner)


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
