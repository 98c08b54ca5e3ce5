//! The aggregate functions of a SQL window aggregation (`COUNT`, `SUM`,
//! `MIN`, `MAX`, `AVG`, with or without `DISTINCT`), typed as Flink types them and run by the window
//! operator as its aggregator. `sluice sql` writes it into a window's
//! `aggregate:` section:
//!
//! ```yaml
//! aggregate:
//!   sql:
//!     keys: [STRING]                       # types of k$0, k$1, …
//!     calls: [[COUNT], [SUM, BIGINT], [AVG, "DECIMAL(10, 2)"]]
//! ```
//!
//! Its input rows carry the group keys as `k$0…` and each call's argument
//! as `a$0…` (the SQL operator before the window computes them); each
//! result row carries the keys again (read back from the window's key), the
//! call results as `a$0…`, and `window_time` (the window's end - 1 ms).
//!
//! Accumulators start with a fixed part, [`SLOT`] bytes per call: a flag
//! (0 = NULL so far), a 16-byte value (an `i128` for exact numbers and
//! timestamps, an `f64` for DOUBLE) and an 8-byte count. Calls whose state
//! has no fixed size — `MIN`/`MAX` of a string, any `DISTINCT` call — add a
//! variable part after it (see [`Wide`]); a window without such calls never
//! decodes one.

use super::expr;
use super::types::{SqlType, Ty, Value, fits};
use super::udf::{self, Udf, Udfs};
use crate::error::RuntimeError;
use crate::json::{self, Pointer};
use crate::runtime::aggregate::{Aggregator, AggregatorFactory, ByteList, InPlace, WindowRef};
use crate::runtime::batch::Span;
use crate::runtime::function::{Column, FunctionModules, Functions};
use crate::runtime::{Batch, NodeInfo, Output};
use crate::state::StateError;
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Bytes of one call's accumulator.
pub const SLOT: usize = 1 + 16 + 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFn {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

impl AggFn {
    pub fn parse(name: &str) -> Option<AggFn> {
        Some(match name.to_ascii_uppercase().as_str() {
            "COUNT" => AggFn::Count,
            "SUM" => AggFn::Sum,
            "MIN" => AggFn::Min,
            "MAX" => AggFn::Max,
            "AVG" => AggFn::Avg,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AggFn::Count => "COUNT",
            AggFn::Sum => "SUM",
            AggFn::Min => "MIN",
            AggFn::Max => "MAX",
            AggFn::Avg => "AVG",
        }
    }

    /// Flink's result type of the function over `arg` (`None` for
    /// `COUNT(*)`) in a grouped query (a window has rows): as NULL-able as
    /// its argument; `Err` names what is not supported.
    pub fn result_type(self, arg: Option<SqlType>) -> Result<SqlType, String> {
        let Some(arg) = arg else {
            return Ok(SqlType::new(Ty::BigInt, false));
        };
        let t = arg.ty;
        let refuse = || {
            Err(format!(
                "{}({}) is not supported by `sluice sql` yet",
                self.name(),
                SqlType::new(t, arg.nullable)
            ))
        };
        Ok(match self {
            AggFn::Count => SqlType::new(Ty::BigInt, false),
            AggFn::Sum => match t {
                Ty::Int | Ty::BigInt | Ty::Double => SqlType::new(t, arg.nullable),
                Ty::Decimal(_, s) => SqlType::new(Ty::Decimal(38, s), arg.nullable),
                _ => return refuse(),
            },
            AggFn::Avg => match t {
                Ty::Int | Ty::BigInt | Ty::Double => SqlType::new(t, arg.nullable),
                Ty::Decimal(_, s) => SqlType::new(Ty::Decimal(38, s.max(6)), arg.nullable),
                _ => return refuse(),
            },
            AggFn::Min | AggFn::Max => match t {
                Ty::Int
                | Ty::BigInt
                | Ty::Double
                | Ty::Decimal(..)
                | Ty::Boolean
                | Ty::Char(_)
                | Ty::Varchar(_)
                | Ty::Timestamp
                | Ty::TimestampLtz => arg,
                _ => return refuse(),
            },
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlAggSpec {
    /// Types of the group keys `k$0…`.
    #[serde(default)]
    pub keys: Vec<String>,
    /// `[function]` (COUNT(*)), `[function, argument type]`,
    /// `[function, argument type, DISTINCT]`, or `[WASM, name]` for a Wasm
    /// aggregate function of `functions` (its arguments are `a$j$0…`).
    pub calls: Vec<Vec<String>>,
    /// The script's Wasm functions: `[name, module, function]`.
    #[serde(default)]
    pub functions: Vec<(String, String, String)>,
}

#[derive(Clone, Debug)]
struct Call {
    func: AggFn,
    /// The argument's type; `None` for `COUNT(*)`.
    arg: Option<Ty>,
    /// Index into the input's argument pointers.
    field: Option<usize>,
    result: Ty,
    /// `COUNT(DISTINCT x)`, `SUM(DISTINCT x)`, `AVG(DISTINCT x)`: the
    /// accumulator keeps the set of distinct values.
    distinct: bool,
    /// A Wasm aggregate function: its accumulator is the module's, kept as
    /// the call's variable part; its arguments are the input's fields from
    /// `field` on, one per parameter.
    wasm: Option<Udf>,
}

/// The planned aggregate functions of one window.
pub struct SqlAggregates {
    calls: Vec<Call>,
    args: Vec<Pointer>,
    key_pointers: Vec<Pointer>,
    modules: FunctionModules,
}

impl SqlAggregates {
    /// The calls of `spec`; `functions` are its Wasm functions, their
    /// modules loaded (see [`super::udf::plan_functions`]).
    pub fn new(
        spec: &SqlAggSpec,
        functions: (Udfs, FunctionModules),
    ) -> Result<SqlAggregates, String> {
        let (udfs, modules) = functions;
        // The key types are checked; the keys' JSON goes back out as it came.
        for k in &spec.keys {
            super::operator::parse_type(k)?;
        }
        let mut calls = Vec::new();
        let mut args = Vec::new();
        for (j, c) in spec.calls.iter().enumerate() {
            if let [w, name] = c.as_slice()
                && w == "WASM"
            {
                let (_, udf) = udfs
                    .find(name)
                    .filter(|(_, u)| u.aggregate)
                    .ok_or_else(|| format!("no Wasm aggregate function `{name}` in `functions`"))?;
                let field = args.len();
                for n in 0..udf.params.len() {
                    args.push(Pointer::parse(&format!("/a${j}${n}")).expect("a pointer"));
                }
                calls.push(Call {
                    func: AggFn::Count,
                    arg: None,
                    field: Some(field),
                    result: udf.returns,
                    distinct: false,
                    wasm: Some(udf.clone()),
                });
                continue;
            }
            let (name, arg, distinct) = match c.as_slice() {
                [f] => (f, None, false),
                [f, t] => (f, Some(super::operator::parse_type(t)?), false),
                [f, t, d] if d == "DISTINCT" => (f, Some(super::operator::parse_type(t)?), true),
                _ => {
                    return Err(format!(
                        "a call is [function], [function, type] or [function, type, DISTINCT], not {c:?}"
                    ));
                }
            };
            let func = AggFn::parse(name).ok_or_else(|| format!("unknown function {name}"))?;
            // MIN and MAX of the distinct values are MIN and MAX.
            let distinct = distinct && !matches!(func, AggFn::Min | AggFn::Max);
            let result = func.result_type(arg)?.ty;
            let field = arg.map(|_| {
                args.push(Pointer::parse(&format!("/a${j}")).expect("a pointer"));
                args.len() - 1
            });
            calls.push(Call {
                func,
                arg: arg.map(|a| a.ty),
                field,
                result,
                distinct,
                wasm: None,
            });
        }
        let key_pointers = (0..spec.keys.len())
            .map(|i| Pointer::parse(&format!("/{i}")).expect("a pointer"))
            .collect();
        Ok(SqlAggregates {
            calls,
            args,
            key_pointers,
            modules,
        })
    }
}

impl std::fmt::Debug for SqlAggregates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlAggregates")
            .field("calls", &self.calls)
            .field("modules", &self.modules.len())
            .finish()
    }
}

impl AggregatorFactory for SqlAggregates {
    fn create(&self, info: &Arc<NodeInfo>) -> Box<dyn Aggregator> {
        Box::new(SqlAggregator {
            uid: info.uid.to_string(),
            wide: self.calls.iter().any(Call::variable),
            calls: self.calls.clone(),
            args: self.args.clone(),
            key_pointers: self.key_pointers.clone(),
            // The fixed part, then an empty variable part per call that has one.
            empty: vec![
                0;
                SLOT * self.calls.len()
                    + 4 * self.calls.iter().filter(|c| c.variable()).count()
            ],
            values: Vec::new(),
            functions: self.modules.iter().map(|m| m.create()).collect(),
        })
    }

    fn module(&self) -> Option<crate::runtime::ModuleRef<'_>> {
        self.modules.first().map(|m| m.module())
    }
}

struct SqlAggregator {
    uid: String,
    /// Some call keeps a variable part.
    wide: bool,
    calls: Vec<Call>,
    args: Vec<Pointer>,
    key_pointers: Vec<Pointer>,
    empty: Vec<u8>,
    values: Vec<Value>,
    /// An instance of each module the Wasm calls use.
    functions: Vec<Box<dyn Functions>>,
}

/// One call's accumulator, decoded.
#[derive(Clone, Copy, Debug)]
struct Acc {
    set: bool,
    value: i128,
    count: u64,
}

impl Acc {
    fn read(b: &[u8]) -> Acc {
        Acc {
            set: b[0] != 0,
            value: i128::from_le_bytes(b[1..17].try_into().expect("16 bytes")),
            count: u64::from_le_bytes(b[17..25].try_into().expect("8 bytes")),
        }
    }

    fn write(self, b: &mut [u8]) {
        b[0] = self.set as u8;
        b[1..17].copy_from_slice(&self.value.to_le_bytes());
        b[17..25].copy_from_slice(&self.count.to_le_bytes());
    }

    fn f64(self) -> f64 {
        f64::from_bits(self.value as u64)
    }
}

fn f64_bits(d: f64) -> i128 {
    d.to_bits() as i128
}

/// A value of an argument as the accumulator holds it.
fn raw(v: &Value) -> Option<i128> {
    Some(match v {
        Value::Int(i) | Value::Ts(i) => *i as i128,
        Value::Dec(u, _) => *u,
        Value::Double(d) => f64_bits(*d),
        Value::Bool(b) => *b as i128,
        _ => return None,
    })
}

/// `a + b` of SUM over `ty`: Java's wrapping for INT and BIGINT; `None`
/// (NULL, as Flink's DecimalData) when a DECIMAL sum leaves 38 digits.
fn sum(ty: Ty, a: i128, b: i128) -> Option<i128> {
    Some(match ty {
        Ty::Int => (a as i32).wrapping_add(b as i32) as i128,
        Ty::BigInt => (a as i64).wrapping_add(b as i64) as i128,
        Ty::Double => f64_bits(f64::from_bits(a as u64) + f64::from_bits(b as u64)),
        _ => a.checked_add(b).filter(|v| fits(*v, 38))?,
    })
}

/// Whether `b` is less than `a` (for MIN; MAX asks the other way).
fn less(ty: Ty, b: i128, a: i128) -> bool {
    match ty {
        Ty::Double => f64::from_bits(b as u64) < f64::from_bits(a as u64),
        _ => b < a,
    }
}

impl Call {
    /// Adds one argument value (`None`: the row of `COUNT(*)`).
    fn add(&self, acc: &mut Acc, v: Option<&Value>) {
        let arg = match v {
            None if self.arg.is_none() => {
                acc.count += 1;
                return;
            }
            Some(Value::Null) | None => return,
            // COUNT(x) counts the rows where x is not NULL, of any type.
            Some(_) if self.func == AggFn::Count => {
                acc.count += 1;
                return;
            }
            Some(v) => v,
        };
        let Some(x) = raw(arg) else { return };
        self.fold(
            acc,
            Acc {
                set: true,
                value: x,
                count: 1,
            },
        );
    }

    /// Folds `other` (another accumulator, or one value) into `acc`,
    /// as Flink's merge: NULL sides are skipped.
    fn fold(&self, acc: &mut Acc, other: Acc) {
        let ty = self.arg.unwrap_or(Ty::BigInt);
        match self.func {
            AggFn::Count => acc.count += other.count,
            AggFn::Sum | AggFn::Avg => {
                if self.func == AggFn::Avg {
                    acc.count += other.count;
                }
                if !other.set {
                    return;
                }
                if !acc.set {
                    *acc = Acc {
                        count: acc.count,
                        ..other
                    };
                    return;
                }
                // AVG of INT sums in a BIGINT, as Flink's IntAvgAggFunction.
                let sum_ty = if self.func == AggFn::Avg && ty == Ty::Int {
                    Ty::BigInt
                } else {
                    ty
                };
                match sum(sum_ty, acc.value, other.value) {
                    Some(v) => acc.value = v,
                    None => acc.set = false,
                }
            }
            AggFn::Min | AggFn::Max => {
                if !other.set {
                    return;
                }
                let better = !acc.set
                    || if self.func == AggFn::Min {
                        less(ty, other.value, acc.value)
                    } else {
                        less(ty, acc.value, other.value)
                    };
                if better {
                    acc.set = true;
                    acc.value = other.value;
                }
            }
        }
    }

    fn result(&self, acc: Acc) -> Value {
        let arg = self.arg.unwrap_or(Ty::BigInt);
        if self.func == AggFn::Count {
            return Value::Int(acc.count as i64);
        }
        if !acc.set {
            return Value::Null;
        }
        let as_value = |ty: Ty, v: i128| match ty {
            Ty::Int | Ty::BigInt => Value::Int(v as i64),
            Ty::Timestamp | Ty::TimestampLtz => Value::Ts(v as i64),
            Ty::Double => Value::Double(f64::from_bits(v as u64)),
            Ty::Decimal(_, s) => Value::Dec(v, s),
            Ty::Boolean => Value::Bool(v != 0),
            _ => Value::Null,
        };
        match self.func {
            AggFn::Avg => {
                if acc.count == 0 {
                    return Value::Null;
                }
                match arg {
                    // Java's long division, then the argument's type.
                    Ty::Int => Value::Int((acc.value as i64 / acc.count as i64) as i32 as i64),
                    Ty::BigInt => Value::Int(acc.value as i64 / acc.count as i64),
                    Ty::Double => Value::Double(acc.f64() / acc.count as f64),
                    Ty::Decimal(_, s) => {
                        let sum = Value::Dec(acc.value, s);
                        expr::arith('/', self.result, &sum, &Value::Int(acc.count as i64))
                            .unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                }
            }
            _ => as_value(self.result, acc.value),
        }
    }
}

/// A variable part of one call's accumulator.
#[derive(Clone, Debug, PartialEq)]
enum Extra {
    /// The MIN or MAX string so far (the call's fixed part says whether
    /// there is one).
    Best(Vec<u8>),
    /// The distinct values so far: a string's bytes, or the 16 bytes of the
    /// value the fixed part would hold.
    Set(BTreeSet<Vec<u8>>),
    /// A Wasm aggregate function's accumulator, as its module made it.
    Wasm(Vec<u8>),
}

/// An accumulator with variable parts, decoded: the fixed part, then one
/// [`Extra`] per variable call, in call order. Encoded as the fixed part
/// followed by each extra — a `Best` as a u32 length and its bytes, a `Set`
/// as a u32 count and each value as a u32 length and its bytes — so the
/// empty accumulator is the zeroed fixed part and a zero u32 per extra.
#[derive(Debug, Default)]
struct Wide {
    fixed: Vec<u8>,
    extras: Vec<Extra>,
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fn take_len(rest: &mut &[u8]) -> Option<usize> {
    take(rest, 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

impl Wide {
    fn decode(calls: &[Call], bytes: &[u8]) -> Option<Wide> {
        let mut rest = bytes;
        let fixed = take(&mut rest, SLOT * calls.len())?.to_vec();
        let mut extras = Vec::new();
        for c in calls.iter().filter(|c| c.variable()) {
            let n = take_len(&mut rest)?;
            extras.push(if c.wasm.is_some() {
                Extra::Wasm(take(&mut rest, n)?.to_vec())
            } else if c.distinct {
                let mut set = BTreeSet::new();
                for _ in 0..n {
                    let len = take_len(&mut rest)?;
                    set.insert(take(&mut rest, len)?.to_vec());
                }
                Extra::Set(set)
            } else {
                Extra::Best(take(&mut rest, n)?.to_vec())
            });
        }
        rest.is_empty().then_some(Wide { fixed, extras })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.fixed);
        for e in &self.extras {
            match e {
                Extra::Best(b) | Extra::Wasm(b) => {
                    put_len(out, b.len());
                    out.extend_from_slice(b);
                }
                Extra::Set(set) => {
                    put_len(out, set.len());
                    for v in set {
                        put_len(out, v.len());
                        out.extend_from_slice(v);
                    }
                }
            }
        }
    }
}

fn is_string(ty: Option<Ty>) -> bool {
    matches!(ty, Some(Ty::Char(_) | Ty::Varchar(_)))
}

impl Call {
    /// Whether the call's accumulator has a variable part.
    fn variable(&self) -> bool {
        self.distinct
            || self.wasm.is_some()
            || (matches!(self.func, AggFn::Min | AggFn::Max) && is_string(self.arg))
    }

    /// Adds one argument value to a call with a variable part.
    fn add_wide(&self, acc: &mut Acc, extra: &mut Extra, v: Option<&Value>) {
        match (extra, v) {
            (_, None | Some(Value::Null)) => {}
            (Extra::Set(set), Some(Value::Str(s))) => {
                if !set.contains(s.as_bytes()) {
                    set.insert(s.as_bytes().to_vec());
                }
            }
            (Extra::Set(set), Some(v)) => {
                if let Some(x) = raw(v) {
                    set.insert(x.to_le_bytes().to_vec());
                }
            }
            (Extra::Best(best), Some(Value::Str(s))) => self.keep_best(acc, best, s.as_bytes()),
            (Extra::Best(_), Some(_)) => {}
            // Added by the module, a batch at a time.
            (Extra::Wasm(_), _) => {}
        }
    }

    /// Keeps `s` if it is the better string (smaller for MIN, larger for MAX).
    fn keep_best(&self, acc: &mut Acc, best: &mut Vec<u8>, s: &[u8]) {
        let better = !acc.set
            || if self.func == AggFn::Min {
                s < best.as_slice()
            } else {
                s > best.as_slice()
            };
        if better {
            acc.set = true;
            best.clear();
            best.extend_from_slice(s);
        }
    }

    /// Folds another accumulator's variable part into this one's.
    fn fold_wide(&self, acc: &mut Acc, extra: &mut Extra, other: Acc, other_extra: &Extra) {
        match (extra, other_extra) {
            (Extra::Set(set), Extra::Set(o)) => {
                for v in o {
                    if !set.contains(v) {
                        set.insert(v.clone());
                    }
                }
            }
            (Extra::Best(best), Extra::Best(o)) if other.set => self.keep_best(acc, best, o),
            _ => {}
        }
    }

    fn result_wide(&self, acc: Acc, extra: &Extra) -> Value {
        match extra {
            Extra::Best(b) if acc.set => Value::Str(String::from_utf8_lossy(b).into_owned()),
            Extra::Best(_) | Extra::Wasm(_) => Value::Null,
            Extra::Set(set) if self.func == AggFn::Count => Value::Int(set.len() as i64),
            Extra::Set(set) => {
                // SUM and AVG of the distinct values, which are numbers.
                let mut a = Acc {
                    set: false,
                    value: 0,
                    count: 0,
                };
                for v in set {
                    let Ok(bytes) = <[u8; 16]>::try_from(v.as_slice()) else {
                        continue;
                    };
                    self.fold(
                        &mut a,
                        Acc {
                            set: true,
                            value: i128::from_le_bytes(bytes),
                            count: 1,
                        },
                    );
                }
                self.result(a)
            }
        }
    }
}

impl SqlAggregator {
    fn corrupt(&self) -> RuntimeError {
        RuntimeError::State {
            uid: self.uid.clone(),
            error: StateError::Corrupt(
                "a SQL aggregate's accumulator does not have the layout of its calls".into(),
            ),
        }
    }

    fn decode_all(&self, accs: &ByteList) -> Result<Vec<Wide>, RuntimeError> {
        (0..accs.len())
            .map(|i| Wide::decode(&self.calls, accs.get(i)).ok_or_else(|| self.corrupt()))
            .collect()
    }

    fn encode_all(wides: &[Wide]) -> ByteList {
        let mut list = ByteList::default();
        let mut buf = Vec::new();
        for w in wides {
            w.encode(&mut buf);
            list.push(&buf);
        }
        list
    }

    /// Reads the arguments of `record` into `self.values`, one per call
    /// with an argument.
    fn read_args(&mut self, record: &[u8]) -> Result<(), String> {
        // On the stack: this runs for every record.
        let mut found = json::Slots::<_, 8>::new(None, self.args.len());
        let found = found.slice();
        json::find_many_fast(record, &self.args, found).map_err(|e| e.to_string())?;
        self.values.clear();
        let mut found = found.iter();
        for c in self.calls.iter().filter(|c| c.field.is_some()) {
            if let Some(udf) = &c.wasm {
                for &ty in &udf.params {
                    let raw = found.next().expect("a field per parameter");
                    self.values.push(expr::from_json(*raw, ty)?);
                }
                continue;
            }
            let raw = found.next().expect("a field per call with an argument");
            let ty = c.arg.expect("a call with a field has an argument");
            let v = match (c.func, raw) {
                // COUNT(x) asks only whether x is NULL.
                (AggFn::Count, None | Some(b"null")) if !c.distinct => Value::Null,
                (AggFn::Count, Some(_)) if !c.distinct => Value::Bool(true),
                _ => expr::from_json(*raw, ty)?,
            };
            self.values.push(v);
        }
        Ok(())
    }

    /// Adds `self.values` to one accumulator: its fixed part and its
    /// variable parts (empty when no call has one).
    fn add_values(&self, fixed: &mut [u8], extras: &mut [Extra]) {
        let (mut next, mut x) = (0, 0);
        for (c, slot) in self.calls.iter().zip(fixed.chunks_exact_mut(SLOT)) {
            let mut a = Acc::read(slot);
            if let Some(udf) = &c.wasm {
                next += udf.params.len();
                x += 1;
                continue;
            }
            let v = c.field.map(|_| {
                next += 1;
                &self.values[next - 1]
            });
            if c.variable() {
                c.add_wide(&mut a, &mut extras[x], v);
                x += 1;
            } else {
                c.add(&mut a, v);
            }
            a.write(slot);
        }
    }

    /// Folds accumulator `other` into `acc`.
    fn fold_into(
        &self,
        fixed: &mut [u8],
        extras: &mut [Extra],
        other: &[u8],
        other_extras: &[Extra],
    ) {
        let mut x = 0;
        for ((c, slot), o) in self
            .calls
            .iter()
            .zip(fixed.chunks_exact_mut(SLOT))
            .zip(other.chunks_exact(SLOT))
        {
            let mut a = Acc::read(slot);
            if c.variable() {
                c.fold_wide(&mut a, &mut extras[x], Acc::read(o), &other_extras[x]);
                x += 1;
            } else {
                c.fold(&mut a, Acc::read(o));
            }
            a.write(slot);
        }
    }
}

impl SqlAggregator {
    fn has_wasm(&self) -> bool {
        self.calls.iter().any(|c| c.wasm.is_some())
    }

    /// The Wasm calls: (function, index of its variable part, index of its
    /// first value in a row's values).
    fn wasm_calls(&self) -> Vec<(Udf, usize, usize)> {
        let (mut x, mut v) = (0, 0);
        let mut out = Vec::new();
        for c in &self.calls {
            if let Some(udf) = &c.wasm {
                out.push((udf.clone(), x, v));
                v += udf.params.len();
            } else if c.field.is_some() {
                v += 1;
            }
            if c.variable() {
                x += 1;
            }
        }
        out
    }

    /// Variable part `x` of every accumulator, as a list (a Wasm call's).
    fn wasm_list(wides: &[Wide], x: usize) -> ByteList {
        let mut list = ByteList::default();
        for w in wides {
            match &w.extras[x] {
                Extra::Wasm(b) => list.push(b),
                _ => list.push(&[]),
            }
        }
        list
    }

    /// Adds a batch with Wasm calls: every row's values are read, then
    /// each Wasm function accumulates all rows in one call; a row a
    /// function refuses leaves the batch (dead-lettered) and the calls are
    /// made again from the accumulators as they were, so that a refused row
    /// counts in no call. Then the built-in calls add the rows that stay.
    async fn add_with_wasm(
        &mut self,
        accs: &mut ByteList,
        input: &Batch,
        targets: &[u32],
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let mut wides = self.decode_all(accs)?;
        let mut rows: Vec<(usize, u32, Vec<Value>)> = Vec::with_capacity(targets.len());
        for (i, &t) in targets.iter().enumerate() {
            let record = input.get(i);
            match self.read_args(record.value()) {
                Ok(()) => rows.push((i, t, std::mem::take(&mut self.values))),
                Err(reason) => out.dead_letter(record, &reason)?,
            }
        }
        let calls = self.wasm_calls();
        loop {
            let mut updated = Vec::with_capacity(calls.len());
            let mut failed: Vec<(usize, String)> = Vec::new();
            let row_targets: Vec<u32> = rows.iter().map(|(_, t, _)| *t).collect();
            for (udf, x, v) in &calls {
                let mut list = Self::wasm_list(&wides, *x);
                let mut cols = vec![Column::default(); udf.params.len()];
                for (_, _, values) in &rows {
                    for (n, (col, &ty)) in cols.iter_mut().zip(&udf.params).enumerate() {
                        udf::push(col, ty, &values[v + n]);
                    }
                }
                if !rows.is_empty() {
                    let errors = self.functions[udf.module]
                        .accumulate(udf.index, &mut list, &cols, &row_targets)
                        .await?;
                    failed.extend(
                        errors
                            .into_iter()
                            .map(|(r, m)| (r as usize, format!("function {}: {m}", udf.name))),
                    );
                }
                updated.push((*x, list));
            }
            if failed.is_empty() {
                for (x, list) in updated {
                    for (w, i) in wides.iter_mut().zip(0..) {
                        w.extras[x] = Extra::Wasm(list.get(i).to_vec());
                    }
                }
                break;
            }
            failed.sort_by_key(|(r, _)| *r);
            failed.dedup_by_key(|(r, _)| *r);
            for (r, m) in failed.iter().rev() {
                let (i, _, _) = rows.remove(*r);
                out.dead_letter(input.get(i), m)?;
            }
        }
        for (_, t, values) in rows {
            self.values = values;
            let w = &mut wides[t as usize];
            self.add_values(&mut w.fixed, &mut w.extras);
        }
        *accs = Self::encode_all(&wides);
        Ok(())
    }

    /// The Wasm calls' parts of `merged`, merged by their modules.
    async fn merge_wasm(
        &mut self,
        decoded: &[Wide],
        groups: &[Span],
        merged: &mut [Wide],
    ) -> Result<(), RuntimeError> {
        for (udf, x, _) in self.wasm_calls() {
            let list = Self::wasm_list(decoded, x);
            let out = self.functions[udf.module]
                .merge(udf.index, &list, groups)
                .await?;
            for (m, g) in merged.iter_mut().zip(0..) {
                m.extras[x] = Extra::Wasm(out.get(g).to_vec());
            }
        }
        Ok(())
    }

    /// The values of the Wasm calls of `decoded`, by variable part.
    async fn wasm_values(
        &mut self,
        decoded: &[Wide],
    ) -> Result<std::collections::HashMap<usize, Vec<Value>>, RuntimeError> {
        let mut values = std::collections::HashMap::new();
        for (udf, x, _) in self.wasm_calls() {
            let list = Self::wasm_list(decoded, x);
            let col = self.functions[udf.module]
                .get_value(udf.index, &list)
                .await?;
            values.insert(x, udf::returned(&col, &udf, list.len(), &self.uid)?);
        }
        Ok(values)
    }
}

impl InPlace for SqlAggregator {
    fn add_one(&mut self, acc: &mut [u8], record: &[u8]) -> Result<(), String> {
        self.read_args(record)?;
        self.add_values(acc, &mut []);
        Ok(())
    }

    fn fold(&self, acc: &mut [u8], other: &[u8]) {
        self.fold_into(acc, &mut [], other, &[]);
    }
}

#[async_trait]
impl Aggregator for SqlAggregator {
    /// The empty accumulator, with each Wasm call's empty accumulator from
    /// its module.
    async fn open(&mut self) -> Result<(), RuntimeError> {
        if !self.has_wasm() {
            return Ok(());
        }
        let mut empty = Wide::decode(&self.calls, &self.empty).expect("the zeroed accumulator");
        for (udf, x, _) in self.wasm_calls() {
            let acc = self.functions[udf.module]
                .create_accumulator(udf.index)
                .await?;
            empty.extras[x] = Extra::Wasm(acc);
        }
        empty.encode(&mut self.empty);
        Ok(())
    }

    fn empty(&self) -> &[u8] {
        &self.empty
    }

    /// Without variable parts (strings, distinct sets, Wasm accumulators)
    /// every accumulator is the fixed part.
    fn in_place(&mut self) -> Option<&mut dyn InPlace> {
        if self.wide { None } else { Some(self) }
    }

    async fn add(
        &mut self,
        accs: &mut ByteList,
        input: &Batch,
        targets: &[u32],
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        if self.has_wasm() {
            return self.add_with_wasm(accs, input, targets, out).await;
        }
        let mut wides = if self.wide {
            self.decode_all(accs)?
        } else {
            Vec::new()
        };
        for (i, &t) in targets.iter().enumerate() {
            let record = input.get(i);
            if let Err(reason) = self.read_args(record.value()) {
                out.dead_letter(record, &reason)?;
                continue;
            }
            match wides.get_mut(t as usize) {
                Some(w) => self.add_values(&mut w.fixed, &mut w.extras),
                None => self.add_values(accs.get_mut(t as usize), &mut []),
            }
        }
        if self.wide {
            *accs = Self::encode_all(&wides);
        }
        Ok(())
    }

    async fn merge(&mut self, accs: &ByteList, groups: &[Span]) -> Result<ByteList, RuntimeError> {
        let decoded = if self.wide {
            self.decode_all(accs)?
        } else {
            Vec::new()
        };
        let mut merged = Vec::with_capacity(groups.len());
        for g in groups {
            let mut acc = Wide::decode(&self.calls, &self.empty).expect("the empty accumulator");
            for i in g.range() {
                match decoded.get(i) {
                    Some(o) => self.fold_into(&mut acc.fixed, &mut acc.extras, &o.fixed, &o.extras),
                    None => self.fold_into(&mut acc.fixed, &mut acc.extras, accs.get(i), &[]),
                }
            }
            merged.push(acc);
        }
        if self.has_wasm() {
            self.merge_wasm(&decoded, groups, &mut merged).await?;
        }
        Ok(Self::encode_all(&merged))
    }

    async fn results(
        &mut self,
        accs: &ByteList,
        windows: &[WindowRef<'_>],
    ) -> Result<ByteList, RuntimeError> {
        let decoded = if self.wide {
            self.decode_all(accs)?
        } else {
            Vec::new()
        };
        let wasm = if self.has_wasm() {
            self.wasm_values(&decoded).await?
        } else {
            Default::default()
        };
        let mut results = ByteList::default();
        let mut buf = Vec::new();
        let refs: Vec<&Pointer> = self.key_pointers.iter().collect();
        let mut parts: Vec<Option<&[u8]>> = vec![None; refs.len()];
        for (i, w) in windows.iter().enumerate() {
            buf.clear();
            buf.push(b'{');
            // The keys, from the window's key: one field's JSON text, or an
            // array of them.
            match self.key_pointers.len() {
                0 => {}
                1 => {
                    buf.extend_from_slice(b"\"k$0\":");
                    buf.extend_from_slice(w.key);
                    buf.push(b',');
                }
                _ => {
                    json::find_many(w.key, &refs, &mut parts)
                        .expect("a composite key is the JSON array its key_by wrote");
                    for (k, p) in parts.iter().enumerate() {
                        buf.extend_from_slice(b"\"k$");
                        json::write_i64(&mut buf, k as i64);
                        buf.extend_from_slice(b"\":");
                        buf.extend_from_slice(p.unwrap_or(b"null"));
                        buf.push(b',');
                    }
                }
            }
            buf.extend_from_slice(b"\"window_time\":");
            json::write_i64(&mut buf, w.end - 1);
            let (fixed, extras) = match decoded.get(i) {
                Some(d) => (d.fixed.as_slice(), d.extras.as_slice()),
                None => (accs.get(i), &[][..]),
            };
            let mut x = 0;
            for (j, (c, slot)) in self.calls.iter().zip(fixed.chunks_exact(SLOT)).enumerate() {
                buf.push(b',');
                buf.extend_from_slice(b"\"a$");
                json::write_i64(&mut buf, j as i64);
                buf.extend_from_slice(b"\":");
                let v = if let Some(values) = wasm.get(&x).filter(|_| c.wasm.is_some()) {
                    x += 1;
                    values[i].clone()
                } else if c.variable() {
                    x += 1;
                    c.result_wide(Acc::read(slot), &extras[x - 1])
                } else {
                    c.result(Acc::read(slot))
                };
                expr::write_json(&mut buf, &v);
            }
            buf.push(b'}');
            results.push(&buf);
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(func: AggFn, arg: Option<Ty>) -> Call {
        let result = func
            .result_type(arg.map(|t| SqlType::new(t, true)))
            .unwrap()
            .ty;
        Call {
            func,
            arg,
            field: arg.map(|_| 0),
            result,
            distinct: false,
            wasm: None,
        }
    }

    fn run(c: &Call, values: &[Value]) -> Value {
        let mut acc = Acc {
            set: false,
            value: 0,
            count: 0,
        };
        for v in values {
            c.add(&mut acc, Some(v));
        }
        c.result(acc)
    }

    #[test]
    fn aggregates_are_typed_as_flink_types_them() {
        let int = Some(Ty::Int);
        assert_eq!(
            run(&call(AggFn::Avg, int), &[Value::Int(1), Value::Int(2)]),
            Value::Int(1),
            "AVG(INT) is INT"
        );
        assert_eq!(
            run(
                &call(AggFn::Sum, int),
                &[Value::Int(i32::MAX as i64), Value::Int(1)]
            ),
            Value::Int(i32::MIN as i64),
            "SUM(INT) wraps as Java's int"
        );
        assert_eq!(
            run(&call(AggFn::Count, int), &[Value::Int(1), Value::Null]),
            Value::Int(1)
        );
        assert_eq!(
            run(
                &call(AggFn::Count, Some(Ty::Varchar(9))),
                &[Value::Str("a".into()), Value::Null, Value::Str("b".into())]
            ),
            Value::Int(2),
            "COUNT of a string"
        );
        assert_eq!(run(&call(AggFn::Sum, int), &[Value::Null]), Value::Null);
        let dec = Some(Ty::Decimal(10, 2));
        assert_eq!(
            run(
                &call(AggFn::Avg, dec),
                &[Value::Dec(100, 2), Value::Dec(200, 2), Value::Dec(200, 2)]
            ),
            Value::Dec(1_666_667, 6)
        );
        assert_eq!(
            run(
                &call(AggFn::Min, Some(Ty::Double)),
                &[Value::Double(2.5), Value::Double(-1.0)]
            ),
            Value::Double(-1.0)
        );
        assert_eq!(
            run(
                &call(AggFn::Max, Some(Ty::Timestamp)),
                &[Value::Ts(5), Value::Ts(9), Value::Ts(7)]
            ),
            Value::Ts(9)
        );
    }

    #[test]
    fn distinct_values_and_strings_keep_a_variable_part_that_survives_encoding() {
        let mut count = call(AggFn::Count, Some(Ty::Varchar(9)));
        count.distinct = true;
        let mut sum = call(AggFn::Sum, Some(Ty::Int));
        sum.distinct = true;
        let min = call(AggFn::Min, Some(Ty::Varchar(9)));
        let calls = vec![count.clone(), sum.clone(), min.clone()];
        assert!(calls.iter().all(Call::variable));
        let empty = vec![0u8; SLOT * 3 + 4 * 3];
        let mut w = Wide::decode(&calls, &empty).unwrap();
        let rows = [("b", 2), ("a", 2), ("b", 3), ("c", 5)];
        for (s, n) in rows {
            let mut acc = [
                Acc::read(&w.fixed[..SLOT]),
                Acc::read(&w.fixed[SLOT..2 * SLOT]),
                Acc::read(&w.fixed[2 * SLOT..]),
            ];
            count.add_wide(&mut acc[0], &mut w.extras[0], Some(&Value::Str(s.into())));
            sum.add_wide(&mut acc[1], &mut w.extras[1], Some(&Value::Int(n)));
            min.add_wide(&mut acc[2], &mut w.extras[2], Some(&Value::Str(s.into())));
            for (k, a) in acc.iter().enumerate() {
                a.write(&mut w.fixed[k * SLOT..(k + 1) * SLOT]);
            }
        }
        let mut bytes = Vec::new();
        w.encode(&mut bytes);
        let back = Wide::decode(&calls, &bytes).unwrap();
        assert_eq!(back.extras, w.extras);
        let acc = |k: usize| Acc::read(&back.fixed[k * SLOT..(k + 1) * SLOT]);
        assert_eq!(count.result_wide(acc(0), &back.extras[0]), Value::Int(3));
        assert_eq!(
            sum.result_wide(acc(1), &back.extras[1]),
            Value::Int(10),
            "2 + 3 + 5"
        );
        assert_eq!(
            min.result_wide(acc(2), &back.extras[2]),
            Value::Str("a".into())
        );
        // A merge is the union of the sets and the better of the strings.
        let mut other = Wide::decode(&calls, &empty).unwrap();
        let mut a = Acc::read(&other.fixed[2 * SLOT..]);
        min.add_wide(&mut a, &mut other.extras[2], Some(&Value::Str("A".into())));
        a.write(&mut other.fixed[2 * SLOT..]);
        let mut s0 = acc(0);
        let mut merged = back.extras[0].clone();
        count.fold_wide(
            &mut s0,
            &mut merged,
            Acc::read(&other.fixed[..SLOT]),
            &other.extras[0],
        );
        assert_eq!(count.result_wide(s0, &merged), Value::Int(3));
        let mut m = acc(2);
        let mut best = back.extras[2].clone();
        min.fold_wide(&mut m, &mut best, a, &other.extras[2]);
        assert_eq!(min.result_wide(m, &best), Value::Str("A".into()));
        // A truncated accumulator is refused, not read past its end.
        assert!(Wide::decode(&calls, &bytes[..bytes.len() - 1]).is_none());
    }
}
