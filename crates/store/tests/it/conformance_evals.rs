//! Behaviour every backend must have for evaluations (`EvalStore`); run by
//! `conformance::run_all`. Tenants are unique to this module, so it runs on a shared store.

use hilo_core::evals::EvalRun;
use hilo_core::store::Store;
use serde_json::json;

pub async fn run_all(s: &dyn Store) {
    evaluations_are_written_replaced_listed_and_kept_per_tenant(s).await;
}

fn eval(id: &str, tenant: &str, workflow: &str, created_at: i64) -> EvalRun {
    EvalRun {
        id: id.into(),
        tenant: tenant.into(),
        workflow: workflow.into(),
        version: 2,
        status: "running".into(),
        summary: json!({"cases": 50, "repeat": 2}),
        report: None,
        error: None,
        created_at,
        finished_at: None,
    }
}

async fn evaluations_are_written_replaced_listed_and_kept_per_tenant(s: &dyn Store) {
    let t = "evals-acme";
    s.put_eval(&eval("e1", t, "support", 1_000)).await.unwrap();
    s.put_eval(&eval("e2", t, "triage", 2_000)).await.unwrap();
    s.put_eval(&eval("e3", "evals-globex", "support", 3_000))
        .await
        .unwrap();
    let running = s.get_eval(t, "e1").await.unwrap().unwrap();
    assert_eq!(running.status, "running");
    assert_eq!(running.report, None);
    // Done: replaced with its report, which a list leaves out.
    let mut done = eval("e1", t, "support", 1_000);
    done.status = "done".into();
    done.summary = json!({"cases": 50, "pass_rate": 0.5});
    done.report = Some(json!({"candidate": {"pass_rate": 0.5}}));
    done.finished_at = Some(1_500);
    s.put_eval(&done).await.unwrap();
    assert_eq!(s.get_eval(t, "e1").await.unwrap().unwrap(), done);
    let all = s.list_evals(t, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e2", "e1"]
    );
    assert!(all.iter().all(|e| e.report.is_none()));
    assert_eq!(all[1].summary["pass_rate"], 0.5);
    let support = s.list_evals(t, Some("support"), 10).await.unwrap();
    assert_eq!(support.len(), 1);
    assert_eq!(s.list_evals(t, None, 1).await.unwrap().len(), 1);
    // Another tenant's is not found.
    assert!(s.get_eval(t, "e3").await.unwrap().is_none());
    assert!(s.get_eval("evals-globex", "e1").await.unwrap().is_none());
    // Deleted for its tenant only.
    assert!(!s.delete_eval("evals-globex", "e1").await.unwrap());
    assert!(s.delete_eval(t, "e1").await.unwrap());
    assert!(s.get_eval(t, "e1").await.unwrap().is_none());
    assert!(!s.delete_eval(t, "e1").await.unwrap());
    assert_eq!(s.list_evals(t, None, 10).await.unwrap().len(), 1);
}
