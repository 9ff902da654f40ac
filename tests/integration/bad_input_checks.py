"""Checks shared by the bad-input tests: the limits the `server` fixture (conftest.py) runs with, and what
must hold after a bad request: a JSON error naming the problem, nothing stored, nothing harmed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from lineage_api.settings import Settings
from tests.servers import inference_event, wait_indexed

MAX_EVENT_BYTES = 2048
MAX_REQUEST_BYTES = MAX_EVENT_BYTES * 8  # Settings.max_request_bytes


@dataclass
class Server:
    url: str
    settings: Settings
    earlier_output: str  # indexed before any bad input arrived


def assert_unharmed(
    client: httpx.Client, server: Server, before: dict[str, Any], *, appended: int = 0, dead: int = 0
) -> None:
    """A good event posted now is indexed; the log grew only by it (and the `appended` records the test
    wrote itself, `dead` of them dead letters), so the bad request stored nothing; earlier outputs stay."""
    good = inference_event(feature="after-bad-input")
    response = client.post("/v1/events", json=good)
    assert response.status_code == 202, response.text
    stats = wait_indexed(client)
    assert stats["log_end_offset"] == before["log_end_offset"] + 1 + appended
    assert stats["outputs"] == before["outputs"] + 1
    assert stats["dead_letters"] == before["dead_letters"] + dead
    assert client.get(f"/v1/outputs/{good['event']['output_id']}").status_code == 200
    assert client.get(f"/v1/outputs/{server.earlier_output}").status_code == 200
    assert client.get("/readyz").status_code == 200


def assert_serving(client: httpx.Client, server: Server) -> None:
    """For bad reads (they cannot store anything): the server still answers and earlier data is intact."""
    assert client.get("/readyz").status_code == 200
    assert client.get(f"/v1/outputs/{server.earlier_output}").json()["output_id"] == server.earlier_output
    assert client.get("/v1/outputs", params={"feature": "earlier"}).json()["items"][0]["output_id"] == (
        server.earlier_output)


def error_of(response: httpx.Response, status: int) -> str:
    """The JSON error message of a response that must have `status`."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"type", "message"} and error["message"]
    message: str = error["message"]
    return message
