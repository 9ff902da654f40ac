"""Local disk spool: where records go when the log cannot take them, until it can.

Each Recorder owns one spool file, held with an exclusive flock while open. Draining takes every file in
the folder whose lock it can get, so a crashed process's spool is drained by whoever comes next. A record
is acknowledged once its frame is fsync'd; a torn frame at the tail was never acknowledged and is dropped.
Draining may append a record twice if it crashes between the log append and the file removal: the index
deduplicates by event_id, so effects stay exactly once.
"""

from __future__ import annotations

import fcntl
import os
import struct
import uuid
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from producers.log import EventLog

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
        f.write(b"".join(chunks))
        f.flush()
        os.fsync(f.fileno())
        self.pending += len(records)

    def has_files(self) -> bool:
        return self.directory.is_dir() and any(self.directory.glob("*" + SUFFIX))

    def drain(self, log: EventLog, *, batch_size: int = 1000) -> int:
        """Append every spooled record we can lock to `log`, oldest file first; returns how many.

        Raises whatever `log.append` raises; files not fully drained stay for the next attempt.
        """
        if not self.directory.is_dir():
            return 0
        moved = 0
        files = sorted(self.directory.glob("*" + SUFFIX), key=lambda p: p.stat().st_mtime_ns)
        for path in files:
            if path == self._path:
                moved += self._drain_own(log, batch_size)
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # drained by someone else meanwhile
            with os.fdopen(fd, "r+b") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live recorder owns it
                if not path.exists():
                    continue
                moved += _append_all(log, read_frames(f), batch_size)
                path.unlink()
        return moved

    def _drain_own(self, log: EventLog, batch_size: int) -> int:
        assert self._file is not None and self._path is not None
        self._file.seek(0)
        moved = _append_all(log, read_frames(self._file), batch_size)
        self._file.close()
        self._path.unlink()
        self._file, self._path, self.pending = None, None, 0
        return moved

    def _own_file(self) -> BinaryIO:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:12]}{SUFFIX}"
            f = open(path, "a+b")
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._file, self._path = f, path
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock; the file stays for the next drain
            self._file = None
            if self._path is not None and self._path.stat().st_size == 0:
                self._path.unlink()
            self._path = None


def read_frames(f: BinaryIO) -> Iterator[tuple[bytes | None, bytes]]:
    """Frames up to the first torn or corrupt one (a write cut short by a crash)."""
    f.seek(0)
    while True:
        header = f.read(_FRAME.size)
        if len(header) < _FRAME.size:
            return
        length, crc, klen = _FRAME.unpack(header)
        body = f.read(length)
        if len(body) < length or zlib.crc32(body) != crc or klen > length:
            return
        if klen < 0:
            yield None, body
        else:
            yield body[:klen], body[klen:]


def _append_all(log: EventLog, frames: Iterator[tuple[bytes | None, bytes]], batch_size: int) -> int:
    count, batch = 0, []
    for frame in frames:
        batch.append(frame)
        if len(batch) >= batch_size:
            log.append(batch)
            count += len(batch)
            batch = []
    if batch:
        log.append(batch)
        count += len(batch)
    return count
