"""The synchronous client."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx

from . import _ops as ops
from ._sse import SSEDecoder
from .errors import WaitTimeout
from .models import (
    TERMINAL_EVENTS,
    Accepted,
    Acted,
    AddedDocument,
    Collection,
    Conversation,
    DeletedWorkflow,
    Document,
    Execution,
    ExecutionEvent,
    ExecutionSummary,
    HumanAgent,
    Imported,
    Message,
    MessagePosted,
    Page,
    Retention,
    SearchResults,
    ServerSentEvent,
    Stats,
    Task,
    TaskAnswered,
    Transition,
    Workflow,
    WorkflowSummary,
    WorkflowVersion,
    WorkItem,
)

__all__ = ["Client"]

T = TypeVar("T")


def _iterate(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    cursor: str | None = None
    while True:
        p = fetch(cursor)
        yield from p.items
        if not p.next_cursor:
            return
        cursor = p.next_cursor


class Client:
    """A client of hilo's HTTP API (``hilo serve``).

    >>> with Client("http://127.0.0.1:8080", api_key="hilo_…") as hilo:
    ...     run = hilo.executions.run("refund_approval", {"amount": 20})

    ``base_url`` is the server (``/api/v1`` is added unless given). Errors are raised as
    :class:`~hilo_client.HiloError` subclasses; network failures as ``httpx`` exceptions.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = 30.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = ops.base_url_of(base_url)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=ops.headers_for(api_key, headers),
            timeout=ops.timeout_of(timeout),
            transport=transport,
        )
        self.workflows = Workflows(self)
        self.executions = Executions(self)
        self.tasks = Tasks(self)
        self.conversations = Conversations(self)
        self.hil = Hil(self)
        self.kb = KnowledgeBase(self)

    def __repr__(self) -> str:
        return ops.client_repr(type(self).__name__, self.base_url)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connections."""
        self._http.close()

    def health(self) -> Any:
        """``GET /health`` (no key needed): the process is up."""
        return self._send(ops.health())

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Any other call of the API (``path`` under ``/api/v1``): its JSON (or text) answer."""
        return self._send(ops.raw_request(method, path, params, json, headers))

    def _send(self, op: ops.Op[T]) -> T:
        response = self._http.send(op.build(self._http))
        ops.check(response)
        return op.parse(response)

    @contextmanager
    def _open(self, op: ops.Op[Any]) -> Iterator[httpx.Response]:
        response = self._http.send(op.build(self._http), stream=True)
        try:
            if response.status_code >= 400:
                response.read()
                ops.check(response)
            yield response
        finally:
            response.close()

    def _follow(
        self,
        make: Callable[[str | None], ops.Op[Any]],
        last_event_id: str | None,
        reconnect: bool,
        ended: Callable[[ServerSentEvent], bool],
        max_reconnects: int = 5,
    ) -> Generator[ServerSentEvent, None, None]:
        decoder = SSEDecoder(last_event_id)
        failures = 0
        while True:
            try:
                with self._open(make(decoder.last_event_id)) as response:
                    for line in response.iter_lines():
                        event = decoder.feed(line)
                        if event is None:
                            continue
                        failures = 0
                        yield event
                        if ended(event):
                            return
            except httpx.TransportError:
                if not reconnect or failures >= max_reconnects:
                    raise
            else:
                if not reconnect or failures >= max_reconnects:
                    return  # closed before its end: retried (a few times) only if asked
            failures += 1
            decoder = SSEDecoder(decoder.last_event_id)
            time.sleep(min(2.0, 0.1 * 2**failures))


class Workflows:
    """Versioned workflow definitions: ``client.workflows``."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[WorkflowSummary]:
        """A page of the tenant's workflows, by name."""
        return self._c._send(ops.workflows_list(limit, cursor))

    def iter(self, *, page_size: int | None = None) -> Iterator[WorkflowSummary]:
        """Every workflow, following the cursors."""
        return _iterate(lambda c: self.list(limit=page_size, cursor=c))

    def get(self, name: str, version: int | None = None) -> Workflow:
        """A version of a workflow (the active one by default)."""
        return self._c._send(ops.workflows_get(name, version))

    def import_(self, source: ops.WorkflowSource, *, activate: str | None = None) -> Imported:
        """Imports a workflow: YAML or JSON text, a dict, or a file's path.

        ``activate``: ``if_newest`` (the server's default), ``always`` or ``never``.
        """
        return self._c._send(ops.workflows_import(source, activate))

    def versions(
        self, name: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[WorkflowVersion]:
        """A page of a workflow's versions, oldest first."""
        return self._c._send(ops.workflows_versions(name, limit, cursor))

    def iter_versions(
        self, name: str, *, page_size: int | None = None
    ) -> Iterator[WorkflowVersion]:
        """Every version of a workflow, following the cursors."""
        return _iterate(lambda c: self.versions(name, limit=page_size, cursor=c))

    def activate(self, name: str, version: int) -> Workflow:
        """Makes a version the active one."""
        return self._c._send(ops.workflows_activate(name, version))

    def export(self, name: str, version: int | None = None) -> str:
        """The text of a version as it was imported (comments kept)."""
        return self._c._send(ops.workflows_export(name, version))

    def graph(self, name: str, version: int | None = None, *, format: str | None = None) -> str:
        """The workflow as a Mermaid (``format="mermaid"``, default) or DOT graph."""
        return self._c._send(ops.workflows_graph(name, version, format))

    def delete(self, name: str) -> DeletedWorkflow:
        """Deletes every version (409 ``WORKFLOW_IN_USE`` while executions of it run)."""
        return self._c._send(ops.workflows_delete(name))


class Executions:
    """Runs of workflows: ``client.executions``."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def start(
        self,
        workflow: str,
        input: Any = None,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        traceparent: str | None = None,
    ) -> Accepted:
        """Starts an execution and returns at once.

        With ``idempotency_key``, a retry of the same request gets the same execution; the
        same key with another request raises :class:`~hilo_client.Conflict`
        (``IDEMPOTENCY_KEY_REUSED``).
        """
        return self._c._send(
            ops.executions_start(
                workflow, input, version, idempotency_key, callback_url, traceparent
            )
        )

    def run(
        self,
        workflow: str,
        input: Any = None,
        *,
        version: int | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        traceparent: str | None = None,
    ) -> Execution:
        """Runs a workflow and waits up to ``timeout`` seconds (the server's default: 30) for
        it to end or to wait for a person; the execution as it is then (check ``status``)."""
        result = self._c._send(
            ops.executions_run(
                workflow, input, version, timeout, idempotency_key, callback_url, traceparent
            )
        )
        if isinstance(result, Accepted):
            return self.get(result.execution_id)
        return result

    def get(
        self,
        execution_id: str,
        *,
        nodes_limit: int | None = None,
        nodes_cursor: str | None = None,
    ) -> Execution:
        """An execution: status, output, error, nodes (a page), human tasks, costs."""
        return self._c._send(ops.executions_get(execution_id, nodes_limit, nodes_cursor))

    def list(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[ExecutionSummary]:
        """A page of executions, newest first."""
        return self._c._send(ops.executions_list(status, workflow, limit, cursor))

    def iter(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[ExecutionSummary]:
        """Every execution matching the filters, newest first, following the cursors."""
        return _iterate(
            lambda c: self.list(status=status, workflow=workflow, limit=page_size, cursor=c)
        )

    def wait(
        self,
        execution_id: str,
        *,
        timeout: float | None = 60.0,
        until_human: bool = True,
        poll_interval: float = 1.0,
    ) -> Execution:
        """Polls until the execution has ended, or (``until_human``) waits for a person's
        answer; raises :class:`~hilo_client.WaitTimeout` after ``timeout`` seconds.

        After cancelling one that waits for a person, pass ``until_human=False``: it still
        waits for them until the cancel is applied.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for delay in ops.poll_delays(min(0.05, poll_interval), poll_interval):
            e = self.get(execution_id)
            if ops.wait_is_over(e, until_human):
                return e
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"execution {execution_id} is still {e.status}", e)
                delay = min(delay, left)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def events(
        self,
        execution_id: str,
        *,
        last_event_id: str | int | None = None,
        reconnect: bool = True,
    ) -> Generator[ExecutionEvent, None, None]:
        """The execution's events, live, from the start or after ``last_event_id``; ends
        after the terminal event. A broken connection is resumed with ``Last-Event-ID``."""
        start = None if last_event_id is None else str(last_event_id)
        for sse in self._c._follow(
            lambda last: ops.executions_events(execution_id, last),
            start,
            reconnect,
            lambda e: e.event in TERMINAL_EVENTS,
        ):
            yield ExecutionEvent.from_sse(sse)

    def cancel(self, execution_id: str, *, compensate: bool | None = None) -> Accepted:
        """Asks an execution to stop; completed steps are compensated unless
        ``compensate=False``. 409 once it has ended."""
        return self._c._send(ops.executions_cancel(execution_id, compensate))

    def resume(self, execution_id: str) -> Accepted:
        """Continues an execution no process drives (409 if it ended or one does)."""
        return self._c._send(ops.executions_resume(execution_id))


class Tasks:
    """Questions executions ask people: ``client.tasks``."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def list(
        self,
        *,
        status: str | None = None,
        assignee: str | None = None,
        skills: Sequence[str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Task]:
        """A page of tasks, oldest first; ``status``: pending (default), answered, closed, all."""
        return self._c._send(ops.tasks_list(status, assignee, skills, limit, cursor))

    def iter(
        self,
        *,
        status: str | None = None,
        assignee: str | None = None,
        skills: Sequence[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[Task]:
        """Every task matching the filters, following the cursors."""
        return _iterate(
            lambda c: self.list(
                status=status, assignee=assignee, skills=skills, limit=page_size, cursor=c
            )
        )

    def answer(self, task_id: str, answer: Any) -> TaskAnswered:
        """Answers a pending task (checked against its schema: 422); the execution goes on."""
        return self._c._send(ops.tasks_answer(task_id, answer))


class Conversations:
    """Conversations between customers, the AI and human agents: ``client.conversations``."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def create(
        self,
        customer_id: str,
        *,
        channel: str = "api",
        workflow: str | None = None,
        version: int | None = None,
        metadata: Any = None,
        callback_url: str | None = None,
    ) -> Conversation:
        """Starts a conversation (status ``new``) bound to a workflow."""
        return self._c._send(
            ops.conversations_create(
                customer_id, channel, workflow, version, metadata, callback_url
            )
        )

    def list(
        self,
        *,
        status: str | None = None,
        customer_id: str | None = None,
        agent: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Conversation]:
        """A page of conversations, newest first."""
        return self._c._send(ops.conversations_list(status, customer_id, agent, limit, cursor))

    def iter(
        self,
        *,
        status: str | None = None,
        customer_id: str | None = None,
        agent: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Conversation]:
        """Every conversation matching the filters, following the cursors."""
        return _iterate(
            lambda c: self.list(
                status=status, customer_id=customer_id, agent=agent, limit=page_size, cursor=c
            )
        )

    def get(self, conversation_id: str) -> Conversation:
        return self._c._send(ops.conversations_get(conversation_id))

    def send(
        self, conversation_id: str, content: str, *, traceparent: str | None = None
    ) -> MessagePosted:
        """A customer message: while the AI has the conversation, its workflow runs and
        ``replies`` holds the answer; while a human has it, it goes to their inbox."""
        return self._c._send(ops.conversations_send(conversation_id, content, traceparent))

    def messages(
        self, conversation_id: str, *, after: int | None = None, limit: int | None = None
    ) -> builtins.list[Message]:
        """The messages, oldest first (after the sequence number ``after``)."""
        return self._c._send(ops.conversations_messages(conversation_id, after, limit))

    def transitions(self, conversation_id: str) -> builtins.list[Transition]:
        """Every recorded status change (who, when, why), oldest first."""
        return self._c._send(ops.conversations_transitions(conversation_id))

    def stream(
        self,
        conversation_id: str,
        *,
        last_event_id: str | int | None = None,
        reconnect: bool = True,
    ) -> Generator[Message, None, None]:
        """The messages, live (after ``last_event_id``, a sequence number); ends when the
        conversation has ended and every message was sent."""
        start = None if last_event_id is None else str(last_event_id)
        for sse in self._c._follow(
            lambda last: ops.conversations_stream(conversation_id, last),
            start,
            reconnect,
            lambda e: e.event == "end",
        ):
            if sse.event == "message":
                yield Message.from_dict(sse.json())

    def claim(self, conversation_id: str, agent: str) -> Acted:
        """A human agent takes a handed-over conversation (``human_active``)."""
        return self._c._send(ops.conversations_act(conversation_id, "claim", {"agent": agent}))

    def reply(self, conversation_id: str, agent: str, content: str) -> Message:
        """The holding agent's reply to the customer."""
        return self._c._send(ops.conversations_reply(conversation_id, agent, content))

    def resolve(self, conversation_id: str, agent: str, *, note: str | None = None) -> Acted:
        """The holding agent resolves the conversation (it ends)."""
        payload = ops.without_none(agent=agent, note=note)
        return self._c._send(ops.conversations_act(conversation_id, "resolve", payload))

    def back_to_ai(self, conversation_id: str, agent: str, *, note: str | None = None) -> Acted:
        """The holding agent hands the conversation back to the AI, with a note for it."""
        payload = ops.without_none(agent=agent, note=note)
        return self._c._send(ops.conversations_act(conversation_id, "back-to-ai", payload))

    def release(self, conversation_id: str, agent: str, *, note: str | None = None) -> Acted:
        """The holding agent gives the conversation back to the queue."""
        payload = ops.without_none(agent=agent, note=note)
        return self._c._send(ops.conversations_act(conversation_id, "release", payload))

    def transfer(
        self,
        conversation_id: str,
        by: str,
        *,
        to: str | None = None,
        skills: Sequence[str] | None = None,
        reason: str | None = None,
    ) -> Acted:
        """Transfers a conversation to an agent (``to``) or a skill queue (``skills``)."""
        return self._c._send(ops.conversations_transfer(conversation_id, by, to, skills, reason))


class Hil:
    """Human agents, their inboxes, the queue and the KPIs: ``client.hil``."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def agents(self, *, limit: int | None = None, cursor: str | None = None) -> Page[HumanAgent]:
        """A page of human agents, by id, with their loads."""
        return self._c._send(ops.hil_agents(limit, cursor))

    def iter_agents(self, *, page_size: int | None = None) -> Iterator[HumanAgent]:
        return _iterate(lambda c: self.agents(limit=page_size, cursor=c))

    def put_agent(
        self,
        agent_id: str,
        *,
        name: str,
        email: str,
        skills: Sequence[str] | None = None,
        capacity: int | None = None,
        status: str | None = None,
    ) -> HumanAgent:
        """Creates or updates a human agent (``status``: online, away, offline)."""
        return self._c._send(ops.hil_put_agent(agent_id, name, email, skills, capacity, status))

    def set_status(self, agent_id: str, status: str) -> HumanAgent:
        """Sets an agent's status; going online takes queued work at once."""
        return self._c._send(ops.hil_set_status(agent_id, status))

    def inbox(self, agent_id: str) -> list[WorkItem]:
        """What is assigned to or claimed by an agent, in queue order."""
        return self._c._send(ops.hil_inbox(agent_id))

    def queue(self) -> list[WorkItem]:
        """Items no agent holds yet, in queue order."""
        return self._c._send(ops.hil_queue())

    def claim_task(self, task_id: str, agent: str) -> Acted:
        """An agent claims a pending human task; answer it with ``tasks.answer``."""
        return self._c._send(ops.hil_claim_task(task_id, agent))

    def stats(self, *, since: str | None = None, until: str | None = None) -> Stats:
        """KPIs of the conversations created in a period (RFC 3339 times)."""
        return self._c._send(ops.hil_stats(since, until))


class KnowledgeBase:
    """The knowledge base agents search: ``client.kb``."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def collections(self) -> list[Collection]:
        return self._c._send(ops.kb_collections())

    def delete_collection(self, collection: str) -> None:
        """Removes a collection and every document in it."""
        self._c._send(ops.kb_delete_collection(collection))

    def set_retention(self, collection: str, max_age_ms: int | None) -> Retention:
        """Documents not added again within ``max_age_ms`` are deleted (``None``: kept)."""
        return self._c._send(ops.kb_set_retention(collection, max_age_ms))

    def documents(self, collection: str) -> list[Document]:
        """A collection's documents, by source."""
        return self._c._send(ops.kb_documents(collection))

    def add(
        self,
        collection: str,
        source: str,
        content: str,
        *,
        format: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> AddedDocument:
        """Adds (or replaces) a document as text; ``format``: markdown (default), text, html."""
        return self._c._send(ops.kb_add(collection, source, content, format, metadata))

    def get_document(self, document_id: str) -> Document:
        """A document with its chunks (``chunk_list``)."""
        return self._c._send(ops.kb_get_document(document_id))

    def delete_document(self, document_id: str) -> None:
        self._c._send(ops.kb_delete_document(document_id))

    def search(
        self,
        collection: str,
        query: str,
        *,
        top_k: int | None = None,
        min_score: float | None = None,
        filter: Mapping[str, str] | None = None,
        mode: str | None = None,
    ) -> SearchResults:
        """Searches a collection; ``mode``: hybrid (default), text or vector."""
        return self._c._send(ops.kb_search(collection, query, top_k, min_score, filter, mode))
