"""The HTTP API on a real uvicorn server on 127.0.0.1, fed through the SDK (same SQLite log) and through
POST /v1/events: whole records, lineage graphs, filtered cursor paging, the schema registry, health."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from lineage_api.app import create_app
from lineage_api.routes_events import AVRO_MEDIA_TYPE
from lineage_api.services import open_services
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
from schemas.codec import Codec
from schemas.hashing import sha256_hex
from schemas.jsonform import from_json
from schemas.registry import load_registry
from tests.servers import consumed_event, inference_event, serve_app, wait_indexed

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


def _record_with_sdk(world: World) -> None:
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


def _post_json(client: httpx.Client, world: World) -> None:
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


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("api"))
    services = open_services(settings)
    with serve_app(create_app(services)) as url, httpx.Client(base_url=url, timeout=10) as client:
        w = World(url=url, settings=settings)
        _record_with_sdk(w)
        _post_json(client, w)
        stats = wait_indexed(client)
        assert stats["outputs"] == len(w.outputs) and stats["dead_letters"] == 0, stats
        yield w


@pytest.fixture
def client(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.url, timeout=10) as c:
        yield c


def _all_pages(client: httpx.Client, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/outputs", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("paging never ended")


# -- one output's whole record ----------------------------------------------------------------------------


def test_get_output_returns_prompt_documents_model_params_bundle_usage_and_consumers(
    client: httpx.Client, world: World
) -> None:
    oid = world.forecasts[0]
    r = client.get(f"/v1/outputs/{oid}").raise_for_status().json()

    assert r["output_id"] == oid and r["feature"] == FORECAST and r["status"] == "OK"
    assert r["occurred_at"] == "2026-03-01T00:00:00Z"
    assert r["prompt"]["template_id"] == "forecast" and r["prompt"]["template_version"] == "1"
    assert r["prompt"]["template_sha256"] == TEMPLATE_V1.sha256
    assert r["prompt"]["variables"] == {"region": "north", "day": "2026-03-01"}
    assert [(m["role"], m["content"]) for m in r["prompt"]["messages"]] == [
        ("system", "You forecast grid load."), ("user", "Forecast north load for 2026-03-01.")]
    docs = r["retrieval"]["documents"]
    assert [d["doc_id"] for d in docs] == ["weather-north", "scada-north"]
    assert docs[0]["content"] == "temperature 0 C" and docs[0]["content_sha256"] == sha256_hex("temperature 0 C")
    assert docs[1]["content"] is None and docs[1]["content_sha256"] == sha256_hex("load")
    assert r["model"] == {"provider": "northwind", "requested": "gridcast-large", "served": OLD_MODEL,
                          "fingerprint": "fp_1", "endpoint": None, "region": "eu-west"}
    assert r["params"]["temperature"] == 0.2 and r["params"]["seed"] == 1000
    assert r["params"]["stop"] == ["END"] and r["params"]["extras"] == {"region": "north"}
    b1 = world.bundles["1.0"]
    assert r["bundle"]["bundle_id"] == b1.bundle_id and r["bundle"]["version"] == "1.0"
    assert r["bundle"]["registered"] is True and r["bundle"]["registered_by"] == "release-bot"
    assert r["output"] == {"text": "1000 MW", "structured": {"mw": 1000}, "finish_reason": "stop"}
    assert r["usage"] == {"prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 5}
    assert r["cost_usd_micros"] == 1500 and r["latency_ms"] == 250.0
    assert r["parents"] == [] and r["children"] == [world.summary]
    assert [(c["consumer"], c["consumer_ref"], c["purpose"]) for c in r["consumers"]] == [
        ("dispatch-planner", "plan-1", "unit commitment")]
    assert r["rollout"] == {"arm": "stable", "alias": "production", "weight": 1.0}
    assert r["classification"]["retention_class"] == "operational-7y"


def test_get_output_of_a_failed_call_shows_error_and_every_attempt(client: httpx.Client, world: World) -> None:
    r = client.get(f"/v1/outputs/{world.forecasts[3]}").raise_for_status().json()

    assert r["status"] == "ERROR"
    assert r["error"] == {"type": "ProviderUnavailableError", "message": "all providers failed"}
    assert [(a["provider"], a["status"], a["error"]) for a in r["attempts"]] == [
        ("northwind", "TIMEOUT", "ReadTimeout"), ("eastgate", "ERROR", "HTTP 503")]
    assert r["output"]["text"] is None


def test_get_output_of_a_chained_summary_names_its_parents(client: httpx.Client, world: World) -> None:
    r = client.get(f"/v1/outputs/{world.summary}").raise_for_status().json()

    assert r["parents"] == world.forecasts[:2]
    assert r["bundle"] is None and r["retrieval"] is None


def test_get_output_posted_as_json_matches_what_was_posted(client: httpx.Client, world: World) -> None:
    r = client.get(f"/v1/outputs/{world.posted[0]}").raise_for_status().json()

    assert r["feature"] == POSTED and r["occurred_at"] == "2026-03-01T14:00:00Z"
    assert r["model"]["served"] == NEW_MODEL and r["bundle"]["registered"] is True
    assert r["prompt"]["messages"][0]["content"] == "forecast the load"
    assert [(c["consumer"], c["consumer_ref"]) for c in r["consumers"]] == [("review-desk", "r-9")]


@pytest.mark.parametrize("path", ["/v1/outputs/{id}", "/v1/outputs/{id}/lineage"])
def test_unknown_output_is_404_naming_the_id(client: httpx.Client, path: str) -> None:
    unknown = "out_06h00000000000000000000000"
    response = client.get(path.format(id=unknown))

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "NotFoundError" and unknown in error["message"]


# -- lineage graphs ---------------------------------------------------------------------------------------


def _graph(client: httpx.Client, oid: str, direction: str, depth: int) -> dict[str, Any]:
    response = client.get(f"/v1/outputs/{oid}/lineage", params={"direction": direction, "depth": depth})
    assert response.status_code == 200, response.text
    graph: dict[str, Any] = response.json()
    ids = {n["id"] for n in graph["nodes"]}
    for edge in graph["edges"]:  # every edge joins two listed nodes
        assert edge["source"] in ids and edge["target"] in ids, edge
    for node in graph["nodes"]:
        assert node["type"] == node["id"].partition(":")[0]
    return graph


def _edges(graph: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(e["source"], e["target"], e["kind"]) for e in graph["edges"]}


def test_upstream_lineage_depth_1_shows_what_produced_the_output(client: httpx.Client, world: World) -> None:
    oid = world.forecasts[0]
    graph = _graph(client, oid, "upstream", 1)

    assert graph["root"] == f"output:{oid}" and graph["truncated"] is False
    by_type: dict[str, list[dict[str, Any]]] = {}
    for node in graph["nodes"]:
        by_type.setdefault(node["type"], []).append(node)
    assert sorted(by_type) == ["bundle", "document", "model", "output", "prompt"]
    assert by_type["bundle"][0]["id"] == f"bundle:{world.bundles['1.0'].bundle_id}"
    assert by_type["bundle"][0]["version"] == "1.0"
    assert {d["doc_id"] for d in by_type["document"]} == {"weather-north", "scada-north"}
    assert by_type["model"][0]["served"] == OLD_MODEL
    assert by_type["prompt"][0]["template_sha256"] == TEMPLATE_V1.sha256
    kinds = {kind for _, target, kind in _edges(graph) if target == graph["root"]}
    assert kinds == {"configured", "prompted", "generated", "retrieved"}
    assert not any(n["type"] == "consumer" for n in graph["nodes"])  # downstream only


def test_upstream_depth_walks_through_parent_outputs(client: httpx.Client, world: World) -> None:
    first, second = world.forecasts[:2]
    shallow = _graph(client, world.summary, "upstream", 1)
    deep = _graph(client, world.summary, "upstream", 2)

    fed = {(f"output:{p}", f"output:{world.summary}", "fed") for p in (first, second)}
    assert fed <= _edges(shallow) and fed <= _edges(deep)
    assert not any(n["type"] == "document" for n in shallow["nodes"])  # the parents' inputs are level 2
    assert {n["doc_id"] for n in deep["nodes"] if n["type"] == "document"} == {"weather-north", "scada-north"}
    assert f"bundle:{world.bundles['1.0'].bundle_id}" in {n["id"] for n in deep["nodes"]}


def test_downstream_lineage_reaches_child_outputs_and_consumers(client: httpx.Client, world: World) -> None:
    oid = world.forecasts[0]
    graph = _graph(client, oid, "downstream", 1)

    assert _edges(graph) == {(f"output:{oid}", f"output:{world.summary}", "fed"),
                             (f"output:{oid}", "consumer:dispatch-planner", "consumed_by")}
    assert {n["type"] for n in graph["nodes"]} == {"output", "consumer"}


def test_both_directions_is_the_union_of_upstream_and_downstream(client: httpx.Client, world: World) -> None:
    oid = world.forecasts[0]
    both = _graph(client, oid, "both", 3)
    up = _graph(client, oid, "upstream", 3)
    down = _graph(client, oid, "downstream", 3)

    assert _edges(both) == _edges(up) | _edges(down)
    assert {n["type"] for n in both["nodes"]} == {"output", "bundle", "prompt", "document", "model", "consumer"}


# -- listings ---------------------------------------------------------------------------------------------


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


FILTERS: list[tuple[str, dict[str, Any]]] = [
    ("feature", {"feature": FORECAST}),
    ("feature-posted", {"feature": POSTED}),
    ("bundle_id", {"bundle_id": "2.0"}),
    ("model", {"model": OLD_MODEL}),
    ("status-error", {"status": "ERROR"}),
    ("status-refused", {"status": "REFUSED"}),
    ("since-until", {"since": BASE + timedelta(hours=2), "until": BASE + timedelta(hours=5)}),
    ("since-only", {"since": BASE + timedelta(hours=16)}),
    ("combined", {"feature": FORECAST, "model": NEW_MODEL, "status": "OK"}),
]


def _matches(facts: dict[str, Any], flt: dict[str, Any]) -> bool:
    return all((
        flt.get("feature") in (None, facts["feature"]),
        flt.get("bundle_id") in (None, facts["bundle_id"]),
        flt.get("model") in (None, facts["model"]),
        flt.get("status") in (None, facts["status"]),
        "since" not in flt or facts["occurred_at"] >= flt["since"],  # inclusive
        "until" not in flt or facts["occurred_at"] < flt["until"],  # exclusive
    ))


@pytest.mark.parametrize(("name", "flt"), FILTERS, ids=[name for name, _ in FILTERS])
def test_list_outputs_filter_pages_through_exactly_the_matching_outputs(
    client: httpx.Client, world: World, name: str, flt: dict[str, Any]
) -> None:
    flt = {**flt, "bundle_id": world.bundles[flt["bundle_id"]].bundle_id} if "bundle_id" in flt else flt
    expected = {oid for oid, facts in world.outputs.items() if _matches(facts, flt)}
    params = {k: _iso(v) if isinstance(v, datetime) else v for k, v in flt.items()}
    assert expected, f"filter {name} should match something in the recorded world"

    items = _all_pages(client, params, limit=2)

    ids = [i["output_id"] for i in items]
    assert len(ids) == len(set(ids)), "a page repeated an output"
    assert set(ids) & set(world.outputs) == expected
    assert ids == sorted(ids, reverse=True), "newest first"


def test_since_is_inclusive_and_until_exclusive_at_the_exact_timestamp(client: httpx.Client, world: World) -> None:
    at = BASE + timedelta(hours=4)
    exact = [oid for oid, f in world.outputs.items() if f["occurred_at"] == at]
    assert len(exact) == 1

    since = client.get("/v1/outputs", params={"since": _iso(at), "until": _iso(at + timedelta(hours=1))}).json()
    until = client.get("/v1/outputs", params={"since": _iso(at - timedelta(hours=1)), "until": _iso(at)}).json()

    assert [i["output_id"] for i in since["items"]] == exact
    assert exact[0] not in {i["output_id"] for i in until["items"]} and len(until["items"]) == 1


@pytest.mark.parametrize("limit", [1, 3, 500])
def test_cursor_paging_through_everything_has_no_gaps_or_duplicates(
    client: httpx.Client, world: World, limit: int
) -> None:
    total = client.get("/v1/stats").raise_for_status().json()["outputs"]

    items = _all_pages(client, {}, limit=limit)

    ids = [i["output_id"] for i in items]
    assert len(ids) == total == len(set(ids))
    assert set(world.outputs) <= set(ids)
    listed = next(i for i in items if i["output_id"] == world.forecasts[3])
    assert listed["status"] == "ERROR" and listed["feature"] == FORECAST
    assert listed["occurred_at"] == "2026-03-01T03:00:00Z" and listed["cost_usd_micros"] == 1503


# -- writing over HTTP ------------------------------------------------------------------------------------


def test_confluent_framed_avro_post_is_accepted_and_indexed(client: httpx.Client, world: World) -> None:
    codec = Codec()
    event = inference_event(feature="avro-post")["event"]
    record = from_json(codec.registry.latest("InferenceRecorded").schema, event)
    body = codec.encode("InferenceRecorded", record)
    assert body[0] == 0 and int.from_bytes(body[1:5], "big") == codec.schema_id("InferenceRecorded")

    response = client.post("/v1/events", content=body, headers={"Content-Type": AVRO_MEDIA_TYPE})

    assert response.status_code == 202, response.text
    assert response.json()["events"] == [{"event_id": event["event_id"], "output_id": event["output_id"]}]
    wait_indexed(client)
    stored = client.get(f"/v1/outputs/{event['output_id']}").raise_for_status().json()
    assert stored["feature"] == "avro-post" and stored["output"]["text"] == "42 MW"


def test_posting_the_same_event_twice_indexes_it_once(client: httpx.Client, world: World) -> None:
    event = inference_event(feature="posted-twice")
    before = wait_indexed(client)

    first = client.post("/v1/events", json=event)
    second = client.post("/v1/events", json=event)

    assert first.status_code == second.status_code == 202
    after = wait_indexed(client)
    assert after["log_end_offset"] == before["log_end_offset"] + 2  # both are in the log...
    assert after["outputs"] == before["outputs"] + 1  # ...and the index holds the output once
    listed = client.get("/v1/outputs", params={"feature": "posted-twice"}).json()["items"]
    assert [i["output_id"] for i in listed] == [event["event"]["output_id"]]
    assert after["dead_letters"] == before["dead_letters"]


def test_post_without_ids_gets_generated_ids_back(client: httpx.Client) -> None:
    response = client.post("/v1/events", json=inference_event(feature="no-ids", explicit_ids=False))

    assert response.status_code == 202
    [ids] = response.json()["events"]
    assert ids["output_id"].startswith("out_") and len(ids["output_id"]) == 30
    wait_indexed(client)
    assert client.get(f"/v1/outputs/{ids['output_id']}").json()["event_id"] == ids["event_id"]


# -- health, docs, schema registry ------------------------------------------------------------------------


def test_healthz_and_readyz_report_a_running_runner(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["runner"] == "running" and ready.json()["status"] == "ready"


EXPECTED_ROUTES = {
    ("get", "/healthz"), ("get", "/readyz"), ("get", "/v1/outputs"), ("get", "/v1/outputs/{output_id}"),
    ("get", "/v1/outputs/{output_id}/lineage"), ("get", "/v1/stats"), ("get", "/v1/dead-letters"),
    ("post", "/v1/events"), ("get", "/schemas/ids/{schema_id}"), ("get", "/subjects"),
    ("get", "/subjects/{subject}/versions"), ("get", "/subjects/{subject}/versions/{version}"),
}


def test_openapi_lists_every_route_and_docs_serve_html(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").raise_for_status().json()
    listed = {(method, path) for path, ops in spec["paths"].items() for method in ops}

    assert listed == EXPECTED_ROUTES
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), f"{method.upper()} {path} has no summary in the docs"
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "swagger" in docs.text.lower() and "/openapi.json" in docs.text


@pytest.mark.parametrize("schema_id", [1, 2, 3, 4])
def test_schema_by_id_is_the_registry_schema_as_json_text(client: httpx.Client, schema_id: int) -> None:
    body = client.get(f"/schemas/ids/{schema_id}").raise_for_status().json()

    assert set(body) == {"schema"} and isinstance(body["schema"], str)
    assert json.loads(body["schema"]) == load_registry().by_id(schema_id).schema


def test_unknown_schema_id_is_404(client: httpx.Client) -> None:
    response = client.get("/schemas/ids/999")

    assert response.status_code == 404
    assert "999" in response.json()["error"]["message"]


def test_subjects_and_their_latest_versions(client: httpx.Client) -> None:
    registry = load_registry()
    subjects = client.get("/subjects").raise_for_status().json()

    assert subjects == registry.subjects() and len(subjects) == 4
    for subject in subjects:
        latest = client.get(f"/subjects/{subject}/versions/latest").raise_for_status().json()
        newest = max((v for v in registry.versions if v.subject == subject), key=lambda v: v.version)
        assert latest["subject"] == subject and latest["id"] == newest.schema_id
        assert latest["version"] == newest.version and json.loads(latest["schema"]) == newest.schema
        assert client.get(f"/subjects/{subject}/versions").json() == [v.version for v in registry.history(
            newest.name)]
    missing = client.get("/subjects/no-such-subject/versions/latest")
    assert missing.status_code == 404 and "no-such-subject" in missing.json()["error"]["message"]

