//! A Wasm module of the `transform-operator` world as a runtime operator:
//! map, filter and flat-map.
//!
//! Each burst of input is one call: the batches that arrive together (one
//! source poll, when the transform is chained to its source; one channel
//! item otherwise) are collected with the watermarks between them, and at
//! the burst's end go to the module as one batch. Its output is passed on
//! with each watermark back in its place, after the output of the records
//! that came before it, so a window downstream sees the same stream as if
//! every batch had been its own call. (With watermarks per event, a source
//! cuts a batch at every watermark, often after one record: one call per
//! record would cost several times the records' own work.) A burst larger
//! than 4,096 records or 1 MiB — what a join or a window releases at once —
//! is cut into calls of that size, so that the guest's memory stays small.
//!
//! When a call traps, the instance is gone (a trap
//! leaves guest memory in an unknown state); the operator starts a fresh one
//! and replays the batch one record at a time to find the record that traps.
//! That record goes to the dead-letter output, or stops the job with an error
//! naming the operator and the record's origin; the others are processed
//! normally, so a trap costs neither data nor duplicates.

use super::sandbox::Sandbox;
use super::{
    Exports, InstanceSettings, Lowering, Module, checked_span, trapped_on, wit, wit_transform,
};
use super::{Guest, World};
use crate::error::{PlanError, RuntimeError, WasmError};
use crate::runtime::batch::{HeaderMeta, MemberRequest, Members, RecordMeta};
use crate::runtime::kind::{OperatorKind, PlanContext, Planned};
use crate::runtime::{Batch, ModuleRef, NodeMetrics, Operator, OperatorFactory, Output, Subtask};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Instant;

pub struct WasmTransform {
    module: Arc<Module>,
    settings: Arc<InstanceSettings>,
    live: Option<(Sandbox, wit_transform::Guest)>,
    lowering: Lowering,
    /// This burst's records, and its watermarks, each with the number of
    /// records before it.
    pending: Batch,
    marks: Vec<(usize, i64)>,
    /// Where to ask the sources feeding the operator to find the members
    /// the module reads, until asked.
    members: Option<Arc<MemberRequest>>,
}

impl WasmTransform {
    pub fn new(module: Arc<Module>, settings: Arc<InstanceSettings>) -> WasmTransform {
        WasmTransform {
            module,
            settings,
            live: None,
            lowering: Lowering::default(),
            pending: Batch::default(),
            marks: Vec::new(),
            members: None,
        }
    }

    async fn start(&mut self) -> Result<(), WasmError> {
        let uid = self.settings.uid.to_string();
        let mut sandbox = Sandbox::new(&self.module, &self.settings).await?;
        let Exports::Transform(indices) = &self.module.exports else {
            unreachable!("module loaded for the transform world");
        };
        let guest = sandbox.exports(&uid, |store, instance| indices.load(store, instance))?;
        sandbox.arm();
        let opened = guest
            .call_open(&mut sandbox.store, &self.settings.config)
            .await;
        sandbox.opened(&uid, opened)?;
        self.live = Some((sandbox, guest));
        Ok(())
    }

    /// One call; on a trap the instance is dropped and the trap described.
    /// `members`: those the source found in `batch`'s records, if any.
    async fn call(
        &mut self,
        batch: &Batch,
        members: Option<Members>,
    ) -> Result<Result<wit_transform::TransformOutput, String>, WasmError> {
        if self.live.is_none() {
            self.start().await?;
        }
        let (sandbox, guest) = self.live.as_mut().expect("started");
        sandbox.arm();
        sandbox.store.data_mut().fields.locate(batch, members);
        let param = self.lowering.batch(batch);
        match guest.call_process(&mut sandbox.store, param).await {
            Ok(output) => {
                // The module projects after its first call.
                let names = sandbox.store.data().fields.names();
                if !names.is_empty()
                    && let Some(request) = self.members.take()
                {
                    request.ask(names);
                }
                if sandbox.worn() {
                    tracing::debug!(operator = %self.settings.uid, "replacing an instance near its memory limit");
                    self.live = None;
                }
                Ok(Ok(output))
            }
            Err(e) => {
                let description = sandbox.describe(&e);
                self.live = None;
                Ok(Err(description))
            }
        }
    }

    /// Passes the output of a call on: with `marks`, each watermark after
    /// the output of the input records before it.
    fn emit(
        &self,
        input: &Batch,
        output: wit_transform::TransformOutput,
        marks: &[(usize, i64)],
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let wit_transform::TransformOutput {
            records,
            origins,
            errors,
        } = output;
        let batch = lift(
            &self.settings.uid,
            input,
            records,
            &origins,
            out.info().changelog,
        )?;
        for e in errors {
            if e.index as usize >= input.len() {
                return Err(contract(
                    &self.settings.uid,
                    format!("an error for record {} of {}", e.index, input.len()),
                ));
            }
            out.dead_letter(input.get(e.index as usize), &e.message)?;
        }
        if marks.is_empty() {
            out.emit(batch);
            return Ok(());
        }
        // Records come out in their inputs' order (a module that reorders
        // them only moves its own records past a watermark).
        let mut part = Batch::default();
        let mut marks = marks.iter().peekable();
        for (i, &origin) in origins.iter().enumerate() {
            while let Some(&(_, t)) = marks.next_if(|&&(before, _)| before <= origin as usize) {
                out.emit(std::mem::take(&mut part));
                out.emit_watermark(t);
            }
            let r = batch.get(i);
            part.push_record(r, None);
        }
        out.emit(part);
        for &(_, t) in marks {
            out.emit_watermark(t);
        }
        Ok(())
    }

    /// After a trap: replays the batch record by record on fresh instances.
    async fn isolate(
        &mut self,
        batch: &Batch,
        marks: &[(usize, i64)],
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let mut single = Batch::default();
        let mut marks = marks.iter().peekable();
        for i in 0..batch.len() {
            while let Some(&(_, t)) = marks.next_if(|&&(before, _)| before <= i) {
                out.emit_watermark(t);
            }
            single.clear();
            single.push_record(batch.get(i), None);
            match self.call(&single, None).await? {
                Ok(output) => self.emit(&single, output, &[], out)?,
                Err(description) => trapped_on(out, &self.settings.uid, batch.get(i), description)?,
            }
        }
        for &(_, t) in marks {
            out.emit_watermark(t);
        }
        Ok(())
    }

    /// The burst collected so far: one call, or one per segment of a burst
    /// larger than [`SEGMENT_RECORDS`] or [`SEGMENT_BYTES`] (what a join or
    /// a window releases at once), so that the guest's memory, which never
    /// shrinks, holds one segment and its output at most.
    async fn run(&mut self, out: &mut Output) -> Result<(), RuntimeError> {
        let mut batch = std::mem::take(&mut self.pending);
        // Taken, not copied: the call hands them on as they are.
        let members = batch.members.take();
        let marks = std::mem::take(&mut self.marks);
        if batch.is_empty() {
            for (_, t) in marks {
                out.emit_watermark(t);
            }
            return Ok(());
        }
        let parts = segments(&batch, &marks);
        if parts.len() == 1 {
            return self.run_segment(&batch, members, &marks, out).await;
        }
        let mut part = Batch::default();
        for (range, marks) in parts {
            part.clear();
            for i in range {
                part.push_record(batch.get(i), None);
            }
            self.run_segment(&part, None, &marks, out).await?;
        }
        Ok(())
    }

    /// One call for `batch`, with its watermarks.
    async fn run_segment(
        &mut self,
        batch: &Batch,
        members: Option<Members>,
        marks: &[(usize, i64)],
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let result = match self.call(batch, members).await? {
            Ok(output) => self.emit(batch, output, marks, out),
            Err(description) => {
                tracing::warn!(
                    operator = %self.settings.uid,
                    "trapped on a batch of {} records ({description}); replaying them one by one",
                    batch.len()
                );
                self.isolate(batch, marks, out).await
            }
        };
        NodeMetrics::add(
            &out.info().metrics.wasm_nanos,
            started.elapsed().as_nanos() as u64,
        );
        result
    }
}

/// One call of a burst: its records, and its watermarks counted from its
/// first record.
type Segment = (std::ops::Range<usize>, Vec<(usize, i64)>);

/// Records of one call at most, when a burst is larger.
const SEGMENT_RECORDS: usize = 4096;
/// Value bytes of one call at most (or one record, if it is larger).
const SEGMENT_BYTES: usize = 1 << 20;

/// The calls a burst of `batch` with watermarks `marks` (each after the
/// first `n` records) is made of: the records of each, and its watermarks
/// counted from its first record. A watermark between two calls ends the
/// first.
fn segments(batch: &Batch, marks: &[(usize, i64)]) -> Vec<Segment> {
    let mut parts = Vec::new();
    let mut marks = marks.iter().copied().peekable();
    let (mut start, mut bytes) = (0, 0);
    for i in 0..batch.len() {
        let len = batch.get(i).value().len();
        if i > start && (i - start == SEGMENT_RECORDS || bytes + len > SEGMENT_BYTES) {
            let mine = std::iter::from_fn(|| marks.next_if(|&(before, _)| before <= i))
                .map(|(before, t)| (before - start, t))
                .collect();
            parts.push((start..i, mine));
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    let rest = marks.map(|(before, t)| (before - start, t)).collect();
    parts.push((start..batch.len(), rest));
    parts
}

#[async_trait]
impl Operator for WasmTransform {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        Ok(self.start().await?)
    }

    async fn process_batch(&mut self, batch: Batch, _out: &mut Output) -> Result<(), RuntimeError> {
        if self.pending.is_empty() {
            self.pending = batch;
        } else {
            for r in batch.iter() {
                self.pending.push_record(r, None);
            }
        }
        Ok(())
    }

    async fn on_watermark(&mut self, t: i64, _out: &mut Output) -> Result<(), RuntimeError> {
        self.marks.push((self.pending.len(), t));
        Ok(())
    }

    fn buffers(&self) -> bool {
        true
    }

    async fn flush(&mut self, out: &mut Output) -> Result<Option<i64>, RuntimeError> {
        self.run(out).await?;
        Ok(None)
    }

    async fn close(&mut self, out: &mut Output) -> Result<(), RuntimeError> {
        self.run(out).await
    }
}

fn contract(uid: &str, message: String) -> RuntimeError {
    RuntimeError::Wasm(WasmError::Contract {
        uid: uid.to_owned(),
        message,
    })
}

/// A guest's output records as a host batch, checked: every span inside
/// the data, every origin an input record (whose origin the output record
/// takes), every kind an insert unless the node's output is a
/// `changelog`.
pub(super) fn lift(
    uid: &str,
    input: &Batch,
    records: wit::BatchResult,
    origins: &[u32],
    changelog: bool,
) -> Result<Batch, RuntimeError> {
    let contract = |message: String| contract(uid, message);
    let wit::BatchResult {
        data,
        records: metas,
        headers: wit_headers,
    } = records;
    if origins.len() != metas.len() {
        return Err(contract(format!(
            "{} records but {} origins",
            metas.len(),
            origins.len()
        )));
    }
    let len = data.len();
    let mut headers = Vec::with_capacity(wit_headers.len());
    for h in &wit_headers {
        headers.push(HeaderMeta {
            name: checked_span(h.name, len).map_err(contract)?,
            value: checked_span(h.value, len).map_err(contract)?,
        });
    }
    let mut batch = Batch {
        data,
        records: Vec::with_capacity(metas.len()),
        headers,
        members: None,
    };
    for (m, &o) in metas.iter().zip(origins) {
        let from = input.records.get(o as usize).ok_or_else(|| {
            contract(format!(
                "origin {o} but the input had {} records",
                input.len()
            ))
        })?;
        if m.headers_start as u64 + m.headers_len as u64 > batch.headers.len() as u64 {
            return Err(contract(
                "a record's headers reach past the header list".into(),
            ));
        }
        batch.records.push(RecordMeta {
            key: m
                .key
                .map(|k| checked_span(k, len))
                .transpose()
                .map_err(contract)?,
            value: checked_span(m.value, len).map_err(contract)?,
            timestamp: m.timestamp,
            origin: from.origin,
            headers_start: m.headers_start,
            headers_len: m.headers_len,
            kind: super::emitted_kind(m.kind, changelog).map_err(contract)?,
        });
    }
    Ok(batch)
}

/// Makes a Wasm transform's instances.
pub struct TransformFactory(pub Guest);

/// `wasm:` in a spec: a stateless Wasm transform.
pub struct TransformKind;

impl OperatorKind for TransformKind {
    fn tag(&self) -> &'static str {
        "wasm"
    }

    fn what(&self) -> &'static str {
        "a Wasm transform"
    }

    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError> {
        let guest = super::plan::guest(cx, "wasm", World::Transform)?;
        Ok(Planned::new(Arc::new(TransformFactory(guest))))
    }
}

impl OperatorFactory for TransformFactory {
    fn changelog(&self) -> crate::runtime::operator::ChangelogInput {
        crate::runtime::operator::ChangelogInput::Kept
    }

    fn emits_changelog(&self) -> bool {
        self.0.changelog
    }

    fn kind(&self) -> &'static str {
        "transform"
    }

    fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator> {
        let mut op = WasmTransform::new(self.0.module.clone(), self.0.settings.clone());
        op.members = subtask.members.cloned();
        Box::new(op)
    }

    fn asks_members(&self) -> bool {
        true
    }

    fn module(&self) -> Option<ModuleRef<'_>> {
        Some(self.0.module_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::batch::Origin;

    fn batch(lens: &[usize]) -> Batch {
        let mut b = Batch::default();
        for &len in lens {
            b.push(None, &vec![b'x'; len], Some(0), Origin::NONE);
        }
        b
    }

    /// A burst is cut every 4,096 records or 1 MiB of values, and each
    /// watermark goes with the call of the records before it, counted from
    /// that call's first record.
    #[test]
    fn a_large_burst_is_cut_into_calls_with_their_watermarks() {
        let small = batch(&[10; 3]);
        let marks = [(0, 1), (2, 2), (3, 3)];
        assert_eq!(segments(&small, &marks), [(0..3, marks.to_vec())]);

        let many = batch(&vec![10; 2 * SEGMENT_RECORDS + 5]);
        let n = SEGMENT_RECORDS;
        let marks = [(0, 1), (n - 1, 2), (n, 3), (n + 1, 4), (2 * n + 5, 5)];
        assert_eq!(
            segments(&many, &marks),
            [
                (0..n, vec![(0, 1), (n - 1, 2), (n, 3)]),
                (n..2 * n, vec![(1, 4)]),
                (2 * n..2 * n + 5, vec![(5, 5)]),
            ]
        );

        // 300 KiB values: three to a call; a larger one is a call alone.
        let big = batch(&[300 << 10, 300 << 10, 300 << 10, 300 << 10, 2 << 20, 10]);
        let got: Vec<_> = segments(&big, &[]).into_iter().map(|(r, _)| r).collect();
        assert_eq!(got, [0..3, 3..4, 4..5, 5..6]);
    }
}
