//! [`KeyedProcess`]: Flink's `KeyedProcessFunction` — records in, records
//! out, with keyed state, timers and side outputs — and the loop that runs it.
//!
//! The host sends a batch of records together with everything the batch
//! needs: the distinct keys, each record's key and watermark, the timers that
//! may fire, and the current value of every value state for every key. This
//! module replays that call as the sequence of events it stands for (for each
//! record: the timers the record's watermark passes, then the record; then
//! the timers the last watermark passes) and calls the operator once per
//! event. Value-state reads and writes and timer changes stay in guest memory
//! during the call and go back to the host in its result; list and map states
//! are host calls (see [`crate::state`]).

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde::Serialize;

use crate::batch::{
    Batch, BatchBuilder, ByteList, Mark, RecordError, RowKind, Span, slice, to_u32,
};
use crate::bindings::process::sluice::operator::keyed::{
    KeyedInput, KeyedOutput, TimeDomain, Timer as WitTimer, TimerChange, ValueWrite,
};
use crate::state::{self, Declared};
use crate::{Config, Error, Record};

/// A span meaning "no value" in `keyed-input.values`.
const ABSENT: u32 = u32::MAX;
/// The origin of records emitted by a timer.
const NO_ORIGIN: u32 = u32::MAX;

/// A keyed process function.
///
/// ```
/// use sluice_guest::{Config, Context, Error, KeyedProcess, Record, Setup, Timer, ValueState};
///
/// /// Counts records per key and emits the count 10 s (event time) after
/// /// the key's last record.
/// struct CountThenReport {
///     count: ValueState<u64>,
///     timer: ValueState<i64>,
/// }
///
/// impl KeyedProcess for CountThenReport {
///     fn open(_config: Config, setup: &mut Setup) -> Result<Self, Error> {
///         Ok(CountThenReport { count: setup.value_state("count")?, timer: setup.value_state("timer")? })
///     }
///
///     fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
///         let ts = record.timestamp().ok_or("record without event time")?;
///         let n = self.count.get(ctx)?.unwrap_or(0);
///         self.count.set(ctx, &(n + 1))?;
///         if let Some(old) = self.timer.get(ctx)? {
///             ctx.delete_event_time_timer(old);
///         }
///         ctx.register_event_time_timer(ts + 10_000);
///         self.timer.set(ctx, &(ts + 10_000))
///     }
///
///     fn on_timer(&mut self, _timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
///         let n = self.count.get(ctx)?.unwrap_or(0);
///         ctx.emit_json(&serde_json::json!({ "count": n }))?;
///         self.count.clear(ctx);
///         self.timer.clear(ctx);
///         Ok(())
///     }
/// }
///
/// sluice_guest::export_process!(CountThenReport);
/// ```
///
/// Each call of `process` or `on_timer` is scoped to one key: the record's or
/// the timer's. State handles read and write that key's state, timers are
/// registered for that key, and emitted records carry that key.
///
/// Returning an `Err` from `process` sends the input record to the dead-letter
/// sink; what the call emitted, the value states it wrote and the timers it
/// changed are undone (list and map writes are not: they went to the host
/// already). An `Err` from `on_timer` stops the job.
pub trait KeyedProcess: Sized + 'static {
    /// Builds the operator and declares its states and side outputs, once per
    /// instance.
    fn open(config: Config, setup: &mut Setup) -> Result<Self, Error>;

    /// Handles one record of the current key.
    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error>;

    /// A timer of the current key fired.
    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        let _ = (timer, ctx);
        Ok(())
    }
}

/// A keyed co-process function (Flink's `KeyedCoProcessFunction`): two
/// inputs, `left` and `right` in the pipeline spec, each keyed by its own
/// `key_by`, whose records of one key share that key's state and timers.
///
/// ```
/// use sluice_guest::{Config, Context, Error, KeyedCoProcess, Record, Setup, ValueState};
///
/// /// Emits each payment with the amount of its order, whichever came first.
/// struct PaidOrders {
///     order: ValueState<f64>,
///     payments: ValueState<Vec<String>>,
/// }
///
/// impl KeyedCoProcess for PaidOrders {
///     fn open(_config: Config, setup: &mut Setup) -> Result<Self, Error> {
///         Ok(PaidOrders { order: setup.value_state("order")?, payments: setup.value_state("payments")? })
///     }
///
///     fn process_left(&mut self, order: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
///         let amount: f64 = order.field("amount")?.ok_or("an order without an amount")?;
///         for p in self.payments.get(ctx)?.unwrap_or_default() {
///             ctx.emit_json(&serde_json::json!({ "payment": p, "amount": amount }))?;
///         }
///         self.payments.clear(ctx);
///         self.order.set(ctx, &amount)
///     }
///
///     fn process_right(&mut self, payment: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
///         let id: String = payment.field("payment_id")?.ok_or("a payment without an id")?;
///         match self.order.get(ctx)? {
///             Some(amount) => ctx.emit_json(&serde_json::json!({ "payment": id, "amount": amount })),
///             None => {
///                 let mut waiting = self.payments.get(ctx)?.unwrap_or_default();
///                 waiting.push(id);
///                 self.payments.set(ctx, &waiting)
///             }
///         }
///     }
/// }
///
/// sluice_guest::export_co_process!(PaidOrders);
/// ```
///
/// Records and timers are handled one at a time, in the order the host
/// received them, each scoped to its key as in [`KeyedProcess`]; errors
/// behave as there.
pub trait KeyedCoProcess: Sized + 'static {
    /// Builds the operator and declares its states and side outputs, once per
    /// instance.
    fn open(config: Config, setup: &mut Setup) -> Result<Self, Error>;

    /// Handles one record of the left input.
    fn process_left(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error>;

    /// Handles one record of the right input.
    fn process_right(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error>;

    /// A timer of the current key fired.
    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        let _ = (timer, ctx);
        Ok(())
    }
}

/// What runs a keyed call: how a record of input `input` and a fired timer
/// reach the operator. One per keyed world.
#[doc(hidden)]
pub trait KeyedFunction: Sized + 'static {
    fn open(config: Config, setup: &mut Setup) -> Result<Self, Error>;
    fn record(
        &mut self,
        input: u8,
        record: &Record<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), Error>;
    fn timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error>;
}

/// A [`KeyedProcess`] as a [`KeyedFunction`].
#[doc(hidden)]
pub struct One<T>(pub T);

impl<T: KeyedProcess> KeyedFunction for One<T> {
    fn open(config: Config, setup: &mut Setup) -> Result<Self, Error> {
        T::open(config, setup).map(One)
    }

    fn record(&mut self, _: u8, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
        self.0.process(record, ctx)
    }

    fn timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        self.0.on_timer(timer, ctx)
    }
}

/// A [`KeyedCoProcess`] as a [`KeyedFunction`].
#[doc(hidden)]
pub struct Two<T>(pub T);

impl<T: KeyedCoProcess> KeyedFunction for Two<T> {
    fn open(config: Config, setup: &mut Setup) -> Result<Self, Error> {
        T::open(config, setup).map(Two)
    }

    fn record(
        &mut self,
        input: u8,
        record: &Record<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), Error> {
        match input {
            0 => self.0.process_left(record, ctx),
            _ => self.0.process_right(record, ctx),
        }
    }

    fn timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        self.0.on_timer(timer, ctx)
    }
}

/// A fired timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    /// The time it was registered for (epoch milliseconds).
    pub time: i64,
    pub domain: Domain,
}

/// Event time (fires when the watermark reaches it) or processing time
/// (fires when the host's clock does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    EventTime,
    ProcessingTime,
}

/// What `open` declares: states and side outputs.
pub struct Setup {
    pub(crate) value_states: u32,
}

impl Setup {
    pub(crate) fn new() -> Setup {
        Setup { value_states: 0 }
    }

    /// A value state: one `T` per key. An `i64` or `u64` crosses the
    /// boundary as its 8 bytes (the host still stores it as JSON text).
    pub fn value_state<T: 'static>(&mut self, name: &str) -> Result<ValueState<T>, Error> {
        self.value_state_with(name, StateOptions::default())
    }

    /// A value state whose entries expire `ttl` (processing time) after their
    /// last write.
    pub fn value_state_with_ttl<T: 'static>(
        &mut self,
        name: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<ValueState<T>, Error> {
        self.value_state_with(
            name,
            StateOptions {
                ttl,
                ..StateOptions::default()
            },
        )
    }

    /// A value state with a TTL or a layout version.
    pub fn value_state_with<T: 'static>(
        &mut self,
        name: &str,
        options: StateOptions,
    ) -> Result<ValueState<T>, Error> {
        let handle = state::declare(name, state::Kind::Value, options.ttl, options.version)?;
        let encoding = state::Encoding::of::<T>();
        encoding.declare(handle)?;
        let slot = self.value_states;
        self.value_states += 1;
        Ok(ValueState {
            handle,
            slot,
            encoding,
            _t: std::marker::PhantomData,
        })
    }

    /// A list state: a list of `T` per key.
    pub fn list_state<T>(&mut self, name: &str) -> Result<crate::ListState<T>, Error> {
        self.list_state_with(name, StateOptions::default())
    }

    /// A list state whose lists expire `ttl` after their last write.
    pub fn list_state_with_ttl<T>(
        &mut self,
        name: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<crate::ListState<T>, Error> {
        self.list_state_with(
            name,
            StateOptions {
                ttl,
                ..StateOptions::default()
            },
        )
    }

    /// A list state with a TTL or a layout version.
    pub fn list_state_with<T>(
        &mut self,
        name: &str,
        options: StateOptions,
    ) -> Result<crate::ListState<T>, Error> {
        let handle = state::declare(name, state::Kind::List, options.ttl, options.version)?;
        Ok(crate::ListState::new(Declared(handle)))
    }

    /// A map state: a map from `K` to `V` per key.
    pub fn map_state<K, V>(&mut self, name: &str) -> Result<crate::MapState<K, V>, Error> {
        self.map_state_with(name, StateOptions::default())
    }

    /// A map state whose entries expire `ttl` after their last write.
    pub fn map_state_with_ttl<K, V>(
        &mut self,
        name: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<crate::MapState<K, V>, Error> {
        self.map_state_with(
            name,
            StateOptions {
                ttl,
                ..StateOptions::default()
            },
        )
    }

    /// A map state with a TTL or a layout version.
    pub fn map_state_with<K, V>(
        &mut self,
        name: &str,
        options: StateOptions,
    ) -> Result<crate::MapState<K, V>, Error> {
        let handle = state::declare(name, state::Kind::Map, options.ttl, options.version)?;
        Ok(crate::MapState::new(Declared(handle)))
    }

    /// A side output, routed in the pipeline spec as `operator-uid.name`.
    pub fn side_output(&mut self, name: &str) -> SideOutput {
        SideOutput(state::side_output(name))
    }
}

/// How a state is declared beyond its name and kind.
///
/// `version` numbers the layout of the state's bytes (the JSON shape of its
/// values, with this SDK). Snapshots record it; when a new module declares
/// a state with another version than the snapshot it restores from holds,
/// the host refuses to start unless the module exports the migration hook
/// ([`MigrateState`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateOptions {
    /// Entries expire this long (processing time) after their last write.
    pub ttl: Option<std::time::Duration>,
    /// The layout version, from 1.
    pub version: u32,
}

impl Default for StateOptions {
    fn default() -> Self {
        StateOptions {
            ttl: None,
            version: 1,
        }
    }
}

impl StateOptions {
    /// The default options with layout `version`.
    pub fn version(version: u32) -> Self {
        StateOptions {
            version,
            ..StateOptions::default()
        }
    }
}

/// The state-migration hook of a keyed process function: converts state
/// that an older module wrote (Flink's state schema evolution). Export it
/// with `sluice_guest::export_process!(T, migrate)`.
///
/// The host calls it after `open`, before the first record, for every item
/// of every inherited state whose version in the snapshot differs from the
/// version `open` declares: each value of a value state, each element of a
/// list state, each value of a map state (map keys stay as they are). Items
/// are the bytes the old module stored: JSON text, for states of this SDK.
pub trait MigrateState: KeyedProcess {
    /// The item in the layout this module declares for `state`.
    fn migrate(&self, state: &str, from_version: u32, item: &[u8]) -> Result<Vec<u8>, Error>;
}

/// A handle to a named side output (Flink's `OutputTag`).
#[derive(Clone, Copy, Debug)]
pub struct SideOutput(u32);

impl SideOutput {
    pub(crate) fn port(self) -> u32 {
        self.0
    }
}

/// A value state handle; read and write it through a [`Context`].
pub struct ValueState<T> {
    handle: u32,
    slot: u32,
    encoding: state::Encoding,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: Serialize + serde::de::DeserializeOwned + 'static> ValueState<T> {
    /// The current key's value, or `None`.
    pub fn get(&self, ctx: &Context<'_>) -> Result<Option<T>, Error> {
        let Some(bytes) = ctx.call.value(ctx.key, self.slot) else {
            return Ok(None);
        };
        if self.encoding != state::Encoding::Json {
            return self.encoding.read(bytes).map(Some).ok_or_else(|| {
                Error::new(format!(
                    "value state #{} holds a value that is not {}",
                    self.handle,
                    self.encoding.describe()
                ))
            });
        }
        crate::json::from_slice(bytes).map(Some).map_err(|e| {
            Error::new(format!(
                "value state #{} holds a value this operator cannot read: {e}",
                self.handle
            ))
        })
    }

    /// Sets the current key's value.
    pub fn set(&self, ctx: &mut Context<'_>, value: &T) -> Result<(), Error> {
        match self.encoding.write(value) {
            Some(word) => {
                ctx.call.write_word(ctx.key, self.slot, self.handle, word);
                Ok(())
            }
            None => ctx
                .call
                .write_value(ctx.key, self.slot, self.handle, Some(value)),
        }
    }

    /// Removes the current key's value.
    pub fn clear(&self, ctx: &mut Context<'_>) {
        // `None` never fails to serialize.
        let _ = ctx
            .call
            .write_value::<T>(ctx.key, self.slot, self.handle, None);
    }
}

/// Where the current record or timer is processed: its key, time, state
/// scope, timers and outputs.
pub struct Context<'a> {
    call: &'a mut Call,
    input: &'a KeyedInput,
    key: u32,
    origin: u32,
    /// Timestamp of emitted records.
    timestamp: Option<i64>,
    watermark: i64,
}

impl<'a> Context<'a> {
    /// The current key's bytes (they outlive the context's borrow: an
    /// object being emitted can take them).
    pub fn key(&self) -> &'a [u8] {
        let input: &'a KeyedInput = self.input;
        slice(&input.keys.data, input.keys.spans[self.key as usize])
    }
}

impl Context<'_> {
    /// The current key's index in this call, for the host calls of list and
    /// map states.
    pub(crate) fn key_index(&self) -> u32 {
        self.key
    }

    /// The event-time watermark (`i64::MIN` before the first one).
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// The host's processing time for this call, epoch milliseconds.
    pub fn current_processing_time(&self) -> i64 {
        self.input.processing_time
    }

    /// Registers an event-time timer for the current key; it fires once the
    /// watermark reaches `time`. One timer per key and time: registering it
    /// again does nothing.
    pub fn register_event_time_timer(&mut self, time: i64) {
        self.call
            .change_timer(self.key, time, Domain::EventTime, true);
    }

    /// Deletes an event-time timer of the current key (nothing if none).
    pub fn delete_event_time_timer(&mut self, time: i64) {
        self.call
            .change_timer(self.key, time, Domain::EventTime, false);
    }

    /// Registers a processing-time timer for the current key.
    pub fn register_processing_time_timer(&mut self, time: i64) {
        self.call
            .change_timer(self.key, time, Domain::ProcessingTime, true);
    }

    /// Deletes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, time: i64) {
        self.call
            .change_timer(self.key, time, Domain::ProcessingTime, false);
    }

    /// Emits `value` as JSON to the main output, with the current key and
    /// timestamp (the record's, or the timer's time for event-time timers).
    pub fn emit_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.emit_json_to_port(0, value)
    }

    /// Emits `value` as JSON to a side output.
    pub fn emit_json_to<T: Serialize + ?Sized>(
        &mut self,
        side: SideOutput,
        value: &T,
    ) -> Result<(), Error> {
        self.emit_json_to_port(side.0, value)
    }

    /// Emits a JSON object to the main output, written member by member
    /// without serde (see [`ObjectWriter`](crate::json::ObjectWriter)),
    /// with the current key and timestamp. When `write` fails, nothing is
    /// emitted and its error is returned.
    pub fn emit_object(
        &mut self,
        write: impl FnOnce(&mut crate::json::ObjectWriter<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let start = crate::json::ObjectWriter::append(&mut self.call.out.data, write)?;
        let value = self.call.out.span_since(start);
        self.push(0, value, RowKind::Insert);
        Ok(())
    }

    /// Emits these bytes as the value of a record on the main output.
    pub fn emit_value(&mut self, value: &[u8]) {
        self.emit_value_to_port(0, value);
    }

    /// Emits these bytes to a side output.
    pub fn emit_value_to(&mut self, side: SideOutput, value: &[u8]) {
        self.emit_value_to_port(side.0, value);
    }

    /// Emits `value` as JSON to the main output as a change of kind `kind`
    /// (the other `emit` functions emit inserts): a function that keeps a
    /// result per key retracts the old one with `RowKind::UpdateBefore` and
    /// adds the new one with `RowKind::UpdateAfter`. Only a module whose
    /// section in the spec says `changelog: true` may emit anything but
    /// inserts; the host fails the job otherwise.
    pub fn emit_change<T: Serialize + ?Sized>(
        &mut self,
        kind: RowKind,
        value: &T,
    ) -> Result<(), Error> {
        self.emit_json_with(0, kind, value)
    }

    /// Emits these bytes as the value of a change of kind `kind` on the
    /// main output (see [`emit_change`](Context::emit_change)).
    pub fn emit_change_value(&mut self, kind: RowKind, value: &[u8]) {
        let value = self.call.out.push_bytes(value);
        self.push(0, value, kind);
    }

    fn emit_json_to_port<T: Serialize + ?Sized>(
        &mut self,
        port: u32,
        value: &T,
    ) -> Result<(), Error> {
        self.emit_json_with(port, RowKind::Insert, value)
    }

    fn emit_json_with<T: Serialize + ?Sized>(
        &mut self,
        port: u32,
        kind: RowKind,
        value: &T,
    ) -> Result<(), Error> {
        let value = self.call.out.push_json_bytes(value)?;
        self.push(port, value, kind);
        Ok(())
    }

    fn emit_value_to_port(&mut self, port: u32, value: &[u8]) {
        let value = self.call.out.push_bytes(value);
        self.push(port, value, RowKind::Insert);
    }

    fn push(&mut self, port: u32, value: Span, kind: RowKind) {
        let key = self.input.keys.spans[self.key as usize];
        let key = slice(&self.input.keys.data, key);
        self.call
            .out
            .push_record(Some(key), value, self.timestamp, std::iter::empty(), kind);
        self.call.origins.push(self.origin);
        self.call.ports.push(port);
    }
}

/// A value slot: not touched in this call (read the input), or written.
#[derive(Clone, Copy)]
enum Slot {
    Input,
    /// Written in this call: a span in `value_data`, or cleared.
    Written(Option<Span>),
}

/// What one `process` call accumulates.
struct Call {
    value_states: u32,
    /// The input's value buffer and spans (moved out of the input).
    values: ByteList,
    slots: Vec<Slot>,
    /// Which state handle each slot's writes go to, by slot index mod
    /// `value_states`.
    handles: Vec<u32>,
    value_data: Vec<u8>,
    /// Timers that may still fire in this call: (domain, time, key).
    pending: BTreeSet<(Domain, i64, u32)>,
    /// No pending event-time timer is earlier than this (`i64::MAX`: none
    /// is pending): firing up to a watermark below it looks nothing up,
    /// which is what most records of a call do.
    event_floor: i64,
    end_watermark: i64,
    processing_time: i64,
    changes: Vec<TimerChange>,
    out: BatchBuilder,
    origins: Vec<u32>,
    ports: Vec<u32>,
    /// Undo log of the current record: (slot index, previous slot).
    undo_slots: Vec<(usize, Slot)>,
    /// Undo log of pending-timer edits: (timer, was present).
    undo_timers: Vec<((Domain, i64, u32), bool)>,
}

impl Call {
    fn value(&self, key: u32, slot: u32) -> Option<&[u8]> {
        let i = (key * self.value_states + slot) as usize;
        match self.slots[i] {
            Slot::Input => {
                let span = self.values.spans[i];
                (span.offset != ABSENT).then(|| slice(&self.values.data, span))
            }
            Slot::Written(None) => None,
            Slot::Written(Some(span)) => Some(slice(&self.value_data, span)),
        }
    }

    fn write_value<T: Serialize>(
        &mut self,
        key: u32,
        slot: u32,
        handle: u32,
        value: Option<&T>,
    ) -> Result<(), Error> {
        let new = match value {
            None => None,
            Some(v) => {
                let start = self.value_data.len();
                if let Err(e) = serde_json::to_writer(&mut self.value_data, v) {
                    self.value_data.truncate(start);
                    return Err(e.into());
                }
                Some(Span {
                    offset: to_u32(start),
                    len: to_u32(self.value_data.len() - start),
                })
            }
        };
        self.set_slot(key, slot, handle, new);
        Ok(())
    }

    /// Writes a value of 8 bytes (a state of a fixed encoding).
    fn write_word(&mut self, key: u32, slot: u32, handle: u32, word: [u8; 8]) {
        let offset = to_u32(self.value_data.len());
        self.value_data.extend_from_slice(&word);
        self.set_slot(key, slot, handle, Some(Span { offset, len: 8 }));
    }

    fn set_slot(&mut self, key: u32, slot: u32, handle: u32, new: Option<Span>) {
        let i = (key * self.value_states + slot) as usize;
        self.handles[slot as usize] = handle;
        self.undo_slots.push((i, self.slots[i]));
        self.slots[i] = Slot::Written(new);
    }

    fn change_timer(&mut self, key: u32, time: i64, domain: Domain, registered: bool) {
        let t = (domain, time, key);
        // Pending are timers at or before the call's end: the host's due
        // ones, and those registered during the call that its watermark
        // already passes (processing-time ones wait for the next call).
        // A later timer is never among them: no lookup.
        let (may_fire, due_by) = match domain {
            Domain::EventTime => (time <= self.end_watermark, self.end_watermark),
            Domain::ProcessingTime => (false, self.processing_time),
        };
        let was = time <= due_by && self.pending.contains(&t);
        if registered && may_fire {
            self.pending.insert(t);
            lower_floor(&mut self.event_floor, t);
        } else if !registered && was {
            self.pending.remove(&t);
        }
        self.undo_timers.push((t, was));
        self.changes.push(TimerChange {
            timer: wit_timer(t),
            registered,
        });
    }

    fn begin_record(&mut self) -> (Mark, usize, usize) {
        self.undo_slots.clear();
        self.undo_timers.clear();
        (self.out.mark(), self.origins.len(), self.changes.len())
    }

    fn rollback(&mut self, (mark, origins, changes): (Mark, usize, usize)) {
        self.out.rollback(mark);
        self.origins.truncate(origins);
        self.ports.truncate(origins);
        self.changes.truncate(changes);
        for (i, old) in self.undo_slots.drain(..).rev() {
            self.slots[i] = old;
        }
        for (t, was) in self.undo_timers.drain(..).rev() {
            if was {
                self.pending.insert(t);
                lower_floor(&mut self.event_floor, t);
            } else {
                self.pending.remove(&t);
            }
        }
    }
}

/// Keeps `floor` (a call's `event_floor`) at or below a timer made pending.
fn lower_floor(floor: &mut i64, (domain, time, _): (Domain, i64, u32)) {
    if domain == Domain::EventTime {
        *floor = (*floor).min(time);
    }
}

fn wit_timer((domain, time, key): (Domain, i64, u32)) -> WitTimer {
    WitTimer {
        key,
        time,
        domain: match domain {
            Domain::EventTime => TimeDomain::EventTime,
            Domain::ProcessingTime => TimeDomain::ProcessingTime,
        },
    }
}

fn domain(d: TimeDomain) -> Domain {
    match d {
        TimeDomain::EventTime => Domain::EventTime,
        TimeDomain::ProcessingTime => Domain::ProcessingTime,
    }
}

/// Runs one call: timers and records in the order the host's contract says.
pub(crate) fn run<T: KeyedFunction>(
    op: &mut T,
    value_states: u32,
    input: &Batch,
    mut context: KeyedInput,
) -> Result<KeyedOutput, String> {
    let keys = context.keys.spans.len() as u32;
    let slots = (keys * value_states) as usize;
    if context.values.spans.len() != slots {
        return Err(format!(
            "malformed call from the host: {} values for {keys} keys and {value_states} value states",
            context.values.spans.len()
        ));
    }
    if context.record_keys.len() != input.records.len()
        || context.watermarks.len() != input.records.len()
        || context.record_inputs.len() != input.records.len()
    {
        return Err(
            "malformed call from the host: record keys, inputs or watermarks do not match the batch"
                .into(),
        );
    }
    let values = std::mem::replace(
        &mut context.values,
        ByteList {
            data: Vec::new(),
            spans: Vec::new(),
        },
    );
    let mut call = Call {
        value_states,
        values,
        slots: vec![Slot::Input; slots],
        handles: vec![0; value_states as usize],
        value_data: Vec::new(),
        pending: context
            .timers
            .iter()
            .map(|t| (domain(t.domain), t.time, t.key))
            .collect(),
        event_floor: i64::MIN,
        end_watermark: context.end_watermark,
        processing_time: context.processing_time,
        changes: Vec::new(),
        out: BatchBuilder::default(),
        origins: Vec::with_capacity(input.records.len()),
        ports: Vec::with_capacity(input.records.len()),
        undo_slots: Vec::new(),
        undo_timers: Vec::new(),
    };
    let mut errors = Vec::new();
    let first_watermark = context.watermarks.first().copied();
    let now = call.processing_time;
    fire(
        op,
        &mut call,
        &context,
        Domain::ProcessingTime,
        now,
        first_watermark.unwrap_or(context.end_watermark),
    )?;
    for i in 0..input.records.len() {
        let wm = context.watermarks[i];
        fire(op, &mut call, &context, Domain::EventTime, wm, wm)?;
        let record = Record::from_batch(input, i);
        let key = context.record_keys[i];
        if key >= keys {
            return Err(format!(
                "malformed call from the host: record {i} has key {key} of {keys}"
            ));
        }
        let mark = call.begin_record();
        let mut ctx = Context {
            call: &mut call,
            input: &context,
            key,
            origin: to_u32(i),
            timestamp: record.timestamp(),
            watermark: wm,
        };
        if let Err(e) = op.record(context.record_inputs[i], &record, &mut ctx) {
            call.rollback(mark);
            errors.push(RecordError {
                index: to_u32(i),
                message: e.to_string(),
            });
        }
    }
    let end = context.end_watermark;
    fire(op, &mut call, &context, Domain::EventTime, end, end)?;
    let mut value_writes = Vec::new();
    for (i, slot) in call.slots.iter().enumerate() {
        if let Slot::Written(value) = *slot {
            let v = i as u32 % value_states;
            value_writes.push(ValueWrite {
                state: call.handles[v as usize],
                key: i as u32 / value_states,
                value,
            });
        }
    }
    Ok(KeyedOutput {
        records: call.out.finish(),
        origins: call.origins,
        ports: call.ports,
        timer_changes: call.changes,
        value_data: call.value_data,
        value_writes,
        errors,
    })
}

/// Fires the pending timers of `domain` up to `until`, in (time, key) order,
/// including ones registered while firing.
fn fire<T: KeyedFunction>(
    op: &mut T,
    call: &mut Call,
    input: &KeyedInput,
    domain: Domain,
    until: i64,
    watermark: i64,
) -> Result<(), String> {
    let event_time = domain == Domain::EventTime;
    if event_time && until < call.event_floor {
        return Ok(());
    }
    while !call.pending.is_empty() {
        let next = call.pending.range((domain, i64::MIN, 0)..).next();
        let Some(&t) = next.filter(|&&(d, time, _)| d == domain && time <= until) else {
            if event_time {
                // Exact again: the earliest pending one, if any.
                call.event_floor = match next {
                    Some(&(Domain::EventTime, time, _)) => time,
                    _ => i64::MAX,
                };
            }
            return Ok(());
        };
        let (_, time, key) = t;
        call.pending.remove(&t);
        call.changes.push(TimerChange {
            timer: wit_timer(t),
            registered: false,
        });
        let mut ctx = Context {
            call: &mut *call,
            input,
            key,
            origin: NO_ORIGIN,
            timestamp: (domain == Domain::EventTime).then_some(time),
            watermark,
        };
        op.timer(Timer { time, domain }, &mut ctx)
            .map_err(|e| format!("on_timer({time}) failed: {e}"))?;
    }
    Ok(())
}

/// One instance's keyed process function, behind `export_process!`.
#[doc(hidden)]
pub struct ProcessState<T> {
    inner: RefCell<Option<(T, u32)>>,
}

impl<T: KeyedFunction> ProcessState<T> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        ProcessState {
            inner: RefCell::new(None),
        }
    }

    /// The `open` export.
    pub fn open(&self, config: String) -> Result<(), String> {
        let mut inner = self.inner.borrow_mut();
        *inner = None;
        let mut setup = Setup::new();
        let op = T::open(Config::new(config), &mut setup).map_err(|e| e.to_string())?;
        *inner = Some((op, setup.value_states));
        Ok(())
    }

    /// The `process` export. A broken call (never opened, malformed input,
    /// a failing timer) traps: the host then fails the job with the message.
    pub fn process(&self, input: Batch, context: KeyedInput) -> KeyedOutput {
        let mut inner = self.inner.borrow_mut();
        let Some((op, value_states)) = inner.as_mut() else {
            panic!("{}", crate::transform::NOT_OPENED);
        };
        match run(op, *value_states, &input, context) {
            Ok(out) => out,
            Err(message) => panic!("{message}"),
        }
    }

    /// Runs `f` on the opened operator; a broken call traps.
    pub(crate) fn with_op<R>(&self, f: impl FnOnce(&mut T) -> Result<R, String>) -> R {
        let mut inner = self.inner.borrow_mut();
        let Some((op, _)) = inner.as_mut() else {
            panic!("{}", crate::transform::NOT_OPENED);
        };
        match f(op) {
            Ok(out) => out,
            Err(message) => panic!("{message}"),
        }
    }
}

impl<T: MigrateState> ProcessState<One<T>> {
    /// The `migrate` export.
    pub fn migrate(
        &self,
        state: &str,
        from_version: u32,
        items: ByteList,
    ) -> Result<ByteList, String> {
        let inner = self.inner.borrow();
        let Some((op, _)) = inner.as_ref() else {
            return Err(crate::transform::NOT_OPENED.to_owned());
        };
        let mut out =
            crate::batch::ByteListBuilder::with_capacity(items.spans.len(), items.data.len());
        for (i, s) in items.spans.iter().enumerate() {
            let item =
                op.0.migrate(state, from_version, slice(&items.data, *s))
                    .map_err(|e| format!("item {i}: {e}"))?;
            out.push_bytes(&item);
        }
        Ok(out.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::values;

    /// Sums values per key and emits the sum at a timer 10 ms after the first
    /// record; "bad" fails after writing.
    struct Summer {
        sum: ValueState<i64>,
        late: SideOutput,
    }

    impl KeyedProcess for Summer {
        fn open(_config: Config, setup: &mut Setup) -> Result<Self, Error> {
            Ok(Summer {
                sum: setup.value_state("sum")?,
                late: setup.side_output("late"),
            })
        }

        fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
            if record.kind() == RowKind::Delete {
                let old = self.sum.get(ctx)?.unwrap_or(0);
                self.sum.clear(ctx);
                return ctx.emit_change(RowKind::Delete, &serde_json::json!({"sum": old}));
            }
            let ts = record.timestamp().unwrap_or(0);
            if ts <= ctx.current_watermark() {
                ctx.emit_value_to(self.late, record.value());
                return Ok(());
            }
            let old = self.sum.get(ctx)?;
            let v: i64 = record.value_str()?.parse().unwrap_or(1);
            self.sum.set(ctx, &(old.unwrap_or(0) + v))?;
            if old.is_none() {
                ctx.register_event_time_timer(ts + 10);
            }
            if record.value_str()? == "bad" {
                ctx.emit_value(b"never");
                return Err("bad record".into());
            }
            Ok(())
        }

        fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
            let sum = self.sum.get(ctx)?.unwrap_or(0);
            ctx.emit_json(&serde_json::json!({"sum": sum, "at": timer.time}))?;
            self.sum.clear(ctx);
            Ok(())
        }
    }

    fn keys(items: &[&str]) -> ByteList {
        crate::batch::tests::byte_list(items)
    }

    fn input(record_keys: Vec<u32>, watermarks: Vec<i64>, end: i64, nkeys: usize) -> KeyedInput {
        let values = ByteList {
            data: Vec::new(),
            spans: vec![
                Span {
                    offset: ABSENT,
                    len: 0
                };
                nkeys
            ],
        };
        KeyedInput {
            keys: keys(&["a", "b"][..nkeys]),
            record_inputs: vec![0; record_keys.len()],
            record_keys,
            watermarks,
            end_watermark: end,
            processing_time: 0,
            timers: Vec::new(),
            values,
        }
    }

    fn with_ts(mut b: Batch, ts: &[i64]) -> Batch {
        for (m, t) in b.records.iter_mut().zip(ts) {
            m.timestamp = Some(*t);
        }
        b
    }

    fn open() -> One<Summer> {
        One::open(Config::new("null"), &mut Setup::new()).unwrap()
    }

    fn values_of(out: &KeyedOutput) -> Vec<String> {
        out.records
            .records
            .iter()
            .map(|m| String::from_utf8(slice(&out.records.data, m.value).to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn timers_fire_between_records_as_the_watermark_passes_them() {
        let mut op = open();
        // Key a at 100 (timer 110), key b at 105 (timer 115); the watermark
        // reaches 112 before the third record: a's timer fires before it.
        let b = with_ts(values(&["1", "2", "4"]), &[100, 105, 120]);
        let ctx = input(vec![0, 1, 0], vec![50, 60, 112], 200, 2);
        let out = run(&mut op, 1, &b, ctx).unwrap();
        assert_eq!(
            values_of(&out),
            [
                r#"{"at":110,"sum":1}"#,
                r#"{"at":115,"sum":2}"#,
                r#"{"at":130,"sum":4}"#
            ]
        );
        assert_eq!(out.origins, [NO_ORIGIN; 3]);
        // Event time of a timer's output is the timer's time.
        assert_eq!(out.records.records[0].timestamp, Some(110));
        // Every registered timer fired within the call: register + delete each.
        let net: Vec<(i64, bool)> = out
            .timer_changes
            .iter()
            .map(|c| (c.timer.time, c.registered))
            .collect();
        assert_eq!(
            net,
            [
                (110, true),
                (115, true),
                (110, false),
                (120 + 10, true),
                (115, false),
                (130, false)
            ]
        );
        // Both keys' sums were cleared by their timers.
        assert_eq!(out.value_writes.len(), 2);
        assert!(out.value_writes.iter().all(|w| w.value.is_none()));
    }

    #[test]
    fn a_timer_registered_before_the_next_pending_one_fires_first() {
        let mut op = open();
        // a registers 110; the watermark 60 finds it the next pending timer;
        // then b registers 105, earlier: the watermark 107 fires it before
        // b's next record, which so starts a new sum.
        let b = with_ts(values(&["1", "2", "4"]), &[100, 95, 120]);
        let ctx = input(vec![0, 1, 1], vec![50, 60, 107], 200, 2);
        let out = run(&mut op, 1, &b, ctx).unwrap();
        assert_eq!(
            values_of(&out),
            [
                r#"{"at":105,"sum":2}"#,
                r#"{"at":110,"sum":1}"#,
                r#"{"at":130,"sum":4}"#
            ]
        );
    }

    #[test]
    fn a_function_sees_each_record_kind_and_emits_changes() {
        let mut op = open();
        let mut b = with_ts(values(&["5", "x"]), &[100, 101]);
        b.records[1].kind = RowKind::Delete;
        let ctx = input(vec![0, 0], vec![50, 50], 50, 1);
        let out = run(&mut op, 1, &b, ctx).unwrap();
        assert_eq!(values_of(&out), [r#"{"sum":5}"#]);
        assert_eq!(out.records.records[0].kind, RowKind::Delete);
        assert_eq!(out.origins, [1]);
    }

    #[test]
    fn late_records_go_to_the_side_output_and_failures_are_undone() {
        let mut op = open();
        let b = with_ts(values(&["7", "bad", "3"]), &[10, 100, 100]);
        let ctx = input(vec![0, 1, 1], vec![50, 50, 50], 60, 2);
        let out = run(&mut op, 1, &b, ctx).unwrap();
        assert_eq!(values_of(&out), ["7"]);
        assert_eq!(out.ports, [op.0.late.0]);
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].index, 1);
        // The failed record's write and timer were undone: the sum is 3 (an
        // i64: its 8 bytes) and one timer was registered, by the third record.
        assert_eq!(out.value_writes.len(), 1);
        let w = &out.value_writes[0];
        assert_eq!(
            (w.key, slice(&out.value_data, w.value.unwrap())),
            (1, &3i64.to_le_bytes()[..])
        );
        assert_eq!(out.timer_changes.len(), 1);
        assert_eq!(out.timer_changes[0].timer.time, 110);
    }

    /// Emits the domain and time of every timer; registers a processing-time
    /// timer for each record.
    struct ProcTimers;

    impl KeyedProcess for ProcTimers {
        fn open(_config: Config, _setup: &mut Setup) -> Result<Self, Error> {
            Ok(ProcTimers)
        }
        fn process(&mut self, _record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
            let at = ctx.current_processing_time() + 10;
            ctx.register_processing_time_timer(at);
            Ok(())
        }
        fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
            ctx.emit_json(
                &serde_json::json!({"domain": format!("{:?}", timer.domain), "at": timer.time}),
            )
        }
    }

    #[test]
    fn processing_time_timers_fire_at_the_start_of_a_call_and_never_within_it() {
        let b = with_ts(values(&["x"]), &[1]);
        let mut ctx = input(vec![0], vec![0], 0, 1);
        ctx.values.spans.clear();
        ctx.processing_time = 500;
        ctx.timers = vec![WitTimer {
            key: 0,
            time: 490,
            domain: TimeDomain::ProcessingTime,
        }];
        let out = run(&mut One(ProcTimers), 0, &b, ctx).unwrap();
        // The due timer fired first (its output has no event time); the one
        // the record registered (at 510) waits for a later call.
        assert_eq!(values_of(&out), [r#"{"at":490,"domain":"ProcessingTime"}"#]);
        assert_eq!(out.records.records[0].timestamp, None);
        let changes: Vec<(i64, bool)> = out
            .timer_changes
            .iter()
            .map(|c| (c.timer.time, c.registered))
            .collect();
        assert_eq!(changes, [(490, false), (510, true)]);
    }

    #[test]
    fn values_from_the_host_are_read_and_timers_from_the_host_fire() {
        let mut op = open();
        let b = with_ts(values(&["5"]), &[300]);
        let mut ctx = input(vec![0], vec![250], 250, 1);
        ctx.values = word_values(&[Some(40)]);
        ctx.timers = vec![WitTimer {
            key: 0,
            time: 240,
            domain: TimeDomain::EventTime,
        }];
        let out = run(&mut op, 1, &b, ctx).unwrap();
        // The host's timer fires first (sum 40, cleared), then the record
        // starts a new sum of 5 with a new timer.
        assert_eq!(values_of(&out), [r#"{"at":240,"sum":40}"#]);
        let w = &out.value_writes[0];
        assert_eq!(slice(&out.value_data, w.value.unwrap()), 5i64.to_le_bytes());
    }

    /// Values of an i64 state as the host lowers them: 8 bytes each, or
    /// (`None`) the empty span of a stored value that is not an integer.
    fn word_values(values: &[Option<i64>]) -> ByteList {
        let mut data = Vec::new();
        let spans = values
            .iter()
            .map(|v| match v {
                Some(v) => {
                    data.extend_from_slice(&v.to_le_bytes());
                    Span {
                        offset: data.len() as u32 - 8,
                        len: 8,
                    }
                }
                None => Span { offset: 0, len: 0 },
            })
            .collect();
        ByteList { data, spans }
    }

    #[test]
    fn an_integer_state_crosses_as_8_bytes_and_any_other_value_is_a_record_error() {
        assert_eq!(state::Encoding::of::<i64>(), state::Encoding::S64);
        assert_eq!(state::Encoding::of::<u64>(), state::Encoding::U64);
        assert_eq!(state::Encoding::of::<i32>(), state::Encoding::Json);
        assert_eq!(state::Encoding::of::<String>(), state::Encoding::Json);
        let mut op = open();
        // Key a's stored value does not convert (the host's empty span);
        // key b's is -2, to which its record adds 7.
        let b = with_ts(values(&["1", "7"]), &[300, 300]);
        let mut ctx = input(vec![0, 1], vec![250, 250], 250, 2);
        ctx.values = word_values(&[None, Some(-2)]);
        let out = run(&mut op, 1, &b, ctx).unwrap();
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].index, 0);
        assert!(
            out.errors[0].message.contains(
                "value state #0 holds a value that is not an integer in the range of i64"
            ),
            "{}",
            out.errors[0].message
        );
        assert_eq!(out.value_writes.len(), 1);
        let w = &out.value_writes[0];
        assert_eq!(
            (w.key, slice(&out.value_data, w.value.unwrap())),
            (1, &5i64.to_le_bytes()[..])
        );
    }

    /// Left records add to the key's sum, right records emit it.
    struct CoSum {
        sum: ValueState<i64>,
    }

    impl KeyedCoProcess for CoSum {
        fn open(_config: Config, setup: &mut Setup) -> Result<Self, Error> {
            Ok(CoSum {
                sum: setup.value_state("sum")?,
            })
        }

        fn process_left(
            &mut self,
            record: &Record<'_>,
            ctx: &mut Context<'_>,
        ) -> Result<(), Error> {
            let v: i64 = serde_json::from_slice(record.value())?;
            let sum = self.sum.get(ctx)?.unwrap_or(0) + v;
            self.sum.set(ctx, &sum)
        }

        fn process_right(
            &mut self,
            _record: &Record<'_>,
            ctx: &mut Context<'_>,
        ) -> Result<(), Error> {
            let sum = self.sum.get(ctx)?.unwrap_or(0);
            ctx.emit_json(&sum)
        }
    }

    #[test]
    fn a_co_process_call_interleaves_both_inputs_in_arrival_order() {
        let mut op = Two::<CoSum>::open(Config::new("null"), &mut Setup::new()).unwrap();
        // a+1, b+10, a?, a+2, a?, b?: each right record sees the left
        // records of its key that came before it, and only those.
        let b = values(&["1", "10", "0", "2", "0", "0"]);
        let mut ctx = input(vec![0, 1, 0, 0, 0, 1], vec![0; 6], 0, 2);
        ctx.record_inputs = vec![0, 0, 1, 0, 1, 1];
        let out = run(&mut op, 1, &b, ctx).unwrap();
        assert_eq!(values_of(&out), ["1", "3", "10"]);
        // A call whose inputs do not match its records is the host's bug.
        let mut ctx = input(vec![0], vec![0], 0, 2);
        ctx.record_inputs.clear();
        let e = run(&mut op, 1, &values(&["1"]), ctx).unwrap_err();
        assert!(e.contains("inputs"), "{e}");
    }
}
