//! Line and column of a place in the script, read from QuickJS's stack text: its frames are
//! `    at name (file:line:column)` or, for a parse error, `    at file:line:column`, both
//! 1-based. Only frames in the script's own file count (not the prelude's, not `eval`'s, not
//! native functions'). The text is bounded before it is read.

/// The file name the script's module is compiled under; the prelude has another.
pub(crate) const MODULE_FILE: &str = "code.js";

/// How much of a stack is read (the script may make its errors' stacks anything).
const MAX_STACK_CHARS: usize = 16 * 1024;

/// The first frame of `stack` in the script's file.
pub(crate) fn in_script(stack: &str) -> Option<(u32, u32)> {
    let stack = match stack.char_indices().nth(MAX_STACK_CHARS) {
        Some((end, _)) => &stack[..end],
        None => stack,
    };
    stack.lines().find_map(frame)
}

fn frame(line: &str) -> Option<(u32, u32)> {
    let rest = line.trim_start().strip_prefix("at ")?;
    // `name (file:line:col)` or `file:line:col`.
    let place = match rest.strip_suffix(')') {
        Some(inner) => &inner[inner.rfind('(')? + 1..],
        None => rest,
    };
    let mut parts = place.rsplitn(3, ':');
    let column = parts.next()?.parse::<u32>().ok()?;
    let line = parts.next()?.parse::<u32>().ok()?;
    let file = parts.next()?;
    (file == MODULE_FILE && line > 0).then_some((line, column.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_frame_in_the_script() {
        let stack = "    at parse (native)\n    at <anonymous> (<sandbox>:3:9)\n    at f (code.js:4:15)\n    at <anonymous> (code.js:9:1)\n";
        assert_eq!(in_script(stack), Some((4, 15)));
        assert_eq!(in_script("    at code.js:2:7\n"), Some((2, 7)));
        assert_eq!(in_script("    at f (other.js:2:7)\n"), None);
        assert_eq!(in_script("garbage"), None);
        assert_eq!(in_script("    at x (code.js:a:b)"), None);
    }
}
