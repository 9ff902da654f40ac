"""RFC 6962 / RFC 9162 Merkle hashing against a naive reference written straight from the RFC's recursive
definitions: exhaustively on every tree up to 64 leaves, then as properties over random trees up to ~300
leaves (proofs built from stored perfect subtrees, verifiers that accept exactly the genuine proofs)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaves,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.unit.merkle_reference import (
    build_store,
    distinct_data,
    flipped,
    lookup,
    recording_getter,
    ref_mth,
    ref_path,
    ref_proof,
)

PROPERTY_SETTINGS = settings(max_examples=100, deadline=None, database=None)


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

