//! The `sql` operator: a SELECT's projections and filter over one table's
//! JSON rows, evaluated natively. `sluice sql` writes it into the spec it
//! plans; its keys carry the table's columns and the expressions as SQL
//! text, bound again (and so checked again) when the spec is planned.
//!
//! ```yaml
//! sql:
//!   table: orders
//!   columns: [[order_id, STRING], [amount, "DECIMAL(10, 2)"], [cents, null, "amount * 100"]]
//!   where: "amount > 100.00"
//!   select: [[order_id, order_id], [amount_usd, "amount * 1.10"]]
//! ```

use super::expr::{self, Bound, Scope};
use super::types::{SqlType, Ty, Value};
use super::{Column, FlinkDialect, Meta, Metadata, Table};
use crate::error::{PlanError, RuntimeError};
use crate::json::Pointer;
use crate::runtime::batch::{Members, RecordRef, member_at};
use crate::runtime::function::{Column as Values, FunctionModules, Functions};
use crate::runtime::kind::{OperatorKind, PlanContext, Planned, error, field};
use crate::runtime::{Batch, Operator, OperatorFactory, Output, Splits, Subtask};
use async_trait::async_trait;
use serde::Deserialize;
use sqlparser::parser::Parser;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlSpec {
    table: String,
    /// `[name, type]` or `[name, null, expression]`.
    columns: Vec<Vec<Option<String>>>,
    #[serde(default, rename = "where")]
    filter: Option<String>,
    /// `[name, expression]`.
    select: Vec<(String, String)>,
    /// Rows of a window aggregation: `[expression, column]`, an expression
    /// of the query (a group key, an aggregate call) that a column holds.
    #[serde(default)]
    groups: Vec<(String, String)>,
    /// Names that qualify a column (`o.amount`): the FROM's table, its alias.
    #[serde(default)]
    qualifiers: Vec<String>,
    /// The table's time attribute (its WATERMARK's column).
    #[serde(default)]
    rowtime: Option<String>,
    /// `raw`: the one physical column is the record's whole value, as
    /// text (Flink's `raw` format); otherwise the value is a JSON object.
    #[serde(default)]
    format: Option<String>,
    /// The script's Wasm functions: `[name, module, function]`.
    #[serde(default)]
    functions: Vec<(String, String, String)>,
    /// An expression whose value (a timestamp) is each output record's
    /// timestamp — a Kafka sink's `timestamp` metadata column; a NULL
    /// leaves the record without one. Without it a record keeps its input's.
    #[serde(default)]
    timestamp: Option<String>,
}

/// `sql:` in a spec.
pub struct SqlKind;

fn parse_expr(text: &str) -> Result<sqlparser::ast::Expr, String> {
    Parser::new(&FlinkDialect)
        .with_recursion_limit(64)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| format!("`{text}`: {e}"))
}

pub fn parse_type(text: &str) -> Result<SqlType, String> {
    let (text, rowtime) = match text.strip_suffix(" *ROWTIME*") {
        Some(t) => (t, true),
        None => (text, false),
    };
    let (t, nullable) = match text.strip_suffix(" NOT NULL") {
        Some(t) => (t, false),
        None => (text, true),
    };
    let dt = Parser::new(&FlinkDialect)
        .try_with_sql(t)
        .and_then(|mut p| p.parse_data_type())
        .map_err(|e| format!("`{text}`: {e}"))?;
    let ty = expr::data_type_of(None, &dt).map_err(|e| e.message)?;
    let t = SqlType::new(ty, nullable);
    Ok(if rowtime { t.as_rowtime() } else { t })
}

impl OperatorKind for SqlKind {
    fn tag(&self) -> &'static str {
        "sql"
    }

    fn what(&self) -> &'static str {
        "a SQL projection and filter"
    }

    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError> {
        let spec: SqlSpec =
            field(cx, "sql")?.ok_or_else(|| error(cx, "sql", "`sql` is missing"))?;
        let fail = |m: String| error(cx, "sql", m);
        let mut columns = Vec::new();
        for c in &spec.columns {
            let col = match c.as_slice() {
                [Some(name), Some(ty)] => Column::new(name, parse_type(ty).map_err(fail)?),
                [Some(name), None, Some(e)] => Column {
                    computed: Some(parse_expr(e).map_err(fail)?),
                    ..Column::new(name, SqlType::new(Ty::Null, true))
                },
                [Some(name), Some(ty), None, Some(m)] => Column {
                    metadata: Some(Metadata {
                        meta: Meta::parse(m)
                            .ok_or_else(|| fail(format!("column `{name}`: no metadata `{m}`")))?,
                        is_virtual: true,
                    }),
                    ..Column::new(name, parse_type(ty).map_err(fail)?)
                },
                _ => {
                    return Err(fail(format!(
                        "a column is [name, type], [name, null, expression] or [name, type, null, metadata], not {c:?}"
                    )));
                }
            };
            columns.push(col);
        }
        let table = Table {
            name: spec.table.clone(),
            columns,
            watermark: spec.rowtime.as_ref().map(|c| {
                (
                    c.clone(),
                    sqlparser::ast::Expr::Identifier(sqlparser::ast::Ident::new(c)),
                )
            }),
            options: Default::default(),
            pos: None,
        };
        let scope_cols = super::table_scope(&table).map_err(|e| fail(e.to_string()))?;
        let mut groups = Vec::new();
        for (text, col) in &spec.groups {
            let i = scope_cols
                .iter()
                .position(|(n, _)| n == col)
                .ok_or_else(|| fail(format!("group column `{col}` is not a column")))?;
            // The text as the parser prints it, as binding compares.
            groups.push((parse_expr(text).map_err(fail)?.to_string(), i));
        }
        let (udfs, modules) = if spec.functions.is_empty() {
            (super::udf::Udfs::default(), Vec::new())
        } else {
            super::udf::plan_functions(cx, "sql.functions", &spec.functions)?
        };
        let scope = Scope {
            qualifiers: &spec.qualifiers,
            udfs: Some(&udfs),
            ..Scope::grouped(&scope_cols, &groups)
        }
        .with_watermark();
        let physical = table.physical();
        let raw = match spec.format.as_deref() {
            None | Some("json") => false,
            Some("raw") if physical.len() == 1 => true,
            Some(f) => {
                return Err(fail(format!(
                    "format `{f}`: a table's value is `json`, or `raw` into its one physical column"
                )));
            }
        };
        let mut reads = Vec::new();
        for c in &table.columns {
            if let Some(m) = c.metadata {
                reads.push(if m.meta == Meta::KeyField {
                    Read::KeyField(
                        Pointer::parse(&format!(
                            "/{}",
                            c.name.replace('~', "~0").replace('/', "~1")
                        ))
                        .map_err(fail)?,
                        c.ty.ty,
                    )
                } else {
                    Read::Meta(m.meta)
                });
                continue;
            }
            reads.push(match &c.computed {
                None => Read::Field(
                    physical
                        .iter()
                        .position(|(n, _)| *n == c.name)
                        .expect("physical"),
                ),
                Some(e) => Read::Computed(
                    expr::bind(e, &Scope::new(&physical)).map_err(|e| fail(e.to_string()))?,
                ),
            });
        }
        let bind = |text: &str| -> Result<Bound, PlanError> {
            let e = parse_expr(text).map_err(fail)?;
            expr::bind(&e, &scope).map_err(|e| fail(format!("`{text}`: {e}")))
        };
        let filter = spec.filter.as_deref().map(bind).transpose()?;
        let timestamp = spec.timestamp.as_deref().map(bind).transpose()?;
        if let Some(t) = timestamp.as_ref().filter(|t| !t.ty.ty.is_timestamp()) {
            return Err(fail(format!("`timestamp` is {}, not a timestamp", t.ty)));
        }
        let filter_calls = udfs.calls.borrow().len();
        let mut select = Vec::new();
        for (name, e) in &spec.select {
            select.push((name.clone(), bind(e)?));
        }
        let calls = udfs.calls.take();
        // Only the columns the query reads are parsed. After the columns:
        // CURRENT_WATERMARK's value, then each function call's.
        let mut used_scope = vec![false; scope_cols.len() + 1 + calls.len()];
        for b in filter
            .iter()
            .chain(&timestamp)
            .chain(select.iter().map(|(_, b)| b))
            .chain(calls.iter().flat_map(|c| &c.args))
        {
            b.columns(&mut used_scope);
        }
        used_scope.truncate(scope_cols.len() + 1);
        let reads_watermark = used_scope.pop() == Some(true);
        let functions = (!calls.is_empty()).then(|| Calls {
            defs: udfs.defs,
            calls,
            filter_calls,
            modules,
        });
        let mut used = vec![false; physical.len()];
        for (r, u) in reads.iter().zip(&used_scope) {
            match r {
                Read::Field(i) if *u => used[*i] = true,
                Read::Computed(b) if *u => b.columns(&mut used),
                _ => {}
            }
        }
        let members: Vec<usize> = (0..physical.len()).filter(|i| used[*i]).collect();
        let member_names = members
            .iter()
            .map(|i| physical[*i].0.as_bytes().into())
            .collect();
        Ok(Planned::new(Arc::new(SqlFactory(Arc::new(Program {
            table: spec.table,
            physical,
            computed_used: used_scope,
            members,
            member_names,
            reads,
            filter,
            select_keys: select
                .iter()
                .enumerate()
                .map(|(i, (name, _))| {
                    let mut key = if i > 0 { b",".to_vec() } else { Vec::new() };
                    crate::json::write_str(&mut key, name.as_bytes());
                    key.push(b':');
                    key
                })
                .collect(),
            select,
            reads_watermark,
            raw,
            functions,
            timestamp,
        })))))
    }
}

/// The Wasm function calls of a `sql` operator.
struct Calls {
    defs: Vec<super::udf::Udf>,
    /// In the order their columns follow the row's.
    calls: Vec<super::udf::UdfCall>,
    /// The first this many are the filter's: computed before it, the
    /// others only for the rows it keeps.
    filter_calls: usize,
    modules: FunctionModules,
}

/// How a column of the row is had.
enum Read {
    /// The physical column at this index.
    Field(usize),
    /// A computed column over the physical ones.
    Computed(Bound),
    /// Something of the record around its value.
    Meta(Meta),
    /// A field of the record's key, a JSON object (`'key.format' = 'json'`).
    KeyField(Pointer, Ty),
}

struct Program {
    table: String,
    physical: Vec<(String, SqlType)>,
    /// Which columns of the row (in table order) the query reads: a
    /// computed column it does not read is not evaluated.
    computed_used: Vec<bool>,
    /// The physical columns the query reads (the others stay NULL), each
    /// the member of the value's JSON object its name names.
    members: Vec<usize>,
    /// Their names.
    member_names: Vec<Box<[u8]>>,
    reads: Vec<Read>,
    filter: Option<Bound>,
    select: Vec<(String, Bound)>,
    /// Each output column's name as written before its value: `"name":`,
    /// after a comma but for the first.
    select_keys: Vec<Vec<u8>>,
    /// Some expression calls `CURRENT_WATERMARK`.
    reads_watermark: bool,
    /// The value is the one physical column's text.
    raw: bool,
    /// Wasm functions the filter and projections call, if any.
    functions: Option<Calls>,
    /// The output records' timestamp, when the spec sets it.
    timestamp: Option<Bound>,
}

pub struct SqlFactory(Arc<Program>);

impl OperatorFactory for SqlFactory {
    fn kind(&self) -> &'static str {
        "sql"
    }

    fn asks_members(&self) -> bool {
        !self.0.raw && !self.0.member_names.is_empty()
    }

    fn known_members(&self) -> Option<&[Box<[u8]>]> {
        self.asks_members().then_some(&self.0.member_names[..])
    }

    fn create(&self, _subtask: &Subtask<'_>) -> Box<dyn Operator> {
        let functions = self
            .0
            .functions
            .as_ref()
            .map_or_else(Vec::new, |c| c.modules.iter().map(|m| m.create()).collect());
        Box::new(SqlOperator {
            functions,
            program: self.0.clone(),
            physical: Vec::new(),
            row: Vec::new(),
            out: Vec::new(),
            watermark: i64::MIN,
            partitions: Partitions::default(),
        })
    }
}

/// A text column's buffer is reused up to this capacity (a rare long
/// text does not keep its memory).
const MAX_TEXT_CAPACITY: usize = 4096;

/// Sets `slot` to `text`, in its buffer when it holds one.
fn set_text(slot: &mut Value, text: &str) {
    match slot {
        Value::Str(s) if s.capacity() <= MAX_TEXT_CAPACITY => {
            s.clear();
            s.push_str(text);
        }
        _ => *slot = Value::Str(text.to_owned()),
    }
}

struct SqlOperator {
    program: Arc<Program>,
    /// An instance of each module of `program.functions`.
    functions: Vec<Box<dyn Functions>>,
    physical: Vec<Value>,
    row: Vec<Value>,
    out: Vec<u8>,
    /// The watermark `CURRENT_WATERMARK` reads (`i64::MIN`: none yet).
    watermark: i64,
    partitions: Partitions,
}

/// The topic and partition of each Kafka split seen, looked up once.
#[derive(Default)]
struct Partitions(std::collections::HashMap<u32, (Arc<str>, i32)>);

impl Partitions {
    /// The value of metadata column `m` for record `r`.
    fn metadata(&mut self, m: Meta, r: RecordRef<'_>, splits: &Splits) -> Result<Value, String> {
        let origin = r.origin();
        let mut partition = || -> Result<(Arc<str>, i32), String> {
            if let Some(p) = self.0.get(&origin.split) {
                return Ok(p.clone());
            }
            let p = splits.partition(origin.split).ok_or_else(|| {
                format!(
                    "METADATA '{}' reads a Kafka record, and this one comes from {}",
                    m.name(),
                    splits.describe(origin)
                )
            })?;
            self.0.insert(origin.split, p.clone());
            Ok(p)
        };
        Ok(match m {
            Meta::Timestamp => r.timestamp().map_or(Value::Null, Value::Ts),
            Meta::Partition => Value::Int(partition()?.1 as i64),
            Meta::Topic => Value::Str(partition()?.0.to_string()),
            Meta::Offset => {
                partition()?;
                Value::Int(origin.position as i64)
            }
            // Read as `Read::KeyField`, which knows the column.
            Meta::KeyField => return Err("a key field read as metadata".into()),
            Meta::Key => match r.key() {
                None => Value::Null,
                Some(k) => Value::Str(
                    std::str::from_utf8(k)
                        .map_err(|e| format!("the key is not UTF-8 text: {e}"))?
                        .to_owned(),
                ),
            },
        })
    }
}

impl SqlOperator {
    /// The row of one record into `self.row`: its columns, then (when the
    /// query reads it or calls functions) `CURRENT_WATERMARK`'s value.
    ///
    /// `row` and `physical` keep their lengths from record to record, and a
    /// physical column's value is swapped into the row rather than moved:
    /// the row's old value goes back to `physical`, so a text column is
    /// copied into the buffer it had two records before, not a new one.
    ///
    /// `pairs`: where the record's members are, when its source found them
    /// (see [`Members`]); otherwise the value is scanned here.
    fn read(
        &mut self,
        r: RecordRef<'_>,
        pairs: Option<&[u32]>,
        splits: &Splits,
    ) -> Result<(), String> {
        let p = &*self.program;
        let value = r.value();
        let watermark = p.reads_watermark || p.functions.is_some();
        let width = p.reads.len() + usize::from(watermark);
        if self.row.len() != width {
            // The first row, or a batch calling functions took the last.
            self.row.clear();
            self.row.resize(width, Value::Null);
        }
        if self.physical.len() != p.physical.len() {
            self.physical.resize(p.physical.len(), Value::Null);
        }
        if p.raw {
            let text = std::str::from_utf8(value)
                .map_err(|e| format!("table `{}`: the value is not UTF-8 text: {e}", p.table))?;
            set_text(&mut self.physical[0], text);
        } else {
            // On the stack for up to 16 columns: this runs for every record.
            let mut found = crate::json::Slots::<_, 16>::new(None, p.members.len());
            let found = found.slice();
            match pairs {
                Some(pairs) => {
                    for (slot, pair) in found.iter_mut().zip(pairs.chunks_exact(2)) {
                        *slot = member_at(value, pair[0], pair[1]);
                    }
                }
                None => crate::json::find_members(value, &p.member_names, found)
                    .map_err(|e| e.to_string())?,
            }
            for (i, member) in p.members.iter().zip(found.iter()) {
                let (name, ty) = &p.physical[*i];
                // Text without escapes, into the column's buffer; the rest
                // as `from_json` reads it.
                if let (true, Some(text)) = (ty.ty.is_string(), member.and_then(|m| m.text))
                    && let Ok(text) = std::str::from_utf8(text)
                {
                    set_text(&mut self.physical[*i], text);
                    continue;
                }
                self.physical[*i] = expr::from_json(member.map(|m| m.raw), ty.ty)
                    .map_err(|m| format!("table `{}`, column `{name}` ({ty}): {m}", p.table))?;
            }
        }
        // Computed columns read the physical ones before those move.
        for ((read, used), slot) in p.reads.iter().zip(&p.computed_used).zip(&mut self.row) {
            if let (Read::Computed(b), true) = (read, used) {
                *slot = expr::eval(b, &self.physical)?;
            }
        }
        // Metadata comes from around the value.
        for (read, slot) in p.reads.iter().zip(&mut self.row) {
            match read {
                Read::Field(i) => std::mem::swap(slot, &mut self.physical[*i]),
                Read::Meta(m) => *slot = self.partitions.metadata(*m, r, splits)?,
                Read::KeyField(field, ty) => *slot = key_field(r.key(), field, *ty, &p.table)?,
                Read::Computed(_) => {}
            }
        }
        if watermark {
            self.row[width - 1] = if self.watermark == i64::MIN {
                Value::Null
            } else {
                Value::Ts(self.watermark)
            };
        }
        Ok(())
    }

    /// The members the source found in `batch`'s records, taken from it,
    /// when they are the ones the query reads.
    fn members_of(&self, batch: &mut Batch) -> Option<Members> {
        let members = batch.members.take()?;
        members
            .describe(batch, &self.program.member_names)
            .then_some(members)
    }

    /// The output row of one record into `self.out`, and its timestamp:
    /// `Ok(None)` when the filter drops it; `Err` names what is wrong with
    /// the record.
    fn apply(
        &mut self,
        r: RecordRef<'_>,
        pairs: Option<&[u32]>,
        splits: &Splits,
    ) -> Result<Option<Option<i64>>, String> {
        self.read(r, pairs, splits)?;
        let p = &*self.program;
        if !passes(p, &self.row)? {
            return Ok(None);
        }
        write_row(p, &self.row, &mut self.out)?;
        Ok(Some(record_time(p, &self.row, r)?))
    }

    /// A batch through a query that calls Wasm functions: each call is made
    /// once for all the rows that need it — the filter's for every row, the
    /// projections' for the rows the filter keeps.
    async fn process_calling(
        &mut self,
        mut batch: Batch,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let splits = out.info().splits.clone();
        let program = self.program.clone();
        let p = &*program;
        let calls = p.functions.as_ref().expect("a query with function calls");
        // (record, row) of each live row.
        let mut rows: Vec<(usize, Vec<Value>)> = Vec::with_capacity(batch.len());
        let members = self.members_of(&mut batch);
        for (i, r) in batch.iter().enumerate() {
            let pairs = members.as_ref().and_then(|m| m.of_record(i));
            match self.read(r, pairs, &splits) {
                Ok(()) => rows.push((i, std::mem::take(&mut self.row))),
                Err(m) => out.dead_letter(r, &m)?,
            }
        }
        self.call_range(calls, 0..calls.filter_calls, &mut rows, &batch, out)
            .await?;
        let mut kept = Vec::with_capacity(rows.len());
        for (i, row) in rows {
            match passes(p, &row) {
                Ok(true) => kept.push((i, row)),
                Ok(false) => {}
                Err(m) => out.dead_letter(batch.get(i), &m)?,
            }
        }
        let mut rows = kept;
        self.call_range(
            calls,
            calls.filter_calls..calls.calls.len(),
            &mut rows,
            &batch,
            out,
        )
        .await?;
        let mut result = Batch::with_capacity(rows.len(), batch.data.len());
        for (i, row) in &rows {
            let r = batch.get(*i);
            match write_row(p, row, &mut self.out).and_then(|()| record_time(p, row, r)) {
                Ok(ts) => result.push(None, &self.out, ts, r.origin()),
                Err(m) => out.dead_letter(r, &m)?,
            }
        }
        if !result.is_empty() {
            out.emit(result);
        }
        Ok(())
    }

    /// Makes the calls `range` for `rows`, appending each call's value to
    /// each row; a row whose arguments or call fail leaves, dead-lettered.
    async fn call_range(
        &mut self,
        calls: &Calls,
        range: std::ops::Range<usize>,
        rows: &mut Vec<(usize, Vec<Value>)>,
        batch: &Batch,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        for call in &calls.calls[range] {
            let udf = &calls.defs[call.udf];
            let mut cols = vec![Values::default(); call.args.len()];
            let mut failed: Vec<(usize, String)> = Vec::new();
            for (n, (_, row)) in rows.iter().enumerate() {
                for ((arg, col), &ty) in call.args.iter().zip(cols.iter_mut()).zip(&udf.params) {
                    match expr::eval_ref(arg, row) {
                        Ok(v) => super::udf::push(col, ty, &v),
                        Err(m) => {
                            failed.push((n, m));
                            super::udf::push(col, ty, &Value::Null);
                        }
                    }
                }
            }
            let (values, errors) = if rows.is_empty() {
                (Values::default(), Vec::new())
            } else {
                self.functions[udf.module]
                    .call(udf.index, &cols, rows.len())
                    .await?
            };
            let values = super::udf::returned(&values, udf, rows.len(), &out.info().uid)?;
            failed.extend(
                errors
                    .into_iter()
                    .map(|(n, m)| (n as usize, format!("function {}: {m}", udf.name))),
            );
            for ((_, row), v) in rows.iter_mut().zip(values) {
                row.push(v);
            }
            if failed.is_empty() {
                continue;
            }
            failed.sort_by_key(|(n, _)| *n);
            failed.dedup_by_key(|(n, _)| *n);
            let mut next = failed.iter().peekable();
            let mut n = 0;
            let mut dead = Vec::new();
            rows.retain(|(i, _)| {
                let keep = match next.peek() {
                    Some((f, m)) if *f == n => {
                        dead.push((*i, m.clone()));
                        next.next();
                        false
                    }
                    _ => true,
                };
                n += 1;
                keep
            });
            for (i, m) in dead {
                out.dead_letter(batch.get(i), &m)?;
            }
        }
        Ok(())
    }
}

/// The field `field` of a record's key, a JSON object; a record without a
/// key has NULL key fields.
fn key_field(key: Option<&[u8]>, field: &Pointer, ty: Ty, table: &str) -> Result<Value, String> {
    let Some(key) = key else {
        return Ok(Value::Null);
    };
    let raw = crate::json::find(key, field)
        .map_err(|e| format!("table `{table}`: the key is not a JSON object: {e}"))?;
    expr::from_json(raw, ty).map_err(|m| {
        format!(
            "table `{table}`, key field `{}` ({}): {m}",
            field.last_name().unwrap_or_default(),
            SqlType::new(ty, true)
        )
    })
}

/// The timestamp of the output record of `row`, made from record `r`.
fn record_time(p: &Program, row: &[Value], r: RecordRef<'_>) -> Result<Option<i64>, String> {
    Ok(match &p.timestamp {
        None => r.timestamp(),
        Some(t) => match expr::eval(t, row)? {
            Value::Ts(ms) => Some(ms),
            _ => None,
        },
    })
}

/// Whether `row` passes the query's filter.
fn passes(p: &Program, row: &[Value]) -> Result<bool, String> {
    Ok(match &p.filter {
        Some(f) => expr::eval(f, row)? == Value::Bool(true),
        None => true,
    })
}

/// The query's output row for `row`, as a JSON object, into `out`.
fn write_row(p: &Program, row: &[Value], out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    out.push(b'{');
    for ((_, b), key) in p.select.iter().zip(&p.select_keys) {
        out.extend_from_slice(key);
        let v = expr::eval_ref(b, row)?;
        expr::write_json(out, &v);
    }
    out.push(b'}');
    Ok(())
}

#[async_trait]
impl Operator for SqlOperator {
    async fn process_batch(
        &mut self,
        mut batch: Batch,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        if self.program.functions.is_some() {
            return self.process_calling(batch, out).await;
        }
        let mut rows = Batch::with_capacity(batch.len(), batch.data.len());
        let splits = out.info().splits.clone();
        let members = self.members_of(&mut batch);
        for (i, r) in batch.iter().enumerate() {
            let pairs = members.as_ref().and_then(|m| m.of_record(i));
            match self.apply(r, pairs, &splits) {
                Ok(Some(ts)) => rows.push(None, &self.out, ts, r.origin()),
                Ok(None) => {}
                Err(m) => out.dead_letter(r, &m)?,
            }
        }
        if !rows.is_empty() {
            out.emit(rows);
        }
        Ok(())
    }

    async fn on_watermark(
        &mut self,
        watermark: i64,
        _out: &mut Output,
    ) -> Result<(), RuntimeError> {
        self.watermark = self.watermark.max(watermark);
        Ok(())
    }
}
