"""RFC 6962 / RFC 9162 Merkle hashing: known answers from the public 8-leaf test tree, the stored form of a
compact range, and arguments outside the tree. Agreement with the naive reference on small and random trees is
in test_merkle_properties.py; the reference itself in merkle_reference.py."""

from __future__ import annotations

import hashlib

import pytest

from streams.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaves,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.unit.merkle_reference import build_store, hexes, lookup, ref_mth, ref_path, ref_proof

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
