//! What a user hands a command, read and checked the same way everywhere: workflow files
//! (`-` is standard input), `NAME[@VERSION]` targets, `JSON|@FILE` arguments and the
//! `--since`/`--until` times (`30m`, `24h`, `7d` ago, or an RFC 3339 time). A leaf: it
//! imports only `exit`, `config` and the output macros, so every command module can use it.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, anyhow};
use chrono::DateTime;
use hilo_core::{Format, Workflow};
use serde_json::Value;

use crate::config::Config;
use crate::exit::Exit;

/// The start of a period: some time ago, or an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This many milliseconds before now.
    Ago(u64),
    /// Milliseconds since the epoch.
    At(i64),
}

impl Since {
    /// The instant (ms since the epoch), counting back from `now_ms`.
    pub fn at(self, now_ms: i64) -> i64 {
        match self {
            Since::Ago(ms) => now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX)),
            Since::At(t) => t,
        }
    }
}

/// `--since`: a duration ago (`24h`) or an RFC 3339 time (`2025-01-31T09:00:00Z`).
pub fn parse_since(text: &str) -> Result<Since, String> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(Since::At(at.timestamp_millis()));
    }
    if t.starts_with(|c: char| c.is_ascii_digit()) && t.contains(['-', ':']) {
        return Err(format!(
            "`{t}` is not an RFC 3339 time; write e.g. 2025-01-31T09:00:00Z, or a duration such as 24h"
        ));
    }
    hilo_core::duration::parse_span_ms(t)
        .map(Since::Ago)
        .map_err(|e| e.to_string())
}

/// `NAME` or `NAME@VERSION`.
pub fn parse_target(target: &str) -> Result<(String, Option<u64>), Exit> {
    match target.split_once('@') {
        None => Ok((target.to_string(), None)),
        Some((name, v)) => {
            let version = v.parse::<u64>().ok().filter(|v| *v > 0).ok_or_else(|| {
                Exit::invalid(anyhow!(
                    "`{target}`: the version after @ must be a positive whole number, e.g. {name}@2"
                ))
            })?;
            Ok((name.to_string(), Some(version)))
        }
    }
}

/// `JSON` or `@FILE`.
pub fn read_json(arg: &str, what: &str) -> Result<Value, Exit> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(Path::new(path))
            .with_context(|| format!("cannot read the {what} file {path}"))
            .map_err(Exit::invalid)?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| {
        // Only the text around the problem: the input may be megabytes long.
        Exit::invalid(anyhow!(
            "the {what} is not valid JSON: {e}, near `{}`; give a JSON value or @FILE",
            near(&text, e.line(), e.column())
        ))
    })
}

/// Up to 40 characters either side of `line`:`column` (1-based, as serde_json counts) of
/// `text`, with `…` where it was cut.
fn near(text: &str, line: usize, column: usize) -> String {
    const SIDE: usize = 40;
    let l = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let chars: Vec<char> = l.chars().collect();
    let at = column.saturating_sub(1).min(chars.len());
    let from = at.saturating_sub(SIDE);
    let to = (at + SIDE).min(chars.len());
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    out.extend(&chars[from..to]);
    if to < chars.len() {
        out.push('…');
    }
    out
}

/// Reads a workflow file (`-` is standard input) and guesses its format.
pub fn read_source(path: &Path) -> anyhow::Result<(String, Format)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        let format = Format::detect(None, &text);
        return Ok((text, format));
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let format = Format::detect(path.file_name().and_then(|n| n.to_str()), &text);
    Ok((text, format))
}

/// Reads and validates one file; problems are printed (`path:line:col: error[…]`) to stderr.
pub fn load_file(path: &Path, config: &Config) -> Result<(Workflow, String, Format), Exit> {
    let (text, format) = read_source(path).map_err(Exit::invalid)?;
    load_text(path, text, format, config, Default::default())
}

/// Validates `text` (the file `path`): problems are printed to stderr. OpenAPI entries'
/// documents are read next to the file, or from `fetched` for URLs.
pub fn load_text(
    path: &Path,
    text: String,
    format: Format,
    config: &Config,
    fetched: std::collections::HashMap<String, String>,
) -> Result<(Workflow, String, Format), Exit> {
    let catalog = crate::tools::apis::catalog_for(&config.catalog, path, fetched);
    match hilo_core::load(&text, format, &catalog) {
        Ok(wf) => Ok((wf, text, format)),
        Err(diags) => {
            print_diagnostics(path, &diags);
            Err(Exit::invalid_reported())
        }
    }
}

/// A file's problems on stderr, one `path:line:col: error[…]` line each, then their count.
pub fn print_diagnostics(path: &Path, diags: &hilo_core::Diagnostics) {
    for d in diags.iter() {
        // A diagnostic quotes the document (a name, a value): never a huge one whole.
        let line = format!("{}:{d}", path.display());
        errln!("{}", hilo_server::error::excerpt(&line, 1000));
    }
    let n = diags.len();
    errln!(
        "{}: {n} error{} — not valid",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn durations() {
        let since = |t: &str| parse_since(t);
        assert_eq!(since("30m"), Ok(Since::Ago(1_800_000)));
        assert_eq!(since("24h"), Ok(Since::Ago(86_400_000)));
        assert_eq!(since("7d"), Ok(Since::Ago(604_800_000)));
        assert_eq!(since("1h30m"), Ok(Since::Ago(5_400_000)));
        assert_eq!(since("250ms"), Ok(Since::Ago(250)));
        assert_eq!(since("0s"), Ok(Since::Ago(0)));
        for (bad, says) in [
            ("", "empty"),
            ("7", "no unit"),
            ("7x", "unit is not one of"),
            ("d", "whole number"),
            ("-1d", "negative"),
            ("99999999999999999999d", "too large"),
            ("9999999999999w", "too large"),
        ] {
            let e = since(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn since_is_a_duration_or_a_time() {
        assert_eq!(parse_since("2h"), Ok(Since::Ago(7_200_000)));
        assert_eq!(
            parse_since("2025-01-31T09:00:00Z"),
            Ok(Since::At(1_738_314_000_000))
        );
        assert_eq!(
            parse_since("2025-01-31T10:00:00+01:00"),
            Ok(Since::At(1_738_314_000_000))
        );
        assert!(
            parse_since("2025-01-31")
                .unwrap_err()
                .contains("not an RFC 3339 time")
        );
        assert!(parse_since("-1d").unwrap_err().contains("negative"));
        assert_eq!(Since::Ago(1_000).at(5_000), 4_000);
        assert_eq!(Since::At(7).at(5_000), 7);
        assert_eq!(Since::Ago(u64::MAX).at(5_000), 5_000 - i64::MAX);
    }
}
