//! People in the loop: the tasks executions ask them, conversations, human agents, their
//! inboxes, the queue and the KPIs.

use hilo_core::exec::TaskFilter;
use reqwest::Method;
use serde_json::{Value, json};

use super::error::ClientError;
use super::http::{Client, segment};
use crate::api::conversations::{
    ActedView, AgentList, AgentView, ConversationList, ConversationView, ItemList, MessageList,
    MessageView, PostedView, StatsView, TransitionList,
};
use crate::api::tasks::{Answered, TaskList};

impl Client {
    /// `GET /tasks`: human tasks of the key's tenant, oldest first.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<TaskList, ClientError> {
        let skills = (!filter.skills.is_empty()).then(|| filter.skills.join(","));
        self.get_json(
            &["tasks"],
            &[
                ("status", filter.status.clone()),
                ("assignee", filter.assignee.clone()),
                ("skills", skills),
                ("limit", filter.limit.map(|l| l.to_string())),
            ],
        )
        .await
    }

    /// `POST /tasks/{id}/answer`: answers a pending task (`id` is `<execution id>.<node key>`;
    /// a `/` in it is percent-encoded here).
    pub async fn answer(&self, task_id: &str, answer: &Value) -> Result<Answered, ClientError> {
        let task_id = segment("task id", task_id)?;
        self.post_json(
            &["tasks", task_id, "answer"],
            &[],
            &json!({ "answer": answer }),
        )
        .await
    }

    /// `POST /conversations`: starts a conversation. `body` as `CreateConversationBody`:
    /// `{customer_id, channel, workflow?, version?, metadata?, callback_url?}`.
    pub async fn create_conversation(&self, body: &Value) -> Result<ConversationView, ClientError> {
        self.post_json(&["conversations"], &[], body).await
    }

    /// `GET /conversations/{id}`.
    pub async fn conversation(&self, id: &str) -> Result<ConversationView, ClientError> {
        let id = segment("conversation id", id)?;
        self.get_json(&["conversations", id], &[]).await
    }

    /// `GET /conversations`: newest first; `status`, `agent` filter.
    pub async fn conversations(
        &self,
        status: Option<&str>,
        agent: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ConversationList, ClientError> {
        self.get_json(
            &["conversations"],
            &[
                ("status", status.map(str::to_string)),
                ("agent", agent.map(str::to_string)),
                ("limit", limit.map(|l| l.to_string())),
            ],
        )
        .await
    }

    /// `POST /conversations/{id}/messages`: a customer message.
    pub async fn post_message(&self, id: &str, content: &str) -> Result<PostedView, ClientError> {
        let id = segment("conversation id", id)?;
        self.post_json(
            &["conversations", id, "messages"],
            &[],
            &json!({ "content": content }),
        )
        .await
    }

    /// `GET /conversations/{id}/messages?after=`.
    pub async fn messages(&self, id: &str, after: u64) -> Result<MessageList, ClientError> {
        let id = segment("conversation id", id)?;
        self.get_json(
            &["conversations", id, "messages"],
            &[("after", Some(after.to_string()))],
        )
        .await
    }

    /// `GET /conversations/{id}/transitions`.
    pub async fn transitions(&self, id: &str) -> Result<TransitionList, ClientError> {
        let id = segment("conversation id", id)?;
        self.get_json(&["conversations", id, "transitions"], &[])
            .await
    }

    /// `POST /conversations/{id}/claim` (or `/hil/tasks/{id}/claim` when `task`).
    pub async fn claim(&self, id: &str, agent: &str, task: bool) -> Result<ActedView, ClientError> {
        let id = segment("id", id)?;
        let path: &[&str] = if task {
            &["hil", "tasks", id, "claim"]
        } else {
            &["conversations", id, "claim"]
        };
        self.post_json(path, &[], &json!({ "agent": agent })).await
    }

    /// `POST /conversations/{id}/reply`.
    pub async fn reply(
        &self,
        id: &str,
        agent: &str,
        content: &str,
    ) -> Result<MessageView, ClientError> {
        let id = segment("conversation id", id)?;
        self.post_json(
            &["conversations", id, "reply"],
            &[],
            &json!({ "agent": agent, "content": content }),
        )
        .await
    }

    /// `POST /conversations/{id}/{action}` for resolve, back-to-ai and release.
    pub async fn conversation_action(
        &self,
        id: &str,
        action: &str,
        agent: &str,
        note: Option<&str>,
    ) -> Result<ActedView, ClientError> {
        let id = segment("conversation id", id)?;
        self.post_json(
            &["conversations", id, action],
            &[],
            &json!({ "agent": agent, "note": note }),
        )
        .await
    }

    /// `POST /conversations/{id}/transfer`.
    /// `POST /conversations/{id}/transfer`: to the agent `to`, or (`to` absent) back to the
    /// queue for `skills`.
    pub async fn transfer(
        &self,
        id: &str,
        by: &str,
        to: Option<&str>,
        skills: &[String],
        reason: Option<&str>,
    ) -> Result<ActedView, ClientError> {
        let id = segment("conversation id", id)?;
        let mut body = json!({ "by": by, "reason": reason });
        match to {
            Some(to) => body["to"] = json!(to),
            None => body["skills"] = json!(skills),
        }
        self.post_json(&["conversations", id, "transfer"], &[], &body)
            .await
    }

    /// `GET /hil/agents`.
    pub async fn hil_agents(&self) -> Result<AgentList, ClientError> {
        self.get_all(&["hil", "agents"]).await
    }

    /// `PUT /hil/agents/{id}`: `body` as `PutAgentBody` `{name, email, skills, capacity, status}`.
    pub async fn put_hil_agent(&self, id: &str, body: &Value) -> Result<AgentView, ClientError> {
        let id = segment("agent id", id)?;
        let url = self.url(&["hil", "agents", id], &[])?;
        let (what, resp) = self.call(Method::PUT, url, |rb| rb.json(body)).await?;
        self.json(&what, resp).await
    }

    /// `POST /hil/agents/{id}/status`.
    pub async fn set_hil_agent_status(
        &self,
        id: &str,
        status: &str,
    ) -> Result<AgentView, ClientError> {
        let id = segment("agent id", id)?;
        self.post_json(
            &["hil", "agents", id, "status"],
            &[],
            &json!({ "status": status }),
        )
        .await
    }

    /// `GET /hil/agents/{id}/inbox`.
    pub async fn inbox(&self, agent: &str) -> Result<ItemList, ClientError> {
        let agent = segment("agent id", agent)?;
        self.get_json(&["hil", "agents", agent, "inbox"], &[]).await
    }

    /// `GET /hil/queue`.
    pub async fn hil_queue(&self) -> Result<ItemList, ClientError> {
        self.get_json(&["hil", "queue"], &[]).await
    }

    /// `GET /hil/stats`.
    pub async fn hil_stats(
        &self,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<StatsView, ClientError> {
        self.get_json(
            &["hil", "stats"],
            &[
                ("since", since.map(str::to_string)),
                ("until", until.map(str::to_string)),
            ],
        )
        .await
    }
}
