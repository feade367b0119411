//! Built-in data tools that need no outside system: `transform_json` (a JMESPath expression
//! over data) and `filter_list` (the items of a list for which a JMESPath predicate holds).
//! Both are `safe`.

use async_trait::async_trait;
use hilo_core::ToolClass;
use hilo_core::exec::{NodeError, codes};
use hilo_core::expr::{Budget, compile_jmespath, search_in, search_json, to_var};
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
