"""Serving: uvicorn around the app, with the embedded runner started in the app's lifespan."""

from __future__ import annotations

import gc
import logging

import uvicorn

from lineage_api.app import create_app
from lineage_api.services import open_services
from lineage_api.settings import Settings

log = logging.getLogger("llm_lineage")


def tune_gc() -> None:
    """Fewer cyclic-GC passes for a process that holds thousands of decoded events per batch.

    With CPython's default gen0 threshold (700) a 2,000-event batch set off dozens of collections that
    rescanned the live batch: ~15 us of every event's ~45 us decode (measured). The store never builds
    reference cycles on its hot path, so collecting less often costs only a little memory. Called by our
    own entry points only; a library must not change its host's GC.
    """
    gc.freeze()  # what start-up allocated (modules, settings, the app) is never garbage: stop rescanning it
    gc.set_threshold(50_000, 20, 100)


def serve(settings: Settings) -> None:
    tune_gc()
    services = open_services(settings)
    app = create_app(services)
    log.info(
        "llm-lineage on http://%s:%d (docs at /docs) | log %s | index %s",
        settings.host, settings.port, settings.resolved_log_url, settings.resolved_index_url,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
