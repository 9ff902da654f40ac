"""Read routes: one output's record, its lineage graph, and filtered listings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from lineage_api.services import Services
from streams.lineage import MAX_DEPTH, lineage_graph
from streams.reader import MAX_PAGE, OutputFilter

router = APIRouter(prefix="/v1", tags=["outputs"])
OutputId = Annotated[str, Path(max_length=128, description="An output ID, e.g. out_06h4…")]


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.get("/outputs/{output_id}", summary="Everything behind one output")
def get_output(request: Request, output_id: OutputId) -> dict[str, Any]:
    """Prompt, retrieved documents, model, parameters, bundle, output, usage, cost, status, fallback
    attempts, parent and child outputs, consumers, and where the event sits in the log."""
    return _services(request).reader.output(output_id)


@router.get("/outputs/{output_id}/lineage", summary="The lineage graph around one output")
def get_lineage(
    request: Request,
    output_id: OutputId,
    direction: Literal["upstream", "downstream", "both"] = "upstream",
    depth: Annotated[int, Query(ge=1, le=MAX_DEPTH)] = 3,
) -> dict[str, Any]:
    """Typed nodes (`output:`, `bundle:`, `prompt:`, `document:`, `model:`, `consumer:`) and edges
    (source went into target). Upstream: what produced the output; downstream: what used it."""
    return lineage_graph(_services(request).engine, output_id, direction=direction, depth=depth)


@router.get("/outputs", summary="List outputs, newest first")
def list_outputs(
    request: Request,
    feature: str | None = None,
    bundle_id: str | None = None,
    model: Annotated[str | None, Query(description="Model version served")] = None,
    requested_model: Annotated[str | None, Query(description="Model name the app asked for")] = None,
    status: Literal["OK", "ERROR", "REFUSED", "TIMEOUT"] | None = None,
    trace_id: str | None = None,
    since: Annotated[datetime | None, Query(description="ISO-8601, inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO-8601, exclusive")] = None,
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, Any]:
    flt = OutputFilter(feature=feature, bundle_id=bundle_id, model=model, requested_model=requested_model,
                       status=status, trace_id=trace_id, since=since, until=until)
    page = _services(request).reader.outputs(flt, cursor=cursor, limit=limit)
    return {"items": page.items, "next_cursor": page.next_cursor, "limit": limit}


@router.get("/stats", summary="Counts and the runner's position")
def stats(request: Request) -> dict[str, Any]:
    services = _services(request)
    # Lag first: counts read afterwards include at least everything the lag says is done.
    lag, end = services.progress.lag(), services.progress.end_offset()
    return {**services.reader.stats(), "lag": lag, "log_end_offset": end}


@router.get("/dead-letters", summary="Events the projectors could not use, with the reason")
def dead_letters(request: Request, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> dict[str, Any]:
    return {"items": _services(request).reader.dead_letters(limit)}
