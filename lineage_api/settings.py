"""Settings from the environment (LINEAGE_*) and flags. With none set, everything lives under ./lineage-data."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.codec import DEFAULT_MAX_EVENT_BYTES
from schemas.registry import TOPIC


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINEAGE_", extra="ignore")

    data_dir: Path = Field(default=Path("lineage-data"), description="Where the embedded log, index and spool live.")
    log_url: str | None = Field(default=None, description="Event log; default sqlite:///<data-dir>/log.db")
    index_url: str | None = Field(default=None, description="Lineage index; default sqlite:///<data-dir>/index.db")
    archive_url: str | None = Field(default=None, description="Archive store; default file://<data-dir>/archive")
    schema_registry_url: str | None = None
    max_event_bytes: int = Field(default=DEFAULT_MAX_EVENT_BYTES, gt=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8600, ge=0, le=65535)
    runner_batch_size: int = Field(default=2000, gt=0)
    signing_key_file: Path | None = Field(
        default=None, description="Ed25519 PEM key that signs checkpoints; default <data-dir>/signing-key.pem, "
        "created on first run with mode 0600")
    checkpoint_every_events: int = Field(default=10_000, gt=0, description="Sign a checkpoint after this many records")
    checkpoint_seconds: float = Field(default=60.0, gt=0, description="...or this long after the last one")
    # -- production mode: Kafka + `lineage worker` + PostgreSQL + S3 -----------------------------------
    topic: str = Field(default=TOPIC, description="The event topic (keyed by lineage root)")
    dlq_topic: str = Field(default=f"{TOPIC}.dlq", description="Where the worker puts records it cannot index")
    topic_partitions: int = Field(default=12, gt=0, description="Partitions `lineage topics create` makes")
    worker_group: str = Field(default="llm-lineage-indexer", description="The workers' Kafka consumer group")
    worker_batch_seconds: float = Field(default=0.1, gt=0, description="Longest a worker waits to fill a batch")
    worker_fetch_wait_ms: int = Field(default=20, ge=1, le=5000, description="Longest a worker's fetch waits for "
                                      "new records (faust's own 1500 ms stalls partitions that are quiet)")
    worker_index_threads: int = Field(default=1, ge=1, le=32, description="Threads a worker applies partitions "
                                      "on, side by side (each holds an index connection)")
    worker_session_timeout: float = Field(default=10.0, ge=1.0, description="Consumer group session timeout (s): "
                                          "how soon a dead worker's partitions move to the others")
    s3_endpoint: str | None = Field(default=None, description="S3-compatible endpoint for s3:// archives (MinIO)")
    auto_migrate: bool = Field(default=True, description="Bring the index schema up to date when a process opens it")

    @property
    def resolved_log_url(self) -> str:
        return self.log_url or f"sqlite:///{self.data_dir.resolve() / 'log.db'}"

    @property
    def resolved_index_url(self) -> str:
        return self.index_url or f"sqlite:///{self.data_dir.resolve() / 'index.db'}"

    @property
    def resolved_signing_key_file(self) -> Path:
        return self.signing_key_file or self.data_dir.resolve() / "signing-key.pem"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir.resolve() / "spool"

    @property
    def max_request_bytes(self) -> int:
        """A batch POST may carry many events; cap the body so one request cannot exhaust memory."""
        return self.max_event_bytes * 8
