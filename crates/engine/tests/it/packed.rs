//! Packed history on SQLite: once a loop has ended, the store keeps its iterations' node rows
//! and events as a few compressed packs. Every reader still gets every record and event, once,
//! in order, whole or a page at a time from any cursor (one inside a pack included); records a
//! compensation keeps stay rows among the packed ones; erasing removes the packs too.

use hilo_core::exec::{Event, ExecStatus, ExecutionStore, NodeRecord, NodeStatus};
use hilo_core::store::DEFAULT_TENANT;
use serde_json::json;

use crate::harness::env;

/// A loop whose body calls a tool kept for a compensation (its records stay live), runs an
/// inner loop (packed when it ends, then taken over by the outer loop's packs) and finishes.
const NESTED: &str = r#"
name: packed
version: 1
nodes:
  - id: each
    type: loop
    for_each: "${ input.items }"
    body:
      nodes:
        - {id: x, type: tool, tool: test.echo, with: {n: "${ item }"}, compensate: {tool: test.undo, with: {n: "${ args.n }"}}}
        - id: inner
          type: loop
          for_each: "${ input.inner }"
          body:
            nodes:
              - {id: y, type: transform, expr: item}
              - {id: g, type: finish, output: "${ y.output }"}
            edges:
              - {from: y, to: g}
        - {id: f, type: finish, output: "${ x.output.n }"}
      edges:
        - {from: x, to: inner}
        - {from: inner, to: f}
  - {id: done, type: finish, output: {count: "${ length(each.output) }"}}
edges:
  - {from: each, to: done}
"#;

/// The iteration of a key `each[{i}]/…`.
fn iteration_of(key: &str) -> u64 {
    key["each[".len()..]
        .split(']')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn pages_of_nodes(store: &dyn ExecutionStore, id: &str, limit: u32) -> Vec<NodeRecord> {
    let mut out: Vec<NodeRecord> = Vec::new();
    loop {
        let after = out.last().map(|r| r.key.clone());
        let page = store
            .node_records_page(id, after.as_deref(), limit)
            .await
            .unwrap();
        assert!(page.len() <= limit as usize);
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

async fn pages_of_events(store: &dyn ExecutionStore, id: &str, limit: u32) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let page = store.events_page(id, after, limit).await.unwrap();
        assert!(page.len() <= limit as usize);
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

#[tokio::test]
async fn a_packed_loop_reads_back_whole_and_by_pages_from_any_cursor() {
    let env = env().await;
    let (outer, inner) = (40usize, 20usize);
    let o = env
        .run(
            NESTED,
            json!({"items": (0..outer).collect::<Vec<_>>(), "inner": (0..inner).collect::<Vec<_>>()}),
        )
        .await;
    assert_eq!(o.status, ExecStatus::Succeeded, "{:?}", o.error);
    assert_eq!(o.output, Some(json!({"count": outer})));
    let store = env.store.as_ref();
    let id = o.execution_id.as_str();

    // Every record once, in key order, with what it did.
    let nodes = store.node_records(id).await.unwrap();
    let mut want: Vec<String> = vec!["done".into(), "each".into()];
    for i in 0..outer {
        for k in ["x", "inner", "f"] {
            want.push(format!("each[{i}]/{k}"));
        }
        for j in 0..inner {
            want.push(format!("each[{i}]/inner[{j}]/y"));
            want.push(format!("each[{i}]/inner[{j}]/g"));
        }
    }
    want.sort();
    let keys: Vec<&str> = nodes.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(keys, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(store.count_nodes(id).await.unwrap(), want.len() as u64);
    for n in &nodes {
        assert_eq!(n.status, NodeStatus::Succeeded, "{}", n.key);
        assert!(n.finished_at.is_some(), "{}", n.key);
        let last = n.key.rsplit('/').next().unwrap();
        if n.key.contains('/') {
            assert_eq!(n.node_id, last, "{}", n.key);
        }
        if let Some(rest) = n.key.strip_prefix("each[") {
            let i: u64 = rest.split(']').next().unwrap().parse().unwrap();
            match last {
                "f" => assert_eq!(n.output.as_deref(), Some(&json!(i)), "{}", n.key),
                "x" => assert_eq!(n.output.as_deref(), Some(&json!({"n": i})), "{}", n.key),
                "y" | "g" => {
                    let j: u64 = n
                        .key
                        .rsplit('[')
                        .next()
                        .unwrap()
                        .split(']')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert_eq!(n.output.as_deref(), Some(&json!(j)), "{}", n.key);
                }
                _ => {}
            }
        }
    }

    // Pages of any size, each page's last key the next one's cursor, give the same records.
    for limit in [1, 7, 64, 5_000] {
        let paged = pages_of_nodes(store, id, limit).await;
        assert_eq!(paged, nodes, "pages of {limit}");
    }

    // Events: consecutive sequence numbers from 1, whole and by pages.
    let events = store.events(id).await.unwrap();
    assert!(events.len() > 2 * want.len() / 2, "{} events", events.len());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
    }
    assert_eq!(store.count_events(id).await.unwrap(), events.len() as u64);
    for limit in [1, 5, 333, 100_000] {
        assert_eq!(
            pages_of_events(store, id, limit).await,
            events,
            "pages of {limit}"
        );
    }
    let succeeded = events
        .iter()
        .filter(|e| e.kind.as_str() == "node_succeeded")
        .count();
    assert_eq!(succeeded, want.len(), "one node_succeeded per record");

    // Packed: the history takes a few bytes per record (rows took ~60).
    let stored = store.stored_bytes(id).await.unwrap();
    assert!(
        stored < 30 * want.len() as u64,
        "{stored} bytes stored for {} records",
        want.len()
    );

    // Erasing the execution takes its packs with it.
    let (gone, _) = store
        .erase_executions(DEFAULT_TENANT, &[id.to_string()])
        .await
        .unwrap();
    assert_eq!(gone, 1);
    assert_eq!(store.count_nodes(id).await.unwrap(), 0);
    assert_eq!(store.count_events(id).await.unwrap(), 0);
    assert_eq!(store.stored_bytes(id).await.unwrap(), 0);
}

/// A loop too short to pack (and one just long enough) reads back the same way.
#[tokio::test]
async fn short_and_just_packed_loops_read_back_alike() {
    let env = env().await;
    for n in [3usize, 16, 17, 101] {
        let o = env
            .run(
                NESTED,
                json!({"items": (0..n).collect::<Vec<_>>(), "inner": [1]}),
            )
            .await;
        assert_eq!(o.output, Some(json!({"count": n})));
        let store = env.store.as_ref();
        let nodes = store.node_records(&o.execution_id).await.unwrap();
        assert_eq!(nodes.len(), 2 + n * 5, "{n} iterations");
        assert!(nodes.windows(2).all(|w| w[0].key < w[1].key));
        assert_eq!(pages_of_nodes(store, &o.execution_id, 3).await, nodes);
        let events = store.events(&o.execution_id).await.unwrap();
        assert_eq!(pages_of_events(store, &o.execution_id, 4).await, events);
        assert_eq!(
            store.count_events(&o.execution_id).await.unwrap(),
            events.len() as u64
        );
    }
}

/// A loop body's `finish` returning its tool's output: the store keeps the finish's output as
/// a reference to the tool's row (SQLite, the kilobyte written once); every reader gives both
/// outputs back, for a loop too short to pack and for packed ones.
const SAME_OUTPUT: &str = r#"
name: same_output
version: 1
nodes:
  - id: each
    type: loop
    for_each: "${ input.items }"
    body:
      nodes:
        - {id: x, type: tool, tool: test.echo, with: {n: "${ item }", text: "${ input.text }"}}
        - {id: f, type: finish, output: "${ x.output }"}
      edges:
        - {from: x, to: f}
  - {id: done, type: finish, output: {count: "${ length(each.output) }"}}
edges:
  - {from: each, to: done}
"#;

#[tokio::test]
async fn a_finish_returning_its_tools_output_reads_back_for_short_and_packed_loops() {
    let env = env().await;
    let text = "t".repeat(600);
    for n in [3usize, 40] {
        let o = env
            .run(
                SAME_OUTPUT,
                json!({"items": (0..n).collect::<Vec<_>>(), "text": text}),
            )
            .await;
        assert_eq!(o.status, ExecStatus::Succeeded, "{:?}", o.error);
        assert_eq!(o.output, Some(json!({"count": n})));
        let store = env.store.as_ref();
        let nodes = store.node_records(&o.execution_id).await.unwrap();
        assert_eq!(nodes.len(), 2 + n * 2, "{n} iterations");
        for n in nodes.iter().filter(|n| n.key.contains('/')) {
            let i = iteration_of(&n.key);
            assert_eq!(
                n.output.as_deref(),
                Some(&json!({"n": i, "text": text})),
                "{}",
                n.key
            );
        }
        assert_eq!(pages_of_nodes(store, &o.execution_id, 3).await, nodes);
        if n == 3 {
            // Unpacked: the text is stored twice per iteration (the tool's row: its output, and
            // its request, which the record keeps), once per item of the loop's output, and in
            // the input; with a copy in each finish's row too it was 6,841 bytes before
            // requests were kept.
            let stored = store.stored_bytes(&o.execution_id).await.unwrap();
            let text_copies = (3 * n as u64 + 1) * text.len() as u64;
            assert!(stored < text_copies + 1_200, "{stored} bytes stored");
        }
    }
}

/// A loop that stops at a human node in its iteration `input.stop`; every other iteration
/// goes straight from the tool to the finish.
const HALFWAY: &str = r#"
name: halfway
version: 1
nodes:
  - id: each
    type: loop
    for_each: "${ input.items }"
    body:
      nodes:
        - {id: x, type: tool, tool: test.echo, with: {n: "${ item }", text: "${ input.text }"}}
        - {id: ask, type: human, prompt: "go on?"}
        - {id: f, type: finish, output: "${ x.output }"}
      edges:
        - {from: x, to: ask, when: "item == input.stop"}
        - {from: x, to: f, when: "item != input.stop"}
        - {from: ask, to: f}
  - {id: done, type: finish, output: {count: "${ length(each.output) }", last: "${ each.output[-1].n }"}}
edges:
  - {from: each, to: done}
"#;

/// The fold writes iterations that end together straight into packs (a run of each chunk of
/// 100 iterations) while the loop runs, and leaves those it sees a few at a time as rows: how
/// many of each depends on timing, and both are read alike. A claim in the middle of the loop
/// reads the ended iterations' outputs (each iteration's mark refers to its tool's row,
/// packed or not), and every reader gives every record back, whole and by pages from any
/// cursor, across chunks of one to four digits.
#[tokio::test]
async fn iterations_packed_as_they_end_resume_and_read_back_from_any_cursor() {
    let env = env().await;
    let text = "t".repeat(300);
    let n = 1_234u64;
    let stop = 1_100u64;
    let o = env
        .run(
            HALFWAY,
            json!({"items": (0..n).collect::<Vec<_>>(), "text": text, "stop": stop}),
        )
        .await;
    let id = o.execution_id.clone();
    assert_eq!(o.status, ExecStatus::Waiting, "{:?}", o.error);
    let store = env.store.as_ref();
    let waiting = store.node_records(&id).await.unwrap();
    assert!(
        waiting.iter().any(|r| r.key == format!("each[{stop}]/ask")),
        "the run waits at the human node"
    );
    assert_eq!(pages_of_nodes(store, &id, 7).await, waiting);

    env.engine
        .answer(
            DEFAULT_TENANT,
            &id,
            &format!("each[{stop}]/ask"),
            &json!(true),
        )
        .await
        .unwrap();
    let o = env.resume(&id).await;
    assert_eq!(o.status, ExecStatus::Succeeded, "{:?}", o.error);
    assert_eq!(o.output, Some(json!({"count": n, "last": n - 1})));

    let nodes = store.node_records(&id).await.unwrap();
    let mut want: Vec<String> = vec!["done".into(), "each".into()];
    for i in 0..n {
        for k in ["x", "ask", "f"] {
            want.push(format!("each[{i}]/{k}"));
        }
    }
    want.sort();
    let keys: Vec<&str> = nodes.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(store.count_nodes(&id).await.unwrap(), want.len() as u64);
    for r in nodes
        .iter()
        .filter(|r| r.key.ends_with("/x") || r.key.ends_with("/f"))
    {
        let i = iteration_of(&r.key);
        assert_eq!(
            r.output.as_deref(),
            Some(&json!({"n": i, "text": text})),
            "{}",
            r.key
        );
        assert_eq!(r.status, NodeStatus::Succeeded, "{}", r.key);
    }
    for r in nodes.iter().filter(|r| r.key.ends_with("/ask")) {
        let asked = r.key == format!("each[{stop}]/ask");
        let want = if asked {
            NodeStatus::Succeeded
        } else {
            NodeStatus::Skipped
        };
        assert_eq!(r.status, want, "{}", r.key);
    }
    for limit in [3, 64, 1_000] {
        assert_eq!(
            pages_of_nodes(store, &id, limit).await,
            nodes,
            "pages of {limit}"
        );
    }
    // A page may start at any record: after each key, the rest, in order.
    for (at, r) in nodes.iter().enumerate().step_by(97) {
        let page = store
            .node_records_page(&id, Some(&r.key), 50)
            .await
            .unwrap();
        let end = (at + 1 + 50).min(nodes.len());
        assert_eq!(page, nodes[at + 1..end], "after {}", r.key);
    }
}
