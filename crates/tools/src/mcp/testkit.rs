//! Test support (feature `test-util`): the official MCP reference server
//! `@modelcontextprotocol/server-everything`, installed from npm on first use, and a small
//! server of our own on the same SDK (`paged-server.mjs`).
//!
//! The version is pinned by `.ci/mcp-everything/package.json` and `package-lock.json`;
//! `npm ci` installs it into `.ci/mcp-everything/node_modules` (not committed). `.ci/run`
//! installs it before the tests; a plain `cargo test` installs it here when it is missing,
//! once per process (a `OnceLock`) and once across processes (an exclusive lock on a file
//! next to it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The folder with the pinned `package.json`.
pub fn everything_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/mcp-everything")
}

/// The server's entry point (run it as `node <entry> stdio`).
pub fn everything_entry(dir: &Path) -> PathBuf {
    dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// Installs the server when it is missing and returns its entry point, or why it could not.
pub fn everything() -> Result<PathBuf, String> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED.get_or_init(install).clone()
}

fn install() -> Result<PathBuf, String> {
    let dir = everything_dir();
    let entry = everything_entry(&dir);
    if entry.exists() {
        return Ok(entry);
    }
    let lock_path = dir.join(".install.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    // Another process may have installed it while this one waited.
    if entry.exists() {
        return Ok(entry);
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .output()
        .map_err(|e| {
            format!("cannot run npm ({e}): the MCP tests need Node.js and npm to install @modelcontextprotocol/server-everything")
        })?;
    if !out.status.success() || !entry.exists() {
        return Err(format!(
            "`npm ci` in {} failed ({}): {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(entry)
}

/// `paged-server.mjs` next to the pinned `package.json` (a small server on the same SDK:
/// paged `tools/list`, every annotation case, `_meta` echoed), installing the SDK first.
pub fn paged_server() -> Result<PathBuf, String> {
    everything()?;
    Ok(everything_dir().join("paged-server.mjs"))
}
