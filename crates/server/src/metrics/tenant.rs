//! A tenant's view of the Prometheus text: only the samples labelled with that tenant.
//!
//! `GET /api/v1/metrics` answers an API key of one tenant, so it shows only the series whose
//! `tenant` label is that tenant's: series of other tenants, and process-wide series without
//! a `tenant` label (queue depth, tool calls, model calls, nodes, HTTP requests… which sum every
//! tenant's activity), are left out. The whole exposition is for operators, on the listener of
//! `[server] metrics_addr`.
//!
//! The text is read as the exposition format defines it, not searched: a sample is
//! `name{label="value",…} number`, and a label value is a quoted string in which `\\`, `\"` and
//! `\n` are escapes, so a value holding `",tenant="…` (a workflow name, say) is one value of
//! its own label, never a `tenant` label. A line that does not read as a sample (and a sample
//! with two `tenant` labels) is left out: the filter fails closed. `# HELP` and `# TYPE` lines
//! are kept only for the families that keep a sample.

/// The lines of `text` (the recorder's rendering) that `tenant` may see.
pub fn tenant_view(text: &str, tenant: &str) -> String {
    let mut out = String::new();
    // The `# HELP` / `# TYPE` lines of the family being read, and whether they are out.
    let mut family: Option<&str> = None;
    let mut header: Vec<&str> = Vec::new();
    let mut shown = false;
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            let (Some("HELP" | "TYPE"), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            if family != Some(name) {
                family = Some(name);
                header.clear();
                shown = false;
            }
            header.push(line);
            continue;
        }
        if line.trim().is_empty() || !of_tenant(line, tenant) {
            continue;
        }
        if !shown {
            if !out.is_empty() {
                out.push('\n');
            }
            for h in &header {
                out.push_str(h);
                out.push('\n');
            }
            shown = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether the sample `line` carries exactly one `tenant` label, equal to `tenant`.
fn of_tenant(line: &str, tenant: &str) -> bool {
    let Some(labels) = labels(line) else {
        return false;
    };
    let mut tenants = labels.iter().filter(|(k, _)| *k == "tenant");
    matches!((tenants.next(), tenants.next()), (Some((_, v)), None) if v == tenant)
}

/// The labels of a sample line, values unescaped: `name{a="x",b="y"} 1` → `[(a, x), (b, y)]`;
/// `None` when the line is not a well-formed sample.
fn labels(line: &str) -> Option<Vec<(&str, String)>> {
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))?;
    if name_end == 0 {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut out = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let key_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            if key_end == 0 {
                return None;
            }
            let key = &rest[..key_end];
            rest = rest[key_end..].trim_start().strip_prefix('=')?;
            rest = rest.trim_start().strip_prefix('"')?;
            let (value, after) = quoted(rest)?;
            out.push((key, value));
            rest = after.trim_start();
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return None;
            }
        }
    }
    // A value (and maybe a timestamp) after a space.
    let value = rest.strip_prefix(' ')?.split_whitespace().next()?;
    let number = matches!(value, "+Inf" | "-Inf" | "NaN") || value.parse::<f64>().is_ok();
    number.then_some(out)
}

/// A label value after its opening quote: the unescaped value and what follows the closing
/// quote; `None` when it does not close or holds an escape the format does not have.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                '\\' => value.push('\\'),
                '"' => value.push('"'),
                'n' => value.push('\n'),
                _ => return None,
            },
            '\n' => return None,
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP hilo_executions_active Unfinished executions.
# TYPE hilo_executions_active gauge
hilo_executions_active{tenant="acme"} 2
hilo_executions_active{tenant="globex"} 5

# HELP hilo_queue_depth Executions (any tenant) a worker could take now.
# TYPE hilo_queue_depth gauge
hilo_queue_depth 7

# HELP hilo_executions_finished_total Executions that ended.
# TYPE hilo_executions_finished_total counter
hilo_executions_finished_total{tenant="globex",workflow="payroll",status="succeeded"} 31
hilo_executions_finished_total{tenant="globex",workflow="x\",tenant=\"acme",status="failed"} 1
hilo_executions_finished_total{workflow="y",note="tenant=\"acme\"",status="failed"} 1
hilo_executions_finished_total{tenant="acme",workflow="refund, \"fast\" \\ path}",status="succeeded"} 3

# HELP hilo_execution_duration_seconds Time from start to end.
# TYPE hilo_execution_duration_seconds histogram
hilo_execution_duration_seconds_bucket{tenant="acme",workflow="refund",status="succeeded",le="0.5"} 1
hilo_execution_duration_seconds_bucket{tenant="acme",workflow="refund",status="succeeded",le="+Inf"} 3
hilo_execution_duration_seconds_sum{tenant="acme",workflow="refund",status="succeeded"} 1.25
hilo_execution_duration_seconds_count{tenant="acme",workflow="refund",status="succeeded"} 3
hilo_execution_duration_seconds_bucket{tenant="globex",workflow="payroll",status="succeeded",le="+Inf"} 31

# HELP hilo_tool_calls_total Tool calls by tool and outcome.
# TYPE hilo_tool_calls_total counter
hilo_tool_calls_total{tool="http_request",status="ok"} 40
"#;

    #[test]
    fn a_tenant_sees_its_own_samples_only() {
        let view = tenant_view(TEXT, "acme");
        let text: Vec<&str> = TEXT.lines().collect();
        // Its gauge, its counter (the one whose workflow holds quotes, a comma, a backslash
        // and a brace) and its histogram, each family with its HELP and TYPE; blank lines
        // between families.
        let kept: Vec<&str> = [0, 1, 2, 9, 10, 14, 16, 17, 18, 19, 20, 21]
            .iter()
            .map(|&i| text[i])
            .collect();
        let shown: Vec<&str> = view.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(shown, kept, "{view}");
        assert_eq!(view.lines().filter(|l| l.is_empty()).count(), 2, "{view}");
        assert!(view.ends_with("} 3\n"), "{view}");
        let other = tenant_view(TEXT, "globex");
        assert!(
            !other.contains("acme\"} 2") && !other.contains("refund"),
            "{other}"
        );
        assert!(other.contains("payroll") && !other.contains("hilo_queue_depth"));
        assert_eq!(tenant_view(TEXT, "initech"), "");
    }

    /// Quotes, commas and braces inside a value are that value's: they cannot make a label.
    #[test]
    fn label_values_cannot_forge_a_tenant() {
        for line in [
            r#"m{workflow="x\",tenant=\"acme"} 1"#,
            r#"m{workflow="x\\",tenant="acme"} 1"#,
            r#"m{note="tenant=\"acme\""} 1"#,
            r#"m{w="}",x="{tenant=\"acme\"}"} 1"#,
        ] {
            let labels = labels(line);
            let tenant = labels.as_ref().and_then(|l| {
                l.iter()
                    .find(|(k, _)| *k == "tenant")
                    .map(|(_, v)| v.clone())
            });
            // The second line really is acme's (an escaped backslash, then the quote closes).
            if line.contains(r#"x\\""#) {
                assert_eq!(tenant.as_deref(), Some("acme"), "{line}");
            } else {
                assert_eq!(tenant, None, "{line}: {labels:?}");
                assert!(!of_tenant(line, "acme"), "{line}");
            }
        }
    }

    /// Lines that are not well-formed samples, and samples with two tenants, are left out.
    #[test]
    fn malformed_lines_are_left_out() {
        for line in [
            r#"m{tenant="acme"}"#,
            r#"m{tenant="acme"} x"#,
            r#"m{tenant="acme" 1"#,
            r#"m{tenant="acme} 1"#,
            r#"m{tenant=acme} 1"#,
            r#"m{tenant="acme",tenant="acme"} 1"#,
            r#"m{tenant="ac\me"} 1"#,
            r#"{tenant="acme"} 1"#,
            r#"m{tenant="acme"}1"#,
            r#"m{tenant="acme"x} 1"#,
        ] {
            assert!(!of_tenant(line, "acme"), "{line}");
        }
        assert!(of_tenant(r#"m{tenant="acme"} 1"#, "acme"));
        assert!(of_tenant(
            r#"m{a="",tenant="acme",} +Inf 1700000000"#,
            "acme"
        ));
        assert!(!of_tenant("m 1", "acme"));
    }
}
