//! Flink SQL's types and values, as far as `sluice sql` evaluates them:
//! the type rules (result precision and scale of DECIMAL arithmetic, common
//! types of CASE and COALESCE) follow Flink's `LogicalTypeMerging`, checked
//! against goldens written by Flink itself (tests/sql).

use crate::time::calendar::{civil_from_days, days_from_civil};
use std::fmt;

/// The largest DECIMAL precision (Flink's and Calcite's).
pub const MAX_PRECISION: u8 = 38;
/// `STRING` is `VARCHAR` of this length.
pub const STRING_LEN: u32 = i32::MAX as u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Boolean,
    Int,
    BigInt,
    Double,
    Decimal(u8, u8),
    Char(u32),
    Varchar(u32),
    /// `TIMESTAMP(3)`: a wall-clock time without zone, as epoch milliseconds
    /// of that time in UTC.
    Timestamp,
    /// `TIMESTAMP_LTZ(3)`: an instant, as epoch milliseconds.
    TimestampLtz,
    /// A day-time interval (`INTERVAL '5' SECOND`), in milliseconds.
    Interval,
    /// The type of a bare `NULL` literal, until something gives it one.
    Null,
}

/// A type and whether it admits NULL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqlType {
    pub ty: Ty,
    pub nullable: bool,
    /// An event-time attribute (`*ROWTIME*` in Flink's schema): the
    /// table's watermarked column, a window's `window_time`.
    pub rowtime: bool,
}

impl SqlType {
    pub fn new(ty: Ty, nullable: bool) -> SqlType {
        SqlType {
            ty,
            nullable,
            rowtime: false,
        }
    }

    /// The same type, as an event-time attribute.
    pub fn as_rowtime(self) -> SqlType {
        SqlType {
            rowtime: true,
            ..self
        }
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ty {
            Ty::Boolean => write!(f, "BOOLEAN")?,
            Ty::Int => write!(f, "INT")?,
            Ty::BigInt => write!(f, "BIGINT")?,
            Ty::Double => write!(f, "DOUBLE")?,
            Ty::Decimal(p, s) => write!(f, "DECIMAL({p}, {s})")?,
            Ty::Char(n) => write!(f, "CHAR({n})")?,
            Ty::Varchar(STRING_LEN) => write!(f, "STRING")?,
            Ty::Varchar(n) => write!(f, "VARCHAR({n})")?,
            Ty::Timestamp => write!(f, "TIMESTAMP(3)")?,
            Ty::TimestampLtz => write!(f, "TIMESTAMP_LTZ(3)")?,
            Ty::Interval => write!(f, "INTERVAL SECOND(3)")?,
            Ty::Null => write!(f, "NULL")?,
        }
        if !self.nullable {
            write!(f, " NOT NULL")?;
        }
        if self.rowtime {
            write!(f, " *ROWTIME*")?;
        }
        Ok(())
    }
}

impl Ty {
    pub fn is_numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::BigInt | Ty::Double | Ty::Decimal(..))
    }

    pub fn is_string(self) -> bool {
        matches!(self, Ty::Char(_) | Ty::Varchar(_))
    }

    pub fn is_timestamp(self) -> bool {
        matches!(self, Ty::Timestamp | Ty::TimestampLtz)
    }

    /// An exact number as a DECIMAL: INT is DECIMAL(10, 0), BIGINT
    /// DECIMAL(19, 0).
    pub fn as_decimal(self) -> Option<(u8, u8)> {
        match self {
            Ty::Int => Some((10, 0)),
            Ty::BigInt => Some((19, 0)),
            Ty::Decimal(p, s) => Some((p, s)),
            _ => None,
        }
    }

    fn string_len(self) -> Option<u32> {
        match self {
            Ty::Char(n) | Ty::Varchar(n) => Some(n),
            _ => None,
        }
    }
}

/// Flink's `adjustPrecisionScale`: a precision over 38 gives up scale
/// (down to 6) to keep the integer digits.
pub fn adjust(p: u32, s: u32) -> Ty {
    if p <= MAX_PRECISION as u32 {
        return Ty::Decimal(p as u8, s as u8);
    }
    let int_digits = p - s;
    let min_scale = s.min(6);
    let s = (MAX_PRECISION as u32)
        .saturating_sub(int_digits)
        .max(min_scale);
    Ty::Decimal(MAX_PRECISION, s as u8)
}

/// The type of `a op b` for `+`, `-`, `*`, `/` and `%` (`None`: the
/// operands are not numbers).
pub fn arithmetic(op: char, a: Ty, b: Ty) -> Option<Ty> {
    if !a.is_numeric() && a != Ty::Null || !b.is_numeric() && b != Ty::Null {
        return None;
    }
    let (a, b) = (
        if a == Ty::Null { b } else { a },
        if b == Ty::Null { a } else { b },
    );
    if a == Ty::Double || b == Ty::Double {
        return Some(Ty::Double);
    }
    if matches!(a, Ty::Decimal(..)) || matches!(b, Ty::Decimal(..)) {
        let (p1, s1) = a.as_decimal()?;
        let (p2, s2) = b.as_decimal()?;
        let (p1, s1, p2, s2) = (p1 as u32, s1 as u32, p2 as u32, s2 as u32);
        return Some(match op {
            '+' | '-' => {
                let s = s1.max(s2);
                adjust((p1 - s1).max(p2 - s2) + s + 1, s)
            }
            '*' => adjust(p1 + p2 + 1, s1 + s2),
            '/' => {
                let s = 6.max(s1 + p2 + 1);
                adjust(p1 - s1 + s2 + s, s)
            }
            // MOD: Flink's findModuloDecimalType.
            _ => {
                let s = s1.max(s2);
                adjust((p1 - s1).min(p2 - s2) + s, s)
            }
        });
    }
    if op == '%' {
        return Some(b);
    }
    Some(if a == Ty::BigInt || b == Ty::BigInt {
        Ty::BigInt
    } else {
        Ty::Int
    })
}

/// The common type of CASE branches, COALESCE arguments, IN lists
/// (Flink's `findCommonType`); `None` when there is none.
pub fn common(types: &[Ty]) -> Option<Ty> {
    let known: Vec<Ty> = types.iter().copied().filter(|t| *t != Ty::Null).collect();
    let Some(&first) = known.first() else {
        return Some(Ty::Null);
    };
    if known.iter().all(|t| *t == first) {
        return Some(first);
    }
    if known.iter().all(|t| t.is_string()) {
        let len = known.iter().filter_map(|t| t.string_len()).max()?;
        return Some(Ty::Varchar(len));
    }
    if known.iter().all(|t| t.is_numeric()) {
        if known.contains(&Ty::Double) {
            return Some(Ty::Double);
        }
        if known.iter().any(|t| matches!(t, Ty::Decimal(..))) {
            let (mut s, mut ints) = (0u32, 0u32);
            for t in &known {
                let (p, sc) = t.as_decimal()?;
                s = s.max(sc as u32);
                ints = ints.max(p as u32 - sc as u32);
            }
            return Some(adjust(ints + s, s));
        }
        return Some(if known.contains(&Ty::BigInt) {
            Ty::BigInt
        } else {
            Ty::Int
        });
    }
    None
}

/// A value of one row.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// INT and BIGINT.
    Int(i64),
    Double(f64),
    /// An unscaled value and its scale.
    Dec(i128, u8),
    Str(String),
    /// TIMESTAMP(3) and TIMESTAMP_LTZ(3) (epoch milliseconds), and
    /// intervals (milliseconds).
    Ts(i64),
}

pub const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// `v` (at scale `from`) at scale `to`, rounding half away from zero
/// (Java's `HALF_UP`); `None` on overflow.
pub fn rescale(v: i128, from: u8, to: u8) -> Option<i128> {
    if to == from {
        return Some(v);
    }
    if to > from {
        return v.checked_mul(*POW10.get((to - from) as usize)?);
    }
    let d = *POW10.get((from - to) as usize)?;
    if let (Ok(v), Ok(d)) = (i64::try_from(v), i64::try_from(d)) {
        let (q, r) = (v / d, v % d);
        return Some((if r.abs() * 2 >= d { q + v.signum() } else { q }) as i128);
    }
    let (q, r) = (v / d, v % d);
    Some(if r.abs() * 2 >= d { q + v.signum() } else { q })
}

/// `v` fits DECIMAL(p, _): fewer than `p` digits.
pub fn fits(v: i128, p: u8) -> bool {
    v.unsigned_abs() < POW10[p as usize] as u128
}

/// A decimal's plain text, with all its scale's digits (`-3.50`).
pub fn decimal_text(v: i128, s: u8) -> String {
    let digits = v.unsigned_abs().to_string();
    let s = s as usize;
    let sign = if v < 0 { "-" } else { "" };
    if s == 0 {
        return format!("{sign}{digits}");
    }
    let padded = if digits.len() <= s {
        format!("{}{digits}", "0".repeat(s + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - s);
    format!("{sign}{int}.{frac}")
}

/// Parses a plain decimal text (`-12.5`, `3`, `1e2` is refused) into an
/// unscaled value and scale; `None` if it is not one or has over 38 digits.
pub fn parse_decimal(s: &str) -> Option<(i128, u8)> {
    parse_decimal_bytes(s.trim().as_bytes())
}

/// [`parse_decimal`] of ASCII bytes.
pub fn parse_decimal_bytes(s: &[u8]) -> Option<(i128, u8)> {
    let s = s.trim_ascii();
    let (neg, body) = match s {
        [b'-', b @ ..] => (true, b),
        [b'+', b @ ..] => (false, b),
        b => (false, b),
    };
    let (int, frac) = match body.iter().position(|b| *b == b'.') {
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (body, &b""[..]),
    };
    if int.is_empty() && frac.is_empty()
        || !int.iter().all(u8::is_ascii_digit)
        || !frac.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let v = if int.len() + frac.len() <= 18 {
        // Cannot overflow 64 bits: the common case, without 128-bit steps.
        int.iter()
            .chain(frac)
            .fold(0i64, |v, b| v * 10 + (b - b'0') as i64) as i128
    } else {
        let mut v: i128 = 0;
        let mut significant = 0;
        for b in int.iter().chain(frac) {
            if v == 0 && *b == b'0' {
                continue;
            }
            significant += 1;
            if significant > MAX_PRECISION as usize {
                return None;
            }
            v = v * 10 + (b - b'0') as i128;
        }
        v
    };
    Some((if neg { -v } else { v }, frac.len().min(255) as u8))
}

/// `v / 10^n`, truncated toward zero (in 64 bits when both fit).
pub fn div_pow10(v: i128, n: u8) -> i128 {
    let d = POW10[n as usize];
    match (i64::try_from(v), i64::try_from(d)) {
        (Ok(a), Ok(b)) => (a / b) as i128,
        _ => v / d,
    }
}

/// The number of digits of `v` (1 for 0).
pub fn digits(v: i128) -> u8 {
    let a = v.unsigned_abs();
    let mut n = 1;
    while n < 39 && a >= POW10[n] as u128 {
        n += 1;
    }
    n as u8
}

/// Epoch milliseconds as Flink prints a TIMESTAMP(3) in UTC:
/// `2023-11-14 22:13:20.000`.
pub fn timestamp_text(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{milli:03}")
}

/// Parses `yyyy-MM-dd HH:mm:ss[.fff]` (or with `T`, and a trailing `Z`)
/// into epoch milliseconds of that time in UTC; digits past milliseconds
/// are cut, as TIMESTAMP(3) keeps three.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let t = text.trim();
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, time) = t
        .split_once(' ')
        .or_else(|| t.split_once('T'))
        .unwrap_or((t, "00:00:00"));
    let mut dp = date.splitn(3, '-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: i64 = dp.next()?.parse().ok()?;
    let d: i64 = dp.next()?.parse().ok()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut tp = hms.splitn(3, ':');
    let h: i64 = tp.next()?.parse().ok()?;
    let mi: i64 = tp.next()?.parse().ok()?;
    let s: i64 = tp.next().unwrap_or("0").parse().ok()?;
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0..60).contains(&s)
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
    {
        return None;
    }
    let milli: i64 = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?;
    let days = days_from_civil(y, m, d);
    if civil_from_days(days) != (y, m, d) {
        return None;
    }
    Some(days * 86_400_000 + h * 3_600_000 + mi * 60_000 + s * 1000 + milli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_results_follow_flink() {
        let d = |p, s| Ty::Decimal(p, s);
        assert_eq!(arithmetic('+', d(10, 2), Ty::Int), Some(d(13, 2)));
        assert_eq!(arithmetic('-', d(10, 2), d(3, 3)), Some(d(12, 3)));
        assert_eq!(arithmetic('*', d(10, 2), Ty::Int), Some(d(21, 2)));
        assert_eq!(arithmetic('*', d(10, 2), d(3, 2)), Some(d(14, 4)));
        assert_eq!(arithmetic('/', d(10, 2), Ty::Int), Some(d(21, 13)));
        assert_eq!(arithmetic('/', d(10, 2), d(1, 1)), Some(d(15, 6)));
        assert_eq!(arithmetic('*', d(38, 10), d(38, 10)), Some(d(38, 6)));
        assert_eq!(common(&[d(10, 2), Ty::Int]), Some(d(12, 2)));
        assert_eq!(common(&[Ty::Int, d(2, 1)]), Some(d(11, 1)));
        assert_eq!(common(&[Ty::Char(3), Ty::Char(5)]), Some(Ty::Varchar(5)));
    }

    #[test]
    fn rescaling_rounds_half_up() {
        assert_eq!(rescale(100005, 3, 2), Some(10001));
        assert_eq!(rescale(-100005, 3, 2), Some(-10001));
        assert_eq!(rescale(-100004, 3, 2), Some(-10000));
        assert_eq!(decimal_text(-350, 2), "-3.50");
        assert_eq!(decimal_text(5, 3), "0.005");
        assert_eq!(parse_decimal("0.005"), Some((5, 3)));
        // 64-bit and 128-bit paths alike.
        let big = 12345678901234567890123456789i128 * 1000;
        assert_eq!(
            rescale(big + 500, 3, 0),
            Some(12345678901234567890123456790)
        );
        assert_eq!(
            rescale(-big - 499, 3, 0),
            Some(-12345678901234567890123456789)
        );
        assert_eq!(div_pow10(-13799, 2), -137);
        assert_eq!(div_pow10(-big, 30), -12);
        for (text, want) in [
            ("137.52", Some((13752, 2))),
            (" -0.50 ", Some((-50, 2))),
            ("+7", Some((7, 0))),
            (".5", Some((5, 1))),
            ("5.", Some((5, 0))),
            ("123456789012345678.9", Some((1234567890123456789, 1))),
            (
                "000000000000000000000000000000000000000001.5",
                Some((15, 1)),
            ),
            (&"9".repeat(39), None),
            ("1e5", None),
            ("-", None),
            (".", None),
            ("1.2.3", None),
        ] {
            assert_eq!(parse_decimal(text), want, "{text}");
        }
        assert_eq!(digits(0), 1);
        assert_eq!(digits(137), 3);
    }

    #[test]
    fn timestamps_print_and_parse_as_flink_writes_them() {
        assert_eq!(timestamp_text(0), "1970-01-01 00:00:00.000");
        assert_eq!(timestamp_text(1_700_000_040_000), "2023-11-14 22:14:00.000");
        assert_eq!(timestamp_text(-1), "1969-12-31 23:59:59.999");
        assert_eq!(
            parse_timestamp("2023-11-14 22:14:00.000"),
            Some(1_700_000_040_000)
        );
        assert_eq!(
            parse_timestamp("2023-11-14T22:14:00Z"),
            Some(1_700_000_040_000)
        );
        assert_eq!(
            parse_timestamp("2024-02-29 00:00:00.5"),
            Some(1_709_164_800_500)
        );
        assert_eq!(parse_timestamp("2023-02-29 00:00:00"), None);
        assert_eq!(parse_timestamp("soon"), None);
    }
}
