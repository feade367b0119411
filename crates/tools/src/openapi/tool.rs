//! An OpenAPI entry (`tools: - openapi: …`, in a workflow or in `hilo.toml`) made into tools:
//! [`compile`] reads its document once per process (cached by digest and selection), and
//! [`OpenApiTool`] calls one operation through the executor's HTTP client, so every call gets
//! what an HTTP tool gets (SSRF guard, redirects checked hop by hop, idempotency key, size
//! limit, status codes mapped to hilo's).
//!
//! Credentials (`auth: {secret: NAME}`) go where the operation's security requirements say:
//! the first alternative hilo can meet with one value (`Authorization: Bearer` for bearer,
//! OAuth 2.0 and OpenID Connect schemes; `Authorization: Basic` for basic, the value being
//! `user:password`; the header, query parameter or cookie of an API key). An operation whose
//! document declares no security gets the value as a bearer token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use base64::Engine as _;
use hilo_core::api::{ApiAuth, ApiCheck, ApiDef, ApiTool};
use hilo_core::exec::{NodeError, codes};
use hilo_core::tool::{Tool, ToolContext, ToolSource, ToolSpec};
use serde_json::{Map, Value};

use super::{
    Import, Location, Operation, RequestBody, Scheme, Select, digest_of, load, operations,
};
use crate::connections::Connections;
use crate::http::{HttpCall, HttpClient};
use crate::secrets::Secrets;

/// An entry's document read and its operations made into tools.
pub struct Compiled {
    /// `sha256:…` of the document's text.
    pub digest: String,
    pub import: Import,
    /// Whether the document declares any security scheme: when it declares none (GitHub's
    /// does not), a configured credential goes as a bearer token to every operation; when
    /// it does, an operation that requires none gets none.
    pub declares_security: bool,
    by_name: HashMap<String, usize>,
    /// Each operation's spec as a workflow's tool, made on its first call and shared by the
    /// later ones (a call does not copy its input schema again).
    workflow_specs: Vec<OnceLock<Arc<ToolSpec>>>,
}

impl Compiled {
    /// The operation named `name` (a full tool name).
    pub fn operation(&self, name: &str) -> Option<(usize, &Operation)> {
        let i = *self.by_name.get(name)?;
        Some((i, &self.import.tools[i]))
    }
}

/// Documents compiled in this process, by digest and selection: a document many workflow
/// versions (or tenants) use is read once while any of them holds it.
fn cache() -> &'static Mutex<HashMap<String, Weak<Compiled>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Weak<Compiled>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// `def`'s tools: built on first use and kept with the definition (and in the process's
/// cache). The error says what is wrong with the document or the entry, for the author.
pub fn compile(def: &ApiDef) -> Result<Arc<Compiled>, String> {
    def.compiled(|| compile_uncached(def))
}

fn compile_uncached(def: &ApiDef) -> Result<Arc<Compiled>, String> {
    let Some(text) = &def.document else {
        return Err(format!(
            "the OpenAPI document `{}` was not read; validate or import the workflow with the CLI, which reads it",
            def.openapi
        ));
    };
    let digest = digest_of(text);
    let key = format!(
        "{digest}\n{}\n{:?}\n{:?}",
        def.prefix, def.operations, def.base_url
    );
    let mut cached = cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cached.get(&key).and_then(Weak::upgrade) {
        return Ok(c);
    }
    let doc = load(text).map_err(|e| format!("`{}`: {e}", def.openapi))?;
    let select = Select {
        prefix: def.prefix.clone(),
        operations: def.operations.clone().unwrap_or_default(),
        base_url: def.base_url.clone(),
    };
    let mut import = operations(&doc, &select).map_err(|e| format!("`{}`: {e}", def.openapi))?;
    if !import.unmatched.is_empty() {
        return Err(format!(
            "`operations` lists {} that match no operation or tag of `{}`; `hilo tools import {} --prefix {}` lists them",
            import
                .unmatched
                .iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(", "),
            def.openapi,
            def.openapi,
            def.prefix
        ));
    }
    if import.tools.is_empty() {
        return Err(format!(
            "`{}` gives no tool ({} operations skipped); `hilo tools import {} --prefix {}` says why",
            def.openapi,
            import.skipped.len(),
            def.openapi,
            def.prefix
        ));
    }
    let from_url = url::Url::parse(&def.openapi)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    for op in &mut import.tools {
        if !op.base_url.relative {
            continue;
        }
        match from_url
            .as_ref()
            .and_then(|u| u.join(&op.base_url.url).ok())
        {
            Some(joined) => {
                op.base_url.url = joined.as_str().trim_end_matches('/').to_string();
                op.base_url.relative = false;
            }
            None => {
                return Err(format!(
                    "the document's server for `{}` is `{}`, not an absolute URL; set `base_url` (e.g. https://api.example.com{})",
                    op.name,
                    op.base_url.url,
                    if op.base_url.url == "/" {
                        ""
                    } else {
                        &op.base_url.url
                    }
                ));
            }
        }
    }
    let by_name = import
        .tools
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let declares_security = doc
        .root()
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty());
    let workflow_specs = import.tools.iter().map(|_| OnceLock::new()).collect();
    let compiled = Arc::new(Compiled {
        digest,
        declares_security,
        import,
        by_name,
        workflow_specs,
    });
    cached.retain(|_, w| w.strong_count() > 0);
    cached.insert(key, Arc::downgrade(&compiled));
    Ok(compiled)
}

/// The validator's view of OpenAPI entries (for [`hilo_core::validate::Catalog::api`]).
pub struct OpenApiCheck;

impl ApiCheck for OpenApiCheck {
    fn check_value(&self, schema: &Value, value: &Value) -> Option<String> {
        let validator = match jsonschema::validator_for(schema) {
            Ok(v) => v,
            // The import made every schema compile; one that does not is not the author's.
            Err(_) => return None,
        };
        let first = validator.iter_errors(value).next()?;
        let at = first.instance_path().to_string();
        let said: String = first.to_string().chars().take(300).collect();
        Some(if at.is_empty() {
            said
        } else {
            format!("at `{at}`: {said}")
        })
    }

    fn tools(&self, def: &ApiDef) -> Result<Vec<ApiTool>, String> {
        let c = compile(def)?;
        Ok(c.import
            .tools
            .iter()
            .map(|t| ApiTool {
                name: t.name.clone(),
                class: t.class,
                input: t.input_schema.clone(),
            })
            .collect())
    }
}

/// What an OpenAPI tool calls with: the executor's HTTP client, secrets and connections.
#[derive(Clone)]
pub struct Calling {
    pub client: HttpClient,
    pub secrets: Arc<dyn Secrets>,
    pub connections: Arc<Connections>,
}

/// One operation of an entry, as a tool.
pub struct OpenApiTool {
    spec: Arc<ToolSpec>,
    compiled: Arc<Compiled>,
    index: usize,
    auth: Option<ApiAuth>,
    calling: Calling,
}

impl OpenApiTool {
    /// The tool `name` of `def`, if the entry gives it.
    pub fn of(
        def: &ApiDef,
        name: &str,
        source: ToolSource,
        calling: &Calling,
    ) -> Result<Option<OpenApiTool>, String> {
        let compiled = compile(def)?;
        let Some((index, op)) = compiled.operation(name) else {
            return Ok(None);
        };
        let make = || {
            Arc::new(
                ToolSpec::new(name, op.class, op.description.clone())
                    .with_input(op.input_schema.clone())
                    .with_source(source.clone()),
            )
        };
        let spec = if source == ToolSource::Workflow {
            compiled.workflow_specs[index].get_or_init(make).clone()
        } else {
            make()
        };
        Ok(Some(OpenApiTool {
            spec,
            index,
            compiled: compiled.clone(),
            auth: def.auth.clone(),
            calling: calling.clone(),
        }))
    }

    /// Every tool of `def`.
    pub fn all(
        def: &ApiDef,
        source: ToolSource,
        calling: &Calling,
    ) -> Result<Vec<OpenApiTool>, String> {
        let compiled = compile(def)?;
        let mut out = Vec::with_capacity(compiled.import.tools.len());
        for op in &compiled.import.tools {
            if let Some(t) = OpenApiTool::of(def, &op.name, source.clone(), calling)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    fn operation(&self) -> &Operation {
        &self.compiled.import.tools[self.index]
    }

    /// Where the credential goes: the first alternative one value can meet (`None`: as a
    /// bearer token).
    fn placement(&self) -> Result<Option<&Scheme>, NodeError> {
        let op = self.operation();
        if op.security.is_empty() {
            return Ok(None);
        }
        for req in &op.security {
            if let [scheme] = req.schemes.as_slice()
                && !matches!(scheme, Scheme::Other { .. })
            {
                return Ok(Some(scheme));
            }
        }
        if op.security.iter().any(|r| r.schemes.is_empty()) {
            return Ok(None);
        }
        Err(NodeError::new(
            codes::NOT_CONFIGURED,
            format!(
                "tool `{}`: the operation's security requirements ({}) cannot be met with one secret; hilo sends a bearer token, basic credentials or one API key",
                self.spec.name,
                describe_security(op)
            ),
        ))
    }

    async fn credential(&self, ctx: &ToolContext) -> Result<Option<String>, NodeError> {
        let op = self.operation();
        match &self.auth {
            None => {
                let optional =
                    op.security.is_empty() || op.security.iter().any(|r| r.schemes.is_empty());
                if optional {
                    Ok(None)
                } else {
                    Err(NodeError::new(
                        codes::NOT_CONFIGURED,
                        format!(
                            "tool `{}` needs credentials ({}), and its `tools:` entry has no `auth`: add `auth: {{secret: NAME}}` and set it with `hilo secrets set NAME`",
                            self.spec.name,
                            describe_security(op)
                        ),
                    ))
                }
            }
            Some(ApiAuth::Secret(name)) => {
                match self.calling.secrets.get(&ctx.tenant, name).await {
                    Ok(Some(v)) => Ok(Some(v)),
                    Ok(None) => Err(NodeError::new(
                        codes::NOT_CONFIGURED,
                        format!(
                            "tool `{}` needs the secret `{name}`, which is not set for tenant `{}`: run `hilo secrets set {name}` or set HILO_SECRET_{}",
                            self.spec.name,
                            ctx.tenant,
                            name.to_ascii_uppercase()
                        ),
                    )),
                    Err(e) => Err(NodeError::new(codes::NOT_CONFIGURED, e)),
                }
            }
            Some(ApiAuth::Connection { connection, .. }) => self
                .calling
                .connections
                .token_for(&ctx.tenant, connection, &self.entity(ctx)?)
                .await
                .map(Some),
        }
    }
}

impl OpenApiTool {
    /// The end user whose token a call uses: the entry's `entity` template rendered against
    /// the calling execution's input (`""`: the tenant's own connection).
    fn entity(&self, ctx: &ToolContext) -> Result<String, NodeError> {
        let Some(ApiAuth::Connection {
            connection,
            entity: Some(template),
        }) = &self.auth
        else {
            return Ok(String::new());
        };
        let input = ctx
            .input
            .as_ref()
            .map(|i| (**i).clone())
            .unwrap_or(Value::Null);
        let doc = serde_json::json!({ "input": input });
        let rendered = hilo_core::expr::render_value(&Value::String(template.clone()), &doc)
            .map_err(|e| {
                NodeError::new(
                    codes::INVALID_INPUT,
                    format!(
                        "tool `{}`: the `entity` of connection `{connection}` ({template}) does not render against the execution's input: {e}",
                        self.spec.name
                    ),
                )
            })?;
        let entity = match rendered {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => String::new(),
        };
        if entity.is_empty() || entity.len() > 256 {
            return Err(NodeError::new(
                codes::INVALID_INPUT,
                format!(
                    "tool `{}`: the `entity` of connection `{connection}` ({template}) gave no end user (an empty or missing value, or over 256 bytes) from the execution's input",
                    self.spec.name
                ),
            ));
        }
        Ok(entity)
    }
}

fn describe_security(op: &Operation) -> String {
    let alternatives: Vec<String> = op
        .security
        .iter()
        .map(|r| {
            if r.schemes.is_empty() {
                return "none".to_string();
            }
            r.schemes
                .iter()
                .map(|s| match s {
                    Scheme::Bearer { scheme, .. } => format!("{scheme} (bearer)"),
                    Scheme::Basic { scheme } => format!("{scheme} (basic)"),
                    Scheme::ApiKey {
                        scheme,
                        location,
                        name,
                    } => format!("{scheme} (API key in {} `{name}`)", (*location).as_str()),
                    Scheme::OAuth2 { scheme, .. } => format!("{scheme} (OAuth 2.0)"),
                    Scheme::OpenIdConnect { scheme, .. } => format!("{scheme} (OpenID Connect)"),
                    Scheme::Other { scheme, kind } => format!("{scheme} ({kind})"),
                })
                .collect::<Vec<_>>()
                .join(" and ")
        })
        .collect();
    alternatives.join(", or ")
}

#[async_trait]
impl Tool for OpenApiTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    /// A call with an end user's token is cached for that end user only.
    fn cache_scope(&self, ctx: &ToolContext) -> Result<Option<String>, NodeError> {
        let entity = self.entity(ctx)?;
        Ok((!entity.is_empty()).then_some(entity))
    }

    async fn call(&self, ctx: &ToolContext, input: Value) -> Result<Value, NodeError> {
        let op = self.operation();
        let parts = op.request(&input).map_err(NodeError::from)?;
        // An operation that needs no credentials in a document that declares schemes gets
        // none; in a document that declares none, the configured one is a bearer token.
        let needs_none = op.security.is_empty() && self.compiled.declares_security;
        let credential = if needs_none {
            None
        } else {
            self.credential(ctx).await?
        };
        let first = self.send(ctx, parts.clone(), credential.clone()).await;
        // A connection's token the API refuses (401) is bought again, once.
        if let (Some(ApiAuth::Connection { connection, .. }), Some(stale), Err(e)) =
            (&self.auth, &credential, &first)
            && e.detail.as_ref().and_then(|d| d.get("status")) == Some(&Value::from(401))
        {
            self.calling
                .connections
                .forget(&ctx.tenant, connection, stale)
                .await;
            self.calling
                .connections
                .expire(&ctx.tenant, connection, &self.entity(ctx)?)
                .await;
            let fresh = self.credential(ctx).await?;
            return self.send(ctx, parts, fresh).await;
        }
        first
    }
}

impl OpenApiTool {
    async fn send(
        &self,
        ctx: &ToolContext,
        mut parts: super::RequestParts,
        credential: Option<String>,
    ) -> Result<Value, NodeError> {
        let op = self.operation();
        let mut headers = Map::new();
        if let Some(value) = credential {
            match self.placement()? {
                None
                | Some(Scheme::Bearer { .. })
                | Some(Scheme::OAuth2 { .. })
                | Some(Scheme::OpenIdConnect { .. }) => {
                    headers.insert("Authorization".into(), format!("Bearer {value}").into());
                }
                Some(Scheme::Basic { .. }) => {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
                    headers.insert("Authorization".into(), format!("Basic {encoded}").into());
                }
                Some(Scheme::ApiKey { location, name, .. }) => {
                    let encoded = super::request::enc_strict;
                    match location {
                        Location::Header => {
                            headers.insert(name.clone(), value.into());
                        }
                        Location::Query => parts.query.push((encoded(name), encoded(&value))),
                        Location::Cookie => parts.cookies.push((name.clone(), encoded(&value))),
                        Location::Path => {}
                    }
                }
                Some(Scheme::Other { .. }) => {}
            }
        }
        for (k, v) in &parts.headers {
            headers.insert(k.clone(), Value::String(v.clone()));
        }
        if let Some(cookie) = parts.cookie_header() {
            headers.insert("Cookie".into(), cookie.into());
        }
        let body = match &parts.body {
            None => None,
            Some(RequestBody::Json {
                content_type,
                value,
            }) => {
                headers.insert("Content-Type".into(), content_type.clone().into());
                Some(Value::String(value.to_string()))
            }
            Some(RequestBody::Form { content_type, text }) => {
                headers.insert("Content-Type".into(), content_type.clone().into());
                Some(Value::String(text.clone()))
            }
        };
        let call = HttpCall {
            method: parts.method.clone(),
            url: parts.url(&op.base_url.url),
            headers,
            query: Map::new(),
            body,
            timeout_ms: None,
        };
        self.calling.client.send(ctx, call).await
    }
}
