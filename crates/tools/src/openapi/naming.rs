//! Tool names and descriptions for operations.
//!
//! - With an `operationId`: `<prefix>.<operationId>`, every run of characters a tool name
//!   cannot have (anything outside `[A-Za-z0-9_.-]`, e.g. GitHub's `/` in `repos/get`) becomes
//!   one `_` (`github.repos_get`), none at either end; case is kept. An operationId with
//!   nothing left (`日本`) is treated as absent.
//! - Without: the method and the path, lower-cased, every run of other characters than
//!   `[a-z0-9]` one `_`, no `_` at either end: `GET /repos/{owner}/{repo}` →
//!   `get_repos_owner_repo`.
//! - Names are unique within an import: when a name is taken (two operationIds that differ
//!   only in characters a name cannot have, a document that repeats an `operationId`, a
//!   derived name equal to an operationId), the later operation, in document order (paths in
//!   the document's order, methods in the order get, put, post, delete, options, head, patch,
//!   trace), gets `_2`, `_3`, … and a note saying so.
//! - A name longer than [`MAX_NAME`] is cut and ends with `_` and 8 hex digits of the
//!   SHA-256 of the whole name, so that it stays unique and stable.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use super::schema::bounded;

/// Longest tool name an import gives (hilo's tool names are at most 200 characters).
pub const MAX_NAME: usize = 128;
/// Longest description an operation's tool gets, in characters.
pub const MAX_DESCRIPTION: usize = 1_000;

/// `id` with every run of characters outside `[A-Za-z0-9_.-]` replaced by one `_` (and then
/// no `_` at either end); empty when nothing is left (the caller derives a name instead).
pub(crate) fn from_operation_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    let mut gap = false;
    let mut changed = false;
    for c in id.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            out.push(c);
            gap = false;
        } else {
            changed = true;
            if !gap {
                out.push('_');
                gap = true;
            }
        }
    }
    if changed {
        // No `_` at either end from a replaced character (`{id}` → `id`).
        out = out.trim_matches('_').to_string();
    }
    out
}

/// `get_repos_owner_repo` for `GET /repos/{owner}/{repo}`.
pub(crate) fn from_method_path(method: &str, path: &str) -> String {
    let mut out = String::with_capacity(method.len() + path.len() + 1);
    for c in method
        .chars()
        .chain(std::iter::once('_'))
        .chain(path.chars())
    {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// The names given so far in one import.
#[derive(Default)]
pub(crate) struct Names {
    used: HashSet<String>,
}

impl Names {
    /// A unique name for `local` (the part after the prefix): `prefix.local`, cut to
    /// [`MAX_NAME`], with `_2`, `_3`, … when taken. Returns the name and whether it had to be
    /// changed to be unique.
    pub(crate) fn claim(&mut self, prefix: &str, local: &str) -> (String, bool) {
        let local = if local.is_empty() { "operation" } else { local };
        let base = fit(&join(prefix, local));
        if self.used.insert(base.clone()) {
            return (base, false);
        }
        for n in 2usize.. {
            let suffix = format!("_{n}");
            let candidate = fit_with(&join(prefix, local), &suffix);
            if self.used.insert(candidate.clone()) {
                return (candidate, true);
            }
        }
        // `2usize..` only ends at usize::MAX; an import has far fewer operations.
        (base, true)
    }
}

fn join(prefix: &str, local: &str) -> String {
    if prefix.is_empty() {
        local.to_string()
    } else {
        format!("{prefix}.{local}")
    }
}

fn fit(name: &str) -> String {
    fit_with(name, "")
}

/// `name` + `suffix`, cut to [`MAX_NAME`] with a hash of the whole name when too long.
fn fit_with(name: &str, suffix: &str) -> String {
    if name.len() + suffix.len() <= MAX_NAME {
        return format!("{name}{suffix}");
    }
    let hash = Sha256::digest(name.as_bytes());
    let tag: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    // Names are ASCII: any byte index is a char boundary.
    let keep = MAX_NAME - suffix.len() - tag.len() - 1;
    format!("{}_{tag}{suffix}", &name[..keep])
}

/// What an agent reads about an operation: its summary, then its description (when it says
/// more than the summary), `Deprecated.` first when it is; `METHOD path` when the document
/// says nothing. At most [`MAX_DESCRIPTION`] characters: a longer text is cut at a sentence
/// end or a space near the limit and ends with `…`.
pub(crate) fn description(
    summary: Option<&str>,
    description: Option<&str>,
    method: &str,
    path: &str,
    deprecated: bool,
) -> String {
    let summary = summary.map(str::trim).filter(|s| !s.is_empty());
    let description = description.map(str::trim).filter(|s| !s.is_empty());
    let mut text = match (summary, description) {
        (Some(s), Some(d)) if d.starts_with(s.trim_end_matches('.')) => d.to_string(),
        (Some(s), Some(d)) => {
            let sep = if s.ends_with(['.', '!', '?', ':']) {
                " "
            } else {
                ". "
            };
            format!("{s}{sep}{d}")
        }
        (Some(s), None) => s.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => format!("{method} {path}"),
    };
    if deprecated {
        text.insert_str(0, "Deprecated. ");
    }
    bounded(&text, MAX_DESCRIPTION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_ids_and_paths() {
        assert_eq!(from_operation_id("repos/get"), "repos_get");
        assert_eq!(from_operation_id("getPetById"), "getPetById");
        assert_eq!(from_operation_id("a b//c{d}"), "a_b_c_d");
        assert_eq!(from_operation_id("ünï"), "n");
        assert_eq!(from_operation_id("_private"), "_private");
        assert_eq!(from_operation_id("日本"), "");
        assert_eq!(
            from_method_path("GET", "/repos/{owner}/{repo}"),
            "get_repos_owner_repo"
        );
        assert_eq!(from_method_path("DELETE", "/a--b/{c.d}/"), "delete_a_b_c_d");
        assert_eq!(from_method_path("post", "/"), "post");
    }

    #[test]
    fn names_are_unique_and_bounded() {
        let mut n = Names::default();
        assert_eq!(n.claim("gh", "a"), ("gh.a".to_string(), false));
        assert_eq!(n.claim("gh", "a"), ("gh.a_2".to_string(), true));
        assert_eq!(n.claim("gh", "a_2"), ("gh.a_2_2".to_string(), true));
        assert_eq!(n.claim("", "a"), ("a".to_string(), false));
        let long = "x".repeat(300);
        let (a, _) = n.claim("p", &long);
        let (b, renamed) = n.claim("p", &long);
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME && a != b && renamed);
        assert!(hilo_core::decode::is_valid_tool_name(&a));
        assert_eq!(a, fit(&format!("p.{long}")), "stable");
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            description(
                Some("Get a pet"),
                Some("Returns one pet."),
                "GET",
                "/p",
                false
            ),
            "Get a pet. Returns one pet."
        );
        assert_eq!(
            description(
                Some("Get a pet"),
                Some("Get a pet by id."),
                "GET",
                "/p",
                true
            ),
            "Deprecated. Get a pet by id."
        );
        assert_eq!(description(None, Some(" "), "GET", "/p", false), "GET /p");
        let long = "word ".repeat(400);
        let d = description(None, Some(&long), "GET", "/p", false);
        assert!(
            d.chars().count() <= MAX_DESCRIPTION && d.ends_with('…'),
            "{d}"
        );
    }
}
