//! A Wasm module of the `enricher-operator` world as a runtime
//! operator: Flink's Async I/O.
//!
//! Up to `capacity` records are in flight per subtask, each enriched by its
//! own instance (from a pool that grows to `capacity`), on its own tokio
//! task, so that a guest blocked in `http.fetch` holds up nobody else. An
//! attempt that fails (the guest reports an error, traps, or exceeds
//! `timeout`) is tried again after a backoff that doubles up to
//! `max_backoff`, `retries` times; then the record goes to the dead-letter
//! output with the last error (or stops the job without one). A request
//! outside the operator's `grants.network` stops the job at once.
//!
//! Memory: a subtask's instances share one `memory_limit` (a pool of
//! `capacity` instances with a limit each could take `capacity` times it).
//! A record waits for an instance to come back rather than start one that
//! would not fit; an instance that grows past what is left traps, and its
//! record is tried again as for any trap.
//!
//! Order: results leave in input order (`ordered`) or as they complete; in
//! both modes a watermark waits for every record that arrived before it, so
//! no result crosses a watermark (as in Flink's `AsyncWaitOperator`).
//!
//! Checkpoints do not wait for records in flight: a barrier stores them (in
//! input order) in the snapshot and lets them go on; a job restored from that
//! checkpoint issues them again before any new input. Their results, emitted
//! after the barrier, belong to the next checkpoint, so nothing is lost or
//! written twice.

use super::http::NetworkDenied;
use super::sandbox::{MemoryBudget, Sandbox};
use super::transform::lift;
use super::{Exports, InstanceSettings, Lowering, Module, hex, unhex, wit_enricher};
use super::{Guest, World};
use crate::checkpoint::{Barrier, OperatorState, RestoredState};
use crate::error::{PlanError, RuntimeError, StateError, WasmError};
use crate::runtime::batch::{Origin, RowKind};
use crate::runtime::kind::{self, OperatorKind, PlanContext, Planned};
use crate::runtime::{Batch, ModuleRef, NodeMetrics, Operator, OperatorFactory, Output, Subtask};
use crate::units::Dur;
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// How an enricher runs its calls (`capacity`, `timeout`, … in the spec).
#[derive(Debug, Clone, PartialEq)]
pub struct EnricherSettings {
    /// Records in flight per subtask.
    pub capacity: usize,
    /// Bound on one attempt (the call and all its requests).
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// Wait before the first retry; doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Emit in input order (else as results complete).
    pub ordered: bool,
}

/// One instance, ready for calls.
struct Instance {
    sandbox: Sandbox,
    guest: wit_enricher::Guest,
}

impl Instance {
    async fn start(module: &Module, settings: &InstanceSettings) -> Result<Instance, WasmError> {
        let uid = settings.uid.to_string();
        let mut sandbox = Sandbox::new(module, settings).await?;
        let Exports::Enricher(indices) = &module.exports else {
            unreachable!("module loaded for the enricher world");
        };
        let guest = sandbox.exports(&uid, |store, instance| indices.load(store, instance))?;
        sandbox.arm();
        let opened = guest.call_open(&mut sandbox.store, &settings.config).await;
        sandbox.opened(&uid, opened)?;
        // From here on the attempt timeout bounds a call: the guest yields to
        // the executor every epoch tick (see `attempts`), so that the timeout
        // can stop even a guest that computes without end, and the subtask's
        // other records run meanwhile.
        sandbox.store.epoch_deadline_async_yield_and_update(1);
        Ok(Instance { sandbox, guest })
    }
}

/// How one record's enrichment ended.
enum Outcome {
    Done(Batch),
    /// Every attempt failed; the last error.
    Failed(String),
    /// The job must stop.
    Fatal(RuntimeError),
}

/// A record that arrived and whose result has not left yet.
struct Pending {
    seq: u64,
    /// The input record, alone in its batch (shared with its task).
    input: Arc<Batch>,
    outcome: Option<Outcome>,
}

/// What a finished task hands back: its record, the outcome, and the
/// instance if it is still usable.
type Finished = (u64, Outcome, Option<Instance>);

pub struct WasmEnricher {
    module: Arc<Module>,
    settings: Arc<InstanceSettings>,
    /// The subtask's instances share one `memory_limit`.
    memory: Arc<MemoryBudget>,
    enrich: Arc<EnricherSettings>,
    subtask: u32,
    parallelism: u32,
    /// Whether the node's output may be a changelog.
    changelog: bool,
    idle: Vec<Instance>,
    running: JoinSet<Finished>,
    /// In input order (so sorted by `seq`).
    pending: VecDeque<Pending>,
    /// How many of `pending` have their outcome.
    completed: usize,
    next_seq: u64,
}

impl WasmEnricher {
    pub fn new(
        module: Arc<Module>,
        settings: Arc<InstanceSettings>,
        enrich: Arc<EnricherSettings>,
        subtask: u32,
        parallelism: u32,
        changelog: bool,
    ) -> WasmEnricher {
        let memory = Arc::new(MemoryBudget::new(settings.memory_limit));
        let settings = Arc::new(InstanceSettings {
            shared_memory: Some(memory.clone()),
            ..(*settings).clone()
        });
        WasmEnricher {
            module,
            settings,
            memory,
            enrich,
            subtask,
            parallelism,
            changelog,
            idle: Vec::new(),
            running: JoinSet::new(),
            pending: VecDeque::new(),
            completed: 0,
            next_seq: 0,
        }
    }

    /// Starts enriching `input` (one record).
    fn issue(&mut self, input: Batch) {
        let input = Arc::new(input);
        let seq = self.next_seq;
        self.next_seq += 1;
        let instance = self.idle.pop();
        self.running.spawn(attempts(
            self.module.clone(),
            self.settings.clone(),
            self.enrich.clone(),
            instance,
            (input.clone(), seq),
            self.changelog,
        ));
        self.pending.push_back(Pending {
            seq,
            input,
            outcome: None,
        });
    }

    /// Takes a finished task's result.
    fn finished(
        &mut self,
        joined: Result<Finished, tokio::task::JoinError>,
    ) -> Result<(), RuntimeError> {
        let (seq, outcome, instance) = joined.map_err(|e| WasmError::Trap {
            uid: self.settings.uid.to_string(),
            at: String::new(),
            message: format!("an enrichment task failed: {e}"),
        })?;
        if let Outcome::Fatal(e) = outcome {
            return Err(e);
        }
        if let Some(i) = instance {
            self.idle.push(i);
        }
        let i = self
            .pending
            .binary_search_by_key(&seq, |p| p.seq)
            .expect("a finished record is pending");
        self.pending[i].outcome = Some(outcome);
        self.completed += 1;
        Ok(())
    }

    /// Takes the results of tasks that have finished, without waiting.
    fn collect_finished(&mut self) -> Result<(), RuntimeError> {
        while let Some(joined) = self.running.try_join_next() {
            self.finished(joined)?;
        }
        Ok(())
    }

    /// Before a record is issued: when no instance is idle and another one
    /// (as big as the biggest so far) would not fit in the memory budget,
    /// waits for running records to hand theirs back.
    async fn make_room(&mut self) -> Result<(), RuntimeError> {
        while self.idle.is_empty() && !self.running.is_empty() && !self.memory.room_for_another() {
            self.wait_one().await?;
        }
        Ok(())
    }

    /// Waits for one task to finish.
    async fn wait_one(&mut self) -> Result<(), RuntimeError> {
        match self.running.join_next().await {
            Some(joined) => self.finished(joined),
            None => Ok(()),
        }
    }

    /// Emits the results that may leave: the completed prefix (ordered) or
    /// every completed record (unordered).
    fn emit_ready(&mut self, out: &mut Output) -> Result<(), RuntimeError> {
        if self.enrich.ordered {
            while self.pending.front().is_some_and(|p| p.outcome.is_some()) {
                let p = self.pending.pop_front().expect("front");
                self.completed -= 1;
                emit(p, out)?;
            }
            return Ok(());
        }
        let mut i = 0;
        while self.completed > 0 && i < self.pending.len() {
            if self.pending[i].outcome.is_some() {
                let p = self.pending.remove(i).expect("in range");
                self.completed -= 1;
                emit(p, out)?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Waits for every record in flight and emits all results.
    async fn drain(&mut self, out: &mut Output) -> Result<(), RuntimeError> {
        while !self.running.is_empty() {
            self.wait_one().await?;
            self.emit_ready(out)?;
        }
        self.emit_ready(out)
    }
}

fn emit(p: Pending, out: &mut Output) -> Result<(), RuntimeError> {
    match p.outcome.expect("completed") {
        Outcome::Done(batch) => out.emit(batch),
        Outcome::Failed(message) => {
            out.dead_letter(p.input.get(0), &format!("enrichment failed: {message}"))?
        }
        Outcome::Fatal(e) => return Err(e),
    }
    Ok(())
}

/// All attempts at one record, on its own task.
async fn attempts(
    module: Arc<Module>,
    settings: Arc<InstanceSettings>,
    enrich: Arc<EnricherSettings>,
    mut instance: Option<Instance>,
    (input, seq): (Arc<Batch>, u64),
    changelog: bool,
) -> Finished {
    let mut lowering = Lowering::default();
    let mut backoff = enrich.backoff;
    let mut last = String::new();
    for attempt in 0..=enrich.retries {
        if attempt > 0 {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(enrich.max_backoff);
        }
        let mut live = match instance.take() {
            Some(i) => i,
            // The operator's first instance opened when the job started, so
            // a later one that cannot start lacks memory (its budget is
            // shared): an attempt that failed.
            None => match Instance::start(&module, &settings).await {
                Ok(i) => i,
                Err(e) => {
                    last = format!("no instance could start: {e}");
                    continue;
                }
            },
        };
        // The first yield one tick into the attempt (not after the
        // `call_timeout` that `open` ran under), so that `timeout` below stops
        // a guest that never returns.
        live.sandbox.store.set_epoch_deadline(1);
        let call = live
            .guest
            .call_process(&mut live.sandbox.store, lowering.batch(&input));
        match tokio::time::timeout(enrich.timeout, call).await {
            // The call was abandoned mid-way: the instance goes.
            Err(_) => last = format!("timed out after {:?}", enrich.timeout),
            Ok(Err(e)) => {
                if let Some(denied) = e.downcast_ref::<NetworkDenied>() {
                    let e = WasmError::Denied {
                        message: denied.to_string(),
                    };
                    return (seq, Outcome::Fatal(e.into()), None);
                }
                last = format!("the operator trapped: {}", live.sandbox.describe(&e));
            }
            Ok(Ok(output)) => {
                if let Some(e) = output.errors.first() {
                    last = e.message.clone();
                    instance = Some(live);
                    continue;
                }
                let lifted = lift(
                    &settings.uid,
                    &input,
                    output.records,
                    &output.origins,
                    changelog,
                );
                return match lifted {
                    Ok(batch) => (seq, Outcome::Done(batch), Some(live)),
                    Err(e) => (seq, Outcome::Fatal(e), None),
                };
            }
        }
    }
    let tries = enrich.retries + 1;
    let message = format!(
        "{last} ({tries} attempt{})",
        if tries == 1 { "" } else { "s" }
    );
    (seq, Outcome::Failed(message), instance)
}

#[async_trait]
impl Operator for WasmEnricher {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        // One instance up front, so that a module that cannot open fails the
        // job before any input.
        let first = Instance::start(&self.module, &self.settings).await?;
        self.idle.push(first);
        Ok(())
    }

    async fn process_batch(&mut self, batch: Batch, out: &mut Output) -> Result<(), RuntimeError> {
        let started = std::time::Instant::now();
        for i in 0..batch.len() {
            self.collect_finished()?;
            self.emit_ready(out)?;
            while self.pending.len() >= self.enrich.capacity {
                self.wait_one().await?;
                self.emit_ready(out)?;
            }
            self.make_room().await?;
            self.emit_ready(out)?;
            let mut single = Batch::default();
            single.push_record(batch.get(i), None);
            self.issue(single);
        }
        self.collect_finished()?;
        self.emit_ready(out)?;
        NodeMetrics::add(
            &out.info().metrics.wasm_nanos,
            started.elapsed().as_nanos() as u64,
        );
        Ok(())
    }

    async fn on_watermark(
        &mut self,
        _watermark: i64,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        self.drain(out).await
    }

    async fn close(&mut self, out: &mut Output) -> Result<(), RuntimeError> {
        self.drain(out).await
    }

    /// Results that came in since the last input.
    async fn flush(&mut self, out: &mut Output) -> Result<Option<i64>, RuntimeError> {
        self.collect_finished()?;
        self.emit_ready(out)?;
        Ok(None)
    }

    fn wakeup(&self) -> Option<Duration> {
        (!self.pending.is_empty()).then_some(Duration::from_millis(1))
    }

    async fn snapshot(
        &mut self,
        _barrier: Barrier,
        out: &mut Output,
    ) -> Result<OperatorState, RuntimeError> {
        // What is complete goes before the barrier; the rest is stored.
        self.collect_finished()?;
        self.emit_ready(out)?;
        let in_flight: Vec<serde_json::Value> =
            self.pending.iter().map(|p| encode(&p.input)).collect();
        Ok(OperatorState {
            meta: serde_json::json!({ "in_flight": in_flight }),
            ..OperatorState::default()
        })
    }

    async fn restore(&mut self, state: RestoredState) -> Result<(), RuntimeError> {
        let bad = |message: String| RuntimeError::State {
            uid: self.settings.uid.to_string(),
            error: StateError::Corrupt(format!("{}: {message}", state.location)),
        };
        let mut records = Vec::new();
        // The records of old subtask j go to new subtask j % parallelism.
        for (j, meta) in state.metas.iter().enumerate() {
            if j as u32 % self.parallelism != self.subtask {
                continue;
            }
            let Some(list) = meta.get("in_flight") else {
                continue;
            };
            let list = list
                .as_array()
                .ok_or_else(|| bad("`in_flight` is not a list".into()))?;
            for r in list {
                records.push(decode(r).map_err(|e| bad(format!("in-flight record: {e}")))?);
            }
        }
        if !records.is_empty() {
            tracing::info!(
                operator = %self.settings.uid,
                subtask = self.subtask,
                "issuing {} records that were in flight at the checkpoint again",
                records.len()
            );
        }
        for r in records {
            self.make_room().await?;
            self.issue(r);
        }
        Ok(())
    }
}

/// A one-record batch as JSON (bytes in hex).
fn encode(b: &Batch) -> serde_json::Value {
    let r = b.get(0);
    let headers: Vec<[String; 2]> = r.headers().map(|(n, v)| [hex(n), hex(v)]).collect();
    let origin = r.origin();
    serde_json::json!({
        "key": r.key().map(hex),
        "value": hex(r.value()),
        "timestamp": r.timestamp(),
        "kind": r.kind().short(),
        "headers": headers,
        "origin": [origin.split, origin.position],
    })
}

fn decode(v: &serde_json::Value) -> Result<Batch, String> {
    let bytes = |v: &serde_json::Value| -> Result<Vec<u8>, String> {
        let s = v.as_str().ok_or("expected a hex string")?;
        unhex(s)
    };
    let key = match v.get("key") {
        None | Some(serde_json::Value::Null) => None,
        Some(k) => Some(bytes(k)?),
    };
    let value = bytes(v.get("value").ok_or("no value")?)?;
    let timestamp = v.get("timestamp").and_then(serde_json::Value::as_i64);
    // Snapshots from before records had kinds hold inserts.
    let kind = match v.get("kind") {
        None => RowKind::Insert,
        Some(k) => k
            .as_str()
            .and_then(RowKind::parse)
            .ok_or_else(|| format!("bad record kind {k}"))?,
    };
    let mut headers = Vec::new();
    for h in v
        .get("headers")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let pair = h.as_array().filter(|p| p.len() == 2).ok_or("bad header")?;
        headers.push((bytes(&pair[0])?, bytes(&pair[1])?));
    }
    let origin = v
        .get("origin")
        .and_then(serde_json::Value::as_array)
        .filter(|o| o.len() == 2)
        .and_then(|o| {
            Some(Origin {
                split: u32::try_from(o[0].as_u64()?).ok()?,
                position: o[1].as_u64()?,
            })
        })
        .unwrap_or(Origin::NONE);
    let mut b = Batch::default();
    b.push_with_headers(
        key.as_deref(),
        &value,
        timestamp,
        origin,
        headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
    );
    b.set_last_kind(kind);
    Ok(b)
}

/// How an enricher runs, as a spec writes it (beside the module's keys in
/// `enricher:`); every field has a default.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct EnricherOptions {
    /// Records in flight per subtask (default 100).
    #[serde(default)]
    pub capacity: Option<u32>,
    /// Bound on one attempt (default 5s).
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Attempts after the first failure (default 2).
    #[serde(default)]
    pub retries: Option<u32>,
    /// First wait before a retry (default 100ms), doubling...
    #[serde(default)]
    pub backoff: Option<Dur>,
    /// ... up to this (default 5s).
    #[serde(default)]
    pub max_backoff: Option<Dur>,
    /// `ordered` (default) or `unordered`.
    #[serde(default)]
    pub order: Option<Order>,
}

/// The keys of [`EnricherOptions`].
const OPTIONS: [&str; 6] = [
    "capacity",
    "timeout",
    "retries",
    "backoff",
    "max_backoff",
    "order",
];

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Ordered,
    Unordered,
}

impl EnricherOptions {
    /// The settings, or the field that is out of range and why.
    pub fn settings(&self) -> Result<EnricherSettings, (&'static str, String)> {
        let capacity = self.capacity.unwrap_or(100);
        if !(1..=10_000).contains(&capacity) {
            return Err((
                "capacity",
                format!("capacity must be between 1 and 10000, not {capacity}"),
            ));
        }
        let timeout = self.timeout.map_or(Duration::from_secs(5), |d| d.0);
        if timeout.is_zero() {
            return Err(("timeout", "the timeout must be positive".to_owned()));
        }
        let backoff = self.backoff.map_or(Duration::from_millis(100), |d| d.0);
        Ok(EnricherSettings {
            capacity: capacity as usize,
            timeout,
            retries: self.retries.unwrap_or(2),
            backoff,
            max_backoff: self
                .max_backoff
                .map_or(Duration::from_secs(5), |d| d.0)
                .max(backoff),
            ordered: self.order != Some(Order::Unordered),
        })
    }
}

/// `enricher:` in a spec: an async enricher, its module's keys (`module`,
/// `config`, `grants`, …) beside how it runs (`capacity`, `timeout`, …).
pub struct EnricherKind;

impl OperatorKind for EnricherKind {
    fn tag(&self) -> &'static str {
        "enricher"
    }

    fn what(&self) -> &'static str {
        "an async enricher"
    }

    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError> {
        let Some(serde_yaml::Value::Mapping(all)) = cx.value("enricher") else {
            return Err(kind::error(
                cx,
                "enricher",
                "`enricher` takes a module (`module`, `config`, `grants`, …) and how it runs (`capacity`, `timeout`, …)",
            ));
        };
        let (mut options, mut module) = (serde_yaml::Mapping::new(), serde_yaml::Mapping::new());
        for (k, v) in all {
            if k.as_str().is_some_and(|k| OPTIONS.contains(&k)) {
                options.insert(k.clone(), v.clone());
            } else {
                module.insert(k.clone(), v.clone());
            }
        }
        fn parse<T: serde::de::DeserializeOwned>(
            cx: &dyn PlanContext,
            section: serde_yaml::Mapping,
        ) -> Result<T, PlanError> {
            serde_yaml::from_value(serde_yaml::Value::Mapping(section))
                .map_err(|e| kind::error(cx, "enricher", format!("`enricher`: {e}")))
        }
        let options: EnricherOptions = parse(cx, options)?;
        let settings = options
            .settings()
            .map_err(|(f, m)| kind::error(cx, &format!("enricher.{f}"), m))?;
        let guest = super::plan::guest_of(cx, "enricher", parse(cx, module)?, World::Enricher)?;
        Ok(Planned::new(Arc::new(EnricherFactory {
            guest,
            enrich: Arc::new(settings),
        })))
    }
}

/// Makes an async enricher's subtasks.
pub struct EnricherFactory {
    pub guest: Guest,
    pub enrich: Arc<EnricherSettings>,
}

impl OperatorFactory for EnricherFactory {
    fn kind(&self) -> &'static str {
        "enricher"
    }

    fn changelog(&self) -> crate::runtime::operator::ChangelogInput {
        crate::runtime::operator::ChangelogInput::Kept
    }

    fn emits_changelog(&self) -> bool {
        self.guest.changelog
    }

    fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator> {
        Box::new(WasmEnricher::new(
            self.guest.module.clone(),
            self.guest.settings.clone(),
            self.enrich.clone(),
            subtask.index,
            subtask.parallelism,
            subtask.info.changelog,
        ))
    }

    fn module(&self) -> Option<ModuleRef<'_>> {
        Some(self.guest.module_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_records_survive_the_snapshot_encoding() {
        let mut b = Batch::default();
        b.push_with_headers(
            Some(b"c-1"),
            b"{\"a\":1}",
            Some(1_700_000_000_000),
            Origin {
                split: 3,
                position: 99,
            },
            [(&b"h"[..], &[0u8, 255][..])],
        );
        b.set_last_kind(RowKind::UpdateBefore);
        let back = decode(&encode(&b)).unwrap();
        assert_eq!(back.get(0).kind(), RowKind::UpdateBefore);
        let (r, s) = (back.get(0), b.get(0));
        assert_eq!(r.key(), s.key());
        assert_eq!(r.value(), s.value());
        assert_eq!(r.timestamp(), s.timestamp());
        assert_eq!(r.origin(), s.origin());
        assert_eq!(
            r.headers().collect::<Vec<_>>(),
            s.headers().collect::<Vec<_>>()
        );
        assert!(decode(&serde_json::json!({"value": "abc"})).is_err());
        // Records in flight in a snapshot from before kinds are inserts.
        let old = decode(&serde_json::json!({"value": "00"})).unwrap();
        assert_eq!(old.get(0).kind(), RowKind::Insert);
        let bad = decode(&serde_json::json!({"value": "00", "kind": "+X"}));
        assert!(bad.unwrap_err().contains("bad record kind"));
    }
}
