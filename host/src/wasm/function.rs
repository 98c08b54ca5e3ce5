//! A module of the `sql-function-module` world as the runtime's
//! [`FunctionsFactory`]: the user-defined functions `sluice sql` calls.
//!
//! The module's signatures are read once per module file (by hash) and
//! kept for the process. A call that traps drops its instance; the rows of
//! the call are then replayed one at a time on fresh instances, so the row
//! that traps fails alone (its record is dead-lettered by the caller) and
//! the others get their values. Functions are pure (accumulators travel
//! with the calls), so a replay gives what the batch would have.

use super::aggregate::replace;
use super::sandbox::Sandbox;
use super::{
    Exports, InstanceSettings, Module, checked_list, checked_spans, wit, wit_span, wit_spans,
};
use crate::error::{RuntimeError, WasmError};
use crate::runtime::ModuleRef;
use crate::runtime::aggregate::ByteList;
use crate::runtime::batch::Span;
use crate::runtime::function::{Column, Functions, FunctionsFactory, RowError, Signature};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::exports::sluice::operator::sql_function as wit_fn;

/// The functions of one module, for one node.
pub struct WasmFunctions {
    module: Arc<Module>,
    settings: Arc<InstanceSettings>,
    signatures: Vec<Signature>,
}

impl WasmFunctions {
    /// `module`'s functions, their signatures read from an instance (once
    /// per module file and process).
    pub fn new(module: Arc<Module>, settings: Arc<InstanceSettings>) -> Result<Self, String> {
        static READ: Mutex<Option<HashMap<String, Vec<Signature>>>> = Mutex::new(None);
        let known = READ
            .lock()
            .expect("signatures")
            .get_or_insert_default()
            .get(&module.sha256)
            .cloned();
        let signatures = match known {
            Some(s) => s,
            None => {
                let s = read_signatures(&module, &settings)?;
                READ.lock()
                    .expect("signatures")
                    .get_or_insert_default()
                    .insert(module.sha256.clone(), s.clone());
                s
            }
        };
        Ok(WasmFunctions {
            module,
            settings,
            signatures,
        })
    }
}

/// Calls `functions` on a fresh instance. Planning is not async, and may
/// run inside a runtime (the server's): the call gets a thread and a
/// runtime of its own.
fn read_signatures(
    module: &Arc<Module>,
    settings: &Arc<InstanceSettings>,
) -> Result<Vec<Signature>, String> {
    let (module, settings) = (module.clone(), settings.clone());
    let read = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        rt.block_on(async {
            let mut i = Instance::new(module, settings);
            i.live().await.map_err(|e| e.to_string())?;
            Ok(i.live.take().expect("started").2)
        })
    });
    read.join()
        .map_err(|_| "reading the module's functions panicked".to_owned())?
}

impl FunctionsFactory for WasmFunctions {
    fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    fn create(&self) -> Box<dyn Functions> {
        Box::new(Instance::new(self.module.clone(), self.settings.clone()))
    }

    fn module(&self) -> ModuleRef<'_> {
        ModuleRef {
            path: &self.module.path,
            sha256: &self.module.sha256,
        }
    }
}

struct Instance {
    module: Arc<Module>,
    settings: Arc<InstanceSettings>,
    live: Option<(Sandbox, wit_fn::Guest, Vec<Signature>)>,
}

enum Outcome<T> {
    Done(T),
    Trapped(String),
}

/// The WIT form of a column (its spans converted).
struct Lowered<'a> {
    col: &'a Column,
    spans: Vec<wit::Span>,
}

fn lower(cols: &[Column]) -> Vec<Lowered<'_>> {
    cols.iter()
        .map(|col| Lowered {
            col,
            spans: wit_spans(&col.spans),
        })
        .collect()
}

fn params<'a>(cols: &'a [Lowered<'a>]) -> Vec<wit_fn::ColumnParam<'a>> {
    cols.iter()
        .map(|c| wit_fn::ColumnParam {
            nulls: &c.col.nulls,
            data: &c.col.data,
            spans: &c.spans,
        })
        .collect()
}

impl Instance {
    fn new(module: Arc<Module>, settings: Arc<InstanceSettings>) -> Instance {
        Instance {
            module,
            settings,
            live: None,
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

    async fn live(&mut self) -> Result<&mut (Sandbox, wit_fn::Guest, Vec<Signature>), WasmError> {
        if self.live.is_none() {
            let uid = self.uid();
            let open = |message: String| WasmError::Open {
                uid: uid.clone(),
                message,
            };
            let mut sandbox = Sandbox::new(&self.module, &self.settings).await?;
            let Exports::SqlFunction(indices) = &self.module.exports else {
                unreachable!("module loaded for the sql-function world");
            };
            let guest = sandbox.exports(&uid, |store, instance| indices.load(store, instance))?;
            sandbox.arm();
            let listed = guest
                .call_functions(&mut sandbox.store)
                .await
                .map_err(|e| open(format!("functions trapped: {}", sandbox.describe(&e))))?;
            let signatures = listed
                .into_iter()
                .map(|s| Signature {
                    name: s.name,
                    aggregate: matches!(s.kind, wit_fn::FunctionKind::Aggregate),
                    params: s.params,
                    returns: s.returns,
                })
                .collect();
            self.live = Some((sandbox, guest, signatures));
        }
        Ok(self.live.as_mut().expect("started"))
    }

    /// Checks that `f` is one of the module's functions of the right kind
    /// (the planner checked; an instance may still list other functions
    /// than the one whose signatures were read, if the file changed).
    async fn function(&mut self, f: u32, aggregate: bool) -> Result<(), RuntimeError> {
        let (_, _, signatures) = self.live().await?;
        match signatures.get(f as usize) {
            Some(s) if s.aggregate == aggregate => Ok(()),
            _ => {
                let n = signatures.len();
                Err(self.contract(format!(
                    "function {f} of {n} is not {} function (the module changed since the job was planned?)",
                    if aggregate { "an aggregate" } else { "a scalar" }
                )))
            }
        }
    }

    fn trapped(&mut self, e: &wasmtime::Error) -> String {
        let description = self
            .live
            .as_ref()
            .map_or_else(|| format!("{e:#}"), |(s, _, _)| s.describe(e));
        self.live = None;
        description
    }

    /// Checks the shape of a column the guest returned: one NULL flag per
    /// row, and spans (for text) inside the data. What the bytes mean is
    /// for the caller, who knows the type.
    fn column(
        &self,
        c: wit_fn::ColumnResult,
        rows: usize,
        what: &str,
    ) -> Result<Column, RuntimeError> {
        if c.nulls.len() != rows {
            return Err(self.contract(format!(
                "{what} returned {} values for {rows} rows",
                c.nulls.len()
            )));
        }
        if !c.spans.is_empty() && c.spans.len() != rows {
            return Err(self.contract(format!(
                "{what} returned {} text spans for {rows} rows",
                c.spans.len()
            )));
        }
        let spans = checked_spans(c.spans, c.data.len(), what).map_err(|m| self.contract(m))?;
        Ok(Column {
            nulls: c.nulls,
            data: c.data,
            spans,
        })
    }

    fn byte_list(
        &self,
        list: wit::ByteListResult,
        expected: usize,
        what: &str,
    ) -> Result<ByteList, RuntimeError> {
        checked_list(list, expected, what).map_err(|m| self.contract(m))
    }

    fn errors(
        &self,
        errors: Vec<wit::RecordError>,
        rows: usize,
        what: &str,
    ) -> Result<Vec<RowError>, RuntimeError> {
        let mut out = Vec::with_capacity(errors.len());
        for e in errors {
            if e.index as usize >= rows {
                return Err(self.contract(format!(
                    "{what} returned an error for row {} of {rows}",
                    e.index
                )));
            }
            out.push((e.index, e.message));
        }
        Ok(out)
    }

    async fn try_call(
        &mut self,
        f: u32,
        args: &[Column],
        rows: usize,
    ) -> Result<Outcome<(Column, Vec<RowError>)>, RuntimeError> {
        let lowered = lower(args);
        let params = params(&lowered);
        let (sandbox, guest, _) = self.live().await?;
        sandbox.arm();
        let called = guest
            .call_call(&mut sandbox.store, f, &params, rows as u32)
            .await;
        match called {
            Ok(out) => {
                let col = self.column(out.values, rows, "call")?;
                let errors = self.errors(out.errors, rows, "call")?;
                Ok(Outcome::Done((col, errors)))
            }
            Err(e) => Ok(Outcome::Trapped(self.trapped(&e))),
        }
    }

    async fn try_accumulate(
        &mut self,
        f: u32,
        accs: &ByteList,
        args: &[Column],
        targets: &[u32],
    ) -> Result<Outcome<(ByteList, Vec<RowError>)>, RuntimeError> {
        let lowered = lower(args);
        let params = params(&lowered);
        let spans = wit_spans(&accs.spans);
        let (sandbox, guest, _) = self.live().await?;
        sandbox.arm();
        let list = wit::ByteListParam {
            data: &accs.data,
            spans: &spans,
        };
        let called = guest
            .call_accumulate(&mut sandbox.store, f, list, &params, targets)
            .await;
        match called {
            Ok(out) => {
                let accs = self.byte_list(out.accumulators, accs.len(), "accumulate")?;
                let errors = self.errors(out.errors, targets.len(), "accumulate")?;
                Ok(Outcome::Done((accs, errors)))
            }
            Err(e) => Ok(Outcome::Trapped(self.trapped(&e))),
        }
    }

    fn trap_error(&self, in_what: &str, message: String) -> RuntimeError {
        WasmError::Trap {
            uid: self.uid(),
            at: format!(" in {in_what}"),
            message,
        }
        .into()
    }
}

/// Row `i` of `col` alone.
fn row_of(col: &Column, i: usize, rows: usize) -> Column {
    let mut one = Column {
        nulls: vec![col.nulls[i]],
        ..Column::default()
    };
    if col.spans.is_empty() {
        let width = col.data.len() / rows.max(1);
        one.data
            .extend_from_slice(&col.data[i * width..(i + 1) * width]);
    } else {
        let s = col.spans[i];
        one.data.extend_from_slice(&col.data[s.range()]);
        one.spans.push(Span {
            offset: 0,
            len: s.len,
        });
    }
    one
}

/// Appends a one-row column to `to`.
fn append(to: &mut Column, one: &Column) {
    to.nulls.push(one.nulls[0]);
    if let Some(s) = one.spans.first() {
        to.spans.push(Span {
            offset: to.data.len() as u32,
            len: s.len,
        });
        to.data.extend_from_slice(&one.data[s.range()]);
    } else {
        to.data.extend_from_slice(&one.data);
    }
}

#[async_trait]
impl Functions for Instance {
    async fn call(
        &mut self,
        f: u32,
        args: &[Column],
        rows: usize,
    ) -> Result<(Column, Vec<RowError>), RuntimeError> {
        self.function(f, false).await?;
        let description = match self.try_call(f, args, rows).await? {
            Outcome::Done(r) => return Ok(r),
            Outcome::Trapped(d) => d,
        };
        tracing::warn!(
            operator = %self.settings.uid,
            "a function trapped on a call of {rows} rows ({description}); calling it row by row"
        );
        let mut errors = Vec::new();
        let mut ones: Vec<Option<Column>> = Vec::with_capacity(rows);
        for i in 0..rows {
            let one: Vec<Column> = args.iter().map(|c| row_of(c, i, rows)).collect();
            match self.try_call(f, &one, 1).await? {
                Outcome::Done((col, errs)) => {
                    errors.extend(errs.into_iter().map(|(_, m)| (i as u32, m)));
                    ones.push(Some(col));
                }
                Outcome::Trapped(d) => {
                    errors.push((i as u32, format!("function trapped: {d}")));
                    ones.push(None);
                }
            }
        }
        // A row that trapped is NULL, of the shape the others have.
        let text = ones.iter().flatten().any(|c| !c.spans.is_empty());
        let width = ones.iter().flatten().next().map_or(0, |c| c.data.len());
        let mut result = Column::default();
        for one in &ones {
            match one {
                Some(c) => append(&mut result, c),
                None if text => {
                    result.nulls.push(1);
                    result.spans.push(Span {
                        offset: result.data.len() as u32,
                        len: 0,
                    });
                }
                None => {
                    result.nulls.push(1);
                    result.data.extend(std::iter::repeat_n(0, width));
                }
            }
        }
        Ok((result, errors))
    }

    async fn create_accumulator(&mut self, f: u32) -> Result<Vec<u8>, RuntimeError> {
        self.function(f, true).await?;
        let (sandbox, guest, _) = self.live().await?;
        sandbox.arm();
        match guest.call_create_accumulator(&mut sandbox.store, f).await {
            Ok(acc) => Ok(acc),
            Err(e) => {
                let d = self.trapped(&e);
                Err(self.trap_error("create-accumulator", d))
            }
        }
    }

    async fn accumulate(
        &mut self,
        f: u32,
        accs: &mut ByteList,
        args: &[Column],
        targets: &[u32],
    ) -> Result<Vec<RowError>, RuntimeError> {
        self.function(f, true).await?;
        if let Some(&t) = targets.iter().find(|&&t| t as usize >= accs.len()) {
            return Err(self.contract(format!("target {t} of {} accumulators", accs.len())));
        }
        let rows = targets.len();
        let description = match self.try_accumulate(f, accs, args, targets).await? {
            Outcome::Done((new, errors)) => {
                *accs = new;
                return Ok(errors);
            }
            Outcome::Trapped(d) => d,
        };
        tracing::warn!(
            operator = %self.settings.uid,
            "a function trapped accumulating {rows} rows ({description}); adding them one by one"
        );
        let mut errors = Vec::new();
        for (i, &t) in targets.iter().enumerate() {
            let one_args: Vec<Column> = args.iter().map(|c| row_of(c, i, rows)).collect();
            let mut one = ByteList::default();
            one.push(accs.get(t as usize));
            match self.try_accumulate(f, &one, &one_args, &[0]).await? {
                Outcome::Done((new, errs)) => {
                    replace(accs, t as usize, new.get(0));
                    errors.extend(errs.into_iter().map(|(_, m)| (i as u32, m)));
                }
                Outcome::Trapped(d) => errors.push((i as u32, format!("function trapped: {d}"))),
            }
        }
        Ok(errors)
    }

    async fn merge(
        &mut self,
        f: u32,
        accs: &ByteList,
        groups: &[Span],
    ) -> Result<ByteList, RuntimeError> {
        self.function(f, true).await?;
        let spans = wit_spans(&accs.spans);
        let groups: Vec<wit::Span> = groups.iter().copied().map(wit_span).collect();
        let (sandbox, guest, _) = self.live().await?;
        sandbox.arm();
        let list = wit::ByteListParam {
            data: &accs.data,
            spans: &spans,
        };
        match guest.call_merge(&mut sandbox.store, f, list, &groups).await {
            Ok(Ok(list)) => self.byte_list(list, groups.len(), "merge"),
            Ok(Err(m)) => Err(self.contract(format!("merge failed: {m}"))),
            Err(e) => {
                let d = self.trapped(&e);
                Err(self.trap_error("merge", d))
            }
        }
    }

    async fn get_value(&mut self, f: u32, accs: &ByteList) -> Result<Column, RuntimeError> {
        self.function(f, true).await?;
        let spans = wit_spans(&accs.spans);
        let (sandbox, guest, _) = self.live().await?;
        sandbox.arm();
        let list = wit::ByteListParam {
            data: &accs.data,
            spans: &spans,
        };
        match guest.call_get_value(&mut sandbox.store, f, list).await {
            Ok(Ok(col)) => self.column(col, accs.len(), "get-value"),
            Ok(Err(m)) => Err(self.contract(format!("get-value failed: {m}"))),
            Err(e) => {
                let d = self.trapped(&e);
                Err(self.trap_error("get-value", d))
            }
        }
    }
}
