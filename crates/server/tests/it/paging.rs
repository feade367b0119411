//! Cursor pagination of the lists: paging through `/tasks`, `/conversations` and `/audit`
//! with a small `limit` returns every item exactly once, in the list's order, on SQLite and
//! on PostgreSQL (the local server at 127.0.0.1:5432, user `postgres`; a fresh database per
//! test, dropped at the end).

use std::collections::BTreeSet;

use hilo_core::access::Scope;
use hilo_server::config::Settings;
use serde_json::{Value, json};

use crate::common::{ASK, PgDb, THREE_STEPS, TestServer};

/// Every page of `path` with `limit`, following `next_cursor`; the items in order.
async fn page_all(s: &TestServer, key: &str, path: &str, limit: u32) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let url = match &cursor {
            None => format!("{path}{sep}limit={limit}"),
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
        };
        let (code, v) = s.get(key, &url).await;
        assert_eq!(code, 200, "{url}: {v}");
        let page = v["items"].as_array().unwrap();
        assert!(page.len() <= limit as usize, "{url}: {v}");
        items.extend(page.iter().cloned());
        match v.get("next_cursor").and_then(Value::as_str) {
            Some(c) => {
                assert_eq!(page.len(), limit as usize, "a page before the last is full");
                cursor = Some(c.to_string());
            }
            None => return items,
        }
    }
    panic!("{path}: more than 1000 pages");
}

/// The ids of `items` (field `field`), checked to be unique.
fn ids(items: &[Value], field: &str) -> Vec<String> {
    let ids: Vec<String> = items
        .iter()
        .map(|i| match &i[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an item came twice: {ids:?}");
    ids
}

async fn every_list_pages_each_item_once(s: &TestServer) {
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, ASK).await;
    assert!((200..300).contains(&code), "{v}");
    let (code, v) = s.import(&admin, THREE_STEPS).await;
    assert!((200..300).contains(&code), "{v}");

    // Seven waiting human tasks, three runs of three audited tool calls, seven
    // conversations (created back to back: several share a millisecond).
    for _ in 0..7 {
        let (_, v) = s.post(&admin, "/workflows/ask/execute", json!({})).await;
        assert_eq!(v["status"], "waiting", "{v}");
    }
    for n in 0..3 {
        let (_, v) = s
            .post(
                &admin,
                "/workflows/three_steps/execute",
                json!({"input": {"n": n}}),
            )
            .await;
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    for n in 0..7 {
        let (code, v) = s
            .post(
                &admin,
                "/conversations",
                json!({"customer_id": format!("c{n}"), "channel": "web", "workflow": "three_steps"}),
            )
            .await;
        assert_eq!(code, 201, "{v}");
    }
    // The audit trail is written behind the runs: wait for all nine rows.
    let mut audit_rows = 0;
    for _ in 0..200 {
        let (_, v) = s.get(&admin, "/audit?limit=1000").await;
        audit_rows = v["items"].as_array().unwrap().len();
        if audit_rows >= 9 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(audit_rows, 9);

    for (path, field, max, total) in [
        ("/tasks", "id", 500, 7),
        ("/conversations", "id", 1000, 7),
        ("/audit", "id", 1000, 9),
    ] {
        let (_, whole) = s.get(&admin, &format!("{path}?limit={max}")).await;
        assert!(whole.get("next_cursor").is_none(), "{path}: {whole}");
        let whole = ids(whole["items"].as_array().unwrap(), field);
        assert_eq!(whole.len(), total, "{path}: {whole:?}");
        for limit in [1, 2, 3, 7] {
            let paged = ids(&page_all(s, &admin, path, limit).await, field);
            assert_eq!(paged, whole, "{path} with limit={limit}");
        }
        // A cursor this server did not give out.
        let (code, v) = s
            .get(&admin, &format!("{path}?limit=2&cursor=not-a-cursor!"))
            .await;
        assert_eq!(code, 400, "{path}: {v}");
        assert_eq!(v["code"], "INVALID_QUERY", "{v}");
    }
    // Filters still apply page by page.
    let filtered = page_all(s, &admin, "/tasks?skills=refunds", 2).await;
    assert_eq!(ids(&filtered, "id").len(), 7);
    let first = page_all(s, &admin, "/audit?tool=test.echo", 4).await;
    assert_eq!(ids(&first, "id").len(), 9);
    // Another tenant sees none of them.
    let other = s.key("globex", &[Scope::Admin]).await;
    for path in ["/tasks", "/conversations", "/audit"] {
        assert!(page_all(s, &other, path, 2).await.is_empty(), "{path}");
    }
}

#[tokio::test]
async fn lists_page_by_cursor_on_sqlite() {
    let s = TestServer::start().await;
    every_list_pages_each_item_once(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn lists_page_by_cursor_on_postgres() {
    let db = PgDb::create("paging");
    let s = TestServer::on(&db.url, Settings::default(), None).await;
    every_list_pages_each_item_once(&s).await;
    s.stop().await;
    drop(db);
}
