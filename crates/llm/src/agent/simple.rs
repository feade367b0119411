//! The `simple` agent: renders the prompt, makes one call.
//!
//! - With `labels`: the output is `{label, confidence}`. A chat model is asked for that JSON
//!   (schema-constrained, the label an enum); the local router compares the prompt with the
//!   node's `examples`.
//! - With `output_schema`: the answer must be JSON valid against it; when it is not, one repair
//!   call shows the model its answer and what is wrong, and a second failure fails the node
//!   with `OUTPUT_INVALID`.
//! - Otherwise: `{text}`.
//!
//! Default profile: `fast`.

use std::collections::BTreeMap;

use hilo_core::exec::NodeError;
use serde_json::{Value, json};

use super::run::{Run, check_json, clip};
use crate::call::{Answer, ChatSpec, Task, codes};
use crate::config::Capability;
use crate::provider::{JsonSchemaFormat, Message};

pub use hilo_core::agent::SIMPLE_PROFILE as DEFAULT_PROFILE;

pub(crate) async fn run(run: &mut Run<'_>) -> Result<Value, NodeError> {
    let prompt = run.required_text(&["prompt", "task", "goal"])?;
    let w = run.req.node.with.clone();
    let mut messages = Vec::new();
    if let Some(s) = run.text("system") {
        messages.push(Message::system(s));
    }
    let past = run.recall(&prompt, 0).await;
    if !past.is_empty() {
        messages.push(Message::system(super::run::recalled_text(&past)));
    }
    let knowledge = run.knowledge(&prompt).await?;
    if let Some(k) = &knowledge {
        messages.push(Message::system(k.text.clone()));
    }
    messages.extend(super::history::messages(run)?);
    if let Some(labels) = &w.labels {
        if labels.is_empty() {
            return Err(NodeError::new(
                codes::INVALID_INPUT,
                format!(
                    "agent node `{}` has an empty `labels` list: give the labels to choose from",
                    run.key()
                ),
            ));
        }
        return classify(run, &prompt, labels, w.examples.as_ref(), messages).await;
    }
    messages.push(Message::user(prompt.clone()));
    let spec = ChatSpec {
        messages,
        tools: Vec::new(),
        response_format: w.output_schema.clone().map(|schema| JsonSchemaFormat {
            name: "output".into(),
            schema,
        }),
        temperature: w.temperature,
        max_tokens: w.max_tokens,
    };
    match &w.output_schema {
        // An answer from the knowledge base: a chat model reads the passages in its prompt,
        // the local router quotes the best-matching sentence.
        None if knowledge.is_some() => {
            let passages = knowledge.map(|k| k.passages).unwrap_or_default();
            let task = Task::Grounded {
                question: &prompt,
                passages: &passages,
                chat: &spec,
            };
            let r = match run.route(&[Capability::Grounded], "answer", task).await? {
                Answer::Chat(r) => r.content,
                Answer::Label(c) => c.label,
            };
            Ok(json!({"text": r}))
        }
        None => {
            let r = chat(run, &spec, &[Capability::Chat], "answer").await?;
            Ok(json!({"text": r}))
        }
        Some(schema) => {
            structured(
                run,
                spec,
                schema,
                &[Capability::Chat, Capability::JsonSchema],
                "structured",
            )
            .await
        }
    }
}

/// One chat call; its text.
async fn chat(
    run: &mut Run<'_>,
    spec: &ChatSpec,
    needs: &[Capability],
    purpose: &str,
) -> Result<String, NodeError> {
    match run.route(needs, purpose, Task::Chat(spec)).await? {
        Answer::Chat(r) => Ok(r.content),
        Answer::Label(c) => Ok(c.label),
    }
}

/// A JSON answer checked against `schema`, with one repair call.
pub(crate) async fn structured(
    run: &mut Run<'_>,
    mut spec: ChatSpec,
    schema: &Value,
    needs: &[Capability],
    purpose: &str,
) -> Result<Value, NodeError> {
    let first = chat(run, &spec, needs, purpose).await?;
    let problem = match check_json(&first, schema) {
        Ok(v) => return Ok(v),
        Err(p) => p,
    };
    run.steps
        .push(json!({"invalid_answer": clip(&first, 500), "problem": problem}));
    spec.messages.push(Message::assistant(first));
    spec.messages.push(Message::user(format!(
        "That answer does not match the required JSON Schema: {problem}. Answer again with only a JSON value that matches the schema."
    )));
    let second = chat(run, &spec, needs, "repair").await?;
    check_json(&second, schema).map_err(|p| {
        NodeError::new(
            codes::OUTPUT_INVALID,
            format!(
                "agent node `{}`: the model's answer does not match `output_schema`, even after a repair call: {p}",
                run.key()
            ),
        )
    })
}

async fn classify(
    run: &mut Run<'_>,
    text: &str,
    labels: &[String],
    examples: Option<&serde_json::Map<String, Value>>,
    mut messages: Vec<Message>,
) -> Result<Value, NodeError> {
    let examples: BTreeMap<String, Vec<String>> = examples
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let texts = match v {
                        Value::Array(a) => a
                            .iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect(),
                        Value::String(s) => vec![s.clone()],
                        _ => Vec::new(),
                    };
                    (k.clone(), texts)
                })
                .collect()
        })
        .unwrap_or_default();
    let schema = json!({
        "type": "object",
        "required": ["label", "confidence"],
        "additionalProperties": false,
        "properties": {
            "label": {"type": "string", "enum": labels},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
    });
    let mut guide = format!(
        "Classify the user's message into exactly one of these labels: {}. Answer with JSON: {{\"label\": <one of the labels>, \"confidence\": <your probability that the label is right, 0 to 1>}}.",
        labels.join(", ")
    );
    for (label, texts) in &examples {
        if !texts.is_empty() {
            guide.push_str(&format!(
                "\nExamples of `{label}`: {}",
                texts
                    .iter()
                    .map(|t| format!("\"{t}\""))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    messages.push(Message::system(guide));
    messages.push(Message::user(text));
    let spec = ChatSpec {
        messages,
        tools: Vec::new(),
        response_format: Some(JsonSchemaFormat {
            name: "classification".into(),
            schema: schema.clone(),
        }),
        temperature: run.req.node.with.temperature.or(Some(0.0)),
        max_tokens: run.req.node.with.max_tokens.or(Some(50)),
    };
    let answer = run
        .route(
            &[Capability::Labels],
            "classify",
            Task::Classify {
                text,
                labels,
                examples: &examples,
                chat: &spec,
            },
        )
        .await?;
    match answer {
        Answer::Label(c) => {
            run.steps.push(json!({
                "router": "local",
                "scores": c.scores.iter().map(|(l, s)| json!({"label": l, "similarity": (s * 1000.0).round() / 1000.0})).collect::<Vec<_>>(),
            }));
            Ok(json!({"label": c.label, "confidence": round3(c.confidence)}))
        }
        Answer::Chat(r) => {
            let v = match check_json(&r.content, &schema) {
                Ok(v) => v,
                Err(problem) => {
                    // One repair call, as for output schemas.
                    let mut spec = spec.clone();
                    run.steps
                        .push(json!({"invalid_answer": clip(&r.content, 500), "problem": problem}));
                    spec.messages.push(Message::assistant(r.content));
                    spec.messages.push(Message::user(format!(
                        "That answer is not valid: {problem}. Answer with only {{\"label\": one of [{}], \"confidence\": 0..1}}.",
                        labels.join(", ")
                    )));
                    let again = chat(run, &spec, &[Capability::Chat], "repair").await?;
                    check_json(&again, &schema).map_err(|p| {
                        NodeError::new(
                            codes::OUTPUT_INVALID,
                            format!(
                                "agent node `{}`: the model did not answer with one of the labels, even after a repair call: {p}",
                                run.key()
                            ),
                        )
                    })?
                }
            };
            let label = v.get("label").cloned().unwrap_or(Value::Null);
            let confidence = v
                .get("confidence")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
                .clamp(0.0, 1.0);
            Ok(json!({"label": label, "confidence": round3(confidence)}))
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
