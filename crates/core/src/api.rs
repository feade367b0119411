//! OpenAPI tools in a definition: a `tools:` entry that names an OpenAPI document
//! ([`ApiDef`]) instead of one HTTP call. Every operation of the document becomes a tool
//! named `<prefix>.<name>`.
//!
//! Core does no IO and knows no OpenAPI: what reads a document ([`ApiRead`], the CLI's files
//! next to the workflow) and what turns one into tools ([`ApiCheck`], `hilo-tools`) come in
//! through the [`crate::validate::Catalog`]. The document's text is kept in the definition
//! (`document`), so a stored version is pinned to the document it was validated against and
//! a run never reads the file again.

use std::any::Any;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use crate::model::ToolClass;

/// One `tools:` entry with `openapi`.
#[derive(Clone, Default)]
pub struct ApiDef {
    /// The document as the author named it: a path relative to the workflow, or a URL.
    pub openapi: String,
    /// Tools are named `<prefix>.<operation>`.
    pub prefix: String,
    /// Only these operations (by `operationId`, tool name or tag); `None`: all.
    pub operations: Option<Vec<String>>,
    /// Overrides the document's `servers[0]`.
    pub base_url: Option<String>,
    pub auth: Option<ApiAuth>,
    /// The document's text, read when the definition was validated; `None` until then.
    pub document: Option<Arc<str>>,
    /// What the tool executor made of the document (opaque to core), built on first use and
    /// shared by every clone of this definition.
    pub compiled: Arc<OnceLock<Arc<dyn Any + Send + Sync>>>,
}

/// How an OpenAPI tool authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiAuth {
    /// `{secret: NAME}`: a bearer token, an API key or `user:password`, as the document's
    /// security schemes say.
    Secret(String),
    /// `{connection: NAME, entity: …}`: an OAuth 2.0 connection's token.
    Connection {
        connection: String,
        /// A template picking one end user's token (`${ input.customer_id }`).
        entity: Option<String>,
    },
}

impl PartialEq for ApiDef {
    fn eq(&self, other: &Self) -> bool {
        let same_doc = match (&self.document, &other.document) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            (None, None) => true,
            _ => false,
        };
        same_doc
            && self.openapi == other.openapi
            && self.prefix == other.prefix
            && self.operations == other.operations
            && self.base_url == other.base_url
            && self.auth == other.auth
    }
}

impl std::fmt::Debug for ApiDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiDef")
            .field("openapi", &self.openapi)
            .field("prefix", &self.prefix)
            .field("operations", &self.operations)
            .field("base_url", &self.base_url)
            .field("auth", &self.auth)
            .field("document_bytes", &self.document.as_ref().map(|d| d.len()))
            .finish()
    }
}

impl Serialize for ApiDef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("openapi", &self.openapi)?;
        m.serialize_entry("prefix", &self.prefix)?;
        if let Some(o) = &self.operations {
            m.serialize_entry("operations", o)?;
        }
        if let Some(b) = &self.base_url {
            m.serialize_entry("base_url", b)?;
        }
        if let Some(a) = &self.auth {
            m.serialize_entry("auth", a)?;
        }
        if let Some(d) = &self.document {
            m.serialize_entry("document", &**d)?;
        }
        m.end()
    }
}

impl Serialize for ApiAuth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            ApiAuth::Secret(name) => m.serialize_entry("secret", name)?,
            ApiAuth::Connection { connection, entity } => {
                m.serialize_entry("connection", connection)?;
                if let Some(e) = entity {
                    m.serialize_entry("entity", e)?;
                }
            }
        }
        m.end()
    }
}

impl ApiDef {
    /// Whether `tool` is named under this entry's prefix.
    pub fn names(&self, tool: &str) -> bool {
        tool.len() > self.prefix.len() + 1
            && tool.starts_with(&self.prefix)
            && tool.as_bytes()[self.prefix.len()] == b'.'
    }

    /// What the executor built from the document, if it is of type `T`; built with `make`
    /// on first use.
    pub fn compiled<T: Any + Send + Sync, E>(
        &self,
        make: impl FnOnce() -> Result<Arc<T>, E>,
    ) -> Result<Arc<T>, E> {
        if let Some(c) = self.compiled.get()
            && let Ok(t) = c.clone().downcast::<T>()
        {
            return Ok(t);
        }
        let made = make()?;
        let _ = self.compiled.set(made.clone());
        Ok(made)
    }
}

/// One tool an OpenAPI entry gives, as the validator needs it.
#[derive(Debug, Clone)]
pub struct ApiTool {
    pub name: String,
    pub class: ToolClass,
    /// JSON Schema of the input (an object, `additionalProperties: false`).
    pub input: Value,
}

/// Turns a read entry into its tools (implemented by `hilo-tools`).
pub trait ApiCheck: Send + Sync {
    /// The tools of `def` (whose `document` is set), or what is wrong with the document or
    /// the entry's settings, said so that the author can fix it.
    fn tools(&self, def: &ApiDef) -> Result<Vec<ApiTool>, String>;

    /// What is wrong with `value`, written out in a call, for the JSON Schema `schema` of one
    /// of an operation's arguments (the first problem, said for the author); `None`: fine.
    fn check_value(&self, schema: &Value, value: &Value) -> Option<String>;
}

/// Reads the document an entry names (implemented by the CLI: a file relative to the
/// workflow, a URL only when asked).
pub trait ApiRead: Send + Sync {
    fn read(&self, source: &str) -> Result<String, String>;
}

/// What the validator uses for OpenAPI entries.
#[derive(Clone)]
pub struct ApiSupport {
    pub check: Arc<dyn ApiCheck>,
    /// `None`: documents are not read (the server, an agent's written workflow): an entry
    /// must carry its `document` already.
    pub read: Option<Arc<dyn ApiRead>>,
}

impl std::fmt::Debug for ApiSupport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSupport")
            .field("read", &self.read.is_some())
            .finish()
    }
}
