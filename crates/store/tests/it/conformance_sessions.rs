//! Behaviour every backend must have for console sessions and chat tokens (`SessionStore`);
//! run by `conformance::run_all`. Ids are unique to this module, so it runs on a shared store;
//! the caps are checked against the live rows this module made (no other module makes any).

use hilo_core::session::{ChatToken, ConsoleSession, SessionCaps};
use hilo_core::store::Store;

pub async fn run_all(s: &dyn Store) {
    console_sessions_are_found_by_hash_until_they_expire_or_end(s).await;
    chat_tokens_are_found_by_hash_until_they_expire_or_end(s).await;
    creations_stop_at_the_cap_of_live_rows(s).await;
    expired_sessions_and_tokens_are_pruned(s).await;
}

/// Caps of `n` per tenant and per key.
fn caps(n: u64) -> SessionCaps {
    SessionCaps {
        per_tenant: n,
        per_key: n,
    }
}

fn session(id_hash: &str, tenant: &str, expires_at: i64) -> ConsoleSession {
    ConsoleSession {
        id_hash: id_hash.into(),
        tenant: tenant.into(),
        key_hash: format!("key-of-{id_hash}"),
        csrf: format!("csrf-of-{id_hash}"),
        created_at: 1_000,
        expires_at,
    }
}

fn chat(token_hash: &str, tenant: &str, expires_at: i64) -> ChatToken {
    ChatToken {
        token_hash: token_hash.into(),
        tenant: tenant.into(),
        conversation: format!("conv-of-{token_hash}"),
        created_at: 1_000,
        expires_at,
    }
}

async fn console_sessions_are_found_by_hash_until_they_expire_or_end(s: &dyn Store) {
    let a = session("sess-a", "acme", 10_000);
    let b = session("sess-b", "globex", 10_000);
    assert!(
        s.create_console_session(&a, 1_000, caps(100))
            .await
            .unwrap()
    );
    assert!(
        s.create_console_session(&b, 1_000, caps(100))
            .await
            .unwrap()
    );
    assert_eq!(s.console_session("sess-a", 9_999).await.unwrap(), Some(a));
    assert_eq!(
        s.console_session("sess-b", 2_000).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(s.console_session("sess-zz", 2_000).await.unwrap(), None);
    // Expired at its expires_at: absent, though still stored until pruned.
    assert_eq!(s.console_session("sess-a", 10_000).await.unwrap(), None);
    // Sign-out.
    assert!(s.delete_console_session("sess-b").await.unwrap());
    assert!(!s.delete_console_session("sess-b").await.unwrap());
    assert_eq!(s.console_session("sess-b", 2_000).await.unwrap(), None);
    // A chat token of the same hash is another thing.
    assert_eq!(s.chat_token("sess-a", 2_000).await.unwrap(), None);
    assert!(s.delete_console_session("sess-a").await.unwrap());
}

async fn chat_tokens_are_found_by_hash_until_they_expire_or_end(s: &dyn Store) {
    let t = chat("chat-a", "acme", 20_000);
    assert!(s.create_chat_token(&t, 1_000, 100).await.unwrap());
    assert_eq!(s.chat_token("chat-a", 19_999).await.unwrap(), Some(t));
    assert_eq!(s.chat_token("chat-a", 20_000).await.unwrap(), None);
    assert_eq!(s.chat_token("chat-zz", 1_000).await.unwrap(), None);
    assert_eq!(s.console_session("chat-a", 1_000).await.unwrap(), None);
    assert!(s.delete_chat_token("chat-a").await.unwrap());
    assert!(!s.delete_chat_token("chat-a").await.unwrap());
    assert_eq!(s.chat_token("chat-a", 1_000).await.unwrap(), None);
}

async fn creations_stop_at_the_cap_of_live_rows(s: &dyn Store) {
    // Three live sessions of acme at 50_000 (one more is expired then and does not count).
    assert!(
        s.create_console_session(&session("cap-old", "acme", 40_000), 30_000, caps(3))
            .await
            .unwrap()
    );
    for id in ["cap-1", "cap-2", "cap-3"] {
        assert!(
            s.create_console_session(&session(id, "acme", 90_000), 50_000, caps(3))
                .await
                .unwrap(),
            "{id}"
        );
    }
    assert!(
        !s.create_console_session(&session("cap-4", "acme", 90_000), 50_000, caps(3))
            .await
            .unwrap(),
        "acme is at its cap"
    );
    assert!(
        s.create_console_session(&session("cap-g", "globex", 90_000), 50_000, caps(3))
            .await
            .unwrap(),
        "the cap counts the tenant's own sessions only"
    );
    assert_eq!(s.console_session("cap-4", 50_000).await.unwrap(), None);
    // Once one ends, there is room again.
    assert!(s.delete_console_session("cap-1").await.unwrap());
    assert!(
        s.create_console_session(&session("cap-4", "acme", 90_000), 50_000, caps(3))
            .await
            .unwrap()
    );
    // One key's sessions have a cap of their own, below the tenant's.
    let per_key = SessionCaps {
        per_tenant: 100,
        per_key: 2,
    };
    let of_key = |id: &str| ConsoleSession {
        key_hash: "one-key".into(),
        ..session(id, "initech", 90_000)
    };
    assert!(
        s.create_console_session(&of_key("key-1"), 50_000, per_key)
            .await
            .unwrap()
    );
    assert!(
        s.create_console_session(&of_key("key-2"), 50_000, per_key)
            .await
            .unwrap()
    );
    assert!(
        !s.create_console_session(&of_key("key-3"), 50_000, per_key)
            .await
            .unwrap()
    );
    assert!(
        s.create_console_session(&session("key-other", "initech", 90_000), 50_000, per_key)
            .await
            .unwrap(),
        "another key of the tenant"
    );
    // Chat tokens have a cap of their own, per tenant.
    for id in ["cap-c1", "cap-c2"] {
        assert!(
            s.create_chat_token(&chat(id, "acme", 90_000), 50_000, 2)
                .await
                .unwrap()
        );
    }
    assert!(
        !s.create_chat_token(&chat("cap-c3", "acme", 90_000), 50_000, 2)
            .await
            .unwrap()
    );
    assert!(
        s.create_chat_token(&chat("cap-cg", "globex", 90_000), 50_000, 2)
            .await
            .unwrap(),
        "another tenant's chats"
    );
    // Later, when they have expired, they do not count.
    assert!(
        s.create_chat_token(&chat("cap-c3", "acme", 200_000), 95_000, 2)
            .await
            .unwrap()
    );
    for id in [
        "cap-old",
        "cap-2",
        "cap-3",
        "cap-4",
        "cap-g",
        "key-1",
        "key-2",
        "key-other",
    ] {
        assert!(s.delete_console_session(id).await.unwrap(), "{id}");
    }
    for id in ["cap-c1", "cap-c2", "cap-c3", "cap-cg"] {
        assert!(s.delete_chat_token(id).await.unwrap(), "{id}");
    }
}

async fn expired_sessions_and_tokens_are_pruned(s: &dyn Store) {
    assert!(
        s.create_console_session(&session("prune-1", "acme", 300_000), 1_000, caps(100))
            .await
            .unwrap()
    );
    assert!(
        s.create_console_session(&session("prune-2", "acme", 400_000), 1_000, caps(100))
            .await
            .unwrap()
    );
    assert!(
        s.create_chat_token(&chat("prune-c", "acme", 300_000), 1_000, 100)
            .await
            .unwrap()
    );
    assert_eq!(s.prune_sessions(300_000).await.unwrap(), 2);
    assert!(!s.delete_console_session("prune-1").await.unwrap());
    assert!(!s.delete_chat_token("prune-c").await.unwrap());
    assert_eq!(
        s.console_session("prune-2", 300_000)
            .await
            .unwrap()
            .map(|x| x.expires_at),
        Some(400_000)
    );
    assert_eq!(s.prune_sessions(400_000).await.unwrap(), 1);
    assert_eq!(s.prune_sessions(400_000).await.unwrap(), 0);
}
