"""`lineage worker`: the faust app that indexes the Kafka event topic. The only module importing faust.

One agent takes the topic in batches (`stream.take_events`) and hands each partition's records to the
PartitionIndexer, which applies the same projectors as the embedded runner and stores the partition's
position in the same index transaction. faust runs `at_least_once`; the index position, not the group's
committed offset, is what counts: on every assignment the worker seeks each partition to its index
position, a re-delivered record is skipped, and the index stays exact through crashes and rebalances.
So one batch can be applied (on an index thread) while faust gathers the next.

Records that cannot be indexed go to the dead-letter topic, with the reason and their origin in headers,
before the batch that skips them commits (at least once there too), and to the index's dead letters.

Two costs of stock faust are removed, both measured on bench/ingest_kafka.py: its aiokafka consumer waits
up to 1.5 s on each fetch that finds nothing new, which stalls busy partitions behind quiet ones (lowered to
`fetch_wait_ms`, default 20 ms); and it races every message's delivery against a flow suspension with four
futures (the worker awaits the delivery directly while the flow runs).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, EventT, TransportT
from mode.services import WaitResults
from sqlalchemy.exc import SQLAlchemyError

from schemas.errors import LineageError
from streams.partition_indexer import ConsumedRecord, Gap, PartitionIndexer, Plan, by_partition
from streams.store import DeadLetter

log = logging.getLogger("llm_lineage.worker")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    bootstrap: str  # host:port[,host:port]
    topic: str
    dlq_topic: str
    group: str
    batch_size: int = 2000
    batch_seconds: float = 0.1
    session_timeout: float = 10.0
    fetch_wait_ms: int = 20
    index_threads: int = 1


def _consumer_with_fetch_wait(wait_ms: int) -> type[faust_aiokafka.Consumer]:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: TransportT) -> Any:
            consumer = super()._create_worker_consumer(transport)  # type: ignore[arg-type]
            consumer._fetch_max_wait_ms = wait_ms  # read by aiokafka when the consumer starts
            return consumer

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
            """faust hands each message to the streams through this, racing the delivery against a flow
            suspension (a rebalance): four futures and an asyncio.wait per message, measured as the largest
            part of faust's own cost per event. While the flow runs, the delivery is awaited directly; it
            only waits when the stream buffer is full, and the agent empties that buffer during a rebalance
            too. Records delivered after a suspension are fenced by the index positions like any other."""
            if (len(coros) == 2 and timeout is None and asyncio.iscoroutine(coros[0])
                    and asyncio.iscoroutine(coros[1]) and self.flow_active and not self.should_stop):
                coros[1].close()  # the suspension waiter, not needed
                return WaitResults([coros[0]], [await coros[0]], False)
            return await super().wait_first(*coros, timeout=timeout)

    return Consumer


class _App(faust.App):
    """faust's app on our consumer: the fetch wait set by us (faust hard-codes 1.5 s), deliveries awaited
    directly."""

    fetch_wait_ms = 20

    def _new_transport(self) -> TransportT:
        consumer = _consumer_with_fetch_wait(self.fetch_wait_ms)

        class Transport(faust_aiokafka.Transport):
            Consumer = consumer

        return Transport(self.conf.broker_consumer, self)


def dead_letter_headers(topic: str, dead: DeadLetter) -> dict[str, bytes]:
    return {
        "lineage.reason": dead.reason.encode("utf-8", "replace")[:4000],
        "lineage.source.topic": topic.encode(),
        "lineage.source.partition": str(dead.partition).encode(),
        "lineage.source.offset": str(dead.offset).encode(),
        "lineage.dead_at_us": str(time.time_ns() // 1000).encode(),
    }


class Worker:
    """Builds the faust app around a PartitionIndexer; `run()` blocks until SIGTERM/SIGINT."""

    def __init__(self, config: WorkerConfig, indexer: PartitionIndexer, *,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.config, self.indexer, self.on_batch = config, indexer, on_batch
        # Index work runs off the event loop that serves the consumer, on a few threads: a partition's batches
        # apply in order (one at a time), different partitions side by side.
        self._db = ThreadPoolExecutor(max_workers=config.index_threads, thread_name_prefix="llm-lineage-index")
        self.app = self._build()

    def _build(self) -> faust.App:
        c = self.config
        app = _App(
            c.group,
            broker=";".join(f"kafka://{server}" for server in c.bootstrap.split(",")),
            processing_guarantee="at_least_once",
            store="memory://",
            web_enabled=False,
            topic_allow_declare=False,  # `lineage topics create` owns the topics and their settings
            topic_disable_leader=True,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=c.session_timeout,
            broker_heartbeat_interval=max(0.5, c.session_timeout / 5),
            broker_request_timeout=max(40.0, c.session_timeout * 2),
            broker_max_poll_records=c.batch_size,
            consumer_max_fetch_size=4 * 1024 * 1024,
            stream_buffer_maxsize=max(4096, c.batch_size * 2),
            broker_commit_interval=1.0,
            producer_acks=-1,
            producer_max_request_size=2 * 1024 * 1024,
            logging_config=None,
        )
        app.fetch_wait_ms = c.fetch_wait_ms
        topic = app.topic(c.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                          allow_empty=True)
        self.dlq = app.topic(c.dlq_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw")

        @app.agent(topic, name="lineage-indexer")
        async def index(stream: faust.StreamT[bytes]) -> None:
            # One batch is applied while the next is gathered: faust's per-event work overlaps the index's.
            # faust acks a batch once it is handed over, before it is applied; that is safe because the
            # index position, not the group's offset, says where a partition resumes.
            applying: asyncio.Future[None] | None = None
            try:
                async for events in stream.take_events(c.batch_size, within=c.batch_seconds):  # type: ignore[attr-defined]
                    if applying is not None:
                        await applying  # re-raises what applying the previous batch raised
                    applying = asyncio.ensure_future(self.handle(events))
            finally:
                if applying is not None and not applying.done():
                    await asyncio.wait([applying], timeout=c.session_timeout * 3)

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def seek_to_index_positions(sender: Any, assigned: set[TP], **_: Any) -> None:
            await self._seek_to_positions([tp for tp in assigned if tp.topic == c.topic])

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def forget_revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
            parts = [tp.partition for tp in revoked if tp.topic == c.topic]
            await self._in_db(self.indexer.forget, parts)

        return app

    async def _in_db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run index work on the index thread; while the index is unreachable (PostgreSQL restarting, say),
        retry with backoff, holding the batch: nothing is acknowledged to Kafka until it is applied."""
        backoff = 0.1
        while True:
            try:
                return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)
            except (LineageError, SQLAlchemyError, OSError) as exc:
                log.warning("index unavailable (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)

    async def _seek(self, offsets: dict[TP, int]) -> None:
        """Seek on the consumer's own thread (a seek from this loop would race the thread's fetcher)."""
        await self.app.consumer.seek_wait(offsets)

    async def _seek_to_positions(self, tps: Sequence[TP]) -> None:
        self.indexer.forget(tp.partition for tp in tps)
        offsets = {tp: await self._in_db(self.indexer.position, tp.partition) for tp in tps}
        for tp, position in offsets.items():
            log.info("partition %d assigned; resuming at index position %d", tp.partition, position)
        if offsets:
            await self._seek(offsets)

    async def handle(self, events: Sequence[EventT[bytes]]) -> None:
        """Apply one batch taken from the stream, partition by partition."""
        pairs = ((e.message.partition, ConsumedRecord(e.message.offset, e.message.key, e.message.value or b""))
                 for e in events)
        groups = by_partition(pairs)
        # Partitions apply side by side on the index threads: one decodes while another waits on its commit.
        await asyncio.gather(*(self._apply(partition, records) for partition, records in groups.items()))
        await self._in_db(self.indexer.maybe_checkpoint, list(groups))
        if self.on_batch is not None:
            self.on_batch(len(events))

    async def _apply(self, partition: int, records: list[ConsumedRecord]) -> None:
        while True:
            plan: Plan | Gap | None = await self._in_db(self.indexer.plan, partition, records)
            if plan is None:
                return
            if isinstance(plan, Gap):
                log.warning("partition %d: records start at %d but the index stands at %d; seeking back",
                            partition, plan.first_offset, plan.position)
                await self._seek({TP(self.config.topic, partition): plan.position})
                return
            if plan.batch.dead:
                await self._send_dead(plan, plan.dead_with_keys())
            found_before = len(plan.batch.dead)
            if await self._in_db(self.indexer.commit, plan):
                if len(plan.batch.dead) > found_before:  # rows the index refused, found while committing
                    await self._send_dead(plan, plan.dead_with_keys()[found_before:])
                if plan.resume_at is not None:
                    log.warning("partition %d: the batch skipped offsets after %d; seeking back there",
                                partition, plan.resume_at - 1)
                    await self._seek({TP(self.config.topic, partition): plan.resume_at})
                return
            # Another consumer applied part of this partition first: plan again from its position.

    async def _send_dead(self, plan: Plan, dead_letters: list[tuple[DeadLetter, bytes | None]]) -> None:
        sent = []
        for dead, key in dead_letters:
            # force=True: send now, not when the event is acked (that comes after this batch commits).
            sent.append(await self.dlq.send(key=key, value=dead.raw, headers=dead_letter_headers(
                self.config.topic, dead), force=True))
        await asyncio.gather(*sent)
        log.warning("partition %d: %d records sent to %s", plan.partition, len(sent), self.config.dlq_topic)

    def run(self, loglevel: str = "info") -> None:
        worker = faust.Worker(self.app, loglevel=loglevel, quiet=True, override_logging=False)
        try:
            worker.execute_from_commandline()
        finally:
            self._db.shutdown(wait=True)
