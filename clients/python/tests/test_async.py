"""AsyncClient against a real server (tenant `aio`): every method at least once."""

from __future__ import annotations

import uuid
from contextlib import aclosing

import pytest
from conftest import Server
from helpers import steps_workflow, timer_workflow, unique

from hilo_client import AsyncClient, Conflict, NotFound, Unauthorized, ValidationFailed, WaitTimeout


async def test_workflows(aclient: AsyncClient) -> None:
    name = unique("aio_wf")
    assert (
        await aclient.workflows.import_(steps_workflow(name, 1, comment="v1"))
    ).outcome == "created"
    await aclient.workflows.import_(steps_workflow(name, 2, comment="v2"), activate="never")
    assert (await aclient.workflows.get(name)).version == 1
    assert (await aclient.workflows.get(name, version=2)).active is False
    page = await aclient.workflows.versions(name, limit=1)
    assert [v.version for v in page] == [1] and page.next_cursor
    assert [v.version async for v in aclient.workflows.iter_versions(name, page_size=1)] == [1, 2]
    assert (await aclient.workflows.activate(name, 2)).active
    assert (await aclient.workflows.export(name)).startswith("# v2")
    assert "flowchart" in await aclient.workflows.graph(name)
    listed = await aclient.workflows.list(limit=1)
    assert len(listed) == 1 and listed.next_cursor
    assert name in [w.name async for w in aclient.workflows.iter(page_size=2)]
    assert (await aclient.workflows.delete(name)).deleted_versions == 2
    with pytest.raises(NotFound):
        await aclient.workflows.get(name)


async def test_executions(aclient: AsyncClient) -> None:
    ran = await aclient.executions.run("py_steps", {"n": 3}, timeout=60)
    assert ran.status == "succeeded" and ran.output == {"n": 3, "doubled": 6, "positive": True}

    key = str(uuid.uuid4())
    started = await aclient.executions.start("py_steps", {"n": 4}, idempotency_key=key)
    assert (
        await aclient.executions.start("py_steps", {"n": 4}, idempotency_key=key)
    ).execution_id == started.execution_id
    with pytest.raises(Conflict) as reused:
        await aclient.executions.start("py_steps", {"n": 5}, idempotency_key=key)
    assert reused.value.code == "IDEMPOTENCY_KEY_REUSED"
    with pytest.raises(ValidationFailed):
        await aclient.executions.start("py_steps", {"n": "four"})
    done = await aclient.executions.wait(started.execution_id, timeout=60)
    assert done.output["doubled"] == 8
    assert (await aclient.executions.get(started.execution_id)).status == "succeeded"

    everything = [e async for e in aclient.executions.events(ran.id)]
    assert everything[-1].kind == "execution_succeeded"
    async with aclosing(aclient.executions.events(ran.id)) as stream:
        head = []
        async for e in stream:
            head.append(e)
            if len(head) == 3:
                break
    rest = [e async for e in aclient.executions.events(ran.id, last_event_id=head[-1].id)]
    assert [e.seq for e in head + rest] == [e.seq for e in everything]

    page = await aclient.executions.list(workflow="py_steps", limit=1)
    assert len(page) == 1 and page.next_cursor
    ids = [e.id async for e in aclient.executions.iter(workflow="py_steps", page_size=1)]
    assert {ran.id, started.execution_id} <= set(ids)

    timer = await aclient.executions.start("py_timer")
    with pytest.raises(WaitTimeout):
        await aclient.executions.wait(timer.execution_id, timeout=0.3)
    human = await aclient.executions.start("py_approval", {"amount": 2})
    assert (await aclient.executions.wait(human.execution_id, timeout=60)).is_waiting_for_human
    assert (
        await aclient.executions.cancel(human.execution_id, compensate=True)
    ).status == "cancelling"
    assert (
        await aclient.executions.wait(human.execution_id, timeout=60, until_human=False)
    ).status == "cancelled"
    with pytest.raises(Conflict):
        await aclient.executions.resume(human.execution_id)


async def test_human_tasks(aclient: AsyncClient) -> None:
    run = await aclient.executions.run("py_approval", {"amount": 500}, timeout=60)
    waiting = await aclient.executions.wait(run.id, timeout=60)
    assert waiting.is_waiting_for_human
    assert (await aclient.executions.resume(run.id)).status == "waiting"
    [task] = waiting.pending_tasks
    page = await aclient.tasks.list(skills=["py_refunds"])
    assert task.id in {t.id for t in page}
    assert task.id in [t.id async for t in aclient.tasks.iter(page_size=1)]
    await aclient.hil.put_agent(
        "aio-reviewer", name="Ada", email="ada@example.com", skills=["py_refunds"], status="online"
    )
    claimed = await aclient.hil.claim_task(task.id, "aio-reviewer")
    assert claimed.conversation is None
    assert (await aclient.tasks.answer(task.id, {"approve": True})).status == "answered"
    assert (await aclient.executions.wait(run.id, timeout=60)).output == {
        "approved": True,
        "amount": 500,
    }


async def test_conversations_and_the_queue(aclient: AsyncClient) -> None:
    await aclient.hil.put_agent("aio-rosa", name="Rosa", email="rosa@example.com", status="online")
    await aclient.hil.put_agent("aio-bob", name="Bob", email="bob@example.com")
    assert (await aclient.hil.set_status("aio-bob", "online")).status == "online"
    agents = await aclient.hil.agents(limit=1)
    assert len(agents) == 1 and agents.next_cursor
    assert {"aio-rosa", "aio-bob"} <= {a.id async for a in aclient.hil.iter_agents(page_size=1)}

    customer = unique("aio_cust")
    conv = await aclient.conversations.create(customer, channel="web", workflow="py_chat")
    assert (await aclient.conversations.send(conv.id, "hi")).replies[0].content == "echo: hi"
    posted = await aclient.conversations.send(conv.id, "talk to a human please")
    assert posted.conversation.status == "pending_human"
    holder = (await aclient.conversations.get(conv.id)).assigned_agent
    assert holder in {"aio-rosa", "aio-bob"}
    assert conv.id in {i.key for i in await aclient.hil.inbox(holder)}
    assert isinstance(await aclient.hil.queue(), list)
    await aclient.conversations.claim(conv.id, holder)
    assert (
        await aclient.conversations.reply(conv.id, holder, "hello from a human")
    ).sender == "human"
    other = "aio-bob" if holder == "aio-rosa" else "aio-rosa"
    moved = await aclient.conversations.transfer(conv.id, holder, to=other)
    assert moved.conversation is not None and moved.conversation.assigned_agent == other
    if moved.conversation.status != "human_active":
        await aclient.conversations.claim(conv.id, other)
    released = await aclient.conversations.release(conv.id, other)
    assert released.conversation is not None and released.conversation.status == "pending_human"
    holder = (await aclient.conversations.get(conv.id)).assigned_agent or other
    await aclient.conversations.claim(conv.id, holder)
    back = await aclient.conversations.back_to_ai(conv.id, holder, note="sorted")
    assert back.conversation is not None and back.conversation.status == "ai_processing"
    await aclient.conversations.send(conv.id, "talk to a human again")
    holder = (await aclient.conversations.get(conv.id)).assigned_agent
    assert holder is not None
    await aclient.conversations.claim(conv.id, holder)
    assert (await aclient.conversations.resolve(conv.id, holder)).conversation.status == "resolved"  # type: ignore[union-attr]

    messages = await aclient.conversations.messages(conv.id)
    streamed = [m async for m in aclient.conversations.stream(conv.id)]
    assert [m.seq for m in streamed] == [m.seq for m in messages]
    resumed = [m async for m in aclient.conversations.stream(conv.id, last_event_id=2)]
    assert [m.seq for m in resumed] == [m.seq for m in messages][2:]
    transitions = await aclient.conversations.transitions(conv.id)
    assert transitions[-1].to_status == "resolved"
    assert [c.id for c in await aclient.conversations.list(customer_id=customer)] == [conv.id]
    assert conv.id in [
        c.id async for c in aclient.conversations.iter(customer_id=customer, page_size=1)
    ]
    assert (await aclient.hil.stats()).total["conversations"] >= 1


async def test_knowledge_base(aclient: AsyncClient) -> None:
    coll = unique("aio_kb")
    added = await aclient.kb.add(
        coll, "a.md", "# A\n\nAsync clients await answers.\n", metadata={"k": "v"}
    )
    assert added.outcome == "added"
    assert [d.source for d in await aclient.kb.documents(coll)] == ["a.md"]
    assert (await aclient.kb.get_document(added.document.id)).chunk_list
    hits = (await aclient.kb.search(coll, "await", filter={"k": "v"}, top_k=1, mode="text")).hits
    assert [h.source for h in hits] == ["a.md"]
    assert coll in {c.name for c in await aclient.kb.collections()}
    assert (await aclient.kb.set_retention(coll, 60_000)).retention_ms == 60_000
    await aclient.kb.delete_document(added.document.id)
    with pytest.raises(NotFound):
        await aclient.kb.get_document(added.document.id)
    await aclient.kb.delete_collection(coll)
    assert coll not in {c.name for c in await aclient.kb.collections()}


async def test_errors_health_and_request(server: Server, aclient: AsyncClient) -> None:
    assert (await aclient.health())["status"] == "ok"
    assert (await aclient.request("GET", "/triggers")) == {"triggers": []}
    async with AsyncClient(server.url, "hilo_wrong") as bad:
        with pytest.raises(Unauthorized) as caught:
            await bad.executions.list()
    assert caught.value.code == "UNAUTHORIZED"
    with pytest.raises(NotFound) as missing:
        await aclient.executions.get("no-such-execution")
    assert missing.value.code == "EXECUTION_NOT_FOUND"
    # Another tenant's execution is not there.
    run = await aclient.executions.start("py_steps", {"n": 1})
    async with server.async_client("other") as other:
        with pytest.raises(NotFound):
            await other.executions.get(run.execution_id)


async def test_timer_dict_import(aclient: AsyncClient) -> None:
    name = unique("aio_timer")
    assert (await aclient.workflows.import_(timer_workflow(name))).outcome == "created"
    started = await aclient.executions.start(name)
    assert not (await aclient.executions.get(started.execution_id)).is_terminal
    assert (
        await aclient.executions.cancel(started.execution_id, compensate=False)
    ).status == "cancelling"
