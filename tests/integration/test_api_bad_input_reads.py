"""Bad reads over HTTP get a clear 4xx JSON error naming the problem, never a 500, and harm nothing: after
each, the server still answers and what was indexed before is still there. Bad writes are in
test_api_bad_input.py."""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.bad_input_checks import Server, assert_serving, error_of


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


# -- query parameters and IDs -----------------------------------------------------------------------------

LINEAGE = "/v1/outputs/{earlier}/lineage"
BAD_QUERIES = {
    "depth-0": (LINEAGE, {"depth": 0}, "depth"),
    "depth-99": (LINEAGE, {"depth": 99}, "depth"),
    "depth-text": (LINEAGE, {"depth": "deep"}, "depth"),
    "direction-sideways": (LINEAGE, {"direction": "sideways"}, "direction"),
    "limit-100000": ("/v1/outputs", {"limit": 100000}, "limit"),
    "limit-0": ("/v1/outputs", {"limit": 0}, "limit"),
    "since-notadate": ("/v1/outputs", {"since": "notadate"}, "since"),
    "until-notadate": ("/v1/outputs", {"until": "2026-13-45"}, "until"),
    "status-bogus": ("/v1/outputs", {"status": "BOGUS"}, "status"),
    "cursor-undecodable": ("/v1/outputs", {"cursor": "abc"}, "cursor"),
    "cursor-not-base64": ("/v1/outputs", {"cursor": "!!!!"}, "cursor"),
    "cursor-too-long": ("/v1/outputs", {"cursor": "A" * 600}, "cursor"),
    "dead-letters-limit": ("/v1/dead-letters", {"limit": 10**6}, "limit"),
}


@pytest.mark.parametrize(("path", "params", "names"), BAD_QUERIES.values(), ids=BAD_QUERIES.keys())
def test_bad_query_parameter_is_a_4xx_json_error_naming_it(
    client: httpx.Client, server: Server, path: str, params: dict[str, Any], names: str
) -> None:
    response = client.get(path.format(earlier=server.earlier_output), params=params)

    assert response.status_code in (400, 422), response.text
    assert names in error_of(response, response.status_code)
    assert_serving(client, server)


def _encode_every_byte(text: str) -> str:
    """Percent-encode everything but letters and digits, dots included, so no client rewrites the path."""
    keep = set(string.ascii_letters + string.digits + "_")
    return "".join(c if c in keep else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


ODD_IDS = {
    "traversal": "../../../etc/passwd",
    "dot-dot": "..",
    "very-long": "out_" + "0" * 5000,
    "just-over-128": "out_" + "a" * 125,
    "sql-and-nul": "out_ü\x00'; DROP TABLE outputs;--",
    "newline": "out_a\nb",
    "percent": "out_%41%",
    "emoji": "out_⚡🔌",
    "slash-encoded": "out_a/b",
    "backslash": "..\\..\\windows",
}


@pytest.mark.parametrize("odd", ODD_IDS.values(), ids=ODD_IDS.keys())
@pytest.mark.parametrize("route", ["", "/lineage"])
def test_odd_output_ids_are_404_or_422_never_500(client: httpx.Client, server: Server, odd: str, route: str) -> None:
    response = client.get(f"/v1/outputs/{_encode_every_byte(odd)}{route}")

    assert response.status_code in (404, 422), response.text
    error_of(response, response.status_code)
    assert_serving(client, server)
