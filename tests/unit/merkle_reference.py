"""A naive RFC 9162 Merkle reference written straight from the RFC's recursive definitions, and the helpers the
Merkle tests share for building stored trees and tampering with proofs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from streams.merkle import CompactRange, StoredNode, leaf_hash


# ---- naive reference, straight from RFC 9162 sections 2.1.1, 2.1.3.1 and 2.1.4.1, over leaf data ----
def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return _sha(b"")
    if len(d) == 1:
        return _sha(b"\x00" + d[0])
    k = _largest_power_of_two_below(len(d))
    return _sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _largest_power_of_two_below(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _largest_power_of_two_below(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


# ---- helpers ----
def hexes(hashes: Sequence[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def flipped(value: bytes, pos: int) -> bytes:
    return value[:pos] + bytes([value[pos] ^ 0x01]) + value[pos + 1:]


def distinct_data(raw: Sequence[bytes]) -> list[bytes]:
    """Leaf data made pairwise distinct: equal leaves would legitimately let a proof for one index verify
    for another, which is not what the tampering checks are about."""
    return [i.to_bytes(4, "big") + r for i, r in enumerate(raw)]


Store = dict[tuple[int, int], bytes]


def lookup(store: Store) -> Callable[[int, int], bytes]:
    return lambda level, index: store[level, index]


def build_store(data: Sequence[bytes], batch_sizes: Sequence[int] = ()) -> tuple[CompactRange, Store]:
    """Append the leaves in the given batches (the rest in one), persisting leaves and completed nodes."""
    hashes = [leaf_hash(x) for x in data]
    store = {(0, i): h for i, h in enumerate(hashes)}
    cr, pos = CompactRange(), 0
    for n in [*batch_sizes, len(hashes)]:
        cr, nodes = cr.append_with_nodes(hashes[pos:pos + n])
        pos += len(hashes[pos:pos + n])
        store.update({(level, index): h for level, index, h in nodes})
    return cr, store


def recording_getter(store: Store, size: int) -> tuple[Callable[[int, int], bytes], list[StoredNode]]:
    """A get_node that refuses any subtree not complete within `size` leaves and records what it served."""
    served: list[StoredNode] = []

    def get_node(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size, f"node ({level}, {index}) is not complete in a tree of {size}"
        served.append((level, index, store[level, index]))
        return store[level, index]

    return get_node, served

