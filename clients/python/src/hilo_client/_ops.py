"""The API's operations as data, shared by the sync and the async client: each function
builds an :class:`Op` (method, path, query, body, headers) and says how to read its answer;
the clients only send it."""

from __future__ import annotations

import json as _json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, Union
from urllib.parse import quote

import httpx

from .errors import error_from_response
from .models import (
    Accepted,
    Acted,
    AddedDocument,
    Collection,
    Conversation,
    DeletedWorkflow,
    Document,
    Execution,
    ExecutionSummary,
    HumanAgent,
    Imported,
    Message,
    MessagePosted,
    Page,
    Retention,
    SearchResults,
    Stats,
    Task,
    TaskAnswered,
    Transition,
    Workflow,
    WorkflowSummary,
    WorkflowVersion,
    WorkItem,
)

T = TypeVar("T")
M = TypeVar("M")

WorkflowSource = Union[str, bytes, Mapping[str, Any], "os.PathLike[str]"]
"""A workflow to import: YAML or JSON text, a dict, or the path of a file."""

# How long `run` may hold a request open when no timeout is given: the server's most
# (`[server] max_sync_timeout_ms`, 5 minutes by default), with a margin.
RUN_READ_TIMEOUT = 310.0
# Keep-alive comes every 15 s on hilo's event streams: a read this long means a dead link.
STREAM_READ_TIMEOUT = 60.0


@dataclass(frozen=True)
class Op(Generic[T]):
    """One request and the reading of its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    read_timeout: float | None = None
    """Overrides the client's read timeout (long polls, streams)."""

    def build(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if self.read_timeout is not None:
            t = client.timeout
            timeout = httpx.Timeout(
                connect=t.connect, read=self.read_timeout, write=t.write, pool=t.pool
            )
        return client.build_request(
            self.method,
            self.path,
            params=dict(self.params) or None,
            content=self.content,
            headers=dict(self.headers) or None,
            timeout=timeout,
        )


def check(response: httpx.Response) -> None:
    """Raises the :class:`~hilo_client.HiloError` of an error answer (its body read)."""
    if response.status_code >= 400:
        raise error_from_response(response)


# --- building blocks ---------------------------------------------------------------------


def seg(value: str) -> str:
    """A path segment, percent-encoded (``/`` too: task ids of loop iterations have one)."""
    return quote(str(value), safe="")


def query(**params: Any) -> dict[str, str]:
    """Query parameters without the ``None`` ones; booleans as ``true``/``false``, lists
    comma-separated."""
    out: dict[str, str] = {}
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, (list, tuple)):
            out[k] = ",".join(str(x) for x in v)
        else:
            out[k] = str(v)
    return out


def body(value: Any) -> bytes:
    return _json.dumps(value, separators=(",", ":")).encode()


JSON_HEADERS = {"content-type": "application/json"}


def json_of(response: httpx.Response) -> Any:
    return response.json()


def text_of(response: httpx.Response) -> str:
    return response.text


def nothing(response: httpx.Response) -> None:
    return None


def model(cls: Any) -> Callable[[httpx.Response], Any]:
    return lambda r: cls.from_dict(r.json())


def page(cls: Any) -> Callable[[httpx.Response], Page[Any]]:
    def parse(r: httpx.Response) -> Page[Any]:
        d = r.json()
        return Page(
            items=[cls.from_dict(x) for x in d.get("items") or []],
            next_cursor=d.get("next_cursor"),
            raw=d,
        )

    return parse


def items(cls: Any) -> Callable[[httpx.Response], list[Any]]:
    return lambda r: [cls.from_dict(x) for x in r.json().get("items") or []]


def get(path: str, parse: Callable[[httpx.Response], T], **params: Any) -> Op[T]:
    return Op("GET", path, parse, params=query(**params))


def post(
    path: str,
    parse: Callable[[httpx.Response], T],
    payload: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    **params: Any,
) -> Op[T]:
    return Op(
        "POST",
        path,
        parse,
        params=query(**params),
        content=None if payload is None else body(payload),
        headers={**(JSON_HEADERS if payload is not None else {}), **(headers or {})},
    )


def without_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


# --- ops -----------------------------------------------------------------------------------


def health() -> Op[Any]:
    return get("/health", json_of)


def raw_request(
    method: str,
    path: str,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Op[Any]:
    def parse(r: httpx.Response) -> Any:
        if not r.content:
            return None
        if "json" in r.headers.get("content-type", ""):
            return r.json()
        return r.text

    return Op(
        method.upper(),
        "/" + path.lstrip("/"),
        parse,
        params=query(**dict(params or {})),
        content=None if json is None else body(json),
        headers={**(JSON_HEADERS if json is not None else {}), **(headers or {})},
    )


# workflows


def workflows_list(limit: int | None, cursor: str | None) -> Op[Page[WorkflowSummary]]:
    return get("/workflows", page(WorkflowSummary), limit=limit, cursor=cursor)


def workflows_get(name: str, version: int | None) -> Op[Workflow]:
    return get(f"/workflows/{seg(name)}", model(Workflow), version=version)


def workflows_import(source: WorkflowSource, activate: str | None) -> Op[Imported]:
    if isinstance(source, os.PathLike):
        path = os.fspath(source)
        with open(path, "rb") as f:
            content = f.read()
        kind = "application/json" if path.endswith(".json") else "application/yaml"
    elif isinstance(source, Mapping):
        content, kind = body(dict(source)), "application/json"
    else:
        content = source.encode() if isinstance(source, str) else bytes(source)
        kind = "application/json" if content.lstrip()[:1] == b"{" else "application/yaml"
    return Op(
        "POST",
        "/workflows",
        model(Imported),
        params=query(activate=activate),
        content=content,
        headers={"content-type": kind},
    )


def workflows_versions(
    name: str, limit: int | None, cursor: str | None
) -> Op[Page[WorkflowVersion]]:
    return get(
        f"/workflows/{seg(name)}/versions", page(WorkflowVersion), limit=limit, cursor=cursor
    )


def workflows_activate(name: str, version: int) -> Op[Workflow]:
    return post(f"/workflows/{seg(name)}/activate", model(Workflow), {"version": version})


def workflows_export(name: str, version: int | None) -> Op[str]:
    return get(f"/workflows/{seg(name)}/export", text_of, version=version)


def workflows_graph(name: str, version: int | None, format: str | None) -> Op[str]:
    return get(f"/workflows/{seg(name)}/graph", text_of, version=version, format=format)


def workflows_delete(name: str) -> Op[DeletedWorkflow]:
    return Op("DELETE", f"/workflows/{seg(name)}", model(DeletedWorkflow))


# executions


def _start_headers(idempotency_key: str | None, traceparent: str | None) -> dict[str, str]:
    h: dict[str, str] = {}
    if idempotency_key is not None:
        h["idempotency-key"] = idempotency_key
    if traceparent is not None:
        h["traceparent"] = traceparent
    return h


def executions_start(
    workflow: str,
    input: Any,
    version: int | None,
    idempotency_key: str | None,
    callback_url: str | None,
    traceparent: str | None,
) -> Op[Accepted]:
    payload = without_none(
        workflow=workflow, input=input, version=version, callback_url=callback_url
    )
    return post(
        "/executions",
        model(Accepted),
        payload,
        headers=_start_headers(idempotency_key, traceparent),
    )


def _execution_or_accepted(r: httpx.Response) -> Execution | Accepted:
    d = r.json()
    return Accepted.from_dict(d) if r.status_code == 202 else Execution.from_dict(d)


def executions_run(
    workflow: str,
    input: Any,
    version: int | None,
    timeout: float | None,
    idempotency_key: str | None,
    callback_url: str | None,
    traceparent: str | None,
) -> Op[Execution | Accepted]:
    payload = without_none(
        input=input,
        version=version,
        timeout_ms=None if timeout is None else int(timeout * 1000),
        callback_url=callback_url,
    )
    op = post(
        f"/workflows/{seg(workflow)}/execute",
        _execution_or_accepted,
        payload,
        headers=_start_headers(idempotency_key, traceparent),
    )
    read = RUN_READ_TIMEOUT if timeout is None else timeout + 30.0
    return Op(op.method, op.path, op.parse, op.params, op.content, op.headers, read)


def executions_get(
    execution_id: str, nodes_limit: int | None, nodes_cursor: str | None
) -> Op[Execution]:
    return get(
        f"/executions/{seg(execution_id)}",
        model(Execution),
        nodes_limit=nodes_limit,
        nodes_cursor=nodes_cursor,
    )


def executions_list(
    status: str | None, workflow: str | None, limit: int | None, cursor: str | None
) -> Op[Page[ExecutionSummary]]:
    return get(
        "/executions",
        page(ExecutionSummary),
        status=status,
        workflow=workflow,
        limit=limit,
        cursor=cursor,
    )


def executions_cancel(execution_id: str, compensate: bool | None) -> Op[Accepted]:
    return post(f"/executions/{seg(execution_id)}/cancel", model(Accepted), compensate=compensate)


def executions_resume(execution_id: str) -> Op[Accepted]:
    return post(f"/executions/{seg(execution_id)}/resume", model(Accepted))


def _stream(path: str, last_event_id: str | int | None) -> Op[None]:
    headers = {"accept": "text/event-stream", "cache-control": "no-cache"}
    if last_event_id is not None:
        headers["last-event-id"] = str(last_event_id)
    return Op("GET", path, nothing, headers=headers, read_timeout=STREAM_READ_TIMEOUT)


def executions_events(execution_id: str, last_event_id: str | int | None) -> Op[None]:
    return _stream(f"/executions/{seg(execution_id)}/events", last_event_id)


def wait_is_over(e: Execution, until_human: bool) -> bool:
    """Whether ``executions.wait`` returns this state."""
    return e.is_terminal or (until_human and e.is_waiting_for_human)


def poll_delays(first: float, most: float) -> Any:
    """Delays between polls: from ``first``, growing by half each time, up to ``most``."""
    d = first
    while True:
        yield d
        d = min(most, d * 1.5)


# tasks


def tasks_list(
    status: str | None,
    assignee: str | None,
    skills: Sequence[str] | None,
    limit: int | None,
    cursor: str | None,
) -> Op[Page[Task]]:
    return get(
        "/tasks",
        page(Task),
        status=status,
        assignee=assignee,
        skills=list(skills) if skills is not None else None,
        limit=limit,
        cursor=cursor,
    )


def tasks_answer(task_id: str, answer: Any) -> Op[TaskAnswered]:
    return post(f"/tasks/{seg(task_id)}/answer", model(TaskAnswered), {"answer": answer})


# conversations


def conversations_create(
    customer_id: str,
    channel: str,
    workflow: str | None,
    version: int | None,
    metadata: Any,
    callback_url: str | None,
) -> Op[Conversation]:
    payload = without_none(
        customer_id=customer_id,
        channel=channel,
        workflow=workflow,
        version=version,
        metadata=metadata,
        callback_url=callback_url,
    )
    return post("/conversations", model(Conversation), payload)


def conversations_list(
    status: str | None,
    customer_id: str | None,
    agent: str | None,
    limit: int | None,
    cursor: str | None,
) -> Op[Page[Conversation]]:
    return get(
        "/conversations",
        page(Conversation),
        status=status,
        customer_id=customer_id,
        agent=agent,
        limit=limit,
        cursor=cursor,
    )


def conversations_get(conversation_id: str) -> Op[Conversation]:
    return get(f"/conversations/{seg(conversation_id)}", model(Conversation))


def conversations_send(
    conversation_id: str, content: str, traceparent: str | None
) -> Op[MessagePosted]:
    return post(
        f"/conversations/{seg(conversation_id)}/messages",
        model(MessagePosted),
        {"content": content},
        headers=_start_headers(None, traceparent),
    )


def conversations_messages(
    conversation_id: str, after: int | None, limit: int | None
) -> Op[list[Message]]:
    return get(
        f"/conversations/{seg(conversation_id)}/messages",
        items(Message),
        after=after,
        limit=limit,
    )


def conversations_transitions(conversation_id: str) -> Op[list[Transition]]:
    return get(f"/conversations/{seg(conversation_id)}/transitions", items(Transition))


def conversations_stream(conversation_id: str, last_event_id: str | int | None) -> Op[None]:
    return _stream(f"/conversations/{seg(conversation_id)}/stream", last_event_id)


def conversations_act(conversation_id: str, action: str, payload: dict[str, Any]) -> Op[Acted]:
    return post(f"/conversations/{seg(conversation_id)}/{action}", model(Acted), payload)


def conversations_reply(conversation_id: str, agent: str, content: str) -> Op[Message]:
    return post(
        f"/conversations/{seg(conversation_id)}/reply",
        model(Message),
        {"agent": agent, "content": content},
    )


def conversations_transfer(
    conversation_id: str,
    by: str,
    to: str | None,
    skills: Sequence[str] | None,
    reason: str | None,
) -> Op[Acted]:
    payload = without_none(
        by=by, to=to, skills=list(skills) if skills is not None else None, reason=reason
    )
    return conversations_act(conversation_id, "transfer", payload)


# the human queue


def hil_agents(limit: int | None, cursor: str | None) -> Op[Page[HumanAgent]]:
    return get("/hil/agents", page(HumanAgent), limit=limit, cursor=cursor)


def hil_put_agent(
    agent_id: str,
    name: str,
    email: str,
    skills: Sequence[str] | None,
    capacity: int | None,
    status: str | None,
) -> Op[HumanAgent]:
    payload = without_none(
        name=name,
        email=email,
        skills=list(skills) if skills is not None else None,
        capacity=capacity,
        status=status,
    )
    return Op(
        "PUT",
        f"/hil/agents/{seg(agent_id)}",
        model(HumanAgent),
        content=body(payload),
        headers=JSON_HEADERS,
    )


def hil_set_status(agent_id: str, status: str) -> Op[HumanAgent]:
    return post(f"/hil/agents/{seg(agent_id)}/status", model(HumanAgent), {"status": status})


def hil_inbox(agent_id: str) -> Op[list[WorkItem]]:
    return get(f"/hil/agents/{seg(agent_id)}/inbox", items(WorkItem))


def hil_queue() -> Op[list[WorkItem]]:
    return get("/hil/queue", items(WorkItem))


def hil_claim_task(task_id: str, agent: str) -> Op[Acted]:
    return post(f"/hil/tasks/{seg(task_id)}/claim", model(Acted), {"agent": agent})


def hil_stats(since: str | None, until: str | None) -> Op[Stats]:
    return get("/hil/stats", model(Stats), since=since, until=until)


# knowledge base


def kb_collections() -> Op[list[Collection]]:
    return get("/kb/collections", items(Collection))


def kb_delete_collection(collection: str) -> Op[None]:
    return Op("DELETE", f"/kb/collections/{seg(collection)}", nothing)


def kb_set_retention(collection: str, max_age_ms: int | None) -> Op[Retention]:
    return Op(
        "PUT",
        f"/kb/collections/{seg(collection)}/retention",
        model(Retention),
        content=body({"max_age_ms": max_age_ms}),
        headers=JSON_HEADERS,
    )


def kb_documents(collection: str) -> Op[list[Document]]:
    return get(f"/kb/collections/{seg(collection)}/documents", items(Document))


def kb_add(
    collection: str,
    source: str,
    content: str,
    format: str | None,
    metadata: Mapping[str, str] | None,
) -> Op[AddedDocument]:
    payload = without_none(
        source=source,
        content=content,
        format=format,
        metadata=dict(metadata) if metadata is not None else None,
    )
    return post(f"/kb/collections/{seg(collection)}/documents", model(AddedDocument), payload)


def kb_get_document(document_id: str) -> Op[Document]:
    return get(f"/kb/documents/{seg(document_id)}", model(Document))


def kb_delete_document(document_id: str) -> Op[None]:
    return Op("DELETE", f"/kb/documents/{seg(document_id)}", nothing)


def kb_search(
    collection: str,
    query_text: str,
    top_k: int | None,
    min_score: float | None,
    filter: Mapping[str, str] | None,
    mode: str | None,
) -> Op[SearchResults]:
    payload = without_none(
        query=query_text,
        top_k=top_k,
        min_score=min_score,
        filter=dict(filter) if filter is not None else None,
        mode=mode,
    )
    return post(f"/kb/collections/{seg(collection)}/search", model(SearchResults), payload)


# --- client configuration ---------------------------------------------------------------

API_PREFIX = "/api/v1"


def base_url_of(url: str) -> str:
    """The API's root: ``http://host:8080`` and ``http://host:8080/api/v1`` both give the
    latter."""
    url = url.rstrip("/")
    return url if url.endswith(API_PREFIX) else url + API_PREFIX


def headers_for(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    from . import __version__

    h = {"user-agent": f"hilo-client-python/{__version__}", "accept": "application/json"}
    if api_key:
        h["authorization"] = f"Bearer {api_key}"
    h.update(extra or {})
    return h


def timeout_of(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    return timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)


def client_repr(cls: str, base_url: str) -> str:
    return f"{cls}(base_url={base_url!r})"


def should_reconnect(error: BaseException) -> bool:
    """Whether a broken event stream is worth reconnecting (the network, not an answer)."""
    return isinstance(error, httpx.TransportError)
