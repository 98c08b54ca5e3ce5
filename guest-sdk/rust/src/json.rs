//! Reading single fields of a JSON record without parsing all of it.
//!
//! [`Record::json`](crate::Record::json) deserializes a whole value into a
//! type, which is the convenient way. When an operator needs one or two
//! top-level fields of a large object, [`field`] (or
//! [`Record::field`](crate::Record::field)) finds the field's raw JSON text
//! by skipping over the others, and deserializes only that: several times
//! faster, because the other fields are stepped over rather than parsed.
//!
//! The scan follows JSON's grammar closely enough to step over nested
//! values and escaped strings, but it does not check what it skips: the host
//! checks that every record is valid JSON when it enters the pipeline.

use crate::Error;
use serde::Deserialize;
use std::borrow::Cow;

/// The raw JSON text of the top-level field `name` of the object `doc`, or
/// `None` when the object has no such field. An error when `doc` is not an
/// object (or is cut short). If a field occurs twice, the first one counts.
pub fn field<'a>(doc: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, Error> {
    let [found] = fields(doc, [name])?;
    Ok(found)
}

/// Like [`field`] for several fields at once: one pass over the object,
/// which stops as soon as all are found.
pub fn fields<'a, const N: usize>(
    doc: &'a [u8],
    names: [&str; N],
) -> Result<[Option<&'a [u8]>; N], Error> {
    let mut found = [None; N];
    let mut missing = N;
    let mut s = Scan { doc, pos: 0 };
    s.ws();
    if s.next() != Some(b'{') {
        return Err(Error::new("the record is not a JSON object"));
    }
    s.ws();
    if s.peek() == Some(b'}') || N == 0 {
        return Ok(found);
    }
    loop {
        s.ws();
        if s.next() != Some(b'"') {
            return Err(s.broken());
        }
        let key_start = s.pos;
        let escaped = s.skip_string_body()?;
        let key = &doc[key_start..s.pos - 1];
        s.ws();
        if s.next() != Some(b':') {
            return Err(s.broken());
        }
        s.ws();
        let value_start = s.pos;
        s.skip_value(0)?;
        for (i, name) in names.iter().enumerate() {
            if found[i].is_none() && key_is(key, escaped, name.as_bytes()) {
                found[i] = Some(&doc[value_start..s.pos]);
                missing -= 1;
                if missing == 0 {
                    return Ok(found);
                }
            }
        }
        s.ws();
        match s.next() {
            Some(b',') => {}
            Some(b'}') => return Ok(found),
            _ => return Err(s.broken()),
        }
    }
}

/// One field of a record, found by [`Record::fields`](crate::Record::fields).
#[derive(Clone, Copy, Debug)]
pub struct Field<'a, 'n> {
    name: &'n str,
    raw: Option<&'a [u8]>,
}

impl<'a> Field<'a, '_> {
    /// The field's value; an error naming the field when it is missing or
    /// does not deserialize as `T`.
    pub fn get<T: Deserialize<'a>>(&self) -> Result<T, Error> {
        self.get_opt()?
            .ok_or_else(|| Error::new(format!("field {:?} is missing", self.name)))
    }

    /// The field's value, or `None` when it is missing.
    pub fn get_opt<T: Deserialize<'a>>(&self) -> Result<Option<T>, Error> {
        match self.raw {
            None => Ok(None),
            Some(raw) => serde_json::from_slice(raw)
                .map(Some)
                .map_err(|e| Error::new(format!("field {:?}: {e}", self.name))),
        }
    }

    /// The field's raw JSON text.
    pub fn raw(&self) -> Option<&'a [u8]> {
        self.raw
    }
}

/// [`fields`] with names attached, for [`Record::fields`](crate::Record::fields).
pub(crate) fn named_fields<'a, 'n, const N: usize>(
    doc: &'a [u8],
    names: [&'n str; N],
) -> Result<[Field<'a, 'n>; N], Error> {
    let raw = fields(doc, names)?;
    Ok(std::array::from_fn(|i| Field {
        name: names[i],
        raw: raw[i],
    }))
}

#[inline(always)]
fn key_is(raw: &[u8], escaped: bool, name: &[u8]) -> bool {
    if !escaped {
        // A plain loop: short keys, and in Wasm `==` on slices is a call to
        // `memcmp`.
        return raw.len() == name.len() && raw.iter().zip(name).all(|(a, b)| a == b);
    }
    key_is_escaped(raw, name)
}

#[cold]
fn key_is_escaped(raw: &[u8], name: &[u8]) -> bool {
    // Rare: decode the key as a JSON string to compare.
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<Cow<'_, str>>(&quoted).is_ok_and(|k| k.as_bytes() == name)
}

struct Scan<'a> {
    doc: &'a [u8],
    pos: usize,
}

const MAX_DEPTH: usize = 128;

impl Scan<'_> {
    fn broken(&self) -> Error {
        Error::new(format!(
            "the record is not valid JSON (at byte {})",
            self.pos
        ))
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.doc.get(self.pos).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.pos += 1;
        b
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// After an opening quote: moves past the closing one. Returns whether
    /// the string has escapes.
    fn skip_string_body(&mut self) -> Result<bool, Error> {
        let mut escaped = false;
        loop {
            match self.doc[self.pos.min(self.doc.len())..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\')
            {
                None => {
                    self.pos = self.doc.len();
                    return Err(self.broken());
                }
                Some(i) => {
                    self.pos += i;
                    if self.doc[self.pos] == b'"' {
                        self.pos += 1;
                        return Ok(escaped);
                    }
                    escaped = true;
                    self.pos += 2; // the backslash and the escaped character
                }
            }
        }
    }

    fn skip_value(&mut self, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(Error::new("the record is nested too deeply"));
        }
        match self.next() {
            Some(b'"') => self.skip_string_body().map(drop),
            Some(open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.ws();
                if self.peek() == Some(close) {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next() {
                        Some(b',' | b':') => {}
                        Some(c) if c == close => return Ok(()),
                        _ => return Err(self.broken()),
                    }
                }
            }
            Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        break;
                    }
                    self.pos += 1;
                }
                Ok(())
            }
            _ => Err(self.broken()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn finds_top_level_fields_and_steps_over_everything_else() {
        let doc =
            br#" {"a":{"amount":1,"x":[1,{"y":"}"}]},"s":"q\"uote","amount" : 137.52 , "n":null}"#;
        assert_eq!(field(doc, "amount").unwrap(), Some(&b"137.52"[..]));
        assert_eq!(field(doc, "s").unwrap(), Some(&br#""q\"uote""#[..]));
        assert_eq!(
            field(doc, "a").unwrap(),
            Some(&br#"{"amount":1,"x":[1,{"y":"}"}]}"#[..])
        );
        assert_eq!(field(doc, "n").unwrap(), Some(&b"null"[..]));
        assert_eq!(field(doc, "missing").unwrap(), None);
        assert_eq!(field(br#"{"k\u0065y":5}"#, "key").unwrap(), Some(&b"5"[..]));
        assert_eq!(field(b"{}", "a").unwrap(), None);
    }

    #[test]
    fn reads_several_fields_in_one_pass() {
        let doc = br#"{"a":1,"b":"x","c":[2],"d":4}"#;
        let [d, a, z] = super::fields(doc, ["d", "a", "z"]).unwrap();
        assert_eq!((d, a, z), (Some(&b"4"[..]), Some(&b"1"[..]), None));
        let [b, c] = super::named_fields(doc, ["b", "c"]).unwrap();
        assert_eq!(b.get::<&str>().unwrap(), "x");
        assert_eq!(c.get::<Vec<u8>>().unwrap(), [2]);
        let [z] = super::named_fields(doc, ["z"]).unwrap();
        assert_eq!(
            z.get::<u8>().unwrap_err().to_string(),
            "field \"z\" is missing"
        );
        assert_eq!(z.get_opt::<u8>().unwrap(), None);
        assert!(
            b.get::<u8>()
                .unwrap_err()
                .to_string()
                .starts_with("field \"b\": invalid type")
        );
    }

    #[test]
    fn says_when_the_record_is_not_an_object() {
        assert!(
            field(b"[1,2]", "a")
                .unwrap_err()
                .to_string()
                .contains("not a JSON object")
        );
        assert!(field(br#"{"a":"unterminated"#, "b").is_err());
        assert!(field(br#"{"a" 1}"#, "a").is_err());
    }
}
