//! 2025-11-25's way for a task to ask its requestor: while a task is `input_required`, the
//! receiver sends the requestor a request tagged with the task
//! (`_meta["io.modelcontextprotocol/related-task"]`), which the requestor gets by calling
//! `tasks/result` — over streamable HTTP on that call's event stream; the requestor's response
//! comes back as a message of its own (a POST, or a line on stdio). Here the request is an
//! `elicitation/create` form of the person's task (its prompt and answer schema), and the
//! response, accepted, is the task's answer, checked as every answer is
//! ([`exposed::answer`]).
//!
//! The elicitation's JSON-RPC id names what it asks, `hilo-elicit/<execution>/<node>/<n>`
//! (`n`: the how-manieth ask of that node on that stream), so a response is taken by any
//! replica without a session: the key's tenant must own the execution, the node must still
//! wait, the answer must fit. The stream that asked learns what became of its question when
//! the response arrives in the same process ([`Asked`]): a refused answer is asked again with
//! the reason; a declined or failed elicitation is not asked again on that stream (the task
//! keeps waiting for an answer from elsewhere).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use hilo_core::access::Scope;
use hilo_core::exec::HumanTask;
use hilo_runtime::ingress::exposed::{self, Follow, Phase, Snapshot};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::handler::{Acting, Handler};
use super::views;

/// What every id of hilo's elicitations starts with.
const ID_PREFIX: &str = "hilo-elicit/";

/// `_meta` key tying a message to its task.
pub const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// What became of an elicitation, told to the stream that sent it.
#[derive(Debug)]
enum Reply {
    /// The answer was taken: the execution goes on.
    Accepted,
    /// The answer was refused (the reason, with hilo's code).
    Refused(String),
    /// The client declined, cancelled, or answered with an error: not asked again here.
    NotAnswered,
}

/// The elicitations this process sent and waits on, by JSON-RPC id (cheap to clone).
#[derive(Clone, Default)]
pub struct Asked(Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>>);

impl Asked {
    fn wait_for(&self, id: &str) -> (Waiting, oneshot::Receiver<Reply>) {
        let (tx, rx) = oneshot::channel();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_string(), tx);
        (
            Waiting {
                asked: self.clone(),
                id: id.to_string(),
            },
            rx,
        )
    }

    fn tell(&self, id: &str, reply: Reply) {
        let waiter = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        if let Some(tx) = waiter {
            let _ = tx.send(reply);
        }
    }
}

/// An elicitation waited on; forgotten when dropped.
struct Waiting {
    asked: Asked,
    id: String,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.asked
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

fn request_id(execution: &str, node: &str, n: u32) -> String {
    format!("{ID_PREFIX}{execution}/{node}/{n}")
}

/// The execution and node an elicitation id names.
fn parse_id(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix(ID_PREFIX)?;
    let (execution, rest) = rest.split_once('/')?;
    let (node, n) = rest.rsplit_once('/')?;
    (!execution.is_empty() && !node.is_empty() && n.parse::<u32>().is_ok())
        .then_some((execution, node))
}

/// Whether `msg` is a client's response to one of hilo's elicitations.
pub fn is_reply(msg: &Value) -> bool {
    msg.get("method").is_none()
        && (msg.get("result").is_some() || msg.get("error").is_some())
        && msg
            .get("id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.starts_with(ID_PREFIX))
}

/// Takes a client's response to an elicitation (see the module's notes): `Err` when it
/// cannot be taken, with what to tell the client.
pub async fn take_reply(h: &Handler, who: &Acting, msg: &Value) -> Result<(), rmcp::ErrorData> {
    let id = msg.get("id").and_then(Value::as_str).unwrap_or_default();
    let Some((execution, node)) = parse_id(id) else {
        return Err(rmcp::ErrorData::invalid_params(
            format!("ELICITATION_NOT_FOUND: `{id}` is no elicitation this server sent"),
            Some(json!({"code": "ELICITATION_NOT_FOUND"})),
        ));
    };
    // Only the tenant whose task it is speaks for it (another's: not found).
    let snap = h.task(&who.tenant, execution).await?;
    let Some(result) = msg.get("result") else {
        // The client could not ask (no elicitation support, or its own error).
        h.asked.tell(id, Reply::NotAnswered);
        return Ok(());
    };
    if result.get("action").and_then(Value::as_str) != Some("accept") {
        h.asked.tell(id, Reply::NotAnswered);
        return Ok(());
    }
    if let Err(e) = who.require(Scope::Execute) {
        h.asked.tell(id, Reply::NotAnswered);
        return Err(e);
    }
    let Phase::InputRequired(pending) = &snap.phase else {
        h.asked.tell(id, Reply::NotAnswered);
        return Err(rmcp::ErrorData::invalid_params(
            format!(
                "TASK_NOT_WAITING: task {execution} is {} and waits for no answer",
                snap.execution.status.as_str()
            ),
            Some(json!({"code": "TASK_NOT_WAITING"})),
        ));
    };
    let Some(task) = pending.iter().find(|t| t.node_key == node) else {
        h.asked.tell(id, Reply::NotAnswered);
        return Err(rmcp::ErrorData::invalid_params(
            format!(
                "TASK_NOT_WAITING: task {execution} no longer waits on `{node}` (answered elsewhere?); tasks/get says what it waits for"
            ),
            Some(json!({"code": "TASK_NOT_WAITING"})),
        ));
    };
    let content = result.get("content").cloned().unwrap_or(Value::Null);
    let answer = views::answer_of(task, content);
    match exposed::answer(&h.rt, &who.tenant, execution, node, &answer).await {
        Ok(_) => {
            h.asked.tell(id, Reply::Accepted);
            Ok(())
        }
        Err(e) => {
            let (code, message, details) = e.answer();
            h.asked
                .tell(id, Reply::Refused(format!("{code}: {message}")));
            Err(rmcp::ErrorData::invalid_params(
                format!("{code}: {message}"),
                Some(json!({"code": code, "details": details})),
            ))
        }
    }
}

/// The `elicitation/create` request asking `t` (`None`: a form cannot carry its schema).
fn ask(task_id: &str, t: &HumanTask, id: &str, refused: Option<&str>) -> Option<Value> {
    let mut params = views::elicitation(t)?;
    if let Some(reason) = refused {
        params["message"] = json!(format!(
            "The last answer was refused ({reason}). {}",
            t.prompt
        ));
    }
    params["_meta"] = json!({RELATED_TASK: {"taskId": task_id}});
    Some(json!({"jsonrpc": "2.0", "id": id, "method": "elicitation/create", "params": params}))
}

/// The client went away while its `tasks/result` waited.
pub struct Gone;

/// Follows task `id` until it ends, sending on `out` an `elicitation/create` for each person's
/// task it waits on that a form can ask (see the module's notes); `who` must hold the
/// `execute` scope to be asked. The task as it ended.
pub async fn until_end(
    h: &Handler,
    who: &Acting,
    id: &str,
    out: &mpsc::Sender<Value>,
) -> Result<Result<Snapshot, rmcp::ErrorData>, Gone> {
    let may_answer = who.require(Scope::Execute).is_ok();
    let mut snap = match h.task(&who.tenant, id).await {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let mut follow = Follow::new(&h.rt, id, snap.execution.last_seq);
    // Per node: asks sent, the reason the last answer was refused, nodes not to ask again
    // here, and nodes answered (not asked again while the snapshot still lists them).
    let mut asks: HashMap<String, u32> = HashMap::new();
    let mut refused: HashMap<String, String> = HashMap::new();
    let mut unasked: HashSet<String> = HashSet::new();
    let mut answered: HashSet<String> = HashSet::new();
    let mut open: Option<(String, Waiting, oneshot::Receiver<Reply>)> = None;
    loop {
        if snap.phase.is_terminal() {
            return Ok(Ok(snap));
        }
        let pending: Vec<&HumanTask> = match &snap.phase {
            Phase::InputRequired(tasks) => tasks.iter().collect(),
            _ => Vec::new(),
        };
        answered.retain(|n| pending.iter().any(|t| &t.node_key == n));
        if open
            .as_ref()
            .is_some_and(|(node, _, _)| !pending.iter().any(|t| &t.node_key == node))
        {
            // Answered elsewhere meanwhile.
            open = None;
        }
        if may_answer && open.is_none() {
            let next = pending
                .iter()
                .find(|t| !unasked.contains(&t.node_key) && !answered.contains(&t.node_key));
            if let Some(t) = next {
                let n = asks.entry(t.node_key.clone()).or_insert(0);
                *n += 1;
                let rid = request_id(id, &t.node_key, *n);
                match ask(id, t, &rid, refused.get(&t.node_key).map(String::as_str)) {
                    Some(request) => {
                        let (waiting, rx) = h.asked.wait_for(&rid);
                        if out.send(request).await.is_err() {
                            return Err(Gone);
                        }
                        open = Some((t.node_key.clone(), waiting, rx));
                    }
                    None => {
                        unasked.insert(t.node_key.clone());
                    }
                }
            }
        }
        let reply = async {
            match open.as_mut() {
                Some((_, _, rx)) => rx.await.ok(),
                None => std::future::pending().await,
            }
        };
        let step = tokio::select! {
            events = follow.next() => Step::Events(events.map(|_| ())),
            reply = reply => Step::Reply(reply),
            () = out.closed() => return Err(Gone),
        };
        match step {
            Step::Events(Err(e)) => return Ok(Err(super::handler::runtime_error(e))),
            Step::Events(Ok(())) => {
                snap = match h.task(&who.tenant, id).await {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(e)),
                };
            }
            Step::Reply(reply) => {
                let Some((node, _, _)) = open.take() else {
                    continue;
                };
                match reply {
                    Some(Reply::Accepted) => {
                        refused.remove(&node);
                        answered.insert(node);
                    }
                    Some(Reply::Refused(reason)) => {
                        refused.insert(node, reason);
                    }
                    Some(Reply::NotAnswered) | None => {
                        unasked.insert(node);
                    }
                }
            }
        }
    }
}

/// What woke [`until_end`].
enum Step {
    Events(Result<(), hilo_runtime::RuntimeError>),
    Reply(Option<Reply>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elicitation_ids_name_the_execution_and_node() {
        let id = request_id("exe_1", "loop/review", 3);
        assert_eq!(parse_id(&id), Some(("exe_1", "loop/review")));
        assert_eq!(parse_id("hilo-elicit/exe_1/review/x"), None);
        assert_eq!(parse_id("hilo-elicit//review/1"), None);
        assert_eq!(parse_id("other/exe_1/review/1"), None);
        let reply = json!({"jsonrpc": "2.0", "id": id, "result": {"action": "accept"}});
        assert!(is_reply(&reply));
        assert!(!is_reply(&json!({"jsonrpc": "2.0", "id": 4, "result": {}})));
        assert!(!is_reply(
            &json!({"jsonrpc": "2.0", "id": id, "method": "ping"})
        ));
    }
}
