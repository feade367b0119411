//! Human agents at the command line: `hilo inbox`, `claim`, `reply`, `back-to-ai`,
//! `resolve` and `hilo hil …` against a real `hilo serve`, with the customer's side driven
//! over HTTP by the typed client.

use serde_json::{Value, json};

use crate::serve::{remote, serve, sigterm};
use crate::{hilo_cmd, text};

const ESCALATE: &str = r#"
name: escalate
version: 1
nodes:
  - id: check
    type: condition
    when: "contains(input.message, 'return')"
  - id: handover
    type: handover
    with: {reason: "returns are handled by people", skills: [returns]}
  - id: answer
    type: finish
    output: {reply: "Noted: {{ input.note }}"}
edges:
  - {from: check, to: handover, when: "check.output.result"}
  - {from: check, to: answer, when: "!(check.output.result)"}
"#;

#[test]
fn a_human_agent_works_a_conversation_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let out = hilo_cmd(
        &["keys", "create", "--tenant", "acme", "--scopes", "admin"],
        &db,
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_string();
    let wf = dir.path().join("escalate.yaml");
    std::fs::write(&wf, ESCALATE).unwrap();
    let (mut child, url) = serve(&db, &[]);
    let ok = |args: &[&str]| {
        let o = remote(&db, &url, &key, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    ok(&["workflows", "import", wf.to_str().unwrap()]);

    // Without --server the commands say what they need.
    let o = hilo_cmd(&["inbox", "--agent", "rosa"], &db, &[])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--server"), "{}", text(&o.stderr));

    let out = ok(&[
        "hil",
        "agents",
        "set",
        "rosa",
        "--name",
        "Rosa",
        "--email",
        "rosa@shop.example",
        "--skills",
        "returns,billing",
        "--capacity",
        "2",
        "--status",
        "online",
    ]);
    assert!(out.contains("agent rosa"), "{out}");

    // The customer writes (over HTTP): handed over, routed to Rosa.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = hilo_server::client::Client::new(&url, &key).unwrap();
    let id = rt.block_on(async {
        let c = client
            .create_conversation(
                &json!({"customer_id": "c1", "channel": "web", "workflow": "escalate"}),
            )
            .await
            .unwrap();
        let p = client
            .post_message(&c.id, "I want to return my boots")
            .await
            .unwrap();
        assert_eq!(p.conversation.status, "pending_human");
        c.id
    });

    let inbox = ok(&["inbox", "--agent", "rosa"]);
    assert!(
        inbox.contains(&id) && inbox.contains("returns are handled by people"),
        "{inbox}"
    );
    let json_inbox: Value =
        serde_json::from_str(&ok(&["inbox", "--agent", "rosa", "--json"])).unwrap();
    assert_eq!(json_inbox["items"][0]["state"], "assigned");

    // Someone else cannot take it: exit 2 with the reason.
    ok(&[
        "hil",
        "agents",
        "set",
        "tom",
        "--name",
        "Tom",
        "--email",
        "tom@shop.example",
        "--skills",
        "billing",
        "--status",
        "online",
    ]);
    let o = remote(&db, &url, &key, &["claim", &id, "--agent", "tom"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains("rosa"), "{}", text(&o.stderr));

    // Rosa's own key acts as Rosa only.
    let o = hilo_cmd(
        &[
            "keys", "create", "--tenant", "acme", "--agent", "rosa", "--name", "rosa",
        ],
        &db,
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let rosa_key = text(&o.stdout).trim().to_string();
    let o = remote(&db, &url, &rosa_key, &["inbox", "--agent", "tom"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o.stderr).contains("belongs to agent `rosa`"),
        "{}",
        text(&o.stderr)
    );
    let o = hilo_cmd(
        &["keys", "create", "--tenant", "acme", "--agent", "nobody"],
        &db,
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("hilo hil agents set"),
        "{}",
        text(&o.stderr)
    );

    let o = remote(
        &db,
        &url,
        &rosa_key,
        &["claim", &id, "--agent", "rosa@shop.example"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("human_active"), "{out}");

    // Back to the queue for a skill: nobody else online has `returns` (and it never goes
    // straight back to Rosa), so it waits until Rosa claims it again.
    let o = remote(&db, &url, &key, &["hil", "transfer", &id, "--by", "rosa"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a transfer needs --to or --skills"
    );
    let out = ok(&[
        "hil", "transfer", &id, "--by", "rosa", "--skills", "returns", "--json",
    ]);
    assert!(out.contains("pending_human"), "{out}");
    let o = remote(
        &db,
        &url,
        &rosa_key,
        &["claim", &id, "--agent", "rosa@shop.example"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = ok(&["reply", &id, "Your return is approved.", "--agent", "rosa"]);
    assert!(out.contains("sent (message"), "{out}");
    let out = ok(&["back-to-ai", &id, "--agent", "rosa", "--note", "label sent"]);
    assert!(out.contains("ai_processing"), "{out}");

    // The next message is answered by the workflow with the note.
    rt.block_on(async {
        let p = client.post_message(&id, "thanks, what now?").await.unwrap();
        assert_eq!(p.replies[0].content, "Noted: label sent");
    });

    let show = ok(&["hil", "show", &id]);
    for want in [
        "returns are handled by people",
        "human:rosa",
        "Your return is approved.",
        "human_active → back_to_ai by rosa: label sent",
        "Noted: label sent",
    ] {
        assert!(show.contains(want), "{want} not in:\n{show}");
    }
    let stats: Value = serde_json::from_str(&ok(&["hil", "stats", "--json"])).unwrap();
    assert_eq!(stats["total"]["conversations"], 1, "{stats}");
    assert_eq!(stats["total"]["escalated"], 1);
    // --since/--until: a duration ago or an RFC 3339 time, as everywhere.
    let recent: Value =
        serde_json::from_str(&ok(&["hil", "stats", "--since", "24h", "--json"])).unwrap();
    assert_eq!(recent["total"]["conversations"], 1, "{recent}");
    let before: Value = serde_json::from_str(&ok(&[
        "hil",
        "stats",
        "--since",
        "2020-01-01T00:00:00Z",
        "--until",
        "1h",
        "--json",
    ]))
    .unwrap();
    assert_eq!(before["total"]["conversations"], 0, "{before}");
    // JSON from the commands that gained --json.
    let agents: Value =
        serde_json::from_str(&ok(&["hil", "agents", "status", "rosa", "away", "--json"])).unwrap();
    assert_eq!(agents["status"], "away", "{agents}");
    let table = ok(&["hil", "stats"]);
    assert!(
        table.contains("escalate") && table.contains("100%"),
        "{table}"
    );
    let agents = ok(&["hil", "agents", "list"]);
    assert!(
        agents.contains("rosa") && agents.contains("0/2"),
        "{agents}"
    );

    sigterm(&child);
    let _ = child.wait();
}
