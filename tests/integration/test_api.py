"""The HTTP API on a real uvicorn server on 127.0.0.1, fed through the SDK (same SQLite log) and through
POST /v1/events: whole records, filtered cursor paging, writing over HTTP, the schema registry, health.
Lineage graphs are in test_api_lineage.py; the recorded world is in api_world.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from lineage_api.routes_events import AVRO_MEDIA_TYPE
from schemas.codec import Codec
from schemas.hashing import sha256_hex
from schemas.jsonform import from_json
from schemas.registry import EVENT_TYPES, load_registry
from tests.integration.api_world import BASE, FORECAST, NEW_MODEL, OLD_MODEL, POSTED, TEMPLATE_V1, World
from tests.servers import inference_event, wait_indexed


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
    ("get", "/v1/keys"), ("get", "/v1/checkpoints"), ("get", "/v1/outputs/{output_id}/proof"),
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


@pytest.mark.parametrize("schema_id", [v.schema_id for v in load_registry().versions])
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

    # One subject per event type, the store's own ChainCheckpoint included: readers of the topic meet it too.
    assert subjects == registry.subjects() and len(subjects) == len(EVENT_TYPES)
    assert {s.rsplit(".", 1)[1] for s in subjects} == set(EVENT_TYPES)
    for subject in subjects:
        latest = client.get(f"/subjects/{subject}/versions/latest").raise_for_status().json()
        newest = max((v for v in registry.versions if v.subject == subject), key=lambda v: v.version)
        assert latest["subject"] == subject and latest["id"] == newest.schema_id
        assert latest["version"] == newest.version and json.loads(latest["schema"]) == newest.schema
        assert client.get(f"/subjects/{subject}/versions").json() == [v.version for v in registry.history(
            newest.name)]
    missing = client.get("/subjects/no-such-subject/versions/latest")
    assert missing.status_code == 404 and "no-such-subject" in missing.json()["error"]["message"]
