//! The Rust side of `sluice:operator/keyed`, the WIT interface of keyed
//! calls (process functions and their co- and broadcast kin).
//!
//! `bindgen!` maps the interface here (`with`), as it maps `types`, for the
//! two lists a keyed call returns on nearly every record: `timer-changes`
//! (a process function that moves a timeout deletes one timer and registers
//! another per record) and `value-writes` (one per value state written).
//! wasmtime's derived lift reads a list of records field by field, working
//! out each field's offset again for every element (`next_field32_size`):
//! ~6 % of W5's process thread. Here each element is read from its bytes
//! with the layout below, and the same checks. The other types are derived
//! as `bindgen!` would derive them.
//!
//! Canonical layouts (offsets in bytes):
//!
//! | type | size, alignment | fields |
//! |---|---|---|
//! | `timer` | 24, 8 | `key` at 0, `time` at 8, `domain` (`u8`) at 16 |
//! | `timer-change` | 32, 8 | `timer` at 0, `registered` (`u8`) at 24 |
//! | `value-write` | 20, 4 | `state` at 0, `key` at 4, `value` discriminant (`u8`) at 8, its `span` at 12 |

use std::mem::MaybeUninit;

use wasmtime::Result;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext, LowerContext,
};
use wasmtime::component::{ComponentType, Lift, Lower};

use super::types::{BatchResult, ByteListParam, RecordError, Span, types_only_interface, via_twin};

/// Which clock a timer follows.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum TimeDomain {
    #[component(name = "event-time")]
    EventTime,
    #[component(name = "processing-time")]
    ProcessingTime,
}

/// A timer of a key of the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    /// Index into `keyed-input.keys`.
    pub key: u32,
    pub time: i64,
    pub domain: TimeDomain,
}

/// [`Timer`] as wasmtime derives it.
#[doc(hidden)]
#[derive(ComponentType, Lift, Lower, Clone, Copy)]
#[component(record)]
pub struct TimerTwin {
    #[component(name = "key")]
    key: u32,
    #[component(name = "time")]
    time: i64,
    #[component(name = "domain")]
    domain: TimeDomain,
}

const TIMER_SIZE: usize = 24;

impl Timer {
    fn store(&self, out: &mut [u8; TIMER_SIZE]) {
        *out = [0; TIMER_SIZE];
        out[..4].copy_from_slice(&self.key.to_le_bytes());
        out[8..16].copy_from_slice(&self.time.to_le_bytes());
        out[16] = self.domain as u8;
    }

    /// Read from canonical-ABI bytes, with the check wasmtime's lift makes
    /// (a guest's bytes are not trusted).
    fn load(bytes: &[u8]) -> Result<Timer> {
        let domain = match bytes[16] {
            0 => TimeDomain::EventTime,
            1 => TimeDomain::ProcessingTime,
            d => return Err(wasmtime::format_err!("unexpected enum discriminant {d}")),
        };
        Ok(Timer {
            key: u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")),
            time: i64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
            domain,
        })
    }
}

via_twin!(Timer, TimerTwin, [key, time, domain]);

/// A timer registered, or deleted (or fired), during a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerChange {
    pub timer: Timer,
    /// Registered (true) or deleted or fired (false).
    pub registered: bool,
}

/// [`TimerChange`] as wasmtime derives it.
#[doc(hidden)]
#[derive(ComponentType, Lift, Lower, Clone, Copy)]
#[component(record)]
pub struct TimerChangeTwin {
    #[component(name = "timer")]
    timer: Timer,
    #[component(name = "registered")]
    registered: bool,
}

const TIMER_CHANGE_SIZE: usize = 32;

impl TimerChange {
    fn store(&self, out: &mut [u8; TIMER_CHANGE_SIZE]) {
        *out = [0; TIMER_CHANGE_SIZE];
        self.timer
            .store((&mut out[..TIMER_SIZE]).try_into().expect("timer bytes"));
        out[TIMER_SIZE] = u8::from(self.registered);
    }

    fn load(bytes: &[u8]) -> Result<TimerChange> {
        Ok(TimerChange {
            timer: Timer::load(&bytes[..TIMER_SIZE])?,
            // As wasmtime lifts a `bool`: any byte but 0 is true.
            registered: bytes[TIMER_SIZE] != 0,
        })
    }
}

via_twin!(TimerChange, TimerChangeTwin, [timer, registered]);

/// The new value of one value state of one key of the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueWrite {
    /// A handle from `state.declare`.
    pub state: u32,
    pub key: u32,
    /// The new value in `keyed-output.value-data`, or none to clear.
    pub value: Option<Span>,
}

/// [`ValueWrite`] as wasmtime derives it.
#[doc(hidden)]
#[derive(ComponentType, Lift, Lower, Clone, Copy)]
#[component(record)]
pub struct ValueWriteTwin {
    #[component(name = "state")]
    state: u32,
    #[component(name = "key")]
    key: u32,
    #[component(name = "value")]
    value: Option<Span>,
}

const VALUE_WRITE_SIZE: usize = 20;

impl ValueWrite {
    fn store(&self, out: &mut [u8; VALUE_WRITE_SIZE]) {
        *out = [0; VALUE_WRITE_SIZE];
        out[..4].copy_from_slice(&self.state.to_le_bytes());
        out[4..8].copy_from_slice(&self.key.to_le_bytes());
        if let Some(span) = self.value {
            out[8] = 1;
            span.store((&mut out[12..]).try_into().expect("span bytes"));
        }
    }

    fn load(bytes: &[u8]) -> Result<ValueWrite> {
        let get32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let value = match bytes[8] {
            0 => None,
            1 => Some(Span::read(&bytes[12..])),
            d => return Err(wasmtime::format_err!("invalid option discriminant {d}")),
        };
        Ok(ValueWrite {
            state: get32(0),
            key: get32(4),
            value,
        })
    }
}

via_twin!(ValueWrite, ValueWriteTwin, [state, key, value]);

const _: () = {
    assert!(TIMER_SIZE == <TimerTwin as ComponentType>::SIZE32);
    assert!(8 == <TimerTwin as ComponentType>::ALIGN32);
    assert!(TIMER_CHANGE_SIZE == <TimerChangeTwin as ComponentType>::SIZE32);
    assert!(8 == <TimerChangeTwin as ComponentType>::ALIGN32);
    assert!(VALUE_WRITE_SIZE == <ValueWriteTwin as ComponentType>::SIZE32);
    assert!(4 == <ValueWriteTwin as ComponentType>::ALIGN32);
};

/// What a keyed call is given besides its batch (see the WIT for each
/// field).
#[derive(ComponentType, Lower, Clone, Debug)]
#[component(record)]
pub struct KeyedInput<'a> {
    #[component(name = "keys")]
    pub keys: ByteListParam<'a>,
    #[component(name = "record-keys")]
    pub record_keys: &'a [u32],
    #[component(name = "record-inputs")]
    pub record_inputs: &'a [u8],
    #[component(name = "watermarks")]
    pub watermarks: &'a [i64],
    #[component(name = "end-watermark")]
    pub end_watermark: i64,
    #[component(name = "processing-time")]
    pub processing_time: i64,
    #[component(name = "timers")]
    pub timers: &'a [Timer],
    #[component(name = "values")]
    pub values: ByteListParam<'a>,
}

/// What a keyed call returns (see the WIT for each field).
#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(record)]
pub struct KeyedOutput {
    #[component(name = "records")]
    pub records: BatchResult,
    #[component(name = "origins")]
    pub origins: Vec<u32>,
    #[component(name = "ports")]
    pub ports: Vec<u32>,
    #[component(name = "timer-changes")]
    pub timer_changes: Vec<TimerChange>,
    #[component(name = "value-data")]
    pub value_data: Vec<u8>,
    #[component(name = "value-writes")]
    pub value_writes: Vec<ValueWrite>,
    #[component(name = "errors")]
    pub errors: Vec<RecordError>,
}

pub use super::types::HostWithStore;

types_only_interface!("keyed");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_stored_and_loaded_in_the_canonical_layout() {
        let change = TimerChange {
            timer: Timer {
                key: 7,
                time: -1_700_000_000_123,
                domain: TimeDomain::ProcessingTime,
            },
            registered: true,
        };
        let mut bytes = [0xAA; TIMER_CHANGE_SIZE];
        change.store(&mut bytes);
        let mut want = [0u8; TIMER_CHANGE_SIZE];
        want[..4].copy_from_slice(&7u32.to_le_bytes());
        want[8..16].copy_from_slice(&(-1_700_000_000_123i64).to_le_bytes());
        want[16] = 1;
        want[24] = 1;
        assert_eq!(bytes, want);
        assert_eq!(TimerChange::load(&bytes).unwrap(), change);
        // Any byte but 0 is a true bool; a domain past the enum's is refused.
        bytes[24] = 9;
        assert!(TimerChange::load(&bytes).unwrap().registered);
        bytes[16] = 2;
        let err = TimerChange::load(&bytes).unwrap_err().to_string();
        assert!(err.contains("discriminant 2"), "{err}");

        let write = ValueWrite {
            state: 3,
            key: 4,
            value: Some(Span { offset: 5, len: 6 }),
        };
        let mut bytes = [0xAA; VALUE_WRITE_SIZE];
        write.store(&mut bytes);
        let words: Vec<u32> = bytes
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(words, [3, 4, 1, 5, 6]);
        assert_eq!(ValueWrite::load(&bytes).unwrap(), write);
        let cleared = ValueWrite {
            value: None,
            ..write
        };
        cleared.store(&mut bytes);
        assert_eq!(bytes[8], 0);
        assert_eq!(ValueWrite::load(&bytes).unwrap(), cleared);
        bytes[8] = 2;
        let err = ValueWrite::load(&bytes).unwrap_err().to_string();
        assert!(err.contains("discriminant 2"), "{err}");
    }
}
