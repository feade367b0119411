//! Standard output and error that never panic. `println!` panics when stdout is a pipe its
//! reader closed (`hilo executions list | head`); every command prints through [`outln!`] and
//! [`out!`] instead (and [`errln!`] for problems on stderr, [`noteln!`] for notes and progress,
//! which `-q` drops). The first failed write closes our side: later output is dropped (the
//! command still finishes what it does, durably) and `main` exits quietly for a broken pipe,
//! or reports any other write error.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Writes `args` (and a newline) to stdout unless an earlier write failed.
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
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
    if let Err(e) = std::io::stdout().lock().write_all(bytes) {
        closed(&e);
    }
}

/// Writes `args` and a newline to stderr; errors are dropped (there is nowhere left to say
/// them).
pub fn err(args: std::fmt::Arguments<'_>) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_fmt(args).and_then(|()| e.write_all(b"\n"));
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
