//! Workflows: import, list, read, versions, activate, export, delete, graph.

use hilo_core::Format;
use hilo_core::render::GraphFormat;
use hilo_core::store::Activation;
use reqwest::Method;
use reqwest::header;
use serde_json::json;

use super::error::ClientError;
use super::http::{Client, segment};
use crate::api::workflows::{Deleted, Imported, VersionList, WorkflowList, WorkflowView};

fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::IfNewest => "if_newest",
        Activation::Always => "always",
        Activation::Never => "never",
    }
}

fn graph_format_name(f: GraphFormat) -> &'static str {
    match f {
        GraphFormat::Mermaid => "mermaid",
        GraphFormat::Dot => "dot",
    }
}

impl Client {
    /// `POST /workflows`: imports a workflow from its YAML or JSON text (validated by the
    /// server; an invalid one is `INVALID_WORKFLOW` with `details.diagnostics`).
    pub async fn import_workflow(
        &self,
        text: &str,
        format: Format,
        activate: Activation,
    ) -> Result<Imported, ClientError> {
        let url = self.url(
            &["workflows"],
            &[("activate", Some(activation_name(activate).into()))],
        )?;
        let content_type = match format {
            Format::Yaml => "application/yaml",
            Format::Json => "application/json",
        };
        let body = text.to_string();
        let (what, resp) = self
            .call(Method::POST, url, |rb| {
                rb.header(header::CONTENT_TYPE, content_type).body(body)
            })
            .await?;
        self.json(&what, resp).await
    }

    /// `GET /workflows`: every workflow of the key's tenant.
    pub async fn list_workflows(&self) -> Result<WorkflowList, ClientError> {
        self.get_all(&["workflows"]).await
    }

    /// `GET /workflows/{name}`: a version, or the active one.
    pub async fn get_workflow(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Result<WorkflowView, ClientError> {
        let name = segment("workflow name", name)?;
        self.get_json(
            &["workflows", name],
            &[("version", version.map(|v| v.to_string()))],
        )
        .await
    }

    /// `GET /workflows/{name}/versions`: every version, oldest first.
    pub async fn versions(&self, name: &str) -> Result<VersionList, ClientError> {
        let name = segment("workflow name", name)?;
        self.get_all(&["workflows", name, "versions"]).await
    }

    /// `POST /workflows/{name}/activate`: makes `version` the active one.
    pub async fn activate(&self, name: &str, version: u64) -> Result<WorkflowView, ClientError> {
        let name = segment("workflow name", name)?;
        self.post_json(
            &["workflows", name, "activate"],
            &[],
            &json!({ "version": version }),
        )
        .await
    }

    /// `GET /workflows/{name}/export`: the text of a version as it was imported.
    pub async fn export(&self, name: &str, version: Option<u64>) -> Result<String, ClientError> {
        let name = segment("workflow name", name)?;
        let url = self.url(
            &["workflows", name, "export"],
            &[("version", version.map(|v| v.to_string()))],
        )?;
        let (what, resp) = self.call(Method::GET, url, |rb| rb).await?;
        self.text(&what, resp).await
    }

    /// `GET /workflows/{name}/layout`: where the builder draws the workflow's nodes; `None`
    /// while nobody placed them.
    pub async fn layout(&self, name: &str) -> Result<Option<serde_json::Value>, ClientError> {
        let name = segment("workflow name", name)?;
        let url = self.url(&["workflows", name, "layout"], &[])?;
        let (what, resp) = self.call(Method::GET, url, |rb| rb).await?;
        let v: serde_json::Value = self.json(&what, resp).await?;
        Ok(v.get("layout").filter(|l| !l.is_null()).cloned())
    }

    /// `DELETE /workflows/{name}`: deletes every version.
    pub async fn delete_workflow(&self, name: &str) -> Result<Deleted, ClientError> {
        let name = segment("workflow name", name)?;
        let url = self.url(&["workflows", name], &[])?;
        let (what, resp) = self.call(Method::DELETE, url, |rb| rb).await?;
        self.json(&what, resp).await
    }

    /// `GET /workflows/{name}/graph`: the workflow as Mermaid or Graphviz DOT text.
    pub async fn graph(
        &self,
        name: &str,
        version: Option<u64>,
        format: GraphFormat,
    ) -> Result<String, ClientError> {
        let name = segment("workflow name", name)?;
        let url = self.url(
            &["workflows", name, "graph"],
            &[
                ("version", version.map(|v| v.to_string())),
                ("format", Some(graph_format_name(format).into())),
            ],
        )?;
        let (what, resp) = self.call(Method::GET, url, |rb| rb).await?;
        self.text(&what, resp).await
    }
}
