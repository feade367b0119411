//! The same command-line runs on PostgreSQL (`--db postgres://…`) as on SQLite: a human
//! pause answered from another process, a detached run taken by `hilo worker`, cancellation
//! with compensation, pruning. Needs the local server (127.0.0.1:5432, user `postgres`);
//! each test gets a fresh database, dropped at the end.

use std::path::Path;
use std::process::Command;

use crate::run::{
    detached_runs_are_taken_by_a_worker_and_cancel_compensates_on,
    human_pause_answer_and_exit_codes_on,
};

/// A fresh database, dropped when this goes out of scope.
pub struct PgDb {
    name: String,
    pub url: String,
}

fn psql(sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qAt",
            "-c",
            sql,
        ])
        .output()
        .expect("psql (the PostgreSQL client) is needed by these tests")
}

impl PgDb {
    pub fn create(tag: &str) -> PgDb {
        let name = format!(
            "hilo_cli_{tag}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let o = psql(&format!("CREATE DATABASE {name}"));
        assert!(
            o.status.success(),
            "PostgreSQL at 127.0.0.1:5432 (user postgres) is needed: {}",
            crate::text(&o.stderr)
        );
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        PgDb { name, url }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

#[test]
fn human_pause_answer_and_exit_codes_on_postgres() {
    let db = PgDb::create("human");
    human_pause_answer_and_exit_codes_on(Path::new(&db.url));
}

#[test]
fn detached_runs_are_taken_by_a_worker_and_cancel_compensates_on_postgres() {
    let db = PgDb::create("worker");
    detached_runs_are_taken_by_a_worker_and_cancel_compensates_on(Path::new(&db.url));
}
