//! The statement guard: the text is parsed in the connection's dialect and must be exactly one
//! statement of the kind the tool runs ([`check_select`], [`check_write`]); nested writes,
//! `SELECT … INTO`, locking reads and denied server-side functions are refused, and the
//! placeholders are counted and numbered for the backend. What runs is the [`Checked`]
//! statement rendered back from the parsed tree.

use std::ops::ControlFlow;

use hilo_core::exec::{NodeError, codes};
use sqlparser::ast::{Expr, SelectItem, SetExpr, Statement, Visit, Visitor, visit_expressions_mut};
use sqlparser::dialect::Dialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::config::Backend;

/// What a statement that passed the guard does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
}

/// A statement that passed the guard.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Parsed and rendered back; placeholders are `$N` (PostgreSQL) or `?`/`?N` (SQLite).
    pub statement: Statement,
    pub kind: StatementKind,
    /// How many parameters the statement takes.
    pub params: usize,
}

impl Checked {
    pub fn sql(&self) -> String {
        self.statement.to_string()
    }
}

/// Server-side functions refused even inside a read: they read files, talk to other servers,
/// signal backends or change settings.
const DENIED_FUNCTIONS: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "lo_import",
    "lo_export",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "set_config",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "dblink",
    "dblink_exec",
    "pg_sleep",
    "load_extension",
    "readfile",
    "writefile",
    "fts3_tokenizer",
];

fn refused(tool: &str, why: impl std::fmt::Display) -> NodeError {
    NodeError::new(codes::NOT_ALLOWED, format!("{tool}: {why}"))
}

pub(super) fn invalid(tool: &str, why: impl std::fmt::Display) -> NodeError {
    NodeError::new(codes::INVALID_INPUT, format!("{tool}: {why}"))
}

/// The statement's leading keywords, for messages ("DROP TABLE", "INSERT INTO").
fn statement_name(s: &Statement) -> String {
    let text = s.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    words.join(" ").to_uppercase()
}

/// Rewrites bare `?` placeholders to `$N` for PostgreSQL, whose dialect reads `?` as the JSON
/// key-exists operator. Only when the text has no `$N` placeholder of its own and parameters
/// were given.
fn pg_placeholders(sql: &str, dialect: &dyn Dialect) -> Result<String, String> {
    let tokens = Tokenizer::new(dialect, sql)
        .tokenize()
        .map_err(|e| e.to_string())?;
    if tokens
        .iter()
        .any(|t| matches!(t, Token::Placeholder(p) if p.starts_with('$')))
    {
        return Ok(sql.to_string());
    }
    let mut n = 0;
    let mut out = String::with_capacity(sql.len() + 8);
    for t in tokens {
        match t {
            Token::Question => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            other => out.push_str(&other.to_string()),
        }
    }
    Ok(out)
}

/// Refuses nested statements, `SELECT … INTO`, locking reads and denied functions.
struct ReadOnly {
    depth: usize,
    problem: Option<String>,
}

impl Visitor for ReadOnly {
    type Break = ();

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > 1 {
            self.problem = Some(format!(
                "it contains a {} inside the statement; nested statements are not allowed",
                statement_name(s)
            ));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &sqlparser::ast::Query) -> ControlFlow<()> {
        if !q.locks.is_empty() {
            self.problem = Some("locking reads (FOR UPDATE / FOR SHARE) are not allowed".into());
            return ControlFlow::Break(());
        }
        if let Some(why) = body_problem(&q.body) {
            self.problem = Some(why);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            let name = f
                .name
                .0
                .last()
                .map(|p| p.to_string().trim_matches('"').to_lowercase())
                .unwrap_or_default();
            if DENIED_FUNCTIONS.contains(&name.as_str()) {
                self.problem = Some(format!("the function `{name}` is not allowed"));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

fn body_problem(body: &SetExpr) -> Option<String> {
    match body {
        SetExpr::Select(s) if s.into.is_some() => {
            Some("SELECT … INTO creates a table; only reads are allowed".into())
        }
        SetExpr::SetOperation { left, right, .. } => {
            body_problem(left).or_else(|| body_problem(right))
        }
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
            Some(format!(
                "it contains a {}; only reads are allowed",
                statement_name(s)
            ))
        }
        _ => None,
    }
}

/// Counts placeholders and, for SQLite, turns `$N` into `?N`.
fn placeholders(stmt: &mut Statement, backend: Backend, tool: &str) -> Result<usize, NodeError> {
    let mut bare = 0usize;
    let mut max_numbered = 0usize;
    let mut problem: Option<String> = None;
    let _ = visit_expressions_mut(stmt, |e| {
        if let Expr::Value(v) = e
            && let sqlparser::ast::Value::Placeholder(p) = &mut v.value
        {
            let (prefix, digits) = p.split_at(1.min(p.len()));
            match (prefix, digits.parse::<usize>()) {
                ("?", _) if digits.is_empty() => bare += 1,
                ("?" | "$", Ok(n)) if n >= 1 => {
                    max_numbered = max_numbered.max(n);
                    if backend == Backend::Sqlite {
                        *p = format!("?{n}");
                    }
                }
                _ => {
                    problem = Some(format!(
                        "the placeholder `{p}` is not supported: write `?` (or `$1`, `$2`, …) and pass the values in `params`"
                    ));
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    });
    if let Some(p) = problem {
        return Err(invalid(tool, p));
    }
    if bare > 0 && max_numbered > 0 {
        return Err(invalid(
            tool,
            "the statement mixes `?` and numbered placeholders; use one style",
        ));
    }
    Ok(bare.max(max_numbered))
}

fn parse_one(sql: &str, backend: Backend, tool: &str) -> Result<Statement, NodeError> {
    let dialect = backend.dialect();
    let text = match backend {
        Backend::Postgres => {
            pg_placeholders(sql, &*dialect).map_err(|e| invalid(tool, format!("`query`: {e}")))?
        }
        Backend::Sqlite => sql.to_string(),
    };
    let mut statements = Parser::parse_sql(&*dialect, &text).map_err(|e| {
        invalid(
            tool,
            format!("`query` is not SQL this tool accepts ({e}); fix the statement"),
        )
    })?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(invalid(tool, "`query` holds no statement")),
        n => Err(refused(
            tool,
            format!(
                "`query` holds {n} statements ({}); exactly one is allowed",
                statements
                    .iter()
                    .map(statement_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The guard of `query_database`: exactly one read-only `SELECT`.
pub fn check_select(sql: &str, backend: Backend) -> Result<Checked, NodeError> {
    const TOOL: &str = "query_database";
    let statement = parse_one(sql, backend, TOOL)?;
    if !matches!(statement, Statement::Query(_)) {
        return Err(refused(
            TOOL,
            format!(
                "only a SELECT may run here, and this is a {}{}",
                statement_name(&statement),
                if matches!(
                    statement,
                    Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
                ) {
                    "; use the dangerous tool `execute_sql` for writes"
                } else {
                    ""
                }
            ),
        ));
    }
    finish(TOOL, statement, StatementKind::Select, backend)
}

/// The guard of `execute_sql`: exactly one `INSERT`, `UPDATE` or `DELETE`.
pub fn check_write(sql: &str, backend: Backend) -> Result<Checked, NodeError> {
    const TOOL: &str = "execute_sql";
    let statement = parse_one(sql, backend, TOOL)?;
    let kind = match &statement {
        Statement::Insert(_) => StatementKind::Insert,
        Statement::Update(_) => StatementKind::Update,
        Statement::Delete(_) => StatementKind::Delete,
        Statement::Query(_) => {
            return Err(refused(
                TOOL,
                "this is a SELECT; use the safe tool `query_database` for reads",
            ));
        }
        other => {
            return Err(refused(
                TOOL,
                format!(
                    "only one INSERT, UPDATE or DELETE may run here, and this is a {}",
                    statement_name(other)
                ),
            ));
        }
    };
    finish(TOOL, statement, kind, backend)
}

/// Walks the whole tree (nested statements, queries, expressions), then numbers placeholders.
fn finish(
    tool: &str,
    mut statement: Statement,
    kind: StatementKind,
    backend: Backend,
) -> Result<Checked, NodeError> {
    // Nothing nested may write besides the statement itself, and no denied function.
    let mut guard = ReadOnly {
        depth: 0,
        problem: None,
    };
    let _ = statement.visit(&mut guard);
    if let Some(p) = guard.problem {
        return Err(refused(tool, p));
    }
    let params = placeholders(&mut statement, backend, tool)?;
    Ok(Checked {
        statement,
        kind,
        params,
    })
}

pub(super) fn returning_of(s: &mut Statement) -> Option<&mut Option<Vec<SelectItem>>> {
    match s {
        Statement::Insert(i) => Some(&mut i.returning),
        Statement::Update(u) => Some(&mut u.returning),
        Statement::Delete(d) => Some(&mut d.returning),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_question_marks_become_numbered() {
        let c = check_select("SELECT * FROM t WHERE a = ? AND b = ?", Backend::Postgres).unwrap();
        assert_eq!(c.params, 2);
        assert_eq!(c.sql(), "SELECT * FROM t WHERE a = $1 AND b = $2");
    }

    #[test]
    fn sqlite_dollar_placeholders_become_question_marks() {
        let c = check_select("SELECT * FROM t WHERE a = $2 OR b = $1", Backend::Sqlite).unwrap();
        assert_eq!(c.params, 2);
        assert_eq!(c.sql(), "SELECT * FROM t WHERE a = ?2 OR b = ?1");
    }
}
