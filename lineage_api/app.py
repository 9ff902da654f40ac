"""The HTTP API: `create_app(services)` wires routes to the index and log; domain errors map to HTTP
statuses in one handler, so routes never raise HTTPException for them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lineage_api import routes_chain, routes_events, routes_outputs, routes_schemas
from lineage_api.services import Services, drain_spool
from schemas import errors as e
from streams.proofs import NotCoveredYetError

_STATUS: list[tuple[type[e.LineageError], int]] = [
    (NotCoveredYetError, 409),
    (e.NotFoundError, 404),
    (e.InvalidRequestError, 400),
    (e.EventTooLargeError, 413),
    (e.EventError, 422),
    (e.LogUnavailableError, 503),
    (e.IndexError_, 503),
    (e.ArchiveUnavailableError, 503),
    (e.LogError, 500),
]


class FastJSONResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


def create_app(services: Services, *, run_projectors: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if run_projectors:
            drain_spool(services)
            if services.runner is not None:
                backlog = services.runner.lag()
                if backlog:
                    logging.getLogger("llm_lineage").info("indexing a backlog of %d events", backlog)
                services.runner.start()
        yield
        services.close()

    app = FastAPI(
        title="llm-lineage",
        version="0.1.0",
        summary="Trace any LLM output back to the prompt, context, model and parameters that produced it.",
        default_response_class=FastJSONResponse,
        lifespan=lifespan,
    )
    app.state.services = services

    @app.exception_handler(e.LineageError)
    async def lineage_error(_request: Request, exc: e.LineageError) -> Response:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
        return FastJSONResponse(error_body(type(exc).__name__.rstrip("_"), str(exc)), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        return FastJSONResponse(error_body("InvalidRequestError", problems), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        return FastJSONResponse(error_body("HTTPError", str(exc.detail)), status_code=exc.status_code)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="The index answers and the runner keeps up")
    def readyz() -> Response:
        runner = services.runner
        body: dict[str, Any] = {"index": "ok", "runner": "off" if runner is not None else "lineage worker"}
        ready = True
        try:
            body["lag"] = services.progress.lag()
        except e.LineageError as exc:
            body["index"], ready = f"error: {exc}", False
        if run_projectors and runner is not None:
            body["runner"] = "running" if runner.alive else f"stopped: {runner.error}"
            ready = ready and runner.alive
        body["status"] = "ready" if ready else "not ready"
        return FastJSONResponse(body, status_code=200 if ready else 503)

    app.include_router(routes_outputs.router)
    app.include_router(routes_events.router)
    app.include_router(routes_schemas.router)
    app.include_router(routes_chain.router)
    return app
