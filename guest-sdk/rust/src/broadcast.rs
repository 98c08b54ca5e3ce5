//! [`KeyedBroadcastProcess`]: Flink's `KeyedBroadcastProcessFunction` — a
//! keyed input processed as by a [`KeyedProcess`](crate::KeyedProcess), and a
//! broadcast input (rules, thresholds) that reaches every subtask and may
//! change the [`BroadcastState`] the keyed side reads.
//!
//! Broadcast state lives in the host, whole on every subtask; every access is
//! a host call. Only the broadcast side may change it — [`BroadcastState::put`]
//! and [`BroadcastState::remove`] take the [`BroadcastContext`] that only
//! [`KeyedBroadcastProcess::process_broadcast`] gets — and it must change it
//! the same way on every subtask: the host compares the subtasks' broadcast
//! state at every checkpoint and fails the job when they differ.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::batch::{Batch, BatchBuilder, RecordError, RowKind, Span, slice, to_u32};
use crate::bindings::broadcast::exports::sluice::operator::keyed_broadcast_process::BroadcastOutput;
use crate::process::{KeyedFunction, Setup, SideOutput, Timer};
use crate::{Config, Context, Error, Record};

/// A keyed broadcast process function.
///
/// ```
/// use sluice_guest::{
///     BroadcastContext, BroadcastState, Config, Context, Error, KeyedBroadcastProcess, Record, Setup,
/// };
///
/// /// Flags payments above their country's limit; limits arrive as
/// /// `{"country": "FR", "limit": 500}` on the broadcast input.
/// struct Limits {
///     limits: BroadcastState<String, f64>,
/// }
///
/// impl KeyedBroadcastProcess for Limits {
///     fn open(_config: Config, setup: &mut Setup) -> Result<Self, Error> {
///         Ok(Limits { limits: setup.broadcast_state("limits")? })
///     }
///
///     fn process(&mut self, payment: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
///         let country: String = payment.field("country")?.ok_or("no country")?;
///         let amount: f64 = payment.field("amount")?.ok_or("no amount")?;
///         if self.limits.get(&country)?.is_some_and(|limit| amount > limit) {
///             ctx.emit_value(payment.value());
///         }
///         Ok(())
///     }
///
///     fn process_broadcast(&mut self, rule: &Record<'_>, ctx: &mut BroadcastContext<'_>) -> Result<(), Error> {
///         let country: String = rule.field("country")?.ok_or("no country")?;
///         let limit: f64 = rule.field("limit")?.ok_or("no limit")?;
///         self.limits.put(ctx, &country, &limit)
///     }
/// }
///
/// sluice_guest::export_broadcast_process!(Limits);
/// ```
///
/// The host makes the calls in arrival order: the keyed records (and the
/// timers) that arrived before a broadcast record are processed before it.
/// Returning an `Err` from `process_broadcast` sends the broadcast record to
/// the dead-letter sink and drops what it emitted; its broadcast state
/// writes stay (they went to the host already).
pub trait KeyedBroadcastProcess: Sized + 'static {
    /// Builds the operator and declares its states, broadcast states and side
    /// outputs, once per instance.
    fn open(config: Config, setup: &mut Setup) -> Result<Self, Error>;

    /// Handles one record of the keyed input, scoped to its key as in
    /// [`KeyedProcess::process`](crate::KeyedProcess::process). Broadcast
    /// state is read-only here.
    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error>;

    /// Handles one record of the broadcast input.
    fn process_broadcast(
        &mut self,
        record: &Record<'_>,
        ctx: &mut BroadcastContext<'_>,
    ) -> Result<(), Error>;

    /// A timer of the current key fired.
    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        let _ = (timer, ctx);
        Ok(())
    }
}

/// A map from `K` to `V` that every subtask holds whole (Flink's
/// `BroadcastState`). Declare it with [`Setup::broadcast_state`]; keys and
/// values are stored as JSON.
pub struct BroadcastState<K, V> {
    handle: u32,
    name: String,
    _t: PhantomData<fn() -> (K, V)>,
}

impl Setup {
    /// A broadcast state: a map from `K` to `V`, the same on every subtask.
    pub fn broadcast_state<K, V>(&mut self, name: &str) -> Result<BroadcastState<K, V>, Error> {
        Ok(BroadcastState {
            handle: host::declare(name).map_err(Error::new)?,
            name: name.to_owned(),
            _t: PhantomData,
        })
    }
}

fn decode<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::new(format!(
            "broadcast state `{name}` holds a value this operator cannot read: {e}"
        ))
    })
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> BroadcastState<K, V> {
    /// The value under `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>, Error> {
        match host::get(self.handle, &serde_json::to_vec(key)?) {
            None => Ok(None),
            Some(v) => decode(&self.name, &v).map(Some),
        }
    }

    /// All entries, by the keys' JSON text.
    pub fn entries(&self) -> Result<Vec<(K, V)>, Error> {
        let (keys, values) = host::entries(self.handle);
        keys.spans
            .iter()
            .zip(&values.spans)
            .map(|(k, v)| {
                Ok((
                    decode(&self.name, slice(&keys.data, *k))?,
                    decode(&self.name, slice(&values.data, *v))?,
                ))
            })
            .collect()
    }

    /// Sets the value under `key` (broadcast side only).
    pub fn put(&self, _ctx: &mut BroadcastContext<'_>, key: &K, value: &V) -> Result<(), Error> {
        host::put(
            self.handle,
            &serde_json::to_vec(key)?,
            &serde_json::to_vec(value)?,
        );
        Ok(())
    }

    /// Removes `key` (broadcast side only).
    pub fn remove(&self, _ctx: &mut BroadcastContext<'_>, key: &K) -> Result<(), Error> {
        host::remove(self.handle, &serde_json::to_vec(key)?);
        Ok(())
    }
}

/// Where a broadcast record is processed: its watermark and the outputs.
/// Emitted records have no key.
pub struct BroadcastContext<'a> {
    out: &'a mut BatchBuilder,
    origins: &'a mut Vec<u32>,
    ports: &'a mut Vec<u32>,
    origin: u32,
    timestamp: Option<i64>,
    watermark: i64,
}

impl BroadcastContext<'_> {
    /// The event-time watermark when the record arrived.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// Emits `value` as JSON to the main output, with the record's timestamp.
    pub fn emit_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.emit_json_to_port(0, value)
    }

    /// Emits `value` as JSON to a side output.
    pub fn emit_json_to<T: Serialize + ?Sized>(
        &mut self,
        side: SideOutput,
        value: &T,
    ) -> Result<(), Error> {
        self.emit_json_to_port(side.port(), value)
    }

    /// Emits these bytes as a record's value on the main output.
    pub fn emit_value(&mut self, value: &[u8]) {
        let value = self.out.push_bytes(value);
        self.push(0, value, RowKind::Insert);
    }

    /// Emits `value` as JSON to the main output as a change of kind `kind`
    /// (the other `emit` functions emit inserts). Only a module whose
    /// section in the spec says `changelog: true` may emit anything but
    /// inserts; the host fails the job otherwise.
    pub fn emit_change<T: Serialize + ?Sized>(
        &mut self,
        kind: RowKind,
        value: &T,
    ) -> Result<(), Error> {
        self.emit_json_with(0, kind, value)
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
        let value = self.out.push_json_bytes(value)?;
        self.push(port, value, kind);
        Ok(())
    }

    fn push(&mut self, port: u32, value: Span, kind: RowKind) {
        self.out
            .push_record(None, value, self.timestamp, std::iter::empty(), kind);
        self.origins.push(self.origin);
        self.ports.push(port);
    }
}

/// A [`KeyedBroadcastProcess`] as a [`KeyedFunction`] (its keyed side).
#[doc(hidden)]
pub struct Broadcast<T>(pub T);

impl<T: KeyedBroadcastProcess> KeyedFunction for Broadcast<T> {
    fn open(config: Config, setup: &mut Setup) -> Result<Self, Error> {
        T::open(config, setup).map(Broadcast)
    }

    fn record(&mut self, _: u8, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
        self.0.process(record, ctx)
    }

    fn timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        self.0.on_timer(timer, ctx)
    }
}

/// Runs one `process-broadcast` call: each record in order, a failed one's
/// output dropped.
pub(crate) fn run_broadcast<T: KeyedBroadcastProcess>(
    op: &mut T,
    input: &Batch,
    watermarks: &[i64],
) -> Result<BroadcastOutput, String> {
    if watermarks.len() != input.records.len() {
        return Err(
            "malformed call from the host: broadcast watermarks do not match the batch".into(),
        );
    }
    let mut out = BatchBuilder::default();
    let mut origins = Vec::new();
    let mut ports = Vec::new();
    let mut errors = Vec::new();
    for (i, &watermark) in watermarks.iter().enumerate() {
        let record = Record::from_batch(input, i);
        let (mark, emitted) = (out.mark(), origins.len());
        let mut ctx = BroadcastContext {
            out: &mut out,
            origins: &mut origins,
            ports: &mut ports,
            origin: to_u32(i),
            timestamp: record.timestamp(),
            watermark,
        };
        if let Err(e) = op.process_broadcast(&record, &mut ctx) {
            out.rollback(mark);
            origins.truncate(emitted);
            ports.truncate(emitted);
            errors.push(RecordError {
                index: to_u32(i),
                message: e.to_string(),
            });
        }
    }
    Ok(BroadcastOutput {
        records: out.finish(),
        origins,
        ports,
        errors,
    })
}

impl<T: KeyedBroadcastProcess> crate::process::ProcessState<Broadcast<T>> {
    /// The `process-broadcast` export. A broken call traps.
    pub fn process_broadcast(&self, input: Batch, watermarks: Vec<i64>) -> BroadcastOutput {
        self.with_op(|op| run_broadcast(&mut op.0, &input, &watermarks))
    }
}

#[cfg(target_arch = "wasm32")]
mod host {
    use crate::batch::ByteList;
    use crate::bindings::broadcast::sluice::operator::broadcast_state as b;

    pub fn declare(name: &str) -> Result<u32, String> {
        b::declare(name)
    }

    pub fn get(s: u32, key: &[u8]) -> Option<Vec<u8>> {
        b::get(s, key)
    }

    pub fn put(s: u32, key: &[u8], value: &[u8]) {
        b::put(s, key, value)
    }

    pub fn remove(s: u32, key: &[u8]) {
        b::remove(s, key)
    }

    pub fn entries(s: u32) -> (ByteList, ByteList) {
        b::entries(s)
    }
}

/// The native stand-in: one store per thread.
#[cfg(not(target_arch = "wasm32"))]
mod host {
    use crate::batch::{ByteList, ByteListBuilder};
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// The declared states: name and entries.
    type States = Vec<(String, BTreeMap<Vec<u8>, Vec<u8>>)>;

    thread_local! {
        static STORE: RefCell<States> = RefCell::default();
    }

    pub fn declare(name: &str) -> Result<u32, String> {
        STORE.with(|s| {
            let mut s = s.borrow_mut();
            let i = match s.iter().position(|(n, _)| n == name) {
                Some(i) => i,
                None => {
                    s.push((name.to_owned(), BTreeMap::new()));
                    s.len() - 1
                }
            };
            Ok(i as u32)
        })
    }

    fn with<R>(s: u32, f: impl FnOnce(&mut BTreeMap<Vec<u8>, Vec<u8>>) -> R) -> R {
        STORE.with(|st| f(&mut st.borrow_mut()[s as usize].1))
    }

    pub fn get(s: u32, key: &[u8]) -> Option<Vec<u8>> {
        with(s, |m| m.get(key).cloned())
    }

    pub fn put(s: u32, key: &[u8], value: &[u8]) {
        with(s, |m| m.insert(key.to_vec(), value.to_vec()));
    }

    pub fn remove(s: u32, key: &[u8]) {
        with(s, |m| m.remove(key));
    }

    pub fn entries(s: u32) -> (ByteList, ByteList) {
        with(s, |m| {
            let mut keys = ByteListBuilder::with_capacity(m.len(), 0);
            let mut values = ByteListBuilder::with_capacity(m.len(), 0);
            for (k, v) in m.iter() {
                keys.push_bytes(k);
                values.push_bytes(v);
            }
            (keys.finish(), values.finish())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::values;

    struct Limits {
        limits: BroadcastState<String, f64>,
    }

    #[derive(serde::Deserialize)]
    struct Rule {
        country: String,
        limit: Option<f64>,
    }

    impl KeyedBroadcastProcess for Limits {
        fn open(_config: Config, setup: &mut Setup) -> Result<Self, Error> {
            Ok(Limits {
                limits: setup.broadcast_state("limits")?,
            })
        }

        fn process(&mut self, _record: &Record<'_>, _ctx: &mut Context<'_>) -> Result<(), Error> {
            Ok(())
        }

        fn process_broadcast(
            &mut self,
            record: &Record<'_>,
            ctx: &mut BroadcastContext<'_>,
        ) -> Result<(), Error> {
            let r: Rule = record.json()?;
            ctx.emit_json(&(r.country.as_str(), ctx.current_watermark()))?;
            let limit = r.limit.ok_or("no limit")?;
            self.limits.put(ctx, &r.country, &limit)
        }
    }

    #[test]
    fn a_failed_broadcast_record_emits_nothing_and_the_others_change_the_state() {
        let mut op = Limits::open(Config::new("null"), &mut Setup::new()).unwrap();
        let b = values(&[
            r#"{"country":"FR","limit":100.0}"#,
            r#"{"country":"DE"}"#,
            r#"{"country":"ES","limit":50.0}"#,
        ]);
        let out = run_broadcast(&mut op, &b, &[5, 6, 7]).unwrap();
        let rows: Vec<&[u8]> = out
            .records
            .records
            .iter()
            .map(|m| slice(&out.records.data, m.value))
            .collect();
        assert_eq!(rows, [&b"[\"FR\",5]"[..], b"[\"ES\",7]"]);
        assert!(out.records.records.iter().all(|m| m.key.is_none()));
        assert_eq!(out.origins, [0, 2]);
        assert_eq!(out.errors.len(), 1);
        assert_eq!(
            (out.errors[0].index, &*out.errors[0].message),
            (1, "no limit")
        );
        assert_eq!(
            op.limits.entries().unwrap(),
            [("ES".to_owned(), 50.0), ("FR".to_owned(), 100.0)]
        );
        assert!(run_broadcast(&mut op, &b, &[5]).is_err());
    }
}
