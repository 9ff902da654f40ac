"""The embedded runner: tails a readable log and applies the projectors in batches.

Each batch (rows, dead letters and the next offset) is one index transaction, so a crash at any moment
either applied a batch whole or not at all, and the runner resumes from the stored position.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from schemas.codec import DEFAULT_MAX_EVENT_BYTES, Codec
from schemas.errors import LineageError
from streams.applier import BatchApplier, Prepared, SourceRecord, decode_batch
from streams.chain import Checkpointer
from streams.store import IndexStore

__all__ = ["EmbeddedRunner", "LogSource", "decode_batch"]

log = logging.getLogger("llm_lineage.runner")


class LogSource(Protocol):
    """What the runner needs of a log (the embedded SQLite and memory logs fit this)."""

    partition: int

    def read(self, offset: int, limit: int) -> Sequence[SourceRecord]: ...
    def end_offset(self) -> int: ...


class EmbeddedRunner:
    def __init__(
        self,
        source: LogSource,
        store: IndexStore,
        *,
        codec: Codec | None = None,
        batch_size: int = 2000,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        checkpointer: Checkpointer | None = None,
        poll_interval: float = 0.05,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.source, self.store = source, store
        self.codec = codec or Codec()
        self.batch_size, self.poll_interval = batch_size, poll_interval
        self.max_event_bytes = max_event_bytes
        self.checkpointer = checkpointer  # signs the partition's Merkle tree every N records or T seconds
        self.on_batch = on_batch  # (events applied, dead letters) after each commit
        self.applier = BatchApplier(store, self.codec, max_event_bytes)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.applied = 0
        self.dead = 0

    def _prepare(self, offset: int) -> Prepared | None:
        """Read, decode and project one batch from `offset`; None when caught up. No index writes."""
        records = self.source.read(offset, self.batch_size)
        if not records:
            return None
        return self.applier.prepare(self.source.partition, records)

    def _commit(self, batch: Prepared) -> None:
        self.applier.commit(self.source.partition, batch)
        self.applied += len(batch.events) + len(batch.repeats)
        self.dead += len(batch.dead)
        if self.on_batch is not None:
            self.on_batch(len(batch.events) + len(batch.repeats), len(batch.dead))

    def run_once(self) -> int:
        """Process one batch; returns the number of log records consumed (0 when caught up)."""
        batch = self._prepare(self.store.position(self.source.partition))
        if batch is None:
            return 0
        self._commit(batch)
        return batch.consumed

    def catch_up(self) -> int:
        """Process until the log has nothing new; returns records consumed.

        Batches run one after another on this thread: decoding the next batch on a second thread while
        one commits was measured slower (sqlite3 holds the GIL while binding rows, so the threads trade
        the GIL at every step).
        """
        total, report_at = 0, time.monotonic() + 5.0
        while not self._stop.is_set() and (n := self.run_once()):
            total += n
            self._maybe_checkpoint()
            if time.monotonic() >= report_at:  # long backlogs (first start, a restart after downtime)
                log.info("indexed %d events so far; %d behind", total, self.lag())
                report_at = time.monotonic() + 5.0
        return total

    def _maybe_checkpoint(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.maybe_checkpoint(self.source.partition)

    def lag(self) -> int:
        return max(0, self.source.end_offset() - self.store.position(self.source.partition))

    def run_forever(self) -> None:
        backoff = self.poll_interval
        while not self._stop.is_set():
            try:
                self.catch_up()
                self._maybe_checkpoint()  # time-based checkpoints come due while idle too
                backoff = self.poll_interval
            except LineageError as exc:
                # The log or index is briefly unusable (locked, restarting); nothing was committed.
                log.warning("runner: %s; retrying in %.2fs", exc, backoff)
                backoff = min(5.0, backoff * 2)
            self._stop.wait(backoff)

    def start(self) -> None:
        def main() -> None:
            try:
                self.run_forever()
            except BaseException as exc:  # surfaced by /readyz; the process supervisor restarts us
                self.error = exc
                log.exception("runner stopped")

        self._thread = threading.Thread(target=main, name="llm-lineage-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
