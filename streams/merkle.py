"""RFC 6962 / RFC 9162 Merkle tree hashing for the append-only audit log: leaf and node hashes, the compact
range (right-edge frontier) kept while appending, inclusion and consistency proofs built from stored
perfect-subtree roots, and the RFC 9162 verifiers a third party would reimplement. Pure: no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

# get_node(level, index) -> root of the perfect subtree covering leaves [index * 2**level, (index + 1) * 2**level);
# level 0 is the leaf hash itself. Only subtrees complete within the tree being proven are ever asked for.
NodeGetter = Callable[[int, int], bytes]
# (level, index, hash) of a perfect subtree, as persisted by a node store.
StoredNode = tuple[int, int, bytes]

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the 0x00 prefix keeps a leaf from ever passing for an interior node."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class CompactRange:
    """The right edge of a tree of `size` leaves: the roots of the perfect subtrees in size's binary
    decomposition, largest (leftmost) first. Enough to append further leaves and to compute the root
    without touching earlier leaves; at most 64 hashes whatever the size.

    Stored form (`to_bytes`): 8-byte big-endian unsigned size, then the `hashes` concatenated, 32 bytes
    each, largest subtree first; 8 + 32 * popcount(size) bytes in all.
    """

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.size < 1 << 64:
            raise ValueError(f"compact range size {self.size} is outside 0 .. 2**64-1")
        if len(self.hashes) != self.size.bit_count():
            raise ValueError(f"a tree of {self.size} leaves has {self.size.bit_count()} frontier hashes, "
                             f"got {len(self.hashes)}")
        if any(len(h) != HASH_SIZE for h in self.hashes):
            raise ValueError(f"frontier hashes must be {HASH_SIZE} bytes each")

    def append(self, leaf_hashes: Sequence[bytes]) -> CompactRange:
        """The range after appending these leaf hashes (not leaf data: hash with `leaf_hash` first)."""
        return _fold(self, leaf_hashes, None)

    def append_with_nodes(self, leaf_hashes: Sequence[bytes]) -> tuple[CompactRange, list[StoredNode]]:
        """As `append`, also returning every perfect subtree of level >= 1 the new leaves complete, as
        (level, index, hash). Persisting these plus the leaf hashes (level 0, index = leaf offset) lets
        proofs be built by lookup: about one extra row per leaf (n - popcount(n) rows for n leaves in all),
        and any proof then costs at most 2 * bit_length(size) lookups and fewer hashes. Storing only
        levels that are multiples of some k would save rows at the price of rehashing up to 2**k leaves
        per proof step; with about one row per leaf, every level is kept."""
        nodes: list[StoredNode] = []
        return _fold(self, leaf_hashes, nodes), nodes

    def root(self) -> bytes:
        """MTH of the whole tree: the frontier folded from the smallest subtree up."""
        if not self.hashes:
            return EMPTY_ROOT
        acc = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            acc = node_hash(h, acc)
        return acc

    def to_bytes(self) -> bytes:
        return self.size.to_bytes(8, "big") + b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, raw: bytes) -> CompactRange:
        if len(raw) < 8 or (len(raw) - 8) % HASH_SIZE:
            raise ValueError(f"a stored compact range is 8 + 32*k bytes, got {len(raw)}")
        size = int.from_bytes(raw[:8], "big")
        hashes = tuple(raw[i:i + HASH_SIZE] for i in range(8, len(raw), HASH_SIZE))
        return cls(size=size, hashes=hashes)

    @classmethod
    def from_nodes(cls, size: int, get_node: NodeGetter) -> CompactRange:
        """Rebuild the frontier of a tree of `size` leaves from stored nodes (e.g. when resuming)."""
        if size < 0:
            raise ValueError(f"tree size must be >= 0, got {size}")
        hashes, start = [], 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                hashes.append(get_node(level, start >> level))
                start += 1 << level
        return cls(size=size, hashes=tuple(hashes))


def _fold(frontier: CompactRange, leaf_hashes: Sequence[bytes], nodes: list[StoredNode] | None) -> CompactRange:
    """Append level by level. At level L the row holds the level-L subtrees not yet paired: the old
    frontier's level-L root (when bit L of the old size is set) followed by those the new leaves completed,
    indices (old >> L) .. (new >> L) - 1. Pairing the row gives level L+1; an odd one out is the new
    frontier's level-L root. Lone right nodes thereby rise unchanged, which is exactly RFC 6962's split at
    the largest power of two below n."""
    if set(map(len, leaf_hashes)) - {HASH_SIZE}:
        raise ValueError(f"leaf hashes must be {HASH_SIZE} bytes each (hash leaf data with leaf_hash first)")
    old, new = frontier.size, frontier.size + len(leaf_hashes)
    if new >= 1 << 64:
        raise ValueError(f"a tree of {new} leaves does not fit a 64-bit size")
    old_levels = [level for level in range(old.bit_length() - 1, -1, -1) if old >> level & 1]
    carry = dict(zip(old_levels, frontier.hashes, strict=True))
    row: list[bytes] = list(leaf_hashes)
    kept: list[bytes] = []
    sha = _sha256
    for level in range(new.bit_length()):
        if old >> level & 1:
            row = [carry[level], *row]
        if len(row) & 1:
            kept.append(row.pop())
        pairs = iter(row)
        row = [sha(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs, strict=True)]
        if nodes is not None and row:
            first = old >> (level + 1)
            nodes.extend(zip(repeat(level + 1, len(row)), range(first, first + len(row)), row, strict=True))
    return CompactRange(size=new, hashes=tuple(reversed(kept)))


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) per RFC 6962 section 2.1 for a list of leaf hashes; EMPTY_ROOT for none."""
    return CompactRange().append(leaf_hashes).root()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): where RFC 6962 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(start: int, end: int, get_node: NodeGetter) -> bytes:
    """MTH(D[start:end]) composed from stored perfect subtrees. For the ranges proofs need (start a multiple
    of the smallest power of two >= end - start) that is one lookup per set bit of end - start; other
    ranges are still hashed correctly but may need many more lookups."""
    if not 0 <= start < end:
        raise ValueError(f"subtree range [{start}, {end}) is empty or negative")
    n = end - start
    if n & (n - 1) == 0 and start % n == 0:
        return get_node(n.bit_length() - 1, start // n)
    k = _split(n)
    return node_hash(subtree_hash(start, start + k, get_node), subtree_hash(start + k, end, get_node))


def inclusion_proof(index: int, size: int, get_node: NodeGetter) -> list[bytes]:
    """PATH(index, D[size]) per RFC 9162 section 2.1.3.1, leaf-side sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of {size} leaves")
    top_down: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            top_down.append(subtree_hash(start + k, end, get_node))
            end = start + k
        else:
            top_down.append(subtree_hash(start, start + k, get_node))
            start += k
    return top_down[::-1]


def consistency_proof(old_size: int, new_size: int, get_node: NodeGetter) -> list[bytes]:
    """PROOF(old_size, D[new_size]) per RFC 9162 section 2.1.4.1 (SUBPROOF with b = true). Empty when
    old_size is 0 (every tree extends the empty one) or equals new_size."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"cannot prove consistency from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    top_down: list[bytes] = []
    start, end, m, whole_old_tree = 0, new_size, old_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            top_down.append(subtree_hash(start + k, end, get_node))
            end = start + k
        else:
            top_down.append(subtree_hash(start, start + k, get_node))
            start, m, whole_old_tree = start + k, m - k, False
    # SUBPROOF(m, D[m], b): the old tree's own root is left out only when the verifier already holds it.
    head = [] if whole_old_tree else [subtree_hash(start, end, get_node)]
    return head + top_down[::-1]


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2. Returns False, never raises, for any claim it cannot confirm."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn & 1 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2. Equal sizes need an empty proof and equal roots; size 0 needs an empty
    proof and the empty root. Returns False, never raises, for any claim it cannot confirm."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0
