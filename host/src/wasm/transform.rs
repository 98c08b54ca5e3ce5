//! A Wasm module of the `transform-operator` world as a runtime operator:
//! map, filter and flat-map.
//!
//! Each batch is one call. When a call traps, the instance is gone (a trap
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
use crate::runtime::batch::{HeaderMeta, RecordMeta};
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
}

impl WasmTransform {
    pub fn new(module: Arc<Module>, settings: Arc<InstanceSettings>) -> WasmTransform {
        WasmTransform {
            module,
            settings,
            live: None,
            lowering: Lowering::default(),
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
    async fn call(
        &mut self,
        batch: &Batch,
    ) -> Result<Result<wit_transform::TransformOutput, String>, WasmError> {
        if self.live.is_none() {
            self.start().await?;
        }
        let (sandbox, guest) = self.live.as_mut().expect("started");
        sandbox.arm();
        let param = self.lowering.batch(batch);
        match guest.call_process(&mut sandbox.store, param).await {
            Ok(output) => {
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

    fn emit(
        &self,
        input: &Batch,
        output: wit_transform::TransformOutput,
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
        out.emit(batch);
        Ok(())
    }

    /// After a trap: replays the batch record by record on fresh instances.
    async fn isolate(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RuntimeError> {
        let mut single = Batch::default();
        for i in 0..batch.len() {
            single.clear();
            single.push_record(batch.get(i), None);
            match self.call(&single).await? {
                Ok(output) => self.emit(&single, output, out)?,
                Err(description) => trapped_on(out, &self.settings.uid, batch.get(i), description)?,
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Operator for WasmTransform {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        Ok(self.start().await?)
    }

    async fn process_batch(&mut self, batch: Batch, out: &mut Output) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let result = match self.call(&batch).await? {
            Ok(output) => self.emit(&batch, output, out),
            Err(description) => {
                tracing::warn!(
                    operator = %self.settings.uid,
                    "trapped on a batch of {} records ({description}); replaying them one by one",
                    batch.len()
                );
                self.isolate(&batch, out).await
            }
        };
        NodeMetrics::add(
            &out.info().metrics.wasm_nanos,
            started.elapsed().as_nanos() as u64,
        );
        result
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

    fn create(&self, _subtask: &Subtask<'_>) -> Box<dyn Operator> {
        Box::new(WasmTransform::new(
            self.0.module.clone(),
            self.0.settings.clone(),
        ))
    }

    fn module(&self) -> Option<ModuleRef<'_>> {
        Some(self.0.module_ref())
    }
}
