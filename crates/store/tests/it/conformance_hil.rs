//! Behaviour every backend must have for humans in the loop (`HilStore`): conversations,
//! messages, transitions, human agents and the queue (`hil_apply`); run by
//! `conformance::run_all`. Then the race the queue lock exists for: 50 conversations handed
//! over at once to 5 agents of capacity 3 (SQLite file, PostgreSQL).
//!
//! Each check uses its own tenant, so they run in any order on one store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hilo_core::hil::{
    AgentStatus, ConvFilter, ConvStatus, Conversation, Handover, HilChanges, HilError, HilOp,
    HumanAgent, ItemKind, ItemRef, ItemState, NewMessage, Sender, Transition, WorkItem,
};
use hilo_core::store::{Store, StoreError};
use serde_json::json;

pub async fn run_all(s: &dyn Store) {
    conversations_are_created_listed_and_updated(s).await;
    messages_are_numbered_and_paged(s).await;
    agents_are_upserted_and_found_by_email(s).await;
    handover_claim_and_resolve(s).await;
    release_transfer_and_back_to_ai(s).await;
    tasks_are_enqueued_once_and_closed(s).await;
    routing_assigns_other_queued_conversations(s).await;
}

// ---- helpers --------------------------------------------------------------------------------

fn conversation(tenant: &str, id: &str, status: ConvStatus, created_at: i64) -> Conversation {
    Conversation {
        id: id.into(),
        tenant: tenant.into(),
        customer_id: format!("cust-{id}"),
        channel: "web".into(),
        status,
        summary: None,
        summary_seq: None,
        metadata: json!({"order": id}),
        workflow: "support".into(),
        version: None,
        assigned_agent: None,
        handover: None,
        note: None,
        consecutive_errors: 0,
        handovers: 0,
        current_execution: None,
        callback_url: None,
        last_seq: 0,
        created_at,
        updated_at: created_at,
        handed_over_at: None,
        first_human_at: None,
        resolved_at: None,
        ended_at: None,
    }
}

fn agent(tenant: &str, id: &str, skills: &[&str], capacity: u32) -> HumanAgent {
    HumanAgent {
        id: id.into(),
        tenant: tenant.into(),
        name: format!("Agent {id}"),
        email: format!("{id}@example.com"),
        status: AgentStatus::Online,
        skills: skills.iter().map(|s| s.to_string()).collect(),
        capacity,
        load: 0,
        created_at: 1,
        updated_at: 1,
    }
}

fn handover(skills: &[&str], priority: i64, at: i64) -> Handover {
    Handover {
        reason: "the customer asked for a person".into(),
        trigger: "explicit_request".into(),
        node: Some("escalate".into()),
        skills: skills.iter().map(|s| s.to_string()).collect(),
        priority,
        execution_id: Some("ex-1".into()),
        context: json!({"messages": [{"sender": "user", "content": "help"}]}),
        at,
    }
}

fn handover_op(conv: &str, skills: &[&str], priority: i64, at: i64) -> HilOp {
    HilOp::Handover {
        conversation: conv.into(),
        handover: handover(skills, priority, at),
    }
}

fn claim(conv: &str, agent: &str) -> HilOp {
    HilOp::Claim {
        item: ItemRef::conversation(conv),
        agent: agent.into(),
    }
}

fn resolve(conv: &str, agent: &str) -> HilOp {
    HilOp::Resolve {
        conversation: conv.into(),
        agent: agent.into(),
        reason: "answered".into(),
    }
}

fn hil_err(e: StoreError) -> HilError {
    match e {
        StoreError::Hil(h) => h,
        other => panic!("expected a humans-in-the-loop error, got {other}"),
    }
}

async fn apply(s: &dyn Store, tenant: &str, op: HilOp, at: i64) -> HilChanges {
    match s.hil_apply(tenant, &op, at).await {
        Ok(c) => c,
        Err(e) => panic!("{op:?} refused: {e}"),
    }
}

async fn item(s: &dyn Store, tenant: &str, kind: ItemKind, key: &str) -> Option<WorkItem> {
    let mut all = s.list_items(tenant, None, None).await.unwrap();
    all.extend(
        s.list_items(tenant, None, Some(ItemState::Done))
            .await
            .unwrap(),
    );
    all.into_iter().find(|i| i.kind == kind && i.key == key)
}

async fn load(s: &dyn Store, tenant: &str, id: &str) -> u32 {
    s.get_agent(tenant, id).await.unwrap().load
}

/// Everything the tenant has, as the trait shows it.
#[derive(Debug, PartialEq)]
struct Dump {
    agents: Vec<HumanAgent>,
    open: Vec<WorkItem>,
    done: Vec<WorkItem>,
    conversations: Vec<(Conversation, Vec<Transition>)>,
}

async fn dump(s: &dyn Store, tenant: &str) -> Dump {
    let convs = s
        .list_conversations(
            tenant,
            &ConvFilter {
                limit: Some(1000),
                ..ConvFilter::default()
            },
        )
        .await
        .unwrap();
    let mut conversations = Vec::new();
    for c in convs {
        let t = s.list_transitions(tenant, &c.id).await.unwrap();
        conversations.push((c, t));
    }
    Dump {
        agents: s.list_agents(tenant).await.unwrap(),
        open: s.list_items(tenant, None, None).await.unwrap(),
        done: s
            .list_items(tenant, None, Some(ItemState::Done))
            .await
            .unwrap(),
        conversations,
    }
}

/// `op` is refused with `code`, and nothing the tenant has changed.
async fn refused(s: &dyn Store, tenant: &str, op: HilOp, at: i64, code: &str) -> HilError {
    let before = dump(s, tenant).await;
    let err = match s.hil_apply(tenant, &op, at).await {
        Ok(c) => panic!("{op:?} was accepted: {c:?}"),
        Err(e) => hil_err(e),
    };
    assert_eq!(err.code(), code, "{op:?}: {err}");
    assert_eq!(
        dump(s, tenant).await,
        before,
        "{op:?} refused changed nothing"
    );
    err
}

// ---- conversations --------------------------------------------------------------------------

async fn conversations_are_created_listed_and_updated(s: &dyn Store) {
    let t = "hil-conv";
    let mut c1 = conversation(t, "hc-1", ConvStatus::New, 1_000);
    c1.summary = Some("wants a refund".into());
    c1.version = Some(3);
    c1.callback_url = Some("https://example.com/hook".into());
    let c2 = conversation(t, "hc-2", ConvStatus::New, 2_000);
    let mut c3 = conversation(t, "hc-3", ConvStatus::New, 3_000);
    c3.customer_id = c1.customer_id.clone();
    for c in [&c1, &c2, &c3] {
        s.create_conversation(c).await.unwrap();
    }
    assert_eq!(s.get_conversation(t, "hc-1").await.unwrap(), c1);
    let dup = hil_err(s.create_conversation(&c1).await.unwrap_err());
    assert_eq!(dup.code(), "INVALID_HIL_INPUT", "{dup}");
    let missing = s.get_conversation(t, "nope").await.unwrap_err();
    assert_eq!(missing.code(), "CONVERSATION_NOT_FOUND");
    assert_eq!(
        s.get_conversation("hil-other", "hc-1")
            .await
            .unwrap_err()
            .code(),
        "CONVERSATION_NOT_FOUND",
        "tenants are isolated"
    );

    let ids = |v: Vec<Conversation>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let all = s
        .list_conversations(t, &ConvFilter::default())
        .await
        .unwrap();
    assert_eq!(ids(all), vec!["hc-3", "hc-2", "hc-1"], "newest first");
    let by_customer = ConvFilter {
        customer_id: Some(c1.customer_id.clone()),
        ..ConvFilter::default()
    };
    assert_eq!(
        ids(s.list_conversations(t, &by_customer).await.unwrap()),
        vec!["hc-3", "hc-1"]
    );
    let one = ConvFilter {
        limit: Some(1),
        ..ConvFilter::default()
    };
    assert_eq!(
        ids(s.list_conversations(t, &one).await.unwrap()),
        vec!["hc-3"]
    );
    let by_agent = ConvFilter {
        agent: Some("someone".into()),
        ..ConvFilter::default()
    };
    assert!(s.list_conversations(t, &by_agent).await.unwrap().is_empty());

    // A message comes in meanwhile: the conversation value below is older than the store's.
    s.add_message(
        t,
        "hc-1",
        &NewMessage {
            sender: Sender::User,
            author: None,
            content: "hello".into(),
            execution_id: None,
            at: 1_100,
            callback_url: None,
        },
    )
    .await
    .unwrap();

    // new → ai_processing, with its transition, as the server does it.
    let mut moved = c1.clone();
    let mut tr = Vec::new();
    hilo_core::hil::move_conversation(
        &mut moved,
        ConvStatus::AiProcessing,
        "customer",
        "first message",
        1_200,
        &mut tr,
    )
    .unwrap();
    moved.current_execution = Some("ex-9".into());
    moved.note = Some("be nice".into());
    s.update_conversation(&moved, ConvStatus::New, &tr)
        .await
        .unwrap();
    let got = s.get_conversation(t, "hc-1").await.unwrap();
    assert_eq!(got.status, ConvStatus::AiProcessing);
    assert_eq!(
        got.current_execution, None,
        "only swap_execution writes the run answering a message"
    );
    assert_eq!(got.note.as_deref(), Some("be nice"));
    assert_eq!(got.summary.as_deref(), Some("wants a refund"));
    assert_eq!(got.last_seq, 1, "a stale value does not undo add_message");
    assert_eq!(got.updated_at, 1_200);
    assert_eq!(s.list_transitions(t, "hc-1").await.unwrap(), tr);

    // The run answering a message: claimed once, settled once.
    assert!(
        s.swap_execution(t, "hc-1", None, Some("ex-9"), 1_200)
            .await
            .unwrap()
    );
    assert!(
        !s.swap_execution(t, "hc-1", None, Some("ex-10"), 1_200)
            .await
            .unwrap(),
        "a second run is refused while one answers"
    );
    let busy = ConvFilter {
        busy: true,
        ..ConvFilter::default()
    };
    assert_eq!(
        ids(s.list_conversations(t, &busy).await.unwrap()),
        vec!["hc-1"]
    );
    // update_conversation keeps it.
    s.update_conversation(&got, ConvStatus::AiProcessing, &[])
        .await
        .unwrap();
    assert_eq!(
        s.get_conversation(t, "hc-1")
            .await
            .unwrap()
            .current_execution
            .as_deref(),
        Some("ex-9")
    );
    assert!(
        !s.swap_execution(t, "hc-1", Some("ex-8"), None, 1_200)
            .await
            .unwrap(),
        "only the run it has is settled"
    );
    assert!(
        s.swap_execution(t, "hc-1", Some("ex-9"), None, 1_200)
            .await
            .unwrap()
    );
    assert!(
        !s.swap_execution(t, "hc-1", Some("ex-9"), None, 1_200)
            .await
            .unwrap(),
        "settled once"
    );
    assert_eq!(s.list_conversations(t, &busy).await.unwrap(), Vec::new());
    assert_eq!(
        s.get_conversation(t, "hc-1")
            .await
            .unwrap()
            .current_execution,
        None
    );
    let by_status = ConvFilter {
        status: Some(ConvStatus::AiProcessing),
        ..ConvFilter::default()
    };
    assert_eq!(
        ids(s.list_conversations(t, &by_status).await.unwrap()),
        vec!["hc-1"]
    );

    // The same change again: the stored status is no longer `new`.
    let before = dump(s, t).await;
    let err = hil_err(
        s.update_conversation(&moved, ConvStatus::New, &tr)
            .await
            .unwrap_err(),
    );
    match &err {
        HilError::InvalidTransition { id, from, to, .. } => {
            assert_eq!(id, "hc-1");
            assert_eq!(*from, ConvStatus::AiProcessing);
            assert_eq!(*to, ConvStatus::AiProcessing);
        }
        other => panic!("expected INVALID_TRANSITION, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("ai_processing") && text.contains("new"),
        "names both statuses: {text}"
    );
    assert_eq!(dump(s, t).await, before, "a refused update changes nothing");
    let mut ghost = moved.clone();
    ghost.id = "ghost".into();
    assert_eq!(
        s.update_conversation(&ghost, ConvStatus::New, &[])
            .await
            .unwrap_err()
            .code(),
        "CONVERSATION_NOT_FOUND"
    );

    // Stats rows: by creation time, [since, until).
    let rows = s.stats_rows(t, 1_000, 3_000).await.unwrap();
    let created: Vec<i64> = rows.iter().map(|r| r.created_at).collect();
    assert_eq!(created, vec![1_000, 2_000]);
    assert_eq!(rows[0].status, ConvStatus::AiProcessing);
    assert_eq!(rows[0].workflow, "support");
}

async fn messages_are_numbered_and_paged(s: &dyn Store) {
    let t = "hil-msg";
    s.create_conversation(&conversation(t, "hm-1", ConvStatus::AiProcessing, 1_000))
        .await
        .unwrap();
    let senders = [
        (Sender::User, None, 2_000),
        (Sender::Agent, None, 2_100),
        (Sender::Human, Some("ann"), 5_000),
        (Sender::User, None, 5_500),
        (Sender::Human, Some("ann"), 6_000),
        (Sender::System, None, 6_100),
    ];
    for (n, (sender, author, at)) in senders.iter().enumerate() {
        let m = s
            .add_message(
                t,
                "hm-1",
                &NewMessage {
                    sender: *sender,
                    author: author.map(str::to_string),
                    content: format!("message {n}"),
                    execution_id: (*sender == Sender::Agent).then(|| "ex-1".to_string()),
                    at: *at,
                    callback_url: (*sender != Sender::User)
                        .then(|| format!("http://hook.example/{t}")),
                },
            )
            .await
            .unwrap();
        assert_eq!(m.seq, n as u64 + 1);
        assert_eq!(m.sender, *sender);
    }
    // A run's reply is stored once: adding it again returns the stored one.
    let again = s
        .add_message(
            t,
            "hm-1",
            &NewMessage {
                sender: Sender::Agent,
                author: None,
                content: "a second try".into(),
                execution_id: Some("ex-1".into()),
                at: 9_000,
                callback_url: Some(format!("http://hook.example/{t}")),
            },
        )
        .await
        .unwrap();
    let first_agent = senders
        .iter()
        .position(|(sender, _, _)| *sender == Sender::Agent)
        .unwrap() as u64
        + 1;
    assert_eq!(
        (again.seq, again.content.as_str()),
        (first_agent, "message 1")
    );
    assert_eq!(
        s.get_conversation(t, "hm-1").await.unwrap().last_seq,
        senders.len() as u64
    );

    // Messages to the customer wait in the outbox, handed out in order, one at a time per
    // conversation, and only once due.
    let mut sent = Vec::new();
    loop {
        let due: Vec<_> = s
            .due_deliveries(i64::MAX, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.conversation_id == "hm-1")
            .collect();
        assert!(due.len() <= 1, "one at a time per conversation: {due:?}");
        let Some(mut d) = due.into_iter().next() else {
            break;
        };
        assert_eq!(d.url, format!("http://hook.example/{t}"));
        if d.attempts == 0 {
            // A failed attempt: not due again before its next time.
            d.attempts = 1;
            d.next_at = 50_000;
            d.last_error = Some("HTTP 500".into());
            s.update_delivery(&d).await.unwrap();
            let early: Vec<_> = s
                .due_deliveries(49_999, 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|d| d.conversation_id == "hm-1")
                .collect();
            assert!(early.is_empty(), "{early:?}");
            continue;
        }
        d.status = "delivered".into();
        s.update_delivery(&d).await.unwrap();
        sent.push(d.seq);
    }
    let to_customer: Vec<u64> = senders
        .iter()
        .enumerate()
        .filter(|(_, (sender, _, _))| *sender != Sender::User)
        .map(|(n, _)| n as u64 + 1)
        .collect();
    assert_eq!(sent, to_customer);
    let all = s.list_messages(t, "hm-1", 0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert_eq!(all[2].author.as_deref(), Some("ann"));
    assert_eq!(all[1].execution_id.as_deref(), Some("ex-1"));
    assert_eq!(all[0].content, "message 0");
    let page = s.list_messages(t, "hm-1", 2, 2).await.unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3, 4]);
    assert!(s.list_messages(t, "hm-1", 6, 10).await.unwrap().is_empty());
    let c = s.get_conversation(t, "hm-1").await.unwrap();
    assert_eq!(c.last_seq, 6);
    assert_eq!(
        c.first_human_at,
        Some(5_000),
        "the first human message only"
    );
    assert_eq!(c.updated_at, 6_100);

    let missing = NewMessage {
        sender: Sender::User,
        author: None,
        content: "x".into(),
        execution_id: None,
        at: 1,
        callback_url: None,
    };
    assert_eq!(
        s.add_message(t, "nope", &missing).await.unwrap_err().code(),
        "CONVERSATION_NOT_FOUND"
    );
    assert_eq!(
        s.add_message("hil-other", "hm-1", &missing)
            .await
            .unwrap_err()
            .code(),
        "CONVERSATION_NOT_FOUND"
    );
    assert!(
        s.list_messages("hil-other", "hm-1", 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

// ---- agents ---------------------------------------------------------------------------------

async fn agents_are_upserted_and_found_by_email(s: &dyn Store) {
    let t = "hil-agents";
    let mut zed = agent(t, "zed", &["billing"], 2);
    zed.email = "Zed@Example.com".into();
    let amy = agent(t, "amy", &["returns", "billing"], 3);
    s.put_agent(&zed).await.unwrap();
    s.put_agent(&amy).await.unwrap();
    assert_eq!(s.get_agent(t, "zed").await.unwrap(), zed);
    assert_eq!(s.get_agent(t, "zed@example.COM").await.unwrap(), zed);
    let listed: Vec<String> = s
        .list_agents(t)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(listed, vec!["amy", "zed"], "by id");

    // An update by id keeps the creation time.
    let mut changed = zed.clone();
    changed.name = "Zed Z.".into();
    changed.capacity = 5;
    changed.status = AgentStatus::Away;
    changed.skills = vec!["billing".into(), "legal".into()];
    changed.created_at = 99;
    changed.updated_at = 100;
    changed.load = 7; // ignored
    s.put_agent(&changed).await.unwrap();
    let got = s.get_agent(t, "zed").await.unwrap();
    assert_eq!(got.name, "Zed Z.");
    assert_eq!(got.capacity, 5);
    assert_eq!(got.status, AgentStatus::Away);
    assert_eq!(got.skills, changed.skills);
    assert_eq!((got.created_at, got.updated_at, got.load), (1, 100, 0));

    // Another agent cannot have that e-mail (whatever its case); another tenant can.
    let mut copy = amy.clone();
    copy.email = "zed@EXAMPLE.com".into();
    let err = hil_err(s.put_agent(&copy).await.unwrap_err());
    assert_eq!(
        err,
        HilError::AgentEmailTaken {
            email: "zed@EXAMPLE.com".into(),
            id: "zed".into()
        }
    );
    assert_eq!(s.get_agent(t, "amy").await.unwrap(), amy, "unchanged");
    let mut elsewhere = copy.clone();
    elsewhere.tenant = "hil-agents-2".into();
    s.put_agent(&elsewhere).await.unwrap();
    assert_eq!(
        s.get_agent("hil-agents-2", "zed@example.com")
            .await
            .unwrap()
            .id,
        "amy"
    );
    assert_eq!(
        s.get_agent(t, "nobody").await.unwrap_err().code(),
        "AGENT_NOT_FOUND"
    );
}

// ---- the queue ------------------------------------------------------------------------------

async fn handover_claim_and_resolve(s: &dyn Store) {
    let t = "hil-queue";
    s.put_agent(&agent(t, "ann", &["returns"], 2))
        .await
        .unwrap();
    s.put_agent(&agent(t, "bob", &["billing"], 1))
        .await
        .unwrap();
    for id in ["hq-1", "hq-2"] {
        s.create_conversation(&conversation(t, id, ConvStatus::AiProcessing, 1_000))
            .await
            .unwrap();
    }

    // Someone can take it: pending_human, in ann's inbox.
    let ch = apply(s, t, handover_op("hq-1", &["returns"], 1, 2_000), 2_000).await;
    assert_eq!(ch.assignments.len(), 1);
    assert_eq!(ch.assignments[0].agent, "ann");
    let c = s.get_conversation(t, "hq-1").await.unwrap();
    assert_eq!(c.status, ConvStatus::PendingHuman);
    assert_eq!(c.assigned_agent.as_deref(), Some("ann"));
    assert_eq!(c.handovers, 1);
    assert_eq!(c.handed_over_at, Some(2_000));
    assert_eq!(c.current_execution, None);
    assert_eq!(c.handover, Some(handover(&["returns"], 1, 2_000)));
    let it = item(s, t, ItemKind::Conversation, "hq-1").await.unwrap();
    assert_eq!(it.state, ItemState::Assigned);
    assert_eq!(it.agent.as_deref(), Some("ann"));
    assert!(it.seq > 0, "numbered by the store");
    assert_eq!(
        ch.items,
        vec![it.clone()],
        "what hil_apply returns is stored"
    );
    let tr = s.list_transitions(t, "hq-1").await.unwrap();
    let moves: Vec<(ConvStatus, ConvStatus, &str)> = tr
        .iter()
        .map(|t| (t.from, t.to, t.actor.as_str()))
        .collect();
    assert_eq!(
        moves,
        vec![
            (ConvStatus::AiProcessing, ConvStatus::Handover, "ai"),
            (ConvStatus::Handover, ConvStatus::PendingHuman, "router"),
            (ConvStatus::PendingHuman, ConvStatus::PendingHuman, "router"),
        ]
    );
    assert_eq!(tr[0].reason, "the customer asked for a person");
    assert_eq!(load(s, t, "ann").await, 1);

    // Nobody can take it: queued.
    let ch = apply(s, t, handover_op("hq-2", &["legal"], 0, 2_100), 2_100).await;
    assert!(ch.assignments.is_empty());
    let c2 = s.get_conversation(t, "hq-2").await.unwrap();
    assert_eq!(c2.status, ConvStatus::PendingHuman);
    assert_eq!(c2.assigned_agent, None);
    let it2 = item(s, t, ItemKind::Conversation, "hq-2").await.unwrap();
    assert_eq!(it2.state, ItemState::Queued);
    assert!(it2.seq > it.seq);
    let queued = s
        .list_items(t, None, Some(ItemState::Queued))
        .await
        .unwrap();
    assert_eq!(queued, vec![it2.clone()]);

    // Refusals change nothing.
    refused(s, t, claim("hq-1", "bob"), 2_200, "NOT_HOLDER").await;
    refused(s, t, claim("hq-1", "carl"), 2_200, "AGENT_NOT_FOUND").await;
    refused(s, t, claim("hq-2", "ann"), 2_200, "CANNOT_TAKE").await;
    refused(s, t, resolve("hq-1", "ann"), 2_200, "INVALID_TRANSITION").await; // not claimed
    refused(s, t, resolve("hq-2", "ann"), 2_200, "INVALID_TRANSITION").await;
    refused(
        s,
        t,
        handover_op("hq-1", &[], 0, 2_200),
        2_200,
        "INVALID_TRANSITION",
    )
    .await;
    refused(
        s,
        t,
        handover_op("hq-none", &[], 0, 2_200),
        2_200,
        "CONVERSATION_NOT_FOUND",
    )
    .await;

    // Claim: human_active.
    apply(s, t, claim("hq-1", "ann@example.com"), 3_000).await;
    let c = s.get_conversation(t, "hq-1").await.unwrap();
    assert_eq!(c.status, ConvStatus::HumanActive);
    assert_eq!(c.assigned_agent.as_deref(), Some("ann"));
    let it = item(s, t, ItemKind::Conversation, "hq-1").await.unwrap();
    assert_eq!(
        (it.state, it.claimed_at, it.assigned_at),
        (ItemState::Active, Some(3_000), Some(2_000))
    );
    assert_eq!(load(s, t, "ann").await, 1);
    assert_eq!(
        s.list_items(t, Some("ann"), None).await.unwrap(),
        vec![it.clone()]
    );
    assert_eq!(
        s.list_items(t, Some("ann"), Some(ItemState::Assigned))
            .await
            .unwrap(),
        Vec::new()
    );
    refused(s, t, claim("hq-1", "ann"), 3_100, "CANNOT_TAKE").await;

    // Resolve: resolved, the item done, the load back to 0.
    apply(s, t, resolve("hq-1", "ann"), 4_000).await;
    let c = s.get_conversation(t, "hq-1").await.unwrap();
    assert_eq!(c.status, ConvStatus::Resolved);
    assert_eq!((c.resolved_at, c.ended_at), (Some(4_000), Some(4_000)));
    assert_eq!(c.assigned_agent, None);
    let it = item(s, t, ItemKind::Conversation, "hq-1").await.unwrap();
    assert_eq!((it.state, it.done_at), (ItemState::Done, Some(4_000)));
    assert_eq!(load(s, t, "ann").await, 0);
    let last = s.list_transitions(t, "hq-1").await.unwrap();
    assert_eq!(last.len(), 5);
    assert_eq!(
        (last[4].from, last[4].to, last[4].actor.as_str()),
        (ConvStatus::HumanActive, ConvStatus::Resolved, "ann")
    );
    refused(s, t, resolve("hq-1", "ann"), 4_100, "INVALID_TRANSITION").await;
    refused(
        s,
        t,
        handover_op("hq-1", &[], 0, 4_100),
        4_100,
        "INVALID_TRANSITION",
    )
    .await;
    let rows = s.stats_rows(t, 0, i64::MAX).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].handovers, 1);
    assert_eq!(rows[0].resolved_at, Some(4_000));
}

async fn release_transfer_and_back_to_ai(s: &dyn Store) {
    let t = "hil-moves";
    s.put_agent(&agent(t, "ann", &["returns"], 2))
        .await
        .unwrap();
    s.put_agent(&agent(t, "bob", &["billing"], 2))
        .await
        .unwrap();
    s.create_conversation(&conversation(t, "hr-1", ConvStatus::AiProcessing, 1_000))
        .await
        .unwrap();
    apply(s, t, handover_op("hr-1", &["returns"], 0, 2_000), 2_000).await;
    apply(s, t, claim("hr-1", "ann"), 2_100).await;

    // Release while away: nobody else can take it, it waits in the queue.
    let mut away = agent(t, "ann", &["returns"], 2);
    away.status = AgentStatus::Away;
    s.put_agent(&away).await.unwrap();
    refused(
        s,
        t,
        HilOp::Release {
            item: ItemRef::conversation("hr-1"),
            agent: "bob".into(),
            reason: "not mine".into(),
        },
        2_200,
        "NOT_HOLDER",
    )
    .await;
    apply(
        s,
        t,
        HilOp::Release {
            item: ItemRef::conversation("hr-1"),
            agent: "ann".into(),
            reason: "going home".into(),
        },
        2_300,
    )
    .await;
    let c = s.get_conversation(t, "hr-1").await.unwrap();
    assert_eq!(c.status, ConvStatus::PendingHuman);
    assert_eq!(c.assigned_agent, None);
    let it = item(s, t, ItemKind::Conversation, "hr-1").await.unwrap();
    assert_eq!(
        (it.state, it.agent.as_deref(), it.queued_at),
        (ItemState::Queued, None, 2_300)
    );
    assert_eq!(load(s, t, "ann").await, 0);
    let tr = s.list_transitions(t, "hr-1").await.unwrap();
    let last = tr.last().unwrap();
    assert_eq!(
        (
            last.from,
            last.to,
            last.actor.as_str(),
            last.reason.as_str()
        ),
        (
            ConvStatus::HumanActive,
            ConvStatus::PendingHuman,
            "ann",
            "going home"
        )
    );

    // Back online and routed: ann has it again.
    s.put_agent(&agent(t, "ann", &["returns"], 2))
        .await
        .unwrap();
    let ch = apply(s, t, HilOp::Route, 2_400).await;
    assert_eq!(ch.assignments.len(), 1);
    assert_eq!(
        s.get_conversation(t, "hr-1")
            .await
            .unwrap()
            .assigned_agent
            .as_deref(),
        Some("ann")
    );

    // Transfer: to someone who can take it, not to someone who cannot.
    s.put_agent(&agent(t, "carl", &["returns", "billing"], 1))
        .await
        .unwrap();
    let to = |who: &str| HilOp::Transfer {
        item: ItemRef::conversation("hr-1"),
        to: who.into(),
        by: "ann".into(),
        reason: "carl knows this customer".into(),
    };
    refused(s, t, to("bob"), 2_500, "CANNOT_TAKE").await;
    refused(s, t, to("ann"), 2_500, "CANNOT_TAKE").await;
    refused(s, t, to("nobody"), 2_500, "AGENT_NOT_FOUND").await;
    apply(s, t, to("carl"), 2_500).await;
    let c = s.get_conversation(t, "hr-1").await.unwrap();
    assert_eq!(
        (c.status, c.assigned_agent.as_deref()),
        (ConvStatus::PendingHuman, Some("carl"))
    );
    assert_eq!((load(s, t, "ann").await, load(s, t, "carl").await), (0, 1));
    let last = s.list_transitions(t, "hr-1").await.unwrap();
    assert!(
        last.last()
            .unwrap()
            .reason
            .starts_with("transferred from ann to carl"),
        "{last:?}"
    );

    // Back to the AI, with a note.
    apply(s, t, claim("hr-1", "carl"), 2_600).await;
    refused(
        s,
        t,
        HilOp::BackToAi {
            conversation: "hr-1".into(),
            agent: "ann".into(),
            note: "x".into(),
        },
        2_700,
        "NOT_HOLDER",
    )
    .await;
    apply(
        s,
        t,
        HilOp::BackToAi {
            conversation: "hr-1".into(),
            agent: "carl".into(),
            note: "refund approved; tell them".into(),
        },
        2_700,
    )
    .await;
    let c = s.get_conversation(t, "hr-1").await.unwrap();
    assert_eq!(c.status, ConvStatus::AiProcessing);
    assert_eq!(c.note.as_deref(), Some("refund approved; tell them"));
    assert_eq!(c.assigned_agent, None);
    assert_eq!(load(s, t, "carl").await, 0);
    let old = item(s, t, ItemKind::Conversation, "hr-1").await.unwrap();
    assert_eq!(old.state, ItemState::Done);
    let tr = s.list_transitions(t, "hr-1").await.unwrap();
    let tail: Vec<(ConvStatus, ConvStatus)> =
        tr[tr.len() - 2..].iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        tail,
        vec![
            (ConvStatus::HumanActive, ConvStatus::BackToAi),
            (ConvStatus::BackToAi, ConvStatus::AiProcessing)
        ]
    );

    // Handed over again: a new item (renumbered), the first handover time kept.
    apply(s, t, handover_op("hr-1", &["billing"], 2, 3_000), 3_000).await;
    let c = s.get_conversation(t, "hr-1").await.unwrap();
    assert_eq!(
        (c.handovers, c.handed_over_at, c.status),
        (2, Some(2_000), ConvStatus::PendingHuman)
    );
    let again = item(s, t, ItemKind::Conversation, "hr-1").await.unwrap();
    assert_eq!(again.state, ItemState::Assigned);
    assert_eq!(again.agent.as_deref(), Some("bob"));
    assert!(again.seq > old.seq);
    assert_eq!(again.skills, vec!["billing".to_string()]);
}

async fn tasks_are_enqueued_once_and_closed(s: &dyn Store) {
    let t = "hil-tasks";
    s.put_agent(&agent(t, "ann", &["returns"], 2))
        .await
        .unwrap();
    s.put_agent(&agent(t, "bob", &["billing"], 2))
        .await
        .unwrap();
    let enqueue = |key: &str, assignee: Option<&str>| HilOp::EnqueueTask {
        key: key.into(),
        skills: vec![],
        assignee: assignee.map(str::to_string),
        priority: 0,
    };
    // Reserved for bob (by e-mail), though ann sorts first.
    let ch = apply(
        s,
        t,
        enqueue("ex-1.approve", Some("bob@example.com")),
        1_000,
    )
    .await;
    assert_eq!(ch.assignments.len(), 1);
    assert_eq!(ch.assignments[0].agent, "bob");
    let it = item(s, t, ItemKind::Task, "ex-1.approve").await.unwrap();
    assert_eq!(
        (it.state, it.agent.as_deref()),
        (ItemState::Assigned, Some("bob"))
    );
    assert_eq!(it.assignee.as_deref(), Some("bob@example.com"));
    // Again: nothing new.
    let ch = apply(s, t, enqueue("ex-1.approve", None), 1_100).await;
    assert_eq!(ch, HilChanges::default());
    assert_eq!(
        item(s, t, ItemKind::Task, "ex-1.approve").await.unwrap(),
        it
    );
    // Claim by someone else: refused; by bob: active, no conversation involved.
    refused(
        s,
        t,
        HilOp::Claim {
            item: ItemRef::task("ex-1", "approve"),
            agent: "ann".into(),
        },
        1_200,
        "NOT_HOLDER",
    )
    .await;
    apply(
        s,
        t,
        HilOp::Claim {
            item: ItemRef::task("ex-1", "approve"),
            agent: "bob".into(),
        },
        1_200,
    )
    .await;
    assert_eq!(load(s, t, "bob").await, 1);
    apply(
        s,
        t,
        HilOp::CloseTask {
            key: "ex-1.approve".into(),
        },
        1_300,
    )
    .await;
    let it = item(s, t, ItemKind::Task, "ex-1.approve").await.unwrap();
    assert_eq!((it.state, it.done_at), (ItemState::Done, Some(1_300)));
    assert_eq!(load(s, t, "bob").await, 0);
    // Closing what is not there is a no-op.
    let ch = apply(
        s,
        t,
        HilOp::CloseTask {
            key: "ex-9.none".into(),
        },
        1_400,
    )
    .await;
    assert_eq!(ch, HilChanges::default());
    assert!(s.list_items(t, None, None).await.unwrap().is_empty());
}

async fn routing_assigns_other_queued_conversations(s: &dyn Store) {
    let t = "hil-route";
    s.put_agent(&agent(t, "ann", &["returns"], 1))
        .await
        .unwrap();
    for (n, id) in ["ho-1", "ho-2", "ho-3"].into_iter().enumerate() {
        s.create_conversation(&conversation(t, id, ConvStatus::AiProcessing, n as i64))
            .await
            .unwrap();
    }
    apply(s, t, handover_op("ho-1", &["returns"], 0, 1_000), 1_000).await;
    apply(s, t, handover_op("ho-2", &["returns"], 0, 1_001), 1_001).await;
    // Higher priority though later: first in the queue.
    apply(s, t, handover_op("ho-3", &["returns"], 5, 1_002), 1_002).await;
    let queued: Vec<String> = s
        .list_items(t, None, Some(ItemState::Queued))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(queued, vec!["ho-3", "ho-2"], "queue order");
    apply(s, t, claim("ho-1", "ann"), 1_100).await;
    // Resolving ho-1 frees ann: ho-3 (another conversation) goes to her inbox.
    let ch = apply(s, t, resolve("ho-1", "ann"), 1_200).await;
    assert_eq!(ch.assignments.len(), 1);
    assert_eq!(ch.assignments[0].item, ItemRef::conversation("ho-3"));
    let c3 = s.get_conversation(t, "ho-3").await.unwrap();
    assert_eq!(
        (c3.status, c3.assigned_agent.as_deref(), c3.updated_at),
        (ConvStatus::PendingHuman, Some("ann"), 1_200)
    );
    let tr = s.list_transitions(t, "ho-3").await.unwrap();
    let last = tr.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.reason.as_str(), tr.len()),
        ("router", "assigned to ann", 3)
    );
    assert_eq!(
        s.get_conversation(t, "ho-2").await.unwrap().assigned_agent,
        None
    );
    let by_agent = ConvFilter {
        agent: Some("ann".into()),
        ..ConvFilter::default()
    };
    let mine: Vec<String> = s
        .list_conversations(t, &by_agent)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(mine, vec!["ho-3"]);
}

// ---- the race -------------------------------------------------------------------------------

/// Queue order as the issue states it: priority (higher first), then queued_at, then seq.
fn before(a: &WorkItem, b: &WorkItem) -> bool {
    (-a.priority, a.queued_at, a.seq) < (-b.priority, b.queued_at, b.seq)
}

async fn check_loads(s: &dyn Store, t: &str) -> Vec<HumanAgent> {
    let agents = s.list_agents(t).await.unwrap();
    for a in &agents {
        assert!(
            a.load <= a.capacity,
            "{} holds {} > {}",
            a.id,
            a.load,
            a.capacity
        );
        let held = s.list_items(t, Some(&a.id), None).await.unwrap();
        assert_eq!(
            held.len() as u32,
            a.load,
            "{}'s load is what it holds",
            a.id
        );
        for it in &held {
            assert!(
                a.missing(&it.skills).is_empty(),
                "{} holds {} without skills {:?}",
                a.id,
                it.key,
                it.skills
            );
        }
    }
    agents
}

/// 50 conversations handed over at once to 5 agents of capacity 3 with mixed skills; then the
/// agents claim and resolve until all are resolved, the queue feeding them in order.
pub async fn concurrent_handovers(s: Arc<dyn Store>) {
    let t = "hil-race";
    let skills: [&[&str]; 5] = [
        &["returns"],
        &["returns"],
        &["billing"],
        &["billing"],
        &["returns", "billing"],
    ];
    for (n, sk) in skills.iter().enumerate() {
        s.put_agent(&agent(t, &format!("ag-{n}"), sk, 3))
            .await
            .unwrap();
    }
    let ids: Vec<String> = (0..50).map(|n| format!("race-{n:02}")).collect();
    for (n, id) in ids.iter().enumerate() {
        s.create_conversation(&conversation(t, id, ConvStatus::AiProcessing, n as i64))
            .await
            .unwrap();
    }

    let start = Arc::new(tokio::sync::Barrier::new(ids.len()));
    let mut tasks = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let (s, start, id) = (s.clone(), start.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let skill = if n % 2 == 0 { "returns" } else { "billing" };
            // Mixed priorities, and several handovers in each millisecond (seq decides).
            let at = 10_000 + (n as i64 % 4);
            start.wait().await;
            s.hil_apply(t, &handover_op(&id, &[skill], (n % 3) as i64, at), at)
                .await
        }));
    }
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            panic!("a concurrent handover failed: {e}");
        }
    }

    // Nobody over capacity, every conversation in exactly one item, skills respected.
    let agents = check_loads(s.as_ref(), t).await;
    let items = s.list_items(t, None, None).await.unwrap();
    assert_eq!(items.len(), 50);
    let keys: BTreeSet<&str> = items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ids.iter().map(String::as_str).collect());
    let seqs: BTreeSet<i64> = items.iter().map(|i| i.seq).collect();
    assert_eq!(seqs.len(), 50, "every item its own seq");
    let assigned: Vec<&WorkItem> = items
        .iter()
        .filter(|i| i.state == ItemState::Assigned)
        .collect();
    assert!(assigned.len() <= 15);
    assert_eq!(
        assigned.len(),
        15,
        "enough work of each skill for every agent"
    );
    assert_eq!(agents.iter().map(|a| a.load).sum::<u32>(), 15);
    for it in &assigned {
        let holder = it.agent.as_deref().unwrap();
        let c = s.get_conversation(t, &it.key).await.unwrap();
        assert_eq!(c.status, ConvStatus::PendingHuman);
        assert_eq!(c.assigned_agent.as_deref(), Some(holder), "{}", it.key);
    }
    for it in items.iter().filter(|i| i.state == ItemState::Queued) {
        let c = s.get_conversation(t, &it.key).await.unwrap();
        assert_eq!(c.assigned_agent, None, "{}", it.key);
    }

    // Claim and resolve until everything is resolved; each freed place goes to the first
    // queued item (in queue order) its agent can take.
    let mut at = 100_000;
    let mut resolved = BTreeMap::new();
    while resolved.len() < ids.len() {
        let mut progressed = false;
        for a in s.list_agents(t).await.unwrap() {
            for it in s.list_items(t, Some(&a.id), None).await.unwrap() {
                at += 1;
                if it.state == ItemState::Assigned {
                    apply(s.as_ref(), t, claim(&it.key, &a.id), at).await;
                    let c = s.get_conversation(t, &it.key).await.unwrap();
                    assert_eq!(c.status, ConvStatus::HumanActive);
                }
                let queue = s
                    .list_items(t, None, Some(ItemState::Queued))
                    .await
                    .unwrap();
                for w in queue.windows(2) {
                    assert!(before(&w[0], &w[1]), "queue order: {:?} {:?}", w[0], w[1]);
                }
                let next = queue.iter().find(|q| a.missing(&q.skills).is_empty());
                at += 1;
                let ch = apply(s.as_ref(), t, resolve(&it.key, &a.id), at).await;
                let got: Vec<(&str, &str)> = ch
                    .assignments
                    .iter()
                    .map(|x| (x.item.key.as_str(), x.agent.as_str()))
                    .collect();
                let want: Vec<(&str, &str)> = next
                    .iter()
                    .map(|q| (q.key.as_str(), a.id.as_str()))
                    .collect();
                assert_eq!(got, want, "resolving {} frees {}", it.key, a.id);
                check_loads(s.as_ref(), t).await;
                resolved.insert(it.key.clone(), a.id.clone());
                progressed = true;
            }
        }
        assert!(progressed, "stuck with {} resolved", resolved.len());
    }

    let agents = s.list_agents(t).await.unwrap();
    assert!(agents.iter().all(|a| a.load == 0), "{agents:?}");
    assert!(s.list_items(t, None, None).await.unwrap().is_empty());
    let done = s.list_items(t, None, Some(ItemState::Done)).await.unwrap();
    assert_eq!(done.len(), 50);
    for (id, by) in &resolved {
        let c = s.get_conversation(t, id).await.unwrap();
        assert_eq!(c.status, ConvStatus::Resolved);
        let tr = s.list_transitions(t, id).await.unwrap();
        let last = tr.last().unwrap();
        assert_eq!(
            (last.to, last.actor.as_str()),
            (ConvStatus::Resolved, by.as_str())
        );
        let agent = agents.iter().find(|a| &a.id == by).unwrap();
        assert!(agent.missing(&c.handover.unwrap().skills).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_concurrent_handovers() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_handovers(crate::sqlite_file(&dir).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_handovers() {
    let db = crate::pg::PgDb::create("hilrace").await;
    let store = hilo_store::PgStore::connect_with(&db.url, 4).await.unwrap();
    concurrent_handovers(Arc::new(store)).await;
    db.drop().await;
}
