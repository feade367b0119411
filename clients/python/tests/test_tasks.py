"""client.tasks (and the human queue's task claim) against a real server."""

from __future__ import annotations

import pytest
from conftest import Server

from hilo_client import Conflict, NotFound, ValidationFailed


def test_list_iter_claim_and_answer(server: Server) -> None:
    # Tenant `hil`: its queue and agents are this test's and the conversation tests'.
    with server.client("hil") as client:
        runs = [
            client.executions.run("py_approval", {"amount": 10 + i}, timeout=60) for i in range(3)
        ]
        assert all(r.is_waiting_for_human for r in runs)
        ids = [r.pending_tasks[0].id for r in runs]

        first = client.tasks.list(skills=["py_refunds"], limit=1)
        assert len(first) == 1 and first.next_cursor
        second = client.tasks.list(skills=["py_refunds"], limit=1, cursor=first.next_cursor)
        assert second.items[0].id != first.items[0].id
        pending = [
            t.id for t in client.tasks.iter(status="pending", skills=["py_refunds"], page_size=2)
        ]
        assert set(ids) <= set(pending) and len(pending) == len(set(pending))
        assert client.tasks.list(skills=["no_such_skill"]).items == []
        assert client.tasks.list(assignee="nobody").items == []

        # A reviewer with the skill comes online: the queue's tasks go to them; they claim one.
        reviewer = client.hil.put_agent(
            "task-reviewer",
            name="Tess",
            email="tess@example.com",
            skills=["py_refunds"],
            capacity=10,
            status="online",
        )
        assert reviewer.skills == ["py_refunds"] and reviewer.capacity == 10
        inbox = client.hil.inbox("task-reviewer")
        assert set(ids) <= {i.key for i in inbox if i.kind == "task"}
        item = next(i for i in inbox if i.key == ids[0])
        assert item.task is not None and item.task.prompt == "Approve a refund of 10?"
        claimed = client.hil.claim_task(ids[0], "task-reviewer")
        assert claimed.conversation is None
        assert any(
            i.key == ids[0] and i.state == "active" for i in client.hil.inbox("task-reviewer")
        )

        with pytest.raises(ValidationFailed) as invalid:
            client.tasks.answer(ids[0], {"approve": "yes"})
        assert invalid.value.code == "INVALID_ANSWER"
        for i, task_id in enumerate(ids):
            answered = client.tasks.answer(task_id, {"approve": i % 2 == 0})
            assert answered.status == "answered"
        with pytest.raises(Conflict) as again:
            client.tasks.answer(ids[0], {"approve": True})
        assert again.value.code == "TASK_NOT_PENDING"
        outputs = [client.executions.wait(r.id, timeout=60).output for r in runs]
        assert outputs == [{"approved": i % 2 == 0, "amount": 10 + i} for i in range(3)]
        answered_ids = {t.id for t in client.tasks.iter(status="answered")}
        assert set(ids) <= answered_ids
        assert not set(ids) & {t.id for t in client.tasks.iter()}  # pending by default

        with pytest.raises(NotFound) as missing:
            client.tasks.answer("no-such-execution.review", {"approve": True})
        assert missing.value.code == "TASK_NOT_FOUND"
