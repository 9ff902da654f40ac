"""The EventLog port: where recorded events go first. One `open_log(url)` picks the backend by URL scheme.

A log is a durable, ordered, append-only sequence of (key, value) records; `append` returns only once the
records are durable, which is what makes them acknowledged. Readable logs (the embedded ones) also hand
records back by offset to the stream runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from schemas.errors import ConfigError


@dataclass(frozen=True, slots=True)
class LogRecord:
    offset: int  # 0-based position in the log's single partition
    key: bytes | None
    value: bytes
    timestamp_us: int  # when the log accepted the record, Unix µs


@runtime_checkable
class EventLog(Protocol):
    def append(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Store the records durably and in order, or raise LogUnavailableError having stored none."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ReadableEventLog(EventLog, Protocol):
    partition: int

    def read(self, offset: int, limit: int) -> list[LogRecord]:
        """Up to `limit` records at offsets >= `offset`, in order; empty when caught up."""
        ...

    def end_offset(self) -> int:
        """The offset the next appended record will get."""
        ...


def open_log(url: str, *, topic: str | None = None) -> EventLog:
    """The log at `url`; `topic` names the Kafka topic (default: the URL's ?topic=, else the event topic)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        from producers.sqlite_log import SqliteEventLog

        return SqliteEventLog(sqlite_path(url))
    if parts.scheme == "memory":
        from producers.memory_log import MemoryEventLog

        return MemoryEventLog()
    if parts.scheme == "kafka":
        try:
            from producers.kafka_log import KafkaEventLog
        except ImportError as exc:
            raise ConfigError(f"the Kafka log needs confluent-kafka: pip install 'llm-lineage[kafka]' ({exc})") from exc
        return KafkaEventLog(url, topic=topic)
    raise ConfigError(
        f"unsupported log URL scheme {parts.scheme!r} in {url!r}; use sqlite:///, memory:// or kafka://")


def sqlite_path(url: str) -> Path:
    """sqlite:///relative/file.db and sqlite:////absolute/file.db, as SQLAlchemy spells them."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(f"bad SQLite URL {url!r}; expected sqlite:///path/to/file.db")
    return Path(url[len(prefix):])
