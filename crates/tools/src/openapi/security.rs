//! An operation's security requirements, resolved against the document's
//! `components.securitySchemes`: what credentials a call needs and where they go.
//!
//! The operation's `security` replaces the document's when present (an empty list there
//! means "no credentials"). Each requirement is one alternative; each names one or more
//! schemes that go together. A scheme name the document does not define is left out, with a
//! note on the operation; a scheme of a kind hilo does not send (`mutualTLS`, an HTTP scheme
//! other than `bearer`/`basic`) is kept as [`Scheme::Other`] for the caller to refuse or
//! ignore.

use serde::Serialize;
use serde_json::Value;

use super::pointer::join;
use super::request::Location;
use super::schema::Expander;

/// One way to authenticate, as a security scheme describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Scheme {
    /// `Authorization: Bearer <token>` (`type: http, scheme: bearer`).
    Bearer {
        /// The scheme's key in `securitySchemes`.
        scheme: String,
        /// `bearerFormat` (`JWT`, …), a hint only.
        #[serde(skip_serializing_if = "Option::is_none")]
        format: Option<String>,
    },
    /// `Authorization: Basic <base64 user:password>` (`type: http, scheme: basic`).
    Basic { scheme: String },
    /// An API key in a header, the query or a cookie (`type: apiKey`).
    ApiKey {
        scheme: String,
        /// Where the key goes.
        location: Location,
        /// The header's, query parameter's or cookie's name.
        name: String,
    },
    /// An OAuth 2.0 access token, sent as a bearer token (`type: oauth2`).
    OAuth2 {
        scheme: String,
        /// The scopes this requirement asks for.
        scopes: Vec<String>,
        /// The flows' URLs, from the first flow that has each.
        #[serde(skip_serializing_if = "Option::is_none")]
        authorization_url: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        token_url: Option<String>,
    },
    /// An OpenID Connect access token, sent as a bearer token (`type: openIdConnect`).
    OpenIdConnect {
        scheme: String,
        scopes: Vec<String>,
        /// `openIdConnectUrl`: the discovery document.
        url: String,
    },
    /// A scheme hilo does not send (mutual TLS, HTTP digest, …): `kind` says which.
    Other { scheme: String, kind: String },
}

/// One alternative: every scheme in it is needed together. An empty requirement means the
/// operation may also be called without credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityRequirement {
    pub schemes: Vec<Scheme>,
}

/// The requirements of an operation (any one of them suffices), and notes on what was left
/// out.
pub(crate) fn requirements(
    ex: &mut Expander<'_>,
    root: &Value,
    operation: &serde_json::Map<String, Value>,
    op_ptr: &str,
) -> Vec<SecurityRequirement> {
    let (list, at) = match operation.get("security") {
        Some(s) => (s, join(op_ptr, "security")),
        None => match root.get("security") {
            Some(s) => (s, "/security".to_string()),
            None => return Vec::new(),
        },
    };
    let Value::Array(list) = list else {
        ex.note(format!(
            "`{at}` is not a list: the operation's security is not known"
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, req) in list.iter().enumerate() {
        let Value::Object(req) = req else { continue };
        let mut schemes = Vec::new();
        let mut complete = true;
        for (name, scopes) in req {
            let scopes: Vec<String> = scopes
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            match scheme(ex, root, name, scopes) {
                Some(s) => schemes.push(s),
                None => {
                    ex.note(format!(
                        "`{at}/{i}` names the security scheme `{name}`, which \
                         `components.securitySchemes` does not define: that alternative is left out"
                    ));
                    complete = false;
                }
            }
        }
        if complete {
            out.push(SecurityRequirement { schemes });
        }
    }
    out
}

fn scheme(ex: &mut Expander<'_>, root: &Value, name: &str, scopes: Vec<String>) -> Option<Scheme> {
    let at = join("/components/securitySchemes", name);
    let raw = root.pointer(&at)?;
    let (def, _) = match ex.resolve(raw, &at) {
        Ok(found) => found,
        Err(e) => {
            ex.note(e.to_string());
            return None;
        }
    };
    let s = |k: &str| def.get(k).and_then(Value::as_str).map(str::to_string);
    let scheme = name.to_string();
    Some(match s("type").as_deref() {
        Some("http") => match s("scheme").map(|x| x.to_ascii_lowercase()).as_deref() {
            Some("bearer") => Scheme::Bearer {
                scheme,
                format: s("bearerFormat"),
            },
            Some("basic") => Scheme::Basic { scheme },
            other => Scheme::Other {
                scheme,
                kind: format!("http {}", other.unwrap_or("(no scheme)")),
            },
        },
        Some("apiKey") => {
            let location = match s("in").as_deref() {
                Some("header") => Location::Header,
                Some("query") => Location::Query,
                Some("cookie") => Location::Cookie,
                other => {
                    return Some(Scheme::Other {
                        scheme,
                        kind: format!("apiKey in {}", other.unwrap_or("(nowhere)")),
                    });
                }
            };
            Scheme::ApiKey {
                scheme,
                location,
                name: s("name").unwrap_or_default(),
            }
        }
        Some("oauth2") => {
            let flows: Vec<&Value> = def
                .get("flows")
                .and_then(Value::as_object)
                .map(|f| f.values().collect())
                .unwrap_or_default();
            let first = |k: &str| {
                flows
                    .iter()
                    .find_map(|f| f.get(k).and_then(Value::as_str).map(str::to_string))
            };
            Scheme::OAuth2 {
                scheme,
                scopes,
                authorization_url: first("authorizationUrl"),
                token_url: first("tokenUrl"),
            }
        }
        Some("openIdConnect") => Scheme::OpenIdConnect {
            scheme,
            scopes,
            url: s("openIdConnectUrl").unwrap_or_default(),
        },
        other => Scheme::Other {
            scheme,
            kind: other.unwrap_or("(no type)").to_string(),
        },
    })
}
