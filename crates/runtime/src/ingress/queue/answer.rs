//! Answering an entry: its result published on the action's callback stream, or the entry
//! appended to the dead letters, and the entry acknowledged, in one Lua script.

use redis::RedisResult;
use serde_json::{Value, json};

use super::action::Action;
use super::keys::random_id;
use super::{CALLBACK, Ingress};

/// How long an answered action's key is kept, to answer duplicates with the same execution.
const ANSWERED_TTL_S: u64 = 7 * 24 * 3600;

/// Appends an entry to a stream, acknowledges the entry answered, and retires the action's
/// key, all or nothing: a script stops at its first failing call, and `XADD` is the first.
/// An entry no longer pending was answered already (a retry after a reply lost with the
/// connection): nothing is done again.
///
/// KEYS: the stream to append to, the action stream, the action's key (absent with `keep`).
/// ARGV: group, entry id, what to do with the action's key and its two arguments (`record`
/// execution-id seconds: the key holds the execution id for that long; `release` claim -:
/// delete the key if it still holds that claim; `keep` - -), then the field/value pairs of
/// the entry to append.
const ANSWER: &str = r"
if #redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return 0
end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 6))
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] == 'record' then
  redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
elseif ARGV[3] == 'release' and redis.call('GET', KEYS[3]) == ARGV[4] then
  redis.call('DEL', KEYS[3])
end
return 1
";

/// What happens to an action's key when its entry is answered.
pub(super) enum KeyFate<'a> {
    /// No key (a malformed entry).
    Keep,
    /// The action has this execution: the key holds its id a while longer, for duplicates
    /// (set again, should recording it after the start have failed).
    Record { key: &'a str, execution: &'a str },
    /// The key holds our claim and nothing was started: delete it (if still ours).
    Release { key: &'a str, claim: &'a str },
}

impl Ingress {
    /// Publishes a result on the action's callback stream and acknowledges the entry, at
    /// once; a callback stream that cannot take it sends the entry to the dead letters.
    pub(super) async fn publish(
        &self,
        entry: &str,
        raw: &str,
        action: &Action,
        action_type: &'static str,
        data: Value,
        fate: KeyFate<'_>,
    ) {
        let result = json!({
            "action_id": random_id(),
            "action_type": action_type,
            "task_id": action.task_id,
            "tenant_id": action.tenant_id,
            "correlation_id": action.action_id,
            "data": data,
        })
        .to_string();
        match self
            .answer(&action.callback_queue, entry, &fate, &[("action", &result)])
            .await
        {
            Ok(()) => count(if action_type == CALLBACK {
                "callback"
            } else {
                "error"
            }),
            Err(e) => {
                let what = match data["execution_id"].as_str() {
                    Some(id) => format!(
                        "execution {id} ended {}",
                        data["status"].as_str().unwrap_or("?")
                    ),
                    None => format!("the action was rejected with {}", data["error"]["code"]),
                };
                let reason = format!(
                    "the result could not be published to callback_queue `{}` ({e}); {what}",
                    action.callback_queue
                );
                self.dead_letter(entry, raw, &reason, fate).await;
            }
        }
    }

    /// Appends the entry to the dead letters with the reason, and acknowledges it.
    pub(super) async fn dead_letter(
        &self,
        entry: &str,
        raw: &str,
        reason: &str,
        fate: KeyFate<'_>,
    ) {
        tracing::warn!(
            "queue: entry {entry} of stream `{}` goes to `{}`: {reason}",
            self.settings.stream,
            self.settings.dead_letter_stream
        );
        let fields = [("action", raw), ("reason", reason), ("source_id", entry)];
        match self
            .answer(&self.settings.dead_letter_stream, entry, &fate, &fields)
            .await
        {
            Ok(()) => count("dead_letter"),
            Err(e) => tracing::error!(
                "queue: could not append entry {entry} to `{}`: {e}; it stays pending",
                self.settings.dead_letter_stream
            ),
        }
    }

    /// Runs [`ANSWER`]: appends `fields` to `stream` and acknowledges `entry`.
    async fn answer(
        &self,
        stream: &str,
        entry: &str,
        fate: &KeyFate<'_>,
        fields: &[(&str, &str)],
    ) -> RedisResult<()> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ANSWER);
        match fate {
            KeyFate::Keep => cmd.arg(2).arg(stream).arg(&self.settings.stream),
            KeyFate::Record { key, .. } | KeyFate::Release { key, .. } => {
                cmd.arg(3).arg(stream).arg(&self.settings.stream).arg(*key)
            }
        };
        cmd.arg(&self.settings.group).arg(entry);
        match fate {
            KeyFate::Keep => cmd.arg("keep").arg("-").arg("-"),
            KeyFate::Record { execution, .. } => {
                cmd.arg("record").arg(*execution).arg(ANSWERED_TTL_S)
            }
            KeyFate::Release { claim, .. } => cmd.arg("release").arg(*claim).arg("-"),
        };
        for (name, value) in fields {
            cmd.arg(*name).arg(*value);
        }
        self.redis.query("answering an entry", &cmd).await
    }
}

pub(super) fn count(outcome: &'static str) {
    metrics::counter!("hilo_queue_actions_total", "outcome" => outcome).increment(1);
}

/// `data` of an `execution.error`.
pub(super) fn rejected(
    execution: Option<&str>,
    code: &str,
    message: &str,
    details: Value,
) -> Value {
    json!({
        "execution_id": execution,
        "status": "rejected",
        "output": null,
        "error": {"code": code, "message": message, "details": details},
    })
}
