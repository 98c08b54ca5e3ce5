//! A Wasm module of the `keyed-process-operator` world as a runtime operator:
//! Flink's `KeyedProcessFunction`, with the state in a [`KeyedState`] and the
//! timers in its timer service (on the heap, or in RocksDB with that
//! backend), owned here (not by the guest instance).
//!
//! Records arrive in small batches, often one per watermark step (a source
//! with per-event watermarks cuts a batch at each advance). Calling the guest
//! once per step would cost a boundary crossing per record, so the operator
//! *buffers*: it collects the records and watermark steps of a whole burst of
//! input (what one channel item or one source poll brings), remembering the
//! watermark each record arrived under, and makes one call when the burst
//! ends ([`Operator::flush`]). The call carries the records, the distinct
//! keys, the timers that may fire, and every value state of those keys; the
//! guest replays the events in order (see `keyed-process` in the WIT), so the
//! result is the same as one call per event. The watermark is passed on only
//! after the call's output, so nothing the call emits is late downstream.
//!
//! During a call, the operator's [`KeyedCall`] sits in the store's data,
//! where the `state` and `output` imports find the key table of the call.

use super::keyed::{KeyedCall, ListBuilder, ValueEncoding};
use super::sandbox::Sandbox;
use super::{Exports, InstanceSettings, Lowering, Module, checked_span, wit};
use super::{Guest, World};
use crate::checkpoint::RestorePoint;
use crate::error::{PlanError, RuntimeError, WasmError};
use crate::runtime::batch::Span;
use crate::runtime::keys::KeySelector;
use crate::runtime::kind::{self, OperatorKind, PlanContext, Planned};
use crate::runtime::operator::FIRST_SIDE_PORT;
use crate::runtime::{
    Batch, ModuleRef, NodeMetrics, Operator, OperatorFactory, Origin, Output, Subtask,
};
use crate::state::timers::Domain;
use crate::state::{Backend, Descriptor, Kind, Row, SlotWrite, StateError};
use crate::time::Clock;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Instant;

pub use super::exports::sluice::operator::keyed_broadcast_process as wit_broadcast;
pub use super::exports::sluice::operator::keyed_co_process as wit_co;
pub use super::exports::sluice::operator::keyed_process as wit_process;
use super::wit_keyed as wk;

/// A span meaning "absent" in `keyed-input.values`.
const ABSENT: u32 = u32::MAX;
/// Records buffered before a call is made even inside a burst.
const MAX_BUFFERED: usize = 16 * 1024;

/// What a process node needs besides its module.
#[derive(Debug)]
pub struct ProcessSettings {
    /// The key of each keyed input, in input order (a broadcast process
    /// function's broadcast input has none).
    pub keys: Vec<KeySelector>,
    pub max_parallelism: u32,
    pub backend: Backend,
}

/// The records and watermark steps of the current burst.
#[derive(Default)]
struct Pending {
    batch: Batch,
    /// Per record: its key's index, its input and the watermark it arrived
    /// under.
    record_keys: Vec<u32>,
    record_inputs: Vec<u8>,
    watermarks: Vec<i64>,
}

impl Pending {
    fn clear(&mut self) {
        self.batch.clear();
        self.record_keys.clear();
        self.record_inputs.clear();
        self.watermarks.clear();
    }
}

/// The exports of a module of one of the keyed worlds.
enum KeyedGuest {
    Process(wit_process::Guest),
    CoProcess(wit_co::Guest),
    BroadcastProcess(wit_broadcast::Guest),
}

type Store = wasmtime::Store<super::sandbox::StoreData>;

impl KeyedGuest {
    async fn open(&self, store: &mut Store, config: &str) -> wasmtime::Result<Result<(), String>> {
        match self {
            KeyedGuest::Process(g) => g.call_open(store, config).await,
            KeyedGuest::CoProcess(g) => g.call_open(store, config).await,
            KeyedGuest::BroadcastProcess(g) => g.call_open(store, config).await,
        }
    }

    async fn process(
        &self,
        store: &mut Store,
        batch: wit::BatchParam<'_>,
        context: wk::KeyedInput<'_>,
    ) -> wasmtime::Result<wk::KeyedOutput> {
        match self {
            KeyedGuest::Process(g) => g.call_process(store, batch, context).await,
            KeyedGuest::CoProcess(g) => g.call_process(store, batch, context).await,
            KeyedGuest::BroadcastProcess(g) => g.call_process(store, batch, context).await,
        }
    }
}

pub struct WasmProcess {
    module: Arc<Module>,
    settings: Arc<InstanceSettings>,
    process: Arc<ProcessSettings>,
    subtask: u32,
    clock: Arc<dyn Clock>,
    /// Side outputs the pipeline reads, by name; the port of `side_ports[i]`
    /// is `FIRST_SIDE_PORT + i`.
    side_ports: Vec<String>,
    live: Option<(Sandbox, KeyedGuest)>,
    call: KeyedCall,
    pending: Pending,
    watermark: i64,
    /// The watermark received but not yet passed on.
    held: Option<i64>,
    /// Guest side-output handle (1-based) → port, or `None` when nothing
    /// reads that side output.
    ports: Vec<Option<usize>>,
    key_buf: Vec<u8>,
    lowering: Lowering,
    // Reused buffers for the call's inputs.
    rows: Vec<Row>,
    row_data: Vec<u8>,
    /// A call's timer changes grouped by key (domain, time, registered),
    /// and where each key's begin.
    timer_changes: (Vec<(Domain, i64, bool)>, Vec<u32>),
    /// When the state's size was last put in the metrics.
    size_measured: Option<Instant>,
    /// Whether the call that just trapped may be made again on a new
    /// instance: it outgrew the memory limit ([`Sandbox::outgrown`]) and
    /// left the state as it was.
    retry_fresh: bool,
}

/// How often a subtask's state size is measured for the metrics.
const SIZE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl WasmProcess {
    pub fn new(
        module: Arc<Module>,
        settings: Arc<InstanceSettings>,
        process: Arc<ProcessSettings>,
        subtask: u32,
        clock: Arc<dyn Clock>,
        side_ports: Vec<String>,
    ) -> WasmProcess {
        WasmProcess {
            module,
            settings,
            process,
            subtask,
            clock,
            side_ports,
            live: None,
            call: KeyedCall::default(),
            pending: Pending::default(),
            watermark: i64::MIN,
            held: None,
            ports: Vec::new(),
            key_buf: Vec::new(),
            lowering: Lowering::default(),
            rows: Vec::new(),
            row_data: Vec::new(),
            timer_changes: Default::default(),
            size_measured: None,
            retry_fresh: false,
        }
    }

    fn uid(&self) -> String {
        self.settings.uid.to_string()
    }

    async fn start(&mut self) -> Result<(), RuntimeError> {
        let uid = self.uid();
        if self.call.state.is_none() {
            let state = self
                .process
                .backend
                .keyed_state(&uid, self.subtask, self.clock.clone())
                .map_err(|error| RuntimeError::State {
                    uid: uid.clone(),
                    error,
                })?;
            self.call.state = Some(state);
        }
        let mut sandbox = Sandbox::new(&self.module, &self.settings).await?;
        let guest = match &self.module.exports {
            Exports::Process(i) => KeyedGuest::Process(sandbox.exports(&uid, |s, n| i.load(s, n))?),
            Exports::CoProcess(i) => {
                KeyedGuest::CoProcess(sandbox.exports(&uid, |s, n| i.load(s, n))?)
            }
            Exports::BroadcastProcess(i) => {
                KeyedGuest::BroadcastProcess(sandbox.exports(&uid, |s, n| i.load(s, n))?)
            }
            _ => unreachable!("module loaded for a keyed world"),
        };
        sandbox.arm();
        // Declarations of a restarted instance must match the first ones:
        // `declare` returns the existing handle for the same name and kind.
        self.call.opening = true;
        self.call.side_outputs.clear();
        self.call.encodings.clear();
        std::mem::swap(&mut sandbox.store.data_mut().keyed, &mut self.call);
        let result = guest.open(&mut sandbox.store, &self.settings.config).await;
        std::mem::swap(&mut sandbox.store.data_mut().keyed, &mut self.call);
        self.call.opening = false;
        sandbox.opened(&uid, result)?;
        self.ports = self
            .call
            .side_outputs
            .iter()
            .map(|name| {
                let port = self.side_ports.iter().position(|s| s == name);
                if port.is_none() {
                    tracing::info!(
                        operator = %uid,
                        "side output `{name}` is not read by the pipeline; its records are dropped"
                    );
                }
                port.map(|p| FIRST_SIDE_PORT + p)
            })
            .collect();
        self.live = Some((sandbox, guest));
        Ok(())
    }

    /// Takes a record of `input` into the current burst (or dead-letters
    /// it if it has no key).
    fn buffer(
        &mut self,
        batch: &Batch,
        i: usize,
        input: usize,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let r = batch.get(i);
        // A keyed input comes through a key-hash router, which gave each
        // record its key (as a window's input does); else the key is read.
        let key = match r.key() {
            Some(k) => k,
            None => {
                let key = &self.process.keys[input];
                if let Err(message) = key.extract(r.value(), &mut self.key_buf) {
                    return out.dead_letter(r, &message);
                }
                &self.key_buf
            }
        };
        let k = self.call.keys.intern(key, self.process.max_parallelism);
        let p = &mut self.pending;
        p.batch
            .push(Some(key), r.value(), r.timestamp(), r.origin());
        // The function sees each record's changelog kind.
        p.batch.set_last_kind(r.kind());
        p.record_keys.push(k);
        p.record_inputs.push(input as u8);
        p.watermarks.push(self.watermark);
        Ok(())
    }

    /// Takes a batch of keyed input `input` into the current burst.
    async fn take(
        &mut self,
        batch: Batch,
        input: usize,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        for i in 0..batch.len() {
            self.buffer(&batch, i, input, out)?;
        }
        if self.pending.batch.len() >= MAX_BUFFERED {
            self.run(out).await?;
        }
        Ok(())
    }

    /// Processes a batch of a broadcast process function's broadcast input,
    /// after the keyed records and the timers that came before it. With a
    /// dead-letter sink, a call that traps is undone (the broadcast state
    /// as it was) and replayed record by record, so that a record that
    /// makes the guest trap costs itself alone.
    async fn broadcast(&mut self, batch: Batch, out: &mut Output) -> Result<(), RuntimeError> {
        self.run(out).await?;
        let started = Instant::now();
        let isolate = out.info().has_dead_letter;
        let result = match self.broadcast_call(&batch, isolate, out).await? {
            Ok(()) => Ok(()),
            Err(description) if isolate && batch.len() > 1 => {
                tracing::warn!(
                    operator = %self.uid(),
                    "trapped on {} broadcast records ({description}); replaying them one by one",
                    batch.len()
                );
                let mut single = Batch::default();
                for i in 0..batch.len() {
                    let r = batch.get(i);
                    single.clear();
                    single.push(r.key(), r.value(), r.timestamp(), r.origin());
                    if let Err(description) = self.broadcast_call(&single, true, out).await? {
                        self.broadcast_trapped(out, r, description)?;
                    }
                }
                Ok(())
            }
            Err(description) if batch.len() == 1 => {
                self.broadcast_trapped(out, batch.get(0), description)
            }
            Err(description) => Err(WasmError::Trap {
                uid: self.uid(),
                at: describe_call(&batch, 0, out).replace(" records", " broadcast records"),
                message: description,
            }
            .into()),
        };
        let metrics = &out.info().metrics;
        NodeMetrics::add(&metrics.wasm_nanos, started.elapsed().as_nanos() as u64);
        result
    }

    /// A broadcast record made the guest trap: a dead letter (from the
    /// first subtask only: every subtask traps on it alike) or the job's
    /// end.
    fn broadcast_trapped(
        &self,
        out: &mut Output,
        r: crate::runtime::RecordRef<'_>,
        description: String,
    ) -> Result<(), RuntimeError> {
        if out.info().has_dead_letter && self.subtask != 0 {
            return Ok(());
        }
        super::trapped_on(out, &self.settings.uid, r, description)
    }

    /// One `process-broadcast` call. A trap is `Ok(Err(its description))`:
    /// the instance is dropped, and with `undoable` the broadcast state is
    /// put back as it was before the call.
    async fn broadcast_call(
        &mut self,
        batch: &Batch,
        undoable: bool,
        out: &mut Output,
    ) -> Result<Result<(), String>, RuntimeError> {
        if self.live.is_none() {
            self.start().await?;
        }
        let saved = undoable.then(|| self.call.broadcast.clone());
        let watermarks = vec![self.watermark; batch.len()];
        let (sandbox, guest) = self.live.as_mut().expect("started");
        let KeyedGuest::BroadcastProcess(guest) = guest else {
            unreachable!("only a keyed broadcast process function has a broadcast input");
        };
        sandbox.arm();
        self.call.access.writable = true;
        std::mem::swap(&mut sandbox.store.data_mut().keyed, &mut self.call);
        let lowered = self.lowering.batch(batch);
        let result = guest
            .call_process_broadcast(&mut sandbox.store, lowered, &watermarks)
            .await;
        std::mem::swap(&mut sandbox.store.data_mut().keyed, &mut self.call);
        self.call.access.writable = false;
        let worn = sandbox.worn();
        match result {
            Ok(o) => {
                if worn {
                    self.live = None;
                }
                let records = o.records.records.iter().map(|m| OutRecord {
                    key: m.key,
                    value: m.value,
                    timestamp: m.timestamp,
                    kind: m.kind,
                });
                // Every subtask fails on a bad broadcast record alike: the
                // first reports it.
                let errors = o.errors.iter().map(|e| (e.index, e.message.as_str()));
                let errors = errors.filter(|_| self.subtask == 0);
                let output = (&o.records.data[..], &o.origins[..], &o.ports[..]);
                self.emit(batch, records, output, errors, out)?;
                Ok(Ok(()))
            }
            Err(e) => {
                let description = sandbox.describe(&e);
                self.live = None;
                if let Some(saved) = saved {
                    self.call.broadcast = saved;
                }
                Ok(Err(description))
            }
        }
    }

    /// Makes one call for the buffered records and the timers that are due.
    /// When the call traps and the pipeline has a dead-letter sink, the call
    /// is undone and replayed record by record ([`WasmProcess::isolate`]),
    /// so that a record that makes the guest trap costs itself alone.
    async fn run(&mut self, out: &mut Output) -> Result<(), RuntimeError> {
        let now = self.clock.now_ms();
        let end = self.watermark;
        if self.pending.batch.is_empty() && !self.timers_due(end, now) {
            self.call.keys.clear();
            return Ok(());
        }
        let started = Instant::now();
        // More due timers than a call's worth fire in calls of their own, in
        // time order, before the first record and after the last (the final
        // watermark makes every held key's timers due at once: one call for
        // them all would cost the guest memory in proportion to the state).
        let first = self.pending.watermarks.first().copied().unwrap_or(end);
        while let Some(t) = self.timer_chunk_end(first)? {
            self.timers_alone(t, now, out).await?;
        }
        let call_end = match self.timer_chunk_end(end)? {
            Some(_) => self.pending.watermarks.last().copied().unwrap_or(end),
            None => end,
        };
        let pending = std::mem::take(&mut self.pending);
        let isolate = out.info().has_dead_letter && !pending.batch.is_empty();
        let end = call_end;
        let mut called = self.call(&pending, end, now, isolate, out).await;
        if matches!(called, Ok(Err(_))) && std::mem::take(&mut self.retry_fresh) {
            tracing::info!(
                operator = %self.uid(),
                "an instance ran out of memory on a call with {} records; making it again on a new instance",
                pending.batch.len()
            );
            // The call's keys again, with the ids the records were given.
            let maxp = self.process.max_parallelism;
            for r in pending.batch.iter() {
                self.call
                    .keys
                    .intern(r.key().expect("buffered with its key"), maxp);
            }
            called = self.call(&pending, end, now, isolate, out).await;
        }
        self.retry_fresh = false;
        let result = match called {
            Ok(Ok(())) => Ok(()),
            Ok(Err((description, timers))) if isolate => {
                tracing::warn!(
                    operator = %self.uid(),
                    "trapped on a call with {} records and {timers} due timers ({description}); replaying them one by one",
                    pending.batch.len()
                );
                self.isolate(&pending, end, now, out).await
            }
            Ok(Err((description, timers))) => Err(WasmError::Trap {
                uid: self.uid(),
                at: describe_call(&pending.batch, timers, out),
                message: description,
            }
            .into()),
            Err(e) => Err(e),
        };
        let mut recycled = pending;
        recycled.clear();
        self.pending = recycled;
        result?;
        let result = self.timers_after(now, out).await;
        let metrics = &out.info().metrics;
        NodeMetrics::add(&metrics.wasm_nanos, started.elapsed().as_nanos() as u64);
        // RocksDB's size estimate walks its files: once a second is enough.
        if self
            .size_measured
            .is_none_or(|t| t.elapsed() >= SIZE_INTERVAL)
            && let Some(state) = &self.call.state
            && let Some(gauge) = metrics.state_bytes.get(self.subtask as usize)
        {
            gauge.store(state.size_bytes(), std::sync::atomic::Ordering::Relaxed);
            self.size_measured = Some(Instant::now());
        }
        result
    }

    /// After a trap (its writes undone, its instance gone): replays the
    /// call's records one per call, each after the timers due by the
    /// watermark it arrived under (on their own, so that a timer's trap is
    /// not blamed on a record), then the timers due by the call's end. A
    /// record that traps goes to the dead-letter output; a timer that traps
    /// stops the job.
    async fn isolate(
        &mut self,
        input: &Pending,
        end: i64,
        now: i64,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let maxp = self.process.max_parallelism;
        let mut single = Pending::default();
        for i in 0..input.batch.len() {
            let watermark = input.watermarks[i];
            self.timers_alone(watermark, now, out).await?;
            let r = input.batch.get(i);
            single.clear();
            let key = r.key().unwrap_or_default();
            self.call.keys.clear();
            single.record_keys.push(self.call.keys.intern(key, maxp));
            single.record_inputs.push(input.record_inputs[i]);
            single.watermarks.push(watermark);
            single
                .batch
                .push(r.key(), r.value(), r.timestamp(), r.origin());
            single.batch.set_last_kind(r.kind());
            if let Err((description, _)) = self.call(&single, watermark, now, true, out).await? {
                super::trapped_on(out, &self.settings.uid, r, description)?;
            }
        }
        self.timers_alone(end, now, out).await
    }

    /// Fires the timers due by the watermark in calls of their own, at most
    /// about [`MAX_BUFFERED`] at a time.
    async fn timers_after(&mut self, now: i64, out: &mut Output) -> Result<(), RuntimeError> {
        let end = self.watermark;
        while let Some(t) = self.timer_chunk_end(end)? {
            self.timers_alone(t, now, out).await?;
        }
        if self.timers_due(end, i64::MIN) {
            self.timers_alone(end, now, out).await?;
        }
        Ok(())
    }

    /// When more than [`MAX_BUFFERED`] event-time timers are due by
    /// `until`: the time of the last of the first [`MAX_BUFFERED`], up to
    /// which a call fires them.
    fn timer_chunk_end(&mut self, until: i64) -> Result<Option<i64>, RuntimeError> {
        let Some(state) = &mut self.call.state else {
            return Ok(None);
        };
        let (mut n, mut at) = (0, None);
        state
            .due_timers(Domain::EventTime, until, &mut |t, _, _| {
                n += 1;
                if n == MAX_BUFFERED {
                    at = Some(t);
                }
            })
            .map_err(|error| RuntimeError::State {
                uid: self.settings.uid.to_string(),
                error,
            })?;
        Ok(at.filter(|_| n > MAX_BUFFERED))
    }

    /// Whether a timer is due by the watermark `end` or the time `now`.
    fn timers_due(&self, end: i64, now: i64) -> bool {
        let Some(state) = &self.call.state else {
            return false;
        };
        state
            .next_timer(Domain::EventTime)
            .is_some_and(|t| t <= end)
            || state
                .next_timer(Domain::ProcessingTime)
                .is_some_and(|t| t <= now)
    }

    /// A call for the timers due by `watermark` alone; a trap stops the job.
    /// The key table of the buffered records, whose ids they hold, waits
    /// aside meanwhile: the call has a table of its own.
    async fn timers_alone(
        &mut self,
        watermark: i64,
        now: i64,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let waiting = std::mem::take(&mut self.call.keys);
        let called = self
            .call(&Pending::default(), watermark, now, false, out)
            .await;
        self.call.keys = waiting;
        match called? {
            Ok(()) => Ok(()),
            Err((description, timers)) => Err(WasmError::Trap {
                uid: self.uid(),
                at: format!(" on {timers} due timers"),
                message: description,
            }
            .into()),
        }
    }

    /// Makes one call for `pending`'s records (their keys already in the
    /// call's key table) and the timers due by `end` (event time) and `now`
    /// (processing time), and applies its result. A trap is `Ok(Err(its
    /// description, the number of due timers))`: the instance is dropped,
    /// and with `undoable` the list and map writes the call made are undone.
    async fn call(
        &mut self,
        pending: &Pending,
        end: i64,
        now: i64,
        undoable: bool,
        out: &mut Output,
    ) -> Result<Result<(), (String, usize)>, RuntimeError> {
        if pending.batch.is_empty() && !self.timers_due(end, now) {
            self.call.keys.clear();
            return Ok(Ok(()));
        }
        if self.live.is_none() {
            self.start().await?;
        }
        let maxp = self.process.max_parallelism;
        // Timers that may fire; their keys join the key table.
        let mut timers = Vec::new();
        let KeyedCall { state, keys, .. } = &mut self.call;
        let state = state.as_mut().expect("opened");
        for (d, until) in [(Domain::ProcessingTime, now), (Domain::EventTime, end)] {
            let domain = match d {
                Domain::EventTime => wk::TimeDomain::EventTime,
                Domain::ProcessingTime => wk::TimeDomain::ProcessingTime,
            };
            state
                .due_timers(d, until, &mut |time, _kg, key| {
                    let key = keys.intern(key, maxp);
                    timers.push(wk::Timer { key, time, domain });
                })
                .map_err(|error| RuntimeError::State {
                    uid: self.settings.uid.to_string(),
                    error,
                })?;
        }
        // Every value state of every key.
        let nkeys = self.call.keys.len();
        let state = self.call.state.as_mut().expect("opened");
        let nv = state.value_states();
        let encodings = &self.call.encodings;
        self.row_data.clear();
        self.rows.resize_with(nkeys, Row::default);
        let mut spans = Vec::with_capacity(nkeys * nv);
        for k in 0..nkeys {
            let (key, kg) = self.call.keys.key(k as u32).expect("in table");
            state
                .read_row(kg, key, now, &mut self.row_data, &mut self.rows[k])
                .map_err(|error| RuntimeError::State {
                    uid: self.settings.uid.to_string(),
                    error,
                })?;
            lower_row(&self.rows[k], &mut self.row_data, encodings, &mut spans);
        }
        if undoable {
            state.begin();
        }
        let entry_writes = state.entry_writes();
        let (key_data, key_spans) = self.call.keys.lowered();
        let (sandbox, guest) = self.live.as_mut().expect("started");
        sandbox.arm();
        std::mem::swap(&mut sandbox.store.data_mut().keyed, &mut self.call);
        let context = wk::KeyedInput {
            keys: wit::ByteListParam {
                data: &key_data,
                spans: &key_spans,
            },
            record_keys: &pending.record_keys,
            record_inputs: &pending.record_inputs,
            watermarks: &pending.watermarks,
            end_watermark: end,
            processing_time: now,
            timers: &timers,
            values: wit::ByteListParam {
                data: &self.row_data,
                spans: &spans,
            },
        };
        let batch = self.lowering.batch(&pending.batch);
        let result = guest.process(&mut sandbox.store, batch, context).await;
        std::mem::swap(&mut sandbox.store.data_mut().keyed, &mut self.call);
        let worn = sandbox.worn();
        let output = match result {
            Ok(o) => o,
            Err(e) => {
                if let Some(message) = self.call.access.refused.take() {
                    return Err(WasmError::Contract {
                        uid: self.uid(),
                        message,
                    }
                    .into());
                }
                let description = match self.call.error.take() {
                    Some(state_error) => return Err(self.state_error(state_error)),
                    None => sandbox.describe(&e),
                };
                let state = self.call.state.as_ref().expect("opened");
                self.retry_fresh =
                    sandbox.outgrown() && (undoable || state.entry_writes() == entry_writes);
                self.live = None;
                self.call.keys.clear();
                if undoable {
                    let undone = self.call.state.as_mut().expect("opened").rollback();
                    undone.map_err(|message| self.state_error(message))?;
                }
                return Ok(Err((description, timers.len())));
            }
        };
        if let Some(state) = &mut self.call.state {
            state.commit();
        }
        if worn {
            tracing::debug!(operator = %self.uid(), "replacing an instance near its memory limit");
            self.live = None;
        }
        let result = self.apply(pending, output, now, out);
        self.call.keys.clear();
        result.map(Ok)
    }

    fn state_error(&self, error: StateError) -> RuntimeError {
        RuntimeError::State {
            uid: self.uid(),
            error,
        }
    }

    /// Applies a call's result: state, timers, output.
    fn apply(
        &mut self,
        input: &Pending,
        mut o: wk::KeyedOutput,
        now: i64,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let uid = self.uid();
        let contract = |message: String| {
            RuntimeError::Wasm(WasmError::Contract {
                uid: uid.clone(),
                message,
            })
        };
        let nkeys = self.call.keys.len() as u32;
        let state = self.call.state.as_mut().expect("opened");
        let nv = state.value_states();
        // Value writes, grouped by key: the last write of a slot wins. Those
        // of an encoded state are stored as the JSON text they stand for,
        // appended to the guest's data.
        let mut writes: Vec<(u32, u32, Option<Span>)> = Vec::with_capacity(o.value_writes.len());
        let guest_data = o.value_data.len();
        for w in &o.value_writes {
            let slot = state.value_slot(w.state).ok_or_else(|| {
                contract(format!(
                    "a value write to state #{}, which is not a value state",
                    w.state
                ))
            })?;
            if w.key >= nkeys {
                return Err(contract(format!(
                    "a value write for key {} of {nkeys}",
                    w.key
                )));
            }
            let value = w
                .value
                .map(|s| checked_span(s, guest_data))
                .transpose()
                .map_err(contract)?;
            let encoding = self.call.encodings.get(slot as usize).copied().flatten();
            let value = match (value, encoding) {
                (Some(span), Some(e)) => {
                    let word = e
                        .word(&o.value_data[span.range()])
                        .map_err(|m| contract(format!("state #{}: {m}", w.state)))?;
                    let at = o.value_data.len();
                    e.lift(word, &mut o.value_data);
                    Some(Span {
                        offset: at as u32,
                        len: (o.value_data.len() - at) as u32,
                    })
                }
                (value, _) => value,
            };
            writes.push((w.key, slot, value));
        }
        writes.sort_by_key(|w| (w.0, w.1));
        let mut i = 0;
        let mut slots: Vec<SlotWrite<'_>> = Vec::with_capacity(nv);
        while i < writes.len() {
            let key = writes[i].0;
            let row = &self.rows[key as usize];
            slots.clear();
            slots.extend(row.slots.iter().map(|s| match s {
                Some((r, exp)) => (Some(&self.row_data[r.clone()]), *exp, false),
                None => (None, None, false),
            }));
            while i < writes.len() && writes[i].0 == key {
                let (_, slot, value) = writes[i];
                slots[slot as usize] = (value.map(|s| &o.value_data[s.range()]), None, true);
                i += 1;
            }
            let (k, kg) = self.call.keys.key(key).expect("checked");
            state
                .write_row(kg, k, now, slots.iter().copied())
                .map_err(|error| RuntimeError::State {
                    uid: uid.clone(),
                    error,
                })?;
        }
        // Timer changes, netted: changes to different timers commute, and
        // of those to one timer the last decides, so each key's are applied
        // together (one lookup of the key), the last per timer. A key that
        // moves its timer with every record of the call leaves one delete
        // of the timer it had and one register of where it ends; the times
        // it passed through are deletes of timers it does not have.
        let (mut changes, mut by_key) = std::mem::take(&mut self.timer_changes);
        changes.clear();
        // Each key's changes together, in call order: a counting sort by key.
        by_key.clear();
        by_key.resize(nkeys as usize + 1, 0);
        for c in &o.timer_changes {
            let key = c.timer.key;
            if key >= nkeys {
                return Err(contract(format!("a timer for key {key} of {nkeys}")));
            }
            by_key[key as usize + 1] += 1;
        }
        for k in 1..by_key.len() {
            by_key[k] += by_key[k - 1];
        }
        changes.resize(o.timer_changes.len(), (Domain::EventTime, 0, false));
        for c in &o.timer_changes {
            let at = &mut by_key[c.timer.key as usize];
            let d = match c.timer.domain {
                wk::TimeDomain::EventTime => Domain::EventTime,
                wk::TimeDomain::ProcessingTime => Domain::ProcessingTime,
            };
            changes[*at as usize] = (d, c.timer.time, c.registered);
            *at += 1;
        }
        // `by_key[k]` is now where key k's changes end.
        let mut start = 0;
        for (key, &end) in by_key[..nkeys as usize].iter().enumerate() {
            let own = &mut changes[start..end as usize];
            start = end as usize;
            if own.is_empty() {
                continue;
            }
            // Stable: a timer's changes stay in call order, the last last.
            own.sort_by_key(|&(d, time, _)| (d, time));
            let mut n = 0;
            for i in 0..own.len() {
                if n > 0 && (own[n - 1].0, own[n - 1].1) == (own[i].0, own[i].1) {
                    own[n - 1].2 = own[i].2;
                } else {
                    own[n] = own[i];
                    n += 1;
                }
            }
            let (k, kg) = self.call.keys.key(key as u32).expect("in the call");
            state
                .change_timers(kg, k, &own[..n])
                .map_err(|error| RuntimeError::State {
                    uid: uid.clone(),
                    error,
                })?;
        }
        self.timer_changes = (changes, by_key);
        // Timers are state: they count against its budget.
        if !o.timer_changes.is_empty() {
            self.process
                .backend
                .check_timers(state)
                .map_err(|error| RuntimeError::State {
                    uid: uid.clone(),
                    error,
                })?;
        }
        let records = o.records.records.iter().map(|m| OutRecord {
            key: m.key,
            value: m.value,
            timestamp: m.timestamp,
            kind: m.kind,
        });
        let errors = o.errors.iter().map(|e| (e.index, e.message.as_str()));
        let output = (&o.records.data[..], &o.origins[..], &o.ports[..]);
        self.emit(&input.batch, records, output, errors, out)
    }

    /// Emits a call's records (each to its port, with its origin in
    /// `input`) and dead-letters the input records it failed on.
    fn emit<'a>(
        &self,
        input: &Batch,
        records: impl ExactSizeIterator<Item = OutRecord>,
        (data, origins, ports): (&[u8], &[u32], &[u32]),
        errors: impl Iterator<Item = (u32, &'a str)>,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let contract = |message: String| {
            RuntimeError::Wasm(WasmError::Contract {
                uid: self.uid(),
                message,
            })
        };
        let n = records.len();
        if origins.len() != n || ports.len() != n {
            return Err(contract(format!(
                "{n} records but {} origins and {} ports",
                origins.len(),
                ports.len()
            )));
        }
        let data_len = data.len();
        let mut by_port: Vec<(usize, Batch)> = Vec::new();
        for ((m, &origin), &port) in records.zip(origins).zip(ports) {
            let port = match port {
                0 => Some(crate::runtime::operator::MAIN_PORT),
                h => *self.ports.get(h as usize - 1).ok_or_else(|| {
                    contract(format!(
                        "side output handle {h} was never returned by `side-output`"
                    ))
                })?,
            };
            let Some(port) = port else {
                continue;
            };
            let origin = match origin {
                u32::MAX => Origin::NONE,
                i => {
                    input
                        .records
                        .get(i as usize)
                        .ok_or_else(|| contract(format!("origin {i} of {}", input.len())))?
                        .origin
                }
            };
            let value = checked_span(m.value, data_len).map_err(contract)?;
            let key = m
                .key
                .map(|k| checked_span(k, data_len))
                .transpose()
                .map_err(contract)?;
            let b = match by_port.iter_mut().find(|(p, _)| *p == port) {
                Some((_, b)) => b,
                None => {
                    by_port.push((port, Batch::default()));
                    &mut by_port.last_mut().expect("pushed").1
                }
            };
            // The plan follows changelogs along main outputs: side
            // outputs carry inserts.
            let changelog = out.info().changelog && port == crate::runtime::operator::MAIN_PORT;
            let kind = super::emitted_kind(m.kind, changelog).map_err(contract)?;
            b.push(
                key.map(|k| &data[k.range()]),
                &data[value.range()],
                m.timestamp,
                origin,
            );
            b.set_last_kind(kind);
        }
        for (index, message) in errors {
            if index as usize >= input.len() {
                return Err(contract(format!(
                    "an error for record {index} of {}",
                    input.len()
                )));
            }
            out.dead_letter(input.get(index as usize), message)?;
        }
        for (port, b) in by_port {
            out.emit_to(port, b);
        }
        Ok(())
    }
}

/// Where an output record's pieces are in its call's output data.
struct OutRecord {
    key: Option<wit::Span>,
    value: wit::Span,
    timestamp: Option<i64>,
    kind: wit::RowKind,
}

/// " on a call with N records (ORIGIN .. ORIGIN) and M timers".
fn describe_call(batch: &Batch, timers: usize, out: &Output) -> String {
    let splits = &out.info().splits;
    let range = match (batch.records.first(), batch.records.last()) {
        (Some(a), Some(b)) => format!(
            " ({} .. {})",
            splits.describe(a.origin),
            splits.describe(b.origin)
        ),
        _ => String::new(),
    };
    format!(
        " on a call with {} records{range} and {timers} due timers",
        batch.len()
    )
}

/// What a keyed process module declares in `open` with `config`: its states
/// and side outputs. The module runs as it would in a job (no grants, its
/// memory cap and deadline), with an in-memory state that is dropped after.
pub async fn declarations(
    module: &Arc<Module>,
    config: &str,
) -> Result<(Vec<crate::state::Descriptor>, Vec<String>), String> {
    let settings = InstanceSettings {
        uid: "inspect".into(),
        logs: Arc::new(super::logging::LogBudget::new("inspect".into())),
        shared_memory: None,
        config: config.to_owned(),
        memory_limit: 256 << 20,
        call_timeout: std::time::Duration::from_secs(10),
        grants: Default::default(),
        base_dir: std::env::temp_dir(),
    };
    let key = KeySelector::new(vec![crate::json::Pointer::parse("")?]);
    let process = ProcessSettings {
        keys: vec![key.clone(), key],
        max_parallelism: 1,
        backend: Backend::Memory { limit: 64 << 20 },
    };
    let mut p = WasmProcess::new(
        module.clone(),
        Arc::new(settings),
        Arc::new(process),
        0,
        Arc::new(crate::time::SystemClock),
        Vec::new(),
    );
    p.start().await.map_err(|e| match e {
        RuntimeError::Wasm(WasmError::Open { message, .. }) => message,
        e => e.to_string(),
    })?;
    let states = p
        .call
        .state
        .as_ref()
        .map(|s| s.descriptors().to_vec())
        .unwrap_or_default();
    Ok((states, p.call.side_outputs.clone()))
}

#[async_trait]
impl Operator for WasmProcess {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        Ok(self.start().await?)
    }

    async fn process_batch(&mut self, batch: Batch, out: &mut Output) -> Result<(), RuntimeError> {
        self.take(batch, 0, out).await
    }

    async fn process_input(
        &mut self,
        input: usize,
        batch: Batch,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        match self.module.world {
            World::BroadcastProcess => self.broadcast(batch, out).await,
            _ => self.take(batch, input, out).await,
        }
    }

    async fn on_watermark(
        &mut self,
        watermark: i64,
        _out: &mut Output,
    ) -> Result<(), RuntimeError> {
        self.watermark = self.watermark.max(watermark);
        self.held = Some(self.watermark);
        Ok(())
    }

    fn buffers(&self) -> bool {
        true
    }

    fn takes_bursts(&self) -> bool {
        true
    }

    fn wakeup(&self) -> Option<std::time::Duration> {
        let next = self
            .call
            .state
            .as_ref()?
            .next_timer(Domain::ProcessingTime)?;
        let ms = next.saturating_sub(self.clock.now_ms()).max(0);
        Some(std::time::Duration::from_millis(ms as u64))
    }

    async fn flush(&mut self, out: &mut Output) -> Result<Option<i64>, RuntimeError> {
        self.run(out).await?;
        Ok(self.held.take())
    }

    async fn close(&mut self, out: &mut Output) -> Result<(), RuntimeError> {
        self.run(out).await
    }

    async fn snapshot(
        &mut self,
        _barrier: crate::checkpoint::Barrier,
        _out: &mut Output,
    ) -> Result<crate::checkpoint::OperatorState, RuntimeError> {
        use crate::checkpoint::format::{EntryWriter, KIND_STATE, KIND_TIMER};
        let mut w = EntryWriter::new();
        let mut states = Vec::new();
        if let Some(state) = &mut self.call.state {
            let state_err = |error| RuntimeError::State {
                uid: self.settings.uid.to_string(),
                error,
            };
            state
                .for_each_entry(&mut |kg, k, v| w.push(kg, KIND_STATE, k, v))
                .map_err(state_err)?;
            states = state.descriptors().iter().map(descriptor_json).collect();
            let mut key = Vec::new();
            for (tag, d) in [(0u8, Domain::EventTime), (1, Domain::ProcessingTime)] {
                state
                    .due_timers(d, i64::MAX, &mut |t, kg, k| {
                        key.clear();
                        key.push(tag);
                        key.extend_from_slice(&t.to_be_bytes());
                        key.extend_from_slice(k);
                        w.push(kg, KIND_TIMER, &key, b"");
                    })
                    .map_err(state_err)?;
            }
        }
        let mut meta = serde_json::json!({ "watermark": self.watermark, "states": states });
        if self.module.world == World::BroadcastProcess {
            // Every subtask holds the same broadcast state: subtask 0 keeps
            // it, and each says what it holds, for the coordinator to
            // compare (see `checkpoint::coordinator`).
            meta[crate::checkpoint::BROADCAST_HASH] = self.call.broadcast.digest().into();
            if self.subtask == 0 {
                meta["broadcast"] = self.call.broadcast.to_json();
            }
        }
        Ok(crate::checkpoint::OperatorState {
            meta,
            keyed: Some(w.finish()),
            committables: Vec::new(),
        })
    }

    async fn restore(
        &mut self,
        restored: crate::checkpoint::RestoredState,
    ) -> Result<(), RuntimeError> {
        use crate::checkpoint::format::{KIND_STATE, KIND_TIMER};
        let uid = restored.uid.clone();
        let state_err = |error| RuntimeError::State {
            uid: uid.clone(),
            error,
        };
        self.watermark = self.watermark.max(restored.watermark());
        let old = snapshot_descriptors(&restored.metas).unwrap_or_default();
        let state = self.call.state.as_mut().expect("opened");
        let plan = inherit(
            &old,
            state.descriptors(),
            restored.drop_unclaimed,
            self.module.migrates(),
        )
        .map_err(|m| {
            RuntimeError::Incompatible(format!(
                "`{uid}` cannot restore from {}: {m}",
                restored.location
            ))
        })?;
        let map = &plan.map;
        restored
            .entries(&mut |e| match e.kind {
                KIND_STATE => state.restore_entry(e.kg, e.key, e.value, &old, map),
                KIND_TIMER => {
                    let (Some(&tag), Some(t)) = (e.key.first(), e.key.get(1..9)) else {
                        return Err(StateError::Corrupt("corrupt timer entry".into()));
                    };
                    let t = i64::from_be_bytes(t.try_into().expect("8 bytes"));
                    let d = if tag == 0 {
                        Domain::EventTime
                    } else {
                        Domain::ProcessingTime
                    };
                    state.register_timer(d, t, e.kg, &e.key[9..])
                }
                k => Err(StateError::Corrupt(format!(
                    "a keyed process function has no entries of kind {k}"
                ))),
            })
            .map_err(|e| {
                state_err(e.context(format!("cannot restore from {}", restored.location)))
            })?;
        if self.module.world == World::BroadcastProcess
            && let Some(b) = restored.metas.iter().find_map(|m| m.get("broadcast"))
        {
            self.call
                .broadcast
                .restore(b, restored.drop_unclaimed)
                .map_err(|m| {
                    RuntimeError::Incompatible(format!(
                        "`{uid}` cannot restore from {}: {m}",
                        restored.location
                    ))
                })?;
        }
        for (handle, from) in plan.migrate {
            self.migrate(handle, from, &restored.location.to_string())
                .await?;
        }
        Ok(())
    }
}

/// Items per call of the migration hook.
const MIGRATION_BATCH: usize = 4096;

impl WasmProcess {
    /// Runs the module's migration hook over every stored item of the state
    /// `handle`, written in layout `from`.
    /// `restoring` names the snapshot, for errors.
    async fn migrate(
        &mut self,
        handle: u32,
        from: u32,
        restoring: &str,
    ) -> Result<(), RuntimeError> {
        let uid = self.uid();
        let state_error = |error: StateError| RuntimeError::State {
            uid: uid.clone(),
            error: error.context(format!("restoring from {restoring}")),
        };
        let guest_error = |message: String| WasmError::Open {
            uid: uid.clone(),
            message: format!("restoring from {restoring}: {message}"),
        };
        let state = self.call.state.as_mut().expect("opened");
        let name = state.descriptors()[handle as usize].name.clone();
        let to = state.descriptors()[handle as usize].version;
        let taken = state.take_for_migration(handle).map_err(state_error)?;
        let indices = self
            .module
            .migration
            .as_ref()
            .expect("checked: the module exports the migration hook");
        let (sandbox, _) = self.live.as_mut().expect("started");
        let hook = indices
            .load(&mut sandbox.store, &sandbox.instance)
            .map_err(|e| guest_error(format!("{e:#}")))?;
        let mut migrated = Vec::with_capacity(taken.items.len());
        for chunk in taken.items.chunks(MIGRATION_BATCH) {
            let mut list = ListBuilder::default();
            for item in chunk {
                list.push(item);
            }
            let list = list.finish();
            sandbox.arm();
            let result = hook
                .call_migrate(
                    &mut sandbox.store,
                    &name,
                    from,
                    wit::ByteListParam {
                        data: &list.data,
                        spans: &list.spans,
                    },
                )
                .await;
            let out = match result {
                Ok(Ok(out)) => out,
                Ok(Err(m)) => {
                    return Err(guest_error(format!(
                        "the migration hook failed on state `{name}` (version {from} to {to}): {m}"
                    ))
                    .into());
                }
                Err(e) => {
                    let description = sandbox.describe(&e);
                    self.live = None;
                    return Err(guest_error(format!(
                        "the migration hook trapped on state `{name}` (version {from} to {to}): {description}"
                    ))
                    .into());
                }
            };
            if out.spans.len() != chunk.len() {
                return Err(guest_error(format!(
                    "the migration hook returned {} items for {} of state `{name}`",
                    out.spans.len(),
                    chunk.len()
                ))
                .into());
            }
            for s in out.spans {
                let s = super::checked_span(s, out.data.len()).map_err(|m| {
                    guest_error(format!("the migration hook broke the contract: {m}"))
                })?;
                migrated.push(out.data[s.offset as usize..][..s.len as usize].to_vec());
            }
        }
        let n = migrated.len();
        let state = self.call.state.as_mut().expect("opened");
        state.put_migrated(taken, migrated).map_err(state_error)?;
        tracing::info!(
            operator = %self.settings.uid,
            subtask = self.subtask,
            "migrated {n} items of state `{name}` from version {from} to {to}"
        );
        Ok(())
    }
}

/// Checks, before a job starts, that `module` (opened with `config`) can
/// take over the state a snapshot holds for its operator (`metas`: what the
/// snapshot's subtasks recorded): the same states by name and kind, at the
/// same versions unless the module exports the migration hook.
pub async fn check_inheritance(
    module: &Arc<Module>,
    config: &str,
    metas: &[serde_json::Value],
    drop_unclaimed: bool,
) -> Result<(), String> {
    let Some(old) = snapshot_descriptors(metas) else {
        return Ok(());
    };
    let (new, _) = declarations(module, config).await?;
    inherit(&old, &new, drop_unclaimed, module.migrates()).map(|_| ())
}

/// The states a snapshot's subtasks recorded (`None` when it has none).
fn snapshot_descriptors(metas: &[serde_json::Value]) -> Option<Vec<Descriptor>> {
    let states = metas.iter().find_map(|m| m.get("states"))?.as_array()?;
    Some(states.iter().filter_map(descriptor_from_json).collect())
}

fn descriptor_json(d: &Descriptor) -> serde_json::Value {
    serde_json::json!({
        "name": d.name,
        "kind": d.kind.name(),
        "ttl_ms": d.ttl_ms,
        "version": d.version,
    })
}

fn descriptor_from_json(v: &serde_json::Value) -> Option<Descriptor> {
    Some(Descriptor {
        name: v.get("name")?.as_str()?.to_owned(),
        kind: Kind::from_name(v.get("kind")?.as_str()?)?,
        ttl_ms: v.get("ttl_ms").and_then(|t| t.as_u64()),
        // Snapshots from before state versions: the first layout.
        version: v.get("version").and_then(|t| t.as_u64()).unwrap_or(1) as u32,
    })
}

/// How a snapshot's states move to the states a module declares now.
#[derive(Debug, PartialEq)]
struct Inheritance {
    /// `map[old handle]`: the new handle, or `None` when the state is dropped.
    map: Vec<Option<u32>>,
    /// New handles whose entries the migration hook must convert, with the
    /// version they were written in.
    migrate: Vec<(u32, u32)>,
}

/// How the states of a snapshot (`old`, by handle) map onto the states a
/// module declares now: by name, of the same kind and version, or of another
/// version when the module `migrates`. A state no longer declared is an
/// error unless it may be dropped.
fn inherit(
    old: &[Descriptor],
    new: &[Descriptor],
    drop: bool,
    migrates: bool,
) -> Result<Inheritance, String> {
    let mut plan = Inheritance {
        map: Vec::with_capacity(old.len()),
        migrate: Vec::new(),
    };
    let mut unclaimed = Vec::new();
    for d in old {
        let Some(i) = new.iter().position(|n| n.name == d.name) else {
            unclaimed.push(format!("`{}`", d.name));
            plan.map.push(None);
            continue;
        };
        let n = &new[i];
        if n.kind != d.kind {
            return Err(format!(
                "state `{}` is a {} state in the snapshot but the module declares it as a {} state; a state cannot change its kind (declare a new state under another name)",
                d.name,
                d.kind.name(),
                n.kind.name()
            ));
        }
        if n.version != d.version {
            if !migrates {
                return Err(format!(
                    "state `{}` has version {} in the snapshot but the module declares version {} and does not export the state-migration hook (sluice:operator/migration); export it to convert the state, or keep version {}",
                    d.name, d.version, n.version, d.version
                ));
            }
            plan.migrate.push((i as u32, d.version));
        }
        plan.map.push(Some(i as u32));
    }
    if !unclaimed.is_empty() && !drop {
        return Err(format!(
            "the snapshot has state {} that the module does not declare; declare it, or pass --drop-unclaimed-state to drop it",
            unclaimed.join(", ")
        ));
    }
    Ok(plan)
}

/// `process:` in a spec (without `window:`): a keyed process function.
pub struct ProcessKind;

impl OperatorKind for ProcessKind {
    fn tag(&self) -> &'static str {
        "process"
    }

    fn what(&self) -> &'static str {
        "a keyed process function"
    }

    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError> {
        plan_keyed(cx, self.tag(), "a process function", World::Process, &[0])
    }
}

/// `co_process:`: a keyed co-process function of two inputs, `left` and
/// `right`, each with its key.
pub struct CoProcessKind;

impl OperatorKind for CoProcessKind {
    fn tag(&self) -> &'static str {
        "co_process"
    }

    fn what(&self) -> &'static str {
        "a keyed co-process function"
    }

    fn inputs(&self) -> &'static [&'static str] {
        &["left", "right"]
    }

    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError> {
        plan_keyed(
            cx,
            self.tag(),
            "a co-process function",
            World::CoProcess,
            &[0, 1],
        )
    }
}

/// `broadcast_process:`: a keyed broadcast process function of a keyed
/// input (`keyed`, with the `key_by`) and a broadcast input (`broadcast`),
/// whose records reach every subtask.
pub struct BroadcastProcessKind;

/// The broadcast input of a keyed broadcast process function.
pub const BROADCAST_INPUT: usize = 1;

impl OperatorKind for BroadcastProcessKind {
    fn tag(&self) -> &'static str {
        "broadcast_process"
    }

    fn what(&self) -> &'static str {
        "a keyed broadcast process function"
    }

    fn inputs(&self) -> &'static [&'static str] {
        &["keyed", "broadcast"]
    }

    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError> {
        plan_keyed(
            cx,
            self.tag(),
            "a broadcast process function",
            World::BroadcastProcess,
            &[0],
        )
    }

    fn broadcast_inputs(&self) -> &'static [usize] {
        &[BROADCAST_INPUT]
    }
}

/// The plan of a keyed function (`what`) whose module section is `tag`:
/// the keys of its keyed `inputs`, its module, its open side outputs.
fn plan_keyed(
    cx: &dyn PlanContext,
    tag: &str,
    what: &str,
    world: World,
    inputs: &[usize],
) -> Result<Planned, PlanError> {
    kind::key(
        cx,
        &format!("{what} needs a `key_by`: its state and timers are per key"),
    )?;
    let keys = inputs
        .iter()
        .map(|&i| cx.input_key(i).expect("a key, checked").clone())
        .collect();
    let guest = super::plan::guest(cx, tag, world)?;
    let factory = ProcessFactory {
        guest,
        process: Arc::new(ProcessSettings {
            keys,
            max_parallelism: cx.max_parallelism(),
            backend: cx.backend()?,
        }),
    };
    Ok(Planned {
        open_side_ports: true,
        ..Planned::new(Arc::new(factory))
    })
}

/// Makes a keyed process function's subtasks; before a restore, checks that
/// its module can take over the state (see [`check_inheritance`]).
pub struct ProcessFactory {
    pub guest: Guest,
    pub process: Arc<ProcessSettings>,
}

#[async_trait]
impl OperatorFactory for ProcessFactory {
    fn kind(&self) -> &'static str {
        match self.guest.module.world {
            World::CoProcess => "co_process",
            World::BroadcastProcess => "broadcast_process",
            _ => "process",
        }
    }

    /// A process function sees each record's kind and decides what to emit:
    /// its output is append-only unless its module section says
    /// `changelog: true`.
    fn changelog(&self) -> crate::runtime::operator::ChangelogInput {
        crate::runtime::operator::ChangelogInput::Applied
    }

    fn emits_changelog(&self) -> bool {
        self.guest.changelog
    }

    fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator> {
        Box::new(WasmProcess::new(
            self.guest.module.clone(),
            self.guest.settings.clone(),
            self.process.clone(),
            subtask.index,
            subtask.clock.clone(),
            subtask.side_ports.to_vec(),
        ))
    }

    fn module(&self) -> Option<ModuleRef<'_>> {
        Some(self.guest.module_ref())
    }

    async fn check_restore(&self, uid: &str, restore: &RestorePoint) -> Result<(), String> {
        check_inheritance(
            &self.guest.module,
            &self.guest.settings.config,
            &restore.metas(uid),
            restore.drop_unclaimed,
        )
        .await
    }
}

/// Appends the spans of one key's value states (`row`, read into `data`)
/// as the guest takes them: as stored, or converted to 8 bytes appended to
/// `data` (the row's own ranges stay as they are). A stored text that does
/// not convert is for the guest to report: it gets the empty span `0, 0`.
fn lower_row(
    row: &Row,
    data: &mut Vec<u8>,
    encodings: &[Option<ValueEncoding>],
    spans: &mut Vec<wit::Span>,
) {
    for (slot, s) in row.slots.iter().enumerate() {
        let encoding = encodings.get(slot).copied().flatten();
        spans.push(match (s, encoding) {
            (None, _) => wit::Span {
                offset: ABSENT,
                len: 0,
            },
            (Some((r, _)), None) => wit::Span {
                offset: r.start as u32,
                len: r.len() as u32,
            },
            (Some((r, _)), Some(encoding)) => match encoding.lower(&data[r.clone()]) {
                Some(bytes) => {
                    data.extend_from_slice(&bytes);
                    wit::Span {
                        offset: (data.len() - 8) as u32,
                        len: 8,
                    }
                }
                None => wit::Span { offset: 0, len: 0 },
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_values_cross_as_8_bytes_and_are_stored_as_json_text() {
        // One key's row: s64 `-12`, u64 `7`, absent, bytes `"x"`, and two
        // stored texts an integer state cannot take.
        let mut data = br#"-127"x"1.5-3"#.to_vec();
        let at = |start: usize, end: usize| Some((start..end, None));
        let row = Row {
            slots: vec![at(0, 3), at(3, 4), None, at(4, 7), at(7, 10), at(10, 12)],
        };
        use ValueEncoding::{S64, U64};
        let encodings = [Some(S64), Some(U64), Some(S64), None, Some(S64), Some(U64)];
        let mut spans = Vec::new();
        lower_row(&row, &mut data, &encodings, &mut spans);
        let got: Vec<&[u8]> = spans
            .iter()
            .map(|s| match s.offset {
                ABSENT => &b"absent"[..],
                o => &data[o as usize..(o + s.len) as usize],
            })
            .collect();
        let (minus_12, seven) = ((-12i64).to_le_bytes(), 7u64.to_le_bytes());
        assert_eq!(
            got,
            [&minus_12[..], &seven[..], b"absent", br#""x""#, b"", b""]
        );
        assert_eq!((spans[4].offset, spans[5].offset), (0, 0));
        // The row's own bytes are still where its ranges say.
        assert_eq!(&data[..12], br#"-127"x"1.5-3"#);
        // Written back: the JSON text, or a contract error for a value
        // that is not 8 bytes.
        let mut text = Vec::new();
        S64.lift(S64.word(&i64::MIN.to_le_bytes()).unwrap(), &mut text);
        U64.lift(U64.word(&u64::MAX.to_le_bytes()).unwrap(), &mut text);
        assert_eq!(text, b"-922337203685477580818446744073709551615");
        let e = S64.word(b"12").unwrap_err();
        assert!(
            e.contains("a value of 2 bytes") && e.contains("s64 (8 bytes)"),
            "{e}"
        );
    }

    fn d(name: &str, kind: Kind, version: u32) -> Descriptor {
        Descriptor {
            name: name.into(),
            kind,
            ttl_ms: None,
            version,
        }
    }

    #[test]
    fn inheritance_checks_names_kinds_and_versions() {
        let old = [d("count", Kind::Value, 1), d("seen", Kind::Map, 2)];
        // Same states, another order: remapped, nothing to migrate.
        let same = [d("seen", Kind::Map, 2), d("count", Kind::Value, 1)];
        assert_eq!(
            inherit(&old, &same, false, false),
            Ok(Inheritance {
                map: vec![Some(1), Some(0)],
                migrate: vec![]
            })
        );
        // A new version needs the hook.
        let v2 = [d("count", Kind::Value, 2), d("seen", Kind::Map, 2)];
        let e = inherit(&old, &v2, false, false).unwrap_err();
        assert!(
            e.contains(
                "state `count` has version 1 in the snapshot but the module declares version 2"
            ),
            "{e}"
        );
        assert_eq!(
            inherit(&old, &v2, false, true),
            Ok(Inheritance {
                map: vec![Some(0), Some(1)],
                migrate: vec![(0, 1)]
            })
        );
        // A kind change is refused even with the hook.
        let kind = [d("count", Kind::List, 1), d("seen", Kind::Map, 2)];
        let e = inherit(&old, &kind, false, true).unwrap_err();
        assert!(
            e.contains(
                "is a value state in the snapshot but the module declares it as a list state"
            ),
            "{e}"
        );
        // A state no longer declared: only with the flag.
        let fewer = [d("count", Kind::Value, 1)];
        let e = inherit(&old, &fewer, false, false).unwrap_err();
        assert!(e.contains("`seen` that the module does not declare"), "{e}");
        assert_eq!(
            inherit(&old, &fewer, true, false).unwrap().map,
            vec![Some(0), None]
        );
        // Old snapshots without versions read as version 1.
        let meta = serde_json::json!({"name": "count", "kind": "value", "ttl_ms": null});
        assert_eq!(
            descriptor_from_json(&meta),
            Some(d("count", Kind::Value, 1))
        );
        assert_eq!(
            descriptor_from_json(&descriptor_json(&old[1])),
            Some(old[1].clone())
        );
    }
}
