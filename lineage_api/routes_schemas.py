"""The committed schema registry, served read-only in the Confluent Schema Registry REST shape so stock
Kafka clients can decode our topic by schema ID."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from schemas.errors import NotFoundError, UnknownSchemaError
from schemas.registry import SchemaRegistry

router = APIRouter(tags=["schema registry"])


def _registry(request: Request) -> SchemaRegistry:
    registry: SchemaRegistry = request.app.state.services.codec.registry
    return registry


@router.get("/schemas/ids/{schema_id}", summary="A schema by its global ID")
def schema_by_id(request: Request, schema_id: int) -> dict[str, Any]:
    try:
        version = _registry(request).by_id(schema_id)
    except UnknownSchemaError:
        raise NotFoundError("schema id", str(schema_id)) from None
    return {"schema": version.schema_text}


@router.get("/subjects", summary="Every subject")
def subjects(request: Request) -> list[str]:
    return _registry(request).subjects()


@router.get("/subjects/{subject}/versions", summary="Version numbers of a subject")
def subject_versions(request: Request, subject: str) -> list[int]:
    found = [v.version for v in _registry(request).versions if v.subject == subject]
    if not found:
        raise NotFoundError("subject", subject)
    return sorted(found)


@router.get("/subjects/{subject}/versions/{version}", summary="One version of a subject ('latest' works)")
def subject_version(request: Request, subject: str, version: str) -> dict[str, Any]:
    found = sorted((v for v in _registry(request).versions if v.subject == subject), key=lambda v: v.version)
    if not found:
        raise NotFoundError("subject", subject)
    chosen = found[-1] if version == "latest" else next((v for v in found if str(v.version) == version), None)
    if chosen is None:
        raise NotFoundError(f"version of subject {subject}", version)
    return {"subject": subject, "version": chosen.version, "id": chosen.schema_id, "schema": chosen.schema_text}
