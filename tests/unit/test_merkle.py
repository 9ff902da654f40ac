"""RFC 6962 / RFC 9162 Merkle hashing: known answers from the public 8-leaf test tree, agreement with a naive
reference written straight from the RFC's recursive definitions, proofs built from stored perfect subtrees,
and verifiers that accept exactly the genuine proofs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.merkle import (
    EMPTY_ROOT,
    CompactRange,
    StoredNode,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaves,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)

# ---- public test data of RFC 6962 implementations (the 8-leaf Certificate Transparency test tree) ----
LEAF_INPUTS = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
# Every perfect subtree of the 8-leaf tree, by level, left to right.
NODES_8 = [
    ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
     "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
     "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
     "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
     "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
     "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
     "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
     "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"],
    ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
     "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
     "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
     "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"],
    ["d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
     "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]
# (leaf index from 0, tree size, audit path)
INCLUSION_VECTORS = [
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
# (old size, new size, consistency proof)
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (4, 8, ["6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]

PROPERTY_SETTINGS = settings(max_examples=100, deadline=None, database=None)


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


EIGHT_CR, EIGHT_STORE = build_store(LEAF_INPUTS)


# ---- known answers ----
def test_empty_tree_root_is_sha256_of_the_empty_string() -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0]
    assert root_from_leaves([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


def test_leaf_and_node_hashes_carry_their_domain_prefix() -> None:
    left, right = b"L" * 32, b"R" * 32
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert node_hash(left, right) != node_hash(right, left)
    assert leaf_hash(b"").hex() == NODES_8[0][0]


@pytest.mark.parametrize("size", range(0, 9))
def test_roots_of_the_test_tree_match_published_values(size: int) -> None:
    hashes = [leaf_hash(x) for x in LEAF_INPUTS[:size]]
    assert root_from_leaves(hashes).hex() == ROOTS[size]
    one_by_one = CompactRange()
    for h in hashes:
        one_by_one = one_by_one.append([h])
    assert one_by_one.root().hex() == ROOTS[size]
    assert ref_mth(LEAF_INPUTS[:size]).hex() == ROOTS[size]


def test_stored_nodes_of_the_test_tree_are_every_published_perfect_subtree() -> None:
    expected = {(level, i): h for level, row in enumerate(NODES_8) for i, h in enumerate(row)}
    assert {key: h.hex() for key, h in EIGHT_STORE.items()} == expected


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS)
def test_inclusion_proofs_of_the_test_tree_match_published_paths(index: int, size: int, path: list[str]) -> None:
    proof = inclusion_proof(index, size, lookup(EIGHT_STORE))
    assert hexes(proof) == path
    assert hexes(ref_path(index, LEAF_INPUTS[:size])) == path
    assert verify_inclusion(leaf_hash(LEAF_INPUTS[index]), index, size, proof, bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY_VECTORS)
def test_consistency_proofs_of_the_test_tree_match_published_proofs(old: int, new: int, path: list[str]) -> None:
    proof = consistency_proof(old, new, lookup(EIGHT_STORE))
    assert hexes(proof) == path
    if old < new:
        assert hexes(ref_proof(old, LEAF_INPUTS[:new])) == path
    assert verify_consistency(old, new, bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new]), proof)


def test_an_inclusion_path_is_not_accepted_for_a_smaller_tree_it_runs_through() -> None:
    """Leaf 4's path in the 8-leaf tree starts with its path as leaf 0 of the subtree D[4:8] of 4 leaves;
    the RFC's early stop (sn reaching 0 with path left over) is what keeps it from passing as that."""
    leaf4, root8 = leaf_hash(LEAF_INPUTS[4]), bytes.fromhex(ROOTS[8])
    proof = inclusion_proof(4, 8, lookup(EIGHT_STORE))
    assert verify_inclusion(leaf4, 4, 8, proof, root8)
    assert not verify_inclusion(leaf4, 0, 4, proof, root8)


def test_a_consistency_proof_to_a_smaller_tree_is_not_accepted_for_a_larger_size() -> None:
    """The proof 3 -> 4 reproduces both roots when read as 3 -> 8 with the size-4 root; only the final
    check that the whole new size was consumed (sn == 0) refuses it."""
    root3, root4 = bytes.fromhex(ROOTS[3]), bytes.fromhex(ROOTS[4])
    proof = consistency_proof(3, 4, lookup(EIGHT_STORE))
    assert verify_consistency(3, 4, root3, root4, proof)
    assert not verify_consistency(3, 8, root3, root4, proof)


# ---- exhaustive agreement with the reference on small trees ----
DATA_64 = distinct_data([bytes([i % 7]) * (i % 5) for i in range(64)])
CR_64, STORE_64 = build_store(DATA_64, [3, 1, 9, 16])


def test_every_inclusion_proof_up_to_64_leaves_matches_the_reference_and_verifies() -> None:
    for size in range(1, 65):
        root = ref_mth(DATA_64[:size])
        for index in range(size):
            get_node, served = recording_getter(STORE_64, size)
            proof = inclusion_proof(index, size, get_node)
            assert proof == ref_path(index, DATA_64[:size]), (index, size)
            assert verify_inclusion(leaf_hash(DATA_64[index]), index, size, proof, root), (index, size)
            assert len(served) <= 2 * size.bit_length(), (index, size, len(served))


def test_every_consistency_proof_up_to_64_leaves_matches_the_reference_and_verifies() -> None:
    roots = [ref_mth(DATA_64[:n]) for n in range(65)]
    for new in range(1, 65):
        for old in range(1, new + 1):
            get_node, served = recording_getter(STORE_64, new)
            proof = consistency_proof(old, new, get_node)
            assert proof == (ref_proof(old, DATA_64[:new]) if old < new else []), (old, new)
            assert verify_consistency(old, new, roots[old], roots[new], proof), (old, new)
            assert len(served) <= 2 * new.bit_length(), (old, new, len(served))


def test_subtree_hash_of_any_range_is_the_reference_root_of_that_range() -> None:
    for start in range(0, 20):
        for end in range(start + 1, 40):
            assert subtree_hash(start, end, lookup(STORE_64)) == ref_mth(DATA_64[start:end]), (start, end)


def test_compact_range_rebuilt_from_stored_nodes_equals_the_appended_one() -> None:
    running = CompactRange()
    for size in range(65):
        assert CompactRange.from_nodes(size, lookup(STORE_64)) == running
        if size < 64:
            running = running.append([leaf_hash(DATA_64[size])])
    assert running == CR_64


# ---- properties over random trees up to ~300 leaves ----
# The size is drawn first so that trees of a few hundred leaves are as likely as tiny ones.
leaf_data = st.integers(1, 300).flatmap(
    lambda n: st.lists(st.binary(max_size=12), min_size=n, max_size=n)).map(distinct_data)


@PROPERTY_SETTINGS
@given(data=leaf_data, draw=st.data())
def test_compact_range_in_random_batches_equals_the_reference_at_every_step(
    data: list[bytes], draw: st.DataObject
) -> None:
    hashes = [leaf_hash(x) for x in data]
    batches = draw.draw(st.lists(st.integers(0, 70), max_size=12))
    cr, pos = CompactRange(), 0
    stored: dict[tuple[int, int], bytes] = {}
    for n in [*batches, len(hashes)]:
        cr, nodes = cr.append_with_nodes(hashes[pos:pos + n])
        pos = min(pos + n, len(hashes))
        stored.update({(level, index): h for level, index, h in nodes})
        assert cr.size == pos
        assert cr.root() == ref_mth(data[:pos]) == root_from_leaves(hashes[:pos])
        assert CompactRange.from_bytes(cr.to_bytes()) == cr
    expected_keys = {(level, i) for level in range(1, len(data).bit_length()) for i in range(len(data) >> level)}
    assert set(stored) == expected_keys
    for level, i in draw.draw(st.lists(st.sampled_from(sorted(expected_keys)), max_size=5)) if expected_keys else []:
        assert stored[level, i] == ref_mth(data[i << level:(i + 1) << level])


@PROPERTY_SETTINGS
@given(data=leaf_data, draw=st.data())
def test_inclusion_proofs_verify_and_any_tampering_fails(data: list[bytes], draw: st.DataObject) -> None:
    size = len(data)
    _, store = build_store(data, draw.draw(st.lists(st.integers(1, 50), max_size=6)))
    root = root_from_leaves([leaf_hash(x) for x in data])
    for index in range(size):
        proof = inclusion_proof(index, size, lookup(store))
        assert verify_inclusion(leaf_hash(data[index]), index, size, proof, root), index

    index = draw.draw(st.integers(0, size - 1))
    leaf = leaf_hash(data[index])
    proof = inclusion_proof(index, size, lookup(store))
    assert proof == ref_path(index, data)
    for k, element in enumerate(proof):
        for pos in range(len(element)):
            tampered = [*proof[:k], flipped(element, pos), *proof[k + 1:]]
            assert not verify_inclusion(leaf, index, size, tampered, root), (k, pos)
    for pos in range(len(leaf)):
        assert not verify_inclusion(flipped(leaf, pos), index, size, proof, root), pos
        assert not verify_inclusion(leaf, index, size, proof, flipped(root, pos)), pos
    for other in [*range(size), size, size + 1, -1]:
        if other != index:
            assert not verify_inclusion(leaf, other, size, proof, root), other
    assert not verify_inclusion(leaf, index, size, [*proof, root], root)
    if proof:
        assert not verify_inclusion(leaf, index, size, proof[:-1], root)


@PROPERTY_SETTINGS
@given(data=leaf_data, draw=st.data())
def test_consistency_proofs_verify_and_any_tampering_fails(data: list[bytes], draw: st.DataObject) -> None:
    size = len(data)
    _, store = build_store(data, draw.draw(st.lists(st.integers(1, 50), max_size=6)))
    pairs = draw.draw(st.lists(st.tuples(st.integers(1, size), st.integers(1, size)), min_size=1, max_size=8))
    for a, b in pairs:
        old, new = min(a, b), max(a, b)
        old_root, new_root = ref_mth(data[:old]), ref_mth(data[:new])
        get_node, _ = recording_getter(store, new)
        proof = consistency_proof(old, new, get_node)
        assert proof == (ref_proof(old, data[:new]) if old < new else [])
        assert verify_consistency(old, new, old_root, new_root, proof)
        for pos in range(len(old_root)):
            assert not verify_consistency(old, new, flipped(old_root, pos), new_root, proof), pos
            assert not verify_consistency(old, new, old_root, flipped(new_root, pos), proof), pos
        for k, element in enumerate(proof):
            for pos in range(len(element)):
                tampered = [*proof[:k], flipped(element, pos), *proof[k + 1:]]
                assert not verify_consistency(old, new, old_root, new_root, tampered), (k, pos)
        assert not verify_consistency(old, new, old_root, new_root, [*proof, new_root])
        if proof:
            assert not verify_consistency(old, new, old_root, new_root, proof[:-1])


@PROPERTY_SETTINGS
@given(data=leaf_data, draw=st.data())
def test_proofs_for_earlier_sizes_come_from_the_later_store_unchanged(data: list[bytes], draw: st.DataObject) -> None:
    """Stored nodes never change as the log grows, so a store at size n answers for every size m <= n."""
    _, store = build_store(data, draw.draw(st.lists(st.integers(1, 90), max_size=4)))
    m = draw.draw(st.integers(1, len(data)))
    index = draw.draw(st.integers(0, m - 1))
    get_node, served = recording_getter(store, m)
    assert inclusion_proof(index, m, get_node) == ref_path(index, data[:m])
    assert len(served) <= 2 * m.bit_length()
    assert subtree_hash(0, m, lookup(store)) == ref_mth(data[:m])


# ---- stored form ----
def test_compact_range_bytes_are_big_endian_size_then_frontier_largest_first() -> None:
    three = CompactRange().append([leaf_hash(x) for x in LEAF_INPUTS[:3]])
    raw = three.to_bytes()
    assert raw == bytes.fromhex("0000000000000003") + bytes.fromhex(NODES_8[1][0]) + bytes.fromhex(NODES_8[0][2])
    assert CompactRange.from_bytes(raw) == three
    assert CompactRange().to_bytes() == bytes(8)
    assert CompactRange.from_bytes(bytes(8)) == CompactRange()


@pytest.mark.parametrize("raw", [b"", bytes(7), bytes(8) + bytes(32), bytes.fromhex("0000000000000003") + bytes(32),
                                 bytes.fromhex("0000000000000001") + bytes(31)])
def test_malformed_stored_compact_range_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        CompactRange.from_bytes(raw)


# ---- out-of-range arguments ----
@pytest.mark.parametrize(("index", "size"), [(0, 0), (8, 8), (9, 8), (-1, 8)])
def test_inclusion_proof_refuses_an_index_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(index, size, lookup(EIGHT_STORE))


@pytest.mark.parametrize(("old", "new"), [(9, 8), (-1, 8), (1, 0)])
def test_consistency_proof_refuses_an_old_size_beyond_the_new(old: int, new: int) -> None:
    with pytest.raises(ValueError, match="consistency"):
        consistency_proof(old, new, lookup(EIGHT_STORE))


def test_consistency_from_the_empty_tree_is_the_empty_proof_with_the_empty_root() -> None:
    root8 = bytes.fromhex(ROOTS[8])
    assert consistency_proof(0, 8, lookup(EIGHT_STORE)) == []
    assert verify_consistency(0, 8, EMPTY_ROOT, root8, [])
    assert not verify_consistency(0, 8, root8, root8, [])
    assert not verify_consistency(0, 8, EMPTY_ROOT, root8, [root8])


def test_verifiers_reject_impossible_sizes_instead_of_raising() -> None:
    root8, leaf0 = bytes.fromhex(ROOTS[8]), leaf_hash(LEAF_INPUTS[0])
    assert not verify_inclusion(leaf0, 0, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(leaf0, 8, 8, [], root8)
    assert not verify_consistency(8, 4, root8, bytes.fromhex(ROOTS[4]), [])
    assert not verify_consistency(-1, 8, root8, root8, [])
    assert not verify_consistency(4, 8, bytes.fromhex(ROOTS[4]), root8, [])
    assert not verify_consistency(8, 8, root8, root8, [root8])


@pytest.mark.parametrize(("start", "end"), [(3, 3), (4, 2), (-1, 2)])
def test_subtree_hash_refuses_an_empty_or_negative_range(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="range"):
        subtree_hash(start, end, lookup(EIGHT_STORE))


def test_compact_range_refuses_inconsistent_fields_and_short_leaf_hashes() -> None:
    h = bytes(32)
    with pytest.raises(ValueError, match="frontier hashes"):
        CompactRange(size=3, hashes=(h,))
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange(size=1, hashes=(b"short",))
    with pytest.raises(ValueError, match="outside"):
        CompactRange(size=-1, hashes=())
    with pytest.raises(ValueError, match="leaf_hash"):
        CompactRange().append([b"raw event bytes, not a hash"])
