"""The client itself: configuration, repr, and the sync and async twins' parity."""

from __future__ import annotations

import inspect

import hilo_client
from hilo_client import AsyncClient, Client, _async_client, _client

RESOURCES = ["Workflows", "Executions", "Tasks", "Conversations", "Hil", "KnowledgeBase"]


def public(cls: type) -> dict[str, inspect.Signature]:
    return {
        n: inspect.signature(f)
        for n, f in vars(cls).items()
        if callable(f) and not n.startswith("_")
    }


def test_sync_and_async_have_the_same_methods_and_parameters() -> None:
    pairs = [(Client, AsyncClient)] + [
        (getattr(_client, n), getattr(_async_client, f"Async{n}")) for n in RESOURCES
    ]
    for sync, aio in pairs:
        s, a = public(sync), public(aio)
        s.pop("close", None), a.pop("aclose", None)
        assert s.keys() == a.keys(), sync.__name__
        for name in s:
            assert list(s[name].parameters) == list(a[name].parameters), f"{sync.__name__}.{name}"


def test_repr_hides_the_key() -> None:
    c = Client("http://127.0.0.1:9/", "hilo_secret_key")
    assert repr(c) == "Client(base_url='http://127.0.0.1:9/api/v1')"
    assert "hilo_secret_key" not in repr(c) and "hilo_secret_key" not in repr(vars(c))
    c.close()
    a = AsyncClient("http://127.0.0.1:9/api/v1", "hilo_secret_key")
    assert "hilo_secret_key" not in repr(a) and a.base_url == "http://127.0.0.1:9/api/v1"


def test_version_and_exports() -> None:
    assert hilo_client.__version__ == "0.1.0"
    for name in hilo_client.__all__:
        assert hasattr(hilo_client, name), name
