//! Records as rows of a PostgreSQL table, in COPY's text format, and an
//! epoch's changes collapsed per primary key.

use crate::json::{self, Pointer};
use crate::runtime::batch::RowKind;
use smallvec::SmallVec;
use std::collections::HashMap;

/// How a column's values are written, from its type in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// `text`, `varchar`, `char`: a JSON string.
    Text,
    /// `bigint`, `integer`, `smallint`: a JSON integer in the type's range.
    Int { min: i64, max: i64 },
    /// `numeric`: a JSON number (or a string holding one), written exactly
    /// as it is.
    Numeric,
    /// `double precision`, `real`: a JSON number.
    Float,
    /// `boolean`: `true` or `false`.
    Bool,
    /// `timestamptz`, `timestamp`: an integer of epoch milliseconds (UTC).
    Timestamp,
    /// `jsonb`, `json`: any JSON value, as it is.
    Json,
}

impl ColType {
    /// The type of a column whose `pg_type.typname` is `typname`, if the
    /// sink can write it.
    pub fn of(typname: &str) -> Option<ColType> {
        Some(match typname {
            "text" | "varchar" | "bpchar" | "name" | "citext" => ColType::Text,
            "int8" => ColType::Int {
                min: i64::MIN,
                max: i64::MAX,
            },
            "int4" => ColType::Int {
                min: i32::MIN as i64,
                max: i32::MAX as i64,
            },
            "int2" => ColType::Int {
                min: i16::MIN as i64,
                max: i16::MAX as i64,
            },
            "numeric" => ColType::Numeric,
            "float8" | "float4" => ColType::Float,
            "bool" => ColType::Bool,
            "timestamptz" | "timestamp" => ColType::Timestamp,
            "jsonb" | "json" => ColType::Json,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// As `format_type` writes it (`numeric(12,2)`), for messages.
    pub sql_type: String,
    pub ty: ColType,
    pub field: Pointer,
    /// `NOT NULL`: a row to add with no value for it is refused before it
    /// reaches the server (where it would fail the whole epoch).
    pub not_null: bool,
}

/// The table a sink writes, as the catalog describes it.
#[derive(Debug, Clone)]
pub struct Table {
    /// The table's name, quoted where it must be (`public."Orders"`).
    pub name: String,
    /// The mapped columns, in the table's order.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key's columns, in the key's
    /// order; empty for an append sink.
    pub key: Vec<usize>,
}

impl Table {
    pub fn upsert(&self) -> bool {
        !self.key.is_empty()
    }

    /// Writes the record `value` as a COPY line into `line` (without the
    /// newline) and its primary key's columns into `key`. The error names
    /// the column and says what is wrong with the field. A row that
    /// `adds` (an insert, an update's new row) must have a value for every
    /// `NOT NULL` column; a retraction needs only its key.
    pub fn encode(
        &self,
        value: &[u8],
        adds: bool,
        line: &mut Vec<u8>,
        key: &mut Vec<u8>,
    ) -> Result<(), String> {
        line.clear();
        key.clear();
        // Per record: no heap allocation for a table of up to 16 columns.
        let pointers: SmallVec<[&Pointer; 16]> = self.columns.iter().map(|c| &c.field).collect();
        let mut found: SmallVec<[Option<&[u8]>; 16]> = smallvec::smallvec![None; pointers.len()];
        json::find_many(value, &pointers, &mut found).map_err(|e| e.to_string())?;
        let mut spans: SmallVec<[std::ops::Range<usize>; 16]> = SmallVec::new();
        for (i, (c, raw)) in self.columns.iter().zip(&found).enumerate() {
            if i > 0 {
                line.push(b'\t');
            }
            let start = line.len();
            match raw {
                None | Some(b"null") => {
                    let absent = if raw.is_none() { "missing" } else { "null" };
                    if self.key.contains(&i) {
                        return Err(format!(
                            "column `{}` of the primary key of {}: field {} is {absent}",
                            c.name, self.name, c.field,
                        ));
                    }
                    if adds && c.not_null {
                        return Err(format!(
                            "column `{}` of {} is NOT NULL: field {} is {absent}",
                            c.name, self.name, c.field,
                        ));
                    }
                    line.extend_from_slice(b"\\N");
                }
                Some(raw) => write_value(c, raw, line).map_err(|why| {
                    format!(
                        "column `{}` ({}) of {}: field {} {why}",
                        c.name, c.sql_type, self.name, c.field
                    )
                })?,
            }
            spans.push(start..line.len());
        }
        for (n, &i) in self.key.iter().enumerate() {
            if n > 0 {
                key.push(b'\t');
            }
            key.extend_from_slice(&line[spans[i].clone()]);
        }
        Ok(())
    }
}

/// Writes the raw JSON value `raw` for column `c` in COPY's text format;
/// the error completes "field /x …".
fn write_value(c: &Column, raw: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let shown = || {
        let s = String::from_utf8_lossy(raw);
        if s.len() > 80 {
            format!("{}…", &s[..s.floor_char_boundary(80)])
        } else {
            s.into_owned()
        }
    };
    match c.ty {
        ColType::Text => {
            if raw.first() != Some(&b'"') {
                return Err(format!("is {}, not a string", shown()));
            }
            let inner = &raw[1..raw.len() - 1];
            if !inner.contains(&b'\\') {
                // Nothing to unescape (JSON strings hold no raw control
                // characters): straight into the line.
                escape_into(inner, out);
                return Ok(());
            }
            let mut s = Vec::with_capacity(inner.len());
            json::unescape_into(inner, &mut s);
            if s.contains(&0) {
                return Err("holds a NUL character, which PostgreSQL text cannot".into());
            }
            escape_into(&s, out);
        }
        ColType::Int { min, max } => {
            let v = match raw {
                [b'-' | b'0'..=b'9', ..] => json::parse_i64(raw),
                _ => None,
            }
            .ok_or_else(|| format!("is {}, not an integer", shown()))?;
            if v < min || v > max {
                return Err(format!("is {v}, out of the column's range"));
            }
            json::write_i64(out, v);
        }
        ColType::Numeric | ColType::Float => {
            let text = match raw {
                // NaN and the infinities come as strings (JSON has no such
                // numbers), as the postgres-cdc source writes them.
                [b'"', inner @ .., b'"']
                    if matches!(inner, b"NaN" | b"Infinity" | b"-Infinity") =>
                {
                    out.extend_from_slice(inner);
                    return Ok(());
                }
                [b'"', inner @ .., b'"'] if c.ty == ColType::Numeric => inner,
                _ => raw,
            };
            if json::Number::parse(text).is_none() || text.contains(&b'"') {
                return Err(format!("is {}, not a number", shown()));
            }
            out.extend_from_slice(text);
        }
        ColType::Bool => match raw {
            b"true" => out.push(b't'),
            b"false" => out.push(b'f'),
            _ => return Err(format!("is {}, not true or false", shown())),
        },
        ColType::Timestamp => {
            let ms = match raw {
                [b'-' | b'0'..=b'9', ..] => json::parse_i64(raw),
                _ => None,
            }
            .ok_or_else(|| {
                format!(
                    "is {}, not an integer number of epoch milliseconds",
                    shown()
                )
            })?;
            write_timestamp(ms, out).ok_or_else(|| format!("is {ms}, out of range"))?;
        }
        ColType::Json => escape_into(raw, out),
    }
    Ok(())
}

/// COPY text format: a backslash, tab, newline or carriage return in a
/// value is escaped.
fn escape_into(s: &[u8], out: &mut Vec<u8>) {
    for &b in s {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b => out.push(b),
        }
    }
}

/// `2026-12-05 11:34:04.123+00` for epoch milliseconds (years 1–9999).
fn write_timestamp(ms: i64, out: &mut Vec<u8>) -> Option<()> {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = crate::time::calendar::civil_from_days(days);
    if !(1..=9999).contains(&y) {
        return None;
    }
    let (h, mi, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    use std::io::Write;
    write!(
        out,
        "{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{milli:03}+00"
    )
    .ok()
}

/// One epoch's rows, ready to write: lines in COPY's text format.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rows {
    /// Whole rows to insert or update (by primary key).
    pub upserts: Vec<u8>,
    /// Primary keys of rows to delete.
    pub deletes: Vec<u8>,
    /// Whole rows to append (a table without a primary key).
    pub appends: Vec<u8>,
    pub count: usize,
}

impl Rows {
    /// A file's worth: a header line with the three lengths, then the three.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = format!(
            "sluice-postgres-rows 1 {} {} {} {}\n",
            self.count,
            self.upserts.len(),
            self.deletes.len(),
            self.appends.len()
        )
        .into_bytes();
        v.extend_from_slice(&self.upserts);
        v.extend_from_slice(&self.deletes);
        v.extend_from_slice(&self.appends);
        v
    }

    pub fn from_bytes(b: &[u8]) -> Result<Rows, String> {
        let nl = b.iter().position(|&c| c == b'\n').ok_or("no header line")?;
        let head = std::str::from_utf8(&b[..nl]).map_err(|_| "a header that is not text")?;
        let f: Vec<&str> = head.split(' ').collect();
        let n = |i: usize| -> Result<usize, String> {
            f.get(i)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("a bad header `{head}`"))
        };
        if f.first() != Some(&"sluice-postgres-rows") || f.get(1) != Some(&"1") {
            return Err(format!("a bad header `{head}`"));
        }
        let (count, u, d, a) = (n(2)?, n(3)?, n(4)?, n(5)?);
        let body = &b[nl + 1..];
        if body.len() != u + d + a {
            return Err(format!(
                "{} bytes after the header, {} expected",
                body.len(),
                u + d + a
            ));
        }
        Ok(Rows {
            upserts: body[..u].to_vec(),
            deletes: body[u..u + d].to_vec(),
            appends: body[u + d..].to_vec(),
            count,
        })
    }
}

/// What the last change of a key does.
#[derive(Debug)]
enum Change {
    Upsert(Vec<u8>),
    Delete,
}

/// The changes of one epoch. For an upsert table, per primary key, the last
/// change wins (PostgreSQL refuses one `INSERT … ON CONFLICT` that touches
/// a row twice): `+I`/`+U` write the row, `-D` deletes it, and `-U` deletes
/// it too unless a later `+U` of the same key writes it again (an update
/// that changes the primary key retracts the old row). For an append
/// table, every row in order.
#[derive(Debug)]
pub struct Changes {
    upsert: bool,
    by_key: HashMap<Vec<u8>, Change>,
    appends: Vec<u8>,
    appended: usize,
}

impl Changes {
    pub fn new(upsert: bool) -> Changes {
        Changes {
            upsert,
            by_key: HashMap::new(),
            appends: Vec::new(),
            appended: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len() + self.appended
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a record's row; an append table refuses retractions.
    pub fn add(&mut self, kind: RowKind, line: &[u8], key: &[u8]) -> Result<(), String> {
        if !self.upsert {
            if !kind.is_addition() {
                return Err(format!(
                    "a {} record, but the table has no primary key to find the row by (an append sink takes inserts only)",
                    kind.short()
                ));
            }
            self.appends.extend_from_slice(line);
            self.appends.push(b'\n');
            self.appended += 1;
            return Ok(());
        }
        let change = if kind.is_addition() {
            Change::Upsert(line.to_vec())
        } else {
            Change::Delete
        };
        match self.by_key.get_mut(key) {
            Some(c) => *c = change,
            None => {
                self.by_key.insert(key.to_vec(), change);
            }
        }
        Ok(())
    }

    /// The collapsed rows; leaves the changes empty.
    pub fn take(&mut self) -> Rows {
        let mut rows = Rows {
            count: self.len(),
            appends: std::mem::take(&mut self.appends),
            ..Rows::default()
        };
        self.appended = 0;
        for (key, change) in self.by_key.drain() {
            match change {
                Change::Upsert(line) => {
                    rows.upserts.extend_from_slice(&line);
                    rows.upserts.push(b'\n');
                }
                Change::Delete => {
                    rows.deletes.extend_from_slice(&key);
                    rows.deletes.push(b'\n');
                }
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(key: &[usize]) -> Table {
        let col = |name: &str, ty: ColType| Column {
            name: name.into(),
            sql_type: format!("{ty:?}"),
            ty,
            field: Pointer::parse(&format!("/{name}")).unwrap(),
            not_null: false,
        };
        Table {
            name: "t".into(),
            columns: vec![
                col("id", ColType::Text),
                col(
                    "n",
                    ColType::Int {
                        min: i32::MIN as i64,
                        max: i32::MAX as i64,
                    },
                ),
                col("amount", ColType::Numeric),
                col("ok", ColType::Bool),
                col("at", ColType::Timestamp),
                col("doc", ColType::Json),
            ],
            key: key.to_vec(),
        }
    }

    fn encode(t: &Table, v: &str) -> Result<(String, String), String> {
        let (mut line, mut key) = (Vec::new(), Vec::new());
        t.encode(v.as_bytes(), true, &mut line, &mut key)?;
        Ok((
            String::from_utf8(line).unwrap(),
            String::from_utf8(key).unwrap(),
        ))
    }

    #[test]
    fn values_are_written_in_copy_text_format() {
        let t = table(&[0, 1]);
        let (line, key) = encode(
            &t,
            r#"{"id":"a\tb\\c\nd","n":-7,"amount":"12.50","ok":true,"at":1700000000123,"doc":{"x":[1,"\t"]}}"#,
        )
        .unwrap();
        assert_eq!(
            line,
            "a\\tb\\\\c\\nd\t-7\t12.50\tt\t2023-11-14 22:13:20.123+00\t{\"x\":[1,\"\\\\t\"]}"
        );
        assert_eq!(key, "a\\tb\\\\c\\nd\t-7");
        let (line, _) = encode(&t, r#"{"id":"x","n":1,"amount":1e3,"ok":null,"at":-1}"#).unwrap();
        assert_eq!(line, "x\t1\t1e3\t\\N\t1969-12-31 23:59:59.999+00\t\\N");
    }

    #[test]
    fn a_field_that_does_not_fit_its_column_is_named() {
        let t = table(&[0]);
        let e = encode(&t, r#"{"id":"x","n":3000000000}"#).unwrap_err();
        assert!(
            e.contains("column `n`") && e.contains("out of the column's range"),
            "{e}"
        );
        let e = encode(&t, r#"{"id":"x","n":"7"}"#).unwrap_err();
        assert!(
            e.contains("column `n`") && e.contains("not an integer"),
            "{e}"
        );
        let e = encode(&t, r#"{"id":5}"#).unwrap_err();
        assert!(
            e.contains("column `id`") && e.contains("not a string"),
            "{e}"
        );
        let e = encode(&t, r#"{"n":1}"#).unwrap_err();
        assert!(e.contains("primary key") && e.contains("missing"), "{e}");
        let e = encode(&t, r#"{"id":"x","amount":"12,5"}"#).unwrap_err();
        assert!(e.contains("not a number"), "{e}");
        let e = encode(&t, r#"{"id":"x","at":"soon"}"#).unwrap_err();
        assert!(e.contains("epoch milliseconds"), "{e}");
        let e = encode(&t, r#"{"id":"x","ok":1}"#).unwrap_err();
        assert!(e.contains("not true or false"), "{e}");
        assert!(encode(&t, r#"{"id":"x""#).is_err());
    }

    #[test]
    fn a_row_to_add_needs_every_not_null_column_a_retraction_only_its_key() {
        let mut t = table(&[0]);
        t.columns[5].not_null = true;
        let e = encode(&t, r#"{"id":"x","doc":null}"#).unwrap_err();
        assert_eq!(e, "column `doc` of t is NOT NULL: field /doc is null");
        let e = encode(&t, r#"{"id":"x"}"#).unwrap_err();
        assert!(e.ends_with("field /doc is missing"), "{e}");
        let (mut line, mut key) = (Vec::new(), Vec::new());
        t.encode(br#"{"id":"x"}"#, false, &mut line, &mut key)
            .unwrap();
        assert_eq!(key, b"x");
    }

    #[test]
    fn the_last_change_of_a_key_wins() {
        let mut c = Changes::new(true);
        c.add(RowKind::Insert, b"a\t1", b"a").unwrap();
        c.add(RowKind::UpdateBefore, b"a\t1", b"a").unwrap();
        c.add(RowKind::UpdateAfter, b"a\t2", b"a").unwrap();
        c.add(RowKind::Insert, b"b\t1", b"b").unwrap();
        c.add(RowKind::Delete, b"b\t1", b"b").unwrap();
        // The primary key changes: c's row is retracted, d's written.
        c.add(RowKind::UpdateBefore, b"c\t1", b"c").unwrap();
        c.add(RowKind::UpdateAfter, b"d\t1", b"d").unwrap();
        let rows = c.take();
        assert_eq!(rows.count, 4);
        let mut ups: Vec<&[u8]> = rows.upserts.split(|&b| b == b'\n').collect();
        ups.sort();
        assert_eq!(ups, [&b""[..], b"a\t2", b"d\t1"]);
        let mut dels: Vec<&[u8]> = rows.deletes.split(|&b| b == b'\n').collect();
        dels.sort();
        assert_eq!(dels, [&b""[..], b"b", b"c"]);
        assert!(c.is_empty());
        assert_eq!(Rows::from_bytes(&rows.to_bytes()).unwrap(), rows);
        assert!(Rows::from_bytes(&rows.to_bytes()[..20]).is_err());
    }

    #[test]
    fn an_append_table_keeps_every_row_and_refuses_retractions() {
        let mut c = Changes::new(false);
        c.add(RowKind::Insert, b"a", b"").unwrap();
        c.add(RowKind::Insert, b"a", b"").unwrap();
        assert!(c.add(RowKind::Delete, b"a", b"").is_err());
        let rows = c.take();
        assert_eq!((rows.count, &rows.appends[..]), (2, &b"a\na\n"[..]));
    }

    #[test]
    fn timestamps_cover_the_calendar() {
        let mut v = Vec::new();
        write_timestamp(951_782_400_000, &mut v).unwrap(); // 2000-02-29
        assert_eq!(v, b"2000-02-29 00:00:00.000+00");
        assert!(write_timestamp(i64::MAX, &mut Vec::new()).is_none());
    }
}
