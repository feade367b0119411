//! OAuth 2.0 connections (`[connections.NAME]` in `hilo.toml`): credentials hilo obtains and
//! keeps fresh itself, for OpenAPI tools whose entry says `auth: {connection: NAME}`.
//!
//! This version obtains tokens with the client credentials grant (RFC 6749 §4.4): the
//! client's id and its secret (from the vault of the tenant that calls) buy an access token at
//! the token endpoint (`token_url`, or the `token_endpoint` of the OpenID Connect discovery
//! document at `issuer`). A token is kept in the process per (tenant, connection) and bought
//! again a minute before it expires (or at half its life, if shorter), and once after the API
//! answers 401; one request per (tenant, connection) at a time, the others wait for it. The
//! authorization code grant (a person consents; tokens stored encrypted and refreshed across
//! processes) is not in this version yet: the validator says so.
//!
//! A token and the client secret are secrets of the call: noted so that the executor scrubs
//! them from what the call returns, and never in an error, a log line or an audit row.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hilo_core::exec::{NodeError, codes};
use serde::Deserialize;
use serde_json::Value;

use crate::secrets::{Secrets, note_used};

/// How a connection obtains its tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// A person consents once (PKCE); not in this version yet.
    #[default]
    AuthorizationCode,
    /// The client's own credentials.
    ClientCredentials,
}

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::AuthorizationCode => "authorization_code",
            Grant::ClientCredentials => "client_credentials",
        }
    }
}

/// `{secret = "NAME"}`: a value from the calling tenant's vault.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub secret: String,
}

/// `[connections.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// An OpenID Connect issuer: its discovery document names the endpoints.
    pub issuer: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub client_id: String,
    pub client_secret: Option<SecretRef>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub grant: Grant,
    /// Sent as `audience` with a client credentials request (Auth0 and others need it).
    pub audience: Option<String>,
}

impl ConnectionConfig {
    /// What is wrong with the settings, for `hilo.toml`'s error.
    pub fn check(&self, name: &str) -> Result<(), String> {
        if self.issuer.is_none() && self.token_url.is_none() {
            return Err(format!(
                "[connections.{name}] needs `issuer` (an OpenID Connect issuer URL) or `token_url`"
            ));
        }
        for (key, url) in [
            ("issuer", &self.issuer),
            ("authorize_url", &self.authorize_url),
            ("token_url", &self.token_url),
        ] {
            if let Some(u) = url {
                let ok = url::Url::parse(u)
                    .map(|p| matches!(p.scheme(), "http" | "https"))
                    .unwrap_or(false);
                if !ok {
                    return Err(format!(
                        "[connections.{name}] {key} = {u:?} is not an http(s) URL"
                    ));
                }
            }
        }
        if self.client_id.is_empty() {
            return Err(format!("[connections.{name}] client_id is empty"));
        }
        Ok(())
    }
}

/// A token bought for one (tenant, connection).
#[derive(Clone)]
struct Token {
    access: String,
    /// When to buy the next one (before it expires).
    renew_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// The process's connections: their settings and the tokens bought so far.
pub struct Connections {
    configs: BTreeMap<String, ConnectionConfig>,
    secrets: Arc<dyn Secrets>,
    client: reqwest::Client,
    tokens: Mutex<HashMap<(String, String), Slot>>,
    /// Token endpoints found by discovery, by issuer.
    discovered: Mutex<HashMap<String, String>>,
}

/// How long a token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A token response's error body (RFC 6749 §5.2).
#[derive(Deserialize)]
struct TokenError {
    error: String,
    error_description: Option<String>,
}

impl Connections {
    pub fn new(
        configs: BTreeMap<String, ConnectionConfig>,
        secrets: Arc<dyn Secrets>,
    ) -> Result<Connections, String> {
        for (name, c) in &configs {
            c.check(name)?;
        }
        let client = reqwest::Client::builder()
            .timeout(TOKEN_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hilo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("the HTTP client of connections could not start: {e}"))?;
        Ok(Connections {
            configs,
            secrets,
            client,
            tokens: Mutex::new(HashMap::new()),
            discovered: Mutex::new(HashMap::new()),
        })
    }

    pub fn configs(&self) -> &BTreeMap<String, ConnectionConfig> {
        &self.configs
    }

    fn slot(&self, tenant: &str, name: &str) -> Slot {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .entry((tenant.to_string(), name.to_string()))
            .or_default()
            .clone()
    }

    /// An access token of `name` for `tenant`: the one held while it is fresh, else a new
    /// one (one request at a time per tenant and connection).
    pub async fn token(&self, tenant: &str, name: &str) -> Result<String, NodeError> {
        let config = self.configs.get(name).ok_or_else(|| {
            NodeError::new(
                codes::NOT_CONFIGURED,
                format!(
                    "the connection `{name}` is not configured: add [connections.{name}] to hilo.toml"
                ),
            )
        })?;
        if config.grant != Grant::ClientCredentials {
            return Err(NodeError::new(
                codes::NOT_CONFIGURED,
                format!(
                    "the connection `{name}` uses the authorization code grant, which this version of hilo cannot use yet; use `grant = \"client_credentials\"` or a secret"
                ),
            ));
        }
        let slot = self.slot(tenant, name);
        let mut held = slot.lock().await;
        if let Some(t) = held.as_ref()
            && Instant::now() < t.renew_at
        {
            note_used(&t.access);
            return Ok(t.access.clone());
        }
        let token = self.buy(tenant, name, config).await?;
        note_used(&token.access);
        let access = token.access.clone();
        *held = Some(token);
        Ok(access)
    }

    /// Drops `stale` (a token the API refused with 401), so that the next call buys another;
    /// a newer token another call bought meanwhile is kept.
    pub async fn forget(&self, tenant: &str, name: &str, stale: &str) {
        let slot = self.slot(tenant, name);
        let mut held = slot.lock().await;
        if held.as_ref().is_some_and(|t| t.access == stale) {
            *held = None;
        }
    }

    async fn token_url(&self, name: &str, config: &ConnectionConfig) -> Result<String, NodeError> {
        if let Some(u) = &config.token_url {
            return Ok(u.clone());
        }
        let issuer = config.issuer.as_deref().unwrap_or_default();
        if let Some(u) = self
            .discovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(issuer)
        {
            return Ok(u.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let failed = |why: String| {
            NodeError::retryable(
                codes::UPSTREAM_ERROR,
                format!(
                    "connection `{name}`: the discovery document {url} could not be read ({why}); check `issuer`, or set `token_url`"
                ),
            )
        };
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(failed(format!("it answered {}", resp.status())));
        }
        let doc: Value = resp
            .json()
            .await
            .map_err(|e| failed(format!("not JSON: {}", e.without_url())))?;
        let endpoint = doc
            .get("token_endpoint")
            .and_then(Value::as_str)
            .ok_or_else(|| failed("it names no `token_endpoint`".into()))?
            .to_string();
        self.discovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(issuer.to_string(), endpoint.clone());
        Ok(endpoint)
    }

    /// One client credentials request.
    async fn buy(
        &self,
        tenant: &str,
        name: &str,
        config: &ConnectionConfig,
    ) -> Result<Token, NodeError> {
        let url = self.token_url(name, config).await?;
        let mut form: Vec<(&str, String)> = vec![("grant_type", "client_credentials".into())];
        if !config.scopes.is_empty() {
            form.push(("scope", config.scopes.join(" ")));
        }
        if let Some(a) = &config.audience {
            form.push(("audience", a.clone()));
        }
        let mut req = self.client.post(&url);
        match &config.client_secret {
            Some(SecretRef { secret }) => {
                let value = match self.secrets.get(tenant, secret).await {
                    Ok(Some(v)) => v,
                    Ok(None) => {
                        return Err(NodeError::new(
                            codes::NOT_CONFIGURED,
                            format!(
                                "connection `{name}` needs the client secret `{secret}`, which is not set for tenant `{tenant}`: run `hilo secrets set {secret}`"
                            ),
                        ));
                    }
                    Err(e) => return Err(NodeError::new(codes::NOT_CONFIGURED, e)),
                };
                // RFC 6749 §2.3.1: both form-encoded, then HTTP Basic.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(&config.client_id), Some(enc(&value)));
            }
            None => form.push(("client_id", config.client_id.clone())),
        }
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let req = req
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        let resp = req.send().await.map_err(|e| {
            NodeError::retryable(
                codes::UPSTREAM_ERROR,
                format!(
                    "connection `{name}`: the token endpoint {url} could not be reached ({})",
                    e.without_url()
                ),
            )
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            NodeError::retryable(
                codes::UPSTREAM_ERROR,
                format!(
                    "connection `{name}`: the token endpoint's answer was cut off ({})",
                    e.without_url()
                ),
            )
        })?;
        if !status.is_success() {
            let said = serde_json::from_slice::<TokenError>(&body)
                .map(|e| {
                    let about: String = e
                        .error_description
                        .unwrap_or_default()
                        .chars()
                        .take(200)
                        .collect();
                    format!(
                        "{}{}",
                        e.error,
                        if about.is_empty() {
                            String::new()
                        } else {
                            format!(": {about}")
                        }
                    )
                })
                .unwrap_or_else(|_| format!("status {status}"));
            let retryable = status.is_server_error() || status.as_u16() == 429;
            let message = format!(
                "connection `{name}`: the authorization server refused the client credentials request ({said}); check `client_id`, the client secret and `scopes` in [connections.{name}]"
            );
            return Err(if retryable {
                NodeError::retryable(codes::UPSTREAM_ERROR, message)
            } else {
                NodeError::new(codes::NOT_CONFIGURED, message)
            });
        }
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            expires_in: Option<u64>,
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|_| {
            NodeError::retryable(
                codes::UPSTREAM_ERROR,
                format!("connection `{name}`: the token endpoint's answer has no `access_token`"),
            )
        })?;
        // A token without `expires_in` is kept an hour; renewed a minute before it expires,
        // or at half its life if that is shorter.
        let life = Duration::from_secs(answer.expires_in.unwrap_or(3_600));
        let margin = Duration::from_secs(60).min(life / 2);
        tracing::debug!(
            connection = name,
            tenant,
            expires_in_s = life.as_secs(),
            "a connection's token was bought"
        );
        Ok(Token {
            access: answer.access_token,
            renew_at: Instant::now() + life - margin,
        })
    }
}
