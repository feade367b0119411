//! The step log's records on disk: what one holds ([`Record`]), how it is framed (its length
//! and CRC-32C, then its `postcard` encoding), and how a segment's bytes are read back into
//! records, telling whole ones from a torn tail, zeros never written to, and damage.

use std::borrow::Cow;

use hilo_core::store::{Result, StoreError};
use serde::{Deserialize, Serialize};

use crate::sql::exec_codec::{EventRow, ExecRow, Json, NewExecRow, NodeRow};
use crate::sqlite::audit_rows::AuditRow;

/// Bytes of a record's frame before its body: length, then CRC-32C of the body.
pub(super) const FRAME: usize = 8;

/// The largest record accepted when reading (a longer length is a torn or foreign frame).
const MAX_RECORD: usize = 1 << 30;

/// CRC-32C (Castagnoli) of a record's body: the processor's instruction where it has one
/// (SSE 4.2, ARMv8), else tables; the same checksum either way.
pub(super) fn checksum(body: &[u8]) -> u32 {
    crc32c::crc32c(body)
}

/// One durable write of the log. A record read back owns what it holds (`Record<'static>`);
/// one being framed may borrow the commit's lists ([`Record::Retire`]).
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Record<'a> {
    /// A commit of one execution: the rows it writes, fenced by its owner's lease.
    Step {
        id: String,
        owner: String,
        /// When it was made (the execution row's `updated_at`).
        at: i64,
        row: Option<Box<ExecRow>>,
        events: Vec<EventRow>,
        nodes: Vec<NodeRow>,
        vars: Vec<(String, Json)>,
    },
    /// Tool-call audit rows.
    Audit { rows: Vec<AuditRow> },
    /// What a step retires ([`Commit::retired`], [`Commit::dropped_vars`]): framed right after
    /// its `Step`, in the same write, and applied only when that `Step` was.
    Retire {
        id: String,
        nodes: Cow<'a, [String]>,
        vars: Cow<'a, [String]>,
    },
    /// A new execution held by its creator (`ExecutionStore::create_new`: an id made for it,
    /// which no execution has), with its first history rows. Its creator's steps follow it
    /// in the same segment, so they are folded after it. (Last among the variants: records
    /// of the others decode as before.)
    Create {
        row: Box<NewExecRow>,
        events: Vec<EventRow>,
    },
}

/// Frames `record` onto `buf`.
pub(super) fn frame(buf: &mut Vec<u8>, record: &Record<'_>) -> Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME]);
    let encoded = postcard::to_extend(record, std::mem::take(buf))
        .map_err(|e| StoreError::Backend(format!("step log: cannot encode a record: {e}")))?;
    *buf = encoded;
    let body = &buf[start + FRAME..];
    if body.len() > MAX_RECORD {
        buf.truncate(start);
        return Err(StoreError::Backend(
            "step log: a record over 1 GiB (it goes to SQLite)".into(),
        ));
    }
    let len = u32::try_from(body.len())
        .map_err(|_| StoreError::Backend("step log: a record over 4 GiB".into()))?;
    let crc = checksum(body);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + FRAME].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Where reading a segment's bytes stopped, when not at their end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stop {
    /// Every byte read is whole records.
    End,
    /// At `at`, an incomplete last record (a write cut short: its frame runs past the end,
    /// or it ends at the end with a bad checksum) or a zero-filled tail. Skipped in a
    /// segment nobody writes any more; waited for in a live one.
    Tail { at: usize, why: &'static str },
    /// At `at`, a damaged record with more bytes after it: never skipped (committed records
    /// may follow).
    Corrupt { at: usize, why: &'static str },
}

/// Why reading stopped at zeros: nothing was written there (not a torn record).
pub(super) const ZEROS: &str = "zero-filled tail";

/// Whether every byte of `bytes` is zero (a fold may look at a preallocated segment's
/// zeros: 64 bytes at a time, which the compiler turns into vector instructions).
fn all_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(64)
        .all(|c| c.iter().fold(0u8, |acc, b| acc | b) == 0)
}

/// A whole frame read: the offset just past it, and its record (or why it does not decode).
#[cfg(test)]
type Whole = (usize, std::result::Result<Record<'static>, String>);

/// The whole records at the start of `bytes`: each with the offset just past it, and where
/// and why reading stopped before the end.
#[cfg(test)]
fn records(bytes: &[u8]) -> (Vec<Whole>, Stop) {
    let mut out = Vec::new();
    let stop = each_record(bytes, |end, r| {
        out.push((end, r));
        Ok::<(), std::convert::Infallible>(())
    });
    match stop {
        Ok(stop) => (out, stop),
        Err(never) => match never {},
    }
}

/// Hands each whole record at the start of `bytes` to `each` in order, with the offset just
/// past it, decoding one at a time (a fold holds one decoded record at a time, not the whole
/// backlog); then says where and why reading stopped before the end. An error from `each`
/// ends the walk.
pub(super) fn each_record<E>(
    bytes: &[u8],
    mut each: impl FnMut(
        usize,
        std::result::Result<Record<'static>, String>,
    ) -> std::result::Result<(), E>,
) -> std::result::Result<Stop, E> {
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if all_zero(rest) {
            // Never written (a segment's preallocated end, or a zero-filled tail), not a record.
            return Ok(Stop::Tail { at, why: ZEROS });
        }
        if rest.len() < FRAME {
            return Ok(Stop::Tail {
                at,
                why: "incomplete frame header",
            });
        }
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(rest[4..FRAME].try_into().unwrap_or_default());
        if len == 0 || len > MAX_RECORD {
            return Ok(Stop::Corrupt {
                at,
                why: "a frame with an impossible length",
            });
        }
        if rest.len() - FRAME < len {
            return Ok(Stop::Tail {
                at,
                why: "a record cut short",
            });
        }
        let body = &rest[FRAME..FRAME + len];
        if checksum(body) != crc {
            let why = "a record whose checksum does not match";
            // The last record: at the end, or before zeros never written to (a segment's
            // preallocated end).
            return Ok(if all_zero(&rest[FRAME + len..]) {
                Stop::Tail { at, why }
            } else {
                Stop::Corrupt { at, why }
            });
        }
        at += FRAME + len;
        each(at, postcard::from_bytes(body).map_err(|e| e.to_string()))?;
    }
    Ok(Stop::End)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hilo_core::tool::AuditEntry;

    /// Segments written before and after the checksum's implementation changed read alike:
    /// it is CRC-32C, whose check value (of the ASCII digits 1 to 9) is 0xE3069283.
    #[test]
    fn the_checksum_is_crc_32c() {
        assert_eq!(checksum(b"123456789"), 0xE306_9283);
        assert_eq!(checksum(b""), 0);
    }

    #[test]
    fn records_stop_at_a_torn_or_corrupt_frame() {
        let mut buf = Vec::new();
        for n in 0..3 {
            frame(
                &mut buf,
                &Record::Audit {
                    rows: vec![AuditRow::of(&AuditEntry {
                        id: 0,
                        at: n,
                        tenant: "t".into(),
                        execution_id: "e".into(),
                        node_key: "n".into(),
                        agent: None,
                        tool: "x".into(),
                        input: serde_json::json!({"n": n}),
                        output: None,
                        status: hilo_core::tool::AuditStatus::Ok,
                        error_code: None,
                        error_message: None,
                        duration_ms: 1,
                        attempt: 1,
                        cached: false,
                        idempotency_key: format!("k{n}"),
                        compensates: None,
                    })],
                },
            )
            .unwrap();
        }
        let (whole, stop) = records(&buf);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[2].0, buf.len());
        assert_eq!(stop, Stop::End);
        // Torn inside the last record: two whole ones, then a tail.
        let (torn, stop) = records(&buf[..buf.len() - 5]);
        assert_eq!(torn.len(), 2);
        assert!(matches!(stop, Stop::Tail { at, .. } if at == whole[1].0));
        // A flipped byte in the second, with the third after it: damage, not a tail.
        let mut bad = buf.clone();
        let at = whole[0].0 + FRAME + 3;
        bad[at] ^= 0x20;
        let (first, stop) = records(&bad);
        assert_eq!(first.len(), 1);
        assert!(matches!(stop, Stop::Corrupt { at, .. } if at == whole[0].0));
        // A flipped byte in the last one: a torn tail.
        let mut last = buf.clone();
        let end = last.len() - 2;
        last[end] ^= 0x20;
        assert!(matches!(records(&last).1, Stop::Tail { .. }));
        // Zeros after whole records: a tail; an incomplete header: a tail.
        let mut zeros = buf.clone();
        zeros.extend_from_slice(&[0; 64]);
        let (z, stop) = records(&zeros);
        assert_eq!(z.len(), 3);
        assert_eq!(
            stop,
            Stop::Tail {
                at: buf.len(),
                why: "zero-filled tail"
            }
        );
        assert!(records(&buf[..FRAME - 1]).0.is_empty());
    }

    /// A `Retire` framed borrowing a commit's lists is the record an owned one was (segments
    /// written before the lists were borrowed read back the same).
    #[test]
    fn a_borrowed_retire_frames_as_an_owned_one() {
        let (nodes, vars) = (vec!["a[0]/x".to_string()], vec!["\u{1}a[0]/".to_string()]);
        let mut borrowed = Vec::new();
        let record = Record::Retire {
            id: "e".into(),
            nodes: Cow::Borrowed(&nodes),
            vars: Cow::Borrowed(&vars),
        };
        frame(&mut borrowed, &record).unwrap();
        let mut owned = Vec::new();
        let record = Record::Retire {
            id: "e".into(),
            nodes: Cow::Owned(nodes.clone()),
            vars: Cow::Owned(vars.clone()),
        };
        frame(&mut owned, &record).unwrap();
        assert_eq!(borrowed, owned);
        // As the lists were framed before: a length, then each string.
        #[derive(Serialize)]
        enum Before {
            _Step,
            _Audit,
            Retire {
                id: String,
                nodes: Vec<String>,
                vars: Vec<String>,
            },
        }
        let before = postcard::to_extend(
            &Before::Retire {
                id: "e".into(),
                nodes: nodes.clone(),
                vars: vars.clone(),
            },
            Vec::new(),
        )
        .unwrap();
        assert_eq!(&borrowed[FRAME..], &before[..]);
        let (read, stop) = records(&borrowed);
        assert_eq!(stop, Stop::End);
        match &read[0].1 {
            Ok(Record::Retire {
                id,
                nodes: n,
                vars: v,
            }) => {
                assert_eq!((id.as_str(), &n[..], &v[..]), ("e", &nodes[..], &vars[..]));
            }
            other => panic!("{other:?}"),
        }
    }
}
