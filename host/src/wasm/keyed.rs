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
