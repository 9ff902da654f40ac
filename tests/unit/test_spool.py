"""The disk spool: framed, fsync'd records that survive until the log can take them."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from producers.memory_log import MemoryEventLog
from producers.spool import SUFFIX, Spool, read_frames
from schemas.errors import LogUnavailableError

Records = list[tuple[bytes | None, bytes]]


def sample(n: int, tag: str = "r") -> Records:
    out: Records = []
    for i in range(n):
        key = None if i % 3 == 0 else (b"" if i % 3 == 1 else f"key-{i}".encode())
        out.append((key, f"{tag}-{i}".encode() + bytes(range(i % 7))))
    return out


def logged(log: MemoryEventLog) -> Records:
    return [(r.key, r.value) for r in log.read(0, 1_000_000)]


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*" + SUFFIX))


class FailingOnCall:
    """A log whose n-th append (1-based) raises LogUnavailableError having stored nothing."""

    def __init__(self, inner: MemoryEventLog, fail_on: int) -> None:
        self.inner, self.fail_on, self.calls = inner, fail_on, 0

    def append(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        self.calls += 1
        if self.calls == self.fail_on:
            raise LogUnavailableError("injected: log went away mid-drain")
        self.inner.append(records)

    def close(self) -> None:
        pass


def test_append_then_drain_preserves_order_keys_and_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    first, second = sample(5, "a"), sample(4, "b")
    spool.append(first)
    spool.append(second)
    assert spool.pending == 9
    log = MemoryEventLog()
    assert spool.drain(log) == 9
    assert logged(log) == first + second
    assert spool.pending == 0
    assert spool_files(tmp_path / "spool") == []


def test_keys_none_empty_and_bytes_stay_distinct(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    records: Records = [(None, b"v1"), (b"", b"v2"), (b"k", b""), (b"\x00\xff", b"\x00\x01\x02")]
    spool.append(records)
    log = MemoryEventLog()
    spool.drain(log)
    assert logged(log) == records


def test_drain_with_small_batches_keeps_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    records = sample(23)
    spool.append(records)
    log = MemoryEventLog()
    assert spool.drain(log, batch_size=5) == 23
    assert logged(log) == records


def test_spool_can_be_used_again_after_draining(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(sample(2, "x"))
    log = MemoryEventLog()
    spool.drain(log)
    spool.append(sample(3, "y"))
    assert spool.pending == 3
    spool.drain(log)
    assert logged(log) == sample(2, "x") + sample(3, "y")


def test_drain_of_a_missing_directory_moves_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "never-created")
    assert not spool.has_files()
    assert spool.drain(MemoryEventLog()) == 0


def test_close_keeps_a_file_with_records_and_removes_an_empty_one(tmp_path: Path) -> None:
    kept = Spool(tmp_path)
    kept.append(sample(1))
    kept.close()
    assert len(spool_files(tmp_path)) == 1

    empty_dir = tmp_path / "empty"
    empty = Spool(empty_dir)
    empty.append([])
    assert len(spool_files(empty_dir)) == 1
    empty.close()
    assert spool_files(empty_dir) == []


def test_records_are_on_disk_as_soon_as_append_returns(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(sample(3))
    (path,) = spool_files(tmp_path)
    with path.open("rb") as f:  # a second reader sees them without any close or flush
        assert list(read_frames(f)) == sample(3)
    spool.close()


# -- damaged files ----------------------------------------------------------------------------------------


def write_orphan(directory: Path, records: Records) -> Path:
    spool = Spool(directory)
    spool.append(records)
    spool.close()
    (path,) = [p for p in spool_files(directory) if p.stat().st_size]
    return path


@pytest.mark.parametrize("cut", [1, 3, 8, 12])
def test_a_torn_last_frame_is_dropped_and_earlier_frames_kept(tmp_path: Path, cut: int) -> None:
    records = [(b"k", b"value-%d" % i) for i in range(4)]
    path = write_orphan(tmp_path, records)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - cut)  # a crash cut the last write short
    log = MemoryEventLog()
    assert Spool(tmp_path).drain(log) == 3
    assert logged(log) == records[:3]
    assert spool_files(tmp_path) == []


def test_a_corrupt_crc_stops_reading_at_that_frame(tmp_path: Path) -> None:
    records = [(b"k", b"AAAA"), (b"k", b"BBBB"), (b"k", b"CCCC")]
    path = write_orphan(tmp_path, records)
    data = bytearray(path.read_bytes())
    at = data.index(b"BBBB")
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with path.open("rb") as f:
        assert list(read_frames(f)) == records[:1]


def test_a_frame_whose_key_length_exceeds_its_body_is_treated_as_corrupt(tmp_path: Path) -> None:
    import struct
    import zlib

    body = b"abc"
    good = write_orphan(tmp_path, [(None, b"ok")])
    with good.open("ab") as f:
        f.write(struct.pack(">IIi", len(body), zlib.crc32(body), 10) + body)
    with good.open("rb") as f:
        assert list(read_frames(f)) == [(None, b"ok")]


# -- other processes' files -----------------------------------------------------------------------------


def test_drains_an_orphan_file_left_by_a_closed_spool(tmp_path: Path) -> None:
    records = sample(6, "orphan")
    write_orphan(tmp_path, records)
    newcomer = Spool(tmp_path)
    assert newcomer.has_files()
    log = MemoryEventLog()
    assert newcomer.drain(log) == 6
    assert logged(log) == records
    assert spool_files(tmp_path) == []
    assert newcomer.pending == 0


def test_orphans_drain_oldest_file_first(tmp_path: Path) -> None:
    older = write_orphan(tmp_path / "a", sample(2, "older"))
    newer = write_orphan(tmp_path / "b", sample(2, "newer"))
    # Both into one folder, with clearly ordered modification times.
    older = older.rename(tmp_path / ("z-older" + SUFFIX))
    newer = newer.rename(tmp_path / ("a-newer" + SUFFIX))
    os.utime(older, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    os.utime(newer, ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_000))
    log = MemoryEventLog()
    assert Spool(tmp_path).drain(log) == 4
    assert logged(log) == sample(2, "older") + sample(2, "newer")


def test_drain_takes_own_and_orphan_files(tmp_path: Path) -> None:
    write_orphan(tmp_path, sample(2, "orphan"))
    spool = Spool(tmp_path)
    spool.append(sample(3, "own"))
    log = MemoryEventLog()
    assert spool.drain(log) == 5
    assert sorted(logged(log), key=repr) == sorted(sample(2, "orphan") + sample(3, "own"), key=repr)
    assert spool_files(tmp_path) == []


def test_a_file_locked_by_another_open_descriptor_is_not_drained(tmp_path: Path) -> None:
    path = write_orphan(tmp_path, sample(2))
    with path.open("rb") as holder:  # stands for a live recorder that still owns the file
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        log = MemoryEventLog()
        assert Spool(tmp_path).drain(log) == 0
        assert logged(log) == []
        assert path.exists()
    log = MemoryEventLog()
    assert Spool(tmp_path).drain(log) == 2


HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from producers.spool import Spool

    spool = Spool(Path(sys.argv[1]))
    spool.append([(b"k", b"live-1"), (None, b"live-2")])
    print("ready", flush=True)
    sys.stdin.readline()  # hold the spool (and its lock) until told to exit
    spool.close()
    """
)


def test_a_file_owned_by_a_live_spool_in_another_process_is_not_drained(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline().strip() == "ready"
            log = MemoryEventLog()
            assert Spool(tmp_path).drain(log) == 0
            assert logged(log) == []
            assert len(spool_files(tmp_path)) == 1

            holder.stdin.write("exit\n")
            holder.stdin.flush()
            assert holder.wait(timeout=20) == 0
        finally:
            if holder.poll() is None:
                holder.kill()
    log = MemoryEventLog()
    assert Spool(tmp_path).drain(log) == 2  # once the owner is gone, its file is an orphan like any other
    assert logged(log) == [(b"k", b"live-1"), (None, b"live-2")]
    assert spool_files(tmp_path) == []


# -- drain failing midway ---------------------------------------------------------------------------------


def test_a_drain_that_fails_midway_leaves_the_orphan_file_for_the_next_attempt(tmp_path: Path) -> None:
    records = sample(5)
    write_orphan(tmp_path, records)
    inner = MemoryEventLog()
    with pytest.raises(LogUnavailableError):
        Spool(tmp_path).drain(FailingOnCall(inner, fail_on=2), batch_size=2)
    assert logged(inner) == records[:2]
    assert len(spool_files(tmp_path)) == 1

    assert Spool(tmp_path).drain(inner, batch_size=2) == 5
    # The first batch reaches the log twice: the spool cannot know which batches of a file made it
    # before the failure. That is safe because the index deduplicates by event_id (exactly-once effects).
    assert logged(inner) == records[:2] + records
    assert spool_files(tmp_path) == []


def test_a_drain_of_its_own_file_that_fails_midway_keeps_everything_pending(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    records = sample(5)
    spool.append(records)
    inner = MemoryEventLog()
    with pytest.raises(LogUnavailableError):
        spool.drain(FailingOnCall(inner, fail_on=2), batch_size=2)
    assert spool.pending == 5
    assert len(spool_files(tmp_path)) == 1

    spool.append(sample(1, "later"))  # still usable after the failed drain
    assert spool.drain(inner, batch_size=2) == 6
    assert logged(inner)[2:] == records + sample(1, "later")  # first batch duplicated, see above
    assert spool.pending == 0
    assert spool_files(tmp_path) == []
