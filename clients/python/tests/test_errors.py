"""Errors as exceptions carrying hilo's problem codes: from a real server, and the shapes a
server cannot be made to send here (429, a proxy's 502, the old envelope) from a mock."""

from __future__ import annotations

import httpx
import pytest
from conftest import Server

from hilo_client import (
    BadRequest,
    Client,
    Forbidden,
    HiloError,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
)


def test_bad_or_missing_key_is_unauthorized(server: Server) -> None:
    with Client(server.url, "hilo_not_a_key") as bad:
        with pytest.raises(Unauthorized) as caught:
            bad.workflows.list()
    e = caught.value
    assert (e.status, e.code) == (401, "UNAUTHORIZED") and e.message
    assert "401 UNAUTHORIZED" in str(e)
    with Client(server.url) as anonymous:
        with pytest.raises(Unauthorized):
            anonymous.executions.list()
        assert anonymous.health()["status"] == "ok"  # no key needed


def test_missing_scope_is_forbidden(server: Server) -> None:
    with server.client("read") as reader:
        assert reader.workflows.get("py_steps").name == "py_steps"
        with pytest.raises(Forbidden) as caught:
            reader.workflows.import_({"name": "nope", "version": 1})
        assert caught.value.status == 403 and caught.value.code
        with pytest.raises(Forbidden):
            reader.executions.start("py_steps", {"n": 1})


def test_another_tenants_execution_is_not_found(server: Server, client: Client) -> None:
    mine = client.executions.start("py_steps", {"n": 1})
    with server.client("other") as other:
        with pytest.raises(NotFound) as caught:
            other.executions.get(mine.execution_id)
        assert caught.value.code == "EXECUTION_NOT_FOUND"
        with pytest.raises(NotFound):
            other.executions.cancel(mine.execution_id)
        with pytest.raises(NotFound) as wf:
            other.workflows.get("py_steps")  # imported into acme, hil and aio only
        assert wf.value.code == "WORKFLOW_NOT_FOUND"
        assert mine.execution_id not in {e.id for e in other.executions.iter()}


def test_bad_query_is_bad_request(client: Client) -> None:
    with pytest.raises(BadRequest) as caught:
        client.executions.list(limit=0)
    assert caught.value.code == "INVALID_QUERY"
    with pytest.raises(BadRequest):
        client.executions.list(cursor="not-a-cursor")


def test_request_reaches_any_other_endpoint(client: Client) -> None:
    assert client.request("GET", "/triggers") == {"triggers": []}
    assert "items" in client.request("GET", "tools", params={"limit": 2})
    with pytest.raises(NotFound) as caught:
        client.request("GET", "/no-such-endpoint")
    assert caught.value.code == "NOT_FOUND"


def mock(status: int, body: bytes, headers: dict[str, str]) -> Client:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers)

    return Client("http://hilo.invalid", "k", transport=httpx.MockTransport(handler))


def test_rate_limited_carries_retry_after() -> None:
    problem = (
        b'{"type":"urn:hilo:problem:RATE_LIMITED","title":"Too Many Requests","status":429,'
        b'"detail":"over the rate limit","code":"RATE_LIMITED","details":{},'
        b'"error":{"code":"RATE_LIMITED","message":"over the rate limit","details":{}}}'
    )
    with mock(429, problem, {"content-type": "application/problem+json", "retry-after": "3"}) as c:
        with pytest.raises(RateLimited) as caught:
            c.workflows.list()
    e = caught.value
    assert (e.status, e.code, e.message, e.retry_after) == (
        429,
        "RATE_LIMITED",
        "over the rate limit",
        3.0,
    )
    assert isinstance(e, HiloError)


def test_a_proxy_page_is_a_server_error() -> None:
    with mock(502, b"<html>Bad Gateway</html>", {"content-type": "text/html"}) as c:
        with pytest.raises(ServerError) as caught:
            c.executions.get("x")
    assert (caught.value.status, caught.value.code) == (502, "HTTP_502")
    assert "Bad Gateway" in caught.value.message and caught.value.body is None


def test_the_envelope_of_earlier_versions_is_read() -> None:
    body = (
        b'{"error":{"code":"WORKFLOW_NOT_FOUND","message":"no such workflow",'
        b'"details":{"name":"x"}}}'
    )
    with mock(404, body, {"content-type": "application/json"}) as c:
        with pytest.raises(NotFound) as caught:
            c.workflows.get("x")
    assert (caught.value.code, caught.value.message, caught.value.details) == (
        "WORKFLOW_NOT_FOUND",
        "no such workflow",
        {"name": "x"},
    )


def test_an_unlisted_status_is_a_plain_hilo_error() -> None:
    with mock(418, b"", {}) as c:
        with pytest.raises(HiloError) as caught:
            c.health()
    assert type(caught.value) is HiloError and caught.value.code == "HTTP_418"
