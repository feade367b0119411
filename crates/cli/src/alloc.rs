//! The process's allocator: mimalloc (see `main.rs`), told to give freed memory back to the
//! system 5 ms after it is freed instead of the 1 s of the mimalloc 3 it bundles.
//!
//! With the 1-second delay, memory freed by one burst of work (a store's threads that ended, a
//! batch of executions that finished) stays resident while the next burst allocates anew:
//! `hilo bench` peaked at 20.1–22.3 MiB with it (median 21.3) and 17.1–18.8 MiB with 10 ms
//! (median 18.0), with the same per-step figures (release build, `MIMALLOC_PURGE_DELAY` in the
//! environment).
//! 10 ms is what mimalloc's own header documents as the default, and what mimalloc 2 used.
//! 5 ms since the fold writes iterations straight into packs (2026-11-26): the loop runs
//! faster, and what it frees within the delay is more of its peak. `hilo run` of a
//! 100,000-item loop (`bench/size/run`, release build, 2 cores) peaked at 60–65 MiB with
//! 10 ms (median 61.5, 8 runs), 56–61 with 5 ms (median 60), 55–59 with 3 ms; the loop's
//! per-step figures did not move beyond their spread (three alternating pairs at 10 and 5 ms).
//!
//! `MIMALLOC_PURGE_DELAY` in the environment still wins (`mi_option_set_default` leaves an
//! option the environment set alone).
//!
//! These are the workspace's only `unsafe` calls (setting the option, and reading it back in a
//! test): libmimalloc-sys has no safe way to set or read an option.

use std::ffi::c_long;

/// `mi_option_purge_delay`: its place in mimalloc 3's `mi_option_e`, for which libmimalloc-sys
/// exports no constant. A test checks that this is the option mimalloc reads from
/// `MIMALLOC_PURGE_DELAY`.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Milliseconds between a page becoming free and its memory going back to the system.
pub const PURGE_DELAY_MS: c_long = 5;

/// Sets hilo's allocator options; called first thing in `main`, before any other thread runs.
#[allow(unsafe_code)]
pub fn tune() {
    // SAFETY: `mi_option_set_default` stores a number in mimalloc's option table (an index
    // within the table, checked by mimalloc too); no pointer is passed. mimalloc reads the
    // option each time it schedules a purge, so a change takes effect from then on.
    unsafe { libmimalloc_sys::mi_option_set_default(PURGE_DELAY, PURGE_DELAY_MS) }
}

/// The purge delay mimalloc uses now.
#[cfg(test)]
#[allow(unsafe_code)]
fn purge_delay_ms() -> c_long {
    // SAFETY: reads one entry of mimalloc's option table; no pointer is passed.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run by [`the_purge_delay_is_the_option_of_mimalloc_purge_delay`] in a child process:
    /// prints the delay after [`tune`].
    #[test]
    fn child_prints_the_purge_delay() {
        if std::env::var_os("HILO_ALLOC_CHILD").is_none() {
            return;
        }
        tune();
        println!("purge_delay={}", purge_delay_ms());
    }

    fn child(env: Option<&str>) -> String {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "alloc::tests::child_prints_the_purge_delay",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HILO_ALLOC_CHILD", "1")
        .env_remove("MIMALLOC_PURGE_DELAY");
        if let Some(v) = env {
            cmd.env("MIMALLOC_PURGE_DELAY", v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    #[test]
    fn the_purge_delay_is_the_option_of_mimalloc_purge_delay() {
        // mimalloc reads MIMALLOC_PURGE_DELAY into the option this module sets: so it is the one.
        assert!(child(Some("123")).contains("purge_delay=123"));
        // Without it, hilo's default.
        assert!(child(None).contains(&format!("purge_delay={PURGE_DELAY_MS}")));
    }
}
