"""Module-scoped servers for the HTTP API tests: each test module that asks for `world` or `server` gets its
own app on 127.0.0.1 over a fresh data dir, shared by that module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from lineage_api.app import create_app
from lineage_api.services import open_services
from lineage_api.settings import Settings
from tests.integration.api_world import World, post_json, record_with_sdk
from tests.integration.bad_input_checks import MAX_EVENT_BYTES, MAX_REQUEST_BYTES, Server
from tests.servers import inference_event, serve_app, wait_indexed


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("api"))
    services = open_services(settings)
    with serve_app(create_app(services)) as url, httpx.Client(base_url=url, timeout=10) as client:
        w = World(url=url, settings=settings)
        record_with_sdk(w)
        post_json(client, w)
        stats = wait_indexed(client)
        assert stats["outputs"] == len(w.outputs) and stats["dead_letters"] == 0, stats
        yield w


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("bad-input"), max_event_bytes=MAX_EVENT_BYTES)
    assert settings.max_request_bytes == MAX_REQUEST_BYTES
    services = open_services(settings)
    with serve_app(create_app(services)) as url, httpx.Client(base_url=url, timeout=10) as client:
        event = inference_event(feature="earlier")
        assert client.post("/v1/events", json=event).status_code == 202
        wait_indexed(client)
        yield Server(url, settings, event["event"]["output_id"])
