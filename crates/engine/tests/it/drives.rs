//! Drives of one execution in one process: the second waits for the first instead of running
//! the same steps beside it.

use hilo_core::store::DEFAULT_TENANT;
use hilo_engine::Mode;
use serde_json::json;

use crate::harness::{env, load};

#[tokio::test]
async fn two_drives_of_one_execution_in_one_process_run_each_step_once() {
    let env = env().await;
    let wf = load(
        r#"
name: slow
version: 1
nodes:
  - {id: a, type: tool, tool: test.sleep, with: {ms: 40}}
  - {id: b, type: tool, tool: test.sleep, with: {ms: 40}}
  - {id: c, type: tool, tool: test.sleep, with: {ms: 40}}
  - {id: done, type: finish, output: "${ c.output }"}
edges:
  - {from: a, to: b}
  - {from: b, to: c}
  - {from: c, to: done}
"#,
    );
    for _ in 0..5 {
        let id = env
            .engine
            .create(DEFAULT_TENANT, &wf, true, json!({}), false)
            .await
            .unwrap();
        // Both claim under this process's owner id, which the store accepts twice.
        let (first, second) = tokio::join!(
            env.engine
                .drive(DEFAULT_TENANT, &id, Mode::Foreground, false),
            env.engine
                .drive(DEFAULT_TENANT, &id, Mode::Foreground, false),
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first.status.as_str(), "succeeded");
        assert_eq!(second.status.as_str(), "succeeded");
        assert_eq!(first.output, Some(json!({"slept_ms": 40})));
        assert_eq!(second.output, first.output);
        let trace = env.trace(&id).await;
        for node in ["a", "b", "c"] {
            let started = trace
                .lines()
                .filter(|l| *l == format!("node_started {node} #1"))
                .count();
            assert_eq!(started, 1, "node {node} started {started} times:\n{trace}");
        }
        assert_eq!(
            trace
                .lines()
                .filter(|l| *l == "execution_succeeded")
                .count(),
            1,
            "{trace}"
        );
    }
}
