//! SQL functions for `sluice sql`: scalar functions (Flink's
//! `ScalarFunction`) and aggregate functions (Flink's `AggregateFunction`),
//! exported with [`export_sql_functions!`](crate::export_sql_functions).
//!
//! A script registers one with
//!
//! ```sql
//! CREATE FUNCTION usd AS 'usd' LANGUAGE WASM USING JAR 'usd_udf.wasm';
//! ```
//!
//! where `'usd'` is the name the module gives the function (a module may
//! offer several). Each function declares its SQL signature; the host checks
//! every call against it when the script is planned and casts arguments to
//! the declared types, so a function only ever sees values of those types.
//!
//! ```
//! use sluice_guest::sql::{AggregateFunction, Function, Value};
//! use sluice_guest::Error;
//!
//! /// `usd(amount, currency)`: an amount in US dollars.
//! fn usd(args: &[Value<'_>]) -> Result<Value<'static>, Error> {
//!     let (Value::Decimal(cents, 2), Value::String(currency)) = (&args[0], &args[1]) else {
//!         return Ok(Value::Null); // a NULL argument
//!     };
//!     let rate_percent = match currency.as_ref() {
//!         "USD" => 100,
//!         "EUR" => 108,
//!         other => return Err(Error::new(format!("no rate for {other}"))),
//!     };
//!     // DECIMAL(12, 2) keeps two digits: the SDK rounds half up to them.
//!     Ok(Value::Decimal(cents * rate_percent, 4))
//! }
//!
//! /// `total_qty(qty)`: the sum of a column, as an aggregate function.
//! struct TotalQty;
//!
//! impl AggregateFunction for TotalQty {
//!     type Acc = i64;
//!     fn create(&self) -> i64 {
//!         0
//!     }
//!     fn accumulate(&self, acc: &mut i64, args: &[Value<'_>]) -> Result<(), Error> {
//!         if let Value::Int(q) = args[0] {
//!             *acc += i64::from(q);
//!         }
//!         Ok(())
//!     }
//!     fn merge(&self, acc: &mut i64, other: i64) {
//!         *acc += other;
//!     }
//!     fn value(&self, acc: &i64) -> Value<'static> {
//!         Value::BigInt(*acc)
//!     }
//! }
//!
//! fn functions() -> Vec<Function> {
//!     vec![
//!         Function::scalar("usd", &["DECIMAL(10, 2)", "STRING"], "DECIMAL(12, 2)", usd),
//!         Function::aggregate("total_qty", &["INT"], "BIGINT", TotalQty),
//!     ]
//! }
//!
//! sluice_guest::export_sql_functions!(functions);
//! ```
//!
//! Values cross the boundary a column at a time (one flat buffer per
//! argument per call, whatever the number of rows); the SDK turns each row
//! into a slice of [`Value`]s. An `Err` from a function fails that row only:
//! the host sends its record to the dead-letter sink (or stops the job,
//! naming it). Aggregate accumulators are kept by the host, as the JSON
//! encoding of `Acc`.

use std::borrow::Cow;
use std::cell::RefCell;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::sql::exports::sluice::operator::sql_function::{
    AccumulateOutput, CallOutput, Column, FunctionKind, Signature,
};
use crate::bindings::transform::sluice::operator::types::{ByteList, RecordError, Span};

/// A SQL value, as a function receives and returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Boolean(bool),
    Int(i32),
    BigInt(i64),
    Double(f64),
    /// An unscaled value and its scale: 12.30 is `Decimal(1230, 2)`. An
    /// argument has its parameter's scale; a result is rounded (half up)
    /// or extended to the declared scale.
    Decimal(i128, u8),
    /// STRING, VARCHAR(n), CHAR(n).
    String(Cow<'a, str>),
    /// TIMESTAMP(3) and TIMESTAMP_LTZ(3), in epoch milliseconds.
    Timestamp(i64),
}

/// A type of a signature.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ty {
    Boolean,
    Int,
    BigInt,
    Double,
    Decimal(u8, u8),
    String,
    Timestamp,
}

impl Ty {
    fn parse(text: &str) -> Result<Ty, String> {
        let t: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        let t = t.strip_suffix("NOTNULL").unwrap_or(&t);
        Ok(match t {
            "BOOLEAN" => Ty::Boolean,
            "INT" | "INTEGER" => Ty::Int,
            "BIGINT" => Ty::BigInt,
            "DOUBLE" => Ty::Double,
            "STRING" => Ty::String,
            "TIMESTAMP(3)" | "TIMESTAMP_LTZ(3)" | "TIMESTAMP" | "TIMESTAMP_LTZ" => Ty::Timestamp,
            _ if t.starts_with("VARCHAR(") || t.starts_with("CHAR(") => Ty::String,
            _ if t.starts_with("DECIMAL") => {
                let inner = t
                    .strip_prefix("DECIMAL")
                    .and_then(|r| r.strip_prefix('('))
                    .and_then(|r| r.strip_suffix(')'));
                let (p, s) = match inner {
                    None => (10, 0),
                    Some(i) => {
                        let (p, s) = i.split_once(',').unwrap_or((i, "0"));
                        match (p.parse(), s.parse()) {
                            (Ok(p), Ok(s)) => (p, s),
                            _ => return Err(format!("`{text}` is not a type")),
                        }
                    }
                };
                Ty::Decimal(p, s)
            }
            _ => return Err(format!("`{text}` is not a type a function can take")),
        })
    }

    fn width(self) -> usize {
        match self {
            Ty::Boolean => 1,
            Ty::Int => 4,
            Ty::BigInt | Ty::Double | Ty::Timestamp => 8,
            Ty::Decimal(..) => 16,
            Ty::String => 0,
        }
    }
}

/// A function a module offers.
pub struct Function {
    name: &'static str,
    params: Vec<Ty>,
    param_text: &'static [&'static str],
    returns: Ty,
    returns_text: &'static str,
    kind: Kind,
}

enum Kind {
    Scalar(fn(&[Value<'_>]) -> Result<Value<'static>, Error>),
    Aggregate(Box<dyn DynAggregate>),
}

impl Function {
    /// A scalar function: `f` gets one row's arguments (of the declared
    /// parameter types, or [`Value::Null`]) and returns a value of the
    /// declared result type (or NULL).
    ///
    /// Panics when a type is not one SQL functions take (the module then
    /// fails to load, with the message).
    pub fn scalar(
        name: &'static str,
        params: &'static [&'static str],
        returns: &'static str,
        f: fn(&[Value<'_>]) -> Result<Value<'static>, Error>,
    ) -> Function {
        Function::new(name, params, returns, Kind::Scalar(f))
    }

    /// An aggregate function, for window aggregations.
    pub fn aggregate<A: AggregateFunction>(
        name: &'static str,
        params: &'static [&'static str],
        returns: &'static str,
        a: A,
    ) -> Function {
        Function::new(name, params, returns, Kind::Aggregate(Box::new(a)))
    }

    fn new(
        name: &'static str,
        params: &'static [&'static str],
        returns: &'static str,
        kind: Kind,
    ) -> Function {
        let ty = |t: &str| Ty::parse(t).unwrap_or_else(|m| panic!("function `{name}`: {m}"));
        Function {
            name,
            params: params.iter().map(|p| ty(p)).collect(),
            param_text: params,
            returns: ty(returns),
            returns_text: returns,
            kind,
        }
    }
}

/// An aggregate function (Flink's `AggregateFunction`): the host keeps an
/// accumulator per group (window and key), encoded as JSON, and calls
/// `accumulate` for each row, `merge` where groups meet (sliding window
/// panes, sessions), `value` when the window fires.
pub trait AggregateFunction: 'static {
    type Acc: Serialize + DeserializeOwned;

    /// The accumulator of an empty group.
    fn create(&self) -> Self::Acc;

    /// Adds one row's arguments. An `Err` fails that row alone; its
    /// accumulator stays as it was.
    fn accumulate(&self, acc: &mut Self::Acc, args: &[Value<'_>]) -> Result<(), Error>;

    /// Merges `other` into `acc`.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);

    /// The group's value.
    fn value(&self, acc: &Self::Acc) -> Value<'static>;
}

/// [`AggregateFunction`] over encoded accumulators.
trait DynAggregate {
    fn create(&self) -> Vec<u8>;
    fn accumulate(&self, acc: &[u8], args: &[Value<'_>]) -> Result<Vec<u8>, Error>;
    fn merge(&self, accs: &mut dyn Iterator<Item = &[u8]>) -> Vec<u8>;
    fn value(&self, acc: &[u8]) -> Value<'static>;
}

fn decode<A: DeserializeOwned>(bytes: &[u8]) -> A {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("an accumulator does not decode: {e}"))
}

fn encode<A: Serialize>(acc: &A) -> Vec<u8> {
    serde_json::to_vec(acc).unwrap_or_else(|e| panic!("an accumulator does not encode: {e}"))
}

impl<A: AggregateFunction> DynAggregate for A {
    fn create(&self) -> Vec<u8> {
        encode(&AggregateFunction::create(self))
    }

    fn accumulate(&self, acc: &[u8], args: &[Value<'_>]) -> Result<Vec<u8>, Error> {
        let mut a: A::Acc = decode(acc);
        AggregateFunction::accumulate(self, &mut a, args)?;
        Ok(encode(&a))
    }

    fn merge(&self, accs: &mut dyn Iterator<Item = &[u8]>) -> Vec<u8> {
        let mut merged = AggregateFunction::create(self);
        for a in accs {
            AggregateFunction::merge(self, &mut merged, decode(a));
        }
        encode(&merged)
    }

    fn value(&self, acc: &[u8]) -> Value<'static> {
        AggregateFunction::value(self, &decode(acc))
    }
}

/// Row `i` of a column of `ty`.
fn read(col: &Column, ty: Ty, i: usize) -> Value<'_> {
    if col.nulls[i] != 0 {
        return Value::Null;
    }
    if ty == Ty::String {
        let s = col.spans[i];
        let bytes = &col.data[s.offset as usize..][..s.len as usize];
        return Value::String(String::from_utf8_lossy(bytes));
    }
    let w = ty.width();
    let b = &col.data[i * w..][..w];
    let eight = || <[u8; 8]>::try_from(b).expect("8 bytes");
    match ty {
        Ty::Boolean => Value::Boolean(b[0] != 0),
        Ty::Int => Value::Int(i32::from_le_bytes(b.try_into().expect("4 bytes"))),
        Ty::BigInt => Value::BigInt(i64::from_le_bytes(eight())),
        Ty::Double => Value::Double(f64::from_le_bytes(eight())),
        Ty::Timestamp => Value::Timestamp(i64::from_le_bytes(eight())),
        Ty::Decimal(_, s) => Value::Decimal(i128::from_le_bytes(b.try_into().expect("16")), s),
        Ty::String => unreachable!("above"),
    }
}

/// `v` rescaled from scale `from` to `to`, rounding half up (away from
/// zero), as Java's `BigDecimal.setScale(to, HALF_UP)`.
fn rescale(v: i128, from: u8, to: u8) -> Option<i128> {
    if to >= from {
        return v.checked_mul(10i128.checked_pow(u32::from(to - from))?);
    }
    let d = 10i128.checked_pow(u32::from(from - to))?;
    let (q, r) = (v / d, v % d);
    Some(if r.abs() * 2 >= d { q + v.signum() } else { q })
}

/// Appends `v` to a column of `ty`; `Err` when it is not a value of it.
fn write(col: &mut Column, ty: Ty, v: &Value<'_>) -> Result<(), String> {
    let start = col.data.len();
    let mut null = false;
    match (ty, v) {
        (_, Value::Null) => null = true,
        (Ty::Boolean, Value::Boolean(b)) => col.data.push(u8::from(*b)),
        (Ty::Int, Value::Int(i)) => col.data.extend_from_slice(&i.to_le_bytes()),
        (Ty::BigInt, Value::BigInt(i)) => col.data.extend_from_slice(&i.to_le_bytes()),
        (Ty::BigInt, Value::Int(i)) => col.data.extend_from_slice(&i64::from(*i).to_le_bytes()),
        (Ty::Double, Value::Double(d)) => col.data.extend_from_slice(&d.to_le_bytes()),
        (Ty::Double, Value::Int(i)) => col.data.extend_from_slice(&f64::from(*i).to_le_bytes()),
        (Ty::Double, Value::BigInt(i)) => col.data.extend_from_slice(&(*i as f64).to_le_bytes()),
        (Ty::Timestamp, Value::Timestamp(t)) => col.data.extend_from_slice(&t.to_le_bytes()),
        (Ty::Decimal(_, s), Value::Decimal(u, from)) => {
            let u = rescale(*u, *from, s).ok_or("the decimal does not fit 128 bits")?;
            col.data.extend_from_slice(&u.to_le_bytes());
        }
        (Ty::Decimal(_, s), Value::Int(i)) => {
            let u = rescale(i128::from(*i), 0, s).ok_or("the decimal does not fit 128 bits")?;
            col.data.extend_from_slice(&u.to_le_bytes());
        }
        (Ty::Decimal(_, s), Value::BigInt(i)) => {
            let u = rescale(i128::from(*i), 0, s).ok_or("the decimal does not fit 128 bits")?;
            col.data.extend_from_slice(&u.to_le_bytes());
        }
        (Ty::String, Value::String(text)) => {
            col.spans.push(Span {
                offset: start as u32,
                len: text.len() as u32,
            });
            col.data.extend_from_slice(text.as_bytes());
            col.nulls.push(0);
            return Ok(());
        }
        (ty, v) => return Err(format!("returned {v:?}, which is not a value of {ty:?}")),
    }
    col.nulls.push(u8::from(null));
    if ty == Ty::String {
        col.spans.push(Span {
            offset: start as u32,
            len: 0,
        });
    } else if null {
        col.data.extend(std::iter::repeat_n(0, ty.width()));
    }
    Ok(())
}

fn empty() -> Column {
    Column {
        nulls: Vec::new(),
        data: Vec::new(),
        spans: Vec::new(),
    }
}

/// The functions of the module, made once per instance.
#[doc(hidden)]
pub struct SqlFunctions {
    functions: RefCell<Option<Vec<Function>>>,
}

impl Default for SqlFunctions {
    fn default() -> Self {
        Self::new()
    }
}

impl SqlFunctions {
    pub const fn new() -> Self {
        SqlFunctions {
            functions: RefCell::new(None),
        }
    }

    fn with<T>(&self, make: fn() -> Vec<Function>, f: impl FnOnce(&[Function]) -> T) -> T {
        let mut slot = self.functions.borrow_mut();
        f(slot.get_or_insert_with(make))
    }

    pub fn signatures(&self, make: fn() -> Vec<Function>) -> Vec<Signature> {
        self.with(make, |fs| {
            fs.iter()
                .map(|f| Signature {
                    name: f.name.to_owned(),
                    kind: match f.kind {
                        Kind::Scalar(_) => FunctionKind::Scalar,
                        Kind::Aggregate(_) => FunctionKind::Aggregate,
                    },
                    params: f.param_text.iter().map(|p| (*p).to_owned()).collect(),
                    returns: f.returns_text.to_owned(),
                })
                .collect()
        })
    }

    fn function<T>(
        &self,
        make: fn() -> Vec<Function>,
        index: u32,
        f: impl FnOnce(&Function) -> T,
    ) -> T {
        self.with(make, |fs| {
            let func = fs
                .get(index as usize)
                .unwrap_or_else(|| panic!("no function {index} of {}", fs.len()));
            f(func)
        })
    }

    pub fn call(
        &self,
        make: fn() -> Vec<Function>,
        index: u32,
        args: Vec<Column>,
        rows: u32,
    ) -> CallOutput {
        self.function(make, index, |f| {
            let Kind::Scalar(scalar) = &f.kind else {
                panic!("function `{}` is not a scalar function", f.name)
            };
            let mut values = empty();
            let mut errors = Vec::new();
            let mut row = Vec::with_capacity(args.len());
            for i in 0..rows as usize {
                row.clear();
                row.extend(args.iter().zip(&f.params).map(|(c, t)| read(c, *t, i)));
                let result = scalar(&row).map_err(|e| e.message().to_owned());
                let written = result.and_then(|v| write(&mut values, f.returns, &v));
                if let Err(message) = written {
                    write(&mut values, f.returns, &Value::Null).expect("NULL fits");
                    errors.push(RecordError {
                        index: i as u32,
                        message,
                    });
                }
            }
            CallOutput { values, errors }
        })
    }

    fn aggregate<T>(
        &self,
        make: fn() -> Vec<Function>,
        index: u32,
        f: impl FnOnce(&Function, &dyn DynAggregate) -> T,
    ) -> T {
        self.function(make, index, |func| {
            let Kind::Aggregate(a) = &func.kind else {
                panic!("function `{}` is not an aggregate function", func.name)
            };
            f(func, a.as_ref())
        })
    }

    pub fn create_accumulator(&self, make: fn() -> Vec<Function>, index: u32) -> Vec<u8> {
        self.aggregate(make, index, |_, a| a.create())
    }

    pub fn accumulate(
        &self,
        make: fn() -> Vec<Function>,
        index: u32,
        accumulators: ByteList,
        args: Vec<Column>,
        targets: Vec<u32>,
    ) -> AccumulateOutput {
        self.aggregate(make, index, |f, a| {
            let mut accs: Vec<Vec<u8>> = accumulators
                .spans
                .iter()
                .map(|s| accumulators.data[s.offset as usize..][..s.len as usize].to_vec())
                .collect();
            let mut errors = Vec::new();
            let mut row = Vec::with_capacity(args.len());
            for (i, &t) in targets.iter().enumerate() {
                row.clear();
                row.extend(args.iter().zip(&f.params).map(|(c, ty)| read(c, *ty, i)));
                match a.accumulate(&accs[t as usize], &row) {
                    Ok(next) => accs[t as usize] = next,
                    Err(e) => errors.push(RecordError {
                        index: i as u32,
                        message: e.message().to_owned(),
                    }),
                }
            }
            AccumulateOutput {
                accumulators: byte_list(accs.iter().map(Vec::as_slice)),
                errors,
            }
        })
    }

    pub fn merge(
        &self,
        make: fn() -> Vec<Function>,
        index: u32,
        accumulators: ByteList,
        groups: Vec<Span>,
    ) -> Result<ByteList, String> {
        self.aggregate(make, index, |_, a| {
            let item = |i: u32| -> &[u8] {
                let s = accumulators.spans[i as usize];
                &accumulators.data[s.offset as usize..][..s.len as usize]
            };
            let merged: Vec<Vec<u8>> = groups
                .iter()
                .map(|g| a.merge(&mut (g.offset..g.offset + g.len).map(item)))
                .collect();
            Ok(byte_list(merged.iter().map(Vec::as_slice)))
        })
    }

    pub fn get_value(
        &self,
        make: fn() -> Vec<Function>,
        index: u32,
        accumulators: ByteList,
    ) -> Result<Column, String> {
        self.aggregate(make, index, |f, a| {
            let mut values = empty();
            for s in &accumulators.spans {
                let acc = &accumulators.data[s.offset as usize..][..s.len as usize];
                write(&mut values, f.returns, &a.value(acc))
                    .map_err(|m| format!("function `{}` {m}", f.name))?;
            }
            Ok(values)
        })
    }
}

fn byte_list<'a>(items: impl Iterator<Item = &'a [u8]>) -> ByteList {
    let mut list = ByteList {
        data: Vec::new(),
        spans: Vec::new(),
    };
    for b in items {
        list.spans.push(Span {
            offset: list.data.len() as u32,
            len: b.len() as u32,
        });
        list.data.extend_from_slice(b);
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_as_flink_writes_them() {
        assert_eq!(Ty::parse("DECIMAL(10, 2)"), Ok(Ty::Decimal(10, 2)));
        assert_eq!(Ty::parse("decimal"), Ok(Ty::Decimal(10, 0)));
        assert_eq!(Ty::parse("VARCHAR(20)"), Ok(Ty::String));
        assert_eq!(Ty::parse("TIMESTAMP_LTZ(3)"), Ok(Ty::Timestamp));
        assert_eq!(Ty::parse("BIGINT NOT NULL"), Ok(Ty::BigInt));
        assert!(Ty::parse("ARRAY<INT>").is_err());
    }

    #[test]
    fn results_round_half_up_to_the_declared_scale() {
        assert_eq!(rescale(12345, 3, 2), Some(1235));
        assert_eq!(rescale(-12345, 3, 2), Some(-1235));
        assert_eq!(rescale(12344, 3, 2), Some(1234));
        assert_eq!(rescale(12, 0, 2), Some(1200));
        let mut col = empty();
        write(&mut col, Ty::Decimal(12, 2), &Value::Decimal(108_999, 3)).unwrap();
        assert_eq!(read(&col, Ty::Decimal(12, 2), 0), Value::Decimal(10_900, 2));
        assert!(write(&mut col, Ty::BigInt, &Value::String("x".into())).is_err());
    }

    #[test]
    fn strings_and_nulls_round_trip() {
        let mut col = empty();
        for v in [
            Value::String("a€".into()),
            Value::Null,
            Value::String("".into()),
        ] {
            write(&mut col, Ty::String, &v).unwrap();
        }
        assert_eq!(read(&col, Ty::String, 0), Value::String("a€".into()));
        assert_eq!(read(&col, Ty::String, 1), Value::Null);
        assert_eq!(read(&col, Ty::String, 2), Value::String("".into()));
    }
}
