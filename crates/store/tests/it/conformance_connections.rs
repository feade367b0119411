//! Behaviour every backend must have for OAuth 2.0 connections (`ConnectionStore`): rows per
//! (tenant, connection, entity) that never cross, the refresh lease held by one caller at a
//! time (also when many race for it), and authorization states taken once. Run by
//! `conformance::run_all`; tenants are unique to this module.

use hilo_core::store::Store;
use hilo_core::tool::{ConnectionRow, ConnectionState, SealedSecret};

fn sealed(n: &str) -> SealedSecret {
    SealedSecret {
        key_id: "k1".into(),
        nonce: format!("nonce-{n}"),
        ciphertext: format!("cipher-{n}"),
    }
}

fn row(tenant: &str, entity: &str, n: &str) -> ConnectionRow {
    ConnectionRow {
        tenant: tenant.into(),
        connection: "shop".into(),
        entity: entity.into(),
        sealed: sealed(n),
        scopes: "orders:read".into(),
        status: "connected".into(),
        expires_at: Some(5_000),
        last_refresh_at: None,
        last_error: None,
        created_at: 1_000,
        updated_at: 1_000,
    }
}

pub async fn run_all(s: &dyn Store) {
    rows_are_per_tenant_connection_and_entity(s).await;
    one_caller_holds_the_lease(s).await;
    states_are_taken_once(s).await;
}

async fn rows_are_per_tenant_connection_and_entity(s: &dyn Store) {
    let (a, b) = ("conn-a".to_string(), "conn-b".to_string());
    s.put_connection(&row(&a, "", "own")).await.unwrap();
    s.put_connection(&row(&a, "cust-1", "c1")).await.unwrap();
    s.put_connection(&row(&b, "cust-1", "b1")).await.unwrap();
    let got = s
        .get_connection(&a, "shop", "cust-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.sealed, sealed("c1"));
    assert_eq!(got.expires_at, Some(5_000));
    assert!(
        s.get_connection(&a, "shop", "cust-2")
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.get_connection(&a, "crm", "").await.unwrap().is_none());
    // Replaced in place.
    let mut newer = row(&a, "cust-1", "c1-2");
    newer.last_refresh_at = Some(2_000);
    newer.last_error = Some("refused".into());
    newer.status = "refresh_failed".into();
    s.put_connection(&newer).await.unwrap();
    let got = s
        .get_connection(&a, "shop", "cust-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, newer);
    let listed = s.list_connections(&a).await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|r| r.entity.as_str()).collect();
    assert_eq!(keys, ["", "cust-1"]);
    assert_eq!(s.list_connections(&b).await.unwrap().len(), 1);
    assert!(s.delete_connection(&a, "shop", "cust-1").await.unwrap());
    assert!(!s.delete_connection(&a, "shop", "cust-1").await.unwrap());
    assert!(
        s.get_connection(&b, "shop", "cust-1")
            .await
            .unwrap()
            .is_some()
    );
}

async fn one_caller_holds_the_lease(s: &dyn Store) {
    let t = "conn-lease".to_string();
    s.put_connection(&row(&t, "", "x")).await.unwrap();
    // Ten callers race: one gets it.
    let races: Vec<_> = (0..10)
        .map(|_| s.lease_connection(&t, "shop", "", 10_000, 40_000))
        .collect();
    let won = futures_util::future::join_all(races)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(won, 1);
    // Held until 40,000 (or released); a put keeps the lease.
    assert!(
        !s.lease_connection(&t, "shop", "", 20_000, 50_000)
            .await
            .unwrap()
    );
    s.put_connection(&row(&t, "", "y")).await.unwrap();
    assert!(
        !s.lease_connection(&t, "shop", "", 20_000, 50_000)
            .await
            .unwrap()
    );
    assert!(
        s.lease_connection(&t, "shop", "", 40_000, 70_000)
            .await
            .unwrap()
    );
    s.release_connection(&t, "shop", "").await.unwrap();
    assert!(
        s.lease_connection(&t, "shop", "", 40_001, 70_000)
            .await
            .unwrap()
    );
    // No row, no lease.
    assert!(
        !s.lease_connection(&t, "shop", "nobody", 1, 2)
            .await
            .unwrap()
    );
}

async fn states_are_taken_once(s: &dyn Store) {
    let state = ConnectionState {
        state: "conn-state-1".into(),
        tenant: "conn-st".into(),
        connection: "shop".into(),
        entity: "cust-9".into(),
        sealed_verifier: sealed("v"),
        redirect_uri: "https://hilo.example.com/oauth/callback".into(),
        created_at: 1_000,
        expires_at: 901_000,
    };
    s.put_connection_state(&state).await.unwrap();
    let takes: Vec<_> = (0..4)
        .map(|_| s.take_connection_state("conn-state-1"))
        .collect();
    let got: Vec<_> = futures_util::future::join_all(takes)
        .await
        .into_iter()
        .filter_map(|r| r.unwrap())
        .collect();
    assert_eq!(got, vec![state.clone()]);
    assert!(
        s.take_connection_state("conn-state-1")
            .await
            .unwrap()
            .is_none()
    );
    // An expired one is dropped when a later one is put.
    let mut old = state.clone();
    old.state = "conn-state-old".into();
    old.expires_at = 2_000;
    s.put_connection_state(&old).await.unwrap();
    let mut later = state.clone();
    later.state = "conn-state-later".into();
    later.created_at = 3_000;
    s.put_connection_state(&later).await.unwrap();
    assert!(
        s.take_connection_state("conn-state-old")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.take_connection_state("conn-state-later")
            .await
            .unwrap()
            .is_some()
    );
}
