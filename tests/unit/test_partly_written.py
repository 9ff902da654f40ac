"""A networked log (Kafka) can take some records of an append and refuse others: the Recorder spools
exactly the refused ones, in order, and sends them once the log answers; nothing is lost or sent twice."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from producers.memory_log import MemoryEventLog
from producers.recorder import Recorder
from schemas.errors import LogPartlyWrittenError
from tests.unit.recorder_fakes import CODEC, decoded, record_simple


class HalfTakingLog:
    """The first append of several records takes every other one and refuses the rest; then all is taken."""

    def __init__(self) -> None:
        self.inner = MemoryEventLog()
        self.refused: list[tuple[bytes | None, bytes]] = []

    def append(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        if not self.refused and len(records) >= 2:
            self.inner.append(list(records[::2]))
            self.refused = list(records[1::2])
            raise LogPartlyWrittenError("injected: half the records timed out", self.refused)
        self.inner.append(records)

    def close(self) -> None:
        pass


def test_only_the_refused_records_are_spooled_and_all_arrive_once(tmp_path: Path) -> None:
    log = HalfTakingLog()
    recorder = Recorder(log, spool_dir=tmp_path / "spool", batch_size=10_000)
    ids = [record_simple(recorder, feature=f"f{i}") for i in range(40)]
    recorder.flush(10)
    assert log.refused, "an append was partly written"
    stats = recorder.stats()
    assert stats["acknowledged"] == 40
    assert len(log.refused) <= stats["spooled"] < 40, stats
    recorder.close()
    assert recorder.stats()["drained"] == recorder.stats()["spooled"]
    arrived = [e.record["output_id"] for e in decoded(log.inner)]
    assert sorted(arrived) == sorted(ids), "each record once: the records the log took are not sent again"
    refused = [e.record["output_id"] for e in map(CODEC.decode, (v for _, v in log.refused))]
    assert [o for o in arrived if o in set(refused)] == refused, "the refused ones keep their order"
