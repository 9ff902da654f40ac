"""Proof bundles for auditors: an output's exact event bytes, its leaf in the partition's Merkle tree, the
audit path to a signed checkpoint, and optionally a consistency proof from an earlier tree size. The
format is documented in docs/proofs.md; `verify_proof` is the offline check `lineage verify --proof` runs."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from schemas.errors import IndexError_, InvalidRequestError, NotFoundError
from streams import tables as t
from streams.chain import node_getter
from streams.merkle import consistency_proof, inclusion_proof, leaf_hash, verify_consistency, verify_inclusion
from streams.signing import verify_signature

FORMAT = "llm-lineage-proof/1"


class NotCoveredYetError(InvalidRequestError):
    """The output is indexed but no signed checkpoint covers it yet."""


def output_proof(
    engine: Engine, output_id: str, public_keys: dict[str, str], *, from_size: int | None = None
) -> dict[str, Any]:
    try:
        with engine.connect() as conn:
            return _build(conn, output_id, public_keys, from_size)
    except SQLAlchemyError as exc:
        raise IndexError_(f"cannot read the lineage index: {exc}") from exc


def _build(conn: Connection, output_id: str, keys: dict[str, str], from_size: int | None) -> dict[str, Any]:
    o = t.outputs.c
    row = conn.execute(select(o.log_partition, o.log_offset, o.body).where(o.output_id == output_id)).first()
    if row is None:
        raise NotFoundError("output", output_id)
    leaves = t.merkle_leaves.c
    leaf = conn.execute(select(leaves.leaf_index, leaves.leaf_hash).where(
        leaves.log_partition == row.log_partition, leaves.log_offset == row.log_offset)).first()
    if leaf is None:
        raise NotCoveredYetError(f"output {output_id!r} is not in the integrity chain yet; retry shortly")
    c = t.checkpoints.c
    cp = conn.execute(select(t.checkpoints).where(c.log_partition == row.log_partition, c.tree_size > leaf.leaf_index)
                      .order_by(c.tree_size.desc()).limit(1)).mappings().first()
    if cp is None:
        raise NotCoveredYetError(f"output {output_id!r} is not covered by a signed checkpoint yet; the next "
                                 "one is taken within LINEAGE_CHECKPOINT_SECONDS")
    get = node_getter(conn, row.log_partition)
    proof: dict[str, Any] = {
        "format": FORMAT,
        "output_id": output_id,
        "log_partition": row.log_partition,
        "log_offset": row.log_offset,
        "event": base64.b64encode(row.body).decode("ascii"),
        "leaf_index": leaf.leaf_index,
        "leaf_hash": bytes(leaf.leaf_hash).hex(),
        "tree_size": cp["tree_size"],
        "inclusion_path": [h.hex() for h in inclusion_proof(leaf.leaf_index, cp["tree_size"], get)],
        "checkpoint": {
            "signed_body": cp["signed_body"], "signature": cp["signature"], "key_id": cp["key_id"],
            "public_key": keys.get(cp["key_id"]),
        },
    }
    if from_size is not None:
        if not 1 <= from_size <= cp["tree_size"]:
            raise InvalidRequestError(f"from_size must be between 1 and {cp['tree_size']}, got {from_size}")
        proof["consistency"] = {
            "from_size": from_size, "to_size": cp["tree_size"],
            "path": [h.hex() for h in consistency_proof(from_size, cp["tree_size"], get)],
        }
    return proof


def verify_proof(proof: dict[str, Any], trusted_keys: dict[str, str] | None = None,
                 from_root: str | None = None) -> list[str]:
    """Check a proof bundle offline; returns the problems found (empty: it verifies).

    `trusted_keys` maps key_id -> base64 raw Ed25519 public key; without it the key inside the bundle is
    used, which proves integrity but not who signed (compare its key_id with the operator's published key).
    `from_root` (hex) is the root the auditor saw earlier at consistency.from_size.
    """
    try:
        claim = _parse(proof, from_root)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [f"not a {FORMAT} proof: {type(exc).__name__}: {exc}"]
    problems: list[str] = []
    if proof.get("format") != FORMAT:
        problems.append(f"unknown format {proof.get('format')!r}; expected {FORMAT}")
    digest = leaf_hash(claim.event)
    if digest.hex() != proof.get("leaf_hash"):
        problems.append("the event bytes do not hash to leaf_hash: the record was altered")
    for name in ("tree_size", "log_partition"):
        if claim.body.get(name) != proof.get(name):
            problems.append(f"{name} {proof.get(name)} differs from the signed checkpoint's {claim.body.get(name)}")
    if claim.body.get("key_id") != claim.key_id:
        problems.append("the checkpoint's key_id differs from the signed one")
    if not verify_inclusion(digest, claim.leaf_index, claim.tree_size, claim.path, claim.root):
        problems.append("the inclusion path does not lead to the signed root: the record is not in that tree")
    public = trusted_keys.get(claim.key_id) if trusted_keys is not None else proof["checkpoint"].get("public_key")
    if not public:
        problems.append(f"no trusted public key for key_id {claim.key_id}")
    elif not verify_signature(public, claim.signed_body, claim.signature):
        problems.append(f"the checkpoint signature does not verify with key {claim.key_id}")
    if claim.consistency is not None:
        from_size, to_size, path, earlier = claim.consistency
        if to_size != claim.tree_size:
            problems.append(f"the consistency proof ends at size {to_size}, not at the signed {claim.tree_size}")
        elif not verify_consistency(from_size, to_size, earlier, claim.root, path):
            problems.append(f"the tree of size {to_size} does not extend the earlier root at size {from_size}")
    return problems


@dataclass(frozen=True, slots=True)
class _Claim:
    body: dict[str, Any]
    signed_body: bytes
    signature: str
    key_id: str
    event: bytes
    leaf_index: int
    tree_size: int
    root: bytes
    path: list[bytes]
    consistency: tuple[int, int, list[bytes], bytes] | None  # from, to, path, the earlier root


def _parse(proof: dict[str, Any], from_root: str | None) -> _Claim:
    """Everything the checks use, parsed up front: a malformed bundle is one clear problem, not a crash."""
    checkpoint = proof["checkpoint"]
    body = json.loads(checkpoint["signed_body"])
    if not isinstance(body, dict):
        raise TypeError("signed_body is not a JSON object")
    consistency = None
    if proof.get("consistency") is not None and from_root is not None:
        c = proof["consistency"]
        consistency = (int(c["from_size"]), int(c["to_size"]), [bytes.fromhex(h) for h in c["path"]],
                       bytes.fromhex(from_root))
    return _Claim(
        body=body, signed_body=str(checkpoint["signed_body"]).encode("utf-8"),
        signature=str(checkpoint["signature"]), key_id=str(checkpoint["key_id"]),
        event=base64.b64decode(proof["event"], validate=True), leaf_index=int(proof["leaf_index"]),
        tree_size=int(body["tree_size"]), root=bytes.fromhex(body["root_hash"]),
        path=[bytes.fromhex(h) for h in proof["inclusion_path"]], consistency=consistency,
    )
