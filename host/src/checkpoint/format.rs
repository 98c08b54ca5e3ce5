//! The canonical snapshot format: what a checkpoint or savepoint holds,
//! independent of the state backend that wrote it.
//!
//! A snapshot is a folder of objects:
//!
//! - `_manifest.json`, written last (a snapshot without it is partial and is
//!   never read): the format version, the checkpoint id, the job, and per
//!   operator uid its parallelism and, per subtask, a small JSON `meta` (a
//!   source's split positions, an operator's watermark and declared states),
//!   the name of its keyed-state object and a sink's committables;
//! - `<uid>-<subtask>.state`: the subtask's keyed state as a sequence of
//!   entries.
//!
//! A keyed-state object starts with the 8 bytes `SLUICEK1`, then holds
//! entries, each:
//!
//! | field | encoding |
//! |---|---|
//! | key group | u16, big endian |
//! | kind | u8 (what the entry is, per operator type; see below) |
//! | key | u32 length (little endian) and bytes |
//! | value | u32 length (little endian) and bytes |
//!
//! Kinds: `1` a keyed process function's state entry (the key is the
//! logical store key of [`crate::state`]'s layout, the value its bytes);
//! `2` a process function's timer (key: domain u8, time i64 big endian, the
//! record key; empty value); `3` a window pane (key: the record key's length
//! u32 LE and bytes, then the pane start i64 BE; value: the accumulator);
//! `4` a session window (key: the record key's length and bytes, start and
//! end i64 BE; value: the accumulator); `5` a record buffered by a join
//! (key: the record key's length and bytes, the side u8 — 0 left, 1 right —
//! and the record's time i64 BE; value: the record). Because every entry carries its key
//! group, a subtask restoring at another parallelism keeps exactly the
//! entries of the key groups it now owns.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MAGIC: &[u8; 8] = b"SLUICEK1";
pub const MANIFEST: &str = "_manifest.json";
pub const FORMAT_VERSION: u32 = 1;

pub const KIND_STATE: u8 = 1;
pub const KIND_TIMER: u8 = 2;
pub const KIND_PANE: u8 = 3;
pub const KIND_SESSION: u8 = 4;
pub const KIND_JOIN_ROW: u8 = 5;

/// Builds a keyed-state object.
#[derive(Default)]
pub struct EntryWriter {
    buf: Vec<u8>,
    entries: u64,
}

impl EntryWriter {
    pub fn new() -> EntryWriter {
        EntryWriter {
            buf: MAGIC.to_vec(),
            entries: 0,
        }
    }

    pub fn push(&mut self, kg: u32, kind: u8, key: &[u8], value: &[u8]) {
        self.buf.extend_from_slice(&(kg as u16).to_be_bytes());
        self.buf.push(kind);
        self.buf
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(value);
        self.entries += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// One entry read back.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub kg: u32,
    pub kind: u8,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// Calls `f` for every entry of a keyed-state object.
pub fn read_entries(
    bytes: &[u8],
    f: &mut dyn FnMut(Entry<'_>) -> Result<(), String>,
) -> Result<(), String> {
    let mut rest = bytes
        .strip_prefix(&MAGIC[..])
        .ok_or("not a sluice keyed-state object (bad magic)")?;
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if rest.len() < n {
            return Err("truncated keyed-state object".into());
        }
        let (a, b) = rest.split_at(n);
        *rest = b;
        Ok(a)
    }
    fn len(rest: &mut &[u8]) -> Result<usize, String> {
        Ok(u32::from_le_bytes(take(rest, 4)?.try_into().expect("4 bytes")) as usize)
    }
    while !rest.is_empty() {
        let kg = u16::from_be_bytes(take(&mut rest, 2)?.try_into().expect("2 bytes")) as u32;
        let kind = take(&mut rest, 1)?[0];
        let n = len(&mut rest)?;
        let key = take(&mut rest, n)?;
        let n = len(&mut rest)?;
        let value = take(&mut rest, n)?;
        f(Entry {
            kg,
            kind,
            key,
            value,
        })?;
    }
    Ok(())
}

/// A window or record key with its length in front, as in kinds 3 and 4.
pub fn put_key(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
}

/// Splits a length-prefixed key off the front.
pub fn take_key(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = u32::from_le_bytes(v.get(..4)?.try_into().ok()?) as usize;
    Some((v.get(4..4 + n)?, &v[4 + n..]))
}

pub fn take_i64(v: &[u8]) -> Option<(i64, &[u8])> {
    Some((i64::from_be_bytes(v.get(..8)?.try_into().ok()?), &v[8..]))
}

/// Whether a snapshot was taken by the runtime or asked for by a person.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotKind {
    Checkpoint,
    Savepoint,
    /// The job ended: only the sinks' last output to commit.
    Final,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub id: u64,
    pub kind: SnapshotKind,
    pub job: String,
    /// Milliseconds since the epoch.
    pub taken_at_ms: i64,
    pub max_parallelism: u32,
    /// The state backend that wrote it (for information: any backend reads
    /// any snapshot).
    pub backend: String,
    pub operators: BTreeMap<String, OperatorManifest>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct OperatorManifest {
    pub parallelism: u32,
    pub subtasks: Vec<SubtaskManifest>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct SubtaskManifest {
    pub subtask: u32,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub meta: serde_json::Value,
    /// The keyed-state object, relative to the snapshot's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default)]
    pub state_bytes: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub committables: Vec<serde_json::Value>,
}

impl Manifest {
    pub const FORMAT: &'static str = "sluice-snapshot";

    pub fn size_bytes(&self) -> u64 {
        self.operators
            .values()
            .flat_map(|o| &o.subtasks)
            .map(|s| s.state_bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_truncation_is_an_error() {
        let mut w = EntryWriter::new();
        w.push(3, KIND_STATE, b"\x01k", b"v");
        w.push(127, KIND_TIMER, b"", b"");
        let bytes = w.finish();
        let mut seen = Vec::new();
        read_entries(&bytes, &mut |e| {
            seen.push((e.kg, e.kind, e.key.to_vec(), e.value.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                (3, KIND_STATE, b"\x01k".to_vec(), b"v".to_vec()),
                (127, KIND_TIMER, vec![], vec![])
            ]
        );
        let e = read_entries(&bytes[..bytes.len() - 1], &mut |_| Ok(())).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        assert!(read_entries(b"nope", &mut |_| Ok(())).is_err());
    }
}
