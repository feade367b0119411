"""The event-stream decoder, and reconnection by Last-Event-ID after a broken connection."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx

from hilo_client import Client
from hilo_client._sse import SSEDecoder


def decode(text: str) -> list[tuple[str | None, str, str]]:
    d = SSEDecoder()
    out = []
    for line in text.splitlines():
        e = d.feed(line)
        if e is not None:
            out.append((e.id, e.event, e.data))
    return out


def test_decoder_follows_the_format() -> None:
    text = (
        ": keep-alive\n\n"
        'id: 1\nevent: node_started\ndata: {"a":1}\n\n'
        'event: llm_token\ndata:{"text":"hi"}\n\n'
        "data: line one\ndata: line two\n\n"
        "id: 7\n\n"  # no data: nothing dispatched, the id is remembered
        "retry: 100\nfield without colon\n\n"
    )
    assert decode(text) == [
        ("1", "node_started", '{"a":1}'),
        (None, "llm_token", '{"text":"hi"}'),
        (None, "message", "line one\nline two"),
    ]
    d = SSEDecoder("3")
    for line in ["id: 9", "data: x", ""]:
        d.feed(line)
    assert d.last_event_id == "9"


def event(seq: int, kind: str) -> bytes:
    data = {
        "seq": seq,
        "at": "2026-01-01T00:00:00Z",
        "kind": kind,
        "node": None,
        "attempt": 0,
        "data": None,
    }
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()


class Broken(httpx.SyncByteStream):
    """Sends some events, then the connection breaks."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise httpx.ReadError("connection reset")


def test_events_reconnect_with_last_event_id() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        last = request.headers.get("last-event-id")
        seen.append(last)
        headers = {"content-type": "text/event-stream"}
        if last is None:
            return httpx.Response(
                200,
                headers=headers,
                stream=Broken([event(1, "execution_started"), event(2, "node_succeeded")]),
            )
        assert last == "2"
        return httpx.Response(200, headers=headers, content=event(3, "execution_succeeded"))

    with Client("http://hilo.invalid", "k", transport=httpx.MockTransport(handler)) as c:
        kinds = [e.kind for e in c.executions.events("x")]
    assert kinds == ["execution_started", "node_succeeded", "execution_succeeded"]
    assert seen == [None, "2"]


def test_events_without_reconnect_raise() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=Broken([event(1, "execution_started")]),
        )

    with Client("http://hilo.invalid", "k", transport=httpx.MockTransport(handler)) as c:
        got = []
        try:
            for e in c.executions.events("x", reconnect=False):
                got.append(e.kind)
        except httpx.ReadError:
            pass
        else:
            raise AssertionError("expected the broken connection to raise")
    assert got == ["execution_started"]
