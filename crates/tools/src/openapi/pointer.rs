//! JSON pointers (RFC 6901) inside one document: following a local `$ref`
//! (`#/components/schemas/a~1b`, percent-encoded as a URI fragment), and writing the pointer
//! of a place in the document for messages.

use serde_json::Value;

use super::error::OpenApiError;

/// Escapes one reference token (`~` → `~0`, `/` → `~1`).
pub(crate) fn escape(token: &str) -> String {
    if token.contains(['~', '/']) {
        token.replace('~', "~0").replace('/', "~1")
    } else {
        token.to_string()
    }
}

/// `base` with one more token.
pub(crate) fn join(base: &str, token: &str) -> String {
    let mut s = String::with_capacity(base.len() + token.len() + 1);
    s.push_str(base);
    s.push('/');
    s.push_str(&escape(token));
    s
}

/// Whether a `$ref` stays in this document (starts with `#`).
pub(crate) fn is_local(reference: &str) -> bool {
    reference.starts_with('#')
}

/// The JSON pointer a local reference names (its fragment, percent-decoded), or why it is not
/// one. `at` is where the reference was found, for the error.
pub(crate) fn pointer_of(reference: &str, at: &str) -> Result<String, OpenApiError> {
    if !is_local(reference) {
        return Err(OpenApiError::RemoteRef {
            reference: reference.to_string(),
            pointer: at.to_string(),
        });
    }
    let fragment = &reference[1..];
    let decoded = percent_encoding::percent_decode_str(fragment)
        .decode_utf8()
        .map_err(|_| bad(reference, at, "its percent-encoding is not UTF-8"))?;
    if !decoded.is_empty() && !decoded.starts_with('/') {
        // `#name` is a JSON Schema anchor, not a pointer.
        return Err(bad(
            reference,
            at,
            "it is a plain-name fragment (an anchor), not a JSON pointer; hilo follows `#/...` pointers only",
        ));
    }
    Ok(decoded.into_owned())
}

fn bad(reference: &str, at: &str, message: &str) -> OpenApiError {
    OpenApiError::BadRef {
        reference: reference.to_string(),
        pointer: at.to_string(),
        message: message.to_string(),
    }
}

/// The value at `pointer` in `root`, or `None` when nothing is there.
pub(crate) fn lookup<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(root);
    }
    let mut cur = root;
    for raw in pointer.strip_prefix('/')?.split('/') {
        let token = if raw.contains('~') {
            raw.replace("~1", "/").replace("~0", "~")
        } else {
            raw.to_string()
        };
        cur = match cur {
            Value::Object(map) => map.get(&token)?,
            Value::Array(items) => {
                // RFC 6901: decimal without leading zeros.
                if token.len() > 1 && token.starts_with('0') {
                    return None;
                }
                items.get(token.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn follows_escaped_and_percent_encoded_tokens() {
        let doc = json!({"components": {"schemas": {"a/b": 1, "c~d": 2, "e f": 3, "é": 4}},
                         "list": [10, 11]});
        let at = |r: &str| lookup(&doc, &pointer_of(r, "/x").unwrap_or_default()).cloned();
        assert_eq!(at("#/components/schemas/a~1b"), Some(json!(1)));
        assert_eq!(at("#/components/schemas/c~0d"), Some(json!(2)));
        assert_eq!(at("#/components/schemas/e%20f"), Some(json!(3)));
        assert_eq!(at("#/components/schemas/%C3%A9"), Some(json!(4)));
        assert_eq!(at("#/list/1"), Some(json!(11)));
        assert_eq!(at("#/list/01"), None);
        assert_eq!(at("#/components/nothing"), None);
        assert_eq!(at("#"), Some(doc.clone()));
        assert_eq!(join("/paths", "/repos/{owner}"), "/paths/~1repos~1{owner}");
    }

    #[test]
    fn refuses_remote_and_anchor_refs() {
        let e = pointer_of("other.yaml#/components/schemas/A", "/paths/~1a/get");
        assert!(
            matches!(&e, Err(OpenApiError::RemoteRef { reference, pointer })
                if reference == "other.yaml#/components/schemas/A" && pointer == "/paths/~1a/get"),
            "{e:?}"
        );
        let e = pointer_of("https://example.com/x.json", "/p");
        assert_eq!(e.map_err(|e| e.code()), Err("OPENAPI_REMOTE_REF"));
        let e = pointer_of("#node", "/p");
        assert_eq!(e.map_err(|e| e.code()), Err("OPENAPI_BAD_REF"));
    }
}
