"""Turns SDK values into Avro-shaped event dicts. Runs on the background writer, never the caller's thread."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from producers.values import (
    Attempt,
    Bundle,
    Classification,
    Document,
    ModelCall,
    Output,
    Params,
    Prompt,
    PromptTemplate,
    Retrieval,
    RetrievalConfig,
    Rollout,
    Usage,
)
from schemas import times
from schemas.hashing import canonical_json, sha256_hex

_DEFAULT_USAGE = Usage()
_DEFAULT_PARAMS = Params()
_DEFAULT_CLASSIFICATION = Classification()


def inference_record(
    *,
    event_id: str,
    output_id: str,
    occurred_us: int,
    tenant: str,
    feature: str,
    prompt: Prompt,
    model: ModelCall,
    output: Output,
    bundle: Bundle | None,
    retrieval: Retrieval | None,
    params: Params | None,
    usage: Usage | None,
    cost_usd_micros: int,
    latency_ms: float,
    status: str,
    error: BaseException | tuple[str, str] | None,
    attempts: Sequence[Attempt],
    parents: Sequence[str],
    trace_id: str | None,
    rollout: Rollout | None,
    classification: Classification | None,
) -> dict[str, Any]:
    p = params or _DEFAULT_PARAMS
    u = usage or _DEFAULT_USAGE
    c = classification or _DEFAULT_CLASSIFICATION
    return {
        "event_id": event_id,
        "output_id": output_id,
        "trace_id": trace_id,
        "parent_output_ids": list(parents),
        "occurred_at": occurred_us,
        "tenant": tenant,
        "feature": feature,
        # (record name, value) tuples tell fastavro the union branch, sparing it a trial validation.
        "bundle": None if bundle is None else (
            "llm_lineage.BundleRef", {"bundle_id": bundle.bundle_id, "name": bundle.name, "version": bundle.version}
        ),
        "prompt": {
            "template_id": prompt.template_id,
            "template_version": prompt.template_version,
            "template_sha256": prompt.template_sha256,
            "variables_json": _json(prompt.variables),
            "messages": [{"role": m.role, "content": m.content, "name": m.name} for m in prompt.messages],
        },
        "retrieval": None if retrieval is None else ("llm_lineage.RetrievalRecord", {
            "config_id": retrieval.config_id,
            "config_sha256": retrieval.config_sha256,
            "query": retrieval.query,
            "documents": [_document(d) for d in retrieval.documents],
        }),
        "model": {
            "provider": model.provider,
            "requested": model.requested,
            "served": model.served or model.requested,
            "fingerprint": model.fingerprint,
            "endpoint": model.endpoint,
            "region": model.region,
        },
        "params": _params(p),
        "output": {
            "text": output.text,
            "structured_json": None if output.structured is None else _json(output.structured),
            "finish_reason": output.finish_reason,
        },
        "usage": {
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "cached_tokens": u.cached_tokens,
        },
        "cost_usd_micros": cost_usd_micros,
        "latency_ms": float(latency_ms),
        "status": status,
        "error": _error(error),
        "attempts": [
            {"provider": a.provider, "model": a.model, "status": a.status, "error": a.error,
             "latency_ms": float(a.latency_ms)}
            for a in attempts
        ],
        "rollout": None if rollout is None else (
            "llm_lineage.Rollout", {"arm": rollout.arm, "alias": rollout.alias, "weight": rollout.weight}
        ),
        "classification": {
            "retention_class": c.retention_class,
            "pii": c.pii,
            "subject_ids": list(c.subject_ids),
        },
    }


def _document(d: Document) -> dict[str, Any]:
    digest = d.content_sha256
    if digest is None:
        if d.content is None:
            raise ValueError(f"document {d.doc_id!r} has neither content nor content_sha256")
        digest = sha256_hex(d.content)
    return {
        "doc_id": d.doc_id,
        "version": d.version,
        "source": d.source,
        "content_sha256": digest,
        "score": d.score,
        "content": d.content if d.keep_content else None,
    }


def _params(p: Params) -> dict[str, Any]:
    return {
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_tokens": p.max_tokens,
        "seed": p.seed,
        "stop": list(p.stop),
        "response_format": p.response_format,
        "tool_schemas_sha256": p.tool_schemas_sha256,
        "extras_json": canonical_json(dict(p.extras)),  # part of bundle content: hashed, so canonical
    }


def _error(error: BaseException | tuple[str, str] | None) -> tuple[str, dict[str, str]] | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        return "llm_lineage.ErrorRecord", {"type": type(error).__name__, "message": str(error)}
    kind, message = error
    return "llm_lineage.ErrorRecord", {"type": str(kind), "message": str(message)}


def _json(value: Any) -> str:
    """Sorted-key JSON for free-form fields (variables, extras, structured output); not used for hashing."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def bundle_content(
    *, prompt: PromptTemplate, model: ModelCall, retrieval: RetrievalConfig | None, params: Params | None
) -> dict[str, Any]:
    """What a bundle *is*: labels (name, version) are not part of it, so relabelling keeps the ID."""
    return {
        "prompt": {"template_id": prompt.template_id, "template_version": prompt.version,
                   "template_sha256": prompt.sha256},
        "model": {"provider": model.provider, "model": model.requested},
        "retrieval": None if retrieval is None else {
            "config_id": retrieval.config_id,
            "config_sha256": sha256_hex(canonical_json(dict(retrieval.settings))),
        },
        "params": _params(params or _DEFAULT_PARAMS),
    }


def bundle_registered_record(
    *, event_id: str, occurred_us: int, tenant: str, name: str, version: str, content: dict[str, Any],
    registered_by: str | None,
) -> tuple[Bundle, dict[str, Any]]:
    text = canonical_json(content)
    bundle = Bundle(bundle_id=sha256_hex(text), name=name, version=version)
    retrieval = content["retrieval"]
    record = {
        "event_id": event_id,
        "occurred_at": occurred_us,
        "tenant": tenant,
        "bundle_id": bundle.bundle_id,
        "name": name,
        "version": version,
        "prompt_template_id": content["prompt"]["template_id"],
        "prompt_template_version": content["prompt"]["template_version"],
        "prompt_template_sha256": content["prompt"]["template_sha256"],
        "model_provider": content["model"]["provider"],
        "model_name": content["model"]["model"],
        "retrieval_config_id": None if retrieval is None else retrieval["config_id"],
        "retrieval_config_sha256": None if retrieval is None else retrieval["config_sha256"],
        "params_json": canonical_json(content["params"]),
        "canonical_json": text,
        "registered_by": registered_by,
    }
    return bundle, record


def to_micros(when: datetime | None, default_us: int) -> int:
    return default_us if when is None else times.to_micros(when)
