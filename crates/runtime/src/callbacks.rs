//! Callbacks: when an execution that carries a `callback_url` ends, hilo POSTs its result
//! there, signed, and retries with exponential backoff until the receiver answers 2xx or the
//! attempts run out. Every attempt is recorded (`exec_callbacks`; `GET /executions/{id}`
//! shows it). The registration is stored with the execution, so a callback survives a crash
//! of the server: the delivery loop finds it when the execution has ended.
//!
//! The request: `POST <callback_url>` with `Content-Type: application/json` and
//! - `X-Hilo-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body bytes under the tenant's
//!   signing key (credential-store secret `callback_signing_key`, else the environment
//!   variable `HILO_SECRET_CALLBACK_SIGNING_KEY`);
//! - `X-Hilo-Execution-Id`, and `Idempotency-Key: callback:<execution id>` (the same on every
//!   retry, so a receiver can drop duplicates);
//! - body `{execution_id, workflow, version, tenant, status, output, error, finished_at, sent_at}`.
//!
//! - `webhook-id` (`callback:<execution id>`), `webhook-timestamp` and `webhook-signature`
//!   per the Standard Webhooks scheme ([`crate::webhooks`]): the signature covers the id and
//!   the timestamp, so a receiver that checks the timestamp against its clock
//!   ([`crate::signing::verify`], 5 minutes) refuses replays.
//!
//! Receivers check `webhook-signature` (or, as before, `X-Hilo-Signature` over the raw body,
//! then `sent_at` against their clock).
//!
//! Conversation messages to a conversation's callback URL go out from the same loop
//! (`deliver_message`), from the store's `hil_deliveries` outbox.
//!
//! The loop ([`run`]) gets the store, the tenants' secrets, the `[callbacks]` settings and a
//! [`Wake`]: the drives and the conversation layer hold clones of it to wake the loop early.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hilo_core::access::CallbackRecord;
use hilo_core::store::Store;
use hilo_core::tool::ToolContext;
use hilo_engine::now_ms;
use hilo_tools::http::{HttpCall, HttpClient};
use hilo_tools::{HttpSettings, Secrets};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::config::CallbackSettings;
use crate::error::{Refusal, Result as RtResult, RuntimeError};
use crate::time::rfc3339;

/// The credential-store secret holding a tenant's signing key.
pub const SIGNING_SECRET: &str = "callback_signing_key";

/// `sha256=<hex>` of `body` under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn refused(message: String) -> RuntimeError {
    RuntimeError::new(Refusal::Invalid, "CALLBACK_URL_REFUSED", message)
}

/// Checks a callback URL when an execution is submitted: http(s), a host, and not a private
/// or loopback address unless `[callbacks] allow_hosts` lists it (names are checked again
/// when they are resolved, at delivery).
pub fn check_url(url: &str, settings: &CallbackSettings) -> RtResult<()> {
    let parsed = url::Url::parse(url)
        .map_err(|e| refused(format!("callback_url `{url}` is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(refused(format!(
            "callback_url `{url}`: only http and https URLs can be called back"
        )));
    }
    let Some(host) = parsed.host_str() else {
        return Err(refused(format!("callback_url `{url}` has no host")));
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let allowed = hilo_tools::http::allow_list_allows(
        &settings.allow_hosts,
        host,
        parsed.port_or_known_default(),
    )
    .map_err(|e| {
        RuntimeError::new(
            Refusal::Misconfigured,
            "CONFIG",
            format!("[callbacks] {e}; fix hilo.toml and restart the server"),
        )
    })?;
    if !allowed
        && let Ok(ip) = bare.parse::<IpAddr>()
        && let Some(why) = hilo_tools::http::blocked_reason(ip)
    {
        return Err(refused(format!(
            "callback_url `{url}` points at a {why} address; list the host in [callbacks] allow_hosts if that is intended"
        )));
    }
    Ok(())
}

/// What wakes the delivery loop before its next poll: the end of an execution started here
/// with a callback and driven here (others' callbacks wait for the poll), or a conversation
/// message queued for its callback URL. Cheap to clone; clones share it.
#[derive(Clone, Default)]
pub struct Wake(Arc<WakeInner>);

#[derive(Default)]
struct WakeInner {
    /// Signalled when an execution of this process that has a callback ends, or a
    /// conversation message is queued for its callback URL (the delivery loop waits on it).
    ended: tokio::sync::Notify,
    /// Executions started here with a callback and being driven here.
    ids: Mutex<HashSet<String>>,
    /// How many ids `ids` holds: while none, ended executions skip the lock.
    count: AtomicUsize,
}

impl Wake {
    /// Execution `id`, about to be driven here, has a callback: its end wakes the sender.
    pub(crate) fn expect(&self, id: &str) {
        let mut ids = self.0.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.insert(id.to_string());
        self.0.count.store(ids.len(), Ordering::SeqCst);
    }

    /// Execution `id` ended (`ended`) or its drive returned: it no longer needs a wake-up.
    /// Wakes the sender if `id` ended and has a callback.
    pub(crate) fn forget(&self, id: &str, ended: bool) {
        if self.0.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut ids = self.0.ids.lock().unwrap_or_else(PoisonError::into_inner);
        let had = ids.remove(id);
        self.0.count.store(ids.len(), Ordering::SeqCst);
        drop(ids);
        if had && ended {
            self.0.ended.notify_one();
        }
    }

    /// A conversation message was queued for its callback URL: wakes the sender.
    pub(crate) fn message_queued(&self) {
        self.0.ended.notify_one();
    }
}

/// The delivery loop: sends the callbacks of ended executions (and conversation messages to
/// their callback URLs) from `store`, signed with keys from `secrets`, until `shutdown`.
pub async fn run(
    store: Arc<dyn Store>,
    secrets: Option<Arc<dyn Secrets>>,
    settings: CallbackSettings,
    wake: Wake,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let store = store.as_ref();
    let client = match HttpClient::new(&HttpSettings {
        allow_hosts: settings.allow_hosts.clone(),
        ..HttpSettings::default()
    }) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("callbacks are off: {e}");
            return;
        }
    };
    tokio::pin!(shutdown);
    loop {
        match store.due_callbacks(now_ms(), 32).await {
            Ok(due) => {
                let sends = due
                    .into_iter()
                    .map(|c| deliver(store, &client, secrets.as_deref(), &settings, c));
                futures_util::future::join_all(sends).await;
            }
            Err(e) => tracing::error!("reading due callbacks: {e}"),
        }
        match store.due_deliveries(now_ms(), 32).await {
            Ok(due) => {
                let sends = due
                    .into_iter()
                    .map(|d| deliver_message(store, &client, secrets.as_deref(), &settings, d));
                futures_util::future::join_all(sends).await;
            }
            Err(e) => tracing::error!("reading due conversation messages to deliver: {e}"),
        }
        // Wake when an execution started here with a callback ends, or poll (executions
        // resumed or run by other processes, retries).
        tokio::select! {
            _ = &mut shutdown => return,
            _ = wake.0.ended.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

pub(crate) async fn signing_key(
    secrets: Option<&dyn Secrets>,
    tenant: &str,
) -> Result<String, String> {
    if let Some(s) = secrets
        && let Some(v) = s.get(tenant, SIGNING_SECRET).await?
    {
        return Ok(v);
    }
    std::env::var("HILO_SECRET_CALLBACK_SIGNING_KEY").map_err(|_| {
        format!(
            "no signing key for tenant `{tenant}`: store one with `printf %s \"$KEY\" | hilo secrets set {SIGNING_SECRET} --tenant {tenant}` (or set HILO_SECRET_CALLBACK_SIGNING_KEY)"
        )
    })
}

/// One attempt at one callback, recorded.
async fn deliver(
    store: &dyn Store,
    client: &HttpClient,
    secrets: Option<&dyn Secrets>,
    settings: &CallbackSettings,
    mut c: CallbackRecord,
) {
    let now = now_ms();
    c.attempts += 1;
    let outcome = attempt(store, client, secrets, settings, &c).await;
    match outcome {
        Ok(status) => {
            c.status = "delivered".into();
            c.last_status = Some(status);
            c.last_error = None;
            c.delivered_at = Some(now_ms());
            metrics::counter!("hilo_callbacks_total", "outcome" => "delivered").increment(1);
        }
        Err((status, error)) => {
            c.last_status = status;
            c.last_error = Some(error);
            if c.attempts >= settings.max_attempts {
                c.status = "failed".into();
                metrics::counter!("hilo_callbacks_total", "outcome" => "failed").increment(1);
            } else {
                let backoff = settings
                    .initial_backoff_ms
                    .saturating_mul(1u64 << (c.attempts - 1).min(20))
                    .min(settings.max_backoff_ms);
                c.next_at = now + backoff as i64;
                metrics::counter!("hilo_callbacks_total", "outcome" => "retry").increment(1);
            }
        }
    }
    if let Err(e) = store.update_callback(&c).await {
        tracing::error!(
            "recording the callback of execution {}: {e}",
            c.execution_id
        );
    }
}

async fn attempt(
    store: &dyn Store,
    client: &HttpClient,
    secrets: Option<&dyn Secrets>,
    settings: &CallbackSettings,
    c: &CallbackRecord,
) -> Result<u16, (Option<u16>, String)> {
    let e = store
        .get_execution(&c.tenant, &c.execution_id)
        .await
        .map_err(|e| (None, e.to_string()))?;
    let body = json!({
        "execution_id": e.id,
        "workflow": e.workflow,
        "version": e.version,
        "tenant": e.tenant,
        "status": e.status.as_str(),
        "output": e.output,
        "error": e.error,
        "finished_at": e.finished_at.map(rfc3339),
        "sent_at": rfc3339(now_ms()),
    })
    .to_string();
    let key = signing_key(secrets, &c.tenant)
        .await
        .map_err(|e| (None, e))?;
    let mut headers = Map::new();
    headers.insert("Content-Type".into(), json!("application/json"));
    headers.insert(
        "X-Hilo-Signature".into(),
        json!(sign(key.as_bytes(), body.as_bytes())),
    );
    headers.insert("X-Hilo-Execution-Id".into(), json!(c.execution_id));
    let id = format!("callback:{}", c.execution_id);
    for (name, value) in crate::signing::headers(&key, &id, now_ms() / 1000, body.as_bytes()) {
        headers.insert(name.into(), json!(value));
    }
    let ctx = ToolContext {
        tenant: c.tenant.clone(),
        execution_id: c.execution_id.clone(),
        node_key: "callback".into(),
        idempotency_key: format!("callback:{}", c.execution_id),
        attempt: c.attempts,
        compensation: false,
        trace: None,
        grant: None,
        input: None,
    };
    let call = HttpCall {
        method: "POST".into(),
        url: c.url.clone(),
        headers,
        query: Map::new(),
        body: Some(Value::String(body)),
        timeout_ms: Some(settings.timeout_ms),
    };
    match client.send(&ctx, call).await {
        Ok(v) => Ok(v["status"].as_u64().unwrap_or(200) as u16),
        Err(err) => {
            let status = err
                .detail
                .as_ref()
                .and_then(|d| d["status"].as_u64())
                .map(|s| s as u16);
            Err((status, err.message))
        }
    }
}

/// One attempt at POSTing a conversation message to its callback URL, recorded: signed like
/// execution callbacks (`X-Hilo-Signature` over the body, `X-Hilo-Conversation-Id`,
/// `Idempotency-Key: message:<conversation id>:<seq>`, the same on every retry), retried with
/// backoff up to `[callbacks] max_attempts`. Body: `{conversation_id, tenant, message: {seq,
/// sender, author, content, at}, sent_at}`. Deliveries are stored with their message, so a
/// restart loses none, and a conversation's go out in order (the store hands out only its
/// oldest pending one).
async fn deliver_message(
    store: &dyn Store,
    client: &HttpClient,
    secrets: Option<&dyn Secrets>,
    settings: &CallbackSettings,
    mut d: hilo_core::hil::Delivery,
) {
    d.attempts += 1;
    let result = post_message(store, client, secrets, settings, &d).await;
    match result {
        Ok(()) => {
            d.status = "delivered".into();
            d.last_error = None;
            metrics::counter!("hilo_conversation_callbacks_total", "outcome" => "delivered")
                .increment(1);
        }
        Err(e) => {
            d.last_error = Some(e);
            if d.attempts >= settings.max_attempts {
                d.status = "failed".into();
                tracing::error!(
                    "message {} of conversation {} was not delivered to {} after {} attempts: {}",
                    d.seq,
                    d.conversation_id,
                    d.url,
                    d.attempts,
                    d.last_error.as_deref().unwrap_or("")
                );
                metrics::counter!("hilo_conversation_callbacks_total", "outcome" => "failed")
                    .increment(1);
            } else {
                let backoff = settings
                    .initial_backoff_ms
                    .saturating_mul(1u64 << (d.attempts - 1).min(20))
                    .min(settings.max_backoff_ms);
                d.next_at = now_ms() + backoff as i64;
                metrics::counter!("hilo_conversation_callbacks_total", "outcome" => "retry")
                    .increment(1);
            }
        }
    }
    if let Err(e) = store.update_delivery(&d).await {
        tracing::error!(
            "recording the delivery of message {} of conversation {}: {e}",
            d.seq,
            d.conversation_id
        );
    }
}

async fn post_message(
    store: &dyn Store,
    client: &HttpClient,
    secrets: Option<&dyn Secrets>,
    settings: &CallbackSettings,
    d: &hilo_core::hil::Delivery,
) -> Result<(), String> {
    let m = store
        .list_messages(&d.tenant, &d.conversation_id, d.seq.saturating_sub(1), 1)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .filter(|m| m.seq == d.seq)
        .ok_or_else(|| format!("message {} is no longer stored", d.seq))?;
    let body = json!({
        "conversation_id": d.conversation_id,
        "tenant": d.tenant,
        "message": {
            "seq": m.seq,
            "sender": m.sender.as_str(),
            "author": m.author,
            "content": m.content,
            "at": rfc3339(m.at),
        },
        "sent_at": rfc3339(now_ms()),
    })
    .to_string();
    let key = signing_key(secrets, &d.tenant).await?;
    let mut headers = Map::new();
    headers.insert("Content-Type".into(), json!("application/json"));
    headers.insert(
        "X-Hilo-Signature".into(),
        json!(sign(key.as_bytes(), body.as_bytes())),
    );
    headers.insert("X-Hilo-Conversation-Id".into(), json!(d.conversation_id));
    let id = format!("message:{}:{}", d.conversation_id, d.seq);
    for (name, value) in crate::signing::headers(&key, &id, now_ms() / 1000, body.as_bytes()) {
        headers.insert(name.into(), json!(value));
    }
    let ctx = ToolContext {
        tenant: d.tenant.clone(),
        execution_id: d.conversation_id.clone(),
        node_key: "callback".into(),
        idempotency_key: format!("message:{}:{}", d.conversation_id, d.seq),
        attempt: d.attempts,
        compensation: false,
        trace: None,
        grant: None,
        input: None,
    };
    let call = HttpCall {
        method: "POST".into(),
        url: d.url.clone(),
        headers,
        query: Map::new(),
        body: Some(Value::String(body)),
        timeout_ms: Some(settings.timeout_ms),
    };
    client
        .send(&ctx, call)
        .await
        .map(|_| ())
        .map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowing(hosts: &[&str]) -> CallbackSettings {
        CallbackSettings {
            allow_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..CallbackSettings::default()
        }
    }

    #[test]
    fn allow_hosts_entries_take_a_port() {
        let s = allowing(&["127.0.0.1:9000", "[::1]"]);
        assert!(check_url("http://127.0.0.1:9000/cb", &s).is_ok());
        // Another port of a host listed with a port is still refused.
        assert!(check_url("http://127.0.0.1:9001/cb", &s).is_err());
        // A host listed without a port: every port.
        assert!(check_url("http://[::1]:1234/cb", &s).is_ok());
        // IPv4 embedded in IPv6 is judged by its IPv4.
        assert!(check_url("http://[64:ff9b::a9fe:a9fe]/cb", &s).is_err());
        assert!(check_url("http://[::ffff:127.0.0.1]:9000/cb", &s).is_err());
    }

    #[test]
    fn an_unparsable_allow_hosts_entry_is_a_configuration_error() {
        let e = check_url("http://127.0.0.1/cb", &allowing(&["127.0.0.1:http"])).unwrap_err();
        assert_eq!(e.code(), "CONFIG");
        assert!(e.to_string().contains("`127.0.0.1:http`"), "{e}");
        // hilo.toml with such an entry is refused when it is read: the server's
        // `config::tests::an_unparsable_allow_hosts_entry_is_refused_when_read`.
    }
}
