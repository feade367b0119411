"""client.conversations and client.hil against a real server (tenant `hil`)."""

from __future__ import annotations

import pytest
from conftest import Server
from helpers import unique

from hilo_client import BadRequest, Client, Conflict, NotFound


def handed_over(client: Client, conversation_id: str) -> str:
    """Asks for a person; the agent routing gave the conversation to."""
    posted = client.conversations.send(conversation_id, "please, talk to a human")
    assert posted.conversation.status == "pending_human"
    assert posted.replies and posted.replies[0].sender == "system"
    agent = client.conversations.get(conversation_id).assigned_agent
    assert agent is not None
    return agent


def test_a_conversation_from_the_ai_to_people_and_back(server: Server) -> None:
    with server.client("hil") as client:
        rosa = client.hil.put_agent(
            "rosa", name="Rosa", email="rosa@example.com", capacity=3, status="online"
        )
        assert (rosa.status, rosa.load) == ("online", 0)
        client.hil.put_agent("bob", name="Bob", email="bob@example.com", capacity=3)
        assert client.hil.set_status("bob", "away").status == "away"

        customer = unique("cust")
        conv = client.conversations.create(customer, workflow="py_chat", metadata={"plan": "gold"})
        assert (conv.status, conv.channel, conv.workflow, conv.metadata) == (
            "new",
            "api",
            "py_chat",
            {"plan": "gold"},
        )
        posted = client.conversations.send(conv.id, "hello")
        assert [m.content for m in posted.replies] == ["echo: hello"]
        assert posted.message.sender == "user" and posted.execution_id
        assert posted.conversation.status == "ai_processing"

        # To a person: routed to Rosa (the only one online), who claims, replies, releases.
        assert handed_over(client, conv.id) == "rosa"
        assert any(i.key == conv.id and i.kind == "conversation" for i in client.hil.inbox("rosa"))
        claimed = client.conversations.claim(conv.id, "rosa")
        assert claimed.conversation is not None and claimed.conversation.status == "human_active"
        reply = client.conversations.reply(conv.id, "rosa", "Rosa here, let me look.")
        assert (reply.sender, reply.author) == ("human", "rosa")
        released = client.conversations.release(conv.id, "rosa", note="lunch")
        assert released.conversation is not None and released.conversation.status == "pending_human"
        holder = client.conversations.get(conv.id).assigned_agent or "rosa"
        client.conversations.claim(conv.id, holder)

        # Transferred to Bob once he is online.
        client.hil.set_status("bob", "online")
        moved = client.conversations.transfer(conv.id, holder, to="bob", reason="billing")
        assert moved.conversation is not None and moved.conversation.assigned_agent == "bob"
        if moved.conversation.status != "human_active":
            client.conversations.claim(conv.id, "bob")
        with pytest.raises(BadRequest) as bad:
            client.conversations.transfer(conv.id, "bob")
        assert bad.value.code == "INVALID_TRANSFER"

        # Back to the AI with a note its next run reads.
        back = client.conversations.back_to_ai(conv.id, "bob", note="refund approved")
        assert back.conversation is not None and back.conversation.status == "ai_processing"
        assert (
            client.conversations.send(conv.id, "thanks").replies[0].content
            == "echo: thanks (note: refund approved)"
        )

        # Once more to a person, who resolves it: it ends.
        agent = handed_over(client, conv.id)
        client.conversations.claim(conv.id, agent)
        resolved = client.conversations.resolve(conv.id, agent, note="done")
        assert resolved.conversation is not None and resolved.conversation.status == "resolved"
        assert client.conversations.get(conv.id).ended_at
        with pytest.raises(Conflict) as ended:
            client.conversations.send(conv.id, "one more thing")
        assert ended.value.code == "CONVERSATION_ENDED"

        messages = client.conversations.messages(conv.id)
        assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
        assert [m.seq for m in client.conversations.messages(conv.id, after=3, limit=2)] == [4, 5]
        # The stream of an ended conversation: every message, then its end.
        assert [m.raw for m in client.conversations.stream(conv.id)] == [m.raw for m in messages]
        stream = client.conversations.stream(conv.id)
        head = [next(stream), next(stream), next(stream)]
        stream.close()
        rest = list(client.conversations.stream(conv.id, last_event_id=head[-1].seq))
        assert [m.seq for m in head + rest] == [m.seq for m in messages]

        moves = [(t.from_status, t.to_status) for t in client.conversations.transitions(conv.id)]
        assert moves[0] == ("new", "ai_processing") and moves[-1] == ("human_active", "resolved")
        assert ("human_active", "back_to_ai") in moves

        found = client.conversations.list(customer_id=customer)
        assert [c.id for c in found] == [conv.id] and found.next_cursor is None
        assert conv.id in {c.id for c in client.conversations.iter(status="resolved", page_size=1)}
        assert client.conversations.list(agent="nobody").items == []

        agents = client.hil.agents(limit=1)
        assert len(agents) == 1 and agents.next_cursor
        assert {"rosa", "bob"} <= {a.id for a in client.hil.iter_agents(page_size=1)}
        assert isinstance(client.hil.queue(), list)
        stats = client.hil.stats()
        assert stats.total["conversations"] >= 1 and "py_chat" in stats.workflows
        assert (
            client.hil.stats(since="2000-01-01T00:00:00Z", until="2000-01-02T00:00:00Z").total[
                "conversations"
            ]
            == 0
        )


def test_unknown_conversation_is_not_found(server: Server) -> None:
    with server.client("hil") as client:
        with pytest.raises(NotFound):
            client.conversations.get("no-such-conversation")
        with pytest.raises(NotFound):
            client.conversations.messages("no-such-conversation")
