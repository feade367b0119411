//! What can go wrong reading an OpenAPI document or building a call's request, with a stable
//! code per kind ([`codes`]) and, in every message, what failed, where (a JSON pointer into
//! the document, an operation, a parameter) and what to do about it.

use hilo_core::exec::NodeError;

/// The stable codes of [`OpenApiError`] (`INVALID_INPUT` is hilo's own, shared with every
/// tool whose input does not fit).
pub mod codes {
    /// The text is not a usable OpenAPI document (syntax, shape).
    pub const OPENAPI_INVALID: &str = "OPENAPI_INVALID";
    /// Not OpenAPI 3.0 or 3.1 (Swagger 2.0, 3.2, or no version at all).
    pub const OPENAPI_UNSUPPORTED_VERSION: &str = "OPENAPI_UNSUPPORTED_VERSION";
    /// A `$ref` to another file or a URL: hilo reads one self-contained document.
    pub const OPENAPI_REMOTE_REF: &str = "OPENAPI_REMOTE_REF";
    /// A local `$ref` that points nowhere, or loops on itself.
    pub const OPENAPI_BAD_REF: &str = "OPENAPI_BAD_REF";
    /// The document, or what its references expand to, is over one of hilo's bounds.
    pub const OPENAPI_TOO_LARGE: &str = "OPENAPI_TOO_LARGE";
    /// A call's arguments do not fit the operation (hilo's code for bad tool input).
    pub const INVALID_INPUT: &str = hilo_core::exec::codes::INVALID_INPUT;
}

/// An OpenAPI document could not be read, or a call's arguments could not become a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenApiError {
    /// The text is over [`MAX_DOCUMENT_BYTES`](super::MAX_DOCUMENT_BYTES).
    #[error(
        "the OpenAPI document is {bytes} bytes long, more than the {limit} bytes hilo reads; \
         import a smaller document (a filtered or split copy of the API's description)"
    )]
    TooLarge { bytes: usize, limit: usize },
    /// The text is neither valid JSON nor valid YAML, or its top level is not an object.
    #[error("the OpenAPI document is not valid {format}: {message}; fix the syntax{}", at_line(*line, *column))]
    Syntax {
        format: &'static str,
        message: String,
        line: Option<u64>,
        column: Option<u64>,
    },
    /// The document declares a version hilo does not read.
    #[error("{found}: hilo reads OpenAPI 3.0.x and 3.1.x documents; {hint}")]
    UnsupportedVersion { found: String, hint: String },
    /// A part of the document does not have the shape the specification requires.
    #[error("the OpenAPI document is invalid at `{pointer}`: {message}")]
    Invalid { pointer: String, message: String },
    /// A `$ref` to another file or a URL.
    #[error(
        "`$ref: {reference}` at `{pointer}` points outside the document; hilo reads one \
         self-contained document and never fetches references: bundle the document first \
         (e.g. `npx @redocly/cli bundle` or `swagger-cli bundle`) so every `$ref` starts with `#`"
    )]
    RemoteRef { reference: String, pointer: String },
    /// A local `$ref` that points nowhere, is not a JSON pointer, or loops on itself.
    #[error("`$ref: {reference}` at `{pointer}` cannot be followed: {message}")]
    BadRef {
        reference: String,
        pointer: String,
        message: String,
    },
    /// A bound on the work a document may cost was reached.
    #[error("the OpenAPI document is too large to import at `{pointer}`: {message}")]
    Limit { pointer: String, message: String },
    /// A call's arguments do not fit the operation (missing, wrong shape, unsafe in a URL).
    #[error("{operation}: {}{message}", param_prefix(parameter.as_deref()))]
    InvalidInput {
        operation: String,
        parameter: Option<String>,
        message: String,
    },
    /// The import's settings are unusable (a prefix that cannot start a tool name, a base URL
    /// that is not an absolute http(s) URL): `setting` is which (`prefix`, `base_url`).
    #[error("{message}")]
    Settings {
        setting: &'static str,
        message: String,
    },
}

fn at_line(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

fn param_prefix(p: Option<&str>) -> String {
    p.map(|p| format!("argument `{p}`: ")).unwrap_or_default()
}

impl OpenApiError {
    /// The stable code of this error (see [`codes`]).
    pub fn code(&self) -> &'static str {
        match self {
            OpenApiError::TooLarge { .. } | OpenApiError::Limit { .. } => codes::OPENAPI_TOO_LARGE,
            OpenApiError::Syntax { .. }
            | OpenApiError::Invalid { .. }
            | OpenApiError::Settings { .. } => codes::OPENAPI_INVALID,
            OpenApiError::UnsupportedVersion { .. } => codes::OPENAPI_UNSUPPORTED_VERSION,
            OpenApiError::RemoteRef { .. } => codes::OPENAPI_REMOTE_REF,
            OpenApiError::BadRef { .. } => codes::OPENAPI_BAD_REF,
            OpenApiError::InvalidInput { .. } => codes::INVALID_INPUT,
        }
    }

    /// The JSON pointer into the document where the problem is, when there is one.
    pub fn pointer(&self) -> Option<&str> {
        match self {
            OpenApiError::Invalid { pointer, .. }
            | OpenApiError::RemoteRef { pointer, .. }
            | OpenApiError::BadRef { pointer, .. }
            | OpenApiError::Limit { pointer, .. } => Some(pointer),
            _ => None,
        }
    }

    /// The tool protocol's error: this error's code and message (never retryable: the same
    /// document or arguments fail the same way).
    pub fn to_node_error(&self) -> NodeError {
        NodeError::new(self.code(), self.to_string())
    }

    pub(crate) fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        OpenApiError::Invalid {
            pointer: pointer.into(),
            message: message.into(),
        }
    }

    pub(crate) fn input(
        operation: &str,
        parameter: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        OpenApiError::InvalidInput {
            operation: operation.to_string(),
            parameter: parameter.map(str::to_string),
            message: message.into(),
        }
    }
}

impl From<OpenApiError> for NodeError {
    fn from(e: OpenApiError) -> NodeError {
        e.to_node_error()
    }
}
