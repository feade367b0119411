//! [`StoredJson`]: a JSON value read from a store, parsed the first time it is read.
//!
//! A claim hands the engine an execution's input and its live nodes' outputs. A resumed run
//! reads few of them — a run resumed after a 100,000-item loop reads neither the input nor
//! the loop's output list unless an expression does — and parsing them was nearly all of what
//! a claim cost (see docs/performance.md, issue 30). So a store hands such values over as
//! their text; the value is parsed on first read and kept.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A JSON value, either held or kept as the text a store read, parsed on first read.
///
/// It reads as a [`Value`] (`Deref`); comparing, printing and serializing read it too. A
/// clone shares what it clones: the text of one not yet read, the value of one read (the
/// commit that writes a node's row clones its record, whose output may be a loop's list of
/// 100,000 outputs). A text that is not JSON (only a damaged database file has one: the store
/// wrote it from a value) reads as `null`.
pub struct StoredJson {
    text: Option<Arc<str>>,
    value: OnceLock<Arc<Value>>,
}

impl StoredJson {
    /// A value held already.
    pub fn new(value: Value) -> StoredJson {
        StoredJson {
            text: None,
            value: OnceLock::from(Arc::new(value)),
        }
    }

    /// A value kept as `text`, JSON the store wrote: parsed on first read.
    pub fn from_text(text: impl Into<Arc<str>>) -> StoredJson {
        StoredJson {
            text: Some(text.into()),
            value: OnceLock::new(),
        }
    }

    /// The value, parsed now if it has not been read yet.
    pub fn get(&self) -> &Value {
        self.value.get_or_init(|| {
            let Some(text) = &self.text else {
                return Arc::new(Value::Null);
            };
            Arc::new(serde_json::from_str(text).unwrap_or(Value::Null))
        })
    }

    /// Whether the value has been parsed (or was held from the start).
    pub fn is_parsed(&self) -> bool {
        self.value.get().is_some()
    }

    /// The value, taken (copied when a clone shares it).
    pub fn into_value(self) -> Value {
        self.get();
        let StoredJson { mut value, .. } = self;
        value.take().map_or(Value::Null, Arc::unwrap_or_clone)
    }

    /// The value as JSON text: the text it was read from when it has not been read since.
    pub fn to_json_string(&self) -> String {
        match (&self.text, self.value.get()) {
            (Some(t), None) => t.to_string(),
            _ => self.get().to_string(),
        }
    }
}

impl Default for StoredJson {
    fn default() -> Self {
        StoredJson::new(Value::Null)
    }
}

impl std::ops::Deref for StoredJson {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.get()
    }
}

impl From<Value> for StoredJson {
    fn from(value: Value) -> Self {
        StoredJson::new(value)
    }
}

impl From<StoredJson> for Value {
    fn from(s: StoredJson) -> Self {
        s.into_value()
    }
}

impl Clone for StoredJson {
    fn clone(&self) -> Self {
        match self.value.get() {
            Some(v) => StoredJson {
                text: None,
                value: OnceLock::from(v.clone()),
            },
            None => StoredJson {
                text: self.text.clone(),
                value: OnceLock::new(),
            },
        }
    }
}

impl PartialEq for StoredJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl PartialEq<Value> for StoredJson {
    fn eq(&self, other: &Value) -> bool {
        self.get() == other
    }
}

impl fmt::Debug for StoredJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.get(), f)
    }
}

/// Compact JSON, as [`Value`] prints.
impl fmt::Display for StoredJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.get(), f)
    }
}

impl Serialize for StoredJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> Deserialize<'de> for StoredJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(StoredJson::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stored_value_is_parsed_when_first_read_and_shared_until_then() {
        let s = StoredJson::from_text(r#"{"b": [1, 2], "a": "x"}"#);
        assert!(!s.is_parsed());
        let copy = s.clone();
        assert_eq!(copy.to_json_string(), r#"{"b": [1, 2], "a": "x"}"#);
        assert!(!copy.is_parsed());
        assert_eq!(s["b"][1], json!(2));
        assert!(s.is_parsed());
        assert_eq!(s, copy);
        assert_eq!(
            serde_json::to_string(&copy).unwrap(),
            r#"{"b":[1,2],"a":"x"}"#
        );
        assert_eq!(copy.to_json_string(), r#"{"b":[1,2],"a":"x"}"#);
        assert_eq!(copy.into_value(), json!({"b": [1, 2], "a": "x"}));
    }

    #[test]
    fn a_clone_of_a_value_shares_it() {
        let s = StoredJson::new(json!([1, 2, 3]));
        let copy = s.clone();
        assert!(std::ptr::eq(s.get(), copy.get()));
        assert_eq!(copy.into_value(), json!([1, 2, 3]));
        assert_eq!(s.into_value(), json!([1, 2, 3]));
        let read = StoredJson::from_text("[4]");
        read.get();
        assert!(std::ptr::eq(read.get(), read.clone().get()));
    }

    #[test]
    fn a_damaged_text_reads_as_null() {
        let s = StoredJson::from_text("{not json");
        assert_eq!(*s, Value::Null);
        assert_eq!(StoredJson::new(json!(1)), json!(1));
    }
}
