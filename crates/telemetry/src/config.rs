//! `[telemetry]` in hilo.toml: where traces go. Read by `hilo-cli`'s configuration (which
//! checks its keys) and by [`crate::Traces::from_config`].

use serde::Deserialize;

/// `[telemetry]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector's base URL (`http://localhost:4318`); traces are posted to
    /// `<otlp_endpoint>/v1/traces`. Unset: the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) decides; neither set: no traces.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the traces (default `hilo`, or `OTEL_SERVICE_NAME`).
    #[serde(default)]
    pub service_name: Option<String>,
    /// Whether model calls' prompts and completions are kept (redacted) in the cost ledger
    /// and put on their `chat` spans; off (the default), they are never stored.
    #[serde(default)]
    pub capture_content: bool,
}

impl TelemetryConfig {
    /// The URL spans are posted to, when `otlp_endpoint` is set: the base URL with
    /// `/v1/traces`, unless it already ends so.
    pub fn traces_url(&self) -> Option<String> {
        let base = self.otlp_endpoint.as_deref()?.trim();
        if base.is_empty() {
            return None;
        }
        let base = base.trim_end_matches('/');
        Some(if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        })
    }

    /// Whether traces are exported: `otlp_endpoint` or one of the standard variables set
    /// (in `env`, read as the process's environment).
    pub fn enabled_with(&self, env: impl Fn(&str) -> Option<String>) -> bool {
        self.traces_url().is_some()
            || [
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ]
            .iter()
            .any(|k| env(k).is_some_and(|v| !v.trim().is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_appends_the_signal_path_once() {
        let c = |e: &str| TelemetryConfig {
            otlp_endpoint: Some(e.into()),
            ..Default::default()
        };
        assert_eq!(
            c("http://h:4318").traces_url().as_deref(),
            Some("http://h:4318/v1/traces")
        );
        assert_eq!(
            c("http://h:4318/").traces_url().as_deref(),
            Some("http://h:4318/v1/traces")
        );
        assert_eq!(
            c("http://h:4318/v1/traces").traces_url().as_deref(),
            Some("http://h:4318/v1/traces")
        );
        assert_eq!(c(" ").traces_url(), None);
        assert!(!TelemetryConfig::default().enabled_with(|_| None));
        assert!(
            TelemetryConfig::default()
                .enabled_with(|k| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://x".into()))
        );
    }
}
