//! SQL expressions bound to a row's columns, typed as Flink types them,
//! and evaluated natively (no Wasm for built-ins).

use super::types::{
    self, POW10, SqlType, Ty, Value, decimal_text, digits, fits, parse_decimal, rescale,
};
use super::{SqlError, at};
use sqlparser::ast::{self, BinaryOperator, Expr, UnaryOperator};
use std::borrow::Cow;

/// A bound expression.
#[derive(Debug, Clone)]
pub struct Bound {
    pub ty: SqlType,
    node: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Column(usize),
    Literal(Value),
    Arith(char, Box<Bound>, Box<Bound>),
    Neg(Box<Bound>),
    Cmp(BinaryOperator, Box<Bound>, Box<Bound>),
    And(Box<Bound>, Box<Bound>),
    Or(Box<Bound>, Box<Bound>),
    Not(Box<Bound>),
    IsNull(Box<Bound>, bool),
    Case(Vec<(Bound, Bound)>, Option<Box<Bound>>),
    Coalesce(Vec<Bound>),
    Cast(Box<Bound>),
    Like(Box<Bound>, Box<Bound>),
    In(Box<Bound>, Vec<Bound>),
    Func(Func, Vec<Bound>),
}

#[derive(Debug, Clone, Copy)]
enum Func {
    Upper,
    Lower,
    CharLength,
    Concat,
    Substring,
    Trim,
    /// TO_TIMESTAMP_LTZ of a number of (milli)seconds: the factor to
    /// milliseconds.
    ToTimestampLtz(i64),
    /// DATE_FORMAT(timestamp, pattern).
    DateFormat,
    /// EXTRACT(unit FROM timestamp).
    Extract(TimeUnit),
    /// FLOOR(timestamp TO unit), and CEIL with `true`.
    RoundTime(TimeUnit, bool),
    /// TIMESTAMPDIFF(unit, a, b).
    TimestampDiff(TimeUnit),
    /// JSON_VALUE(text, path).
    JsonValue,
    Abs,
}

/// A unit of time as SQL names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

impl TimeUnit {
    fn parse(name: &str) -> Option<TimeUnit> {
        Some(match name.to_ascii_uppercase().trim_end_matches('S') {
            "YEAR" => TimeUnit::Year,
            "QUARTER" => TimeUnit::Quarter,
            "MONTH" => TimeUnit::Month,
            "WEEK" => TimeUnit::Week,
            "DAY" => TimeUnit::Day,
            "HOUR" => TimeUnit::Hour,
            "MINUTE" => TimeUnit::Minute,
            "SECOND" => TimeUnit::Second,
            "MILLISECOND" => TimeUnit::Millisecond,
            _ => return None,
        })
    }

    /// Milliseconds of a fixed-length unit.
    fn millis(self) -> Option<i64> {
        Some(match self {
            TimeUnit::Week => 7 * 86_400_000,
            TimeUnit::Day => 86_400_000,
            TimeUnit::Hour => 3_600_000,
            TimeUnit::Minute => 60_000,
            TimeUnit::Second => 1000,
            TimeUnit::Millisecond => 1,
            _ => return None,
        })
    }
}

/// The columns an expression may name.
pub struct Scope<'a> {
    pub columns: &'a [(String, SqlType)],
    /// How deep binding is (see [`MAX_DEPTH`]).
    pub depth: std::cell::Cell<usize>,
    /// After a GROUP BY: expressions (as SQL text) that stand for a column
    /// of the scope — the group keys and the aggregate calls.
    pub groups: &'a [(String, usize)],
    /// The names that may qualify a column (`o.amount`): the FROM's table
    /// and its alias.
    pub qualifiers: &'a [String],
    /// Where rows have `CURRENT_WATERMARK`'s value: one past the columns,
    /// where the `sql` operator puts it (`None`: not in this scope).
    pub watermark: Option<usize>,
    /// The script's Wasm functions, and the calls bound in this scope: a
    /// call reads column `columns.len() + 1 + i` of the row (after the
    /// watermark), where the `sql` operator puts call `i`'s value.
    pub udfs: Option<&'a super::udf::Udfs>,
}

impl<'a> Scope<'a> {
    pub fn new(columns: &'a [(String, SqlType)]) -> Scope<'a> {
        Scope {
            columns,
            depth: std::cell::Cell::new(0),
            groups: &[],
            qualifiers: &[],
            watermark: None,
            udfs: None,
        }
    }

    /// The same scope, where `CURRENT_WATERMARK` can be read: the `sql`
    /// operator puts its watermark after the columns of each row.
    pub fn with_watermark(self) -> Scope<'a> {
        Scope {
            watermark: Some(self.columns.len()),
            ..self
        }
    }

    /// A scope of grouped rows: `groups` maps expressions to its columns.
    pub fn grouped(columns: &'a [(String, SqlType)], groups: &'a [(String, usize)]) -> Scope<'a> {
        Scope {
            groups,
            ..Scope::new(columns)
        }
    }
}

impl Scope<'_> {
    fn column(&self, name: &str) -> Option<(usize, SqlType)> {
        self.columns
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| (i, self.columns[i].1))
    }
}

fn unsupported(e: &Expr, what: &str) -> SqlError {
    SqlError::new(
        at(e),
        format!("{what} is not supported by `sluice sql` yet"),
    )
}

fn mismatch(e: &Expr, message: String) -> SqlError {
    SqlError::new(at(e), message)
}

/// How deep an expression may nest (`a + (b + (c + …))`): binding and
/// evaluation recurse, and a script is input the host does not trust.
pub const MAX_DEPTH: usize = 200;

/// Binds `e` against `scope`.
pub fn bind(e: &Expr, scope: &Scope<'_>) -> Result<Bound, SqlError> {
    let d = scope.depth.get();
    if d >= MAX_DEPTH {
        return Err(mismatch(
            e,
            format!("the expression nests deeper than {MAX_DEPTH} levels"),
        ));
    }
    scope.depth.set(d + 1);
    let r = bind_inner(e, scope);
    scope.depth.set(d);
    r
}

fn bind_inner(e: &Expr, scope: &Scope<'_>) -> Result<Bound, SqlError> {
    let b = |n: Node, ty: Ty, nullable: bool| Bound {
        ty: SqlType::new(ty, nullable),
        node: n,
    };
    if !scope.groups.is_empty() {
        let text = e.to_string();
        if let Some((_, i)) = scope.groups.iter().find(|(t, _)| *t == text) {
            return Ok(Bound {
                ty: scope.columns[*i].1,
                node: Node::Column(*i),
            });
        }
    }
    Ok(match e {
        Expr::Identifier(id) if !scope.groups.is_empty() && scope.column(&id.value).is_none() => {
            return Err(mismatch(
                e,
                format!(
                    "`{}` is neither grouped (GROUP BY) nor inside an aggregate function",
                    id.value
                ),
            ));
        }
        Expr::Identifier(id) => {
            let (i, ty) = scope.column(&id.value).ok_or_else(|| {
                let names: Vec<&str> = scope.columns.iter().map(|(n, _)| n.as_str()).collect();
                mismatch(
                    e,
                    format!(
                        "column `{}` not found; the columns are {}",
                        id.value,
                        names.join(", ")
                    ),
                )
            })?;
            Bound {
                ty,
                node: Node::Column(i),
            }
        }
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] if scope.qualifiers.contains(&q.value) => {
                bind(&Expr::Identifier(c.clone()), scope)?
            }
            [q, _] => {
                return Err(mismatch(
                    e,
                    format!(
                        "`{}` is not a table of this FROM ({})",
                        q.value,
                        scope.qualifiers.join(", ")
                    ),
                ));
            }
            _ => return Err(unsupported(e, "a column name of over two parts")),
        },
        Expr::Nested(inner) => bind(inner, scope)?,
        Expr::Value(v) => literal(e, &v.value)?,
        Expr::UnaryOp { op, expr } => {
            let x = bind(expr, scope)?;
            match op {
                UnaryOperator::Minus if x.ty.ty.is_numeric() => {
                    let ty = x.ty;
                    Bound {
                        ty,
                        node: Node::Neg(Box::new(x)),
                    }
                }
                UnaryOperator::Plus if x.ty.ty.is_numeric() => x,
                UnaryOperator::Not => {
                    boolean(expr, &x)?;
                    let n = x.ty.nullable;
                    b(Node::Not(Box::new(x)), Ty::Boolean, n)
                }
                _ => return Err(mismatch(e, format!("`{op}` cannot take {}", x.ty))),
            }
        }
        Expr::BinaryOp { left, op, right } => {
            let (l, r) = (bind(left, scope)?, bind(right, scope)?);
            let nullable = l.ty.nullable || r.ty.nullable;
            let arith = match op {
                BinaryOperator::Plus => Some('+'),
                BinaryOperator::Minus => Some('-'),
                BinaryOperator::Multiply => Some('*'),
                BinaryOperator::Divide => Some('/'),
                BinaryOperator::Modulo => Some('%'),
                _ => None,
            };
            if let Some(c) = arith
                && let Some(ty) = time_arithmetic(c, l.ty.ty, r.ty.ty)
            {
                // A time attribute plus or minus an interval stays one.
                let rowtime = l.ty.rowtime || r.ty.rowtime;
                let mut x = b(Node::Arith(c, Box::new(l), Box::new(r)), ty, nullable);
                x.ty.rowtime = rowtime && ty != Ty::Interval;
                return Ok(x);
            }
            if let Some(c) = arith {
                let ty = types::arithmetic(c, l.ty.ty, r.ty.ty).ok_or_else(|| {
                    mismatch(e, format!("`{op}` cannot take {} and {}", l.ty, r.ty))
                })?;
                return Ok(b(Node::Arith(c, Box::new(l), Box::new(r)), ty, nullable));
            }
            match op {
                BinaryOperator::And | BinaryOperator::Or => {
                    boolean(left, &l)?;
                    boolean(right, &r)?;
                    let node = if *op == BinaryOperator::And {
                        Node::And(Box::new(l), Box::new(r))
                    } else {
                        Node::Or(Box::new(l), Box::new(r))
                    };
                    b(node, Ty::Boolean, nullable)
                }
                BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq => {
                    comparable(e, &l, &r)?;
                    b(
                        Node::Cmp(op.clone(), Box::new(l), Box::new(r)),
                        Ty::Boolean,
                        nullable,
                    )
                }
                BinaryOperator::StringConcat => concat(e, vec![l, r])?,
                _ => return Err(unsupported(e, &format!("the operator `{op}`"))),
            }
        }
        Expr::IsNull(x) | Expr::IsNotNull(x) => {
            let x = bind(x, scope)?;
            b(
                Node::IsNull(Box::new(x), matches!(e, Expr::IsNull(_))),
                Ty::Boolean,
                false,
            )
        }
        Expr::In {
            expr,
            target: ast::InTarget::List(list),
            negated,
            ..
        } => {
            let x = bind(expr, scope)?;
            let mut nullable = x.ty.nullable;
            let mut items = Vec::with_capacity(list.len());
            for item in list {
                let v = bind(item, scope)?;
                comparable(item, &x, &v)?;
                nullable |= v.ty.nullable;
                items.push(v);
            }
            if items.is_empty() {
                return Err(mismatch(e, "an empty IN list".into()));
            }
            negate_if(
                *negated,
                b(Node::In(Box::new(x), items), Ty::Boolean, nullable),
            )
        }
        Expr::In { .. } => return Err(unsupported(e, "IN with a subquery")),
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let x = bind(expr, scope)?;
            let (lo, hi) = (bind(low, scope)?, bind(high, scope)?);
            comparable(low, &x, &lo)?;
            comparable(high, &x, &hi)?;
            let nullable = x.ty.nullable || lo.ty.nullable || hi.ty.nullable;
            let ge = b(
                Node::Cmp(BinaryOperator::GtEq, Box::new(x.clone()), Box::new(lo)),
                Ty::Boolean,
                nullable,
            );
            let le = b(
                Node::Cmp(BinaryOperator::LtEq, Box::new(x), Box::new(hi)),
                Ty::Boolean,
                nullable,
            );
            negate_if(
                *negated,
                b(Node::And(Box::new(ge), Box::new(le)), Ty::Boolean, nullable),
            )
        }
        Expr::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        } => {
            let (x, p) = (bind(expr, scope)?, bind(pattern, scope)?);
            if !x.ty.ty.is_string() || !p.ty.ty.is_string() {
                return Err(mismatch(
                    e,
                    format!("LIKE takes strings, not {} and {}", x.ty, p.ty),
                ));
            }
            let nullable = x.ty.nullable || p.ty.nullable;
            negate_if(
                *negated,
                b(Node::Like(Box::new(x), Box::new(p)), Ty::Boolean, nullable),
            )
        }
        Expr::Like { .. } => return Err(unsupported(e, "LIKE with ESCAPE or ANY")),
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let operand = operand.as_ref().map(|o| bind(o, scope)).transpose()?;
            let mut branches = Vec::new();
            for w in conditions {
                let c = bind(&w.condition, scope)?;
                let cond = match &operand {
                    Some(o) => {
                        comparable(&w.condition, o, &c)?;
                        let n = o.ty.nullable || c.ty.nullable;
                        b(
                            Node::Cmp(BinaryOperator::Eq, Box::new(o.clone()), Box::new(c)),
                            Ty::Boolean,
                            n,
                        )
                    }
                    None => {
                        boolean(&w.condition, &c)?;
                        c
                    }
                };
                branches.push((cond, bind(&w.result, scope)?));
            }
            let otherwise = else_result.as_ref().map(|x| bind(x, scope)).transpose()?;
            let mut tys: Vec<Ty> = branches.iter().map(|(_, r)| r.ty.ty).collect();
            tys.extend(otherwise.iter().map(|o| o.ty.ty));
            let ty = types::common(&tys)
                .ok_or_else(|| mismatch(e, "the branches of CASE have no common type".into()))?;
            let nullable = otherwise.as_ref().is_none_or(|o| o.ty.nullable)
                || branches.iter().any(|(_, r)| r.ty.nullable);
            let branches = branches
                .into_iter()
                .map(|(c, r)| (c, cast_to(r, ty)))
                .collect();
            b(
                Node::Case(branches, otherwise.map(|o| Box::new(cast_to(o, ty)))),
                ty,
                nullable,
            )
        }
        Expr::Cast {
            kind: ast::CastKind::Cast,
            expr,
            data_type,
            format: None,
        } => {
            let x = bind(expr, scope)?;
            let to = data_type_of(at(e), data_type)?;
            let ok = x.ty.ty == Ty::Null
                || x.ty.ty.is_numeric() && (to.is_numeric() || to.is_string())
                || x.ty.ty.is_string() && (to.is_numeric() || to.is_string() || to == Ty::Boolean)
                || x.ty.ty == Ty::Boolean && (to.is_string() || to == Ty::Boolean)
                || x.ty.ty.is_timestamp() && (to.is_timestamp() || to.is_string())
                || x.ty.ty.is_string() && to.is_timestamp();
            if !ok {
                return Err(mismatch(
                    e,
                    format!("cannot CAST {} to {}", x.ty, SqlType::new(to, true)),
                ));
            }
            let nullable = x.ty.nullable;
            b(Node::Cast(Box::new(x)), to, nullable)
        }
        Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let mut args = vec![bind(expr, scope)?];
            let from = substring_from
                .as_ref()
                .ok_or_else(|| unsupported(e, "SUBSTRING without FROM"))?;
            args.push(bind(from, scope)?);
            if let Some(f) = substring_for {
                args.push(bind(f, scope)?);
            }
            string_func(e, Func::Substring, args)?
        }
        Expr::Trim {
            trim_where: None,
            trim_what: None,
            expr,
            trim_characters: None,
        } => string_func(e, Func::Trim, vec![bind(expr, scope)?])?,
        Expr::Function(f) => function(e, f, scope)?,
        Expr::Extract { field, expr, .. } => {
            let unit = TimeUnit::parse(&field.to_string())
                .ok_or_else(|| unsupported(e, &format!("EXTRACT of {field}")))?;
            let x = bind(expr, scope)?;
            if !x.ty.ty.is_timestamp() && x.ty.ty != Ty::Null {
                return Err(mismatch(
                    e,
                    format!("EXTRACT takes a timestamp, not {}", x.ty),
                ));
            }
            let nullable = x.ty.nullable;
            b(
                Node::Func(Func::Extract(unit), vec![x]),
                Ty::BigInt,
                nullable,
            )
        }
        Expr::Floor {
            expr,
            field: ast::CeilFloorKind::DateTimeField(field),
        }
        | Expr::Ceil {
            expr,
            field: ast::CeilFloorKind::DateTimeField(field),
        } if !matches!(field, ast::DateTimeField::NoDateTime) => {
            let unit = TimeUnit::parse(&field.to_string())
                .ok_or_else(|| unsupported(e, &format!("FLOOR or CEIL to {field}")))?;
            let x = bind(expr, scope)?;
            if !x.ty.ty.is_timestamp() {
                return Err(mismatch(
                    e,
                    format!("FLOOR(… TO {field}) takes a timestamp, not {}", x.ty),
                ));
            }
            // A time attribute rounded stays one.
            let ty = x.ty;
            let ceil = matches!(e, Expr::Ceil { .. });
            Bound {
                ty,
                node: Node::Func(Func::RoundTime(unit, ceil), vec![x]),
            }
        }
        Expr::Interval(i) => Bound {
            ty: SqlType::new(Ty::Interval, false),
            node: Node::Literal(Value::Ts(interval_millis(e, i)?)),
        },
        _ => return Err(unsupported(e, "this expression")),
    })
}

fn negate_if(negated: bool, x: Bound) -> Bound {
    if !negated {
        return x;
    }
    Bound {
        ty: x.ty,
        node: Node::Not(Box::new(x)),
    }
}

fn boolean(e: &Expr, x: &Bound) -> Result<(), SqlError> {
    if matches!(x.ty.ty, Ty::Boolean | Ty::Null) {
        Ok(())
    } else {
        Err(mismatch(e, format!("expected a BOOLEAN, found {}", x.ty)))
    }
}

fn comparable(e: &Expr, a: &Bound, b: &Bound) -> Result<(), SqlError> {
    let (x, y) = (a.ty.ty, b.ty.ty);
    if x == Ty::Null
        || y == Ty::Null
        || x.is_numeric() && y.is_numeric()
        || x.is_string() && y.is_string()
        || x.is_timestamp() && y.is_timestamp()
        || x == y
    {
        Ok(())
    } else {
        Err(mismatch(
            e,
            format!("cannot compare {} with {}", a.ty, b.ty),
        ))
    }
}

/// `x` with its value converted to `ty` when evaluated.
fn cast_to(x: Bound, ty: Ty) -> Bound {
    if x.ty.ty == ty {
        return x;
    }
    let nullable = x.ty.nullable;
    Bound {
        ty: SqlType::new(ty, nullable),
        node: Node::Cast(Box::new(x)),
    }
}

/// The most digits of a numeric literal (Flink's planner refuses more).
const MAX_LITERAL_DIGITS: u8 = 19;

fn literal(e: &Expr, v: &ast::Value) -> Result<Bound, SqlError> {
    let lit = |v: Value, ty: Ty| Bound {
        ty: SqlType::new(ty, v == Value::Null),
        node: Node::Literal(v),
    };
    let out_of_range = |n: &str| mismatch(e, format!("the numeric literal {n} is out of range"));
    Ok(match v {
        ast::Value::Number(n, false) => {
            if n.contains(['e', 'E']) {
                let d: f64 = n
                    .parse()
                    .map_err(|_| mismatch(e, format!("bad number {n}")))?;
                lit(Value::Double(d), Ty::Double)
            } else if !n.contains('.') {
                match n.parse::<i64>() {
                    Ok(i) if i32::try_from(i).is_ok() => lit(Value::Int(i), Ty::Int),
                    Ok(i) => lit(Value::Int(i), Ty::BigInt),
                    Err(_) => return Err(out_of_range(n)),
                }
            } else {
                let (u, s) = parse_decimal(n).ok_or_else(|| out_of_range(n))?;
                if digits(u).max(s) > MAX_LITERAL_DIGITS {
                    return Err(out_of_range(n));
                }
                lit(Value::Dec(u, s), Ty::Decimal(digits(u).max(s), s))
            }
        }
        ast::Value::SingleQuotedString(s) => {
            lit(Value::Str(s.clone()), Ty::Char(s.chars().count() as u32))
        }
        ast::Value::Boolean(x) => lit(Value::Bool(*x), Ty::Boolean),
        ast::Value::Null => lit(Value::Null, Ty::Null),
        _ => return Err(unsupported(e, "this literal")),
    })
}

/// The type a CAST or a column declares.
pub fn data_type_of(pos: super::Pos, t: &ast::DataType) -> Result<Ty, SqlError> {
    use ast::{DataType as D, ExactNumberInfo as N};
    Ok(match t {
        D::Boolean | D::Bool => Ty::Boolean,
        D::Int(None) | D::Integer(None) => Ty::Int,
        D::BigInt(None) => Ty::BigInt,
        D::Double(_) | D::DoublePrecision => Ty::Double,
        D::String(None) | D::Text => Ty::Varchar(types::STRING_LEN),
        D::Varchar(Some(ast::CharacterLength::IntegerLength { length, .. })) => {
            Ty::Varchar(*length as u32)
        }
        D::Char(Some(ast::CharacterLength::IntegerLength { length, .. })) => {
            Ty::Char(*length as u32)
        }
        D::Timestamp(Some(3), ast::TimezoneInfo::None) => Ty::Timestamp,
        D::Custom(name, args)
            if name.to_string().eq_ignore_ascii_case("TIMESTAMP_LTZ")
                && args.len() == 1
                && args[0].to_string() == "3" =>
        {
            Ty::TimestampLtz
        }
        D::Timestamp(..) | D::Custom(..)
            if t.to_string().to_ascii_uppercase().starts_with("TIMESTAMP") =>
        {
            return Err(SqlError::new(
                pos,
                format!(
                    "{t}: `sluice sql` has TIMESTAMP(3) and TIMESTAMP_LTZ(3), with milliseconds; other precisions are not supported yet"
                ),
            ));
        }
        D::Decimal(info) | D::Numeric(info) | D::Dec(info) => match info {
            N::None => Ty::Decimal(10, 0),
            N::Precision(p) if *p >= 1 && *p <= 38 => Ty::Decimal(*p as u8, 0),
            N::PrecisionAndScale(p, s) if *p >= 1 && *p <= 38 && *s >= 0 && *s as u64 <= *p => {
                Ty::Decimal(*p as u8, *s as u8)
            }
            _ => {
                return Err(SqlError::new(
                    pos,
                    format!("{t}: DECIMAL takes a precision of 1 to 38 and a scale up to it"),
                ));
            }
        },
        _ => {
            return Err(SqlError::new(
                pos,
                format!("the type {t} is not supported by `sluice sql` yet"),
            ));
        }
    })
}

fn string_func(e: &Expr, f: Func, args: Vec<Bound>) -> Result<Bound, SqlError> {
    let s = &args[0];
    if !s.ty.ty.is_string() && s.ty.ty != Ty::Null {
        return Err(mismatch(e, format!("expected a string, found {}", s.ty)));
    }
    for a in &args[1..] {
        if !matches!(a.ty.ty, Ty::Int | Ty::BigInt | Ty::Null) {
            return Err(mismatch(e, format!("expected an integer, found {}", a.ty)));
        }
    }
    let nullable = args.iter().any(|a| a.ty.nullable);
    let ty = match (f, s.ty.ty) {
        (Func::CharLength, _) => Ty::Int,
        (_, Ty::Char(n) | Ty::Varchar(n)) => Ty::Varchar(n),
        _ => Ty::Varchar(types::STRING_LEN),
    };
    Ok(Bound {
        ty: SqlType::new(ty, nullable),
        node: Node::Func(f, args),
    })
}

fn concat(e: &Expr, args: Vec<Bound>) -> Result<Bound, SqlError> {
    let mut len: u64 = 0;
    for a in &args {
        match a.ty.ty {
            Ty::Char(n) | Ty::Varchar(n) => len += n as u64,
            Ty::Null => {}
            _ => return Err(mismatch(e, format!("CONCAT takes strings, not {}", a.ty))),
        }
    }
    let nullable = args.iter().any(|a| a.ty.nullable);
    Ok(Bound {
        ty: SqlType::new(
            Ty::Varchar(len.min(types::STRING_LEN as u64) as u32),
            nullable,
        ),
        node: Node::Func(Func::Concat, args),
    })
}

fn function(e: &Expr, f: &ast::Function, scope: &Scope<'_>) -> Result<Bound, SqlError> {
    let name = f.name.to_string().to_ascii_uppercase();
    if matches!(name.as_str(), "COUNT" | "SUM" | "MIN" | "MAX" | "AVG") {
        return Err(mismatch(
            e,
            format!(
                "the aggregate function {name} belongs in the SELECT or HAVING of a window aggregation (GROUP BY window_start, window_end, …)"
            ),
        ));
    }
    let ast::FunctionArguments::List(list) = &f.args else {
        return Err(unsupported(e, &format!("{name} without arguments")));
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() || f.over.is_some() {
        return Err(unsupported(
            e,
            &format!("{name} with DISTINCT, clauses or OVER"),
        ));
    }
    let mut args = Vec::new();
    // TIMESTAMPDIFF's first argument is a unit, not a value.
    let skip = usize::from(name == "TIMESTAMPDIFF");
    for a in list.args.iter().skip(skip) {
        match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x)) => args.push(bind(x, scope)?),
            _ => return Err(unsupported(e, &format!("this argument of {name}"))),
        }
    }
    let arity = |n: usize| -> Result<(), SqlError> {
        if args.len() == n {
            Ok(())
        } else {
            Err(mismatch(
                e,
                format!("{name} takes {n} argument(s), not {}", args.len()),
            ))
        }
    };
    Ok(match name.as_str() {
        "UPPER" => {
            arity(1)?;
            string_func(e, Func::Upper, args)?
        }
        "LOWER" => {
            arity(1)?;
            string_func(e, Func::Lower, args)?
        }
        "CHAR_LENGTH" | "CHARACTER_LENGTH" => {
            arity(1)?;
            string_func(e, Func::CharLength, args)?
        }
        "CONCAT" => concat(e, args)?,
        "DATE_FORMAT" => {
            arity(2)?;
            if !args[0].ty.ty.is_timestamp() || !args[1].ty.ty.is_string() {
                return Err(mismatch(
                    e,
                    format!(
                        "DATE_FORMAT takes a timestamp and a pattern, not {} and {}",
                        args[0].ty, args[1].ty
                    ),
                ));
            }
            let nullable = args.iter().any(|a| a.ty.nullable);
            Bound {
                ty: SqlType::new(Ty::Varchar(types::STRING_LEN), nullable),
                node: Node::Func(Func::DateFormat, args),
            }
        }
        "TIMESTAMPDIFF" => {
            arity(2)?;
            let unit = match &list.args[0] {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Identifier(id))) => {
                    TimeUnit::parse(&id.value)
                }
                _ => None,
            }
            .filter(|u| u.millis().is_some() && *u != TimeUnit::Millisecond)
            .ok_or_else(|| {
                unsupported(
                    e,
                    "TIMESTAMPDIFF in a unit other than WEEK, DAY, HOUR, MINUTE or SECOND",
                )
            })?;
            if !args
                .iter()
                .all(|a| a.ty.ty.is_timestamp() || a.ty.ty == Ty::Null)
            {
                return Err(mismatch(e, "TIMESTAMPDIFF takes two timestamps".into()));
            }
            let nullable = args.iter().any(|a| a.ty.nullable);
            Bound {
                ty: SqlType::new(Ty::Int, nullable),
                node: Node::Func(Func::TimestampDiff(unit), args),
            }
        }
        "JSON_VALUE" => {
            arity(2)?;
            if !args
                .iter()
                .all(|a| a.ty.ty.is_string() || a.ty.ty == Ty::Null)
            {
                return Err(mismatch(
                    e,
                    "JSON_VALUE takes a JSON string and a path".into(),
                ));
            }
            Bound {
                ty: SqlType::new(Ty::Varchar(types::STRING_LEN), true),
                node: Node::Func(Func::JsonValue, args),
            }
        }
        "ABS" => {
            arity(1)?;
            if !args[0].ty.ty.is_numeric() {
                return Err(mismatch(
                    e,
                    format!("ABS takes a number, not {}", args[0].ty),
                ));
            }
            let ty = args[0].ty;
            Bound {
                ty: SqlType::new(ty.ty, ty.nullable),
                node: Node::Func(Func::Abs, args),
            }
        }
        "CURRENT_WATERMARK" => {
            arity(1)?;
            if !args[0].ty.rowtime {
                return Err(mismatch(
                    e,
                    "CURRENT_WATERMARK takes a time attribute (the column of a table's WATERMARK, a window's window_time)".into(),
                ));
            }
            let Some(i) = scope.watermark else {
                return Err(unsupported(e, "CURRENT_WATERMARK here"));
            };
            Bound {
                ty: SqlType::new(args[0].ty.ty, true),
                node: Node::Column(i),
            }
        }
        "TO_TIMESTAMP_LTZ" => {
            arity(2)?;
            let factor = match &list.args[1] {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Value(v))) => {
                    match &v.value {
                        ast::Value::Number(n, _) if n == "3" => 1,
                        ast::Value::Number(n, _) if n == "0" => 1000,
                        _ => 0,
                    }
                }
                _ => 0,
            };
            if factor == 0 {
                return Err(unsupported(
                    e,
                    "TO_TIMESTAMP_LTZ with a precision other than 0 or 3",
                ));
            }
            if !matches!(args[0].ty.ty, Ty::Int | Ty::BigInt | Ty::Null) {
                return Err(mismatch(
                    e,
                    format!(
                        "TO_TIMESTAMP_LTZ takes an integer number of (milli)seconds, not {}",
                        args[0].ty
                    ),
                ));
            }
            let nullable = args[0].ty.nullable;
            args.truncate(1);
            Bound {
                ty: SqlType::new(Ty::TimestampLtz, nullable),
                node: Node::Func(Func::ToTimestampLtz(factor), args),
            }
        }
        "MOD" => {
            arity(2)?;
            let (l, r) = (args.remove(0), args.remove(0));
            let ty = types::arithmetic('%', l.ty.ty, r.ty.ty)
                .ok_or_else(|| mismatch(e, format!("MOD cannot take {} and {}", l.ty, r.ty)))?;
            let nullable = l.ty.nullable || r.ty.nullable;
            Bound {
                ty: SqlType::new(ty, nullable),
                node: Node::Arith('%', Box::new(l), Box::new(r)),
            }
        }
        "COALESCE" => {
            if args.is_empty() {
                return Err(mismatch(e, "COALESCE needs an argument".into()));
            }
            let tys: Vec<Ty> = args.iter().map(|a| a.ty.ty).collect();
            let ty = types::common(&tys).ok_or_else(|| {
                mismatch(e, "the arguments of COALESCE have no common type".into())
            })?;
            let nullable = args.iter().all(|a| a.ty.nullable);
            Bound {
                ty: SqlType::new(ty, nullable),
                node: Node::Coalesce(args.into_iter().map(|a| cast_to(a, ty)).collect()),
            }
        }
        _ => match scope.udfs.and_then(|u| u.find(&name).map(|f| (u, f))) {
            Some((udfs, (i, udf))) => udf_call(e, udfs, i, udf, args, scope)?,
            None => return Err(unsupported(e, &format!("the function {name}"))),
        },
    })
}

/// A call of the script's function `udf` (number `i`): its arguments cast
/// to the parameter types, its value a column of the row.
fn udf_call(
    e: &Expr,
    udfs: &super::udf::Udfs,
    i: usize,
    udf: &super::udf::Udf,
    args: Vec<Bound>,
    scope: &Scope<'_>,
) -> Result<Bound, SqlError> {
    let name = &udf.name;
    if udf.aggregate {
        return Err(mismatch(
            e,
            format!(
                "the aggregate function {name} belongs in the SELECT of a window aggregation (GROUP BY window_start, window_end, …)"
            ),
        ));
    }
    let args = udf_args(e, udf, args)?;
    let mut calls = udfs.calls.borrow_mut();
    let slot = scope.columns.len() + 1 + calls.len();
    calls.push(super::udf::UdfCall { udf: i, args });
    Ok(Bound {
        ty: SqlType::new(udf.returns, true),
        node: Node::Column(slot),
    })
}

/// The arguments of a call of `udf`, checked against its parameters and
/// cast to them.
pub fn udf_args(e: &Expr, udf: &super::udf::Udf, args: Vec<Bound>) -> Result<Vec<Bound>, SqlError> {
    let name = &udf.name;
    if args.len() != udf.params.len() {
        return Err(mismatch(
            e,
            format!(
                "{name} takes {} argument(s) ({}), not {}",
                udf.params.len(),
                udf.params
                    .iter()
                    .map(|t| SqlType::new(*t, true).to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                args.len()
            ),
        ));
    }
    args.into_iter()
        .zip(&udf.params)
        .enumerate()
        .map(|(n, (a, &p))| {
            if super::udf::implicit(a.ty.ty, p) {
                Ok(cast_to(a, p))
            } else {
                Err(mismatch(
                    e,
                    format!(
                        "argument {} of {name} is {}, and its parameter is {}",
                        n + 1,
                        a.ty,
                        SqlType::new(p, true)
                    ),
                ))
            }
        })
        .collect()
}

impl Bound {
    /// Marks in `used` the columns the expression reads.
    pub fn columns(&self, used: &mut [bool]) {
        let mut stack = vec![self];
        while let Some(b) = stack.pop() {
            match &b.node {
                Node::Column(i) => {
                    // A function call's column is past the scope's.
                    if let Some(u) = used.get_mut(*i) {
                        *u = true;
                    }
                }
                Node::Literal(_) => {}
                Node::Arith(_, l, r)
                | Node::Cmp(_, l, r)
                | Node::And(l, r)
                | Node::Or(l, r)
                | Node::Like(l, r) => {
                    stack.push(l);
                    stack.push(r);
                }
                Node::Neg(x) | Node::Not(x) | Node::IsNull(x, _) | Node::Cast(x) => stack.push(x),
                Node::Case(branches, otherwise) => {
                    for (c, r) in branches {
                        stack.push(c);
                        stack.push(r);
                    }
                    stack.extend(otherwise.as_deref());
                }
                Node::Coalesce(args) | Node::Func(_, args) => stack.extend(args),
                Node::In(x, items) => {
                    stack.push(x);
                    stack.extend(items);
                }
            }
        }
    }
}

/// An evaluation error: the record's (a bad CAST, a division by zero).
pub type EvalError = String;

/// Evaluates `b` over `row`, borrowing a column's or a literal's value
/// instead of copying it (a string compared or written out is not cloned).
pub fn eval_ref<'a>(b: &'a Bound, row: &'a [Value]) -> Result<Cow<'a, Value>, EvalError> {
    Ok(match &b.node {
        Node::Column(i) => Cow::Borrowed(&row[*i]),
        Node::Literal(v) => Cow::Borrowed(v),
        _ => Cow::Owned(eval(b, row)?),
    })
}

/// Evaluates `b` over `row`.
pub fn eval(b: &Bound, row: &[Value]) -> Result<Value, EvalError> {
    Ok(match &b.node {
        Node::Column(i) => row[*i].clone(),
        Node::Literal(v) => v.clone(),
        Node::Arith(op, l, r) => {
            let (x, y) = (eval(l, row)?, eval(r, row)?);
            if x == Value::Null || y == Value::Null {
                return Ok(Value::Null);
            }
            arith(*op, b.ty.ty, &x, &y)?
        }
        Node::Neg(x) => match eval(x, row)? {
            Value::Int(i) => Value::Int(wrap(b.ty.ty, i.wrapping_neg())),
            Value::Double(d) => Value::Double(-d),
            Value::Dec(u, s) => Value::Dec(-u, s),
            v => v,
        },
        Node::Cmp(op, l, r) => {
            let (x, y) = (eval_ref(l, row)?, eval_ref(r, row)?);
            match compare(&x, &y) {
                None => Value::Null,
                Some(o) => Value::Bool(match op {
                    BinaryOperator::Eq => o.is_eq(),
                    BinaryOperator::NotEq => o.is_ne(),
                    BinaryOperator::Lt => o.is_lt(),
                    BinaryOperator::LtEq => o.is_le(),
                    BinaryOperator::Gt => o.is_gt(),
                    _ => o.is_ge(),
                }),
            }
        }
        Node::And(l, r) => match (truth(&eval(l, row)?), truth(&eval(r, row)?)) {
            (Some(false), _) | (_, Some(false)) => Value::Bool(false),
            (Some(true), Some(true)) => Value::Bool(true),
            _ => Value::Null,
        },
        Node::Or(l, r) => match (truth(&eval(l, row)?), truth(&eval(r, row)?)) {
            (Some(true), _) | (_, Some(true)) => Value::Bool(true),
            (Some(false), Some(false)) => Value::Bool(false),
            _ => Value::Null,
        },
        Node::Not(x) => match truth(&eval(x, row)?) {
            Some(t) => Value::Bool(!t),
            None => Value::Null,
        },
        Node::IsNull(x, is) => Value::Bool((*eval_ref(x, row)? == Value::Null) == *is),
        Node::Case(branches, otherwise) => {
            for (c, r) in branches {
                if truth(&eval(c, row)?) == Some(true) {
                    return eval(r, row);
                }
            }
            match otherwise {
                Some(o) => eval(o, row)?,
                None => Value::Null,
            }
        }
        Node::Coalesce(args) => {
            for a in args {
                let v = eval(a, row)?;
                if v != Value::Null {
                    return Ok(v);
                }
            }
            Value::Null
        }
        Node::Cast(x) => cast(eval(x, row)?, x.ty.ty, b.ty.ty)?,
        Node::Like(x, p) => match (&*eval_ref(x, row)?, &*eval_ref(p, row)?) {
            (Value::Str(s), Value::Str(p)) => Value::Bool(like(s, p)),
            _ => Value::Null,
        },
        Node::In(x, items) => {
            let x = eval_ref(x, row)?;
            if *x == Value::Null {
                return Ok(Value::Null);
            }
            let mut unknown = false;
            for item in items {
                match compare(&x, &*eval_ref(item, row)?) {
                    Some(std::cmp::Ordering::Equal) => return Ok(Value::Bool(true)),
                    Some(_) => {}
                    None => unknown = true,
                }
            }
            if unknown {
                Value::Null
            } else {
                Value::Bool(false)
            }
        }
        Node::Func(f, args) => {
            // On the stack: this runs for every row.
            let mut vals: smallvec::SmallVec<[Value; 3]> = smallvec::SmallVec::new();
            for a in args {
                let v = eval(a, row)?;
                if v == Value::Null {
                    return Ok(Value::Null);
                }
                vals.push(v);
            }
            func(*f, &vals)
        }
    })
}

fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

/// An INT result wraps as Java's `int` does.
fn wrap(ty: Ty, v: i64) -> i64 {
    if ty == Ty::Int { v as i32 as i64 } else { v }
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Double(d) => *d,
        Value::Dec(u, s) => decimal_text(*u, *s).parse().unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

/// An exact number as (unscaled, scale).
fn as_dec(v: &Value) -> Option<(i128, u8)> {
    match v {
        Value::Int(i) => Some((*i as i128, 0)),
        Value::Dec(u, s) => Some((*u, *s)),
        _ => None,
    }
}

/// `x op y` with the result type `ty` (the binder's), for NULL-free values.
pub fn arith(op: char, ty: Ty, x: &Value, y: &Value) -> Result<Value, EvalError> {
    match ty {
        Ty::Double => {
            let (a, b) = (as_f64(x), as_f64(y));
            Ok(Value::Double(match op {
                '+' => a + b,
                '-' => a - b,
                '*' => a * b,
                '/' => a / b,
                _ => a % b,
            }))
        }
        Ty::Int | Ty::BigInt => {
            let (Value::Int(a), Value::Int(b)) = (x, y) else {
                return Ok(Value::Null);
            };
            let (a, b) = (*a, *b);
            if (op == '/' || op == '%') && b == 0 {
                return Err("division by zero".into());
            }
            let v = match op {
                '+' => a.wrapping_add(b),
                '-' => a.wrapping_sub(b),
                '*' => a.wrapping_mul(b),
                '/' => a.wrapping_div(b),
                _ => a.wrapping_rem(b),
            };
            Ok(Value::Int(wrap(ty, v)))
        }
        Ty::Decimal(p, s) => {
            let ((a, sa), (b, sb)) = (
                as_dec(x).ok_or("not a number")?,
                as_dec(y).ok_or("not a number")?,
            );
            let v = match op {
                '+' | '-' => {
                    let (a, b) = (rescale(a, sa, s), rescale(b, sb, s));
                    match (a, b) {
                        (Some(a), Some(b)) if op == '+' => a.checked_add(b),
                        (Some(a), Some(b)) => a.checked_sub(b),
                        _ => None,
                    }
                }
                '*' => mul_rescale(a, b, sa + sb, s),
                '/' => {
                    if b == 0 {
                        return Err("division by zero".into());
                    }
                    // a / b at scale s: a * 10^(s - sa + sb) / b, rounded
                    // half up, computed at one more digit.
                    let shift = s as i32 - sa as i32 + sb as i32 + 1;
                    let n = if shift >= 0 {
                        POW10.get(shift as usize).and_then(|p| a.checked_mul(*p))
                    } else {
                        Some(a / POW10[(-shift) as usize])
                    };
                    n.map(|n| n / b).and_then(|q| rescale(q, s + 1, s))
                }
                _ => {
                    if b == 0 {
                        return Err("division by zero".into());
                    }
                    let m = sa.max(sb);
                    match (rescale(a, sa, m), rescale(b, sb, m)) {
                        (Some(a), Some(b)) => rescale(a % b, m, s),
                        _ => None,
                    }
                }
            };
            // Over the type's precision: NULL, as Flink's DecimalData.
            Ok(match v {
                Some(v) if fits(v, p) => Value::Dec(v, s),
                _ => Value::Null,
            })
        }
        Ty::Timestamp | Ty::TimestampLtz | Ty::Interval => {
            let (Value::Ts(a), Value::Ts(b)) = (x, y) else {
                return Ok(Value::Null);
            };
            Ok(Value::Ts(if op == '+' {
                a.wrapping_add(*b)
            } else {
                a.wrapping_sub(*b)
            }))
        }
        _ => Ok(Value::Null),
    }
}

/// The type of `a op b` where a timestamp or an interval takes part:
/// timestamp ± interval, interval + timestamp, interval ± interval.
fn time_arithmetic(op: char, a: Ty, b: Ty) -> Option<Ty> {
    match (op, a, b) {
        ('+' | '-', t, Ty::Interval) if t.is_timestamp() => Some(t),
        ('+', Ty::Interval, t) if t.is_timestamp() => Some(t),
        ('+' | '-', Ty::Interval, Ty::Interval) => Some(Ty::Interval),
        _ => None,
    }
}

/// The milliseconds of a day-time interval literal: `INTERVAL '5.001'
/// SECOND`, `INTERVAL '10' MINUTE`, `INTERVAL '2:30.001' MINUTE TO SECOND`,
/// `INTERVAL '1 12' DAY TO HOUR`.
pub fn interval_millis(e: &Expr, i: &ast::Interval) -> Result<i64, SqlError> {
    use ast::DateTimeField as F;
    let text = match i.value.as_ref() {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(t) => t.clone(),
            ast::Value::Number(n, _) => n.clone(),
            _ => return Err(unsupported(e, "this INTERVAL value")),
        },
        _ => return Err(unsupported(e, "an INTERVAL of an expression")),
    };
    let unit = |f: &F| -> Option<i64> {
        Some(match f {
            F::Day | F::Days => 86_400_000,
            F::Hour | F::Hours => 3_600_000,
            F::Minute | F::Minutes => 60_000,
            F::Second | F::Seconds => 1000,
            _ => return None,
        })
    };
    let bad = || {
        SqlError::new(
            at(e),
            format!(
                "`{e}` is not a day-time interval `sluice sql` reads (DAY, HOUR, MINUTE, SECOND, or a range of them)"
            ),
        )
    };
    let first = i.leading_field.as_ref().and_then(unit).ok_or_else(bad)?;
    let last = match &i.last_field {
        Some(f) => unit(f).ok_or_else(bad)?,
        None => first,
    };
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    // The fields from the leading one down to the last, each separated by
    // ' ' (after days) or ':'.
    let units: Vec<i64> = [86_400_000, 3_600_000, 60_000, 1000]
        .into_iter()
        .filter(|u| *u <= first && *u >= last)
        .collect();
    let parts: Vec<&str> = t.split([' ', ':']).collect();
    if parts.len() != units.len() {
        return Err(bad());
    }
    let mut ms: i64 = 0;
    for (k, (part, u)) in parts.iter().zip(&units).enumerate() {
        let last_part = k + 1 == parts.len();
        let v = if *u == 1000 && last_part {
            let (u, sc) = parse_decimal(part).ok_or_else(bad)?;
            rescale(u, sc, 3).ok_or_else(bad)? as i64
        } else {
            part.parse::<i64>().map_err(|_| bad())? * u
        };
        ms = ms.checked_add(v).ok_or_else(bad)?;
    }
    Ok(if neg { -ms } else { ms })
}

/// `a * b` (at scale `from`) at scale `to`, rounded half up, exact even
/// when the full product does not fit an `i128` (a DECIMAL(38, 30) times
/// 100 does not before its scale is cut to the result's); `None` when the
/// result does not.
fn mul_rescale(a: i128, b: i128, from: u8, to: u8) -> Option<i128> {
    if let Some(m) = a.checked_mul(b) {
        return rescale(m, from, to);
    }
    if to > from {
        return None;
    }
    // The product's decimal digits, from base-10^19 halves of each factor.
    const B: u128 = 10_000_000_000_000_000_000;
    let (x, y) = (a.unsigned_abs(), b.unsigned_abs());
    let (x1, x0, y1, y0) = (x / B, x % B, y / B, y % B);
    let c0 = x0 * y0;
    let c1 = (x1 * y0).checked_add(x0 * y1)?.checked_add(c0 / B)?;
    let c2 = (x1 * y1).checked_add(c1 / B)?;
    let digits = format!("{c2}{:019}{:019}", c1 % B, c0 % B);
    let digits = digits.trim_start_matches('0');
    let drop = (from - to) as usize;
    let (keep, dropped) = digits.split_at(digits.len().saturating_sub(drop));
    let mut v: i128 = if keep.is_empty() {
        0
    } else {
        keep.parse().ok()?
    };
    // Half up: the first digit dropped decides (when all of `digits` is
    // dropped, only a full-length tail has a first digit worth rounding on).
    let first = if dropped.len() == drop {
        dropped.bytes().next()
    } else {
        None
    };
    if first.is_some_and(|d| d >= b'5') {
        v = v.checked_add(1)?;
    }
    Some(if (a < 0) != (b < 0) { -v } else { v })
}

/// Orders two values of comparable types; `None` when either is NULL.
fn compare(x: &Value, y: &Value) -> Option<std::cmp::Ordering> {
    match (x, y) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Ts(a), Value::Ts(b)) => Some(a.cmp(b)),
        (Value::Double(_), _) | (_, Value::Double(_)) => as_f64(x).partial_cmp(&as_f64(y)),
        _ => {
            let ((a, sa), (b, sb)) = (as_dec(x)?, as_dec(y)?);
            let s = sa.max(sb);
            match (rescale(a, sa, s), rescale(b, sb, s)) {
                (Some(a), Some(b)) => Some(a.cmp(&b)),
                _ => as_f64(x).partial_cmp(&as_f64(y)),
            }
        }
    }
}

/// CAST of `v` (of type `from`) to `to`.
pub fn cast(v: Value, from: Ty, to: Ty) -> Result<Value, EvalError> {
    if v == Value::Null || from == to {
        return Ok(v);
    }
    Ok(match (to, v) {
        (Ty::Char(_) | Ty::Varchar(_), v) => Value::Str(match v {
            Value::Str(s) => s,
            Value::Bool(b) => if b { "TRUE" } else { "FALSE" }.to_owned(),
            Value::Int(i) => i.to_string(),
            Value::Dec(u, s) => decimal_text(u, s),
            Value::Double(d) => java_double(d),
            Value::Ts(ms) => types::timestamp_text(ms),
            Value::Null => unreachable!("handled above"),
        }),
        (Ty::Timestamp | Ty::TimestampLtz, Value::Ts(ms)) => Value::Ts(ms),
        (Ty::Timestamp | Ty::TimestampLtz, Value::Str(t)) => Value::Ts(
            types::parse_timestamp(&t)
                .ok_or_else(|| format!("cannot CAST '{t}' to {}", SqlType::new(to, true)))?,
        ),
        (Ty::Boolean, Value::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(format!("cannot CAST '{s}' to BOOLEAN")),
        },
        (Ty::Double, v) => match v {
            Value::Str(s) => Value::Double(
                s.trim()
                    .parse()
                    .map_err(|_| format!("cannot CAST '{s}' to DOUBLE"))?,
            ),
            v => Value::Double(as_f64(&v)),
        },
        (Ty::Int | Ty::BigInt, v) => {
            let i = match v {
                Value::Int(i) => i,
                Value::Dec(u, s) => types::div_pow10(u, s) as i64,
                Value::Double(d) => d as i64,
                Value::Str(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| format!("cannot CAST '{s}' to {}", SqlType::new(to, true)))?,
                _ => return Ok(Value::Null),
            };
            Value::Int(wrap(to, i))
        }
        (Ty::Decimal(p, s), v) => {
            let d = match v {
                Value::Int(i) => rescale(i as i128, 0, s),
                Value::Dec(u, sc) => rescale(u, sc, s),
                Value::Double(d) => parse_decimal(&format!("{d:.*}", s as usize))
                    .and_then(|(u, sc)| rescale(u, sc, s)),
                Value::Str(t) => parse_decimal(&t)
                    .ok_or_else(|| format!("cannot CAST '{t}' to DECIMAL({p}, {s})"))
                    .map(|(u, sc)| rescale(u, sc, s))?,
                _ => None,
            };
            match d {
                Some(d) if fits(d, p) => Value::Dec(d, s),
                _ => Value::Null,
            }
        }
        _ => Value::Null,
    })
}

/// A double as Java's `Double.toString` writes it (`1.7E9`, `0.001`).
pub fn java_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = d.abs();
    if a == 0.0 || (1e-3..1e7).contains(&a) {
        let s = format!("{d}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{d:e}");
    let (m, e) = s.split_once('e').expect("exponent form");
    let m = if m.contains('.') {
        m.to_owned()
    } else {
        format!("{m}.0")
    };
    format!("{m}E{e}")
}

/// SQL LIKE (`%` any run, `_` one character), without recursion: on a
/// mismatch it retries from the last `%`, so a hostile pattern costs at
/// most the product of the two lengths.
fn like(s: &str, p: &str) -> bool {
    let (s, p): (Vec<char>, Vec<char>) = (s.chars().collect(), p.chars().collect());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < p.len() && (p[j] == '_' || p[j] != '%' && p[j] == s[i]) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '%' {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    p[j..].iter().all(|&c| c == '%')
}

fn func(f: Func, v: &[Value]) -> Value {
    let text = |i: usize| match &v[i] {
        Value::Str(s) => s.as_str(),
        _ => "",
    };
    let int = |i: usize| match &v[i] {
        Value::Int(n) => *n,
        _ => 0,
    };
    match f {
        Func::Upper => Value::Str(text(0).to_uppercase()),
        Func::Lower => Value::Str(text(0).to_lowercase()),
        Func::CharLength => Value::Int(text(0).chars().count() as i64),
        Func::Trim => Value::Str(text(0).trim_matches(' ').to_owned()),
        Func::Concat => Value::Str((0..v.len()).map(text).collect()),
        Func::ToTimestampLtz(factor) => Value::Ts(int(0).wrapping_mul(factor)),
        Func::DateFormat => match &v[0] {
            Value::Ts(ms) => Value::Str(date_format(*ms, text(1))),
            _ => Value::Null,
        },
        Func::Extract(unit) => match &v[0] {
            Value::Ts(ms) => Value::Int(extract(unit, *ms)),
            _ => Value::Null,
        },
        Func::RoundTime(unit, ceil) => match &v[0] {
            Value::Ts(ms) => {
                let f = floor_time(unit, *ms);
                Value::Ts(if ceil && f != *ms {
                    ceil_time(unit, f)
                } else {
                    f
                })
            }
            _ => Value::Null,
        },
        Func::TimestampDiff(unit) => match (&v[0], &v[1]) {
            (Value::Ts(a), Value::Ts(b)) => {
                let n = (b - a) / unit.millis().expect("a fixed unit");
                Value::Int(n as i32 as i64)
            }
            _ => Value::Null,
        },
        Func::JsonValue => json_value(text(0), text(1)).map_or(Value::Null, Value::Str),
        Func::Abs => match &v[0] {
            Value::Int(i) => Value::Int(i.wrapping_abs()),
            Value::Double(d) => Value::Double(d.abs()),
            Value::Dec(u, s) => Value::Dec(u.abs(), *s),
            other => other.clone(),
        },
        Func::Substring => {
            let chars: Vec<char> = text(0).chars().collect();
            let len = chars.len() as i64;
            let start = int(1);
            // SQL positions start at 1; a start before 1 eats into the length.
            let end = if v.len() > 2 {
                start.saturating_add(int(2).max(0))
            } else {
                len + 1
            };
            let (from, to) = (start.max(1), end.min(len + 1));
            if to <= from {
                Value::Str(String::new())
            } else {
                Value::Str(
                    chars[(from - 1) as usize..(to - 1) as usize]
                        .iter()
                        .collect(),
                )
            }
        }
    }
}

/// The field `unit` of a timestamp (UTC).
fn extract(unit: TimeUnit, ms: i64) -> i64 {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = crate::time::calendar::civil_from_days(days);
    match unit {
        TimeUnit::Year => y,
        TimeUnit::Quarter => (m - 1) / 3 + 1,
        TimeUnit::Month => m,
        // ISO week of the year.
        TimeUnit::Week => {
            let wd = (days + 3).rem_euclid(7); // Monday = 0
            let thursday = days - wd + 3;
            let (ty, _, _) = crate::time::calendar::civil_from_days(thursday);
            (thursday - crate::time::calendar::days_from_civil(ty, 1, 1)) / 7 + 1
        }
        TimeUnit::Day => d,
        TimeUnit::Hour => in_day / 3_600_000,
        TimeUnit::Minute => in_day / 60_000 % 60,
        TimeUnit::Second => in_day / 1000 % 60,
        TimeUnit::Millisecond => in_day % 1000,
    }
}

/// The start of the `unit` holding `ms`.
fn floor_time(unit: TimeUnit, ms: i64) -> i64 {
    use crate::time::calendar::{civil_from_days, days_from_civil};
    let day = |y, m| days_from_civil(y, m, 1) * 86_400_000;
    match unit {
        TimeUnit::Year | TimeUnit::Quarter | TimeUnit::Month => {
            let (y, m, _) = civil_from_days(ms.div_euclid(86_400_000));
            match unit {
                TimeUnit::Year => day(y, 1),
                TimeUnit::Quarter => day(y, (m - 1) / 3 * 3 + 1),
                _ => day(y, m),
            }
        }
        // Weeks start on Sunday, as Calcite's FLOOR(… TO WEEK).
        TimeUnit::Week => {
            let days = ms.div_euclid(86_400_000);
            (days - (days + 4).rem_euclid(7)) * 86_400_000
        }
        u => {
            let n = u.millis().expect("a fixed unit");
            ms - ms.rem_euclid(n)
        }
    }
}

/// The start of the `unit` after the one that starts at `floor`.
fn ceil_time(unit: TimeUnit, floor: i64) -> i64 {
    use crate::time::calendar::{civil_from_days, days_from_civil};
    let months = match unit {
        TimeUnit::Year => 12,
        TimeUnit::Quarter => 3,
        TimeUnit::Month => 1,
        u => return floor + u.millis().expect("a fixed unit"),
    };
    let (y, m, _) = civil_from_days(floor.div_euclid(86_400_000));
    let total = y * 12 + (m - 1) + months;
    days_from_civil(total.div_euclid(12), total.rem_euclid(12) + 1, 1) * 86_400_000
}

/// DATE_FORMAT's pattern (Java's `SimpleDateFormat` letters: `yyyy`,
/// `MM`, `dd`, `HH`, `mm`, `ss`, `SSS`, text in single quotes) applied to a
/// timestamp in UTC.
fn date_format(ms: i64, pattern: &str) -> String {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = crate::time::calendar::civil_from_days(days);
    let fields = |c: char| -> Option<i64> {
        Some(match c {
            'y' => y,
            'M' => mo,
            'd' => d,
            'H' => in_day / 3_600_000,
            'm' => in_day / 60_000 % 60,
            's' => in_day / 1000 % 60,
            'S' => in_day % 1000,
            _ => return None,
        })
    };
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == '\'')
                .map(|p| i + 1 + p);
            match end {
                Some(e) if e == i + 1 => out.push('\''),
                Some(e) => out.extend(&chars[i + 1..e]),
                None => out.extend(&chars[i + 1..]),
            }
            i = end.map_or(chars.len(), |e| e + 1);
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        match fields(c) {
            Some(v) if c == 'y' && run == 2 => out.push_str(&format!("{:02}", v.rem_euclid(100))),
            Some(v) => out.push_str(&format!("{v:0run$}")),
            None => out.extend(&chars[i..i + run]),
        }
        i += run;
    }
    out
}

/// JSON_VALUE: the scalar at `path` (`$.a.b`, `$.a[0]`, `$['a']`) of the
/// JSON text `json`, as text; `None` for a missing path, a non-scalar,
/// `null` or text that is not JSON.
fn json_value(json: &str, path: &str) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(json).ok()?;
    let rest = path.trim().strip_prefix('$')?;
    let mut cur = &doc;
    let mut r = rest;
    while !r.is_empty() {
        if let Some(x) = r.strip_prefix('.') {
            let end = x.find(['.', '[']).unwrap_or(x.len());
            cur = cur.get(&x[..end])?;
            r = &x[end..];
        } else if let Some(x) = r.strip_prefix('[') {
            let end = x.find(']')?;
            let key = x[..end].trim();
            cur = match key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')) {
                Some(k) => cur.get(k)?,
                None => cur.get(key.parse::<usize>().ok()?)?,
            };
            r = &x[end + 1..];
        } else {
            return None;
        }
    }
    match cur {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Writes `v` (of type `ty`) as a JSON value: DECIMAL as a number with all
/// its scale's digits, DOUBLE as a number (NaN and the infinities as
/// strings, which JSON has no number for).
pub fn write_json(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => crate::json::write_i64(out, *i),
        Value::Dec(u, s) => crate::json::write_decimal(out, *u, *s as u32),
        Value::Double(d) if d.is_finite() => {
            out.extend_from_slice(java_double(*d).as_bytes());
        }
        Value::Double(d) => crate::json::write_str(out, java_double(*d).as_bytes()),
        Value::Str(s) => crate::json::write_str(out, s.as_bytes()),
        Value::Ts(ms) => crate::json::write_str(out, types::timestamp_text(*ms).as_bytes()),
    }
}

/// The DECIMAL(p, s) of `u` at scale `sc`: NULL when it does not fit, as
/// Flink's JSON format reads it.
fn decimal_value(u: i128, sc: u8, p: u8, s: u8) -> Value {
    match rescale(u, sc, s) {
        Some(v) if fits(v, p) => Value::Dec(v, s),
        _ => Value::Null,
    }
}

/// Reads a JSON field's raw text as a value of `ty`, as Flink's `json`
/// format does: a missing field or `null` is NULL; numbers convert to the
/// column's type (DECIMAL rounds half up to its scale and is NULL when it
/// overflows the precision); a string column takes any value (a non-string
/// as its JSON text).
pub fn from_json(raw: Option<&[u8]>, ty: Ty) -> Result<Value, String> {
    let Some(raw) = raw else {
        return Ok(Value::Null);
    };
    // Plain numbers, the common case, straight from the bytes.
    match ty {
        Ty::BigInt | Ty::Timestamp | Ty::TimestampLtz => {
            if let Some(i) = crate::json::parse_integer(raw) {
                return Ok(if ty == Ty::BigInt {
                    Value::Int(i)
                } else {
                    Value::Ts(i)
                });
            }
        }
        Ty::Int => {
            if let Some(i) = crate::json::parse_integer(raw).filter(|i| i32::try_from(*i).is_ok()) {
                return Ok(Value::Int(i));
            }
        }
        Ty::Decimal(p, s) if matches!(raw.first(), Some(b'-' | b'0'..=b'9')) => {
            if let Some((u, sc)) = types::parse_decimal_bytes(raw) {
                return Ok(decimal_value(u, sc, p, s));
            }
        }
        _ => {}
    }
    if raw == b"null" {
        return Ok(Value::Null);
    }
    let text = std::str::from_utf8(raw).map_err(|e| e.to_string())?;
    // A string's text, or a number's as it is; borrowed unless escaped.
    let string = || -> Result<std::borrow::Cow<'_, str>, String> {
        match raw {
            // No escapes: the text between the quotes, as it is.
            [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => {
                Ok(text[1..text.len() - 1].into())
            }
            [b'"', ..] => serde_json::from_str::<String>(text)
                .map(Into::into)
                .map_err(|e| e.to_string()),
            _ => Ok(text.into()),
        }
    };
    Ok(match ty {
        Ty::Char(_) | Ty::Varchar(_) => Value::Str(string()?.into_owned()),
        Ty::Boolean => match text {
            "true" | "\"true\"" => Value::Bool(true),
            "false" | "\"false\"" => Value::Bool(false),
            _ => return Err(format!("{text} is not a BOOLEAN")),
        },
        Ty::Int | Ty::BigInt => {
            let s = string()?;
            let s = s.trim();
            let i = match s.parse::<i64>() {
                Ok(i) => i,
                Err(_) => match parse_decimal(s) {
                    Some((u, sc)) => (u / POW10[sc as usize]) as i64,
                    None => return Err(format!("{text} is not an integer")),
                },
            };
            if ty == Ty::Int && i32::try_from(i).is_err() {
                return Err(format!("{text} is out of INT's range"));
            }
            Value::Int(i)
        }
        Ty::Double => Value::Double(
            string()?
                .trim()
                .parse()
                .map_err(|_| format!("{text} is not a number"))?,
        ),
        Ty::Decimal(p, s) => {
            let t = string()?;
            let (u, sc) = match parse_decimal(&t) {
                Some(d) => d,
                None => {
                    let f: f64 = t
                        .trim()
                        .parse()
                        .map_err(|_| format!("{text} is not a number"))?;
                    parse_decimal(&format!("{f:.*}", s as usize))
                        .ok_or_else(|| format!("{text} does not fit DECIMAL({p}, {s})"))?
                }
            };
            decimal_value(u, sc, p, s)
        }
        Ty::Timestamp | Ty::TimestampLtz => {
            match text.parse::<i64>() {
                // Epoch milliseconds: how sluice's own rows carry them.
                Ok(ms) => Value::Ts(ms),
                Err(_) => Value::Ts(types::parse_timestamp(&string()?).ok_or_else(|| {
                    format!("{text} is not a timestamp (yyyy-MM-dd HH:mm:ss.SSS)")
                })?),
            }
        }
        Ty::Interval => Value::Ts(
            text.parse()
                .map_err(|_| format!("{text} is not an interval in milliseconds"))?,
        ),
        Ty::Null => Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_doubles() {
        assert_eq!(java_double(1.7e9), "1.7E9");
        assert_eq!(java_double(137.52), "137.52");
        assert_eq!(java_double(250.0), "250.0");
        assert_eq!(java_double(1e-7), "1.0E-7");
        assert_eq!(java_double(1.234567899e7), "1.234567899E7");
    }

    #[test]
    fn like_patterns() {
        assert!(like("COMPLETED", "COMP%"));
        assert!(like("o-1", "o-_"));
        assert!(!like("o-10", "o-_"));
        assert!(like("PENDING", "%NG"));
        assert!(like("", "%"));
        assert!(!like("ab", "a"));
        assert!(like("abcabd", "%ab_"));
        // Many `%` against a long string that does not match: quick.
        let s = "a".repeat(10_000);
        assert!(!like(&s, &format!("{}b", "%a".repeat(50))));
    }

    #[test]
    fn a_product_too_big_for_i128_is_still_exact() {
        // 12345678.99 at scale 30 times 100, at scale 19.
        let a = 1234567899 * 10i128.pow(28);
        let got = mul_rescale(a, 100, 30, 19).unwrap();
        assert_eq!(got, 1234567899 * 10i128.pow(19));
        assert_eq!(mul_rescale(-a, 100, 30, 19).unwrap(), -got);
        // Rounding half up on the digits dropped.
        assert_eq!(
            mul_rescale(a + 5 * 10i128.pow(8), 100, 30, 19),
            Some(got + 1)
        );
        assert_eq!(mul_rescale(i128::MAX, i128::MAX, 0, 0), None);
    }

    #[test]
    fn decimal_division_rounds_half_up() {
        let v = arith(
            '/',
            Ty::Decimal(21, 13),
            &Value::Dec(10001, 2),
            &Value::Int(3),
        )
        .unwrap();
        assert_eq!(v, Value::Dec(333366666666667, 13));
    }
}
