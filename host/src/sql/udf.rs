//! User-defined functions in Wasm: `CREATE FUNCTION usd AS 'usd' LANGUAGE
//! WASM USING JAR 'usd_udf.wasm'`. A module declares each function's SQL
//! signature; a call binds to it (arguments cast as Flink casts
//! implicitly, anything else refused) and, in the `sql` operator, becomes a
//! column of the row, computed for a whole batch in one call with each
//! argument laid out as a flat [`Column`].
//!
//! Spec form (the `sql` operator's and a window aggregate's `functions:`):
//! `[[name, module, function], …]` — the SQL name, the module file, the
//! name the module gives the function.

use super::expr::Bound;
use super::types::{SqlType, Ty, Value, fits};
use crate::error::PlanError;
use crate::runtime::function::{Column, FunctionModules, Signature};
use crate::runtime::kind::{PlanContext, error};
use std::cell::RefCell;

/// A function of the script, as calls bind to it.
#[derive(Debug, Clone)]
pub struct Udf {
    /// The SQL name, as created.
    pub name: String,
    /// Which module (an index into the operator's modules).
    pub module: usize,
    /// Which of the module's functions.
    pub index: u32,
    pub aggregate: bool,
    pub params: Vec<Ty>,
    pub returns: Ty,
}

/// One call of a scalar function in an expression: the row's column
/// `slot` holds its value.
#[derive(Debug, Clone)]
pub struct UdfCall {
    /// Index into [`Udfs::defs`].
    pub udf: usize,
    /// The arguments, already cast to the parameter types.
    pub args: Vec<Bound>,
}

/// The functions a scope may call, and the calls bound so far (in binding
/// order, so a call's arguments only read calls before it).
#[derive(Debug, Default)]
pub struct Udfs {
    pub defs: Vec<Udf>,
    pub calls: RefCell<Vec<UdfCall>>,
}

impl Udfs {
    /// The function `name` (SQL names are case-insensitive).
    pub fn find(&self, name: &str) -> Option<(usize, &Udf)> {
        self.defs
            .iter()
            .enumerate()
            .find(|(_, u)| u.name.eq_ignore_ascii_case(name))
    }
}

/// A type of a signature, as the module wrote it.
fn signature_type(text: &str) -> Result<Ty, String> {
    let t = super::operator::parse_type(text)?;
    match t.ty {
        Ty::Interval | Ty::Null => Err(format!("`{text}` is not a type a function can take")),
        ty => Ok(ty),
    }
}

/// The function `function` of a module whose signatures are `sigs`, as a
/// [`Udf`] named `name`; `Err` says what is wrong, naming the module
/// `module`.
pub fn resolve(
    name: &str,
    module: &str,
    module_index: usize,
    function: &str,
    sigs: &[Signature],
) -> Result<Udf, String> {
    let Some(index) = sigs.iter().position(|s| s.name == function) else {
        let offered: Vec<&str> = sigs.iter().map(|s| s.name.as_str()).collect();
        return Err(format!(
            "function `{name}`: module `{module}` has no function `{function}` (it offers: {})",
            if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(", ")
            }
        ));
    };
    let s = &sigs[index];
    let ty = |t: &str, what: &str| {
        signature_type(t).map_err(|m| {
            format!("function `{name}` (`{function}` of module `{module}`): {what}: {m}")
        })
    };
    let params = s
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| ty(p, &format!("parameter {}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Udf {
        name: name.to_owned(),
        module: module_index,
        index: index as u32,
        aggregate: s.aggregate,
        params,
        returns: ty(&s.returns, "the result type")?,
    })
}

/// The functions a spec lists at `path` (`[[name, module, function], …]`),
/// their modules loaded through `cx`.
pub fn plan_functions(
    cx: &dyn PlanContext,
    path: &str,
    specs: &[(String, String, String)],
) -> Result<(Udfs, FunctionModules), PlanError> {
    let mut names: Vec<&str> = Vec::new();
    let mut modules: FunctionModules = Vec::new();
    let mut defs = Vec::new();
    for (name, module, function) in specs {
        let i = match names.iter().position(|m| m == module) {
            Some(i) => i,
            None => {
                modules.push(cx.function_module(path, module)?);
                names.push(module);
                modules.len() - 1
            }
        };
        let udf = resolve(name, module, i, function, modules[i].signatures())
            .map_err(|m| error(cx, path, m))?;
        defs.push(udf);
    }
    Ok((
        Udfs {
            defs,
            calls: RefCell::default(),
        },
        modules,
    ))
}

/// Whether an argument of type `from` may be passed for a parameter of
/// type `to` (Flink's implicit casts: to a wider number, between text
/// types, a NULL to anything).
pub fn implicit(from: Ty, to: Ty) -> bool {
    if from == to || from == Ty::Null {
        return true;
    }
    let int_digits = |t: Ty| match t {
        Ty::Int => Some(10),
        Ty::BigInt => Some(19),
        Ty::Decimal(p, s) => Some(p - s),
        _ => None,
    };
    match (from, to) {
        (Ty::Int | Ty::BigInt | Ty::Decimal(..), Ty::Double) => true,
        (Ty::Int, Ty::BigInt) => true,
        (Ty::Int | Ty::BigInt | Ty::Decimal(..), Ty::Decimal(_, s2)) => {
            let s1 = match from {
                Ty::Decimal(_, s) => s,
                _ => 0,
            };
            s2 >= s1 && int_digits(to) >= int_digits(from)
        }
        (f, t) if f.is_string() && t.is_string() => true,
        _ => false,
    }
}

/// Bytes of one value of `ty` in a column (0: text, in spans).
pub fn width(ty: Ty) -> usize {
    match ty {
        Ty::Boolean => 1,
        Ty::Int => 4,
        Ty::BigInt | Ty::Double | Ty::Timestamp | Ty::TimestampLtz | Ty::Interval => 8,
        Ty::Decimal(..) => 16,
        Ty::Char(_) | Ty::Varchar(_) | Ty::Null => 0,
    }
}

/// Appends `v`, a value of `ty` (already cast to it), to `col`.
pub fn push(col: &mut Column, ty: Ty, v: &Value) {
    col.nulls.push(u8::from(*v == Value::Null));
    if ty.is_string() {
        let text = match v {
            Value::Str(s) => s.as_bytes(),
            _ => &[],
        };
        col.spans.push(crate::runtime::batch::Span {
            offset: col.data.len() as u32,
            len: text.len() as u32,
        });
        col.data.extend_from_slice(text);
        return;
    }
    match (ty, v) {
        (Ty::Boolean, Value::Bool(b)) => col.data.push(u8::from(*b)),
        (Ty::Int, Value::Int(i)) => col.data.extend_from_slice(&(*i as i32).to_le_bytes()),
        (Ty::BigInt, Value::Int(i)) | (Ty::Timestamp | Ty::TimestampLtz, Value::Ts(i)) => {
            col.data.extend_from_slice(&i.to_le_bytes())
        }
        (Ty::Double, Value::Double(d)) => col.data.extend_from_slice(&d.to_le_bytes()),
        (Ty::Decimal(..), Value::Dec(u, _)) => col.data.extend_from_slice(&u.to_le_bytes()),
        _ => col.data.extend(std::iter::repeat_n(0, width(ty))),
    }
}

/// The `rows` values of the column `udf` returned to operator `uid`,
/// checked against its declared type; a column that does not hold them
/// breaks the contract (the module's fault, named).
pub fn returned(
    col: &Column,
    udf: &Udf,
    rows: usize,
    uid: &str,
) -> Result<Vec<Value>, crate::error::RuntimeError> {
    check(col, udf.returns, rows).map_err(|m| {
        crate::error::RuntimeError::Wasm(crate::error::WasmError::Contract {
            uid: uid.to_owned(),
            message: format!("function {} returned {m}", udf.name),
        })
    })?;
    Ok((0..rows).map(|i| get(col, udf.returns, i)).collect())
}

/// Checks that a column a function returned holds `rows` values of `ty`.
pub fn check(col: &Column, ty: Ty, rows: usize) -> Result<(), String> {
    if ty.is_string() {
        if col.spans.len() != rows {
            return Err(format!(
                "{} text values for {rows} rows of {}",
                col.spans.len(),
                SqlType::new(ty, true)
            ));
        }
        for (i, s) in col.spans.iter().enumerate() {
            if col.nulls[i] == 0 && std::str::from_utf8(&col.data[s.range()]).is_err() {
                return Err(format!("the text of row {i} is not UTF-8"));
            }
        }
        return Ok(());
    }
    let w = width(ty);
    if col.data.len() != w * rows || !col.spans.is_empty() {
        return Err(format!(
            "{} bytes{} for {rows} values of {} ({w} bytes each)",
            col.data.len(),
            if col.spans.is_empty() {
                ""
            } else {
                " and text spans"
            },
            SqlType::new(ty, true)
        ));
    }
    Ok(())
}

/// Value `i` of a column of `ty` that [`check`] passed. A DECIMAL too wide
/// for its precision is NULL, as Flink converts one.
pub fn get(col: &Column, ty: Ty, i: usize) -> Value {
    if col.nulls[i] != 0 {
        return Value::Null;
    }
    if ty.is_string() {
        let s = col.spans[i];
        return Value::Str(String::from_utf8(col.data[s.range()].to_vec()).expect("checked UTF-8"));
    }
    let w = width(ty);
    let b = &col.data[i * w..(i + 1) * w];
    let eight = |b: &[u8]| <[u8; 8]>::try_from(b).expect("8 bytes");
    match ty {
        Ty::Boolean => Value::Bool(b[0] != 0),
        Ty::Int => Value::Int(i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64),
        Ty::BigInt => Value::Int(i64::from_le_bytes(eight(b))),
        Ty::Timestamp | Ty::TimestampLtz => Value::Ts(i64::from_le_bytes(eight(b))),
        Ty::Double => Value::Double(f64::from_le_bytes(eight(b))),
        Ty::Decimal(p, s) => {
            let u = i128::from_le_bytes(b.try_into().expect("16 bytes"));
            if fits(u, p) {
                Value::Dec(u, s)
            } else {
                Value::Null
            }
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cross_a_column_and_come_back() {
        let cases: Vec<(Ty, Vec<Value>)> = vec![
            (
                Ty::Boolean,
                vec![Value::Bool(true), Value::Null, Value::Bool(false)],
            ),
            (
                Ty::Int,
                vec![Value::Int(-7), Value::Null, Value::Int(i32::MAX as i64)],
            ),
            (Ty::BigInt, vec![Value::Int(i64::MIN), Value::Null]),
            (Ty::Double, vec![Value::Double(1.5), Value::Null]),
            (Ty::Decimal(10, 2), vec![Value::Dec(-1230, 2), Value::Null]),
            (
                Ty::Timestamp,
                vec![Value::Ts(1_700_000_000_123), Value::Null],
            ),
            (
                Ty::Varchar(u32::MAX),
                vec![
                    Value::Str("€ uro".into()),
                    Value::Null,
                    Value::Str(String::new()),
                ],
            ),
        ];
        for (ty, values) in cases {
            let mut col = Column::default();
            for v in &values {
                push(&mut col, ty, v);
            }
            check(&col, ty, values.len()).unwrap();
            let back: Vec<Value> = (0..values.len()).map(|i| get(&col, ty, i)).collect();
            assert_eq!(back, values, "{ty:?}");
        }
    }

    #[test]
    fn a_decimal_wider_than_its_precision_is_null_and_bad_shapes_are_named() {
        let mut col = Column::default();
        push(&mut col, Ty::Decimal(5, 2), &Value::Dec(123_456, 2));
        assert_eq!(get(&col, Ty::Decimal(5, 2), 0), Value::Null);
        assert!(check(&col, Ty::BigInt, 1).unwrap_err().contains("16 bytes"));
        let mut text = Column::default();
        push(&mut text, Ty::Varchar(10), &Value::Str("ab".into()));
        text.data[0] = 0xff;
        assert!(
            check(&text, Ty::Varchar(10), 1)
                .unwrap_err()
                .contains("UTF-8")
        );
    }

    #[test]
    fn arguments_widen_as_flink_casts_them() {
        assert!(implicit(Ty::Int, Ty::BigInt));
        assert!(implicit(Ty::Int, Ty::Decimal(10, 0)));
        assert!(!implicit(Ty::Int, Ty::Decimal(9, 0)));
        assert!(implicit(Ty::Decimal(10, 2), Ty::Decimal(12, 4)));
        assert!(!implicit(Ty::Decimal(10, 2), Ty::Decimal(10, 4)));
        assert!(implicit(Ty::Decimal(10, 2), Ty::Double));
        assert!(!implicit(Ty::Double, Ty::Decimal(38, 10)));
        assert!(!implicit(Ty::BigInt, Ty::Int));
        assert!(!implicit(Ty::Varchar(5), Ty::Int));
        assert!(implicit(Ty::Char(3), Ty::Varchar(u32::MAX)));
        assert!(implicit(Ty::Null, Ty::Boolean));
    }
}
