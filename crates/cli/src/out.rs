//! Everything `hilo` prints, in one place: standard output and error that never panic, and
//! the formats commands share (tables, JSON documents, times, durations, money).
//!
//! `println!` panics when stdout is a pipe its
//! reader closed (`hilo executions list | head`); every command prints through [`outln!`] and
//! [`out!`] instead (and [`errln!`] for problems on stderr, [`noteln!`] for notes and progress,
//! which `-q` drops). The first failed write closes our side: later output is dropped (the
//! command still finishes what it does, durably) and `main` exits quietly for a broken pipe,
//! or reports any other write error.
//!
//! The statics here (the closed-stdout flag, `-q`, the colour choice, a write failure) are
//! the terminal's state, process-wide by nature: set once from the command line in `main`,
//! read by every write. The wiring (store, tools, engine) is not here but in `app::App`.
//!
//! A leaf: it imports no other module of the binary but `exit`.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, SecondsFormat};

use crate::exit::Exit;

/// `print!` that never panics.
macro_rules! out {
    ($($t:tt)*) => {
        $crate::out::write(format_args!($($t)*), false)
    };
}

/// `println!` that never panics.
macro_rules! outln {
    () => {
        $crate::out::write(format_args!(""), true)
    };
    ($($t:tt)*) => {
        $crate::out::write(format_args!($($t)*), true)
    };
}

/// `eprintln!` that never panics: a closed stderr (`2>&1 | head`) loses the message, never
/// the command.
macro_rules! errln {
    ($($t:tt)*) => {
        $crate::out::err(format_args!($($t)*))
    };
}

/// `eprintln!` for notes and progress (not problems): dropped with `-q`.
macro_rules! noteln {
    ($($t:tt)*) => {
        if !$crate::out::quiet() {
            $crate::out::err(format_args!($($t)*))
        }
    };
}

static CLOSED: AtomicBool = AtomicBool::new(false);
/// `-q`: no notes or progress on stderr.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Sets `-q` for the process (once, from the command line).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether notes and progress are left out (`-q`).
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// The log level of the library crates for `-q` / `-v` counts, when `RUST_LOG` does not say:
/// `error` quiet, `warn` by default, then `info`, `debug`, `trace`.
pub fn log_level(quiet: bool, verbose: u8) -> &'static str {
    match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    }
}
/// A write error other than a broken pipe, for `main` to report.
static FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// Progress lines waiting to be written (see [`progress`]).
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static FLUSHER: std::sync::Once = std::sync::Once::new();
/// The longest a progress line waits, and the most bytes that wait.
const PENDING_MS: u64 = 50;
const PENDING_MAX: usize = 16 * 1024;

/// Writes a progress line (`args` and a newline) to stderr within [`PENDING_MS`]: lines are
/// gathered and written together, when [`PENDING_MAX`] bytes wait or by a thread that wakes
/// every [`PENDING_MS`]. `hilo run` prints two lines per step, a `write` each before (1.6 % of
/// its samples on a 10,000-node chain; 0.7 % gathered). Anything else written to stdout or
/// stderr (and a log line) writes the waiting lines first, so the order on screen holds.
pub fn progress(args: std::fmt::Arguments<'_>) {
    let mut pending = PENDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = pending.write_fmt(args);
    pending.push(b'\n');
    if pending.len() >= PENDING_MAX {
        let _ = std::io::stderr().lock().write_all(&pending);
        pending.clear();
    }
    drop(pending);
    FLUSHER.call_once(|| {
        // Without the thread (none could start), lines wait for the next other write or
        // the command's end (`finish`).
        let _ = std::thread::Builder::new()
            .name("hilo-progress".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(std::time::Duration::from_millis(PENDING_MS));
                    flush_progress();
                }
            });
    });
}

/// Writes the progress lines waiting (see [`progress`]).
pub fn flush_progress() {
    let mut pending = PENDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !pending.is_empty() {
        let _ = std::io::stderr().lock().write_all(&pending);
        pending.clear();
    }
}

/// Writes `args` (and a newline) to stdout unless an earlier write failed.
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    flush_progress();
    let mut out = std::io::stdout().lock();
    let r = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = r {
        closed(&e);
    }
}

/// Writes raw bytes (generated text) to stdout unless an earlier write failed.
pub fn write_bytes(bytes: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    flush_progress();
    if let Err(e) = std::io::stdout().lock().write_all(bytes) {
        closed(&e);
    }
}

/// Writes `args` and a newline to stderr; errors are dropped (there is nowhere left to say
/// them).
pub fn err(args: std::fmt::Arguments<'_>) {
    // Formatted first, then one write: standard error is unbuffered, and writing the pieces
    // took about seven system calls a line (`hilo run` prints a line per node transition:
    // 1.4 million calls for a loop of 100,000 items).
    let mut line = std::fmt::format(args);
    line.push('\n');
    flush_progress();
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn closed(e: &std::io::Error) {
    CLOSED.store(true, Ordering::Relaxed);
    if e.kind() != std::io::ErrorKind::BrokenPipe
        && let Ok(mut f) = FAILURE.lock()
        && f.is_none()
    {
        *f = Some(e.to_string());
    }
}

/// Flushes stdout; `Err` with the message of a write that failed for another reason than a
/// closed pipe (a full disk, say).
pub fn finish() -> Result<(), String> {
    flush_progress();
    if !CLOSED.load(Ordering::Relaxed)
        && let Err(e) = std::io::stdout().lock().flush()
    {
        closed(&e);
    }
    match FAILURE.lock() {
        Ok(mut f) => f.take().map_or(Ok(()), Err),
        Err(_) => Ok(()),
    }
}

/// Whether `e` (or what caused it) is a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// When output is coloured: `--color` (or `HILO_COLOR`), and `auto` means a terminal with no
/// `NO_COLOR` in the environment (<https://no-color.org>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// 0 auto, 1 always, 2 never.
static COLOR: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Sets the choice for the process (once, from the command line).
pub fn set_color(choice: ColorChoice) {
    let v = match choice {
        ColorChoice::Auto => 0,
        ColorChoice::Always => 1,
        ColorChoice::Never => 2,
    };
    COLOR.store(v, Ordering::Relaxed);
}

fn colour(is_terminal: bool) -> bool {
    match COLOR.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}

/// Whether what goes to stdout may carry colours and styles.
pub fn colour_stdout() -> bool {
    use std::io::IsTerminal;
    colour(std::io::stdout().is_terminal())
}

/// Whether what goes to stderr may carry colours and styles.
pub fn colour_stderr() -> bool {
    use std::io::IsTerminal;
    colour(std::io::stderr().is_terminal())
}

// Shared formats: what several commands print the same way.

/// One JSON document, pretty-printed, on stdout.
pub fn print_json(v: &impl serde::Serialize) -> Result<(), Exit> {
    outln!(
        "{}",
        serde_json::to_string_pretty(v).map_err(anyhow::Error::from)?
    );
    Ok(())
}

/// A table on stdout: columns as wide as their widest cell, two spaces apart (the last one
/// unpadded), the header in bold where stdout takes styles.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    print_table_capped(headers, rows, &[]);
}

/// [`print_table`] with column `i` at most `caps[i]` characters wide (no cap past the end of
/// `caps`): a longer cell is printed whole and pushes the rest of its line right, so that a
/// few long cells in a long list do not widen every line.
pub fn print_table_capped(headers: &[&str], rows: &[Vec<String>], caps: &[usize]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for (w, (cap, h)) in widths.iter_mut().zip(caps.iter().zip(headers)) {
        *w = (*w).min(*cap).max(h.len());
    }
    let bold = colour_stdout();
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let head = line(headers.iter().map(|h| h.to_string()).collect());
    if bold {
        outln!("\x1b[1m{head}\x1b[0m");
    } else {
        outln!("{head}");
    }
    for r in rows {
        outln!("{}", line(r.clone()));
    }
}

/// Milliseconds since the epoch as RFC 3339 in UTC (`2025-01-31T09:00:00.000Z`).
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Milliseconds since the epoch as `2025-01-31 09:00:00.000` (UTC), `-` for none: the
/// columns of `executions list|show`.
pub fn timestamp(ms: Option<i64>) -> String {
    ms.and_then(DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| "-".into())
}

/// `1500ms`, `1m`, `1d`: the largest unit that divides it, as `hilo.toml` accepts it back.
pub use hilo_core::duration::format_ms as human_ms;

/// USD with six decimals (a cheap call costs fractions of a cent).
pub fn money(nanos: i64) -> String {
    format!("{:.6}", hilo_core::llm::usd(nanos))
}

/// `99000` as `99,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
