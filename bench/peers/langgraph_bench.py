#!/usr/bin/env python3
"""LangGraph peer benchmark for hilo.

Measures the same shapes of workload that hilo's own benchmarks measure, using
LangGraph's ``StateGraph`` with its file-backed ``SqliteSaver`` checkpointer
(and, where noted, no checkpointer at all), so the two engines can be put side
by side.

Scenarios (keys of the --json output):

  chain100_memory          100-step linear chain, compile() without checkpointer
  chain100_sqlite          same chain, SqliteSaver; also sqlite commits per step
  fanout100_sqlite         start -> 100 parallel nodes -> join, SqliteSaver;
                           reducer-aggregated list key; sqlite commits counted
  seq200_5step_sqlite      200 five-step workflows run one after another
                           (one thread_id each), SqliteSaver
  inflight16_5step_sqlite  the same 200 workflows with 16 in flight: asyncio,
                           AsyncSqliteSaver (aiosqlite), 16 concurrent ainvoke
  state_growth_100x1k      100 steps each appending a 1 KiB string to a list
                           (operator.add reducer): bytes in the checkpoint
                           tables / JSON size of the final state
  state_growth_100x1k_delta  supplementary: same, with LangGraph's opt-in
                           (beta) DeltaChannel instead of operator.add
  resume_100               100-step chain interrupted before its last node:
                           time for graph.get_state() and for invoke(None)
  peak_rss                 ru_maxrss of this process after all scenarios

Method: every timed scenario does one warm-up run, then 5 timed runs with
time.perf_counter; the median is reported (min/max are in the JSON too).
Each run uses a fresh thread_id inside one sqlite file per scenario (in a
temporary directory), as a long-lived service would.  The saver's connection
keeps sqlite's defaults except what SqliteSaver.setup() itself sets
(journal_mode=WAL); the journal mode and synchronous level actually in force
are read back and reported.

Commits are counted with sqlite3.Connection.set_trace_callback on a
connection this script opens itself and hands to SqliteSaver: every traced
COMMIT/END statement counts as one transaction, and so does every write
statement (INSERT/UPDATE/DELETE/REPLACE) run outside a transaction (an
autocommit-mode transaction).  Rollbacks are counted separately.

Durability: LangGraph's default durability mode is "async" (checkpoint writes
for step N overlap step N+1, but invoke() returns only after all are
persisted).  --durability sync|exit changes it for every durable scenario.

Run (with the venv described in README.md):

    /work/venv-langgraph/bin/python bench/peers/langgraph_bench.py          # table
    /work/venv-langgraph/bin/python bench/peers/langgraph_bench.py --json   # JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import os
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from importlib.metadata import version as pkg_version
from typing import Annotated, Any, Callable, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

try:  # opt-in (beta) in LangGraph 1.2; only used by the supplementary scenario
    from langgraph.channels import DeltaChannel
except ImportError:  # pragma: no cover - older LangGraph
    DeltaChannel = None

WARMUP = 1
RUNS = 5
CHAIN_STEPS = 100
FANOUT_WIDTH = 100
SEQ_WORKFLOWS = 200
SEQ_STEPS = 5
IN_FLIGHT = 16
GROWTH_STEPS = 100
GROWTH_ITEM = "x" * 1024  # 1 KiB appended per step
SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def timed_runs(run: Callable[[], Any]) -> list[float]:
    """One warm-up call, then RUNS timed calls; returns the timings in ms."""
    for _ in range(WARMUP):
        run()
    out = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        run()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(ms), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
    }


def new_config(recursion_limit: int = 10_000) -> dict:
    """A config with a fresh thread_id (each run/workflow is its own thread)."""
    return {
        "configurable": {"thread_id": uuid.uuid4().hex},
        "recursion_limit": recursion_limit,
    }


class TxnCounter:
    """Counts sqlite transactions on one connection via its trace callback.

    Python's sqlite3 (default isolation_level "") opens transactions implicitly
    with BEGIN before a DML statement and ends them with COMMIT on
    conn.commit(); both are real statements and reach the trace callback.
    A DML statement seen while the connection is not in a transaction runs in
    sqlite's autocommit mode and is its own transaction, so it counts too.
    """

    WRITE_PREFIXES = ("INSERT", "UPDATE", "DELETE", "REPLACE")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.reset()
        conn.set_trace_callback(self._trace)

    def reset(self) -> None:
        self.commits = 0  # explicit COMMIT / END
        self.autocommit_writes = 0  # DML outside any transaction
        self.rollbacks = 0
        self.statements = 0

    @property
    def transactions(self) -> int:
        return self.commits + self.autocommit_writes

    def _trace(self, sql: str) -> None:
        head = sql.lstrip().upper()
        self.statements += 1
        if head.startswith(("COMMIT", "END")):
            self.commits += 1
        elif head.startswith("ROLLBACK"):
            self.rollbacks += 1
        elif head.startswith(self.WRITE_PREFIXES) and not self.conn.in_transaction:
            self.autocommit_writes += 1


def open_saver(path: str) -> tuple[SqliteSaver, sqlite3.Connection, TxnCounter]:
    """SqliteSaver on a connection we own (so we can trace it)."""
    conn = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()  # creates tables, sets journal_mode=WAL
    return saver, conn, TxnCounter(conn)


def sqlite_settings(conn: sqlite3.Connection) -> dict[str, Any]:
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    return {
        "journal_mode": journal,
        "synchronous": SYNCHRONOUS_NAMES.get(sync, sync),
        "sqlite_version": sqlite3.sqlite_version,
    }


def stored_bytes(conn: sqlite3.Connection, thread_id: str) -> dict[str, int]:
    """Bytes one thread occupies in SqliteSaver's two tables.

    Schema (SqliteSaver.setup): checkpoints(thread_id, checkpoint_ns,
    checkpoint_id, parent_checkpoint_id, type, checkpoint BLOB, metadata BLOB)
    and writes(thread_id, checkpoint_ns, checkpoint_id, task_id, task_path,
    idx, channel, type, value BLOB).  Payload columns are counted; keys are not.
    """
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables >= {"checkpoints", "writes"}, tables
    ckpt, meta, n_ckpt = conn.execute(
        "SELECT COALESCE(SUM(LENGTH(CAST(checkpoint AS BLOB))),0),"
        " COALESCE(SUM(LENGTH(CAST(metadata AS BLOB))),0), COUNT(*)"
        " FROM checkpoints WHERE thread_id=?",
        (thread_id,),
    ).fetchone()
    wval, n_writes = conn.execute(
        "SELECT COALESCE(SUM(LENGTH(CAST(value AS BLOB))),0), COUNT(*)"
        " FROM writes WHERE thread_id=?",
        (thread_id,),
    ).fetchone()
    return {
        "checkpoint_bytes": ckpt,
        "metadata_bytes": meta,
        "writes_value_bytes": wval,
        "stored_bytes": ckpt + meta + wval,
        "checkpoint_rows": n_ckpt,
        "writes_rows": n_writes,
        "other_tables": sorted(tables - {"checkpoints", "writes"}),
    }


# --------------------------------------------------------------------------
# graphs
# --------------------------------------------------------------------------


class CounterState(TypedDict):
    n: int


def incr(state: CounterState) -> dict:
    return {"n": state["n"] + 1}


def chain_builder(steps: int) -> StateGraph:
    """s0 -> s1 -> ... -> s{steps-1}; each node increments a counter."""
    b = StateGraph(CounterState)
    for i in range(steps):
        b.add_node(f"s{i}", incr)
    b.add_edge(START, "s0")
    for i in range(steps - 1):
        b.add_edge(f"s{i}", f"s{i + 1}")
    b.add_edge(f"s{steps - 1}", END)
    return b


class FanState(TypedDict):
    results: Annotated[list, operator.add]


def fanout_builder(width: int) -> StateGraph:
    """start -> p0..p{width-1} (parallel, same superstep) -> join."""
    b = StateGraph(FanState)
    b.add_node("start", lambda s: {"results": []})
    names = [f"p{i}" for i in range(width)]
    for i, name in enumerate(names):
        b.add_node(name, lambda s, i=i: {"results": [i]})
        b.add_edge("start", name)
    b.add_node("join", lambda s: {"results": [len(s["results"])]})
    b.add_edge(START, "start")
    b.add_edge(names, "join")  # join waits for all branches
    b.add_edge("join", END)
    return b


class GrowState(TypedDict):
    items: Annotated[list, operator.add]


def _delta_concat(state: list, writes: list) -> list:
    # DeltaChannel reducers get the whole batch of writes at once.
    out = list(state)
    for w in writes:
        out.extend(w)
    return out


def growth_builder(steps: int, delta: bool = False) -> StateGraph:
    """Each of `steps` chained nodes appends a 1 KiB string to `items`."""
    if delta:
        state_t = TypedDict(  # type: ignore[misc]
            "GrowDeltaState", {"items": Annotated[list, DeltaChannel(_delta_concat)]}
        )
    else:
        state_t = GrowState
    b = StateGraph(state_t)
    for i in range(steps):
        b.add_node(f"g{i}", lambda s: {"items": [GROWTH_ITEM]})
    b.add_edge(START, "g0")
    for i in range(steps - 1):
        b.add_edge(f"g{i}", f"g{i + 1}")
    b.add_edge(f"g{steps - 1}", END)
    return b


# --------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------


def bench_chain_memory() -> dict:
    graph = chain_builder(CHAIN_STEPS).compile()
    cfg = {"recursion_limit": 10_000}

    def run() -> None:
        out = graph.invoke({"n": 0}, cfg)
        assert out["n"] == CHAIN_STEPS

    s = summary(timed_runs(run))
    s["per_step_us"] = round(s["median_ms"] * 1000 / CHAIN_STEPS, 2)
    s["steps"] = CHAIN_STEPS
    return s


def bench_chain_sqlite(tmp: str, durability: str) -> dict:
    saver, conn, counter = open_saver(os.path.join(tmp, "chain.sqlite"))
    graph = chain_builder(CHAIN_STEPS).compile(checkpointer=saver)
    txns: list[int] = []

    def run() -> None:
        counter.reset()
        out = graph.invoke({"n": 0}, new_config(), durability=durability)
        assert out["n"] == CHAIN_STEPS
        txns.append(counter.transactions)

    s = summary(timed_runs(run))
    s["per_step_us"] = round(s["median_ms"] * 1000 / CHAIN_STEPS, 2)
    s["steps"] = CHAIN_STEPS
    s["commits_per_run"] = txns[-1]
    s["commits_per_step"] = round(txns[-1] / CHAIN_STEPS, 3)
    s["commits_per_run_all"] = sorted(set(txns))
    s["sqlite"] = sqlite_settings(conn)
    conn.close()
    return s


def bench_fanout_sqlite(tmp: str, durability: str) -> dict:
    saver, conn, counter = open_saver(os.path.join(tmp, "fanout.sqlite"))
    graph = fanout_builder(FANOUT_WIDTH).compile(checkpointer=saver)
    txns: list[int] = []

    def run() -> None:
        counter.reset()
        out = graph.invoke({"results": []}, new_config(), durability=durability)
        # 100 branch results plus the join's count
        assert len(out["results"]) == FANOUT_WIDTH + 1
        assert out["results"][-1] == FANOUT_WIDTH
        txns.append(counter.transactions)

    s = summary(timed_runs(run))
    s["branches"] = FANOUT_WIDTH
    s["commits_per_run"] = txns[-1]
    s["commits_per_run_all"] = sorted(set(txns))
    s["sqlite"] = sqlite_settings(conn)
    conn.close()
    return s


def bench_seq_sqlite(tmp: str, durability: str) -> dict:
    saver, conn, counter = open_saver(os.path.join(tmp, "seq.sqlite"))
    graph = chain_builder(SEQ_STEPS).compile(checkpointer=saver)

    def run() -> None:
        for _ in range(SEQ_WORKFLOWS):
            out = graph.invoke({"n": 0}, new_config(), durability=durability)
            assert out["n"] == SEQ_STEPS

    s = summary(timed_runs(run))
    s["workflows"] = SEQ_WORKFLOWS
    s["steps_per_workflow"] = SEQ_STEPS
    s["execs_per_s"] = round(SEQ_WORKFLOWS / (s["median_ms"] / 1000), 1)
    s["sqlite"] = sqlite_settings(conn)
    conn.close()
    return s


def bench_inflight_sqlite(tmp: str, durability: str) -> dict:
    """200 five-step workflows, at most 16 ainvoke() in flight at a time."""
    path = os.path.join(tmp, "inflight.sqlite")

    async def main() -> tuple[list[float], dict]:
        async with AsyncSqliteSaver.from_conn_string(path) as saver:
            await saver.setup()
            graph = chain_builder(SEQ_STEPS).compile(checkpointer=saver)
            sem = asyncio.Semaphore(IN_FLIGHT)

            async def one() -> None:
                async with sem:
                    out = await graph.ainvoke({"n": 0}, new_config(), durability=durability)
                    assert out["n"] == SEQ_STEPS

            async def batch() -> None:
                await asyncio.gather(*(one() for _ in range(SEQ_WORKFLOWS)))

            for _ in range(WARMUP):
                await batch()
            ms = []
            for _ in range(RUNS):
                t0 = time.perf_counter()
                await batch()
                ms.append((time.perf_counter() - t0) * 1000.0)
            cur = await saver.conn.execute("PRAGMA journal_mode")
            journal = (await cur.fetchone())[0]
            cur = await saver.conn.execute("PRAGMA synchronous")
            sync = (await cur.fetchone())[0]
            settings = {
                "journal_mode": journal,
                "synchronous": SYNCHRONOUS_NAMES.get(sync, sync),
                "sqlite_version": sqlite3.sqlite_version,
            }
            return ms, settings

    ms, settings = asyncio.run(main())
    s = summary(ms)
    s["workflows"] = SEQ_WORKFLOWS
    s["steps_per_workflow"] = SEQ_STEPS
    s["in_flight"] = IN_FLIGHT
    s["mode"] = "asyncio + AsyncSqliteSaver (one aiosqlite connection), gather with Semaphore(16)"
    s["execs_per_s"] = round(SEQ_WORKFLOWS / (s["median_ms"] / 1000), 1)
    s["sqlite"] = settings
    return s


def bench_state_growth(tmp: str, durability: str, delta: bool = False) -> dict:
    name = "growth_delta.sqlite" if delta else "growth.sqlite"
    saver, conn, _ = open_saver(os.path.join(tmp, name))
    graph = growth_builder(GROWTH_STEPS, delta=delta).compile(checkpointer=saver)
    last: dict[str, Any] = {}

    def run() -> None:
        cfg = new_config()
        out = graph.invoke({"items": []}, cfg, durability=durability)
        assert len(out["items"]) == GROWTH_STEPS
        last["thread_id"] = cfg["configurable"]["thread_id"]
        last["final"] = out

    s = summary(timed_runs(run))
    final_json = len(json.dumps(last["final"]))
    st = stored_bytes(conn, last["thread_id"])
    s.update(st)
    s["steps"] = GROWTH_STEPS
    s["final_state_json_bytes"] = final_json
    s["bytes_ratio"] = round(st["stored_bytes"] / final_json, 2)
    s["reducer"] = "DeltaChannel (beta, opt-in)" if delta else "operator.add"
    conn.close()
    return s


def bench_resume(tmp: str, durability: str) -> dict:
    """100-step chain stopped by interrupt_before on its last node.

    Untimed: invoke() runs s0..s98 and stops before s99.  Timed separately:
    graph.get_state(config) (load the latest checkpoint + pending writes) and
    graph.invoke(None, config) (resume: load, run s99, persist, return).
    """
    saver, conn, _ = open_saver(os.path.join(tmp, "resume.sqlite"))
    last = f"s{CHAIN_STEPS - 1}"
    graph = chain_builder(CHAIN_STEPS).compile(checkpointer=saver, interrupt_before=[last])
    get_ms, resume_ms = [], []
    for i in range(WARMUP + RUNS):
        cfg = new_config()
        graph.invoke({"n": 0}, cfg, durability=durability)
        t0 = time.perf_counter()
        snap = graph.get_state(cfg)
        t1 = time.perf_counter()
        assert snap.next == (last,) and snap.values["n"] == CHAIN_STEPS - 1
        t2 = time.perf_counter()
        out = graph.invoke(None, cfg, durability=durability)
        t3 = time.perf_counter()
        assert out["n"] == CHAIN_STEPS
        if i >= WARMUP:
            get_ms.append((t1 - t0) * 1000.0)
            resume_ms.append((t3 - t2) * 1000.0)
    conn.close()
    return {
        "get_state_median_ms": round(statistics.median(get_ms), 3),
        "resume_median_ms": round(statistics.median(resume_ms), 3),
        "get_state_min_max_ms": [round(min(get_ms), 3), round(max(get_ms), 3)],
        "resume_min_max_ms": [round(min(resume_ms), 3), round(max(resume_ms), 3)],
        "steps_before_interrupt": CHAIN_STEPS - 1,
        "steps_run_on_resume": 1,
    }


def peak_rss() -> dict:
    # ru_maxrss is KiB on Linux (bytes on macOS).
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":
        kib //= 1024
    return {"peak_rss_mib": round(kib / 1024, 1)}


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------


def print_table(r: dict) -> None:
    rows = [
        ("chain100_memory", "median ms", r["chain100_memory"]["median_ms"]),
        ("chain100_memory", "us/step", r["chain100_memory"]["per_step_us"]),
        ("chain100_sqlite", "median ms", r["chain100_sqlite"]["median_ms"]),
        ("chain100_sqlite", "us/step", r["chain100_sqlite"]["per_step_us"]),
        ("chain100_sqlite", "commits/run", r["chain100_sqlite"]["commits_per_run"]),
        ("chain100_sqlite", "commits/step", r["chain100_sqlite"]["commits_per_step"]),
        ("fanout100_sqlite", "median ms", r["fanout100_sqlite"]["median_ms"]),
        ("fanout100_sqlite", "commits/run", r["fanout100_sqlite"]["commits_per_run"]),
        ("seq200_5step_sqlite", "median ms", r["seq200_5step_sqlite"]["median_ms"]),
        ("seq200_5step_sqlite", "execs/s", r["seq200_5step_sqlite"]["execs_per_s"]),
        ("inflight16_5step_sqlite", "median ms", r["inflight16_5step_sqlite"]["median_ms"]),
        ("inflight16_5step_sqlite", "execs/s", r["inflight16_5step_sqlite"]["execs_per_s"]),
    ]
    for key in ("state_growth_100x1k", "state_growth_100x1k_delta"):
        if key in r:
            g = r[key]
            rows += [
                (key, "median ms", g["median_ms"]),
                (key, "stored bytes", g["stored_bytes"]),
                (key, "final state JSON bytes", g["final_state_json_bytes"]),
                (key, "stored / final ratio", g["bytes_ratio"]),
            ]
    rows += [
        ("resume_100", "get_state ms", r["resume_100"]["get_state_median_ms"]),
        ("resume_100", "invoke(None) ms", r["resume_100"]["resume_median_ms"]),
        ("peak_rss", "MiB", r["peak_rss"]["peak_rss_mib"]),
    ]
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    print(f"LangGraph {r['langgraph_version']} (langgraph-checkpoint-sqlite "
          f"{r['langgraph_checkpoint_sqlite_version']}), Python {r['python_version']}, "
          f"durability={r['durability']}")
    sq = r["chain100_sqlite"]["sqlite"]
    print(f"sqlite {sq['sqlite_version']}: journal_mode={sq['journal_mode']}, "
          f"synchronous={sq['synchronous']}; warm-up {WARMUP}, median of {RUNS}")
    print()
    print(f"{'scenario':<{w0}}  {'metric':<{w1}}  value")
    print(f"{'-' * w0}  {'-' * w1}  {'-' * 12}")
    for a, b, v in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {v}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument(
        "--durability",
        choices=["async", "sync", "exit"],
        default="async",
        help='LangGraph durability mode for durable scenarios (default: "async", LangGraph\'s default)',
    )
    args = ap.parse_args()

    results: dict[str, Any] = {
        "langgraph_version": pkg_version("langgraph"),
        "langgraph_checkpoint_version": pkg_version("langgraph-checkpoint"),
        "langgraph_checkpoint_sqlite_version": pkg_version("langgraph-checkpoint-sqlite"),
        "python_version": sys.version.split()[0],
        "durability": args.durability,
        "warmup_runs": WARMUP,
        "timed_runs": RUNS,
    }
    with tempfile.TemporaryDirectory(prefix="langgraph-bench-") as tmp:
        d = args.durability
        results["chain100_memory"] = bench_chain_memory()
        results["chain100_sqlite"] = bench_chain_sqlite(tmp, d)
        results["fanout100_sqlite"] = bench_fanout_sqlite(tmp, d)
        results["seq200_5step_sqlite"] = bench_seq_sqlite(tmp, d)
        results["inflight16_5step_sqlite"] = bench_inflight_sqlite(tmp, d)
        results["state_growth_100x1k"] = bench_state_growth(tmp, d)
        if DeltaChannel is not None:
            results["state_growth_100x1k_delta"] = bench_state_growth(tmp, d, delta=True)
        results["resume_100"] = bench_resume(tmp, d)
    results["peak_rss"] = peak_rss()

    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)


if __name__ == "__main__":
    main()
