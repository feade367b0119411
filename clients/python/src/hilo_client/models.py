"""Typed views of hilo's answers. Each keeps the JSON it was read from as ``raw``."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = [
    "TERMINAL_STATUSES",
    "TERMINAL_EVENTS",
    "Page",
    "WorkflowSummary",
    "Workflow",
    "WorkflowVersion",
    "Imported",
    "DeletedWorkflow",
    "Accepted",
    "Node",
    "Task",
    "Execution",
    "ExecutionSummary",
    "TaskAnswered",
    "ServerSentEvent",
    "ExecutionEvent",
    "Conversation",
    "Message",
    "Transition",
    "MessagePosted",
    "Assignment",
    "Acted",
    "HumanAgent",
    "WorkItem",
    "Stats",
    "Collection",
    "Chunk",
    "Document",
    "AddedDocument",
    "Hit",
    "SearchResults",
    "Retention",
]

T = TypeVar("T")

JSON = Any
"""Any JSON value (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` or ``None``)."""

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "compensated", "handed_over", "cancelled"})
"""Execution statuses that do not change any more."""

TERMINAL_EVENTS = frozenset(f"execution_{s}" for s in TERMINAL_STATUSES)
"""The kinds of an execution's last event (``execution_succeeded``, …)."""


def _opt_str(d: Mapping[str, Any], key: str) -> str | None:
    v = d.get(key)
    return v if isinstance(v, str) else None


def _opt_int(d: Mapping[str, Any], key: str) -> int | None:
    v = d.get(key)
    return v if isinstance(v, int) else None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its ``items`` and the cursor of the next page (``None``: the last)."""

    items: list[T]
    next_cursor: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


# --- workflows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowSummary:
    """A line of the workflow list."""

    name: str
    active_version: int
    latest_version: int
    versions: int
    description: str | None
    updated_at: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkflowSummary:
        return cls(
            name=d["name"],
            active_version=d["active_version"],
            latest_version=d["latest_version"],
            versions=d["versions"],
            description=_opt_str(d, "description"),
            updated_at=d["updated_at"],
            raw=d,
        )


@dataclass(frozen=True)
class Workflow:
    """One stored version of a workflow, with its definition (canonical JSON)."""

    name: str
    version: int
    active: bool
    format: str
    created_at: str
    definition: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Workflow:
        return cls(
            name=d["name"],
            version=d["version"],
            active=d["active"],
            format=d["format"],
            created_at=d["created_at"],
            definition=d["definition"],
            raw=d,
        )


@dataclass(frozen=True)
class WorkflowVersion:
    """A version in a workflow's history."""

    version: int
    active: bool
    created_at: str
    nodes: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkflowVersion:
        return cls(
            version=d["version"],
            active=d["active"],
            created_at=d["created_at"],
            nodes=d["nodes"],
            raw=d,
        )


@dataclass(frozen=True)
class Imported:
    """What an import did: ``outcome`` is ``created`` or ``unchanged``."""

    name: str
    version: int
    outcome: str
    active: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Imported:
        return cls(
            name=d["name"], version=d["version"], outcome=d["outcome"], active=d["active"], raw=d
        )


@dataclass(frozen=True)
class DeletedWorkflow:
    name: str
    deleted_versions: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeletedWorkflow:
        return cls(name=d["name"], deleted_versions=d["deleted_versions"], raw=d)


# --- executions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """An execution accepted (or asked to cancel, or resumed) that goes on in the background."""

    execution_id: str
    status: str
    url: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Accepted:
        return cls(execution_id=d["execution_id"], status=d["status"], url=d["url"], raw=d)


@dataclass(frozen=True)
class Node:
    """A node's checkpoint in an execution (``key`` is ``loop[2]/id`` inside loops)."""

    key: str
    node: str
    status: str
    attempts: int
    output: JSON
    error: JSON
    started_at: str | None
    finished_at: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Node:
        return cls(
            key=d["key"],
            node=d["node"],
            status=d["status"],
            attempts=d["attempts"],
            output=d.get("output"),
            error=d.get("error"),
            started_at=_opt_str(d, "started_at"),
            finished_at=_opt_str(d, "finished_at"),
            raw=d,
        )


@dataclass(frozen=True)
class Task:
    """A question an execution asks a person; ``id`` is ``<execution id>.<node key>``."""

    id: str
    execution_id: str
    node_key: str
    prompt: str
    schema: dict[str, Any] | None
    assignee: str | None
    skills: list[str]
    status: str
    answer: JSON
    created_at: str
    deadline: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        return cls(
            id=d["id"],
            execution_id=d["execution_id"],
            node_key=d["node_key"],
            prompt=d["prompt"],
            schema=d.get("schema"),
            assignee=_opt_str(d, "assignee"),
            skills=list(d.get("skills") or []),
            status=d["status"],
            answer=d.get("answer"),
            created_at=d["created_at"],
            deadline=_opt_str(d, "deadline"),
            raw=d,
        )


@dataclass(frozen=True)
class Execution:
    """An execution: status, result, its nodes (a page of them), human tasks and costs."""

    id: str
    workflow: str
    version: int
    status: str
    input: JSON
    output: JSON
    error: JSON
    parent_id: str | None
    trace_id: str
    created_at: str
    updated_at: str
    finished_at: str | None
    nodes: list[Node]
    nodes_next_cursor: str | None
    tasks: list[Task]
    costs: dict[str, Any]
    started_by: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Execution:
        return cls(
            id=d["id"],
            workflow=d["workflow"],
            version=d["version"],
            status=d["status"],
            input=d.get("input"),
            output=d.get("output"),
            error=d.get("error"),
            parent_id=_opt_str(d, "parent_id"),
            trace_id=d.get("trace_id", ""),
            created_at=d["created_at"],
            updated_at=d["updated_at"],
            finished_at=_opt_str(d, "finished_at"),
            nodes=[Node.from_dict(n) for n in d.get("nodes") or []],
            nodes_next_cursor=_opt_str(d, "nodes_next_cursor"),
            tasks=[Task.from_dict(t) for t in d.get("tasks") or []],
            costs=d.get("costs") or {},
            started_by=d.get("started_by"),
            raw=d,
        )

    @property
    def is_terminal(self) -> bool:
        """Whether it has ended (succeeded, failed, compensated, handed over or cancelled)."""
        return self.status in TERMINAL_STATUSES

    @property
    def pending_tasks(self) -> list[Task]:
        """The human tasks it waits for."""
        return [t for t in self.tasks if t.status == "pending"]

    @property
    def is_waiting_for_human(self) -> bool:
        """Whether it is paused on a person's answer."""
        return self.status == "waiting" and bool(self.pending_tasks)

    def node(self, key: str) -> Node | None:
        """The node record with this key (on the page this view holds), if any."""
        return next((n for n in self.nodes if n.key == key), None)


@dataclass(frozen=True)
class ExecutionSummary:
    """A line of the execution list."""

    id: str
    workflow: str
    version: int
    status: str
    created_at: str
    updated_at: str
    finished_at: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExecutionSummary:
        return cls(
            id=d["id"],
            workflow=d["workflow"],
            version=d["version"],
            status=d["status"],
            created_at=d["created_at"],
            updated_at=d["updated_at"],
            finished_at=_opt_str(d, "finished_at"),
            raw=d,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class TaskAnswered:
    execution_id: str
    node_key: str
    status: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskAnswered:
        return cls(
            execution_id=d["execution_id"], node_key=d["node_key"], status=d["status"], raw=d
        )


@dataclass(frozen=True)
class ServerSentEvent:
    """One Server-Sent Event as sent: ``id`` (``None`` when the event had none), name, data."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None

    def json(self) -> JSON:
        return json.loads(self.data)


@dataclass(frozen=True)
class ExecutionEvent:
    """An event of an execution's history (``id`` = ``seq``), or a live ``llm_token`` (no id).

    ``kind`` is ``node_started``, ``node_succeeded``, ``execution_succeeded``, …; ``data``
    is the event's own payload.
    """

    id: int | None
    kind: str
    seq: int | None
    at: str | None
    node: str | None
    attempt: int | None
    data: JSON
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_sse(cls, e: ServerSentEvent) -> ExecutionEvent:
        try:
            body = e.json()
        except ValueError:
            body = e.data
        ident = int(e.id) if e.id is not None and e.id.isdigit() else None
        if isinstance(body, dict) and "seq" in body and "kind" in body:
            return cls(
                id=ident,
                kind=body["kind"],
                seq=_opt_int(body, "seq"),
                at=_opt_str(body, "at"),
                node=_opt_str(body, "node"),
                attempt=_opt_int(body, "attempt"),
                data=body.get("data"),
                raw=body,
            )
        # An `llm_token` ({node, attempt, model, text}) or an `error` ({code, message}).
        node = _opt_str(body, "node") if isinstance(body, dict) else None
        attempt = _opt_int(body, "attempt") if isinstance(body, dict) else None
        return cls(
            id=ident,
            kind=e.event,
            seq=None,
            at=None,
            node=node,
            attempt=attempt,
            data=body,
            raw=body,
        )

    @property
    def is_terminal(self) -> bool:
        """Whether this is the execution's last event (the stream ends after it)."""
        return self.kind in TERMINAL_EVENTS


# --- conversations and the human queue ------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    """A conversation between a customer, the AI and human agents."""

    id: str
    customer_id: str
    channel: str
    status: str
    workflow: str
    version: int | None
    metadata: JSON
    summary: str | None
    assigned_agent: str | None
    handover: dict[str, Any] | None = field(repr=False)
    note: str | None
    current_execution: str | None
    last_seq: int
    created_at: str
    updated_at: str
    ended_at: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Conversation:
        return cls(
            id=d["id"],
            customer_id=d["customer_id"],
            channel=d["channel"],
            status=d["status"],
            workflow=d["workflow"],
            version=_opt_int(d, "version"),
            metadata=d.get("metadata"),
            summary=_opt_str(d, "summary"),
            assigned_agent=_opt_str(d, "assigned_agent"),
            handover=d.get("handover"),
            note=_opt_str(d, "note"),
            current_execution=_opt_str(d, "current_execution"),
            last_seq=d.get("last_seq", 0),
            created_at=d["created_at"],
            updated_at=d["updated_at"],
            ended_at=_opt_str(d, "ended_at"),
            raw=d,
        )


@dataclass(frozen=True)
class Message:
    """A message of a conversation; ``sender`` is user, agent (the AI), human or system."""

    seq: int
    sender: str
    author: str | None
    content: str
    execution_id: str | None
    at: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Message:
        return cls(
            seq=d["seq"],
            sender=d["sender"],
            author=_opt_str(d, "author"),
            content=d["content"],
            execution_id=_opt_str(d, "execution_id"),
            at=d["at"],
            raw=d,
        )


@dataclass(frozen=True)
class Transition:
    """A recorded change of a conversation's status (who, when, why)."""

    from_status: str
    to_status: str
    actor: str
    reason: str
    at: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transition:
        return cls(
            from_status=d["from"],
            to_status=d["to"],
            actor=d["actor"],
            reason=d["reason"],
            at=d["at"],
            raw=d,
        )


@dataclass(frozen=True)
class MessagePosted:
    """A customer message taken: the conversation afterwards and the replies that came."""

    message: Message
    conversation: Conversation
    replies: list[Message]
    execution_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MessagePosted:
        return cls(
            message=Message.from_dict(d["message"]),
            conversation=Conversation.from_dict(d["conversation"]),
            replies=[Message.from_dict(m) for m in d.get("replies") or []],
            execution_id=_opt_str(d, "execution_id"),
            raw=d,
        )


@dataclass(frozen=True)
class Assignment:
    """An item routing gave to an agent: ``kind`` is conversation or task."""

    kind: str
    key: str
    agent: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Assignment:
        return cls(kind=d["kind"], key=d["key"], agent=d["agent"], raw=d)


@dataclass(frozen=True)
class Acted:
    """What a queue operation changed: the conversation afterwards and new assignments."""

    conversation: Conversation | None
    assignments: list[Assignment]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Acted:
        c = d.get("conversation")
        return cls(
            conversation=Conversation.from_dict(c) if isinstance(c, dict) else None,
            assignments=[Assignment.from_dict(a) for a in d.get("assignments") or []],
            raw=d,
        )


@dataclass(frozen=True)
class HumanAgent:
    """A human agent: status online, away or offline; ``load`` = items held now."""

    id: str
    name: str
    email: str
    status: str
    skills: list[str]
    capacity: int
    load: int
    created_at: str
    updated_at: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HumanAgent:
        return cls(
            id=d["id"],
            name=d["name"],
            email=d["email"],
            status=d["status"],
            skills=list(d.get("skills") or []),
            capacity=d["capacity"],
            load=d["load"],
            created_at=d["created_at"],
            updated_at=d["updated_at"],
            raw=d,
        )


@dataclass(frozen=True)
class WorkItem:
    """An item of an inbox or of the queue: a conversation or a task."""

    kind: str
    key: str
    state: str
    agent: str | None
    skills: list[str]
    priority: int
    queued_at: str
    conversation: Conversation | None
    task: Task | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkItem:
        c, t = d.get("conversation"), d.get("task")
        return cls(
            kind=d["kind"],
            key=d["key"],
            state=d["state"],
            agent=_opt_str(d, "agent"),
            skills=list(d.get("skills") or []),
            priority=d.get("priority", 0),
            queued_at=d["queued_at"],
            conversation=Conversation.from_dict(c) if isinstance(c, dict) else None,
            task=Task.from_dict(t) if isinstance(t, dict) else None,
            raw=d,
        )


@dataclass(frozen=True)
class Stats:
    """Humans-in-the-loop KPIs for a period: ``total`` and per workflow (as hilo sends them)."""

    since: str
    until: str
    total: dict[str, Any]
    workflows: dict[str, dict[str, Any]]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stats:
        return cls(
            since=d["since"],
            until=d["until"],
            total=d["total"],
            workflows=d.get("workflows") or {},
            raw=d,
        )


# --- knowledge base ------------------------------------------------------------------------


@dataclass(frozen=True)
class Collection:
    name: str
    documents: int
    chunks: int
    created_at: str
    updated_at: str
    retention_ms: int | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Collection:
        return cls(
            name=d["name"],
            documents=d["documents"],
            chunks=d["chunks"],
            created_at=d["created_at"],
            updated_at=d["updated_at"],
            retention_ms=_opt_int(d, "retention_ms"),
            raw=d,
        )


@dataclass(frozen=True)
class Chunk:
    id: int
    position: int
    heading: str
    text: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Chunk:
        return cls(id=d["id"], position=d["position"], heading=d["heading"], text=d["text"], raw=d)


@dataclass(frozen=True)
class Document:
    """A document of the knowledge base; ``chunk_list`` only from ``kb.get_document``."""

    id: str
    collection: str
    source: str
    format: str
    metadata: dict[str, str]
    content_hash: str
    chunking: str
    embedding_model: str | None
    chunks: int
    bytes: int
    created_at: str
    updated_at: str
    chunk_list: list[Chunk] | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Document:
        cl = d.get("chunk_list")
        return cls(
            id=d["id"],
            collection=d["collection"],
            source=d["source"],
            format=d["format"],
            metadata=dict(d.get("metadata") or {}),
            content_hash=d["content_hash"],
            chunking=d["chunking"],
            embedding_model=_opt_str(d, "embedding_model"),
            chunks=d["chunks"],
            bytes=d["bytes"],
            created_at=d["created_at"],
            updated_at=d["updated_at"],
            chunk_list=[Chunk.from_dict(c) for c in cl] if isinstance(cl, list) else None,
            raw=d,
        )


@dataclass(frozen=True)
class AddedDocument:
    """What adding did: ``outcome`` is ``added``, ``replaced`` or ``unchanged``."""

    outcome: str
    document: Document
    embed_tokens: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AddedDocument:
        return cls(
            outcome=d["outcome"],
            document=Document.from_dict(d["document"]),
            embed_tokens=d.get("embed_tokens", 0),
            raw=d,
        )


@dataclass(frozen=True)
class Hit:
    """A chunk found, with its provenance."""

    score: float
    document_id: str
    collection: str
    source: str
    position: int
    heading: str
    text: str
    metadata: dict[str, str]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hit:
        return cls(
            score=d["score"],
            document_id=d["document_id"],
            collection=d["collection"],
            source=d["source"],
            position=d["position"],
            heading=d["heading"],
            text=d["text"],
            metadata=dict(d.get("metadata") or {}),
            raw=d,
        )


@dataclass(frozen=True)
class SearchResults:
    """Hits of a search; ``ranked_by`` lists the rankings used (``text``, ``vector``)."""

    mode: str
    ranked_by: list[str]
    note: str | None
    model: str | None
    hits: list[Hit]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchResults:
        return cls(
            mode=d["mode"],
            ranked_by=list(d.get("ranked_by") or []),
            note=_opt_str(d, "note"),
            model=_opt_str(d, "model"),
            hits=[Hit.from_dict(h) for h in d.get("hits") or []],
            raw=d,
        )

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)


@dataclass(frozen=True)
class Retention:
    collection: str
    retention_ms: int | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Retention:
        return cls(collection=d["collection"], retention_ms=_opt_int(d, "retention_ms"), raw=d)
