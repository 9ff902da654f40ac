"""Time-ordered identifiers: UUIDv7 event IDs and the output IDs derived from them."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_seq = 0

# Random bits come from os.urandom in 4 KiB blocks: one system call per ~400 IDs instead of one per ID.
# A system call releases the GIL, and a recording thread then waited up to the 5 ms switch interval
# for a busy writer thread to give it back (measured: p999 of record() 5 ms -> 0.2 ms).
_BLOCK = 4096
_buffer = b""
_used = _BLOCK


def _reset_after_fork() -> None:
    global _buffer, _used, _lock
    _buffer, _used = b"", _BLOCK  # a child must never reuse its parent's random bytes
    _lock = threading.Lock()  # another thread may have held it at the fork; it does not exist in the child


os.register_at_fork(after_in_child=_reset_after_fork)


def _random_bits(nbytes: int) -> int:
    """Call with _lock held."""
    global _buffer, _used
    if _used + nbytes > len(_buffer):
        _buffer, _used = os.urandom(_BLOCK), 0
    chunk = _buffer[_used : _used + nbytes]
    _used += nbytes
    return int.from_bytes(chunk, "big")


def uuid7_bytes(now_ns: int | None = None) -> bytes:
    """16 bytes of a UUIDv7 (RFC 9562): 48-bit Unix ms, version, 12-bit counter, variant, 62 random bits.

    The counter keeps IDs made in the same millisecond strictly increasing within this process, so index
    keys built from them append in order.
    """
    global _last_ms, _seq
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    with _lock:
        if ms > _last_ms:
            _last_ms, _seq = ms, _random_bits(1)
        else:
            ms, _seq = _last_ms, _seq + 1
            if _seq > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms, _seq = _last_ms + 1, 0
                ms = _last_ms
        seq = _seq
        rand = _random_bits(8) >> 2
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand
    return value.to_bytes(16, "big")


def uuid7_at(when_ns: int) -> bytes:
    """A UUIDv7 for an explicit time (a backfilled or simulated event): no monotonic clamp, random counter."""
    with _lock:
        counter, rand = _random_bits(2) >> 4, _random_bits(8) >> 2
    value = ((when_ns // 1_000_000) << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    return value.to_bytes(16, "big")


def event_id_text(raw: bytes) -> str:
    """Canonical 8-4-4-4-12 text of a UUID (what str(uuid.UUID(bytes=raw)) gives, ~4x faster)."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_B32HEX = "0123456789abcdefghijklmnopqrstuv"
_PAIRS = [_B32HEX[i >> 5] + _B32HEX[i & 31] for i in range(1024)]
_SHIFTS = tuple(range(120, -1, -10))


def output_id_from(raw: bytes) -> str:
    """'out_' + lower-case base32hex of the UUIDv7 bytes (RFC 4648 alphabet 0-9a-v, no padding): 30
    characters whose lexicographic order is time order. Encoded ten bits at a time through a table,
    as base64.b32hexencode is pure Python and cost half of record()."""
    n = int.from_bytes(raw, "big") << 2  # 128 bits -> 130, a whole number of 5-bit digits
    return "out_" + "".join([_PAIRS[(n >> s) & 1023] for s in _SHIFTS])


def new_event_id() -> str:
    return event_id_text(uuid7_bytes())


def timestamp_from_uuid7(raw: bytes) -> int:
    """Unix milliseconds embedded in a UUIDv7."""
    return int.from_bytes(raw[:6], "big")
