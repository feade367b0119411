//! The schema, as sqlx migrations embedded in the binary.
//!
//! Each migration is one `.sql` file under `crates/store/migrations/`, written in the SQL that
//! both SQLite and PostgreSQL accept. Migrations only ever get added, never edited: sqlx
//! checks each applied migration's checksum on start.

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
];

/// The migrator for every backend.
pub fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
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
