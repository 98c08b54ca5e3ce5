//! What the `state` and `output` imports of a keyed process function reach
//! during a call: the state, the call's distinct keys with their key
//! groups, and the side outputs the guest has named.

use super::sluice::operator::state as wit_state;
use super::{checked_span, wit};
use crate::state::keys::KeyTable as KeyTableOf;
use crate::state::{KeyedState, StateError};

/// The distinct keys of one call, with their key groups: a key table
/// emptied after each call, whose ids are the key indices the guest sees.
#[derive(Default)]
pub(crate) struct KeyTable(KeyTableOf<()>);

impl KeyTable {
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Key `i` and its key group, if the call has it.
    pub(super) fn key(&self, i: u32) -> Option<(&[u8], u32)> {
        self.0.entry(i)
    }

    /// The index of `key`, adding it if new.
    pub(super) fn intern(&mut self, key: &[u8], max_parallelism: u32) -> u32 {
        self.0.intern(key, max_parallelism, || ())
    }

    /// The keys' bytes and their spans, in index order.
    pub(super) fn lowered(&self) -> (Vec<u8>, Vec<wit::Span>) {
        let spans = (0..self.0.len() as u32)
            .map(|i| {
                let (offset, len) = self.0.span(i);
                wit::Span { offset, len }
            })
            .collect();
        (self.0.buffer().to_vec(), spans)
    }
}

/// What the imports reach: the state, the call's keys, the side outputs.
#[derive(Default)]
pub(crate) struct KeyedCall {
    pub(super) state: Option<KeyedState>,
    /// True during `open`, the only time states may be declared.
    pub(super) opening: bool,
    pub(super) keys: KeyTable,
    pub(super) side_outputs: Vec<String>,
    /// A state error met by an import that is not the guest's doing (a
    /// full backend, a RocksDB error); the guest traps with it.
    pub(super) error: Option<StateError>,
    /// A keyed broadcast process function's broadcast state, and whether
    /// the call may change it.
    pub(super) broadcast: BroadcastStates,
    pub(super) access: BroadcastAccess,
    /// How each value state's values cross the boundary, by value slot:
    /// as stored where `None` (or past the end), else converted.
    pub(super) encodings: Vec<Option<ValueEncoding>>,
}

/// A fixed encoding a value state's values cross the boundary in (the
/// WIT's `state.value-encoding` other than `bytes`). The store holds JSON
/// text whatever the encoding: the host converts on the way in and out, so
/// snapshots and savepoints do not depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueEncoding {
    /// A JSON integer in the range of i64, as 8 bytes little-endian.
    S64,
    /// A JSON integer in the range of u64, as 8 bytes little-endian.
    U64,
}

impl ValueEncoding {
    /// The fixed encoding `e` names, if any.
    pub(super) fn of(e: wit_state::ValueEncoding) -> Option<ValueEncoding> {
        match e {
            wit_state::ValueEncoding::Bytes => None,
            wit_state::ValueEncoding::S64 => Some(ValueEncoding::S64),
            wit_state::ValueEncoding::U64 => Some(ValueEncoding::U64),
        }
    }

    /// The 8 bytes that stand for the stored JSON text `text`, if it is an
    /// integer in this encoding's range.
    pub(super) fn lower(self, text: &[u8]) -> Option<[u8; 8]> {
        match self {
            ValueEncoding::S64 => crate::json::exact_i64(text).map(i64::to_le_bytes),
            ValueEncoding::U64 => crate::json::exact_u64(text).map(u64::to_le_bytes),
        }
    }

    /// The value a guest wrote, `bytes`, if it is the 8 bytes it must be.
    pub(super) fn word(self, bytes: &[u8]) -> Result<[u8; 8], String> {
        <[u8; 8]>::try_from(bytes).map_err(|_| {
            let name = match self {
                ValueEncoding::S64 => "s64",
                ValueEncoding::U64 => "u64",
            };
            format!(
                "a value of {} bytes written to a value state encoded as {name} (8 bytes)",
                bytes.len()
            )
        })
    }

    /// Appends the JSON text that `word` stands for.
    pub(super) fn lift(self, word: [u8; 8], out: &mut Vec<u8>) {
        let mut digits = itoa::Buffer::new();
        let text = match self {
            ValueEncoding::S64 => digits.format(i64::from_le_bytes(word)),
            ValueEncoding::U64 => digits.format(u64::from_le_bytes(word)),
        };
        out.extend_from_slice(text.as_bytes());
    }
}

/// The broadcast states of a keyed broadcast process function: every
/// subtask holds all of each, and only a `process-broadcast` call may
/// change them.
#[derive(Default, Clone, PartialEq, Debug)]
pub(crate) struct BroadcastStates {
    /// Declared names, by handle.
    pub(super) names: Vec<String>,
    pub(super) maps: Vec<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>,
}

/// Whether a call may change broadcast state, and what it tried when it
/// may not: the operator fails with that, whatever the guest makes of the
/// trap.
#[derive(Default)]
pub(crate) struct BroadcastAccess {
    pub(super) writable: bool,
    pub(super) refused: Option<String>,
}

impl BroadcastStates {
    /// Declares `name` (the same handle for a name declared before).
    pub(super) fn declare(&mut self, name: String) -> u32 {
        match self.names.iter().position(|n| *n == name) {
            Some(i) => i as u32,
            None => {
                self.names.push(name);
                self.maps.push(Default::default());
                self.names.len() as u32 - 1
            }
        }
    }

    pub(super) fn map(
        &mut self,
        handle: u32,
    ) -> wasmtime::Result<&mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
        let n = self.maps.len();
        self.maps.get_mut(handle as usize).ok_or_else(|| {
            wasmtime::Error::msg(format!(
                "broadcast state handle {handle} was never declared ({n} declared)"
            ))
        })
    }

    /// A digest of every state's entries, equal on two subtasks exactly
    /// when their broadcast states are.
    pub(crate) fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut states: Vec<_> = self.names.iter().zip(&self.maps).collect();
        states.sort_by_key(|(name, _)| *name);
        for (name, map) in states {
            for part in [name.as_bytes(), &(map.len() as u64).to_le_bytes()] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part);
            }
            for (k, v) in map {
                for part in [k, v] {
                    h.update((part.len() as u64).to_le_bytes());
                    h.update(part);
                }
            }
        }
        super::hex(&h.finalize()[..16])
    }

    /// The states as JSON, for a snapshot: `{name: [[key hex, value hex], ...]}`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let states = self.names.iter().zip(&self.maps).map(|(name, map)| {
            let entries = map
                .iter()
                .map(|(k, v)| serde_json::json!([super::hex(k), super::hex(v)]))
                .collect();
            (name.clone(), serde_json::Value::Array(entries))
        });
        serde_json::Value::Object(states.collect())
    }

    /// Takes back the states of a snapshot ([`BroadcastStates::to_json`]).
    /// A state the module no longer declares is an error unless `drop`.
    pub(crate) fn restore(&mut self, json: &serde_json::Value, drop: bool) -> Result<(), String> {
        let states = json
            .as_object()
            .ok_or("broadcast state is not a JSON object")?;
        for (name, entries) in states {
            let Some(i) = self.names.iter().position(|n| n == name) else {
                if drop {
                    continue;
                }
                return Err(format!(
                    "the snapshot has broadcast state `{name}` that the module does not declare; declare it, or pass --drop-unclaimed-state to drop it"
                ));
            };
            let map = &mut self.maps[i];
            map.clear();
            for e in entries
                .as_array()
                .ok_or("broadcast entries are not a list")?
            {
                let pair = |j: usize| {
                    e.get(j)
                        .and_then(|x| x.as_str())
                        .and_then(|x| super::unhex(x).ok())
                        .ok_or_else(|| format!("a corrupt entry of broadcast state `{name}`"))
                };
                map.insert(pair(0)?, pair(1)?);
            }
        }
        Ok(())
    }
}

impl KeyedCall {
    pub(super) fn state(&mut self) -> wasmtime::Result<&mut KeyedState> {
        self.state
            .as_mut()
            .ok_or_else(|| wasmtime::Error::msg("this operator has no keyed state"))
    }

    /// Runs one state access for key `key` of the call. The guest traps on
    /// an error. One the guest caused (a state it did not declare) is its
    /// own bug; any other is remembered, and the operator reports it as the
    /// state error it is.
    pub(super) fn access<T>(
        &mut self,
        key: u32,
        f: impl FnOnce(&mut KeyedState, u32, &[u8]) -> Result<T, StateError>,
    ) -> wasmtime::Result<T> {
        let Some((k, kg)) = self.keys.key(key) else {
            return Err(wasmtime::Error::msg(format!(
                "key index {key} is not in this call ({} keys)",
                self.keys.len()
            )));
        };
        let state = self
            .state
            .as_mut()
            .ok_or_else(|| wasmtime::Error::msg("this operator has no keyed state"))?;
        f(state, kg, k).map_err(|error| {
            let message = error.to_string();
            if !matches!(error, StateError::Misuse(_)) {
                self.error = Some(error);
            }
            wasmtime::Error::msg(message)
        })
    }
}

/// Builds a WIT `byte-list`.
#[derive(Default)]
pub(super) struct ListBuilder {
    data: Vec<u8>,
    spans: Vec<wit::Span>,
}

impl ListBuilder {
    pub(super) fn push(&mut self, b: &[u8]) {
        self.spans.push(wit::Span {
            offset: self.data.len() as u32,
            len: b.len() as u32,
        });
        self.data.extend_from_slice(b);
    }

    pub(super) fn finish(self) -> wit_state::ByteList {
        wit_state::ByteList {
            data: self.data,
            spans: self.spans,
        }
    }
}

pub(super) fn items(list: &wit_state::ByteList) -> wasmtime::Result<Vec<&[u8]>> {
    list.spans
        .iter()
        .map(|s| {
            checked_span(*s, list.data.len())
                .map(|s| &list.data[s.range()])
                .map_err(wasmtime::Error::msg)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_state_survives_its_snapshot_and_its_digest_tells_states_apart() {
        let mut a = BroadcastStates::default();
        let rules = a.declare("rules".into());
        assert_eq!(a.declare("rules".into()), rules);
        let other = a.declare("other".into());
        a.map(rules)
            .unwrap()
            .insert(b"\"FR\"".to_vec(), b"500".to_vec());
        a.map(other).unwrap().insert(vec![0, 255], vec![]);
        // Restored into a module that declares the same states, in another
        // order: the same entries, the same digest.
        let mut b = BroadcastStates::default();
        b.declare("other".into());
        b.declare("rules".into());
        b.restore(&a.to_json(), false).unwrap();
        assert_eq!(b.digest(), a.digest());
        assert_eq!(b.maps[1], a.maps[0]);
        // One entry apart: another digest; and the same bytes under another
        // state's name are not the same state.
        b.maps[1].insert(b"\"DE\"".to_vec(), b"300".to_vec());
        assert_ne!(b.digest(), a.digest());
        let mut c = BroadcastStates::default();
        c.declare("rules".into());
        c.declare("other".into());
        c.maps[0] = a.maps[1].clone();
        c.maps[1] = a.maps[0].clone();
        assert_ne!(c.digest(), a.digest());
        // A state the module no longer declares: refused unless dropped.
        let mut d = BroadcastStates::default();
        d.declare("rules".into());
        let e = d.restore(&a.to_json(), false).unwrap_err();
        assert!(e.contains("broadcast state `other`"), "{e}");
        d.restore(&a.to_json(), true).unwrap();
        assert_eq!(d.maps[0], a.maps[0]);
        assert!(d.map(7).is_err());
    }
}
