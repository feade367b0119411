"""client.executions against a real server: start, run, get, list, wait, events, cancel, resume."""

from __future__ import annotations

import uuid

import pytest
from helpers import steps_workflow, timer_workflow, unique

from hilo_client import Client, Conflict, Execution, NotFound, ValidationFailed, WaitTimeout

STEPS_OUTPUT = {"n": 3, "doubled": 6, "positive": True}


def test_run_waits_for_the_result(client: Client) -> None:
    e = client.executions.run("py_steps", {"n": 3}, timeout=60)
    assert isinstance(e, Execution)
    assert e.status == "succeeded" and e.is_terminal
    assert e.output == STEPS_OUTPUT
    assert e.started_by == {"kind": "api"}
    assert {n.key for n in e.nodes} == {"start", "check", "double", "done"}
    done = e.node("done")
    assert done is not None and done.status == "succeeded"
    assert len(e.trace_id) == 32


def test_run_past_its_timeout_answers_the_running_execution(client: Client) -> None:
    name = unique("ex_slow")
    client.workflows.import_(timer_workflow(name))
    # A timer is "waiting" (not a person): `run` answers once its timeout has passed.
    e = client.executions.run(name, timeout=0.2)
    assert e.status in {"running", "waiting"} and not e.is_terminal and not e.is_waiting_for_human
    with pytest.raises(WaitTimeout) as caught:
        client.executions.wait(e.id, timeout=0.3)
    assert caught.value.execution.id == e.id
    # (The process sleeping on the timer applies a cancel at its next heartbeat, some
    # seconds later: not waited for here.)
    assert client.executions.cancel(e.id, compensate=False).status == "cancelling"


def test_start_then_wait_then_get(client: Client) -> None:
    accepted = client.executions.start("py_steps", {"n": 3}, version=1)
    assert accepted.status == "running"
    assert accepted.url == f"/api/v1/executions/{accepted.execution_id}"
    done = client.executions.wait(accepted.execution_id, timeout=60)
    assert done.status == "succeeded" and done.output == STEPS_OUTPUT
    again = client.executions.get(accepted.execution_id, nodes_limit=2)
    assert len(again.nodes) == 2 and again.nodes_next_cursor
    rest = client.executions.get(
        accepted.execution_id, nodes_limit=2, nodes_cursor=again.nodes_next_cursor
    )
    assert {n.key for n in again.nodes + rest.nodes} == {"start", "check", "double", "done"}


def test_idempotency_key(client: Client) -> None:
    key = str(uuid.uuid4())
    first = client.executions.start("py_steps", {"n": 1}, idempotency_key=key)
    retry = client.executions.start("py_steps", {"n": 1}, idempotency_key=key)
    assert retry.execution_id == first.execution_id
    with pytest.raises(Conflict) as caught:
        client.executions.start("py_steps", {"n": 2}, idempotency_key=key)
    e = caught.value
    assert (e.status, e.code) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert e.details["execution_id"] == first.execution_id

    run_key = str(uuid.uuid4())
    ran = client.executions.run("py_steps", {"n": 3}, idempotency_key=run_key, timeout=60)
    assert (
        client.executions.run("py_steps", {"n": 3}, idempotency_key=run_key, timeout=60).id
        == ran.id
    )


def test_invalid_input_is_validation_failed(client: Client) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client.executions.start("py_steps", {"n": "three"})
    e = caught.value
    assert (e.status, e.code) == (422, "INVALID_INPUT")
    assert any("/n" in err for err in e.details["errors"])
    with pytest.raises(ValidationFailed):
        client.executions.run("py_steps", {})


def test_unknown_execution_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as caught:
        client.executions.get("no-such-execution")
    assert caught.value.code == "EXECUTION_NOT_FOUND"
    assert caught.value.instance == "/api/v1/executions/no-such-execution"
    assert caught.value.type == "urn:hilo:problem:EXECUTION_NOT_FOUND"


def test_list_pages_filters_and_iter(client: Client) -> None:
    name = unique("ex_page")
    client.workflows.import_(steps_workflow(name))
    ids = [client.executions.start(name, {"n": i}).execution_id for i in range(5)]
    for i in ids:
        client.executions.wait(i, timeout=60)
    first = client.executions.list(workflow=name, limit=2)
    assert len(first) == 2 and first.next_cursor
    pages = [first]
    while pages[-1].next_cursor:
        pages.append(client.executions.list(workflow=name, limit=2, cursor=pages[-1].next_cursor))
    seen = [e.id for p in pages for e in p]
    assert len(pages) == 3 and sorted(seen) == sorted(ids) and len(set(seen)) == 5
    assert seen == list(reversed(ids))  # newest first
    assert [e.id for e in client.executions.iter(workflow=name, page_size=3)] == seen
    succeeded = list(client.executions.iter(workflow=name, status="succeeded"))
    assert len(succeeded) == 5 and all(e.is_terminal and e.workflow == name for e in succeeded)
    assert client.executions.list(workflow=name, status="failed").items == []


def test_events_and_resume_by_last_event_id(client: Client) -> None:
    run = client.executions.run("py_steps", {"n": 3}, timeout=60)
    everything = list(client.executions.events(run.id))
    kinds = [e.kind for e in everything]
    assert kinds[0] == "execution_started" and kinds[-1] == "execution_succeeded"
    assert everything[-1].is_terminal and not everything[0].is_terminal
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
    assert all(e.id == e.seq for e in everything)
    assert {e.node for e in everything if e.kind == "node_succeeded"} == {
        "start",
        "check",
        "double",
        "done",
    }

    # Read two, drop the connection, reconnect after the last one read: exactly the rest.
    stream = client.executions.events(run.id)
    head = [next(stream), next(stream)]
    stream.close()
    rest = list(client.executions.events(run.id, last_event_id=head[-1].id))
    assert [e.seq for e in head + rest] == [e.seq for e in everything]
    assert [e.raw for e in head + rest] == [e.raw for e in everything]
    # The same, as a string id.
    assert [
        e.seq for e in client.executions.events(run.id, last_event_id=str(len(everything) - 1))
    ] == [len(everything)]


def test_events_live_through_a_human_answer(client: Client) -> None:
    run = client.executions.run("py_approval", {"amount": 7}, timeout=60)
    assert run.is_waiting_for_human
    kinds = []
    for event in client.executions.events(run.id):
        kinds.append(event.kind)
        if event.kind == "execution_waiting":
            # The stream is open and idle: answer, and it goes on live.
            client.tasks.answer(run.pending_tasks[0].id, {"approve": False})
    assert kinds[:3] == ["execution_started", "node_waiting", "execution_waiting"]
    assert "human_answered" in kinds and kinds[-1] == "execution_succeeded"
    assert client.executions.get(run.id).output == {"approved": False, "amount": 7}


def test_wait_for_a_person_then_answer(client: Client) -> None:
    started = client.executions.start("py_approval", {"amount": 250})
    waiting = client.executions.wait(started.execution_id, timeout=60)
    assert waiting.status == "waiting" and waiting.is_waiting_for_human
    [task] = waiting.pending_tasks
    assert task.id == f"{started.execution_id}.review" and task.skills == ["py_refunds"]
    assert task.prompt == "Approve a refund of 250?"
    with pytest.raises(WaitTimeout) as caught:
        client.executions.wait(started.execution_id, timeout=0.3, until_human=False)
    assert caught.value.execution.status == "waiting"
    answered = client.tasks.answer(task.id, {"approve": True, "note": "ok"})
    assert (answered.execution_id, answered.node_key, answered.status) == (
        started.execution_id,
        "review",
        "answered",
    )
    done = client.executions.wait(started.execution_id, timeout=60)
    assert done.status == "succeeded" and done.output == {"approved": True, "amount": 250}
    assert done.tasks[0].status == "answered" and done.tasks[0].answer == {
        "approve": True,
        "note": "ok",
    }


def test_cancel(client: Client) -> None:
    started = client.executions.start("py_approval", {"amount": 99})
    assert client.executions.wait(started.execution_id, timeout=60).is_waiting_for_human
    cancelling = client.executions.cancel(started.execution_id)
    assert (cancelling.execution_id, cancelling.status) == (started.execution_id, "cancelling")
    cancelled = client.executions.wait(started.execution_id, timeout=60, until_human=False)
    assert cancelled.status == "cancelled" and cancelled.finished_at
    events = list(client.executions.events(started.execution_id))
    assert events[-1].kind == "execution_cancelled"
    with pytest.raises(Conflict) as caught:
        client.executions.cancel(started.execution_id)
    assert caught.value.code == "EXECUTION_STATE"


def test_resume(client: Client) -> None:
    waiting = client.executions.run("py_approval", {"amount": 1}, timeout=60)
    assert waiting.status == "waiting"
    resumed = client.executions.resume(waiting.id)
    assert (resumed.execution_id, resumed.status) == (waiting.id, "waiting")
    client.tasks.answer(waiting.pending_tasks[0].id, {"approve": True})
    assert client.executions.wait(waiting.id, timeout=60).status == "succeeded"
    with pytest.raises(Conflict) as caught:
        client.executions.resume(waiting.id)
    assert caught.value.code == "EXECUTION_STATE"
