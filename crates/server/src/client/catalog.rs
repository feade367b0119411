//! The catalog (tools, agents, audit, costs) and the server's health and readiness.

use hilo_core::tool::AuditFilter;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::error::ClientError;
use super::http::{Client, excerpt};
use crate::api::info::{AgentCatalog, AuditList, CostSummary, ToolList};
use crate::api::ops::{Health, Ready};

impl Client {
    /// `GET /tools`: the tools the key's tier may use.
    pub async fn tools(&self) -> Result<ToolList, ClientError> {
        self.get_all(&["tools"]).await
    }

    /// `GET /tools/search`: tools matching every word of `q`, best first.
    pub async fn search_tools(&self, q: &str) -> Result<ToolList, ClientError> {
        self.get_json(&["tools", "search"], &[("q", Some(q.to_string()))])
            .await
    }

    /// `GET /agents`: agent kinds, profiles and models.
    pub async fn agents(&self) -> Result<AgentCatalog, ClientError> {
        self.get_json(&["agents"], &[]).await
    }

    /// `GET /audit`: the tool audit trail.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<AuditList, ClientError> {
        self.get_json(
            &["audit"],
            &[
                ("execution_id", filter.execution_id.clone()),
                ("tool", filter.tool.clone()),
                ("since", filter.since.map(|s| s.to_string())),
                ("limit", filter.limit.map(|l| l.to_string())),
            ],
        )
        .await
    }

    /// `GET /costs/summary`: LLM spending per `period` (`hour`, `day`, `month`) and `by`
    /// (`model`, `workflow`, `node`); server defaults when absent.
    pub async fn costs(
        &self,
        period: Option<&str>,
        by: Option<&str>,
    ) -> Result<CostSummary, ClientError> {
        self.get_json(
            &["costs", "summary"],
            &[
                ("period", period.map(str::to_string)),
                ("by", by.map(str::to_string)),
            ],
        )
        .await
    }

    /// `GET /health`: the server process answers (no key needed).
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get_json(&["health"], &[]).await
    }

    /// `GET /ready`: whether the server can serve; a 503 "not ready" answer is returned too
    /// (its `status` is `not_ready`, the body says why).
    pub async fn ready(&self) -> Result<Ready, ClientError> {
        let url = self.url(&["ready"], &[])?;
        let (what, resp) = self.send(Method::GET, url, |rb| rb).await?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE {
            let bytes = resp.bytes().await.map_err(|e| self.transport(&what, &e))?;
            match serde_json::from_slice::<Ready>(&bytes) {
                Ok(r) => Ok(r),
                Err(e) if status.is_success() => Err(self.decode_error(&what, e)),
                // A 503 from something else (a proxy): report it as the HTTP error it is.
                Err(_) => Err(ClientError::Api {
                    status: status.as_u16(),
                    code: "HTTP_ERROR".into(),
                    message: format!(
                        "the server at {} answered {what} with HTTP {status} and no readiness report",
                        self.server
                    ),
                    details: json!({ "body": excerpt(&String::from_utf8_lossy(&bytes), 200) }),
                }),
            }
        } else {
            Err(self.api_error(&what, resp).await)
        }
    }
}
