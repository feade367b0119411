//! The schema, as sqlx migrations embedded in the binary.
//!
//! Each migration is one `.sql` file under `crates/store/migrations/`, written in the SQL that
//! both SQLite and PostgreSQL accept, except those in [`SQLITE_ONLY`] (physical layout that
//! only SQLite has, such as `WITHOUT ROWID`) and those PostgreSQL replaces with its own file
//! under `migrations/postgres/` ([`POSTGRES`]: identity keys, its claim indexes). The
//! knowledge base (0016) is one of each: SQLite's FTS5 and PostgreSQL's `tsvector`; SQLite's
//! term-by-term view of its FTS5 index (0021) is SQLite's only. Migrations only ever get
//! added, never edited: sqlx checks each applied migration's checksum on start.

use std::borrow::Cow;

use sqlx::SqlStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "workflows",
        include_str!("../migrations/0001_workflows.sql"),
    ),
    (
        2,
        "executions",
        include_str!("../migrations/0002_executions.sql"),
    ),
    (3, "audit", include_str!("../migrations/0003_audit.sql")),
    (4, "secrets", include_str!("../migrations/0004_secrets.sql")),
    (
        6,
        "llm calls",
        include_str!("../migrations/0006_llm_calls.sql"),
    ),
    (7, "access", include_str!("../migrations/0007_access.sql")),
    (
        8,
        "humans in the loop",
        include_str!("../migrations/0008_hil.sql"),
    ),
    (
        10,
        "execution crashes",
        include_str!("../migrations/0010_exec_crashes.sql"),
    ),
    (
        11,
        "idempotency keys",
        include_str!("../migrations/0011_idempotency.sql"),
    ),
    (
        12,
        "retired node rows",
        include_str!("../migrations/0012_retired_nodes.sql"),
    ),
    (
        13,
        "console sessions and chat tokens",
        include_str!("../migrations/0013_console_sessions.sql"),
    ),
    (
        14,
        "trace parent",
        include_str!("../migrations/0014_trace_parent.sql"),
    ),
    (
        15,
        "llm call details",
        include_str!("../migrations/0015_llm_call_details.sql"),
    ),
    (
        17,
        "episodic memory",
        include_str!("../migrations/0017_episodes.sql"),
    ),
    (
        18,
        "erasures",
        include_str!("../migrations/0018_erasures.sql"),
    ),
    (
        19,
        "knowledge retention",
        include_str!("../migrations/0019_kb_retention.sql"),
    ),
    (
        20,
        "knowledge text bytes",
        include_str!("../migrations/0020_kb_text_bytes.sql"),
    ),
    (
        22,
        "session caps",
        include_str!("../migrations/0022_session_caps.sql"),
    ),
    (
        23,
        "handed-over executions",
        include_str!("../migrations/0023_handed_over.sql"),
    ),
    (
        24,
        "triggers, start claims, webhook deliveries",
        include_str!("../migrations/0024_triggers.sql"),
    ),
    (
        25,
        "oauth connections",
        include_str!("../migrations/0025_connections.sql"),
    ),
    (
        26,
        "evaluations",
        include_str!("../migrations/0026_evals.sql"),
    ),
    (
        27,
        "workflow layouts",
        include_str!("../migrations/0027_workflow_layouts.sql"),
    ),
    (
        28,
        "executions retention",
        include_str!("../migrations/0028_executions_retention.sql"),
    ),
];

/// Migrations that only the SQLite backend runs (numbered in the same sequence).
const SQLITE_ONLY: &[(i64, &str, &str)] = &[
    (
        5,
        "sqlite clustered execution tables",
        include_str!("../migrations/0005_sqlite_clustered.sql"),
    ),
    (
        9,
        "step log",
        include_str!("../migrations/0009_step_log.sql"),
    ),
    (
        16,
        "knowledge base",
        include_str!("../migrations/0016_knowledge.sql"),
    ),
    (
        21,
        "knowledge full-text vocabulary",
        include_str!("../migrations/0021_sqlite_kb_fts_vocab.sql"),
    ),
];

/// PostgreSQL's own migrations: a number also in [`MIGRATIONS`] replaces that file there; one
/// that is not (29) is PostgreSQL's only.
const POSTGRES: &[(i64, &str, &str)] = &[
    (
        3,
        "audit",
        include_str!("../migrations/postgres/0003_audit.sql"),
    ),
    (
        5,
        "postgres claim indexes",
        include_str!("../migrations/postgres/0005_postgres_claims.sql"),
    ),
    (
        6,
        "llm calls",
        include_str!("../migrations/postgres/0006_llm_calls.sql"),
    ),
    (
        16,
        "knowledge base",
        include_str!("../migrations/postgres/0016_knowledge.sql"),
    ),
    (
        28,
        "executions retention and listings",
        include_str!("../migrations/postgres/0028_executions_retention.sql"),
    ),
    (
        29,
        "claim order in the due index",
        include_str!("../migrations/postgres/0029_claim_order.sql"),
    ),
];

/// The migrator of the PostgreSQL backend: the portable migrations, each replaced by
/// PostgreSQL's own file where it has one, in order.
pub fn postgres_migrator() -> Migrator {
    let mut all: Vec<&(i64, &str, &str)> = MIGRATIONS
        .iter()
        .filter(|m| !POSTGRES.iter().any(|p| p.0 == m.0))
        .chain(POSTGRES)
        .collect();
    all.sort_by_key(|m| m.0);
    migrator_of(all)
}

/// The migrator of the SQLite backend: the portable migrations and its own, in order.
pub fn sqlite_migrator() -> Migrator {
    let mut all: Vec<&(i64, &str, &str)> = MIGRATIONS.iter().chain(SQLITE_ONLY).collect();
    all.sort_by_key(|m| m.0);
    migrator_of(all)
}

fn migrator_of(migrations: Vec<&(i64, &'static str, &'static str)>) -> Migrator {
    Migrator::with_migrations(
        migrations
            .into_iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    SqlStr::from_static(sql),
                    false,
                )
            })
            .collect(),
    )
}
