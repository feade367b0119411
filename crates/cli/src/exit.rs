//! How a command fails: [`Exit`], an error that carries the process's exit code, and the
//! mappings every command shares (a store error, an execution's final status). A leaf: it
//! imports no other module of the binary.
//!
//! Exit codes (also in `hilo --help`, `cli::AFTER_HELP`): 0 success; 1 a command
//! failed (store error, conflict, not found); 2 invalid input (a definition that does not
//! validate, an unreadable file, an input that does not match the schema, a wrong flag); for
//! executions 3 waiting for a human, 4 handed over.

use anyhow::anyhow;
use hilo_core::exec::ExecStatus;

/// An error that carries its exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub error: Option<anyhow::Error>,
}

impl Exit {
    /// Invalid input: exit code 2.
    pub fn invalid(error: anyhow::Error) -> Exit {
        Exit {
            code: 2,
            error: Some(error),
        }
    }

    /// Invalid input already reported on stderr.
    pub fn invalid_reported() -> Exit {
        Exit {
            code: 2,
            error: None,
        }
    }

    /// Exit with `code`, everything already reported.
    pub fn code(code: u8) -> Exit {
        Exit { code, error: None }
    }

    /// A failure already reported on stderr: exit code 1.
    pub fn failed_reported() -> Exit {
        Exit {
            code: 1,
            error: None,
        }
    }
}

impl From<anyhow::Error> for Exit {
    fn from(error: anyhow::Error) -> Exit {
        Exit {
            code: 1,
            error: Some(error),
        }
    }
}

/// A store error: the command failed (exit code 1).
pub fn store_err(e: hilo_core::StoreError) -> Exit {
    Exit::from(anyhow!(e))
}

/// A runtime failure of a command whose 1 and 3 mean something else (`replay`, `eval`): what
/// failed, exit code 2 (an id or version not found, bad input, the store unreadable).
pub fn trouble(e: hilo_runtime::RuntimeError) -> Exit {
    let mut exit = match e {
        hilo_runtime::RuntimeError::Store(e) => store_err(e),
        other => Exit::from(anyhow!("{other}")),
    };
    exit.code = 2;
    exit
}

/// The exit code of an execution's status: 0 succeeded (or still going), 3 waiting for a
/// human, 4 handed over, 1 otherwise.
pub fn exit_code(status: ExecStatus) -> u8 {
    match status {
        ExecStatus::Succeeded => 0,
        ExecStatus::Waiting => 3,
        ExecStatus::HandedOver => 4,
        ExecStatus::Pending | ExecStatus::Running => 0,
        _ => 1,
    }
}
