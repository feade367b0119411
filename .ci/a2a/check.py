"""The official A2A client (a2a-sdk, PyPI) against a running `hilo serve`.

Asserts: the public agent card is fetched and parsed (a bearer scheme, no skill); acme's card
lists its three skills; a message runs `greet` and the completed task is read back (GetTask,
ListTasks), through 1.0's methods and through 0.3's (the SDK's compat transport); a streamed task's events end completed; `approve` goes to input-required with the
node's prompt, a bad answer is refused with hilo's code and the task keeps asking, a second
message answers it and it completes; `slow` is cancelled; globex's key sees no skill, gets
"task not found" for acme's task and lists none of acme's tasks.
"""

import asyncio
import os
import sys

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.client.errors import A2AClientError
from a2a.helpers.proto_helpers import get_data_parts, get_text_parts, new_data_message
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Role,
    SendMessageRequest,
    TaskState,
)
from a2a.utils.errors import A2AError, InvalidParamsError, TaskNotFoundError

URL = os.environ["HILO_URL"]
KEY_ACME = os.environ["KEY_ACME"]
KEY_GLOBEX = os.environ["KEY_GLOBEX"]
failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f": {detail}" if detail and not ok else ""))
    if not ok:
        failures.append(what)


def message(data, skill=None, task_id=None):
    m = new_data_message(data, task_id=task_id, role=Role.ROLE_USER)
    if skill:
        m.metadata.update({"skill": skill})
    return m


async def client_for(key, streaming):
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
    card = await A2ACardResolver(http, URL).get_agent_card()
    factory = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming))
    return factory.create(card), card, http


async def send(client, msg, **config):
    """The events of one SendMessage (one, a task, when not streaming)."""
    req = SendMessageRequest(message=msg)
    for k, v in config.items():
        setattr(req.configuration, k, v)
    return [e async for e in client.send_message(req)]


async def main():
    async with httpx.AsyncClient() as anon:
        public = await A2ACardResolver(anon, URL).get_agent_card()
    check("the public card parses", public.name == "hilo", str(public))
    check("the public card lists no skill", len(public.skills) == 0, str(public.skills))
    scheme = public.security_schemes["bearer"].http_auth_security_scheme.scheme
    check("the public card names the bearer scheme", scheme.lower() == "bearer", scheme)
    iface = public.supported_interfaces[0]
    check(
        "the card's interface is JSON-RPC at /a2a",
        iface.protocol_binding == "JSONRPC" and iface.url.endswith("/a2a"),
        str(iface),
    )

    acme, card, http_acme = await client_for(KEY_ACME, streaming=False)
    skills = sorted(s.id for s in card.skills)
    check("acme's card lists its skills", skills == ["approve", "greet", "slow"], str(skills))
    check("the card says streaming", card.capabilities.streaming)

    # A message, the completed task, read back.
    events = await send(acme, message({"name": "Ada"}, skill="greet"))
    task = events[-1].task
    check("greet completes", task.status.state == TaskState.TASK_STATE_COMPLETED, str(task))
    out = get_data_parts(task.artifacts[0].parts)[0] if task.artifacts else {}
    check("greet's output is the artifact", out.get("name") == "Ada", str(out))
    got = await acme.get_task(GetTaskRequest(id=task.id))
    check("GetTask reads it", got.status.state == TaskState.TASK_STATE_COMPLETED, str(got))
    listed = await acme.list_tasks(ListTasksRequest())
    check("ListTasks lists it", task.id in [t.id for t in listed.tasks], str(listed))

    # A streamed task.
    streaming, _, http_stream = await client_for(KEY_ACME, streaming=True)
    events = await send(streaming, message({"name": "Bo"}, skill="greet"))
    kinds = [e.WhichOneof("payload") for e in events]
    check("the stream begins with the task", kinds[0] == "task", str(kinds))
    last = events[-1]
    check(
        "the stream ends completed",
        last.WhichOneof("payload") == "status_update"
        and last.status_update.status.state == TaskState.TASK_STATE_COMPLETED,
        str(events),
    )
    arts = [e.artifact_update for e in events if e.WhichOneof("payload") == "artifact_update"]
    check(
        "the stream carries the output",
        bool(arts) and get_data_parts(arts[0].artifact.parts)[0].get("name") == "Bo",
        str(arts),
    )

    # Input required, a bad answer, then the answer.
    events = await send(acme, message({"order": "A-7"}, skill="approve"))
    task = events[-1].task
    check(
        "approve asks for input",
        task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED,
        str(task),
    )
    prompt = get_text_parts(task.status.message.parts)
    check("the status carries the prompt", prompt == ["Refund order A-7?"], str(prompt))
    try:
        await send(acme, message({"approve": "maybe"}, task_id=task.id))
        check("a bad answer is refused", False, "it was accepted")
    except InvalidParamsError as e:
        check(
            "a bad answer is refused with hilo's code",
            (e.data or {}).get("code") == "INVALID_ANSWER",
            repr(e),
        )
    still = await acme.get_task(GetTaskRequest(id=task.id))
    check(
        "the task still asks",
        still.status.state == TaskState.TASK_STATE_INPUT_REQUIRED,
        str(still),
    )
    events = await send(acme, message({"approve": True}, task_id=task.id))
    done = events[-1].task
    check("the answer completes it", done.status.state == TaskState.TASK_STATE_COMPLETED, str(done))
    out = get_data_parts(done.artifacts[0].parts)[0] if done.artifacts else {}
    check("the answer is in the output", out.get("approved") is True, str(out))

    # The same through A2A 0.3's methods (the SDK picks its compat transport for a card
    # that offers only 0.3).
    old_card = AgentCard()
    old_card.CopyFrom(card)
    del old_card.supported_interfaces[:]
    old_card.supported_interfaces.add(
        url=card.supported_interfaces[0].url, protocol_binding="JSONRPC", protocol_version="0.3"
    )
    for streaming_old in (False, True):
        old = ClientFactory(ClientConfig(httpx_client=http_acme, streaming=streaming_old)).create(
            old_card
        )
        how = "streamed" if streaming_old else "sent"
        events = await send(old, message({"name": "Cy"}, skill="greet"))
        last = events[-1]
        state = (
            last.status_update.status.state
            if last.WhichOneof("payload") == "status_update"
            else last.task.status.state
        )
        check(f"0.3: a {how} message completes", state == TaskState.TASK_STATE_COMPLETED, str(events))
    old_got = await old.get_task(GetTaskRequest(id=task.id))
    check("0.3: tasks/get reads a task", old_got.status.state == TaskState.TASK_STATE_COMPLETED, str(old_got))

    # Cancelled.
    events = await send(acme, message({}, skill="slow"), return_immediately=True)
    slow = events[-1].task
    check("slow is working", slow.status.state == TaskState.TASK_STATE_WORKING, str(slow))
    cancelled = await acme.cancel_task(CancelTaskRequest(id=slow.id))
    check(
        "CancelTask cancels it",
        cancelled.status.state == TaskState.TASK_STATE_CANCELED,
        str(cancelled),
    )

    # Another tenant sees none of it.
    globex, gcard, http_globex = await client_for(KEY_GLOBEX, streaming=False)
    check("globex's card has no skill", len(gcard.skills) == 0, str(gcard.skills))
    try:
        await globex.get_task(GetTaskRequest(id=done.id))
        check("globex cannot read acme's task", False, "it could")
    except TaskNotFoundError as e:
        check(
            "globex gets task-not-found with hilo's code",
            (e.data or {}).get("code") == "EXECUTION_NOT_FOUND",
            repr(e),
        )
    glisted = await globex.list_tasks(ListTasksRequest())
    check("globex lists no task", len(glisted.tasks) == 0, str(glisted))
    try:
        await send(globex, message({"name": "x"}, skill="greet"))
        check("globex cannot run acme's skill", False, "it could")
    except (A2AError, A2AClientError) as e:
        check("globex cannot run acme's skill", True, repr(e))

    for h in (http_acme, http_stream, http_globex):
        await h.aclose()


asyncio.run(main())
if failures:
    print(f"{len(failures)} check(s) failed", file=sys.stderr)
    sys.exit(1)
print("all A2A checks passed")
