//! Episodic memory: every backend keeps episodes per tenant, lists them newest first with
//! filters and keyset pages, gives recall candidates of one embedding model, replaces an
//! episode recorded again and forgets the episodes of given executions.

use hilo_core::episode::{Episode, EpisodeFilter, GoalVector};
use hilo_core::store::Store;
use serde_json::json;

pub async fn run_all(s: &dyn Store) {
    episodes_are_kept_listed_and_recalled_per_tenant(s).await;
}

fn episode(tenant: &str, id: &str, at: i64, achieved: bool, model: Option<&str>) -> Episode {
    Episode {
        id: id.into(),
        tenant: tenant.into(),
        execution_id: Some(format!("exec-{id}")),
        workflow: Some("ops".into()),
        node_key: Some("plan".into()),
        agent: if at % 2 == 0 { "planner" } else { "reasoning" }.into(),
        goal: format!("goal {id}"),
        plan: json!({"steps": [{"id": "s1", "tool": "lookup"}]}),
        steps: json!([{"attempt": 1}]),
        achieved,
        outcome: if achieved {
            "done"
        } else {
            "NOT_FOUND: no such order"
        }
        .into(),
        cost_nanos: 1_250 * at,
        embedding: model.map(|m| GoalVector {
            model: m.into(),
            values: vec![0.25, -0.5, 0.125, 1.0 / 3.0],
        }),
        created_at: 1_000 + at,
    }
}

async fn episodes_are_kept_listed_and_recalled_per_tenant(s: &dyn Store) {
    for i in 0..6 {
        let e = episode("ep-a", &format!("e{i}"), i, i % 3 != 0, Some("mini"));
        s.record_episode(&e).await.unwrap();
    }
    s.record_episode(&episode("ep-a", "other-model", 10, true, Some("big")))
        .await
        .unwrap();
    s.record_episode(&episode("ep-a", "no-vector", 11, true, None))
        .await
        .unwrap();
    s.record_episode(&episode("ep-b", "theirs", 12, true, Some("mini")))
        .await
        .unwrap();

    // Round trip, floats and JSON included.
    let got = s.get_episode("ep-a", "e4").await.unwrap().unwrap();
    assert_eq!(got, episode("ep-a", "e4", 4, true, Some("mini")));
    assert!(s.get_episode("ep-b", "e4").await.unwrap().is_none());

    // Newest first, filters, keyset pages.
    let all = s
        .list_episodes(
            "ep-a",
            &EpisodeFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "no-vector",
            "other-model",
            "e5",
            "e4",
            "e3",
            "e2",
            "e1",
            "e0"
        ]
    );
    let failed = s
        .list_episodes(
            "ep-a",
            &EpisodeFilter {
                achieved: Some(false),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        failed.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e3", "e0"]
    );
    let planners = s
        .list_episodes(
            "ep-a",
            &EpisodeFilter {
                agent: Some("planner".into()),
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        planners.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["other-model", "e4"]
    );
    let last = planners.last().unwrap();
    let next = s
        .list_episodes(
            "ep-a",
            &EpisodeFilter {
                agent: Some("planner".into()),
                before: Some((last.created_at, last.id.clone())),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e2", "e0"]
    );

    // Recall candidates: one model's vectors only, newest first, this tenant only.
    let c = s
        .episode_candidates("ep-a", None, Some("mini"), 4)
        .await
        .unwrap();
    assert_eq!(
        c.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e5", "e4", "e3", "e2"]
    );
    let c = s
        .episode_candidates("ep-a", Some("reasoning"), None, 100)
        .await
        .unwrap();
    assert_eq!(
        c.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["no-vector", "e5", "e3", "e1"]
    );

    // Recorded again (a retried attempt): replaced, not doubled.
    let mut again = episode("ep-a", "e5", 5, false, Some("mini"));
    again.outcome = "TIMEOUT".into();
    s.record_episode(&again).await.unwrap();
    assert_eq!(s.get_episode("ep-a", "e5").await.unwrap().unwrap(), again);
    let n = s
        .list_episodes(
            "ep-a",
            &EpisodeFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .len();
    assert_eq!(n, 8);

    // Forgetting by execution: only this tenant's.
    let gone = s
        .delete_episodes_of("ep-a", &["exec-e1".into(), "exec-theirs".into()])
        .await
        .unwrap();
    assert_eq!(gone, 1);
    assert!(s.get_episode("ep-a", "e1").await.unwrap().is_none());
    assert!(s.get_episode("ep-b", "theirs").await.unwrap().is_some());
}
