//! A one-pass YAML reader: the parser's events straight into a JSON value, for the documents
//! definitions are made of, at a fraction of serde-saphyr's cost (its deserializer walks
//! the same events through serde's visitors, with redaction scopes, peeks and budgets per
//! event: on a 10,000-node chain 60 % of its time went beyond the parser's own events; this
//! pass takes 1.7× less time than it, the events two thirds of that).
//!
//! It reads with granit-parser, the parser serde-saphyr itself reads with (through
//! serde-saphyr's re-export, so it is the same build of it, with the same options), and resolves
//! scalars as serde-saphyr does for a `serde_json::Value` with `strict_booleans` (YAML 1.2
//! core schema: `null`, `~` and empty are null; `true`/`false` in three spellings are
//! booleans; decimal, `0x`, `0o` and `0b` integers; finite floats; everything else is text).
//! Whatever it does not resolve itself it leaves to serde-saphyr by answering `None`: a syntax
//! error, a tag, an anchor or alias, a merge key, a key that is not text, a duplicate key, a
//! non-finite float, a `%YAML` directive, a stream that is not exactly one document, and a
//! document near serde-saphyr's budgets (depth, events, nodes). So the errors, their messages
//! and positions, and every rare construct are serde-saphyr's own; the tests check the values
//! against serde-saphyr's on many documents.

mod fast;

use std::borrow::Cow;

use serde_json::{Map, Number, Value};
use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle};

/// Below serde-saphyr's default budgets (64 levels, 1,000,000 events, 250,000 nodes), with
/// room for counting differently: a document past one is left to serde-saphyr, which reports
/// the breach (or reads it, when it is within its budget after all).
const MAX_DEPTH: usize = 60;
const MAX_EVENTS: usize = 900_000;
const MAX_NODES: usize = 200_000;

/// The value of `text`, a YAML document, or `None` when serde-saphyr is to read it (see the
/// module's header): never a different value from serde-saphyr's.
pub(crate) fn read(text: &str) -> Option<Value> {
    // Most definitions: read straight from the text.
    if let Some(v) = fast::read(text) {
        return Some(v);
    }
    // serde-saphyr's parser options under its default budget.
    let mut options = Options::default();
    options.simple_key_max_lookahead = 1024;
    options.flow_nesting_limit = 255;
    options.block_nesting_limit = options.block_nesting_limit.max(65);
    options.emit_comments = false;
    let mut stack: Vec<Frame> = Vec::new();
    let mut root = None;
    let (mut documents, mut events, mut nodes) = (0usize, 0usize, 0usize);
    for item in Parser::new_from_str_with_options(text, options) {
        let (event, _) = item.ok()?;
        events += 1;
        if events > MAX_EVENTS {
            return None;
        }
        let value = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::DocumentStart(_, version) => {
                if version.is_some() || documents > 0 {
                    return None;
                }
                documents += 1;
                continue;
            }
            Event::Scalar(s, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    return None;
                }
                nodes += 1;
                if let Some(Frame::Map(_, key @ None)) = stack.last_mut() {
                    *key = Some(key_text(s, style)?);
                    continue;
                }
                scalar(s, style)?
            }
            Event::SequenceStart(_, anchor, ref tag) | Event::MappingStart(_, anchor, ref tag) => {
                // A collection as a key has no text form.
                if anchor != 0 || tag.is_some() || matches!(stack.last(), Some(Frame::Map(_, None)))
                {
                    return None;
                }
                nodes += 1;
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq(Vec::new())
                } else {
                    Frame::Map(Map::new(), None)
                });
                if stack.len() > MAX_DEPTH {
                    return None;
                }
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(items)) => Value::Array(items),
                _ => return None,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(map, None)) => Value::Object(map),
                _ => return None,
            },
            // Aliases, anchors' names and anything else.
            _ => return None,
        };
        if nodes > MAX_NODES {
            return None;
        }
        match stack.last_mut() {
            None if root.is_none() => root = Some(value),
            None => return None,
            Some(Frame::Seq(items)) => items.push(value),
            Some(Frame::Map(map, key)) => {
                // A key seen twice: serde-saphyr refuses it, with its message.
                if map.insert(key.take()?, value).is_some() {
                    return None;
                }
            }
        }
    }
    if documents == 1 && stack.is_empty() {
        root
    } else {
        None
    }
}

/// A collection being read: a sequence's items, or a mapping's entries and the key read whose
/// value comes next.
enum Frame {
    Seq(Vec<Value>),
    Map(Map<String, Value>, Option<String>),
}

/// A mapping key as text: a quoted or block scalar as written, a plain one only when it
/// resolves to text (`null`, `1`, `true` as keys, and the merge key `<<`, are serde-saphyr's).
fn key_text(s: Cow<'_, str>, style: ScalarStyle) -> Option<String> {
    if s == "<<" {
        return None;
    }
    match scalar(s, style)? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// The value of an untagged scalar.
fn scalar(s: Cow<'_, str>, style: ScalarStyle) -> Option<Value> {
    if style != ScalarStyle::Plain {
        return Some(Value::String(s.into_owned()));
    }
    if matches!(&*s, "" | "~" | "null" | "Null" | "NULL") {
        return Some(Value::Null);
    }
    let t = s.trim_matches([' ', '\t', '\r', '\n']);
    match t {
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        _ => {}
    }
    // Past one sign, every number starts with a digit or a point; `inf` and `nan`, which
    // Rust's float parser takes, are text in YAML.
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if !matches!(unsigned.as_bytes().first(), Some(b'0'..=b'9' | b'.')) {
        return Some(Value::String(s.into_owned()));
    }
    // Integers first (signed when written with a minus), then floats, as serde-saphyr tries.
    if t.starts_with('-') {
        if let Some(i) = int(unsigned, true).and_then(|m| i64::try_from(m).ok()) {
            return Some(Value::from(i));
        }
    } else if let Some(u) = int(unsigned, false).and_then(|m| u64::try_from(m).ok()) {
        return Some(Value::from(u));
    }
    // `.inf`, `-.Inf`, `.nan`…: serde-saphyr refuses a non-finite number in a value.
    let bare = t
        .strip_prefix('-')
        .unwrap_or_else(|| t.strip_prefix('+').unwrap_or(t));
    if matches!(bare, ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF") {
        return None;
    }
    match t.parse::<f64>() {
        Ok(f) => Number::from_f64(f).map(Value::Number),
        Err(_) => Some(Value::String(s.into_owned())),
    }
}

/// An integer's value, the sign already taken off `digits` (`negative` says which it was):
/// decimal without a leading zero, or `0x`, `0o`, `0b`; single underscores between digits.
fn int(digits: &str, negative: bool) -> Option<i128> {
    let (radix, digits) = if let Some(d) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, d)
    } else if let Some(d) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        (8, d)
    } else if let Some(d) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        (2, d)
    } else {
        if digits.starts_with('0') && digits != "0" {
            return None;
        }
        (10, digits)
    };
    let bytes = digits.as_bytes();
    let mut magnitude: u128 = 0;
    let mut any = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            let before = i > 0 && bytes[i - 1] != b'_';
            let after = bytes.get(i + 1).is_some_and(|&n| n != b'_');
            if !(before && after) {
                return None;
            }
            continue;
        }
        let d = char::from(b).to_digit(16)?;
        if d >= radix {
            return None;
        }
        magnitude = magnitude
            .checked_mul(u128::from(radix))?
            .checked_add(u128::from(d))?;
        any = true;
    }
    if !any {
        return None;
    }
    if negative {
        // Down to i128::MIN, as serde-saphyr counts.
        if magnitude == i128::MAX as u128 + 1 {
            Some(i128::MIN)
        } else {
            i128::try_from(magnitude).ok()?.checked_neg()
        }
    } else {
        i128::try_from(magnitude).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    /// What serde-saphyr makes of `text`, as `parse_value` asks it.
    fn saphyr(text: &str) -> Result<Value, String> {
        let options = serde_saphyr::options! { strict_booleans: true };
        serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| e.to_string())
    }

    /// The reader never gives a value serde-saphyr would not: equal, and written the same
    /// (so `-0.0` and `0`, `1.0` and `1` are told apart). Whether it read the text.
    fn same(text: &str) -> bool {
        let Some(mine) = read(text) else {
            return false;
        };
        match saphyr(text) {
            Ok(theirs) => {
                assert_eq!(mine, theirs, "{text:?}");
                assert_eq!(mine.to_string(), theirs.to_string(), "{text:?}");
            }
            Err(e) => panic!("{text:?}: read as {mine}, serde-saphyr refuses it: {e}"),
        }
        true
    }

    #[test]
    fn documents_read_as_serde_saphyr_reads_them() {
        // (document, whether the reader itself reads it rather than leaving it)
        let cases: &[(&str, bool)] = &[
            ("a: 1\n", true),
            (
                "name: x\nversion: 1\nnodes:\n  - {id: a, type: set, vars: {last: \"${ input.seed }\"}}\n",
                true,
            ),
            ("a: [1, 2, {b: c}]\nd: {}\ne: []\n", true),
            ("- a\n- - b\n  - c\n- {x: y}\n", true),
            (
                "plain: hello world\nsingle: 'it''s'\ndouble: \"tab\\tnew\\nline \\u00e9\"\n",
                true,
            ),
            ("quoted_specials: ['null', \"true\", '1', '~', '']\n", true),
            ("yes: yes\nno: no\non: [on, off, y, n, Yes, NO]\n", true),
            ("n: [null, Null, NULL, ~, nULL, ]\nempty:\n", true),
            ("b: [true, True, TRUE, false, False, FALSE, tRUE]\n", true),
            (
                "i: [0, -0, +0, 7, -7, +7, 0x1F, 0X1f, -0x1F, 0o17, 0O17, 0b101, 0B1, 1_000, 0x_1, 1__0, _1, 1_]\n",
                true,
            ),
            ("leading: [0777, -0777, 00, 09, 0.5, 08.5]\n", true),
            (
                "big: [18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809, 340282366920938463463374607431768211456]\n",
                true,
            ),
            (
                "f: [1.5, -1.5, +1.5, 1e3, 1E3, -1e-3, .5, -.5, 5., 1.e2, -0.0, 0.0, 3.14159265358979323846]\n",
                true,
            ),
            (
                "s: [inf, -inf, nan, NaN, infinity, -Infinity, ., .., +, e5, .e5, 1e, 0x, 0b2, 0o8, 1a, 1.2.3, 1:2]\n",
                true,
            ),
            ("dash: -5\n", true),
            ("dash: -\n", false),
            ("s: [-]\n", false),
            ("nonfinite: .inf\n", false),
            ("nonfinite: -.Inf\n", false),
            ("nonfinite: .NaN\n", false),
            ("overflow: 1e999\n", false),
            (
                "literal: |\n  line one\n  line two\nfolded: >\n  folded\n  text\n\nkeep: |+\n  kept\n\nstrip: |-\n  stripped\n",
                true,
            ),
            ("multi: this is\n  a plain scalar\n  on lines\n", true),
            ("\"quoted key\": 1\n'single': 2\n? explicit\n: 3\n", true),
            ("k: v # a comment\n# another\nl: [a, # inside\n  b]\n", true),
            ("---\na: 1\n...\n", true),
            ("\u{feff}a: 1\n", true),
            ("a:\tb\n", true),
            ("a: 'tab\there'\n", true),
            ("\"\\u263A\": smile\nunicode: héllo wörld ☺\n", true),
            ("top level scalar\n", true),
            ("[1, 2, 3]\n", true),
            ("---\n", true),
            // Left to serde-saphyr: its errors and rarer constructs.
            ("a: 1\na: 2\n", false),
            ("a: {b: 1, b: 2}\n", false),
            ("'a': 1\na: 2\n", false),
            ("a: &x 1\nb: *x\n", false),
            ("base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n", false),
            ("a: !!str 1\n", false),
            ("a: !custom x\n", false),
            ("1: one\n", false),
            ("null: x\n", false),
            ("true: x\n", false),
            ("~: x\n", false),
            ("? [a, b]\n: c\n", false),
            ("? {a: b}\n: c\n", false),
            ("a: 1\n---\nb: 2\n", false),
            ("%YAML 1.2\n---\na: 1\n", false),
            ("", false),
            ("# only a comment\n", false),
            ("a: [1, 2\nb: 3\n", false),
            ("a: b: c\n", false),
            ("a:\n  - b\n c: d\n", false),
            ("\ta: 1\n", true),
            ("a: 'unterminated\n", false),
            ("a: \"bad \\q escape\"\n", false),
            // Block scalars as the direct reader reads them.
            ("a: >\n  one  \n  two\n\n\n  three\nb: 1\n", true),
            ("a: |\n\n\n  after blanks\n  x\n", true),
            ("a: >\n\n  after blanks\n  x\n", true),
            ("a: |+\n  kept\n\n\nb: 1\n", true),
            ("a: >+\n  kept\n\n", true),
            ("a: |-\n  x\n\n", true),
            ("a: >-\n  x\n  y\n", true),
            ("- |\n  in a list\n- >\n  folded\n  too\n", true),
            ("k:\n  - a: |\n      deep\n    b: 2\n", true),
            ("a: | # comment\n  x # not a comment\n  # nor this\n", true),
            ("a: |\n  x\n   \n  y\n", true),
            ("a: >\n  x\n    more indented\n  y\n", true),
            ("a: |2\n   x\n", true),
            ("a: |\n  x", true),
            ("a: |\n    x\n  y\n", false),
            ("a: |\n     \n  x\n", false),
            // Plain scalars and keys at the edges of the direct reader.
            (
                "a: x:y\nb: ?x\nc: :x\nd: -x\ne: it's\nf: a#b\ng: a  # c\n",
                true,
            ),
            (
                "a : 1\n\"b c\" : 2\n'd': [x , y ]\ne: {f : 1, \"g\":2}\n",
                true,
            ),
            ("a: 1\n  # indented comment\nb: 2\n", true),
            ("a:\n- x\n- y\nb: 1\n", true),
            ("- - a\n  - b\n- - c\n", true),
            ("a: [x]]\n", false),
            ("[a]: b\n", false),
            ("a: 'x' 'y'\n", false),
            ("a: b\n  c: d\n", false),
            ("- a\nb: c\n", false),
        ];
        let wrong: Vec<_> = cases
            .iter()
            .filter(|(text, reads)| same(text) != *reads)
            .map(|(text, reads)| {
                format!(
                    "{text:?} (read: {}, serde-saphyr: {:?})",
                    !reads,
                    saphyr(text)
                )
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn nesting_past_the_budget_is_left_to_serde_saphyr() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(same(&deep(MAX_DEPTH)));
        assert!(!same(&deep(MAX_DEPTH + 1)));
        assert!(saphyr(&deep(65)).is_err(), "serde-saphyr's own budget");
        let wide = format!("[{}]", vec!["1"; MAX_NODES + 1].join(","));
        assert!(!same(&wide));
    }

    /// Every YAML file of the repository and every YAML block of its documentation.
    #[test]
    fn the_repositorys_yaml_reads_the_same() {
        let texts = repository_texts();
        let read = texts.iter().filter(|t| same(t)).count();
        assert!(texts.len() > 50, "{} texts", texts.len());
        assert!(
            read * 10 >= texts.len() * 8,
            "{read} of {} read",
            texts.len()
        );
        // The direct reader takes most of them itself (`same` checked its values above).
        let direct = texts.iter().filter(|t| fast::read(t).is_some()).count();
        assert!(
            direct * 10 >= texts.len() * 7,
            "the direct reader read {direct} of {}",
            texts.len()
        );
    }

    /// Every YAML file of the repository and every YAML block of its documentation, read once.
    fn repository_texts() -> &'static [String] {
        static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        TEXTS.get_or_init(collect_repository_texts)
    }

    fn collect_repository_texts() -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut texts = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if path.is_dir() {
                    if !matches!(name.as_str(), "target" | "node_modules" | ".git" | "fuzz") {
                        dirs.push(path);
                    }
                } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                    texts.push(std::fs::read_to_string(&path).unwrap());
                } else if name.ends_with(".md") {
                    let md = std::fs::read_to_string(&path).unwrap();
                    for block in md.split("```yaml\n").skip(1) {
                        texts.push(block.split("```").next().unwrap_or("").to_string());
                    }
                }
            }
        }
        texts
    }

    /// Pieces of YAML's syntax that edits put into real documents.
    const PIECES: &[&str] = &[
        " ",
        "  ",
        "\n",
        "\n  ",
        "\n- ",
        "- ",
        "-",
        ":",
        ": ",
        "#",
        " #",
        "'",
        "''",
        "\"",
        "\\",
        "\\u00e9",
        "[",
        "]",
        "{",
        "}",
        ",",
        ", ",
        "|",
        "|-",
        "|+",
        ">",
        ">-",
        "|2",
        "?",
        "? ",
        "&a ",
        "*a",
        "!!str ",
        "~",
        "null",
        "0x1F",
        "1e3",
        ".inf",
        "---",
        "...",
        "%",
        "\t",
        "\r",
        "é",
        "x",
        "key: value",
        "\n\n",
        "\u{feff}",
        "<<: ",
        "@",
        "`",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// The repository's documents with a few edits (syntax put in, text cut out): whatever
        /// the direct reader reads, serde-saphyr reads the same, and the rest is left.
        #[test]
        fn edited_documents_are_read_as_serde_saphyr_reads_them_or_left(
            doc in any::<prop::sample::Index>(),
            edits in prop::collection::vec(
                (any::<prop::sample::Index>(), 0..3u8, prop::sample::select(PIECES)),
                1..4,
            ),
        ) {
            let texts = repository_texts();
            let mut text = doc.get(texts).clone();
            for (at, op, piece) in edits {
                let bounds: Vec<usize> = (0..=text.len()).filter(|i| text.is_char_boundary(*i)).collect();
                let i = *at.get(&bounds);
                match op {
                    0 => text.insert_str(i, piece),
                    1 => {
                        let j = bounds.iter().copied().find(|j| *j >= i + piece.len()).unwrap_or(text.len());
                        text.replace_range(i..j, "");
                    }
                    _ => {
                        let j = bounds.iter().copied().find(|j| *j > i).unwrap_or(text.len());
                        text.replace_range(i..j, piece);
                    }
                }
            }
            if let Some(mine) = fast::read(&text) {
                match saphyr(&text) {
                    Ok(theirs) => {
                        prop_assert_eq!(&mine, &theirs, "{:?}", text);
                        prop_assert_eq!(mine.to_string(), theirs.to_string(), "{:?}", text);
                    }
                    Err(e) => prop_assert!(false, "{:?}: read as {}, serde-saphyr refuses it: {}", text, mine, e),
                }
            }
        }
    }

    /// Texts that resolve to something other than plain text, or nearly do.
    fn scalar_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[-+]?[0-9a-fA-FxXoObB._eE+-]{0,12}",
            "[-+]?(null|Null|NULL|~|true|True|TRUE|false|False|FALSE|yes|No|on|OFF|y|n|inf|nan|NaN|infinity|\\.inf|\\.nan|\\.Inf|\\.NAN)",
            "[a-z0-9 .:#'\"-]{0,10}",
        ]
    }

    proptest! {
        #[test]
        fn scalars_resolve_as_serde_saphyr_resolves_them(s in scalar_text(), t in scalar_text()) {
            same(&format!("v: {s}\n"));
            same(&format!("[{s}, {t}]\n"));
            same(&format!("{s}: {t}\n"));
            same(&format!("- {s}\n- {t}\n"));
        }

        #[test]
        fn values_written_as_yaml_or_json_read_back_the_same(v in value()) {
            if let Ok(y) = serde_saphyr::to_string(&v) {
                same(&y);
            }
            // JSON is YAML too (flow style, every string quoted).
            prop_assert!(same(&serde_json::to_string(&v).unwrap()));
            same(&serde_json::to_string_pretty(&v).unwrap());
        }
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "\\PC{0,12}".prop_map(Value::String),
            scalar_text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z0-9 _.$-]{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
