"""The Recorder: what an app calls to record LLM requests. The caller's thread only builds a tuple and
appends it to a bounded in-memory queue; a background writer encodes, appends to the log in batches and,
when the log cannot be written, spools to local disk and drains later.

A record is *acknowledged* once it is durable in the log or the spool; `flush()` returns when everything
recorded before it is acknowledged. Nothing acknowledged is lost.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from producers import events as ev
from producers.log import EventLog, open_log, sqlite_path
from producers.spool import Spool
from producers.values import (
    Attempt,
    Bundle,
    Classification,
    ModelCall,
    Output,
    Params,
    Prompt,
    PromptTemplate,
    Retrieval,
    RetrievalConfig,
    Rollout,
    Usage,
)
from producers.writer import Writer
from schemas.codec import DEFAULT_MAX_EVENT_BYTES, Codec
from schemas.errors import RecorderClosedError, RecorderError, RecorderOverloadedError, RecordsRejectedError
from schemas.ids import event_id_text, output_id_from, uuid7_at, uuid7_bytes

_logger = logging.getLogger("llm_lineage.recorder")

_INFERENCE, _CONSUMED, _PREBUILT = 0, 1, 2


class Recorder:
    """Thread-safe; one per process is plenty. Use as a context manager or call close()."""

    def __init__(
        self,
        log: EventLog | None = None,
        *,
        log_url: str | None = None,
        spool_dir: Path | str | None = None,
        tenant: str = "default",
        queue_size: int = 100_000,
        batch_size: int = 1000,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        block_timeout: float = 5.0,
        codec: Codec | None = None,
    ) -> None:
        if log is None:
            if log_url is None:
                raise RecorderError("give the Recorder a log or a log_url (e.g. sqlite:///lineage-data/log.db)")
            log = open_log(log_url)
            if spool_dir is None and log_url.startswith("sqlite:///"):
                spool_dir = sqlite_path(log_url).parent / "spool"  # where `lineage up` looks for it
            elif spool_dir is None and log_url.startswith("kafka://"):
                spool_dir = Path("lineage-data", "spool").resolve()  # a networked log must have a disk fallback
        self.tenant = tenant
        self._capacity = queue_size
        self._block_timeout = block_timeout
        self._queue: deque[tuple[Any, ...]] = deque()
        self._closed = False
        self._open = threading.Lock()
        self._space = threading.Condition(threading.Lock())
        self._writer = Writer(
            log=log,
            queue=self._queue,
            spool=Spool(Path(spool_dir)) if spool_dir is not None else None,
            codec=codec or Codec(),
            build=self._build,
            batch_size=batch_size,
            max_event_bytes=max_event_bytes,
            on_space=self._notify_space,
        )
        if spool_dir is None:
            _logger.info("llm-lineage: recorder without a spool_dir: while the log is unavailable, records wait "
                     "in memory (up to queue_size) instead of on disk")
        self._writer.start()
        atexit.register(self._close_at_exit)

    @classmethod
    def from_env(cls, **options: Any) -> Recorder:
        """A Recorder configured like `lineage up`: LINEAGE_LOG_URL, else the SQLite log in LINEAGE_DATA_DIR
        (default ./lineage-data), spooling to <data-dir>/spool."""
        data_dir = Path(os.environ.get("LINEAGE_DATA_DIR", "lineage-data")).resolve()
        log_url = os.environ.get("LINEAGE_LOG_URL") or f"sqlite:///{data_dir / 'log.db'}"
        options.setdefault("spool_dir", data_dir / "spool")
        if "LINEAGE_MAX_EVENT_BYTES" in os.environ:
            options.setdefault("max_event_bytes", int(os.environ["LINEAGE_MAX_EVENT_BYTES"]))
        if log_url.startswith("kafka://") and os.environ.get("LINEAGE_TOPIC"):
            return cls(open_log(log_url, topic=os.environ["LINEAGE_TOPIC"]), **options)
        return cls(log_url=log_url, **options)

    # -- the caller's side: no I/O, no encoding ------------------------------------------------------

    def record(
        self,
        *,
        feature: str,
        prompt: Prompt,
        model: ModelCall,
        output: Output,
        bundle: Bundle | None = None,
        retrieval: Retrieval | None = None,
        params: Params | None = None,
        usage: Usage | None = None,
        cost_usd_micros: int = 0,
        latency_ms: float = 0.0,
        status: str = "OK",
        error: BaseException | tuple[str, str] | None = None,
        attempts: Sequence[Attempt] = (),
        parents: Sequence[str] = (),
        trace_id: str | None = None,
        rollout: Rollout | None = None,
        classification: Classification | None = None,
        tenant: str | None = None,
        occurred_at: datetime | None = None,
    ) -> str:
        """Record one LLM request; returns its output ID at once. Encoding happens on the writer."""
        now_ns = time.time_ns()
        raw = uuid7_bytes(now_ns) if occurred_at is None else uuid7_at(_ns(occurred_at))
        output_id = output_id_from(raw)
        self._enqueue((
            _INFERENCE, raw, output_id, now_ns // 1000, occurred_at, tenant or self.tenant, feature, prompt,
            model, output, bundle, retrieval, params, usage, cost_usd_micros, latency_ms, status, error,
            attempts, parents, trace_id, rollout, classification,
        ))
        return output_id

    def consumed(
        self,
        output_id: str,
        *,
        consumer: str,
        consumer_ref: str | None = None,
        purpose: str | None = None,
        tenant: str | None = None,
        occurred_at: datetime | None = None,
    ) -> None:
        """Record that a downstream system used an output."""
        now_ns = time.time_ns()
        occurred_us = ev.to_micros(occurred_at, now_ns // 1000)  # a naive datetime fails here, on the caller
        self._enqueue((_CONSUMED, uuid7_bytes(now_ns), output_id, occurred_us, None,
                       tenant or self.tenant, consumer, consumer_ref, purpose))

    def register_bundle(
        self,
        *,
        name: str,
        version: str,
        prompt: PromptTemplate,
        model: ModelCall,
        retrieval: RetrievalConfig | None = None,
        params: Params | None = None,
        registered_by: str | None = None,
        tenant: str | None = None,
        occurred_at: datetime | None = None,
    ) -> Bundle:
        """Register a release; the same content always gets the same bundle_id (sha256 of canonical JSON)."""
        now_ns = time.time_ns()
        content = ev.bundle_content(prompt=prompt, model=model, retrieval=retrieval, params=params)
        bundle, record = ev.bundle_registered_record(
            event_id=event_id_text(uuid7_bytes(now_ns)),
            occurred_us=ev.to_micros(occurred_at, now_ns // 1000),
            tenant=tenant or self.tenant, name=name, version=version, content=content,
            registered_by=registered_by,
        )
        self._enqueue((_PREBUILT, "BundleRegistered", bundle.bundle_id.encode(), record))
        return bundle

    def move_alias(
        self,
        *,
        feature: str,
        alias: str,
        bundle: Bundle,
        previous: Bundle | None = None,
        weight: float = 1.0,
        reason: str = "",
        approver: str | None = None,
        evaluation_ref: str | None = None,
        tenant: str | None = None,
        occurred_at: datetime | None = None,
    ) -> None:
        """Point a feature's alias (production, canary) at a bundle, with the evidence for the move."""
        now_ns = time.time_ns()
        record = {
            "event_id": event_id_text(uuid7_bytes(now_ns)),
            "occurred_at": ev.to_micros(occurred_at, now_ns // 1000),
            "tenant": tenant or self.tenant, "feature": feature, "alias": alias,
            "bundle_id": bundle.bundle_id,
            "previous_bundle_id": None if previous is None else previous.bundle_id,
            "weight": float(weight), "reason": reason, "approver": approver, "evaluation_ref": evaluation_ref,
        }
        self._enqueue((_PREBUILT, "AliasMoved", feature.encode(), record))

    def _enqueue(self, item: tuple[Any, ...]) -> None:
        if len(self._queue) >= self._capacity:
            self._wait_for_space()
        with self._open:  # close() takes it too: nothing lands in the queue after the writer's last look
            if self._closed:
                raise RecorderClosedError("this Recorder is closed")
            self._queue.append(item)
        self._writer.wake_if_idle()

    def _wait_for_space(self) -> None:
        deadline = time.monotonic() + self._block_timeout
        with self._space:
            while len(self._queue) >= self._capacity:
                if not self._writer.is_alive():
                    raise RecorderError("the recorder's writer thread has stopped; records cannot be delivered")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RecorderOverloadedError(
                        f"the record queue stayed full ({self._capacity} records) for {self._block_timeout}s; "
                        "the log and the spool are not keeping up"
                    )
                self._writer.wake_if_idle()
                self._space.wait(min(left, 0.05))

    def _notify_space(self) -> None:
        with self._space:
            self._space.notify_all()

    # -- the writer's side ---------------------------------------------------------------------------

    def _build(self, item: tuple[Any, ...]) -> tuple[str, bytes | None, dict[str, Any]]:
        """Item -> (event type, log key, Avro record). Runs on the writer thread."""
        kind = item[0]
        if kind == _PREBUILT:
            return item[1], item[2], item[3]
        if kind == _CONSUMED:
            _, raw, output_id, now_us, when, tenant, consumer, ref, purpose = item
            return "OutputConsumed", output_id.encode(), {
                "event_id": event_id_text(raw), "occurred_at": ev.to_micros(when, now_us), "tenant": tenant,
                "output_id": output_id, "consumer": consumer, "consumer_ref": ref, "purpose": purpose,
            }
        (_, raw, output_id, now_us, when, tenant, feature, prompt, model, output, bundle, retrieval, params,
         usage, cost, latency, status, error, attempts, parents, trace_id, rollout, classification) = item
        record = ev.inference_record(
            event_id=event_id_text(raw), output_id=output_id, occurred_us=ev.to_micros(when, now_us),
            tenant=tenant, feature=feature, prompt=prompt, model=model, output=output, bundle=bundle,
            retrieval=retrieval, params=params, usage=usage, cost_usd_micros=cost, latency_ms=latency,
            status=status, error=error, attempts=attempts, parents=parents, trace_id=trace_id,
            rollout=rollout, classification=classification,
        )
        # The lineage root keys the record, so a whole chain lands on one partition, in order.
        return "InferenceRecorded", (trace_id or output_id).encode(), record

    # -- lifecycle -----------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything recorded so far is acknowledged (in the log or the spool).

        Raises RecordsRejectedError once for records that could not be encoded since the last flush.
        """
        if not self._writer.is_alive():
            raise RecorderError("the recorder's writer thread has stopped; records cannot be delivered")
        if not self._writer.flush(timeout):
            raise RecorderError(f"flush timed out after {timeout}s with {len(self._queue)} records queued")
        problems = self._writer.take_rejections()
        if problems:
            raise RecordsRejectedError(problems)

    def close(self, timeout: float | None = 30.0) -> None:
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            with self._open:
                self._closed = True
            self._writer.stop(timeout)
            atexit.unregister(self._close_at_exit)

    def _close_at_exit(self) -> None:
        try:
            self.close(timeout=10.0)
        except RecorderError as exc:
            _logger.error("llm-lineage recorder at exit: %s", exc)

    def stats(self) -> dict[str, int]:
        """Counters since start: recorded, acknowledged, spooled, drained from spool, rejected, queued."""
        return {**self._writer.counters(), "queued": len(self._queue)}

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ns(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware (UTC)")
    return ev.to_micros(when, 0) * 1000
