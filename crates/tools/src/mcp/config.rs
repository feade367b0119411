//! `[mcp.servers.NAME]` in hilo.toml: how to reach one MCP server — a program hilo starts and
//! talks to over stdio (`command`, `args`, `env`), or a streamable HTTP endpoint (`url`,
//! `headers`) — checked completely before anything is started.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::McpError;

/// Used when a server sets no `startup_timeout_ms`.
pub const DEFAULT_STARTUP_TIMEOUT_MS: u64 = 30_000;

const FIELDS: &str = "command, args, env (a program speaking MCP on stdio) or url, headers (a streamable HTTP endpoint); and timeout_ms, startup_timeout_ms, optional";

/// One `[mcp.servers.NAME]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The program to start; hilo speaks MCP over its stdin/stdout.
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Set for the program, on top of hilo's own environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A streamable HTTP endpoint (`http://` or `https://`).
    #[serde(default)]
    pub url: Option<String>,
    /// Sent with every HTTP request (e.g. `Authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Default timeout of this server's tools (a node's timeout and `[tools.settings]` win).
    #[serde(default, deserialize_with = "hilo_core::duration::serde_opt_ms")]
    pub timeout_ms: Option<u64>,
    /// How long the server may take to start, answer `initialize` and list its tools.
    #[serde(
        default = "default_startup",
        deserialize_with = "hilo_core::duration::serde_ms"
    )]
    pub startup_timeout_ms: u64,
    /// When true, a server that cannot be reached at startup is skipped (with a warning)
    /// instead of stopping hilo.
    #[serde(default)]
    pub optional: bool,
}

fn default_startup() -> u64 {
    DEFAULT_STARTUP_TIMEOUT_MS
}

/// How hilo reaches a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpTransport<'a> {
    Stdio {
        command: &'a str,
        args: &'a [String],
        env: &'a BTreeMap<String, String>,
    },
    Http {
        url: &'a str,
        headers: &'a BTreeMap<String, String>,
    },
}

impl McpServerConfig {
    /// The configured values that are credentials: secret-named headers (`Authorization`,
    /// `X-Api-Key`, …) and their token after the scheme (`Bearer x` → `x`), secret-named
    /// environment variables, and the URL's password. The executor scrubs them from every
    /// outcome of this server's tools.
    pub fn secret_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in self.headers.iter().chain(self.env.iter()) {
            if crate::redact::is_secret_key(k) {
                out.push(v.clone());
                if let Some((_, token)) = v.split_once(' ') {
                    out.push(token.trim().to_string());
                }
            }
        }
        if let Some(p) = self
            .url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.password().map(str::to_string))
        {
            out.push(p);
        }
        out.retain(|v| !v.is_empty());
        out
    }

    /// A server started as `command args…`.
    pub fn stdio(command: impl Into<String>, args: &[&str]) -> McpServerConfig {
        McpServerConfig {
            command: Some(command.into()),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..McpServerConfig::empty()
        }
    }

    /// A server at a streamable HTTP endpoint.
    pub fn http(url: impl Into<String>) -> McpServerConfig {
        McpServerConfig {
            url: Some(url.into()),
            ..McpServerConfig::empty()
        }
    }

    fn empty() -> McpServerConfig {
        McpServerConfig {
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            url: None,
            headers: BTreeMap::new(),
            timeout_ms: None,
            startup_timeout_ms: DEFAULT_STARTUP_TIMEOUT_MS,
            optional: false,
        }
    }

    /// The transport, or why the table describes none (or two).
    pub fn transport(&self) -> Result<McpTransport<'_>, String> {
        match (&self.command, &self.url) {
            (Some(_), Some(_)) => Err(
                "sets both `command` and `url`: a server is either a program hilo starts (command, args, env) or a streamable HTTP endpoint (url, headers); keep one".into(),
            ),
            (None, None) => Err(
                "needs `command` (a program speaking MCP on stdio) or `url` (a streamable HTTP endpoint)".into(),
            ),
            (Some(command), None) => {
                if command.trim().is_empty() {
                    return Err("`command` is empty: give the program to start".into());
                }
                if !self.headers.is_empty() {
                    return Err("`headers` apply to `url` servers only; a `command` server takes `env`".into());
                }
                Ok(McpTransport::Stdio {
                    command,
                    args: &self.args,
                    env: &self.env,
                })
            }
            (None, Some(url)) => {
                if !self.args.is_empty() || !self.env.is_empty() {
                    return Err(
                        "`args` and `env` apply to `command` servers only; a `url` server takes `headers`".into(),
                    );
                }
                Ok(McpTransport::Http {
                    url,
                    headers: &self.headers,
                })
            }
        }
    }

    /// What is started or called, for messages: `node server.js stdio` or the URL.
    pub fn target(&self) -> String {
        match (&self.command, &self.url) {
            (Some(c), _) => std::iter::once(c)
                .chain(&self.args)
                .map(|a| {
                    if a.is_empty() || a.contains(char::is_whitespace) {
                        format!("'{a}'")
                    } else {
                        a.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
            (None, Some(u)) => u.clone(),
            (None, None) => "no command or url".into(),
        }
    }

    /// Checks everything that can be checked without starting the server.
    pub fn check(&self, server: &str) -> Result<(), McpError> {
        let err = |message: String| McpError::Config {
            server: server.to_string(),
            message,
        };
        if !is_valid_server_name(server) {
            return Err(err(
                "server names may use letters, digits, `_` and `-` only (its tools are named mcp.<server>.<tool>)".into(),
            ));
        }
        match self.transport().map_err(err)? {
            McpTransport::Stdio { env, .. } => {
                if let Some(k) = env.keys().find(|k| k.is_empty() || k.contains('=')) {
                    return Err(err(format!("`env` has the invalid variable name `{k}`")));
                }
            }
            McpTransport::Http { url, headers } => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| err(format!("`url` = \"{url}\" is not a valid URL: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(err(format!(
                        "`url` = \"{url}\": only http and https endpoints are supported (for a local program, use `command`)"
                    )));
                }
                for (k, v) in headers {
                    if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                        return Err(err(format!("`headers` has the invalid header name `{k}`")));
                    }
                    if reqwest::header::HeaderValue::from_str(v).is_err() {
                        return Err(err(format!(
                            "the value of header `{k}` is not a valid HTTP header value"
                        )));
                    }
                }
            }
        }
        if self.startup_timeout_ms == 0 {
            return Err(err("`startup_timeout_ms` must be at least 1".into()));
        }
        Ok(())
    }
}

/// `[A-Za-z0-9_-]+`: the server part of `mcp.<server>.<tool>` has no dots.
pub fn is_valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Reads `[mcp.servers]` (the value at `/mcp/servers` of the parsed hilo.toml) and checks
/// every server.
pub fn parse_servers(value: &Value) -> Result<BTreeMap<String, McpServerConfig>, McpError> {
    let Value::Object(servers) = value else {
        return Err(McpError::Config {
            server: String::new(),
            message:
                "`mcp.servers` must be a table of servers: write each one as [mcp.servers.NAME]"
                    .into(),
        });
    };
    let mut out = BTreeMap::new();
    for (name, v) in servers {
        if !v.is_object() {
            return Err(McpError::Config {
                server: name.clone(),
                message: format!("must be a table with the fields {FIELDS}"),
            });
        }
        let config: McpServerConfig =
            serde_json::from_value(v.clone()).map_err(|e| McpError::Config {
                server: name.clone(),
                message: format!("{e} (fields: {FIELDS})"),
            })?;
        config.check(name)?;
        out.insert(name.clone(), config);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        parse_servers(&v).unwrap_err().to_string()
    }

    #[test]
    fn reads_stdio_and_http_servers() {
        let s = parse_servers(&json!({
            "files": {"command": "mcp-files", "args": ["--root", "/tmp"], "env": {"A": "1"}, "timeout_ms": 5000},
            "remote": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer x"}, "optional": true}
        }))
        .unwrap();
        assert_eq!(s["files"].target(), "mcp-files --root /tmp");
        assert_eq!(s["files"].timeout_ms, Some(5000));
        assert_eq!(s["files"].startup_timeout_ms, DEFAULT_STARTUP_TIMEOUT_MS);
        assert!(matches!(
            s["remote"].transport(),
            Ok(McpTransport::Http { .. })
        ));
        assert!(s["remote"].optional);
    }

    #[test]
    fn rejects_bad_tables_with_help() {
        let e = err(json!({"files": {"comand": "x"}}));
        assert!(
            e.contains("[MCP_CONFIG] [mcp.servers.files]: unknown field `comand`"),
            "{e}"
        );
        assert!(e.contains("fields: command, args"), "{e}");
        let e = err(json!({"files": {"command": "x", "url": "http://h/mcp"}}));
        assert!(e.contains("sets both `command` and `url`"), "{e}");
        let e = err(json!({"files": {"args": ["x"]}}));
        assert!(e.contains("needs `command`"), "{e}");
        let e = err(json!({"files": {"url": "ftp://h/x"}}));
        assert!(e.contains("only http and https"), "{e}");
        let e = err(json!({"files": {"url": "http://h/x", "env": {"A": "1"}}}));
        assert!(e.contains("apply to `command` servers only"), "{e}");
        let e = err(json!({"files": {"command": "x", "headers": {"A": "1"}}}));
        assert!(e.contains("apply to `url` servers only"), "{e}");
        let e = err(json!({"my.files": {"command": "x"}}));
        assert!(e.contains("server names may use"), "{e}");
        let e = err(json!({"files": {"url": "http://h/x", "headers": {"Bad Name": "1"}}}));
        assert!(e.contains("invalid header name"), "{e}");
        let e = err(json!({"files": "x"}));
        assert!(e.contains("must be a table"), "{e}");
        let e = err(json!({"files": {"command": "x", "env": {"A": 1}}}));
        assert!(e.contains("invalid type"), "{e}");
    }
}
