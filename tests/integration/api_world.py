"""The world the HTTP API tests record (through the SDK into the server's SQLite log, and by POST /v1/events)
before they query it, kept as ground truth for the API's answers. The `world` fixture in conftest.py builds it
once per test module."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from lineage_api.settings import Settings
from producers.recorder import Recorder
from producers.values import (
    Attempt,
    Bundle,
    Classification,
    Document,
    ModelCall,
    Output,
    Params,
    PromptTemplate,
    Retrieval,
    Rollout,
    Usage,
)
from schemas.hashing import sha256_hex
from tests.servers import consumed_event, inference_event

BASE = datetime(2026, 3, 1, tzinfo=UTC)
FORECAST, SUMMARY, POSTED = "day-ahead-load", "system-summary", "posted-load"
OLD_MODEL, NEW_MODEL = "gridcast-2026-06", "gridcast-2026-11"
TEMPLATE_V1 = PromptTemplate(template_id="forecast", version="1", text="Forecast {region} load for {day}.")
TEMPLATE_V2 = PromptTemplate(template_id="forecast", version="2", text="Forecast {region} load for {day}, MW.")
REQUESTED = ModelCall(provider="northwind", requested="gridcast-large")


@dataclass
class World:
    """What the module recorded, as ground truth for the API's answers."""

    url: str
    settings: Settings
    bundles: dict[str, Bundle] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # output_id -> filterable facts
    forecasts: list[str] = field(default_factory=list)  # SDK forecasts, oldest first
    summary: str = ""
    posted: list[str] = field(default_factory=list)


def _record_forecast(rec: Recorder, world: World, i: int) -> None:
    when = BASE + timedelta(hours=i)
    bundle = world.bundles["1.0"] if i < 6 else world.bundles["2.0"]
    template = TEMPLATE_V1 if i < 6 else TEMPLATE_V2
    served = OLD_MODEL if i < 8 else NEW_MODEL
    status = {3: "ERROR", 9: "TIMEOUT"}.get(i, "OK")
    docs = (Document(doc_id="weather-north", version=f"2026-03-01T{i:02d}", source="met-service",
                     content=f"temperature {i} C", score=0.9),
            Document(doc_id="scada-north", version="v7", source="scada", content_sha256=sha256_hex("load"),
                     score=0.5, keep_content=False))
    attempts = (Attempt(provider="northwind", model="gridcast-large", status="TIMEOUT", error="ReadTimeout",
                        latency_ms=30000.0),
                Attempt(provider="eastgate", model="eg-2", status="ERROR", error="HTTP 503", latency_ms=12.0),
                ) if status == "ERROR" else ()
    output_id = rec.record(
        feature=FORECAST, occurred_at=when, bundle=bundle,
        prompt=template.render(system="You forecast grid load.", region="north", day=f"2026-03-0{1 + i % 2}"),
        model=ModelCall(provider="northwind", requested="gridcast-large", served=served, fingerprint="fp_1",
                        region="eu-west"),
        retrieval=Retrieval(config_id="grid-context", config_sha256=sha256_hex("cfg"), query="north load",
                            documents=docs),
        params=Params(temperature=0.2, max_tokens=800, seed=1000 + i, stop=("END",), extras={"region": "north"}),
        output=Output(text=None if status != "OK" else f"{1000 + i} MW",
                      structured=None if status != "OK" else {"mw": 1000 + i}, finish_reason="stop"),
        usage=Usage(prompt_tokens=100 + i, completion_tokens=20, cached_tokens=5),
        cost_usd_micros=1500 + i, latency_ms=250.0 + i, status=status,
        error=("ProviderUnavailableError", "all providers failed") if status == "ERROR" else None,
        attempts=attempts, trace_id=f"trace-{i}", rollout=Rollout(arm="stable", alias="production", weight=1.0),
        classification=Classification(retention_class="operational-7y"),
    )
    world.forecasts.append(output_id)
    world.outputs[output_id] = {"feature": FORECAST, "bundle_id": bundle.bundle_id, "model": served,
                                "status": status, "occurred_at": when}


def record_with_sdk(world: World) -> None:
    with Recorder(log_url=world.settings.resolved_log_url) as rec:
        for version, template in (("1.0", TEMPLATE_V1), ("2.0", TEMPLATE_V2)):
            world.bundles[version] = rec.register_bundle(name="day-ahead", version=version, prompt=template,
                                                         model=REQUESTED, registered_by="release-bot")
        for i in range(12):
            _record_forecast(rec, world, i)
        when = BASE + timedelta(hours=12)
        world.summary = rec.record(
            feature=SUMMARY, occurred_at=when, parents=world.forecasts[:2], trace_id="trace-0",
            prompt=TEMPLATE_V2.render(region="all", day="2026-03-01"),
            model=ModelCall(provider="northwind", requested="gridcast-large", served=NEW_MODEL),
            output=Output(text="system peak 2.1 GW"),
        )
        world.outputs[world.summary] = {"feature": SUMMARY, "bundle_id": None, "model": NEW_MODEL,
                                        "status": "OK", "occurred_at": when}
        rec.consumed(world.forecasts[0], consumer="dispatch-planner", consumer_ref="plan-1",
                     purpose="unit commitment", occurred_at=BASE + timedelta(hours=13))


def post_json(client: httpx.Client, world: World) -> None:
    b2 = world.bundles["2.0"]
    events = []
    for i in range(5):
        when = BASE + timedelta(hours=14 + i)
        status = "REFUSED" if i == 2 else "OK"
        ev = inference_event(feature=POSTED, occurred_at=when, model_served=NEW_MODEL, status=status,
                             bundle={"bundle_id": b2.bundle_id, "name": b2.name, "version": b2.version})
        events.append(ev)
        oid = ev["event"]["output_id"]
        world.posted.append(oid)
        world.outputs[oid] = {"feature": POSTED, "bundle_id": b2.bundle_id, "model": NEW_MODEL,
                              "status": status, "occurred_at": when}
    events.append(consumed_event(world.posted[0], consumer="review-desk", consumer_ref="r-9"))
    response = client.post("/v1/events", json=events)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 6
