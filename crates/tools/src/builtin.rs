//! Built-in data tools that need no outside system: `transform_json` (a JMESPath expression
//! over data), `filter_list` (the items of a list for which a JMESPath predicate holds) and
//! `knowledge_search` (a hybrid search of one of the tenant's knowledge-base collections).
//! All are `safe`.

use std::sync::Arc;

use async_trait::async_trait;
use hilo_core::ToolClass;
use hilo_core::exec::{NodeError, codes};
use hilo_core::expr::{Budget, compile_jmespath, search_in, search_json, to_var};
use hilo_core::knowledge::{KnowledgeQuery, KnowledgeSearch};
use hilo_core::tool::{Tool, ToolContext, ToolSpec};
use serde_json::{Value, json};

fn invalid(msg: String) -> NodeError {
    NodeError::new(codes::INVALID_INPUT, msg)
}

fn search(expr: &str, data: &Value) -> Result<Value, NodeError> {
    let e = compile_jmespath(expr).map_err(|c| {
        invalid(format!(
            "`expression`: `{expr}` is not JMESPath: {}",
            c.message
        ))
    })?;
    // Within hilo's expression limits: the data comes from outside (a tool, a model).
    let var = to_var(data).map_err(|x| invalid(format!("`{expr}`: {x}")))?;
    search_json(&e, &var).map_err(|x| invalid(format!("`{expr}` failed: {x}")))
}

/// `transform_json`: `{data, expression}` → `{"result": <expression applied to data>}`.
pub struct TransformJson {
    spec: ToolSpec,
}

impl Default for TransformJson {
    fn default() -> Self {
        TransformJson {
            spec: ToolSpec::new(
                "transform_json",
                ToolClass::Safe,
                "Applies a JMESPath expression to JSON data",
            )
            .with_input(json!({
                "type": "object",
                "required": ["data", "expression"],
                "additionalProperties": false,
                "properties": {"data": {}, "expression": {"type": "string", "minLength": 1}}
            })),
        }
    }
}

#[async_trait]
impl Tool for TransformJson {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }
    async fn call(&self, _: &ToolContext, input: Value) -> Result<Value, NodeError> {
        let expr = input["expression"].as_str().unwrap_or_default();
        Ok(json!({"result": search(expr, &input["data"])?}))
    }
}

/// `filter_list`: `{items, where, limit?}` → `{"items": [...], "count": n}`.
pub struct FilterList {
    spec: ToolSpec,
}

impl Default for FilterList {
    fn default() -> Self {
        FilterList {
            spec: ToolSpec::new(
                "filter_list",
                ToolClass::Safe,
                "Keeps the items of a list for which a JMESPath predicate holds",
            )
            .with_input(json!({
                "type": "object",
                "required": ["items", "where"],
                "additionalProperties": false,
                "properties": {
                    "items": {"type": "array"},
                    "where": {"type": "string", "minLength": 1},
                    "limit": {"type": "integer", "minimum": 0}
                }
            })),
        }
    }
}

#[async_trait]
impl Tool for FilterList {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }
    async fn call(&self, _: &ToolContext, input: Value) -> Result<Value, NodeError> {
        let pred = input["where"].as_str().unwrap_or_default();
        let e = compile_jmespath(pred)
            .map_err(|c| invalid(format!("`where`: `{pred}` is not JMESPath: {}", c.message)))?;
        let limit = input["limit"].as_u64().map_or(usize::MAX, |l| l as usize);
        let mut kept = Vec::new();
        // One budget for the whole list: the items are data from outside.
        let mut budget = Budget::new();
        for item in input["items"].as_array().into_iter().flatten() {
            if kept.len() >= limit {
                break;
            }
            let var = to_var(item).map_err(|x| invalid(format!("`{pred}`: {x}")))?;
            let hit = search_in(&e, &var, &mut budget)
                .map_err(|x| invalid(format!("`{pred}` failed: {x}")))?;
            if hit.is_truthy() {
                kept.push(item.clone());
            }
        }
        Ok(json!({"count": kept.len(), "items": kept}))
    }
}

/// `knowledge_search`: `{collection, query, top_k?, min_score?, filter?}` → `{hits: [{score,
/// text, source, heading, document_id, …}], ranked_by, note?}`, searched in the calling
/// tenant's knowledge base. Without a knowledge base (an executor built without one) every call
/// is `NOT_CONFIGURED`.
pub struct KnowledgeSearchTool {
    spec: ToolSpec,
    kb: Option<Arc<dyn KnowledgeSearch>>,
}

impl KnowledgeSearchTool {
    pub fn new(kb: Option<Arc<dyn KnowledgeSearch>>) -> KnowledgeSearchTool {
        let max = KnowledgeQuery::MAX_TOP_K;
        KnowledgeSearchTool {
            spec: ToolSpec::new(
                "knowledge_search",
                ToolClass::Safe,
                "Searches a knowledge-base collection (the company's documents: policies, manuals, FAQs) and returns the most relevant passages with their sources and scores",
            )
            .with_input(json!({
                "type": "object",
                "required": ["collection", "query"],
                "additionalProperties": false,
                "properties": {
                    "collection": {"type": "string", "minLength": 1, "maxLength": 200, "description": "The collection to search"},
                    "query": {"type": "string", "minLength": 1, "maxLength": 4000, "description": "What to look for, in words"},
                    "top_k": {"type": "integer", "minimum": 1, "maximum": max, "description": "How many passages (default 5)"},
                    "min_score": {"type": "number", "minimum": 0, "maximum": 1, "description": "Leave out passages scoring less (1.0: first in every ranking)"},
                    "filter": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Document metadata that must match"}
                }
            })),
            kb,
        }
    }
}

#[async_trait]
impl Tool for KnowledgeSearchTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }
    async fn call(&self, ctx: &ToolContext, input: Value) -> Result<Value, NodeError> {
        let Some(kb) = &self.kb else {
            return Err(NodeError::new(
                codes::NOT_CONFIGURED,
                "knowledge_search has no knowledge base here: it runs in hilo's own processes (`hilo run`, `hilo serve`, workers), which give it the store's",
            ));
        };
        let query: KnowledgeQuery = serde_json::from_value(json!({
            "collection": input["collection"],
            "query": input["query"],
            "top_k": input.get("top_k").cloned().unwrap_or(json!(5)),
            "min_score": input.get("min_score").cloned().unwrap_or(Value::Null),
            "filter": input.get("filter").cloned().unwrap_or(json!({})),
        }))
        .map_err(|e| invalid(format!("knowledge_search: {e}")))?;
        let found = kb.search(&ctx.tenant, &query).await?;
        serde_json::to_value(found)
            .map_err(|e| NodeError::new(codes::INVALID_OUTPUT, format!("knowledge_search: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_data_hits_a_limit_not_the_process() {
        // Data from outside that an expression multiplies eightfold twelve times.
        let grow = format!("s{}", " | join('', [@, @, @, @, @, @, @, @])".repeat(12));
        let err = search(&grow, &json!({"s": "ab"})).err();
        assert!(
            err.as_ref()
                .is_some_and(|e| e.code == codes::INVALID_INPUT && e.message.contains("size limit")),
            "{err:?}"
        );
        // Too deep to compile.
        let deep = format!("{}a", "!".repeat(3000));
        let err = search(&deep, &json!({})).err();
        assert!(
            err.as_ref()
                .is_some_and(|e| e.message.contains("nesting limit")),
            "{err:?}"
        );
        assert_eq!(search("a.b", &json!({"a": {"b": 1}})).ok(), Some(json!(1)));
    }
}
