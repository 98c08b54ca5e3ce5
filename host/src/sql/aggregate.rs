//! The aggregate functions of a SQL window aggregation (`COUNT`, `SUM`,
//! `MIN`, `MAX`, `AVG`), typed as Flink types them and run by the window
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
//! Accumulators have a fixed size, [`SLOT`] bytes per call: a flag (0 =
//! NULL so far), a 16-byte value (an `i128` for exact numbers and
//! timestamps, an `f64` for DOUBLE) and an 8-byte count.

use super::expr;
use super::types::{SqlType, Ty, Value, fits};
use crate::error::RuntimeError;
use crate::json::{self, Pointer};
use crate::runtime::aggregate::{Aggregator, AggregatorFactory, ByteList, WindowRef};
use crate::runtime::batch::Span;
use crate::runtime::{Batch, NodeInfo, Output};
use async_trait::async_trait;
use serde::Deserialize;
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
    /// `[function]` (COUNT(*)) or `[function, argument type]`.
    pub calls: Vec<Vec<String>>,
}

#[derive(Clone, Debug)]
struct Call {
    func: AggFn,
    /// The argument's type; `None` for `COUNT(*)`.
    arg: Option<Ty>,
    /// Index into the input's argument pointers.
    field: Option<usize>,
    result: Ty,
}

/// The planned aggregate functions of one window.
#[derive(Debug)]
pub struct SqlAggregates {
    calls: Vec<Call>,
    args: Vec<Pointer>,
    key_pointers: Vec<Pointer>,
}

impl SqlAggregates {
    pub fn new(spec: &SqlAggSpec) -> Result<SqlAggregates, String> {
        // The key types are checked; the keys' JSON goes back out as it came.
        for k in &spec.keys {
            super::operator::parse_type(k)?;
        }
        let mut calls = Vec::new();
        let mut args = Vec::new();
        for (j, c) in spec.calls.iter().enumerate() {
            let (name, arg) = match c.as_slice() {
                [f] => (f, None),
                [f, t] => (f, Some(super::operator::parse_type(t)?)),
                _ => {
                    return Err(format!(
                        "a call is [function] or [function, type], not {c:?}"
                    ));
                }
            };
            let func = AggFn::parse(name).ok_or_else(|| format!("unknown function {name}"))?;
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
            });
        }
        let key_pointers = (0..spec.keys.len())
            .map(|i| Pointer::parse(&format!("/{i}")).expect("a pointer"))
            .collect();
        Ok(SqlAggregates {
            calls,
            args,
            key_pointers,
        })
    }
}

impl AggregatorFactory for SqlAggregates {
    fn create(&self, _info: &Arc<NodeInfo>) -> Box<dyn Aggregator> {
        Box::new(SqlAggregator {
            calls: self.calls.clone(),
            args: self.args.clone(),
            key_pointers: self.key_pointers.clone(),
            empty: vec![0; SLOT * self.calls.len()],
            values: Vec::new(),
        })
    }
}

struct SqlAggregator {
    calls: Vec<Call>,
    args: Vec<Pointer>,
    key_pointers: Vec<Pointer>,
    empty: Vec<u8>,
    values: Vec<Value>,
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

#[async_trait]
impl Aggregator for SqlAggregator {
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
        let refs: Vec<&Pointer> = self.args.iter().collect();
        let mut found: Vec<Option<&[u8]>> = vec![None; refs.len()];
        for (i, &t) in targets.iter().enumerate() {
            let record = input.get(i);
            let read = json::find_many_fast(record.value(), &refs, &mut found)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    self.values.clear();
                    for (c, raw) in self.calls.iter().filter(|c| c.field.is_some()).zip(&found) {
                        let ty = c.arg.expect("a call with a field has an argument");
                        let v = match (c.func, raw) {
                            // COUNT(x) asks only whether x is NULL.
                            (AggFn::Count, None | Some(b"null")) => Value::Null,
                            (AggFn::Count, Some(_)) => Value::Bool(true),
                            _ => expr::from_json(*raw, ty)?,
                        };
                        self.values.push(v);
                    }
                    Ok(())
                });
            if let Err(reason) = read {
                out.dead_letter(record, &reason)?;
                continue;
            }
            let acc = accs.get_mut(t as usize);
            let mut next = 0;
            for (c, slot) in self.calls.iter().zip(acc.chunks_exact_mut(SLOT)) {
                let mut a = Acc::read(slot);
                let v = c.field.map(|_| {
                    next += 1;
                    &self.values[next - 1]
                });
                c.add(&mut a, v);
                a.write(slot);
            }
        }
        Ok(())
    }

    async fn merge(&mut self, accs: &ByteList, groups: &[Span]) -> Result<ByteList, RuntimeError> {
        let mut merged = ByteList::default();
        let mut acc = self.empty.clone();
        for g in groups {
            acc.copy_from_slice(&self.empty);
            for i in g.range() {
                let other = accs.get(i);
                for ((c, slot), o) in self
                    .calls
                    .iter()
                    .zip(acc.chunks_exact_mut(SLOT))
                    .zip(other.chunks_exact(SLOT))
                {
                    let mut a = Acc::read(slot);
                    c.fold(&mut a, Acc::read(o));
                    a.write(slot);
                }
            }
            merged.push(&acc);
        }
        Ok(merged)
    }

    async fn results(
        &mut self,
        accs: &ByteList,
        windows: &[WindowRef<'_>],
    ) -> Result<ByteList, RuntimeError> {
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
            let acc = accs.get(i);
            for (j, (c, slot)) in self.calls.iter().zip(acc.chunks_exact(SLOT)).enumerate() {
                buf.push(b',');
                buf.extend_from_slice(b"\"a$");
                json::write_i64(&mut buf, j as i64);
                buf.extend_from_slice(b"\":");
                expr::write_json(&mut buf, &c.result(Acc::read(slot)));
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
}
