//! Webhooks in: `POST /hooks/{tenant}/{path}` (the server's edge hands the request here),
//! verified per Standard Webhooks with the trigger's stored `whsec_…` secret, started once per
//! `webhook-id` and trigger.
//!
//! The order of the checks decides what a stranger learns: an unknown tenant and an unknown
//! path get the same answer (404); only then the signature and timestamp are checked (401), so
//! nothing about the trigger (paused, its input) is told to a caller who cannot sign; a body
//! over `[triggers] max_body` is refused (413) before it is read whole. A repeated
//! `webhook-id` is answered with the first delivery's execution and starts nothing: the claim
//! `delivery:<webhook-id>` is written with the execution, in its transaction. Every refusal
//! is an audit row (tool `ingress.webhook`, no execution) naming the trigger or path and why,
//! never the body; no answer echoes the body.

use hilo_core::exec::{StartClaim, StartedBy, WebhookDelivery};
use hilo_core::tool::{AuditEntry, AuditStatus};
use serde_json::{Map, Value, json};

use super::triggers::{Spec, spec_of};
use crate::Runtime;
use crate::error::{Refusal, Result as RtResult, RuntimeError};
use crate::runs::{Begin, StartRequest, begin};
use crate::signing::{DEFAULT_TOLERANCE_SECS, verify};

/// The audit rows' tool name.
pub const AUDIT_TOOL: &str = "ingress.webhook";

/// Headers kept with a delivery, so that it can be verified again later.
const KEPT_HEADERS: [&str; 5] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "user-agent",
];

/// A delivery as the edge received it.
pub struct Delivery<'a> {
    pub tenant: &'a str,
    pub path: &'a str,
    /// Header names in lower case, with their values (non-UTF-8 values left out).
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

impl Delivery<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A new execution (202).
    Started { execution_id: String },
    /// The `webhook-id` was delivered before: its execution (200).
    Repeated { execution_id: String },
}

/// The answer to a body over `[triggers] max_body`, which the edge gives before reading it
/// whole (audited here).
pub async fn too_large(rt: &Runtime, tenant: &str, path: &str, bytes: Option<u64>) -> RuntimeError {
    let e = body_too_large(rt.settings().triggers.max_body);
    audit(rt, tenant, path, None, &e, bytes).await;
    e
}

fn body_too_large(max: usize) -> RuntimeError {
    RuntimeError::new(
        Refusal::TooLarge,
        "BODY_TOO_LARGE",
        format!(
            "the webhook's body is over {max} bytes, the most `[triggers] max_body` takes; send a smaller body or raise the limit"
        ),
    )
}

/// Verifies and starts a delivery (see the module documentation).
pub async fn receive(rt: &Runtime, d: Delivery<'_>) -> RtResult<Received> {
    match accept(rt, &d).await {
        Ok(r) => Ok(r),
        Err((trigger, e)) => {
            audit(
                rt,
                d.tenant,
                d.path,
                trigger.as_deref(),
                &e,
                Some(d.body.len() as u64),
            )
            .await;
            Err(e)
        }
    }
}

type Refused = (Option<String>, RuntimeError);

async fn accept(rt: &Runtime, d: &Delivery<'_>) -> Result<Received, Refused> {
    let max = rt.settings().triggers.max_body;
    if d.body.len() > max {
        return Err((None, body_too_large(max)));
    }
    let not_found = || {
        RuntimeError::new(
            Refusal::NotFound,
            "WEBHOOK_NOT_FOUND",
            "no webhook trigger at this address: check the tenant's name and the trigger's path (`hilo triggers list`)",
        )
    };
    let row = rt
        .store()
        .webhook_trigger(d.tenant, d.path)
        .await
        .map_err(|e| (None, e.into()))?
        .ok_or_else(|| (None, not_found()))?;
    let name = row.name();
    let Some(Spec::Webhook { secret, input, .. }) = spec_of(&row) else {
        return Err((None, not_found()));
    };
    let fail = |e: RuntimeError| (Some(name.clone()), e);
    let unauthorized = |why: String| {
        fail(RuntimeError::new(
            Refusal::Unauthorized,
            "WEBHOOK_UNAUTHORIZED",
            format!("the delivery does not verify: {why}"),
        ))
    };
    let (Some(id), Some(ts), Some(sig)) = (
        d.header("webhook-id"),
        d.header("webhook-timestamp"),
        d.header("webhook-signature"),
    ) else {
        return Err(unauthorized(
            "webhook-id, webhook-timestamp and webhook-signature are all required (Standard Webhooks)".into(),
        ));
    };
    if id.is_empty() || id.len() > 255 {
        return Err(unauthorized(
            "webhook-id must be 1 to 255 characters".into(),
        ));
    }
    let key = match rt.secrets() {
        Some(s) => s.get(d.tenant, &secret).await.map_err(|e| {
            fail(RuntimeError::internal(
                format!("reading secret `{secret}` of webhook {name}"),
                e,
            ))
        })?,
        None => None,
    };
    let Some(key) = key else {
        // The operator's to fix; the caller learns only that it did not verify.
        tracing::warn!(
            tenant = %d.tenant,
            trigger = %name,
            "webhook secret `{secret}` is not set: every delivery is refused; set it with `hilo secrets set {secret}`"
        );
        return Err(unauthorized(
            "the trigger's signing secret is not set on this server".into(),
        ));
    };
    let now_secs = rt.clock().now_ms().div_euclid(1000);
    verify(&key, id, ts, sig, d.body, now_secs, DEFAULT_TOLERANCE_SECS)
        .map_err(|e| unauthorized(e.to_string()))?;
    if row.paused {
        return Err(fail(
            RuntimeError::new(
                Refusal::Limited,
                "TRIGGER_PAUSED",
                format!("webhook {name} is paused; deliver again once it is resumed"),
            )
            .with_retry_after(60),
        ));
    }
    let body: Value = serde_json::from_slice(d.body).map_err(|e| {
        fail(RuntimeError::new(
            Refusal::Invalid,
            "INVALID_BODY",
            format!("webhook {name}: the body is not JSON ({e}); send a JSON body"),
        ))
    })?;
    let body_text = String::from_utf8_lossy(d.body).into_owned();
    let headers: Map<String, Value> = d
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), Value::String(v.clone())))
        .collect();
    let input = match &input {
        None => body,
        Some(template) => hilo_core::expr::render_value(
            template,
            &json!({"body": body, "headers": Value::Object(headers)}),
        )
        .map_err(|e| {
            fail(RuntimeError::new(
                Refusal::Invalid,
                "INVALID_INPUT",
                format!("webhook {name}: its `input` failed on this delivery: {e}"),
            ))
        })?,
    };
    let kept: Map<String, Value> = d
        .headers
        .iter()
        .filter(|(n, _)| KEPT_HEADERS.contains(&n.as_str()))
        .map(|(n, v)| (n.clone(), Value::String(v.clone())))
        .collect();
    let at = rt.clock().now_ms();
    let claim = StartClaim::delivery(
        name.clone(),
        id,
        at,
        WebhookDelivery {
            headers: Value::Object(kept),
            body: body_text,
        },
    );
    let req = StartRequest {
        tenant: row.tenant.clone(),
        workflow: row.workflow.clone(),
        version: Some(row.version),
        input,
        callback_url: None,
        execution_id: None,
        trace_parent: None,
        started_by: StartedBy::Webhook {
            trigger: name.clone(),
            delivery: id.to_string(),
        },
        definition: None,
        untold: false,
    };
    match begin(rt.runner(), req, Some(claim)).await.map_err(fail)? {
        Begin::Started(s) => {
            let _ = rt
                .store()
                .record_fire(&row.tenant, &row.workflow, &row.id, at, &s.id)
                .await;
            metrics::counter!("hilo_webhook_deliveries_total", "tenant" => row.tenant.clone(), "outcome" => "started")
                .increment(1);
            Ok(Received::Started { execution_id: s.id })
        }
        Begin::Taken { execution_id } => {
            metrics::counter!("hilo_webhook_deliveries_total", "tenant" => row.tenant.clone(), "outcome" => "repeated")
                .increment(1);
            Ok(Received::Repeated { execution_id })
        }
    }
}

/// Records a refused delivery in the audit trail: the tenant it was addressed to, the
/// trigger (or the path when none matched), why; never the body.
async fn audit(
    rt: &Runtime,
    tenant: &str,
    path: &str,
    trigger: Option<&str>,
    e: &RuntimeError,
    bytes: Option<u64>,
) {
    metrics::counter!("hilo_webhook_deliveries_total", "tenant" => tenant.to_string(), "outcome" => e.code())
        .increment(1);
    let entry = AuditEntry {
        id: 0,
        at: rt.clock().now_ms(),
        tenant: tenant.to_string(),
        execution_id: String::new(),
        node_key: trigger.unwrap_or_default().to_string(),
        agent: None,
        tool: AUDIT_TOOL.to_string(),
        input: json!({"path": path, "trigger": trigger, "bytes": bytes}),
        output: None,
        status: AuditStatus::Error,
        error_code: Some(e.code().to_string()),
        error_message: Some(e.to_string()),
        duration_ms: 0,
        attempt: 1,
        cached: false,
        idempotency_key: String::new(),
        compensates: None,
    };
    if let Err(err) = rt.store().record_audit(&[entry]).await {
        tracing::warn!(tenant = %tenant, "a refused webhook could not be audited: {err}");
    }
}
