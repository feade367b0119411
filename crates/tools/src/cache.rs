//! The result cache of safe tools: key = tenant + tool + canonical input (object keys
//! sorted, so `{"a":1,"b":2}` and `{"b":2,"a":1}` hit the same entry), value kept for the
//! tool's TTL on tokio's clock. Bounded: when full, expired entries go first, then the
//! entries closest to expiry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// JSON text with object keys sorted at every level, written straight into the text (no
/// sorted copy of the value is made).
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = map.get(k) {
                    write_canonical(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

pub struct Cache {
    capacity: usize,
    entries: Mutex<HashMap<String, (Instant, Value)>>,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn key(tenant: &str, tool: &str, input: &Value) -> String {
        format!("{tenant}\u{0}{tool}\u{0}{}", canonical(input))
    }

    pub fn get(&self, key: &str) -> Option<Value> {
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(key) {
            Some((until, v)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                m.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: String, value: Value, ttl: Duration) {
        let now = Instant::now();
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= self.capacity && !m.contains_key(&key) {
            m.retain(|_, (until, _)| *until > now);
            while m.len() >= self.capacity {
                let Some(first) = m
                    .iter()
                    .min_by_key(|(_, (until, _))| *until)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                m.remove(&first);
            }
        }
        m.insert(key, (now + ttl, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys_deeply() {
        assert_eq!(
            canonical(&json!({"b": [{"d": 1, "c": 2}], "a": null})),
            r#"{"a":null,"b":[{"c":2,"d":1}]}"#
        );
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_and_capacity_holds() {
        let c = Cache::new(2);
        c.put("a".into(), json!(1), Duration::from_secs(10));
        c.put("b".into(), json!(2), Duration::from_secs(5));
        c.put("c".into(), json!(3), Duration::from_secs(20));
        assert_eq!(c.get("b"), None, "closest to expiry evicted");
        assert_eq!(c.get("a"), Some(json!(1)));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(c.get("a"), None);
        assert_eq!(c.get("c"), Some(json!(3)));
    }
}
