"""Local disk spool: where records go when the log cannot take them, until it can.

Each Recorder owns one spool file, held with an exclusive flock while open. A file is created under a
temporary name, locked, and only then renamed into view, so no other process can drain (and unlink) it in
the instant between creation and lock. Draining takes every file in the folder whose lock it can get, so a
crashed process's spool is drained by whoever comes next.

A record is acknowledged once its frame is fsync'd. A write that fails midway is cut back off the file,
so a torn frame can only ever be at the tail of a file whose writer died; drain drops such a tail (it was
never acknowledged), and sets aside, rather than deletes, a file with damage before its end. Draining may
append a record twice if it crashes between the log append and the unlink: the index deduplicates by
event, so effects stay exactly once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import uuid
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from producers.log import EventLog

log = logging.getLogger("llm_lineage.spool")

_FRAME = struct.Struct(">IIi")  # body length, crc32 of body, key length (-1: no key)
SUFFIX = ".spool"


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self.pending = 0  # records this process spooled and has not yet drained

    def append(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Write and fsync; raises OSError if the disk cannot take them (nothing is then acknowledged)."""
        f = self._own_file()
        chunks = []
        for key, value in records:
            klen = -1 if key is None else len(key)
            body = (key or b"") + value
            chunks.append(_FRAME.pack(len(body), zlib.crc32(body), klen) + body)
        start = f.seek(0, os.SEEK_END)
        try:
            f.write(b"".join(chunks))
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            self._cut_back(f, start)
            raise
        self.pending += len(records)

    def _cut_back(self, f: BinaryIO, size: int) -> None:
        """Remove a partly written batch, so later frames never follow a torn one."""
        try:
            f.truncate(size)
            f.seek(size)
        except (OSError, ValueError):
            # Cannot repair it: stop writing to this file; its torn tail is dropped when it is drained.
            self._release(unlink_if_empty=False)

    def has_files(self) -> bool:
        return self.directory.is_dir() and any(self.directory.glob("*" + SUFFIX))

    def drain(self, log: EventLog, *, batch_size: int = 1000) -> int:
        """Append every spooled record we can lock to `log`, oldest file first; returns how many.

        Raises whatever `log.append` raises; files not fully drained stay for the next attempt.
        """
        if not self.directory.is_dir():
            return 0
        moved = 0
        for path in sorted(self.directory.glob("*" + SUFFIX), key=_mtime):
            if path == self._path:
                moved += self._drain_own(log, batch_size)
            else:
                moved += self._drain_foreign(path, log, batch_size)
        return moved

    def _drain_foreign(self, path: Path, log: EventLog, batch_size: int) -> int:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return 0  # drained by someone else meanwhile
        with os.fdopen(fd, "r+b") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # a live recorder owns it
            if os.fstat(f.fileno()).st_nlink == 0:
                return 0  # unlinked by another drainer between our open and our lock
            moved, clean = _append_all(log, f, batch_size)
            if clean:
                path.unlink(missing_ok=True)
            else:
                _set_aside(path)
        return moved

    def _drain_own(self, log: EventLog, batch_size: int) -> int:
        assert self._file is not None and self._path is not None
        moved, clean = _append_all(log, self._file, batch_size)
        if not clean:
            _set_aside(self._path)
        self._release(unlink_if_empty=False, unlink=clean)
        self.pending = 0
        return moved

    def _own_file(self) -> BinaryIO:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
            hidden = self.directory / (name + SUFFIX + ".new")  # not matched by drain's glob
            f = open(hidden, "a+b")  # held open for the recorder's life
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = self.directory / (name + SUFFIX)
            os.rename(hidden, path)  # visible only once locked
            self._file, self._path = f, path
        return self._file

    def _release(self, *, unlink_if_empty: bool, unlink: bool = False) -> None:
        f, path = self._file, self._path
        self._file, self._path = None, None
        if f is None or path is None:
            return
        try:
            # Unlink while the lock is still held, so no drainer can be reading it at that moment.
            if unlink or (unlink_if_empty and os.fstat(f.fileno()).st_size == 0):
                path.unlink(missing_ok=True)
        finally:
            f.close()  # releases the lock; a non-empty file stays for the next drain

    def close(self) -> None:
        self._release(unlink_if_empty=True)


def read_frames(f: BinaryIO) -> Iterator[tuple[bytes | None, bytes]]:
    """Frames up to the first torn or corrupt one, leaving the file positioned at its start."""
    f.seek(0)
    while True:
        start = f.tell()
        header = f.read(_FRAME.size)
        if len(header) < _FRAME.size:
            f.seek(start)
            return
        length, crc, klen = _FRAME.unpack(header)
        body = f.read(length)
        if len(body) < length or zlib.crc32(body) != crc or klen > length:
            f.seek(start)
            return
        if klen < 0:
            yield None, body
        else:
            yield body[:klen], body[klen:]


def _append_all(log: EventLog, f: BinaryIO, batch_size: int) -> tuple[int, bool]:
    """Append every readable frame; returns (count, whether the file ended cleanly after them)."""
    count, batch = 0, []
    for frame in read_frames(f):
        batch.append(frame)
        if len(batch) >= batch_size:
            log.append(batch)
            count += len(batch)
            batch = []
    if batch:
        log.append(batch)
        count += len(batch)
    return count, not _damaged_before_end(f, f.tell())


def _damaged_before_end(f: BinaryIO, bad: int) -> bool:
    """Whether the bad frame at `bad` is followed by more bytes: damage in the middle, not a torn tail
    (a torn frame is the last thing in its file, as failed writes are cut back)."""
    size = os.fstat(f.fileno()).st_size
    if bad >= size:
        return False
    header = f.read(_FRAME.size)
    if len(header) < _FRAME.size:
        return False
    return bool(bad + _FRAME.size + _FRAME.unpack(header)[0] < size)


def _set_aside(path: Path) -> None:
    target = path.with_name(path.name + ".corrupt")
    log.error("spool file %s is damaged before its end; kept as %s for inspection", path, target)
    try:
        os.rename(path, target)
    except FileNotFoundError:
        pass


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0  # gone meanwhile: drain skips it
