//! [`SourceMap`]: where each value of a parsed YAML or JSON document stood in its text, so
//! that diagnostics can give a line and a column. Apart from `source` (which reads the text
//! and reports syntax errors as diagnostics) so that `diagnostic` can use it without a loop.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

use crate::pointer::push_pointer;

/// Where each value of a parsed document stood in its text: JSON pointer → (line, column),
/// both 1-based.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    positions: HashMap<String, (usize, usize)>,
}

impl SourceMap {
    /// Indexes `text` (YAML or JSON). A text that does not parse yields an empty map.
    pub fn index(text: &str) -> SourceMap {
        let mut positions = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let pos = (span.start.line(), span.start.col() + 1);
            match event {
                Event::Scalar(value, ..) => match stack.last_mut() {
                    Some(Frame::Map { path, key }) => {
                        // A scalar after a key is its value (and ends the entry); otherwise
                        // it is the next key.
                        if key.take().is_none() {
                            let child = push_pointer(path, &value);
                            positions.entry(child).or_insert(pos);
                            *key = Some(value.into_owned());
                        }
                    }
                    Some(Frame::Seq { path, index }) => {
                        positions.insert(push_pointer(path, &index.to_string()), pos);
                        *index += 1;
                    }
                    None => {
                        positions.insert(String::new(), pos);
                    }
                },
                Event::Alias(_) => match stack.last_mut() {
                    Some(Frame::Map { key, .. }) => {
                        // An alias used as a key cannot be located; as a value it ends the entry.
                        key.take();
                    }
                    Some(Frame::Seq { index, .. }) => *index += 1,
                    None => {}
                },
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = match stack.last_mut() {
                        Some(Frame::Map { path, key }) => match key.take() {
                            Some(k) => push_pointer(path, &k),
                            // A complex (non-scalar) key: index nothing below it.
                            None => format!("{path}/\u{0}complex-key"),
                        },
                        Some(Frame::Seq { path, index }) => {
                            let p = push_pointer(path, &index.to_string());
                            positions.insert(p.clone(), pos);
                            *index += 1;
                            p
                        }
                        None => {
                            positions.insert(String::new(), pos);
                            String::new()
                        }
                    };
                    stack.push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map { path, key: None }
                    } else {
                        Frame::Seq { path, index: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        SourceMap { positions }
    }

    /// Position of `pointer`, or of its nearest ancestor that has one.
    pub fn lookup(&self, pointer: &str) -> Option<(usize, usize)> {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind('/')?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_and_items() {
        let text = "name: x\nnodes:\n  - id: a\n    type: finish\n  - {id: b, type: fail}\n";
        let map = SourceMap::index(text);
        assert_eq!(map.lookup("/name"), Some((1, 1)));
        assert_eq!(map.lookup("/nodes/0"), Some((3, 5)));
        assert_eq!(map.lookup("/nodes/0/type"), Some((4, 5)));
        assert_eq!(map.lookup("/nodes/1/type"), Some((5, 13)));
        assert_eq!(map.lookup("/nodes/1/type/deeper"), Some((5, 13)));
    }

    #[test]
    fn positions_in_json() {
        let text = "{\n  \"name\": \"x\",\n  \"nodes\": [\n    {\"id\": \"a\"}\n  ]\n}";
        let map = SourceMap::index(text);
        assert_eq!(map.lookup("/name"), Some((2, 3)));
        assert_eq!(map.lookup("/nodes/0/id"), Some((4, 6)));
    }
}
