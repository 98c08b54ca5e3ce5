//! A Wasm module of the `window-function-operator` world as a window's
//! [`Aggregator`]: Flink's `ProcessWindowFunction`, which sees all records of
//! a window at once.
//!
//! The window operator keeps one accumulator per key and pane (or session),
//! and for a full-window function the accumulator is simply the records
//! themselves: `add` appends them (natively, no guest call) and `merge`
//! concatenates. When windows fire, one call gets all their records and
//! bounds and returns one result per window. A trap there involves no single
//! record and stops the job with the windows it was computing.

use super::sandbox::Sandbox;
use super::{Exports, InstanceSettings, Lowering, Module, checked_span, wit, wit_window};
use crate::error::{RuntimeError, WasmError};
use crate::runtime::aggregate::{Aggregator, ByteList, WindowRef};
use crate::runtime::batch::Span;
use crate::runtime::{Batch, NodeInfo, NodeMetrics, Origin, Output};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Instant;

pub struct WasmWindowFunction {
    module: Arc<Module>,
    settings: Arc<InstanceSettings>,
    info: Arc<NodeInfo>,
    live: Option<(Sandbox, wit_window::Guest)>,
    lowering: Lowering,
}

/// An accumulator is a sequence of records: event time (i64 LE, `i64::MIN`
/// for none), value length (u32 LE), value bytes.
fn append(acc: &mut Vec<u8>, ts: Option<i64>, value: &[u8]) {
    acc.extend_from_slice(&ts.unwrap_or(i64::MIN).to_le_bytes());
    acc.extend_from_slice(&(value.len() as u32).to_le_bytes());
    acc.extend_from_slice(value);
}

fn records(mut acc: &[u8], f: &mut dyn FnMut(Option<i64>, &[u8])) -> Result<(), String> {
    while !acc.is_empty() {
        let bad = || "corrupt window contents".to_owned();
        let ts = i64::from_le_bytes(acc.get(..8).ok_or_else(bad)?.try_into().expect("8"));
        let len = u32::from_le_bytes(acc.get(8..12).ok_or_else(bad)?.try_into().expect("4"));
        let value = acc.get(12..12 + len as usize).ok_or_else(bad)?;
        f((ts != i64::MIN).then_some(ts), value);
        acc = &acc[12 + len as usize..];
    }
    Ok(())
}

impl WasmWindowFunction {
    pub fn new(
        module: Arc<Module>,
        settings: Arc<InstanceSettings>,
        info: Arc<NodeInfo>,
    ) -> WasmWindowFunction {
        WasmWindowFunction {
            module,
            settings,
            info,
            live: None,
            lowering: Lowering::default(),
        }
    }

    fn uid(&self) -> String {
        self.settings.uid.to_string()
    }

    async fn start(&mut self) -> Result<(), WasmError> {
        let uid = self.uid();
        let open = |message: String| WasmError::Open {
            uid: uid.clone(),
            message,
        };
        let mut sandbox = Sandbox::new(&self.module, &self.settings).await?;
        let Exports::WindowFunction(indices) = &self.module.exports else {
            unreachable!("module loaded for the window-function world");
        };
        let guest = indices
            .load(&mut sandbox.store, &sandbox.instance)
            .map_err(|e| open(format!("{e:#}")))?;
        sandbox.arm();
        let opened = guest
            .call_open(&mut sandbox.store, &self.settings.config)
            .await;
        sandbox.opened(&uid, opened)?;
        self.live = Some((sandbox, guest));
        Ok(())
    }
}

#[async_trait]
impl Aggregator for WasmWindowFunction {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        Ok(self.start().await?)
    }

    fn empty(&self) -> &[u8] {
        &[]
    }

    async fn add(
        &mut self,
        accs: &mut ByteList,
        input: &Batch,
        targets: &[u32],
        _out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let mut grown: Vec<Vec<u8>> = (0..accs.len()).map(|i| accs.get(i).to_vec()).collect();
        for (r, &t) in input.iter().zip(targets) {
            append(&mut grown[t as usize], r.timestamp(), r.value());
        }
        accs.clear();
        for a in &grown {
            accs.push(a);
        }
        Ok(())
    }

    async fn merge(&mut self, accs: &ByteList, groups: &[Span]) -> Result<ByteList, RuntimeError> {
        let mut merged = ByteList::default();
        let mut buf = Vec::new();
        for g in groups {
            buf.clear();
            for i in g.range() {
                buf.extend_from_slice(accs.get(i));
            }
            merged.push(&buf);
        }
        Ok(merged)
    }

    async fn results(
        &mut self,
        accs: &ByteList,
        windows: &[WindowRef<'_>],
    ) -> Result<ByteList, RuntimeError> {
        let started = Instant::now();
        if self.live.is_none() {
            self.start().await?;
        }
        let uid = self.uid();
        let mut batch = Batch::default();
        let mut keys = Vec::new();
        let mut wins = Vec::with_capacity(windows.len());
        for (i, w) in windows.iter().enumerate() {
            let first = batch.len() as u32;
            let key = Span {
                offset: keys.len() as u32,
                len: w.key.len() as u32,
            };
            keys.extend_from_slice(w.key);
            records(accs.get(i), &mut |ts, v| {
                batch.push(Some(w.key), v, ts, Origin::NONE)
            })
            .map_err(|m| RuntimeError::Internal(format!("`{uid}`: {m}")))?;
            wins.push(wit_window::Window {
                key: super::wit_span(key),
                start: w.start,
                end: w.end,
                records: wit::Span {
                    offset: first,
                    len: batch.len() as u32 - first,
                },
            });
        }
        let (sandbox, guest) = self.live.as_mut().expect("started");
        sandbox.arm();
        let param = self.lowering.batch(&batch);
        let result = guest
            .call_process(&mut sandbox.store, &wins, &keys, param)
            .await;
        let out = match result {
            Ok(Ok(list)) => list,
            Ok(Err(message)) => {
                return Err(WasmError::Trap {
                    uid,
                    at: format!(" on {} windows", windows.len()),
                    message: format!("the window function failed: {message}"),
                }
                .into());
            }
            Err(e) => {
                let message = sandbox.describe(&e);
                self.live = None;
                return Err(WasmError::Trap {
                    uid,
                    at: format!(" on {} windows", windows.len()),
                    message,
                }
                .into());
            }
        };
        let mut results = ByteList::default();
        for s in &out.spans {
            let s = checked_span(*s, out.data.len()).map_err(|message| WasmError::Contract {
                uid: uid.clone(),
                message,
            })?;
            results.push(&out.data[s.range()]);
        }
        NodeMetrics::add(
            &self.info.metrics.wasm_nanos,
            started.elapsed().as_nanos() as u64,
        );
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_contents_round_trip() {
        let mut acc = Vec::new();
        append(&mut acc, Some(5), b"{\"a\":1}");
        append(&mut acc, None, b"");
        let mut seen = Vec::new();
        records(&acc, &mut |ts, v| seen.push((ts, v.to_vec()))).unwrap();
        assert_eq!(seen, [(Some(5), b"{\"a\":1}".to_vec()), (None, vec![])]);
        assert!(records(&acc[..acc.len() - 1], &mut |_, _| {}).is_err());
    }
}
