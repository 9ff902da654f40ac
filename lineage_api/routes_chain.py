"""Integrity routes: the public keys that sign checkpoints, the checkpoints, and proofs for one output."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import select

from lineage_api.services import Services
from streams import tables as t
from streams.proofs import output_proof

router = APIRouter(prefix="/v1", tags=["integrity"])


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.get("/keys", summary="Public keys that sign checkpoints")
def keys(request: Request) -> dict[str, Any]:
    """Ed25519 public keys as base64 of the raw 32 bytes; `key_id` is the first 16 hex characters of their
    sha256. Publish these somewhere auditors trust, apart from this API."""
    return {"keys": [_services(request).key.public_info()]}


@router.get("/checkpoints", summary="Signed checkpoints, newest first")
def checkpoints(request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 20) -> dict[str, Any]:
    c = t.checkpoints.c
    with _services(request).engine.connect() as conn:
        rows = conn.execute(select(t.checkpoints).order_by(c.created_at.desc(), c.tree_size.desc())
                            .limit(limit)).mappings().all()
    return {"items": [dict(r) for r in rows]}


@router.get("/outputs/{output_id}/proof", summary="Proof that an output's record is in the signed log")
def proof(
    request: Request,
    output_id: Annotated[str, Path(max_length=128)],
    from_size: Annotated[int | None, Query(ge=1, description="Add a consistency proof from this tree size")] = None,
) -> dict[str, Any]:
    """The event bytes (base64), leaf index, RFC 6962 audit path and the signed checkpoint covering it;
    with `from_size`, a consistency proof from that earlier tree size. Format: docs/proofs.md."""
    services = _services(request)
    return output_proof(services.engine, output_id, services.public_keys, from_size=from_size)
