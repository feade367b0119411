//! Humans in the loop from the command line: `hilo inbox`, `claim`, `reply`, `resolve`,
//! `back-to-ai` and `hilo hil …`. They act through a running `hilo serve` (`--server`,
//! `--api-key`): human agents work against the server that talks to the customers, which
//! delivers their replies (live streams, callbacks) and routes the queue.

use anyhow::anyhow;
use hilo_server::api::conversations::{ActedView, ConversationView, ItemView};
use hilo_server::client::{Client, ClientError};
use serde_json::json;

use crate::cli::{AgentsCommand, Command, Global, HilCommand};
use crate::exit::Exit;
use crate::input::Since;
use crate::out::{print_json, rfc3339};

/// Whether `command` is one of these.
pub fn is_hil(command: &Command) -> bool {
    matches!(
        command,
        Command::Inbox(_)
            | Command::Claim(_)
            | Command::Reply(_)
            | Command::Resolve(_)
            | Command::BackToAi(_)
            | Command::Hil(_)
    )
}

fn err(e: ClientError) -> Exit {
    let invalid = matches!(e.status(), Some(400 | 404 | 409 | 422));
    if invalid {
        Exit::invalid(anyhow!(e.to_string()))
    } else {
        Exit::from(anyhow!(e.to_string()))
    }
}

fn client(g: &Global) -> Result<Client, Exit> {
    let Some(server) = &g.server else {
        return Err(Exit::invalid(anyhow!(
            "humans-in-the-loop commands act through a running `hilo serve`: pass --server URL and --api-key KEY (or set HILO_SERVER and HILO_API_KEY)"
        )));
    };
    Client::new(server, g.api_key.as_deref().unwrap_or_default()).map_err(err)
}

fn item_line(i: &ItemView) -> String {
    let what = match (&i.conversation, &i.task) {
        (Some(c), _) => {
            let reason = c
                .handover
                .as_ref()
                .and_then(|h| h.get("reason"))
                .and_then(|r| r.as_str())
                .unwrap_or("");
            format!(
                "customer {} ({}), {} — {reason}",
                c.customer_id, c.channel, c.status
            )
        }
        (None, Some(t)) => format!("approval: {}", t.prompt),
        (None, None) => String::new(),
    };
    let skills = if i.skills.is_empty() {
        String::new()
    } else {
        format!(" [{}]", i.skills.join(", "))
    };
    format!(
        "{:<8} {:<12} {:<28} p{} {}{skills}",
        i.state, i.kind, i.key, i.priority, what
    )
}

fn print_acted(v: &ActedView, json: bool, done: &str) -> Result<(), Exit> {
    if json {
        return print_json(v);
    }
    if let Some(c) = &v.conversation {
        outln!("{done}: conversation {} is {}", c.id, c.status);
    } else {
        outln!("{done}");
    }
    for a in &v.assignments {
        outln!("  routed: {} {} → {}", a.kind, a.key, a.agent);
    }
    Ok(())
}

fn print_conversation(c: &ConversationView) {
    outln!(
        "conversation {}  customer {} ({})  {}  workflow {}",
        c.id,
        c.customer_id,
        c.channel,
        c.status,
        c.workflow
    );
    if let Some(a) = &c.assigned_agent {
        outln!("  agent: {a}");
    }
    if let Some(h) = &c.handover {
        outln!(
            "  handover: {} (trigger {}, node {}, skills {})",
            h["reason"].as_str().unwrap_or(""),
            h["trigger"].as_str().unwrap_or(""),
            h["node"].as_str().unwrap_or("-"),
            h["skills"]
                .as_array()
                .map(|s| s
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
        if let Some(s) = h["context"]["summary"].as_str() {
            outln!("  summary: {s}");
        }
        if let Some(path) = h["context"]["path"].as_array() {
            let p: Vec<String> = path
                .iter()
                .map(|n| n["node"].as_str().unwrap_or("").to_string())
                .collect();
            outln!("  path: {}", p.join(" → "));
        }
    }
    if let Some(n) = &c.note {
        outln!("  note for the AI: {n}");
    }
}

/// Runs one of these commands.
pub async fn run(g: &Global, command: Command) -> Result<(), Exit> {
    let c = client(g)?;
    match command {
        Command::Inbox(a) => {
            let v = c.inbox(&a.agent.agent).await.map_err(err)?;
            if a.json {
                return print_json(&v);
            }
            if v.items.is_empty() {
                outln!("nothing in the inbox of {}", a.agent.agent);
            }
            for i in &v.items {
                outln!("{}", item_line(i));
            }
            Ok(())
        }
        Command::Claim(a) => {
            let v = c.claim(&a.id, &a.agent.agent, a.task).await.map_err(err)?;
            print_acted(&v, a.json, "claimed")
        }
        Command::Reply(a) => {
            let m = c.reply(&a.id, &a.agent.agent, &a.text).await.map_err(err)?;
            if a.json {
                return print_json(&m);
            }
            outln!("sent (message {})", m.seq);
            Ok(())
        }
        Command::Resolve(a) => {
            let v = c
                .conversation_action(&a.id, "resolve", &a.agent.agent, a.note.as_deref())
                .await
                .map_err(err)?;
            print_acted(&v, a.json, "resolved")
        }
        Command::BackToAi(a) => {
            let v = c
                .conversation_action(&a.id, "back-to-ai", &a.agent.agent, Some(&a.note))
                .await
                .map_err(err)?;
            print_acted(&v, a.json, "back to the AI")
        }
        Command::Hil(cmd) => hil(&c, cmd).await,
        _ => Err(Exit::invalid(anyhow!("not a humans-in-the-loop command"))),
    }
}

async fn hil(c: &Client, cmd: HilCommand) -> Result<(), Exit> {
    match cmd {
        HilCommand::Stats { since, until, json } => {
            // Durations count back from now; the server takes RFC 3339.
            let now = chrono::Utc::now().timestamp_millis();
            let time = |t: Option<Since>| t.map(|t| rfc3339(t.at(now)));
            let s = c
                .hil_stats(time(since).as_deref(), time(until).as_deref())
                .await
                .map_err(err)?;
            if json {
                return print_json(&s);
            }
            outln!("conversations created {} … {}", s.since, s.until);
            outln!(
                "{:<24} {:>6} {:>10} {:>10} {:>16} {:>16}",
                "workflow",
                "convs",
                "automated",
                "escalated",
                "1st human (med)",
                "resolution (med)"
            );
            let ms = |v: &serde_json::Value| {
                v["median_ms"]
                    .as_i64()
                    .map(|m| format!("{:.1} s", m as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into())
            };
            let rows = s
                .workflows
                .iter()
                .map(|(k, v)| (k.as_str(), v))
                .chain(std::iter::once(("(all)", &s.total)));
            for (name, k) in rows {
                outln!(
                    "{:<24} {:>6} {:>9.0}% {:>9.0}% {:>16} {:>16}",
                    name,
                    k.conversations,
                    k.automation_rate * 100.0,
                    k.escalation_rate * 100.0,
                    ms(&k.time_to_first_human_response),
                    ms(&k.resolution_time)
                );
            }
            Ok(())
        }
        HilCommand::Queue { json } => {
            let v = c.hil_queue().await.map_err(err)?;
            if json {
                return print_json(&v);
            }
            if v.items.is_empty() {
                outln!("the queue is empty");
            }
            for i in &v.items {
                outln!("{}", item_line(i));
            }
            Ok(())
        }
        HilCommand::Agents(AgentsCommand::List { json }) => {
            let v = c.hil_agents().await.map_err(err)?;
            if json {
                return print_json(&v);
            }
            for a in &v.items {
                outln!(
                    "{:<16} {:<8} {}/{}  {:<28} [{}]",
                    a.id,
                    a.status,
                    a.load,
                    a.capacity,
                    a.email,
                    a.skills.join(", ")
                );
            }
            Ok(())
        }
        HilCommand::Agents(AgentsCommand::Set {
            id,
            name,
            email,
            skills,
            capacity,
            status,
            json,
        }) => {
            let a = c
                .put_hil_agent(
                    &id,
                    &json!({"name": name, "email": email, "skills": skills, "capacity": capacity, "status": status}),
                )
                .await
                .map_err(err)?;
            if json {
                return print_json(&a);
            }
            outln!(
                "agent {} ({}) is {}, load {}/{}",
                a.id,
                a.email,
                a.status,
                a.load,
                a.capacity
            );
            Ok(())
        }
        HilCommand::Agents(AgentsCommand::Status { id, status, json }) => {
            let a = c.set_hil_agent_status(&id, &status).await.map_err(err)?;
            if json {
                return print_json(&a);
            }
            outln!(
                "agent {} is {}, load {}/{}",
                a.id,
                a.status,
                a.load,
                a.capacity
            );
            Ok(())
        }
        HilCommand::Conversations {
            status,
            agent,
            limit,
            json,
        } => {
            let v = c
                .conversations(status.as_deref(), agent.as_deref(), Some(limit))
                .await
                .map_err(err)?;
            if json {
                return print_json(&v);
            }
            for x in &v.items {
                outln!(
                    "{:<28} {:<14} {:<16} {:<12} {}",
                    x.id,
                    x.status,
                    x.customer_id,
                    x.assigned_agent.as_deref().unwrap_or("-"),
                    x.workflow
                );
            }
            Ok(())
        }
        HilCommand::Show { id, json } => {
            let conv = c.conversation(&id).await.map_err(err)?;
            let messages = c.messages(&id, 0).await.map_err(err)?;
            let transitions = c.transitions(&id).await.map_err(err)?;
            if json {
                return print_json(&json!({
                    "conversation": conv, "messages": messages.items, "transitions": transitions.items
                }));
            }
            print_conversation(&conv);
            outln!("messages:");
            for m in &messages.items {
                let who = match (&m.sender[..], &m.author) {
                    ("human", Some(a)) => format!("human:{a}"),
                    (s, _) => s.to_string(),
                };
                outln!("  {:>3} {:<16} {}", m.seq, who, m.content);
            }
            outln!("transitions:");
            for t in &transitions.items {
                outln!(
                    "  {} {} → {} by {}: {}",
                    t.at,
                    t.from,
                    t.to,
                    t.actor,
                    t.reason
                );
            }
            Ok(())
        }
        HilCommand::Release {
            id,
            agent,
            note,
            json,
        } => {
            let v = c
                .conversation_action(&id, "release", &agent.agent, note.as_deref())
                .await
                .map_err(err)?;
            print_acted(&v, json, "released")
        }
        HilCommand::Transfer {
            id,
            by,
            to,
            skills,
            reason,
            json,
        } => {
            let v = c
                .transfer(&id, &by, to.as_deref(), &skills, reason.as_deref())
                .await
                .map_err(err)?;
            print_acted(&v, json, "transferred")
        }
    }
}
