//! A direct reader for the YAML most definitions are written in: block mappings and sequences
//! indented with spaces, one-line flow collections, one-line plain and quoted scalars, literal
//! and folded block scalars. It reads the text's bytes once and builds the value as it goes,
//! with no tokens or events in between (granit-parser's scanner moves every token about: on a
//! 10,000-node chain it was two thirds of the YAML pass).
//!
//! It reads a document only when every construct in it is one it knows, and answers `None` at
//! the first thing it does not (then the event reader, and behind it serde-saphyr, reads the
//! text): tabs, carriage returns, a byte-order mark or another character YAML does not print,
//! directives, `...` or a second `---`, anchors, aliases, tags, explicit keys (`?`), a plain or
//! quoted scalar that goes on to another line, a flow collection over several lines, an empty
//! value or a trailing comma in a flow collection, a single-pair mapping in a flow sequence,
//! block-scalar indentation indicators, a line more indented than it may be, a key that is not
//! text, a duplicate key, and anything that would be a syntax error. Scalars resolve through the
//! event reader's own [`scalar`] and [`key_text`], so both readers give one value for one text.

use serde_json::{Map, Value};

use super::{MAX_DEPTH, MAX_NODES, key_text, scalar};
use serde_saphyr::granit_parser::ScalarStyle;

/// The longest key read (YAML's implicit keys are at most 1,024 characters).
const MAX_KEY: usize = 1000;

/// The value of `text`, or `None` when it holds anything this reader leaves to the others.
pub(super) fn read(text: &str) -> Option<Value> {
    if !printable(text) {
        return None;
    }
    let mut r = Reader {
        t: text,
        s: text.as_bytes(),
        pos: 0,
        nodes: 0,
    };
    if let Some(rest) = text.strip_prefix("---\n") {
        r.pos = text.len() - rest.len();
    }
    // Another document marker, or a directive, anywhere at the start of a line.
    if r.s[r.pos..]
        .split(|b| *b == b'\n')
        .any(|l| l.starts_with(b"---") || l.starts_with(b"...") || l.starts_with(b"%"))
    {
        return None;
    }
    let (start, indent) = r.next_line(r.pos)?;
    if indent != 0 {
        return None;
    }
    r.pos = start;
    let value = match r.s[start] {
        b'[' | b'{' => {
            let v = r.flow(0)?;
            r.end_of_line()?;
            v
        }
        _ => r.block_node(0, -1, 0)?,
    };
    // Nothing but blank lines and comments after the root.
    if r.next_line(r.pos).is_some() {
        return None;
    }
    Some(value)
}

/// Whether every character is one this reader may read: printable in YAML's sense, no tab,
/// carriage return, byte-order mark or line separator.
fn printable(text: &str) -> bool {
    if text.is_ascii() {
        return text
            .bytes()
            .all(|b| b == b'\n' || (0x20..0x7f).contains(&b));
    }
    text.chars().all(|c| match c {
        '\n' => true,
        '\u{20}'..='\u{7e}' => true,
        '\u{a0}'..='\u{d7ff}' => !matches!(c, '\u{2028}' | '\u{2029}'),
        '\u{e000}'..='\u{fffd}' => c != '\u{feff}',
        '\u{10000}'..='\u{10ffff}' => true,
        _ => false,
    })
}

struct Reader<'a> {
    t: &'a str,
    s: &'a [u8],
    /// Where reading is: at a line's start between values, within a line while one is read.
    pos: usize,
    nodes: usize,
}

impl<'a> Reader<'a> {
    fn at(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(b'\n')
    }

    /// Whether `i` ends a line (a line break, or the end of the text).
    fn eol(&self, i: usize) -> bool {
        self.at(i) == b'\n'
    }

    fn line_end(&self, from: usize) -> usize {
        self.s[from..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(self.s.len(), |n| from + n)
    }

    /// Past the line break at the end of the line `from` is in (the text's end if none).
    fn next_line_start(&self, from: usize) -> usize {
        (self.line_end(from) + 1).min(self.s.len())
    }

    /// The first line from the line start `from` on that holds something but a comment:
    /// its content's position and its indentation.
    fn next_line(&self, mut from: usize) -> Option<(usize, usize)> {
        while from < self.s.len() {
            let mut i = from;
            while self.at(i) == b' ' {
                i += 1;
            }
            if i < self.s.len() && !matches!(self.s[i], b'\n' | b'#') {
                return Some((i, i - from));
            }
            from = self.next_line_start(i);
        }
        None
    }

    /// The indentation of the next line that holds anything, a comment included.
    fn next_text_indent(&self, mut from: usize) -> Option<usize> {
        while from < self.s.len() {
            let mut i = from;
            while self.at(i) == b' ' {
                i += 1;
            }
            if !self.eol(i) {
                return Some(i - from);
            }
            from = self.next_line_start(i);
        }
        None
    }

    fn skip_spaces(&mut self) {
        while self.at(self.pos) == b' ' {
            self.pos += 1;
        }
    }

    /// Spaces, then a comment (after a space) or the line's end: moves to the next line.
    fn end_of_line(&mut self) -> Option<()> {
        let before = self.pos;
        self.skip_spaces();
        let comment = self.at(self.pos) == b'#' && self.pos > before;
        if !(self.eol(self.pos) || comment) {
            return None;
        }
        self.pos = self.next_line_start(self.pos);
        Some(())
    }

    fn count(&mut self, depth: usize) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= MAX_NODES && depth < MAX_DEPTH).then_some(())
    }

    /// A block node whose content starts at `self.pos`, at column `indent`, inside a
    /// collection indented `parent` (-1: the root).
    fn block_node(&mut self, indent: usize, parent: isize, depth: usize) -> Option<Value> {
        if self.at(self.pos) == b'-' && matches!(self.at(self.pos + 1), b' ' | b'\n') {
            return self.block_seq(indent, depth);
        }
        match self.key()? {
            Some(_) => self.block_map(indent, depth),
            None if parent < 0 => None,
            None => self.inline_value(parent, depth),
        }
    }

    /// Whether a key starts at `self.pos`: `Some(Some((key, past its colon)))`; `Some(None)`
    /// when it is a value; `None` when it is neither this reader's key nor a value.
    #[allow(clippy::option_option)]
    fn key(&self) -> Option<Option<(String, usize)>> {
        let start = self.pos;
        match self.at(start) {
            q @ (b'"' | b'\'') => {
                let mut probe = Reader { ..*self };
                let text = probe.quoted(q)?;
                probe.skip_spaces();
                let colon = probe.pos;
                if self.at(colon) == b':' && matches!(self.at(colon + 1), b' ' | b'\n') {
                    if text.len() > MAX_KEY {
                        return None;
                    }
                    return Some(Some((text, colon + 1)));
                }
                Some(None)
            }
            b'-' | b'?' | b':' if matches!(self.at(start + 1), b' ' | b'\n') => Some(None),
            b'[' | b']' | b'{' | b'}' | b',' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%'
            | b'@' | b'`' => Some(None),
            _ => {
                let mut i = start;
                loop {
                    match self.at(i) {
                        b'\n' => return Some(None),
                        b'#' if self.s[i - 1] == b' ' => return Some(None),
                        b':' if matches!(self.at(i + 1), b' ' | b'\n') => break,
                        _ => i += 1,
                    }
                }
                let raw = self.t[start..i].trim_end_matches(' ');
                if raw.len() > MAX_KEY {
                    return None;
                }
                let key = key_text(raw.into(), ScalarStyle::Plain)?;
                Some(Some((key, i + 1)))
            }
        }
    }

    /// A block mapping at column `indent`, its first key at `self.pos`.
    fn block_map(&mut self, indent: usize, depth: usize) -> Option<Value> {
        self.count(depth)?;
        let mut map = Map::new();
        loop {
            let (key, past) = self.key()??;
            self.count(depth + 1)?;
            self.pos = past;
            self.skip_spaces();
            let value = if self.eol(self.pos) || self.at(self.pos) == b'#' {
                self.pos = self.next_line_start(self.pos);
                match self.next_line(self.pos) {
                    Some((at, i)) if i > indent => {
                        self.pos = at;
                        self.block_node(i, indent as isize, depth + 1)?
                    }
                    Some((at, i))
                        if i == indent
                            && self.at(at) == b'-'
                            && matches!(self.at(at + 1), b' ' | b'\n') =>
                    {
                        self.pos = at;
                        self.block_seq(indent, depth + 1)?
                    }
                    _ => {
                        self.count(depth + 1)?;
                        Value::Null
                    }
                }
            } else {
                self.inline_value(indent as isize, depth + 1)?
            };
            if map.insert(key, value).is_some() {
                return None;
            }
            match self.next_line(self.pos) {
                Some((at, i)) if i == indent => {
                    self.pos = at;
                    if self.at(at) == b'-' && matches!(self.at(at + 1), b' ' | b'\n') {
                        return None;
                    }
                }
                Some((_, i)) if i > indent => return None,
                _ => return Some(Value::Object(map)),
            }
        }
    }

    /// A block sequence at column `indent`, its first `-` at `self.pos`.
    fn block_seq(&mut self, indent: usize, depth: usize) -> Option<Value> {
        self.count(depth)?;
        let mut items = Vec::new();
        loop {
            self.pos += 1;
            self.skip_spaces();
            let item = if self.eol(self.pos) || self.at(self.pos) == b'#' {
                self.pos = self.next_line_start(self.pos);
                match self.next_line(self.pos) {
                    Some((at, i)) if i > indent => {
                        self.pos = at;
                        self.block_node(i, indent as isize, depth + 1)?
                    }
                    _ => {
                        self.count(depth + 1)?;
                        Value::Null
                    }
                }
            } else {
                let column = self.pos - (self.t[..self.pos].rfind('\n').map_or(0, |n| n + 1));
                self.block_node(column, indent as isize, depth + 1)?
            };
            items.push(item);
            match self.next_line(self.pos) {
                Some((at, i))
                    if i == indent
                        && self.at(at) == b'-'
                        && matches!(self.at(at + 1), b' ' | b'\n') =>
                {
                    self.pos = at;
                }
                Some((_, i)) if i > indent => return None,
                _ => return Some(Value::Array(items)),
            }
        }
    }

    /// A value on the rest of this line (a scalar, a flow collection, a block scalar), in a
    /// collection indented `parent`.
    fn inline_value(&mut self, parent: isize, depth: usize) -> Option<Value> {
        self.count(depth)?;
        let value = match self.at(self.pos) {
            b'[' | b'{' => {
                let v = self.flow(depth)?;
                self.end_of_line()?;
                v
            }
            q @ (b'"' | b'\'') => {
                let v = Value::String(self.quoted(q)?);
                self.end_of_line()?;
                v
            }
            b'|' | b'>' => return self.block_scalar(parent),
            b'-' | b'?' | b':' if matches!(self.at(self.pos + 1), b' ' | b'\n') => return None,
            b']' | b'}' | b',' | b'#' | b'&' | b'*' | b'!' | b'%' | b'@' | b'`' => return None,
            _ => {
                let start = self.pos;
                let mut i = start;
                loop {
                    match self.at(i) {
                        b'\n' => break,
                        b'#' if self.s[i - 1] == b' ' => break,
                        // A key where a value is: `a: b: c`.
                        b':' if matches!(self.at(i + 1), b' ' | b'\n') => return None,
                        _ => i += 1,
                    }
                }
                let raw = self.t[start..i].trim_end_matches(' ');
                self.pos = self.next_line_start(i);
                scalar(raw.into(), ScalarStyle::Plain)?
            }
        };
        // A scalar or a flow collection that goes on to a more indented line.
        match self.next_text_indent(self.pos) {
            Some(i) if i as isize > parent => None,
            _ => Some(value),
        }
    }

    /// A quoted scalar on one line, `self.pos` at its opening quote; moves past the closing one.
    fn quoted(&mut self, quote: u8) -> Option<String> {
        let mut out = String::new();
        let mut i = self.pos + 1;
        let mut run = i;
        loop {
            match self.at(i) {
                b'\n' => return None,
                b'\'' if quote == b'\'' => {
                    out.push_str(&self.t[run..i]);
                    if self.at(i + 1) == b'\'' {
                        out.push('\'');
                        i += 2;
                        run = i;
                    } else {
                        self.pos = i + 1;
                        return Some(out);
                    }
                }
                b'"' if quote == b'"' => {
                    out.push_str(&self.t[run..i]);
                    self.pos = i + 1;
                    return Some(out);
                }
                b'\\' if quote == b'"' => {
                    out.push_str(&self.t[run..i]);
                    i = self.escape(i + 1, &mut out)?;
                    run = i;
                }
                _ => i += 1,
            }
        }
    }

    /// The escape after a backslash at `i`, pushed onto `out`: where reading goes on.
    fn escape(&self, i: usize, out: &mut String) -> Option<usize> {
        let c = match self.at(i) {
            b'0' => '\0',
            b'a' => '\u{7}',
            b'b' => '\u{8}',
            b't' => '\t',
            b'n' => '\n',
            b'v' => '\u{b}',
            b'f' => '\u{c}',
            b'r' => '\r',
            b'e' => '\u{1b}',
            b' ' => ' ',
            b'"' => '"',
            b'/' => '/',
            b'\\' => '\\',
            b'N' => '\u{85}',
            b'_' => '\u{a0}',
            b'L' => '\u{2028}',
            b'P' => '\u{2029}',
            x @ (b'x' | b'u' | b'U') => {
                let n = match x {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let hex = self.t.get(i + 1..i + 1 + n)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
                return Some(i + 1 + n);
            }
            _ => return None,
        };
        out.push(c);
        Some(i + 1)
    }

    /// A flow collection on one line, `self.pos` at its `[` or `{`.
    fn flow(&mut self, depth: usize) -> Option<Value> {
        self.count(depth)?;
        let close = if self.at(self.pos) == b'[' {
            b']'
        } else {
            b'}'
        };
        self.pos += 1;
        self.skip_spaces();
        let mut seq = Vec::new();
        let mut map = Map::new();
        if self.at(self.pos) == close {
            self.pos += 1;
        } else {
            loop {
                if close == b'}' {
                    let key = match self.at(self.pos) {
                        q @ (b'"' | b'\'') => {
                            let k = self.quoted(q)?;
                            self.skip_spaces();
                            if self.at(self.pos) != b':' {
                                return None;
                            }
                            self.pos += 1;
                            k
                        }
                        _ => {
                            let raw = self.flow_plain()?;
                            if self.at(self.pos) != b':' || self.at(self.pos + 1) != b' ' {
                                return None;
                            }
                            self.pos += 1;
                            key_text(raw.into(), ScalarStyle::Plain)?
                        }
                    };
                    if key.len() > MAX_KEY {
                        return None;
                    }
                    self.count(depth + 1)?;
                    self.skip_spaces();
                    let value = self.flow_node(depth + 1)?;
                    if map.insert(key, value).is_some() {
                        return None;
                    }
                } else {
                    seq.push(self.flow_node(depth + 1)?);
                }
                self.skip_spaces();
                match self.at(self.pos) {
                    b',' => {
                        self.pos += 1;
                        self.skip_spaces();
                        if matches!(self.at(self.pos), b']' | b'}') {
                            return None;
                        }
                    }
                    c if c == close => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        Some(if close == b']' {
            Value::Array(seq)
        } else {
            Value::Object(map)
        })
    }

    /// A value inside a flow collection.
    fn flow_node(&mut self, depth: usize) -> Option<Value> {
        match self.at(self.pos) {
            b'[' | b'{' => self.flow(depth),
            q @ (b'"' | b'\'') => {
                self.count(depth)?;
                let v = Value::String(self.quoted(q)?);
                // `"a": b` in a sequence is a single-pair mapping.
                let mut i = self.pos;
                while self.at(i) == b' ' {
                    i += 1;
                }
                (self.at(i) != b':').then_some(v)
            }
            _ => {
                self.count(depth)?;
                let raw = self.flow_plain()?;
                // `a: b` in a sequence is a single-pair mapping.
                if self.at(self.pos) == b':' {
                    return None;
                }
                scalar(raw.into(), ScalarStyle::Plain)
            }
        }
    }

    /// A plain scalar inside a flow collection, up to a flow indicator or `: `; its text,
    /// trimmed, never empty. `self.pos` is left on what ended it, past trailing spaces.
    fn flow_plain(&mut self) -> Option<&'a str> {
        let start = self.pos;
        match self.at(start) {
            b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%'
            | b'@' | b'`' | b'"' | b'\'' | b'\n' => return None,
            b'-' | b'?' | b':'
                if matches!(
                    self.at(start + 1),
                    b' ' | b'\n' | b',' | b'[' | b']' | b'{' | b'}'
                ) =>
            {
                return None;
            }
            _ => {}
        }
        let mut i = start;
        loop {
            match self.at(i) {
                b'\n' => return None,
                b',' | b'[' | b']' | b'{' | b'}' => break,
                b'#' if self.s[i - 1] == b' ' => return None,
                b':' if matches!(
                    self.at(i + 1),
                    b' ' | b'\n' | b',' | b'[' | b']' | b'{' | b'}'
                ) =>
                {
                    break;
                }
                _ => i += 1,
            }
        }
        let raw = self.t[start..i].trim_end_matches(' ');
        self.pos = i;
        Some(raw)
    }

    /// A literal (`|`) or folded (`>`) block scalar, `self.pos` at its indicator, in a
    /// collection indented `parent`; reading goes on at the first line past it.
    fn block_scalar(&mut self, parent: isize) -> Option<Value> {
        let folded = self.at(self.pos) == b'>';
        self.pos += 1;
        let chomp = match self.at(self.pos) {
            c @ (b'-' | b'+') => {
                self.pos += 1;
                c
            }
            _ => b' ',
        };
        if self.at(self.pos).is_ascii_digit() {
            return None;
        }
        self.end_of_line()?;
        // The content's indentation: the first line with something on it.
        let mut lines: Vec<&str> = Vec::new();
        let mut from = self.pos;
        let mut indent = None;
        let mut blank_width = 0;
        while from < self.s.len() {
            let end = self.line_end(from);
            if end == self.s.len() {
                // A last line without a line break: left to the others.
                return None;
            }
            let line = &self.t[from..end];
            let spaces = line.len() - line.trim_start_matches(' ').len();
            let blank = spaces == line.len();
            match indent {
                None if blank => blank_width = blank_width.max(spaces),
                None => {
                    if spaces as isize <= parent || blank_width > spaces {
                        return None;
                    }
                    indent = Some(spaces);
                }
                Some(n) if !blank && spaces < n => break,
                Some(_) => {}
            }
            if let Some(n) = indent {
                // Spaces past the indentation on a blank line, or a more indented line
                // of a folded scalar: left to the others.
                if spaces > n && (blank || folded) {
                    return None;
                }
                lines.push(if blank { "" } else { &line[n..] });
            } else {
                lines.push("");
            }
            from = end + 1;
        }
        // No line with something on it: left to the others.
        indent?;
        self.pos = from;
        let trailing = lines.iter().rev().take_while(|l| l.is_empty()).count();
        let body = &lines[..lines.len() - trailing];
        let mut out = if folded {
            // Lines next to each other join with a space; each blank line between is a break.
            let mut out = String::new();
            let (mut empties, mut first) = (0, true);
            for line in body {
                if line.is_empty() {
                    empties += 1;
                    continue;
                }
                if !first && empties == 0 {
                    out.push(' ');
                }
                out.extend(std::iter::repeat_n('\n', empties));
                out.push_str(line);
                (empties, first) = (0, false);
            }
            out
        } else {
            body.join("\n")
        };
        match chomp {
            b'-' => {}
            b'+' => out.extend(std::iter::repeat_n('\n', 1 + trailing)),
            _ => out.push('\n'),
        }
        Some(Value::String(out))
    }
}
