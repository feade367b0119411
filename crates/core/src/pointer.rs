//! JSON pointers (RFC 6901) as diagnostics, positions and expressions use them: building one
//! segment by segment, and showing one as a field path. A leaf: it imports nothing from the
//! crate.

/// `/with/params/0` → `with.params[0]`; empty pointer → `None`.
pub fn pointer_to_field(pointer: &str) -> Option<String> {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Appends one segment to a JSON pointer, escaping `~` and `/`.
pub fn push_pointer(base: &str, seg: &str) -> String {
    // One allocation: decoding and validating make a few pointers per node.
    let mut out = String::with_capacity(base.len() + 1 + seg.len());
    out.push_str(base);
    out.push('/');
    if seg.contains(['~', '/']) {
        for c in seg.chars() {
            match c {
                '~' => out.push_str("~0"),
                '/' => out.push_str("~1"),
                c => out.push(c),
            }
        }
    } else {
        out.push_str(seg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_fields() {
        assert_eq!(
            pointer_to_field("/with/params/0").as_deref(),
            Some("with.params[0]")
        );
        assert_eq!(
            pointer_to_field("/edges/2/to").as_deref(),
            Some("edges[2].to")
        );
        assert_eq!(pointer_to_field(""), None);
        assert_eq!(push_pointer("/a", "x/y~z"), "/a/x~1y~0z");
        assert_eq!(push_pointer("/a", "~1/~0é"), "/a/~01~1~00é");
        assert_eq!(push_pointer("", "nodes"), "/nodes");
        assert_eq!(push_pointer("/a", ""), "/a/");
        assert_eq!(pointer_to_field("/a~1b").as_deref(), Some("a/b"));
    }
}
