"""Serving: uvicorn around the app, with the embedded runner started in the app's lifespan."""

from __future__ import annotations

import logging

import uvicorn

from lineage_api.app import create_app
from lineage_api.services import open_services
from lineage_api.settings import Settings

log = logging.getLogger("llm_lineage")


def serve(settings: Settings) -> None:
    services = open_services(settings)
    app = create_app(services)
    log.info(
        "llm-lineage on http://%s:%d (docs at /docs) | log %s | index %s",
        settings.host, settings.port, settings.resolved_log_url, settings.resolved_index_url,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
