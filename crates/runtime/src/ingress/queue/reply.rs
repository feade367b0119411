//! The entries of an `XREADGROUP` reply, RESP2 or RESP3, deleted entries included.

/// An entry as read; `fields` is `None` when the entry was deleted from the stream (`XDEL`,
/// trimming) after it was delivered.
pub(super) struct Entry {
    pub(super) id: String,
    pub(super) fields: Option<Vec<(String, Vec<u8>)>>,
}

/// The entries of an `XREADGROUP` reply (RESP2 arrays or RESP3 maps; nil when none came).
pub(super) fn entries(reply: redis::Value) -> Result<Vec<Entry>, String> {
    use redis::Value as V;
    let streams: Vec<V> = match reply {
        V::Nil => return Ok(Vec::new()),
        // RESP2: [[stream, entries], …]
        V::Array(streams) => streams
            .into_iter()
            .map(|s| match s {
                V::Array(mut pair) if pair.len() == 2 => Ok(pair.swap_remove(1)),
                other => Err(format!("a stream's reply is {other:?}")),
            })
            .collect::<Result<_, _>>()?,
        // RESP3: {stream: entries, …}
        V::Map(streams) => streams.into_iter().map(|(_, v)| v).collect(),
        other => return Err(format!("the reply is {other:?}")),
    };
    let mut out = Vec::new();
    for list in streams {
        let list = match list {
            V::Array(list) => list,
            V::Nil => continue,
            other => return Err(format!("a stream's entries are {other:?}")),
        };
        for entry in list {
            let V::Array(parts) = entry else {
                return Err(format!("an entry is {entry:?}"));
            };
            let mut parts = parts.into_iter();
            let (Some(id), Some(fields), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err("an entry is not [id, fields]".into());
            };
            let id = bytes(id)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or("an entry's id is not text")?;
            let fields = match fields {
                V::Nil => None,
                V::Array(flat) => {
                    if flat.len() % 2 != 0 {
                        return Err(format!("entry {id} has an odd number of field items"));
                    }
                    let mut pairs = Vec::with_capacity(flat.len() / 2);
                    let mut items = flat.into_iter();
                    while let (Some(k), Some(v)) = (items.next(), items.next()) {
                        pairs.push(field(&id, k, v)?);
                    }
                    Some(pairs)
                }
                V::Map(kv) => Some(
                    kv.into_iter()
                        .map(|(k, v)| field(&id, k, v))
                        .collect::<Result<_, _>>()?,
                ),
                other => return Err(format!("entry {id}'s fields are {other:?}")),
            };
            out.push(Entry { id, fields });
        }
    }
    Ok(out)
}

fn field(id: &str, k: redis::Value, v: redis::Value) -> Result<(String, Vec<u8>), String> {
    match (bytes(k), bytes(v)) {
        (Some(k), Some(v)) => Ok((String::from_utf8_lossy(&k).into_owned(), v)),
        _ => Err(format!("entry {id} has a field that is not a string")),
    }
}

fn bytes(v: redis::Value) -> Option<Vec<u8>> {
    match v {
        redis::Value::BulkString(b) => Some(b),
        redis::Value::SimpleString(s) => Some(s.into_bytes()),
        redis::Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        redis::Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn replies_parse_with_deleted_entries() {
        use redis::Value as V;
        let b = |s: &str| V::BulkString(s.as_bytes().to_vec());
        let reply = V::Array(vec![V::Array(vec![
            b("in"),
            V::Array(vec![
                V::Array(vec![b("1-0"), V::Array(vec![b("action"), b("{}")])]),
                V::Array(vec![b("2-0"), V::Nil]),
            ]),
        ])]);
        let got = entries(reply).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "1-0");
        assert_eq!(
            got[0].fields.as_deref(),
            Some(&[("action".to_string(), b"{}".to_vec())][..])
        );
        assert!(got[1].fields.is_none());
        assert!(entries(V::Nil).unwrap().is_empty());
        assert!(entries(V::Int(3)).is_err());
    }
}
