"""Lineage graphs over HTTP (GET /v1/outputs/{id}/lineage) on a real uvicorn server on 127.0.0.1, walking the
world recorded in api_world.py: upstream inputs, parent outputs, child outputs and consumers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.api_world import OLD_MODEL, TEMPLATE_V1, World


@pytest.fixture
def client(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.url, timeout=10) as c:
        yield c


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
