//! The client itself (the server's address, the key, the HTTP connection) and what every call
//! goes through: URLs, sending, reading answers and error answers, paged lists.

use std::fmt;
use std::time::Duration;

use reqwest::header::{self, HeaderValue};
use reqwest::{Method, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use url::Url;

use super::error::{ClientError, ErrorEnvelope};
use crate::api::conversations::AgentList;
use crate::api::info::ToolList;
use crate::api::workflows::{VersionList, WorkflowList};

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one hilo server, acting with one API key. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    /// `…/api/v1`.
    api: Url,
    /// The server as the user gave it (without `/api/v1`), for messages.
    pub(super) server: String,
    /// `Bearer <key>`; none when the key is empty (only `/health` and `/ready` work then).
    auth: Option<HeaderValue>,
    http: reqwest::Client,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .field("key", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The deepest cause of an error (the useful part of reqwest's chain, e.g. "Connection
/// refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

pub(super) fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// A path segment: percent-encoded by [`Url::path_segments_mut`], but `.`, `..` and the empty
/// string would change the path, so they are refused.
pub(super) fn segment<'a>(what: &str, s: &'a str) -> Result<&'a str, ClientError> {
    if matches!(s, "" | "." | "..") {
        return Err(ClientError::Invalid(format!("`{s}` is not a valid {what}")));
    }
    Ok(s)
}

impl Client {
    /// A client of the server at `base` (`http://HOST:PORT`, with or without `/api/v1`; `http://`
    /// is assumed when no scheme is given) with `api_key` (empty: no key, for `/health` and
    /// `/ready` only).
    pub fn new(base: &str, api_key: &str) -> Result<Client, ClientError> {
        let given = base.trim();
        if given.is_empty() {
            return Err(ClientError::Invalid(
                "no server address: give one like --server http://127.0.0.1:8080".into(),
            ));
        }
        let with_scheme = if given.contains("://") {
            given.to_string()
        } else {
            format!("http://{given}")
        };
        let invalid = |why: String| {
            ClientError::Invalid(format!(
                "`{given}` is not a server address ({why}): give one like http://127.0.0.1:8080"
            ))
        };
        let mut api = Url::parse(&with_scheme).map_err(|e| invalid(e.to_string()))?;
        if !matches!(api.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme `{}`, not http or https",
                api.scheme()
            )));
        }
        if api.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host".into()));
        }
        api.set_query(None);
        api.set_fragment(None);
        let path = api.path().trim_end_matches('/');
        let prefix = path.strip_suffix("/api/v1").unwrap_or(path).to_string();
        let mut root = api.clone();
        root.set_path(&prefix);
        let server = root.as_str().trim_end_matches('/').to_string();
        api.set_path(&format!("{prefix}/api/v1"));

        let key = api_key.trim();
        let auth = if key.is_empty() {
            None
        } else {
            let mut v = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                ClientError::Invalid(
                    "the API key contains characters an HTTP header cannot carry; copy it again from `hilo keys create`".into(),
                )
            })?;
            v.set_sensitive(true);
            Some(v)
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("hilo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ClientError::Transport(format!("cannot set up the HTTP client: {}", root_cause(&e)))
            })?;
        Ok(Client {
            api,
            server,
            auth,
            http,
        })
    }

    /// The server's address, without `/api/v1` (as messages show it).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// `…/api/v1/<segments…>?<query>`, each segment percent-encoded (`/` too).
    pub(super) fn url(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> Result<Url, ClientError> {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::Invalid(format!("`{}` cannot take a path", self.server)))?
            .extend(segments);
        let pairs: Vec<(&str, &str)> = query
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(url)
    }

    pub(super) fn transport(&self, what: &str, e: &reqwest::Error) -> ClientError {
        let cause = root_cause(e);
        let message = if e.is_connect() {
            format!(
                "cannot reach the hilo server at {} ({cause}); check `--server` and that `hilo serve` is running there",
                self.server
            )
        } else if e.is_timeout() {
            format!(
                "the hilo server at {} did not answer {what} in time ({cause})",
                self.server
            )
        } else {
            format!(
                "the connection to the hilo server at {} failed during {what} ({cause}); check `--server` and that `hilo serve` is running there",
                self.server
            )
        };
        ClientError::Transport(message)
    }

    /// Sends a request and answers its response, whatever its status.
    pub(super) async fn send(
        &self,
        method: Method,
        url: Url,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<(String, Response), ClientError> {
        let what = format!("{method} {}", url.path());
        let mut rb = self.http.request(method, url);
        if let Some(auth) = &self.auth {
            rb = rb.header(header::AUTHORIZATION, auth.clone());
        }
        let resp = build(rb)
            .send()
            .await
            .map_err(|e| self.transport(&what, &e))?;
        Ok((what, resp))
    }

    /// Sends a request; a status other than 2xx becomes a [`ClientError::Api`].
    pub(super) async fn call(
        &self,
        method: Method,
        url: Url,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<(String, Response), ClientError> {
        let (what, resp) = self.send(method, url, build).await?;
        if resp.status().is_success() {
            Ok((what, resp))
        } else {
            Err(self.api_error(&what, resp).await)
        }
    }

    pub(super) async fn api_error(&self, what: &str, resp: Response) -> ClientError {
        let status = resp.status();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return self.transport(what, &e),
        };
        match serde_json::from_slice::<ErrorEnvelope>(&bytes)
            .ok()
            .and_then(ErrorEnvelope::fields)
        {
            Some(error) => ClientError::Api {
                status: status.as_u16(),
                code: error.code,
                message: error.message,
                details: error.details,
            },
            None => {
                let body = excerpt(&String::from_utf8_lossy(&bytes), 200);
                ClientError::Api {
                    status: status.as_u16(),
                    code: "HTTP_ERROR".into(),
                    message: format!(
                        "the server at {} answered {what} with HTTP {status} and no hilo error; is `--server` the address of `hilo serve`?",
                        self.server
                    ),
                    details: json!({ "body": body }),
                }
            }
        }
    }

    pub(super) fn decode_error(&self, what: &str, why: impl fmt::Display) -> ClientError {
        ClientError::Decode(format!(
            "the server at {} answered {what} with a body this client cannot read ({why}); is it a hilo server of this version ({})?",
            self.server,
            env!("CARGO_PKG_VERSION")
        ))
    }

    pub(super) async fn json<T: DeserializeOwned>(
        &self,
        what: &str,
        resp: Response,
    ) -> Result<T, ClientError> {
        let bytes = resp.bytes().await.map_err(|e| self.transport(what, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| self.decode_error(what, e))
    }

    pub(super) async fn text(&self, what: &str, resp: Response) -> Result<String, ClientError> {
        resp.text().await.map_err(|e| self.transport(what, &e))
    }

    /// Every page of a paged list, each one's `next_cursor` followed.
    pub(super) async fn get_all<T: Paged>(&self, segments: &[&str]) -> Result<T, ClientError> {
        let limit = Some("500".to_string());
        let mut all: T = self.get_json(segments, &[("limit", limit.clone())]).await?;
        while let Some(cursor) = all.take_cursor() {
            let page: T = self
                .get_json(
                    segments,
                    &[("limit", limit.clone()), ("cursor", Some(cursor))],
                )
                .await?;
            all.append(page);
        }
        Ok(all)
    }

    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> Result<T, ClientError> {
        let url = self.url(segments, query)?;
        let (what, resp) = self.call(Method::GET, url, |rb| rb).await?;
        self.json(&what, resp).await
    }

    pub(super) async fn post_json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(segments, query)?;
        let (what, resp) = self.call(Method::POST, url, |rb| rb.json(body)).await?;
        self.json(&what, resp).await
    }

    /// A POST without a body.
    pub(super) async fn post_empty<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> Result<T, ClientError> {
        let url = self.url(segments, query)?;
        let (what, resp) = self.call(Method::POST, url, |rb| rb).await?;
        self.json(&what, resp).await
    }
}

/// A list answer that comes a page at a time.
pub(super) trait Paged: DeserializeOwned {
    fn take_cursor(&mut self) -> Option<String>;
    /// Adds the next page's items and takes its cursor.
    fn append(&mut self, next: Self);
}

macro_rules! paged {
    ($($t:ty),*) => {$(
        impl Paged for $t {
            fn take_cursor(&mut self) -> Option<String> {
                self.next_cursor.take()
            }
            fn append(&mut self, next: Self) {
                self.items.extend(next.items);
                self.next_cursor = next.next_cursor;
            }
        }
    )*};
}

paged!(WorkflowList, VersionList, ToolList, AgentList);
