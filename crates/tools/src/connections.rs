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

use base64::Engine as _;
use hilo_core::exec::{NodeError, codes};
use hilo_core::tool::{ConnectionRow, ConnectionState, ConnectionStore};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

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
    /// Where authorization-code tokens are kept (sealed by the vault), and the callback's
    /// address; `None`: such connections cannot be used by this process.
    kept: Option<Kept>,
    /// Built on first use: a process that never buys a token never reads the system's root
    /// certificates.
    client: crate::http::LazyClient,
    tokens: Mutex<HashMap<(String, String), Slot>>,
    /// Discovery documents read, by issuer.
    discovered: Mutex<HashMap<String, Value>>,
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
        Ok(Connections {
            configs,
            secrets,
            kept: None,
            client: crate::http::LazyClient::default(),
            tokens: Mutex::new(HashMap::new()),
            discovered: Mutex::new(HashMap::new()),
        })
    }

    /// The HTTP client of token requests, built on first use.
    fn http(&self) -> Result<&reqwest::Client, NodeError> {
        self.client.get(|| {
            reqwest::Client::builder()
                .timeout(TOKEN_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("hilo/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("the HTTP client of connections could not start: {e}"))
        })
    }

    pub fn configs(&self) -> &BTreeMap<String, ConnectionConfig> {
        &self.configs
    }

    /// Keeps authorization-code tokens in `store`, sealed by `vault`; `redirect_uri` is the
    /// callback's address (`[server] public_url` + `/oauth/callback`).
    pub fn keep(
        mut self,
        vault: Arc<crate::vault::Vault>,
        store: Arc<dyn ConnectionStore>,
        redirect_uri: Option<String>,
    ) -> Connections {
        self.kept = Some(Kept {
            vault,
            store,
            redirect_uri,
        });
        self
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
        self.token_for(tenant, name, "").await
    }

    /// An access token of `name` for `tenant` and `entity` (`""`: the tenant's own).
    pub async fn token_for(
        &self,
        tenant: &str,
        name: &str,
        entity: &str,
    ) -> Result<String, NodeError> {
        let config = self.configs.get(name).ok_or_else(|| {
            NodeError::new(
                codes::NOT_CONFIGURED,
                format!(
                    "the connection `{name}` is not configured: add [connections.{name}] to hilo.toml"
                ),
            )
        })?;
        if config.grant == Grant::AuthorizationCode {
            return self.consented_token(tenant, name, entity, config).await;
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

    fn kept(&self, name: &str) -> Result<&Kept, NodeError> {
        self.kept.as_ref().ok_or_else(|| {
            NodeError::new(
                codes::NOT_CONFIGURED,
                format!(
                    "the connection `{name}` keeps tokens a person granted, and this process has no store for them"
                ),
            )
        })
    }

    /// Starts an authorization: the URL a person opens to grant `name` for `tenant` and
    /// `entity`. Its `state` and PKCE verifier are kept (sealed) for the callback, 15 minutes.
    pub async fn authorize_url(
        &self,
        tenant: &str,
        name: &str,
        entity: &str,
    ) -> Result<String, NodeError> {
        let config = self.config(name)?;
        let kept = self.kept(name)?;
        let redirect = kept.redirect_uri.clone().ok_or_else(|| {
            NodeError::new(
                codes::NOT_CONFIGURED,
                format!(
                    "connecting `{name}` needs the address of hilo's callback: set [server] public_url (hilo serve answers /oauth/callback there)"
                ),
            )
        })?;
        let endpoints = self.endpoints(name, config).await?;
        let authorize = endpoints.authorize.ok_or_else(|| {
            NodeError::new(
                codes::NOT_CONFIGURED,
                format!("[connections.{name}] needs `authorize_url` (or an `issuer` whose discovery document names one)"),
            )
        })?;
        let state = random_token(24)?;
        let verifier = random_token(48)?;
        let challenge = B64URL.encode(Sha256::digest(verifier.as_bytes()));
        let now = now_ms();
        let sealed = kept
            .vault
            .seal(tenant, &state_aad(&state), &verifier)
            .map_err(|e| NodeError::new(codes::NOT_CONFIGURED, e.to_string()))?;
        kept.store
            .put_connection_state(&ConnectionState {
                state: state.clone(),
                tenant: tenant.to_string(),
                connection: name.to_string(),
                entity: entity.to_string(),
                sealed_verifier: sealed,
                redirect_uri: redirect.clone(),
                created_at: now,
                expires_at: now + STATE_TTL_MS,
            })
            .await
            .map_err(store_error)?;
        let mut url = url::Url::parse(&authorize).map_err(|e| {
            NodeError::new(
                codes::NOT_CONFIGURED,
                format!("[connections.{name}]: the authorization endpoint is not a URL ({e})"),
            )
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code");
            q.append_pair("client_id", &config.client_id);
            q.append_pair("redirect_uri", &redirect);
            if !config.scopes.is_empty() {
                q.append_pair("scope", &config.scopes.join(" "));
            }
            q.append_pair("state", &state);
            q.append_pair("code_challenge", &challenge);
            q.append_pair("code_challenge_method", "S256");
        }
        Ok(url.into())
    }

    /// Finishes an authorization from the callback's `state` and `code`: the state is taken
    /// (once), the code exchanged with the PKCE verifier, the tokens kept sealed. Returns
    /// (tenant, connection, entity).
    pub async fn complete(
        &self,
        state: &str,
        code: &str,
    ) -> Result<(String, String, String), NodeError> {
        let kept = self.kept.as_ref().ok_or_else(|| {
            NodeError::new(codes::NOT_CONFIGURED, "this process keeps no connections")
        })?;
        let refused = |why: &str| {
            NodeError::new(
                codes::INVALID_INPUT,
                format!(
                    "this authorization cannot be finished: {why}; start it again (`hilo connections connect NAME`)"
                ),
            )
        };
        let Some(s) = kept
            .store
            .take_connection_state(state)
            .await
            .map_err(store_error)?
        else {
            return Err(refused("its state is unknown or was used already"));
        };
        if s.expires_at < now_ms() {
            return Err(refused("it took longer than 15 minutes"));
        }
        let verifier = kept
            .vault
            .open(&s.tenant, &state_aad(&s.state), &s.sealed_verifier)
            .map_err(|e| NodeError::new(codes::NOT_CONFIGURED, e.to_string()))?;
        let config = self.config(&s.connection)?;
        let form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", s.redirect_uri.clone()),
            ("code_verifier", verifier),
        ];
        let answer = self
            .token_request(&s.tenant, &s.connection, config, form)
            .await?;
        let refresh = answer.refresh_token.clone();
        self.keep_tokens(
            &s.tenant,
            &s.connection,
            &s.entity,
            config,
            answer,
            refresh,
            None,
        )
        .await?;
        Ok((s.tenant, s.connection, s.entity))
    }

    /// Drops an authorization the person refused (its state is not usable afterwards).
    pub async fn abandon(&self, state: &str) {
        if let Some(k) = &self.kept {
            let _ = k.store.take_connection_state(state).await;
        }
    }

    /// Forgets a tenant's (or an entity's) tokens of `name`, telling the server to revoke the
    /// refresh token when it has a revocation endpoint. `true` when there were tokens.
    pub async fn revoke(&self, tenant: &str, name: &str, entity: &str) -> Result<bool, NodeError> {
        let config = self.config(name)?;
        let kept = self.kept(name)?;
        let Some(row) = kept
            .store
            .get_connection(tenant, name, entity)
            .await
            .map_err(store_error)?
        else {
            return Ok(false);
        };
        let endpoints = self.endpoints(name, config).await?;
        if let (Some(url), Ok(tokens)) = (endpoints.revoke, self.open_tokens(kept, &row)) {
            let token = tokens.refresh_token.unwrap_or(tokens.access_token);
            let mut req = self.http()?.post(&url);
            if let Some(SecretRef { secret }) = &config.client_secret
                && let Ok(Some(v)) = self.secrets.get(tenant, secret).await
            {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(&config.client_id), Some(enc(&v)));
            }
            let body: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("token", &token)
                .append_pair("client_id", &config.client_id)
                .finish();
            let sent = req
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body)
                .send()
                .await;
            if let Err(e) = sent {
                tracing::warn!(connection = name, error = %e.without_url(), "the revocation request failed; the tokens are forgotten here anyway");
            }
        }
        kept.store
            .delete_connection(tenant, name, entity)
            .await
            .map_err(store_error)
    }

    /// Every kept row of `tenant` (status, scopes, expiry; never a token).
    pub async fn rows(&self, tenant: &str) -> Result<Vec<ConnectionRow>, NodeError> {
        match &self.kept {
            Some(k) => k.store.list_connections(tenant).await.map_err(store_error),
            None => Ok(Vec::new()),
        }
    }

    fn config(&self, name: &str) -> Result<&ConnectionConfig, NodeError> {
        self.configs.get(name).ok_or_else(|| {
            NodeError::new(
                codes::NOT_CONFIGURED,
                format!(
                    "the connection `{name}` is not configured: add [connections.{name}] to hilo.toml"
                ),
            )
        })
    }

    fn open_tokens(&self, kept: &Kept, row: &ConnectionRow) -> Result<Tokens, NodeError> {
        let text = kept
            .vault
            .open(
                &row.tenant,
                &row_aad(&row.connection, &row.entity),
                &row.sealed,
            )
            .map_err(|e| NodeError::new(codes::NOT_CONFIGURED, e.to_string()))?;
        serde_json::from_str(&text).map_err(|_| {
            NodeError::new(
                codes::NOT_CONFIGURED,
                format!(
                    "the kept tokens of `{}` are damaged; connect it again",
                    row.connection
                ),
            )
        })
    }

    /// Seals and keeps a token answer (the refresh token the server sent, else `refresh`).
    #[allow(clippy::too_many_arguments)]
    async fn keep_tokens(
        &self,
        tenant: &str,
        name: &str,
        entity: &str,
        config: &ConnectionConfig,
        answer: Answer,
        refresh: Option<String>,
        before: Option<&ConnectionRow>,
    ) -> Result<Tokens, NodeError> {
        let kept = self.kept(name)?;
        let tokens = Tokens {
            access_token: answer.access_token,
            refresh_token: answer.refresh_token.or(refresh),
        };
        let text = serde_json::to_string(&tokens).unwrap_or_default();
        let sealed = kept
            .vault
            .seal(tenant, &row_aad(name, entity), &text)
            .map_err(|e| NodeError::new(codes::NOT_CONFIGURED, e.to_string()))?;
        let now = now_ms();
        let row = ConnectionRow {
            tenant: tenant.to_string(),
            connection: name.to_string(),
            entity: entity.to_string(),
            sealed,
            scopes: answer.scope.unwrap_or_else(|| config.scopes.join(" ")),
            status: "connected".into(),
            expires_at: answer.expires_in.map(|s| now + (s as i64) * 1000),
            last_refresh_at: before.map(|_| now),
            last_error: None,
            created_at: before.map_or(now, |b| b.created_at),
            updated_at: now,
        };
        kept.store.put_connection(&row).await.map_err(store_error)?;
        Ok(tokens)
    }

    /// The error of a call that has no usable connection: `CONNECTION_REQUIRED`, with a URL
    /// where a person can connect it (when one can be made).
    async fn required(&self, tenant: &str, name: &str, entity: &str, why: &str) -> NodeError {
        let who = if entity.is_empty() {
            format!("tenant `{tenant}`")
        } else {
            format!("`{entity}` of tenant `{tenant}`")
        };
        let link = match self.authorize_url(tenant, name, entity).await {
            Ok(u) => format!("; a person connects it at {u}"),
            Err(e) => format!("; {}", e.message),
        };
        let mut e = NodeError::new(
            CONNECTION_REQUIRED,
            format!(
                "the connection `{name}` of {who} {why}{link} (or runs `hilo connections connect {name}{}`)",
                if entity.is_empty() {
                    String::new()
                } else {
                    format!(" --entity {entity}")
                }
            ),
        );
        if let Some(u) = link.strip_prefix("; a person connects it at ") {
            e = e.with_detail(
                serde_json::json!({"connect_url": u, "connection": name, "entity": entity}),
            );
        }
        e
    }

    /// An authorization-code token: the kept one while fresh; refreshed under the row's lease
    /// (one process at a time) when it is near its expiry.
    async fn consented_token(
        &self,
        tenant: &str,
        name: &str,
        entity: &str,
        config: &ConnectionConfig,
    ) -> Result<String, NodeError> {
        let kept = self.kept(name)?;
        let tenant_id = tenant.to_string();
        for _ in 0..LEASE_WAITS {
            let Some(row) = kept
                .store
                .get_connection(&tenant_id, name, entity)
                .await
                .map_err(store_error)?
            else {
                return Err(self
                    .required(tenant, name, entity, "is not connected")
                    .await);
            };
            if row.status != "connected" {
                return Err(self
                    .required(
                        tenant,
                        name,
                        entity,
                        "must be connected again (its refresh was refused)",
                    )
                    .await);
            }
            let tokens = self.open_tokens(kept, &row)?;
            let now = now_ms();
            let fresh = row.expires_at.is_none_or(|exp| {
                let life = exp - row.last_refresh_at.unwrap_or(row.created_at);
                now < exp - (RENEW_MARGIN_MS.min(life / 2))
            });
            if fresh {
                note_used(&tokens.access_token);
                return Ok(tokens.access_token);
            }
            let Some(refresh) = tokens.refresh_token.clone() else {
                return Err(self
                    .required(tenant, name, entity, "has expired and has no refresh token")
                    .await);
            };
            if !kept
                .store
                .lease_connection(&tenant_id, name, entity, now, now + LEASE_MS)
                .await
                .map_err(store_error)?
            {
                // Another process refreshes it: read it again shortly.
                tokio::time::sleep(Duration::from_millis(LEASE_POLL_MS)).await;
                continue;
            }
            // The lease is ours; another process may have refreshed between the read above
            // and the lease (it released its own): read the row again and, when it was,
            // use what it got rather than spend the refresh token a second time.
            let now_row = kept
                .store
                .get_connection(&tenant_id, name, entity)
                .await
                .map_err(store_error)?;
            if now_row
                .as_ref()
                .is_none_or(|r| r.last_refresh_at != row.last_refresh_at || r.status != row.status)
            {
                let _ = kept
                    .store
                    .release_connection(&tenant_id, name, entity)
                    .await;
                continue;
            }
            let outcome = self
                .refresh(tenant, name, entity, config, &row, refresh)
                .await;
            let _ = kept
                .store
                .release_connection(&tenant_id, name, entity)
                .await;
            return outcome;
        }
        Err(NodeError::retryable(
            codes::UPSTREAM_ERROR,
            format!(
                "the connection `{name}` is being refreshed by another process, which has not finished; try again"
            ),
        ))
    }

    async fn refresh(
        &self,
        tenant: &str,
        name: &str,
        entity: &str,
        config: &ConnectionConfig,
        row: &ConnectionRow,
        refresh: String,
    ) -> Result<String, NodeError> {
        let form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh.clone()),
        ];
        match self.token_request(tenant, name, config, form).await {
            Ok(answer) => {
                let tokens = self
                    .keep_tokens(
                        tenant,
                        name,
                        entity,
                        config,
                        answer,
                        Some(refresh),
                        Some(row),
                    )
                    .await?;
                note_used(&tokens.access_token);
                Ok(tokens.access_token)
            }
            Err(e) if !e.retryable => {
                // Refused (revoked, expired): a person must connect again.
                let kept = self.kept(name)?;
                let mut failed = row.clone();
                failed.status = "refresh_failed".into();
                failed.last_error = Some(e.message.chars().take(300).collect());
                failed.updated_at = now_ms();
                kept.store
                    .put_connection(&failed)
                    .await
                    .map_err(store_error)?;
                Err(self
                    .required(
                        tenant,
                        name,
                        entity,
                        "must be connected again (its refresh was refused)",
                    )
                    .await)
            }
            Err(e) => Err(e),
        }
    }

    /// Drops a consented token the API refused (401): the next call refreshes.
    pub async fn expire(&self, tenant: &str, name: &str, entity: &str) {
        let Some(kept) = &self.kept else { return };
        if let Ok(Some(mut row)) = kept.store.get_connection(tenant, name, entity).await {
            row.expires_at = Some(0);
            let _ = kept.store.put_connection(&row).await;
        }
    }

    /// The endpoints of a connection: configured, or from the issuer's discovery document.
    async fn endpoints(
        &self,
        name: &str,
        config: &ConnectionConfig,
    ) -> Result<Endpoints, NodeError> {
        let discovered = match &config.issuer {
            Some(_) if config.token_url.is_none() || config.authorize_url.is_none() => {
                Some(self.discover(name, config).await?)
            }
            Some(_) => self.discover(name, config).await.ok(),
            None => None,
        };
        let pick = |k: &str| {
            discovered
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Ok(Endpoints {
            authorize: config
                .authorize_url
                .clone()
                .or_else(|| pick("authorization_endpoint")),
            token: config.token_url.clone().or_else(|| pick("token_endpoint")),
            revoke: pick("revocation_endpoint"),
        })
    }

    /// The issuer's discovery document (read once per process).
    async fn discover(&self, name: &str, config: &ConnectionConfig) -> Result<Value, NodeError> {
        let issuer = config.issuer.as_deref().unwrap_or_default();
        if let Some(d) = self
            .discovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(issuer)
        {
            return Ok(d.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let failed = |why: String| {
            NodeError::retryable(
                codes::UPSTREAM_ERROR,
                format!(
                    "connection `{name}`: the discovery document {url} could not be read ({why}); check `issuer`, or set `token_url` and `authorize_url`"
                ),
            )
        };
        let resp = self
            .http()?
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
        self.discovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(issuer.to_string(), doc.clone());
        Ok(doc)
    }

    /// One request to the token endpoint with the client's credentials.
    async fn token_request(
        &self,
        tenant: &str,
        name: &str,
        config: &ConnectionConfig,
        mut form: Vec<(&str, String)>,
    ) -> Result<Answer, NodeError> {
        let url = self.endpoints(name, config).await?.token.ok_or_else(|| {
            NodeError::new(
                codes::NOT_CONFIGURED,
                format!("[connections.{name}] needs `token_url` (or an `issuer` whose discovery document names one)"),
            )
        })?;
        let mut req = self.http()?.post(&url);
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
        let grant = form.first().map(|(_, g)| g.clone()).unwrap_or_default();
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
                "connection `{name}`: the authorization server refused the {grant} request ({said}); check `client_id`, the client secret and `scopes` in [connections.{name}]"
            );
            return Err(if retryable {
                NodeError::retryable(codes::UPSTREAM_ERROR, message)
            } else {
                NodeError::new(codes::NOT_CONFIGURED, message)
            });
        }
        serde_json::from_slice(&body).map_err(|_| {
            NodeError::retryable(
                codes::UPSTREAM_ERROR,
                format!("connection `{name}`: the token endpoint's answer has no `access_token`"),
            )
        })
    }

    /// One client credentials request.
    async fn buy(
        &self,
        tenant: &str,
        name: &str,
        config: &ConnectionConfig,
    ) -> Result<Token, NodeError> {
        let mut form: Vec<(&str, String)> = vec![("grant_type", "client_credentials".into())];
        if !config.scopes.is_empty() {
            form.push(("scope", config.scopes.join(" ")));
        }
        if let Some(a) = &config.audience {
            form.push(("audience", a.clone()));
        }
        let answer = self.token_request(tenant, name, config, form).await?;
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

/// A token endpoint's answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct Answer {
    access_token: String,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
    scope: Option<String>,
}

/// What is sealed in a kept row.
#[derive(serde::Serialize, Deserialize)]
struct Tokens {
    access_token: String,
    refresh_token: Option<String>,
}

struct Endpoints {
    authorize: Option<String>,
    token: Option<String>,
    revoke: Option<String>,
}

/// Where authorization-code tokens are kept.
struct Kept {
    vault: Arc<crate::vault::Vault>,
    store: Arc<dyn ConnectionStore>,
    redirect_uri: Option<String>,
}

/// The code of a call whose connection is missing or must be connected again.
pub const CONNECTION_REQUIRED: &str = "CONNECTION_REQUIRED";
/// How long an authorization may take between its URL and the callback.
const STATE_TTL_MS: i64 = 15 * 60 * 1000;
/// A consented token is refreshed this long before it expires (or at half its life).
const RENEW_MARGIN_MS: i64 = 60_000;
/// How long one process may hold a row's refresh lease.
const LEASE_MS: i64 = 30_000;
/// How often a process waiting for another's refresh reads the row again, and how many times.
const LEASE_POLL_MS: u64 = 50;
const LEASE_WAITS: usize = 700;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `bytes` random bytes, URL-safe base64.
fn random_token(bytes: usize) -> Result<String, NodeError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| {
        NodeError::new(
            codes::NOT_CONFIGURED,
            format!("the operating system gave no random bytes ({e}); no authorization can start"),
        )
    })?;
    Ok(B64URL.encode(buf))
}

fn state_aad(state: &str) -> String {
    format!("connection-state:{state}")
}

fn row_aad(connection: &str, entity: &str) -> String {
    format!("connection:{connection}:{entity}")
}

fn store_error(e: hilo_core::StoreError) -> NodeError {
    NodeError::retryable(
        codes::UPSTREAM_ERROR,
        format!("the store of connections failed: {e}"),
    )
}

fn now_ms() -> i64 {
    hilo_core::store::now_ms()
}
