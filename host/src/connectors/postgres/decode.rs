//! Reading what PostgreSQL sends a CDC source: `pgoutput` messages (protocol
//! version 1, values in text form), COPY's text format (the snapshot), and
//! column values as JSON.

use crate::json;

/// A column of a published table, as its Relation message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelColumn {
    pub name: String,
    pub type_oid: u32,
    /// Part of the replica identity (the key pgoutput sends for deletes).
    pub key: bool,
}

/// A published table: its schema-qualified name and columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    /// `schema.name`.
    pub name: String,
    /// `d` default (the primary key), `n` nothing, `f` full, `i` an index.
    pub replica_identity: u8,
    pub columns: Vec<RelColumn>,
}

/// One column's value in a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datum<'a> {
    Null,
    /// A TOASTed value the change left as it was (pgoutput does not send it).
    Unchanged,
    Text(&'a [u8]),
}

/// A decoded `pgoutput` message (those a CDC source acts on).
#[derive(Debug, PartialEq, Eq)]
pub enum Change<'a> {
    Relation(Relation),
    Insert {
        rel: u32,
        new: Vec<Datum<'a>>,
    },
    Update {
        rel: u32,
        /// The before image: all columns with REPLICA IDENTITY FULL (`O`),
        /// the key columns when the key changed (`K`), else none.
        old: Option<Vec<Datum<'a>>>,
        new: Vec<Datum<'a>>,
    },
    Delete {
        rel: u32,
        old: Vec<Datum<'a>>,
    },
    Truncate {
        rels: Vec<u32>,
    },
    /// Type, origin and other messages a source has no use for.
    Other(u8),
}

struct Reader<'a> {
    p: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.p.len() < n {
            return Err(format!(
                "pgoutput message cut short (wanted {n} more bytes, {} left)",
                self.p.len()
            ));
        }
        let (head, tail) = self.p.split_at(n);
        self.p = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn cstr(&mut self) -> Result<String, String> {
        let end = self
            .p
            .iter()
            .position(|&b| b == 0)
            .ok_or("pgoutput string without its terminating zero")?;
        let s = String::from_utf8_lossy(&self.p[..end]).into_owned();
        self.p = &self.p[end + 1..];
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Vec<Datum<'a>>, String> {
        let n = self.i16()?;
        let mut out = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => Datum::Null,
                b'u' => Datum::Unchanged,
                b't' => {
                    let len = self.u32()? as usize;
                    Datum::Text(self.take(len)?)
                }
                b'b' => return Err("pgoutput sent a binary value; sluice asks for text".into()),
                other => {
                    return Err(format!(
                        "pgoutput tuple with an unknown column kind `{}`",
                        other as char
                    ));
                }
            });
        }
        Ok(out)
    }
}

/// Decodes one `pgoutput` message (the payload of an XLogData message).
pub fn change(data: &[u8]) -> Result<Change<'_>, String> {
    let mut r = Reader { p: data };
    let tag = r.u8()?;
    Ok(match tag {
        b'R' => {
            let id = r.u32()?;
            let schema = r.cstr()?;
            let name = r.cstr()?;
            let replica_identity = r.u8()?;
            let n = r.i16()?;
            let mut columns = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                let flags = r.u8()?;
                let name = r.cstr()?;
                let type_oid = r.u32()?;
                let _typmod = r.u32()?;
                columns.push(RelColumn {
                    name,
                    type_oid,
                    key: flags & 1 == 1,
                });
            }
            Change::Relation(Relation {
                id,
                name: format!("{schema}.{name}"),
                replica_identity,
                columns,
            })
        }
        b'I' => {
            let rel = r.u32()?;
            expect(r.u8()?, b'N', "insert")?;
            Change::Insert {
                rel,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let rel = r.u32()?;
            let (old, new) = match r.u8()? {
                b'K' | b'O' => {
                    let old = r.tuple()?;
                    expect(r.u8()?, b'N', "update")?;
                    (Some(old), r.tuple()?)
                }
                b'N' => (None, r.tuple()?),
                other => return Err(bad_marker(other, "update")),
            };
            Change::Update { rel, old, new }
        }
        b'D' => {
            let rel = r.u32()?;
            match r.u8()? {
                b'K' | b'O' => Change::Delete {
                    rel,
                    old: r.tuple()?,
                },
                other => return Err(bad_marker(other, "delete")),
            }
        }
        b'T' => {
            let n = r.u32()?;
            let _options = r.u8()?;
            let rels = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Change::Truncate { rels }
        }
        other => Change::Other(other),
    })
}

fn expect(got: u8, want: u8, what: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(bad_marker(got, what))
    }
}

fn bad_marker(got: u8, what: &str) -> String {
    format!(
        "pgoutput {what} message with an unexpected tuple marker `{}`",
        got as char
    )
}

// Type OIDs from PostgreSQL's pg_type.dat.
const BOOL: u32 = 16;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const OID: u32 = 26;
const JSON: u32 = 114;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const NUMERIC: u32 = 1700;
const JSONB: u32 = 3802;

/// Writes a column's value (PostgreSQL's text form, with the session's
/// `DateStyle` ISO and time zone UTC) as JSON: integers, floats and numerics
/// as numbers (their digits kept; NaN and infinities as strings), booleans,
/// json and jsonb as they are, timestamps as epoch milliseconds, everything
/// else as a string of its text form.
pub fn write_value(type_oid: u32, text: &[u8], out: &mut Vec<u8>) {
    match type_oid {
        BOOL => out.extend_from_slice(if text == b"t" { b"true" } else { b"false" }),
        INT2 | INT4 | INT8 | OID => out.extend_from_slice(text),
        FLOAT4 | FLOAT8 | NUMERIC if is_json_number(text) => out.extend_from_slice(text),
        JSON | JSONB if json::validate(text).is_ok() => out.extend_from_slice(text),
        TIMESTAMP | TIMESTAMPTZ => match epoch_millis(text) {
            Some(ms) => json::write_i64(out, ms),
            None => write_text(text, out),
        },
        _ => write_text(text, out),
    }
}

/// A JSON string of the text (UTF-8 as it is; any other bytes replaced).
fn write_text(text: &[u8], out: &mut Vec<u8>) {
    match std::str::from_utf8(text) {
        Ok(_) => json::write_str(out, text),
        Err(_) => json::write_str(out, String::from_utf8_lossy(text).as_bytes()),
    }
}

/// Whether PostgreSQL's text of a number is also a JSON number (not `NaN`,
/// `Infinity`, or `.5`).
fn is_json_number(t: &[u8]) -> bool {
    let digits = t.strip_prefix(b"-").unwrap_or(t);
    digits.first().is_some_and(u8::is_ascii_digit)
        && digits.last().is_some_and(u8::is_ascii_digit)
        && !(digits.len() > 1 && digits[0] == b'0' && digits[1].is_ascii_digit())
}

/// Epoch milliseconds of `2026-12-05 14:20:55.123456+00` (a timestamp with
/// an offset) or `2026-12-05 14:20:55` (without: read as UTC); microseconds
/// are cut to milliseconds towards the past. `None` for `infinity`, BC dates
/// and anything else.
pub fn epoch_millis(t: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(t).ok()?;
    let (date, rest) = s.split_once(' ')?;
    let mut d = date.splitn(3, '-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (time, offset_s) = match rest.find(['+', '-']) {
        Some(i) => (&rest[..i], offset_seconds(&rest[i..])?),
        None => (rest, 0),
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut h = hms.splitn(3, ':');
    let (hh, mi, ss): (i64, i64, i64) = (
        h.next()?.parse().ok()?,
        h.next()?.parse().ok()?,
        h.next()?.parse().ok()?,
    );
    if !frac.bytes().all(|b| b.is_ascii_digit()) || !(1..=12).contains(&m) {
        return None;
    }
    let mut micros: i64 = 0;
    for i in 0..6 {
        micros = micros * 10 + frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
    }
    let days = crate::time::calendar::days_from_civil(y, m, day);
    let secs = days * 86_400 + hh * 3600 + mi * 60 + ss - offset_s;
    Some(secs * 1000 + micros / 1000)
}

/// `+05:30` → 19800 seconds.
fn offset_seconds(o: &str) -> Option<i64> {
    let sign = if o.starts_with('-') { -1 } else { 1 };
    let mut parts = o[1..].splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let s: i64 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    Some(sign * (h * 3600 + m * 60 + s))
}

/// Splits one line of COPY's text format into its fields, unescaped into
/// `buf`: `None` for `\N`, else the range of the field in `buf`.
pub fn copy_fields(line: &[u8], buf: &mut Vec<u8>, fields: &mut Vec<Option<(usize, usize)>>) {
    buf.clear();
    fields.clear();
    for raw in line.split(|&b| b == b'\t') {
        if raw == b"\\N" {
            fields.push(None);
            continue;
        }
        let start = buf.len();
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if b != b'\\' || i + 1 == raw.len() {
                buf.push(b);
                i += 1;
                continue;
            }
            let e = raw[i + 1];
            i += 2;
            match e {
                b'b' => buf.push(8),
                b'f' => buf.push(12),
                b'n' => buf.push(b'\n'),
                b'r' => buf.push(b'\r'),
                b't' => buf.push(b'\t'),
                b'v' => buf.push(11),
                b'0'..=b'7' => {
                    let mut v = u32::from(e - b'0');
                    let mut n = 1;
                    while n < 3 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                        v = v * 8 + u32::from(raw[i] - b'0');
                        i += 1;
                        n += 1;
                    }
                    buf.push(v as u8);
                }
                b'x' if i < raw.len() && raw[i].is_ascii_hexdigit() => {
                    let mut v = 0u32;
                    let mut n = 0;
                    while n < 2 && i < raw.len() && raw[i].is_ascii_hexdigit() {
                        v = v * 16 + (raw[i] as char).to_digit(16).expect("hex");
                        i += 1;
                        n += 1;
                    }
                    buf.push(v as u8);
                }
                other => buf.push(other),
            }
        }
        fields.push(Some((start, buf.len())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(oid: u32, text: &str) -> String {
        let mut out = Vec::new();
        write_value(oid, text.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_become_json_by_type() {
        assert_eq!(json_of(BOOL, "t"), "true");
        assert_eq!(
            json_of(INT8, "-9223372036854775808"),
            "-9223372036854775808"
        );
        assert_eq!(
            json_of(NUMERIC, "12345678901234567890.0100"),
            "12345678901234567890.0100"
        );
        assert_eq!(json_of(NUMERIC, "NaN"), "\"NaN\"");
        assert_eq!(json_of(FLOAT8, "-Infinity"), "\"-Infinity\"");
        assert_eq!(json_of(FLOAT8, "1.5e+300"), "1.5e+300");
        assert_eq!(json_of(JSONB, "{\"a\": [1, 2]}"), "{\"a\": [1, 2]}");
        assert_eq!(json_of(25, "tab\there \"q\""), "\"tab\\there \\\"q\\\"\"");
        assert_eq!(json_of(TIMESTAMPTZ, "1970-01-01 00:00:01.2349+00"), "1234");
        assert_eq!(
            json_of(TIMESTAMPTZ, "2026-12-05 19:50:55.5+05:30"),
            "1796480455500"
        );
        assert_eq!(json_of(TIMESTAMP, "1969-12-31 23:59:59.999"), "-1");
        assert_eq!(json_of(TIMESTAMPTZ, "infinity"), "\"infinity\"");
        assert_eq!(json_of(1082, "2026-12-05"), "\"2026-12-05\"");
    }

    #[test]
    fn copy_text_lines_are_unescaped() {
        let (mut buf, mut fields) = (Vec::new(), Vec::new());
        copy_fields(b"1\t\\N\ta\\tb\\\\c\\n\t\\101\\x42", &mut buf, &mut fields);
        let got: Vec<Option<&[u8]>> = fields.iter().map(|f| f.map(|(s, e)| &buf[s..e])).collect();
        assert_eq!(
            got,
            vec![
                Some(&b"1"[..]),
                None,
                Some(&b"a\tb\\c\n"[..]),
                Some(&b"AB"[..])
            ]
        );
    }

    #[test]
    fn pgoutput_messages_are_decoded() {
        let mut m = vec![b'R'];
        m.extend(7u32.to_be_bytes());
        m.extend(b"public\0orders\0f");
        m.extend(2i16.to_be_bytes());
        m.extend(b"\x01id\0");
        m.extend(INT8.to_be_bytes());
        m.extend((-1i32).to_be_bytes());
        m.extend(b"\x00note\0");
        m.extend(25u32.to_be_bytes());
        m.extend((-1i32).to_be_bytes());
        let Change::Relation(r) = change(&m).unwrap() else {
            panic!("a relation")
        };
        assert_eq!(r.name, "public.orders");
        assert_eq!(r.replica_identity, b'f');
        assert!(r.columns[0].key && !r.columns[1].key);

        let mut u = vec![b'U'];
        u.extend(7u32.to_be_bytes());
        u.push(b'O');
        u.extend(2i16.to_be_bytes());
        u.extend(b"t\0\0\0\x017t\0\0\0\x02hi");
        u.push(b'N');
        u.extend(2i16.to_be_bytes());
        u.extend(b"t\0\0\0\x017u");
        assert_eq!(
            change(&u).unwrap(),
            Change::Update {
                rel: 7,
                old: Some(vec![Datum::Text(b"7"), Datum::Text(b"hi")]),
                new: vec![Datum::Text(b"7"), Datum::Unchanged],
            }
        );
        assert!(change(&u[..u.len() - 1]).unwrap_err().contains("cut short"));
    }
}
