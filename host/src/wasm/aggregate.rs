//! A Wasm module of the `aggregate-operator` world as a window's
//! [`Aggregator`].
//!
//! The host keeps the accumulators; each call takes a batch of them and gives
//! them back updated. A trap in `add` is isolated like a trap in a transform:
//! the instance is replaced and the records are added one at a time, so the
//! record that traps goes to the dead-letter output (or stops the job) and the
//! accumulators stay exact. A trap in `merge` or `get-result` involves no
//! single record and stops the job.

use super::sandbox::Sandbox;
use super::{
    Exports, InstanceSettings, Lowering, Module, trapped_on, wit, wit_aggregate, wit_spans,
};
use crate::error::{RuntimeError, WasmError};
use crate::runtime::aggregate::{Aggregator, ByteList, WindowRef};
use crate::runtime::batch::{MemberRequest, Span};
use crate::runtime::{Batch, NodeInfo, NodeMetrics, Output};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Instant;

pub struct WasmAggregator {
    module: Arc<Module>,
    settings: Arc<InstanceSettings>,
    info: Arc<NodeInfo>,
    live: Option<(Sandbox, wit_aggregate::Guest)>,
    empty: Vec<u8>,
    lowering: Lowering,
    spans: Vec<wit::Span>,
    /// Where to ask the sources feeding the window to find the members
    /// the module projects, until asked.
    members: Option<Arc<MemberRequest>>,
}

enum Call<T> {
    Done(T),
    Trapped(String),
}

impl WasmAggregator {
    pub fn new(
        module: Arc<Module>,
        settings: Arc<InstanceSettings>,
        info: Arc<NodeInfo>,
    ) -> WasmAggregator {
        WasmAggregator {
            module,
            settings,
            info,
            live: None,
            empty: Vec::new(),
            lowering: Lowering::default(),
            spans: Vec::new(),
            members: None,
        }
    }

    fn uid(&self) -> String {
        self.settings.uid.to_string()
    }

    fn contract(&self, message: String) -> RuntimeError {
        WasmError::Contract {
            uid: self.uid(),
            message,
        }
        .into()
    }

    async fn start(&mut self) -> Result<(), WasmError> {
        let uid = self.uid();
        let open = |message: String| WasmError::Open {
            uid: uid.clone(),
            message,
        };
        let mut sandbox = Sandbox::new(&self.module, &self.settings).await?;
        let Exports::Aggregate(indices) = &self.module.exports else {
            unreachable!("module loaded for the aggregate world");
        };
        let guest = indices
            .load(&mut sandbox.store, &sandbox.instance)
            .map_err(|e| open(format!("{e:#}")))?;
        sandbox.arm();
        let opened = guest
            .call_open(&mut sandbox.store, &self.settings.config)
            .await;
        sandbox.opened(&uid, opened)?;
        sandbox.arm();
        self.empty = guest
            .call_create_accumulator(&mut sandbox.store)
            .await
            .map_err(|e| {
                open(format!(
                    "create-accumulator trapped: {}",
                    sandbox.describe(&e)
                ))
            })?;
        self.live = Some((sandbox, guest));
        Ok(())
    }

    async fn live(&mut self) -> Result<&mut (Sandbox, wit_aggregate::Guest), WasmError> {
        if self.live.is_none() {
            self.start().await?;
        }
        Ok(self.live.as_mut().expect("started"))
    }

    /// Checks a returned byte list and makes it a host one.
    fn byte_list(
        &self,
        list: wit::ByteListResult,
        expected: usize,
        what: &str,
    ) -> Result<ByteList, RuntimeError> {
        super::checked_list(list, expected, what).map_err(|m| self.contract(m))
    }

    async fn call_add(
        &mut self,
        accs: &ByteList,
        input: &Batch,
        targets: &[u32],
    ) -> Result<Call<wit_aggregate::AddOutput>, RuntimeError> {
        self.spans.clear();
        self.spans
            .extend(accs.spans.iter().copied().map(super::wit_span));
        if self.live.is_none() {
            self.start().await?;
        }
        let (sandbox, guest) = self.live.as_mut().expect("started");
        sandbox.arm();
        let param = wit::ByteListParam {
            data: &accs.data,
            spans: &self.spans,
        };
        // The members the window's sources found, copied with the records
        // into its pending batch.
        let by_source = input.members.clone();
        sandbox.store.data_mut().fields.locate(input, by_source);
        let batch = self.lowering.batch(input);
        match guest
            .call_add(&mut sandbox.store, param, batch, targets)
            .await
        {
            Ok(out) => {
                // The module projects after its first call.
                let names = sandbox.store.data().fields.names();
                if !names.is_empty()
                    && let Some(request) = self.members.take()
                {
                    request.ask(names);
                }
                Ok(Call::Done(out))
            }
            Err(e) => {
                let d = sandbox.describe(&e);
                self.live = None;
                Ok(Call::Trapped(d))
            }
        }
    }

    /// Applies an `add` result: new accumulators, rejected records.
    fn apply_add(
        &self,
        accs: &mut ByteList,
        input: &Batch,
        result: wit_aggregate::AddOutput,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let expected = accs.len();
        *accs = self.byte_list(result.accumulators, expected, "add")?;
        for e in result.errors {
            if e.index as usize >= input.len() {
                return Err(self.contract(format!(
                    "an error for record {} of {}",
                    e.index,
                    input.len()
                )));
            }
            out.dead_letter(input.get(e.index as usize), &e.message)?;
        }
        Ok(())
    }

    /// After a trap in `add`: adds the records one at a time.
    async fn isolate(
        &mut self,
        accs: &mut ByteList,
        input: &Batch,
        targets: &[u32],
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let mut single = Batch::default();
        let mut one = ByteList::default();
        for (i, &t) in targets.iter().enumerate() {
            single.clear();
            single.push_record(input.get(i), None);
            one.clear();
            one.push(accs.get(t as usize));
            match self.call_add(&one, &single, &[0]).await? {
                Call::Done(result) => {
                    self.apply_add(&mut one, &single, result, out)?;
                    replace(accs, t as usize, one.get(0));
                }
                Call::Trapped(description) => {
                    trapped_on(out, &self.settings.uid, input.get(i), description)?
                }
            }
        }
        Ok(())
    }

    /// `merge` (with groups) or `get-result` (without): calls that involve
    /// no single record, so a trap stops the job.
    async fn list_call(
        &mut self,
        accs: &ByteList,
        groups: Option<&[wit::Span]>,
    ) -> Result<ByteList, RuntimeError> {
        let started = Instant::now();
        let spans = wit_spans(&accs.spans);
        let (sandbox, guest) = self.live().await?;
        sandbox.arm();
        let param = wit::ByteListParam {
            data: &accs.data,
            spans: &spans,
        };
        let (what, expected, called) = match groups {
            Some(g) => (
                "merge",
                g.len(),
                guest.call_merge(&mut sandbox.store, param, g).await,
            ),
            None => (
                "get-result",
                accs.len(),
                guest.call_get_result(&mut sandbox.store, param).await,
            ),
        };
        let result = match called {
            Ok(Ok(list)) => self.byte_list(list, expected, what),
            Ok(Err(m)) => Err(self.contract(format!("{what} failed: {m}"))),
            Err(e) => {
                let description = sandbox.describe(&e);
                self.live = None;
                Err(self.trapped(what, description))
            }
        };
        self.timed(started);
        result
    }

    fn timed(&self, started: Instant) {
        NodeMetrics::add(
            &self.info.metrics.wasm_nanos,
            started.elapsed().as_nanos() as u64,
        );
    }

    fn trapped(&self, in_what: &str, description: String) -> RuntimeError {
        WasmError::Trap {
            uid: self.uid(),
            at: format!(" in {in_what}"),
            message: description,
        }
        .into()
    }
}

/// Replaces item `i` of a byte list (the list is rebuilt if sizes differ).
pub(super) fn replace(list: &mut ByteList, i: usize, bytes: &[u8]) {
    if list.get(i).len() == bytes.len() {
        list.get_mut(i).copy_from_slice(bytes);
        return;
    }
    let mut rebuilt = ByteList::default();
    for j in 0..list.len() {
        rebuilt.push(if j == i { bytes } else { list.get(j) });
    }
    *list = rebuilt;
}

#[async_trait]
impl Aggregator for WasmAggregator {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        Ok(self.start().await?)
    }

    fn ask_members_at(&mut self, request: Arc<MemberRequest>) {
        self.members = Some(request);
    }

    fn empty(&self) -> &[u8] {
        &self.empty
    }

    async fn add(
        &mut self,
        accs: &mut ByteList,
        input: &Batch,
        targets: &[u32],
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let result = match self.call_add(accs, input, targets).await? {
            Call::Done(result) => self.apply_add(accs, input, result, out),
            Call::Trapped(description) => {
                tracing::warn!(
                    operator = %self.settings.uid,
                    "trapped adding {} records ({description}); adding them one by one",
                    input.len()
                );
                self.isolate(accs, input, targets, out).await
            }
        };
        self.timed(started);
        result
    }

    async fn merge(&mut self, accs: &ByteList, groups: &[Span]) -> Result<ByteList, RuntimeError> {
        let groups = wit_spans(groups);
        self.list_call(accs, Some(&groups)).await
    }

    async fn results(
        &mut self,
        accs: &ByteList,
        _windows: &[WindowRef<'_>],
    ) -> Result<ByteList, RuntimeError> {
        self.list_call(accs, None).await
    }
}
