//! The A2A protocol's JSON shapes, in the two versions hilo speaks: 1.0 (the protobuf's JSON
//! mapping: camelCase fields, `TASK_STATE_COMPLETED`, `ROLE_AGENT`, a part is `{"text"}` or
//! `{"data"}`, a stream item wraps its payload as `{"task"}`, `{"statusUpdate"}`,
//! `{"artifactUpdate"}`) and 0.3 (`completed`, `agent`, objects tagged with `kind`, a status
//! update with `final`). The handlers build the version-free values here ([`TaskView`],
//! [`Msg`], [`RpcError`]) and render them in the version of the method the client called.
//!
//! Requests are read leniently (unknown fields ignored, as the SDKs do) from
//! `serde_json::Value`s, so that no shape of a hostile body can do more than earn an
//! `INVALID_PARAMS` answer.

use serde_json::{Map, Value, json};

/// The protocol version of a call: the method's name says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V03,
}

/// What a JSON-RPC method asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Send,
    Stream,
    Get,
    List,
    Cancel,
    Subscribe,
    /// Push notification configurations: not offered (`capabilities.pushNotifications` is
    /// false).
    Push,
    /// The authenticated extended card: not offered (the card read with a key is the
    /// tenant's already).
    ExtendedCard,
}

/// The method and version of a JSON-RPC method name (1.0's names, and 0.3's as aliases).
pub fn method(name: &str) -> Option<(Method, Version)> {
    use Method::*;
    use Version::*;
    Some(match name {
        "SendMessage" => (Send, V1),
        "SendStreamingMessage" => (Stream, V1),
        "GetTask" => (Get, V1),
        "ListTasks" => (List, V1),
        "CancelTask" => (Cancel, V1),
        "SubscribeToTask" => (Subscribe, V1),
        "CreateTaskPushNotificationConfig"
        | "GetTaskPushNotificationConfig"
        | "ListTaskPushNotificationConfigs"
        | "DeleteTaskPushNotificationConfig" => (Push, V1),
        "GetExtendedAgentCard" => (ExtendedCard, V1),
        "message/send" => (Send, V03),
        "message/stream" => (Stream, V03),
        "tasks/get" => (Get, V03),
        // Not a 0.3 method; accepted so a 0.3 client's "list" gets 0.3 shapes.
        "tasks/list" => (List, V03),
        "tasks/cancel" => (Cancel, V03),
        "tasks/resubscribe" => (Subscribe, V03),
        "tasks/pushNotificationConfig/set"
        | "tasks/pushNotificationConfig/get"
        | "tasks/pushNotificationConfig/list"
        | "tasks/pushNotificationConfig/delete" => (Push, V03),
        "agent/getAuthenticatedExtendedCard" => (ExtendedCard, V03),
        _ => return None,
    })
}

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Working,
    InputRequired,
    Completed,
    Failed,
    Canceled,
    Rejected,
}

impl State {
    pub fn name(self, v: Version) -> &'static str {
        match (v, self) {
            (Version::V1, State::Working) => "TASK_STATE_WORKING",
            (Version::V1, State::InputRequired) => "TASK_STATE_INPUT_REQUIRED",
            (Version::V1, State::Completed) => "TASK_STATE_COMPLETED",
            (Version::V1, State::Failed) => "TASK_STATE_FAILED",
            (Version::V1, State::Canceled) => "TASK_STATE_CANCELED",
            (Version::V1, State::Rejected) => "TASK_STATE_REJECTED",
            (Version::V03, State::Working) => "working",
            (Version::V03, State::InputRequired) => "input-required",
            (Version::V03, State::Completed) => "completed",
            (Version::V03, State::Failed) => "failed",
            (Version::V03, State::Canceled) => "canceled",
            (Version::V03, State::Rejected) => "rejected",
        }
    }

    /// The state a `ListTasks` status filter names (either version's spelling).
    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "TASK_STATE_WORKING" | "TASK_STATE_SUBMITTED" | "working" | "submitted" => {
                State::Working
            }
            "TASK_STATE_INPUT_REQUIRED" | "input-required" => State::InputRequired,
            "TASK_STATE_COMPLETED" | "completed" => State::Completed,
            "TASK_STATE_FAILED" | "failed" => State::Failed,
            "TASK_STATE_CANCELED" | "canceled" => State::Canceled,
            "TASK_STATE_REJECTED" | "rejected" => State::Rejected,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, State::Working | State::InputRequired)
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Agent,
}

/// A part of a message or an artifact.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Data(Value),
}

/// A message.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub id: String,
    pub role: Role,
    pub parts: Vec<Part>,
    pub task_id: String,
    pub context_id: String,
    pub metadata: Option<Value>,
}

/// A task's status.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub state: State,
    pub message: Option<Msg>,
    /// RFC 3339.
    pub timestamp: String,
}

/// An artifact (the workflow's output).
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub id: String,
    pub name: String,
    pub parts: Vec<Part>,
}

/// A task (an execution), version-free.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub id: String,
    pub context_id: String,
    pub status: Status,
    pub artifacts: Vec<Artifact>,
    pub history: Vec<Msg>,
    pub metadata: Value,
}

fn part(v: Version, p: &Part) -> Value {
    match (v, p) {
        (Version::V1, Part::Text(t)) => json!({"text": t}),
        (Version::V1, Part::Data(d)) => json!({"data": d, "mediaType": "application/json"}),
        (Version::V03, Part::Text(t)) => json!({"kind": "text", "text": t}),
        // 0.3's data part holds an object.
        (Version::V03, Part::Data(d @ Value::Object(_))) => json!({"kind": "data", "data": d}),
        (Version::V03, Part::Data(d)) => json!({"kind": "data", "data": {"value": d}}),
    }
}

fn parts(v: Version, ps: &[Part]) -> Value {
    Value::Array(ps.iter().map(|p| part(v, p)).collect())
}

pub fn message(v: Version, m: &Msg) -> Value {
    let mut o = Map::new();
    o.insert("messageId".into(), json!(m.id));
    o.insert("contextId".into(), json!(m.context_id));
    o.insert("taskId".into(), json!(m.task_id));
    let role = match (v, m.role) {
        (Version::V1, Role::User) => "ROLE_USER",
        (Version::V1, Role::Agent) => "ROLE_AGENT",
        (Version::V03, Role::User) => "user",
        (Version::V03, Role::Agent) => "agent",
    };
    o.insert("role".into(), json!(role));
    o.insert("parts".into(), parts(v, &m.parts));
    if let Some(md) = &m.metadata {
        o.insert("metadata".into(), md.clone());
    }
    if v == Version::V03 {
        o.insert("kind".into(), json!("message"));
    }
    Value::Object(o)
}

fn status(v: Version, s: &Status) -> Value {
    let mut o = Map::new();
    o.insert("state".into(), json!(s.state.name(v)));
    if let Some(m) = &s.message {
        o.insert("message".into(), message(v, m));
    }
    o.insert("timestamp".into(), json!(s.timestamp));
    Value::Object(o)
}

fn artifact(v: Version, a: &Artifact) -> Value {
    json!({"artifactId": a.id, "name": a.name, "parts": parts(v, &a.parts)})
}

/// A task object.
pub fn task(v: Version, t: &TaskView) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(t.id));
    o.insert("contextId".into(), json!(t.context_id));
    o.insert("status".into(), status(v, &t.status));
    if !t.artifacts.is_empty() {
        o.insert(
            "artifacts".into(),
            Value::Array(t.artifacts.iter().map(|a| artifact(v, a)).collect()),
        );
    }
    if !t.history.is_empty() {
        o.insert(
            "history".into(),
            Value::Array(t.history.iter().map(|m| message(v, m)).collect()),
        );
    }
    o.insert("metadata".into(), t.metadata.clone());
    if v == Version::V03 {
        o.insert("kind".into(), json!("task"));
    }
    Value::Object(o)
}

/// The result of `SendMessage`: 1.0 wraps the task as `{"task": …}`; 0.3 answers the task.
pub fn send_result(v: Version, t: &TaskView) -> Value {
    match v {
        Version::V1 => json!({"task": task(v, t)}),
        Version::V03 => task(v, t),
    }
}

/// A stream item carrying the whole task (the first of every stream).
pub fn stream_task(v: Version, t: &TaskView) -> Value {
    send_result(v, t)
}

/// A stream item: the task's status changed. `last`: the stream ends after it (0.3's
/// `final`; 1.0 ends the stream).
pub fn status_update(
    v: Version,
    task_id: &str,
    context_id: &str,
    s: &Status,
    last: bool,
    metadata: Option<Value>,
) -> Value {
    let mut o = Map::new();
    o.insert("taskId".into(), json!(task_id));
    o.insert("contextId".into(), json!(context_id));
    o.insert("status".into(), status(v, s));
    if let Some(md) = metadata {
        o.insert("metadata".into(), md);
    }
    match v {
        Version::V1 => json!({"statusUpdate": Value::Object(o)}),
        Version::V03 => {
            o.insert("kind".into(), json!("status-update"));
            o.insert("final".into(), json!(last));
            Value::Object(o)
        }
    }
}

/// A stream item: an artifact, whole.
pub fn artifact_update(v: Version, task_id: &str, context_id: &str, a: &Artifact) -> Value {
    let mut o = Map::new();
    o.insert("taskId".into(), json!(task_id));
    o.insert("contextId".into(), json!(context_id));
    o.insert("artifact".into(), artifact(v, a));
    o.insert("lastChunk".into(), json!(true));
    match v {
        Version::V1 => json!({"artifactUpdate": Value::Object(o)}),
        Version::V03 => {
            o.insert("kind".into(), json!("artifact-update"));
            Value::Object(o)
        }
    }
}

/// A JSON-RPC response carrying `result`.
pub fn ok(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// The A2A error kinds (their JSON-RPC codes and the reasons 1.0 names them by).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Parse,
    InvalidRequest,
    MethodNotFound,
    InvalidParams,
    Internal,
    TaskNotFound,
    TaskNotCancelable,
    PushNotSupported,
    Unsupported,
    ContentType,
    ExtendedCardNotConfigured,
    VersionNotSupported,
}

impl Kind {
    pub fn code(self) -> i64 {
        match self {
            Kind::Parse => -32700,
            Kind::InvalidRequest => -32600,
            Kind::MethodNotFound => -32601,
            Kind::InvalidParams => -32602,
            Kind::Internal => -32603,
            Kind::TaskNotFound => -32001,
            Kind::TaskNotCancelable => -32002,
            Kind::PushNotSupported => -32003,
            Kind::Unsupported => -32004,
            Kind::ContentType => -32005,
            Kind::ExtendedCardNotConfigured => -32007,
            Kind::VersionNotSupported => -32009,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Kind::Parse => "JSON_PARSE",
            Kind::InvalidRequest => "INVALID_REQUEST",
            Kind::MethodNotFound => "METHOD_NOT_FOUND",
            Kind::InvalidParams => "INVALID_PARAMS",
            Kind::Internal => "INTERNAL",
            Kind::TaskNotFound => "TASK_NOT_FOUND",
            Kind::TaskNotCancelable => "TASK_NOT_CANCELABLE",
            Kind::PushNotSupported => "PUSH_NOTIFICATION_NOT_SUPPORTED",
            Kind::Unsupported => "UNSUPPORTED_OPERATION",
            Kind::ContentType => "CONTENT_TYPE_NOT_SUPPORTED",
            Kind::ExtendedCardNotConfigured => "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
            Kind::VersionNotSupported => "VERSION_NOT_SUPPORTED",
        }
    }
}

/// A failed call: the A2A kind, hilo's stable code, what failed and what to do, and hilo's
/// details (the fields of an invalid input, …).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub kind: Kind,
    pub code: String,
    pub message: String,
    pub details: Value,
}

/// The longest message an error answer carries (whatever it quotes of the request).
const MAX_MESSAGE_CHARS: usize = 2000;

impl RpcError {
    pub fn new(kind: Kind, code: impl Into<String>, message: impl Into<String>) -> RpcError {
        RpcError {
            kind,
            code: code.into(),
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn with_details(mut self, details: Value) -> RpcError {
        self.details = details;
        self
    }

    /// The JSON-RPC error object. hilo's code is in `data`: 1.0 carries it in the
    /// `metadata` of a `google.rpc.ErrorInfo` (beside the A2A reason), as the 1.0 SDKs read
    /// it; 0.3 as `{"code", "details"}`.
    pub fn object(&self, v: Version) -> Value {
        let message = crate::error::excerpt(&self.message, MAX_MESSAGE_CHARS);
        let has_details = match &self.details {
            Value::Null => false,
            Value::Object(m) => !m.is_empty(),
            _ => true,
        };
        let data = match v {
            Version::V1 => {
                let mut md = Map::new();
                md.insert("code".into(), json!(self.code));
                if has_details {
                    // ErrorInfo's metadata holds strings.
                    let text = self.details.to_string();
                    md.insert(
                        "details".into(),
                        json!(crate::error::excerpt(&text, MAX_MESSAGE_CHARS * 4)),
                    );
                }
                json!([{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.kind.reason(),
                    "domain": "a2a-protocol.org",
                    "metadata": Value::Object(md),
                }])
            }
            Version::V03 => {
                let mut d = json!({"code": self.code});
                if has_details {
                    d["details"] = self.details.clone();
                }
                d
            }
        };
        json!({"code": self.kind.code(), "message": message, "data": data})
    }

    /// The JSON-RPC response carrying this error.
    pub fn response(&self, id: &Value, v: Version) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "error": self.object(v)})
    }
}

/// What a message a client sends holds: its ids, its parts, its metadata.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    pub task_id: Option<String>,
    pub parts: Vec<Part>,
    pub metadata: Map<String, Value>,
}

fn invalid(message: impl Into<String>) -> RpcError {
    RpcError::new(Kind::InvalidParams, "INVALID_PARAMS", message)
}

/// The `message` of `SendMessage`'s params (either version).
pub fn incoming(params: &Map<String, Value>) -> Result<Incoming, RpcError> {
    let m = match params.get("message") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(invalid("params.message must be an object (an A2A Message)")),
        None => {
            return Err(invalid(
                "params.message is missing: send {\"message\": {\"messageId\", \"role\", \"parts\": [{\"data\": <the workflow's input>}]}}",
            ));
        }
    };
    let task_id = match m.get("taskId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("message.taskId must be a string")),
    };
    let metadata = match m.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err(invalid("message.metadata must be an object")),
    };
    let raw = match m.get("parts") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(invalid("message.parts must be an array of parts")),
    };
    let mut parts = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let Value::Object(p) = p else {
            return Err(invalid(format!("message.parts[{i}] must be an object")));
        };
        if let Some(d) = p.get("data") {
            // 1.0: any JSON value; 0.3: an object.
            parts.push(Part::Data(d.clone()));
        } else if let Some(t) = p.get("text") {
            let Value::String(t) = t else {
                return Err(invalid(format!("message.parts[{i}].text must be a string")));
            };
            parts.push(Part::Text(t.clone()));
        } else {
            return Err(RpcError::new(
                Kind::ContentType,
                "PART_NOT_SUPPORTED",
                format!(
                    "message.parts[{i}] is neither a text nor a data part: hilo's skills take JSON (a data part, or a text part holding JSON); files are not accepted"
                ),
            ));
        }
    }
    Ok(Incoming {
        task_id,
        parts,
        metadata,
    })
}

/// Where a message's JSON is: its first data part, else its first text part.
pub enum Payload<'a> {
    Data(&'a Value),
    Text(&'a str),
    Nothing,
}

impl Incoming {
    pub fn payload(&self) -> Payload<'_> {
        if let Some(d) = self.parts.iter().find_map(|p| match p {
            Part::Data(d) => Some(d),
            Part::Text(_) => None,
        }) {
            return Payload::Data(d);
        }
        match self.parts.iter().find_map(|p| match p {
            Part::Text(t) => Some(t),
            Part::Data(_) => None,
        }) {
            Some(t) => Payload::Text(t),
            None => Payload::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn both_versions_spell_states_and_parts_their_way() {
        let t = TaskView {
            id: "e1".into(),
            context_id: "e1".into(),
            status: Status {
                state: State::Completed,
                message: None,
                timestamp: "2026-01-01T00:00:00.000Z".into(),
            },
            artifacts: vec![Artifact {
                id: "output".into(),
                name: "output".into(),
                parts: vec![Part::Data(json!(3))],
            }],
            history: vec![],
            metadata: json!({}),
        };
        let v1 = send_result(Version::V1, &t);
        assert_eq!(v1["task"]["status"]["state"], "TASK_STATE_COMPLETED");
        assert_eq!(v1["task"]["artifacts"][0]["parts"][0]["data"], 3);
        let v03 = send_result(Version::V03, &t);
        assert_eq!(v03["kind"], "task");
        assert_eq!(v03["status"]["state"], "completed");
        assert_eq!(v03["artifacts"][0]["parts"][0]["data"]["value"], 3);
    }

    #[test]
    fn errors_carry_hilos_code_in_data() {
        let e = RpcError::new(Kind::TaskNotFound, "EXECUTION_NOT_FOUND", "no task x");
        let v1 = e.object(Version::V1);
        assert_eq!(v1["code"], -32001);
        assert_eq!(v1["data"][0]["reason"], "TASK_NOT_FOUND");
        assert_eq!(v1["data"][0]["metadata"]["code"], "EXECUTION_NOT_FOUND");
        assert_eq!(
            e.object(Version::V03)["data"]["code"],
            "EXECUTION_NOT_FOUND"
        );
    }

    #[test]
    fn odd_parts_are_refused_not_trusted() {
        let p = |v: Value| incoming(v.as_object().unwrap());
        assert!(p(json!({})).is_err());
        assert!(p(json!({"message": 3})).is_err());
        assert!(p(json!({"message": {"parts": [1]}})).is_err());
        assert_eq!(
            p(json!({"message": {"parts": [{"url": "file:///etc/passwd"}]}}))
                .unwrap_err()
                .kind,
            Kind::ContentType
        );
        let ok =
            p(json!({"message": {"parts": [{"kind": "text", "text": "{}"}, {"data": {"a": 1}}]}}))
                .unwrap();
        assert!(matches!(ok.payload(), Payload::Data(d) if d["a"] == 1));
    }
}
