"""hilo as an MCP server, seen by clients nobody here wrote: the official Python SDK (`mcp`,
pinned by .ci/mcp-server/run) over streamable HTTP (`/mcp`) and stdio (`hilo mcp`), in the
handshake era (2025-11-25) and the stateless one (2026-07-28, with and without the tasks
extension), and the MCP Inspector CLI (npm, pinned by package-lock.json).

Run by .ci/mcp-server/run, which imports the workflows, creates the keys and starts `hilo
serve`. One line per check; the first failure ends the run (MCP_CHECK_KEEP_GOING=1 runs on and
fails at the end). Environment: HILO_BIN, HILO_URL, HILO_DB, HILO_MASTER_KEY_FILE, ACME_KEY,
OTHER_KEY, INSPECTOR_DIR (the node_modules holding @modelcontextprotocol/inspector-cli).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Literal

import anyio
import httpx2
import mcp
import mcp_types as T
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import TypeAdapter

HILO = os.environ["HILO_BIN"]
BASE = os.environ["HILO_URL"].rstrip("/")
MCP_URL = f"{BASE}/mcp"
ACME_KEY = os.environ["ACME_KEY"]
OTHER_KEY = os.environ["OTHER_KEY"]
INSPECTOR_DIR = os.environ["INSPECTOR_DIR"]
KEEP_GOING = os.environ.get("MCP_CHECK_KEEP_GOING") == "1"
TASKS = "io.modelcontextprotocol/tasks"
# Deadlines for what is polled; generous for a loaded 2-core machine (a pass takes far less).
DEADLINE_S = 20.0
TIMEOUT_S = 40.0

ADD_INPUT = {
    "type": "object",
    "required": ["a", "b"],
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
}
APPROVAL_SCHEMA = {
    "type": "object",
    "required": ["approved"],
    "properties": {"approved": {"type": "boolean"}},
}
ACME_TOOLS = {"add", "approve_refund"}

passed = 0
failed = 0


class CheckFailed(Exception):
    pass


def check(cond: bool, what: str, detail: Any = "") -> None:
    """One line per check; a failure names what was seen."""
    global passed, failed
    if cond:
        passed += 1
        print(f"ok    {what}", flush=True)
        return
    failed += 1
    if not isinstance(detail, str):
        detail = json.dumps(detail, default=str)[:1500]
    print(f"FAIL  {what}\n      got: {detail}", flush=True)
    if not KEEP_GOING:
        raise CheckFailed(what)


def dump(model: Any) -> Any:
    if hasattr(model, "model_dump"):
        return model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return model


# --- the tasks extension: the SDK has no typed client for it, so typed requests of our own
# (a plain `Request(method=..., params={...})` would drop the params). SEP-2663 wants the task
# id mirrored into the `Mcp-Name` header: `name_param` does that.


class TaskIdParams(T.RequestParams):
    task_id: str


class TaskUpdateParams(T.RequestParams):
    task_id: str
    input_responses: dict[str, Any]


class TasksGet(T.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"


class TasksUpdate(T.Request[TaskUpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: TaskUpdateParams
    name_param = "taskId"


class TasksCancel(T.Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param = "taskId"


# --- 2025-11-25's core tasks: tasks/result, typed likewise. (The SDK checks a tools/call's
# answer against CallToolResult, so the task-augmented call is posted by hand: `core_task`.)


class TasksResult(T.Request[TaskIdParams, Literal["tasks/result"]]):
    method: Literal["tasks/result"] = "tasks/result"
    params: TaskIdParams
    name_param = "taskId"


RAW = TypeAdapter(dict)


async def raw_call(c: Client, name: str, arguments: dict) -> dict:
    req = T.CallToolRequest(params=T.CallToolRequestParams(name=name, arguments=arguments))
    return await c.session.send_request(req, RAW)


async def task_get(c: Client, task_id: str) -> dict:
    return await c.session.send_request(TasksGet(params=TaskIdParams(task_id=task_id)), RAW)


async def task_until(c: Client, task_id: str, status: str) -> dict:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        t = await task_get(c, task_id)
        if t.get("status") == status or time.monotonic() > deadline:
            return t
        await anyio.sleep(0.1)


# --- clients


def http(key: str | None, mode: str = "auto", tasks: bool = False, elicitation=None) -> Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = streamable_http_client(
        MCP_URL, http_client=httpx2.AsyncClient(headers=headers, timeout=TIMEOUT_S)
    )
    return Client(
        transport,
        mode=mode,
        read_timeout_seconds=TIMEOUT_S,
        cache=None,  # every request reaches the server
        extensions=[mcp.client.advertise(TASKS)] if tasks else None,
        elicitation_callback=elicitation,
    )


class Asker:
    """The SDK's elicitation callback: records what it is asked and gives the answers in turn."""

    def __init__(self, *answers: dict) -> None:
        self.answers = list(answers)
        self.asked: list[dict] = []

    async def __call__(self, context, params):
        self.asked.append({"params": dump(params), "meta": dump(context.meta) if context.meta else {}})
        return T.ElicitResult(action="accept", content=self.answers.pop(0))


def core_task(name: str, arguments: dict) -> dict:
    """A 2025-11-25 task-augmented tools/call on /mcp for acme (the SDK cannot take its answer)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments, "task": {}}}
    headers = {"Authorization": f"Bearer {ACME_KEY}", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25"}
    with httpx2.Client(timeout=TIMEOUT_S) as h:
        r = h.post(MCP_URL, json=body, headers=headers)
    return (r.json().get("result") or {}) if r.headers.get("content-type", "").startswith("application/json") else {}


def stdio_env() -> dict[str, str]:
    return {k: os.environ[k] for k in ("PATH", "HOME", "HILO_DB", "HILO_MASTER_KEY_FILE") if k in os.environ}


def stdio(mode: str, errlog, elicitation=None) -> Client:
    params = StdioServerParameters(command=HILO, args=["--tenant", "acme", "mcp"], env=stdio_env())
    return Client(stdio_client(params, errlog=errlog), mode=mode, read_timeout_seconds=TIMEOUT_S, cache=None,
                  elicitation_callback=elicitation)


def rest(method: str, path: str, key: str = ACME_KEY, body: Any = None) -> httpx2.Response:
    with httpx2.Client(timeout=TIMEOUT_S) as h:
        return h.request(method, f"{BASE}/api/v1{path}", json=body, headers={"Authorization": f"Bearer {key}"})


async def read_json(c: Client, uri: str) -> Any:
    r = await c.read_resource(uri)
    return json.loads(r.contents[0].text)


async def execution_until(c: Client, exec_id: str, status: str) -> dict:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        e = await read_json(c, f"hilo://executions/{exec_id}")
        if e.get("status") == status or time.monotonic() > deadline:
            return e
        await anyio.sleep(0.1)


async def error_of(coro) -> MCPError | None:
    """The MCP error a request ends with (None when it succeeds)."""
    try:
        await coro
    except MCPError as e:
        return e
    return None


# --- what every client must see of the sum workflow


async def check_add_call(c: Client, where: str, a: int, b: int) -> str:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append((p, total, message))

    r = await c.call_tool("add", {"a": a, "b": b}, progress_callback=on_progress)
    d = dump(r)
    check(not r.is_error, f"{where}: tools/call add succeeds", d)
    text = r.content[0].text if r.content and r.content[0].type == "text" else None
    check(text is not None and json.loads(text) == {"sum": a + b}, f"{where}: tools/call add: text is the JSON output {{\"sum\": {a + b}}}", d)
    check(r.structured_content == {"sum": a + b}, f"{where}: tools/call add: structuredContent is the output", d)
    exec_id = (r.meta or {}).get("hilo/execution_id")
    check(isinstance(exec_id, str) and exec_id != "", f"{where}: tools/call add: _meta names hilo/execution_id", d)
    messages = [m for _, _, m in progress]
    values = [p for p, _, _ in progress]
    check(
        all(f"node `{n}` succeeded" in messages for n in ("first", "second", "done"))
        and values == sorted(set(values)),
        f"{where}: tools/call add with a progress token: notifications/progress \"node `X` succeeded\" for first, second, done (increasing)",
        {"progress": progress},
    )
    return exec_id


async def check_tools(c: Client, where: str) -> None:
    tools = {t.name: t for t in (await c.list_tools()).tools}
    check(set(tools) == ACME_TOOLS, f"{where}: tools/list is exactly the exposed workflows (not internal_only, a2a_only, nor other's)", sorted(tools))
    add = tools.get("add")
    if add is None:
        return
    check(add.description == "Adds two numbers in three steps", f"{where}: tools/list add: description", add.description)
    check(add.input_schema == ADD_INPUT, f"{where}: tools/list add: inputSchema is the workflow's input", add.input_schema)
    check(
        add.output_schema == {"type": "object", "properties": {"sum": {}}, "required": ["sum"]},
        f"{where}: tools/list add: outputSchema from the finish node's object literal",
        add.output_schema,
    )
    title = add.annotations.title if add.annotations else None
    check(bool(title) and "add" in title, f"{where}: tools/list add: annotations.title", title)


# --- the checks


async def http_checks() -> dict:
    seen: dict[str, str] = {}

    with httpx2.Client(timeout=TIMEOUT_S) as h:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "check", "version": "1"}}}
        r = h.post(MCP_URL, json=init, headers={"Accept": "application/json, text/event-stream"})
        check(r.status_code == 401, "HTTP: /mcp without an API key is refused with 401", f"{r.status_code} {r.text[:300]}")

    async with http(ACME_KEY) as c:
        check(c.protocol_version == "2026-07-28", "HTTP auto: server/discover negotiates 2026-07-28", c.protocol_version)
        ext = c.server_capabilities.extensions or {}
        check(TASKS in ext, "HTTP auto: the server advertises the tasks extension", dump(c.server_capabilities))
        await check_tools(c, "HTTP auto")
        seen["add"] = await check_add_call(c, "HTTP auto", 2, 3)
        e = rest("GET", f"/executions/{seen['add']}").json()
        check(e.get("status") == "succeeded" and e.get("workflow") == "add" and (e.get("started_by") or {}).get("kind") == "mcp",
              "HTTP auto: the call's execution is stored (REST: succeeded, started by mcp)", {k: e.get(k) for k in ("status", "workflow", "started_by")})

        r = await c.call_tool("add", {"a": "x"})
        text = r.content[0].text if r.content else ""
        check(r.is_error and text.startswith("INVALID_INPUT:"), "HTTP auto: input refused by the workflow's schema: isError, text INVALID_INPUT:", dump(r))

        for name in ("no_such_tool", "internal_only", "a2a_only"):
            err = await error_of(c.call_tool(name, {}))
            check(
                err is not None and err.code == -32602 and (err.data or {}).get("code") == "WORKFLOW_NOT_FOUND",
                f"HTTP auto: tools/call {name}: JSON-RPC error -32602, data.code WORKFLOW_NOT_FOUND",
                dump(err.error) if err else "no error",
            )

        # A person is needed, and this client has no tasks: an answer naming the execution.
        started = time.monotonic()
        r = await c.call_tool("approve_refund", {"amount": 5})
        took = time.monotonic() - started
        text = r.content[0].text if r.content else ""
        exec_id = (r.meta or {}).get("hilo/execution_id")
        check(r.is_error and text.startswith("WAITING_FOR_HUMAN:") and isinstance(exec_id, str),
              "HTTP auto: tools/call approve_refund (no tasks): isError, WAITING_FOR_HUMAN:, _meta hilo/execution_id", dump(r))
        check(took < 15, "HTTP auto: ... answered as soon as the run waits (not after [mcp_server] wait_ms)", f"{took:.1f}s")
        seen["approve"] = exec_id
        e = await read_json(c, f"hilo://executions/{exec_id}")
        check(e.get("id") == exec_id and e.get("status") == "waiting" and e.get("waiting_for"),
              "HTTP auto: resource hilo://executions/{id}: status waiting, what it waits for", e)
        err = await error_of(c.read_resource(f"hilo://executions/{exec_id}/output"))
        check(err is not None and "NOT_FINISHED" in err.message, "HTTP auto: resource .../output of a waiting execution: an error NOT_FINISHED", dump(err.error) if err else "no error")

        tasks = rest("GET", "/tasks").json().get("items", [])
        mine = [t for t in tasks if t.get("execution_id") == exec_id]
        check(len(mine) == 1, "REST: GET /api/v1/tasks lists the execution's human task", tasks)
        a = rest("POST", f"/tasks/{mine[0]['id']}/answer", body={"answer": {"approved": True}})
        check(a.is_success, "REST: POST /api/v1/tasks/{id}/answer is accepted", f"{a.status_code} {a.text[:300]}")
        e = await execution_until(c, exec_id, "succeeded")
        check(e.get("status") == "succeeded", "HTTP auto: resource hilo://executions/{id} becomes succeeded after the answer", e)
        out = await read_json(c, f"hilo://executions/{exec_id}/output")
        check(out == {"approved": True, "amount": 5}, "HTTP auto: resource hilo://executions/{id}/output is the output (JSON)", out)

        listed = {r.uri for r in (await c.list_resources()).resources}
        want = {f"hilo://executions/{seen['add']}", f"hilo://executions/{exec_id}"}
        check(want <= listed, "HTTP auto: resources/list lists the tenant's executions", sorted(listed))
        templates = {t.uri_template for t in (await c.list_resource_templates()).resource_templates}
        check(templates == {"hilo://executions/{id}", "hilo://executions/{id}/output"}, "HTTP auto: resources/templates/list: the two templates", sorted(templates))

    async with http(ACME_KEY, mode="legacy") as c:
        check(c.protocol_version == "2025-11-25", "HTTP legacy: the initialize handshake negotiates 2025-11-25", c.protocol_version)
        await check_tools(c, "HTTP legacy")
        await check_add_call(c, "HTTP legacy", 10, 20)

    # 2025-11-25's core tasks: the person's question comes on tasks/result's stream as an
    # elicitation/create tagged with the task; the SDK's callback answers it (a wrong answer
    # first: refused, and asked again with the reason).
    asker = Asker({"approved": "yes"}, {"approved": True})
    async with http(ACME_KEY, mode="legacy", elicitation=asker) as c:
        check(c.protocol_version == "2025-11-25", "HTTP core tasks: 2025-11-25", c.protocol_version)
        t = core_task("approve_refund", {"amount": 11})
        task_id = (t.get("task") or {}).get("taskId")
        check(isinstance(task_id, str), "HTTP core tasks: tools/call with task: a task", t)
        g = await task_until(c, task_id, "input_required")
        check(g.get("status") == "input_required", "HTTP core tasks: tasks/get says input_required", g)
        r = await c.session.send_request(TasksResult(params=TaskIdParams(task_id=task_id)), RAW)
        first = asker.asked[0] if asker.asked else {}
        p = first.get("params") or {}
        related = ((p.get("_meta") or first.get("meta") or {}).get("io.modelcontextprotocol/related-task") or {})
        check(p.get("message") == "Approve a refund of 11?" and p.get("requestedSchema") == APPROVAL_SCHEMA
              and related.get("taskId") == task_id,
              "HTTP core tasks: tasks/result asks the question: elicitation/create with the prompt, schema and related-task", asker.asked)
        again = ((asker.asked[1] if len(asker.asked) > 1 else {}).get("params") or {}).get("message", "")
        check(len(asker.asked) == 2 and "INVALID_ANSWER" in again,
              "HTTP core tasks: a wrong answer is refused and asked again with the reason", asker.asked)
        check(r.get("structuredContent") == {"approved": True, "amount": 11}
              and ((r.get("_meta") or {}).get("io.modelcontextprotocol/related-task") or {}).get("taskId") == task_id,
              "HTTP core tasks: tasks/result ends with the call's result (the callback's answer), tied to the task", r)
        e = rest("GET", f"/executions/{task_id}").json()
        check(e.get("status") == "succeeded", "HTTP core tasks: ... and the execution succeeded (REST)", e.get("status"))

    async with http(ACME_KEY, tasks=True) as c:
        check(c.protocol_version == "2026-07-28", "HTTP tasks: 2026-07-28 with the tasks extension", c.protocol_version)
        r = await raw_call(c, "add", {"a": 1, "b": 1})
        check(r.get("resultType") == "complete" and r.get("structuredContent") == {"sum": 2},
              "HTTP tasks: a call that finishes is a complete result, not a task", r)

        t = await raw_call(c, "approve_refund", {"amount": 7})
        task_id = t.get("taskId")
        check(t.get("resultType") == "task" and isinstance(task_id, str) and t.get("status") == "input_required",
              "HTTP tasks: tools/call approve_refund: resultType task, taskId, status input_required", t)
        e = await read_json(c, f"hilo://executions/{task_id}")
        check(e.get("id") == task_id and e.get("workflow") == "approve_refund", "HTTP tasks: taskId is the execution id", e)
        g = await task_get(c, task_id)
        req = (g.get("inputRequests") or {}).get("review") or {}
        params = req.get("params") or {}
        check(g.get("status") == "input_required" and req.get("method") == "elicitation/create"
              and params.get("mode") == "form" and params.get("requestedSchema") == APPROVAL_SCHEMA,
              "HTTP tasks: tasks/get: inputRequests.review is an elicitation/create form with the node's schema", g)
        u = await c.session.send_request(
            TasksUpdate(params=TaskUpdateParams(task_id=task_id, input_responses={"review": {"action": "accept", "content": {"approved": False}}})), RAW)
        check(isinstance(u, dict), "HTTP tasks: tasks/update answers the review", u)
        g = await task_until(c, task_id, "completed")
        result = g.get("result") or {}
        check(g.get("status") == "completed" and result.get("isError") is False
              and result.get("structuredContent") == {"approved": False, "amount": 7}
              and (result.get("_meta") or {}).get("hilo/execution_id") == task_id,
              "HTTP tasks: tasks/get becomes completed with result (the CallToolResult)", g)

        t = await raw_call(c, "approve_refund", {"amount": 9})
        cancel_id = t.get("taskId")
        check(t.get("status") == "input_required", "HTTP tasks: a second call waits (to cancel)", t)
        await c.session.send_request(TasksCancel(params=TaskIdParams(task_id=cancel_id)), RAW)
        g = await task_until(c, cancel_id, "cancelled")
        check(g.get("status") == "cancelled", "HTTP tasks: tasks/cancel: tasks/get says cancelled", g)
        e = rest("GET", f"/executions/{cancel_id}").json()
        check(e.get("status") == "cancelled", "HTTP tasks: ... and the execution is cancelled (REST)", e.get("status"))
        seen["task"] = task_id

    return seen


async def isolation_checks(seen: dict) -> None:
    async with http(OTHER_KEY) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        check(names == {"other_tool"}, "isolation: another tenant's key lists its own tools, none of acme's", sorted(names))
        for what in ("approve", "add"):
            err = await error_of(c.read_resource(f"hilo://executions/{seen[what]}"))
            check(err is not None and "NOT_FOUND" in err.message, f"isolation: hilo://executions/<acme {what} id> is not found for another tenant", dump(err.error) if err else "read it")
        listed = {r.uri for r in (await c.list_resources()).resources}
        check(not any(seen[w] in u for w in seen for u in listed), "isolation: resources/list of another tenant shows none of acme's executions", sorted(listed))
        err = await error_of(c.call_tool("add", {"a": 1, "b": 2}))
        check(err is not None and (err.data or {}).get("code") == "WORKFLOW_NOT_FOUND", "isolation: another tenant cannot call acme's tool (WORKFLOW_NOT_FOUND)", dump(err.error) if err else "it ran")
    async with http(OTHER_KEY, tasks=True) as c:
        err = await error_of(task_get(c, seen["task"]))
        check(err is not None, "isolation: tasks/get of acme's task is refused for another tenant", dump(err.error) if err else "it answered")


async def stdio_checks() -> None:
    for mode, version in (("auto", "2026-07-28"), ("legacy", "2025-11-25")):
        with tempfile.TemporaryFile("w+") as errlog:
            async with stdio(mode, errlog) as c:
                where = f"stdio {mode}"
                check(c.protocol_version == version, f"{where}: negotiates {version}", c.protocol_version)
                await check_tools(c, where)
                exec_id = await check_add_call(c, where, 4, 5)
            errlog.seek(0)
            log = errlog.read()
        check("MCP server for tenant `acme` on stdio" in log, f"{where}: the log goes to stderr", log[-500:])
        async with http(ACME_KEY) as h:
            e = await read_json(h, f"hilo://executions/{exec_id}")
        check(e.get("status") == "succeeded" and e.get("output") == {"sum": 9}, f"{where}: the execution is in the same store (read over HTTP)", e)

    # 2025-11-25's question on tasks/result, over stdio: the callback's answer is the node's.
    asker = Asker({"approved": False})
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio("legacy", errlog, elicitation=asker) as c:
            # The task is started over HTTP (same store): the stdio server follows and answers it.
            t = core_task("approve_refund", {"amount": 3})
            task_id = (t.get("task") or {}).get("taskId")
            await task_until(c, task_id, "input_required")
            r = await c.session.send_request(TasksResult(params=TaskIdParams(task_id=task_id)), RAW)
    p = (asker.asked[0] if asker.asked else {}).get("params") or {}
    check(p.get("message") == "Approve a refund of 3?" and r.get("structuredContent") == {"approved": False, "amount": 3},
          "stdio core tasks: tasks/result asks the question; the callback's answer completes the call", {"asked": asker.asked, "result": r})

    # Nothing but JSON-RPC on stdout, the log on stderr.
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "check", "version": "1"}}}
    env = {**os.environ, **stdio_env()}
    async with await anyio.open_process([HILO, "--tenant", "acme", "mcp"], env=env) as p:
        await p.stdin.send((json.dumps(init) + "\n").encode())
        buf = b""
        with anyio.move_on_after(DEADLINE_S):
            while b"\n" not in buf:
                chunk = await p.stdout.receive()
                buf += chunk
        await p.stdin.aclose()
        with anyio.move_on_after(DEADLINE_S):
            async for chunk in p.stdout:
                buf += chunk
            await p.wait()
        err = b""
        with anyio.move_on_after(5):
            async for chunk in p.stderr:
                err += chunk
    lines = [l for l in buf.decode(errors="replace").splitlines() if l.strip()]
    try:
        parsed = [json.loads(l) for l in lines]
    except ValueError:
        parsed = None
    check(parsed is not None and len(parsed) >= 1 and parsed[0].get("id") == 1 and "result" in parsed[0],
          "stdio raw: stdout holds only JSON-RPC (the initialize answer)", lines[:5])
    check(b"on stdio" in err, "stdio raw: the banner and log are on stderr", err.decode(errors="replace")[-300:])
    check(p.returncode == 0, "stdio raw: hilo mcp exits 0 when stdin closes", p.returncode)


def inspector(*args: str) -> tuple[int, Any, str]:
    # inspector-cli 1.0.3 finds its own package.json as ../package.json of the working directory
    # (build/index.js), so it runs where that path exists: node_modules/ (whose parent holds
    # this check's package.json).
    cmd = [os.path.join(INSPECTOR_DIR, ".bin", "mcp-inspector-cli"), "--cli", *args]
    p = subprocess.run(cmd, cwd=INSPECTOR_DIR, capture_output=True, text=True, timeout=TIMEOUT_S, env={**os.environ, **stdio_env()})
    try:
        out = json.loads(p.stdout)
    except ValueError:
        out = None
    return p.returncode, out, (p.stdout + p.stderr)[-800:]


def inspector_checks() -> None:
    auth = ["--header", f"Authorization: Bearer {ACME_KEY}"]
    targets = {
        "HTTP": [MCP_URL, "--transport", "http", *auth],
        "stdio": [HILO, "--tenant", "acme", "mcp"],
    }
    for where, target in targets.items():
        rc, out, tail = inspector(*target, "--method", "tools/list")
        names = {t.get("name") for t in (out or {}).get("tools", [])}
        check(rc == 0 and names == ACME_TOOLS, f"Inspector CLI {where}: tools/list", tail if out is None else sorted(names))
        add = next((t for t in (out or {}).get("tools", []) if t.get("name") == "add"), {})
        check(add.get("inputSchema") == ADD_INPUT and add.get("outputSchema", {}).get("required") == ["sum"],
              f"Inspector CLI {where}: tools/list add: inputSchema, outputSchema", add)
        rc, out, tail = inspector(*target, "--method", "tools/call", "--tool-name", "add", "--tool-arg", "a=1", "--tool-arg", "b=2")
        ok = rc == 0 and out is not None and out.get("isError") is False and out.get("structuredContent") == {"sum": 3} \
            and json.loads(out["content"][0]["text"]) == {"sum": 3} and (out.get("_meta") or {}).get("hilo/execution_id")
        check(bool(ok), f"Inspector CLI {where}: tools/call add a=1 b=2 -> {{\"sum\": 3}}", out if out is not None else tail)
    rc, out, tail = inspector(MCP_URL, "--transport", "http", "--method", "tools/list")
    check(rc != 0 and out is None, "Inspector CLI HTTP: without --header the key is missing and the call fails", tail)
    rc, out, tail = inspector(MCP_URL, "--transport", "http", *auth, "--method", "resources/templates/list")
    uris = {t.get("uriTemplate") for t in (out or {}).get("resourceTemplates", [])}
    check(rc == 0 and uris == {"hilo://executions/{id}", "hilo://executions/{id}/output"}, "Inspector CLI HTTP: resources/templates/list", tail if out is None else sorted(uris))


async def main() -> None:
    seen = await http_checks()
    await isolation_checks(seen)
    await stdio_checks()
    inspector_checks()


if __name__ == "__main__":
    started = time.monotonic()
    try:
        anyio.run(main)
    except BaseException as e:  # a failed check, maybe wrapped in the SDK's task groups
        def only_checks(e: BaseException) -> bool:
            if isinstance(e, BaseExceptionGroup):
                return all(only_checks(x) for x in e.exceptions)
            return isinstance(e, CheckFailed)
        if not only_checks(e):
            raise
    print(f"MCP server checks in {time.monotonic() - started:.1f}s")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
