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
    Ok(find(doc, names)?.map(|f| f.map(|f| &doc[f.start..f.end])))
}

/// Where a field's value is in the object, and whether it is a string with
/// escapes.
#[derive(Clone, Copy)]
struct Found {
    start: usize,
    end: usize,
    escaped: bool,
}

fn find<const N: usize>(doc: &[u8], names: [&str; N]) -> Result<[Option<Found>; N], Error> {
    let mut found = [None; N];
    let mut missing = N;
    // The name looked for first: the one after the last found, since
    // records tend to list their fields in the order they are asked for.
    let mut next = 0;
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
        // The name expected next is compared where the key starts, before
        // (and instead of) a scan for the key's closing quote.
        let hit = if next < N && found[next].is_none() && s.key_here(names[next].as_bytes()) {
            Some(next)
        } else {
            let key_start = s.pos;
            let key_escaped = s.skip_string_body()?;
            let key = &doc[key_start..s.pos - 1];
            (0..N).find(|&i| found[i].is_none() && key_is(key, key_escaped, names[i].as_bytes()))
        };
        s.ws();
        if s.next() != Some(b':') {
            return Err(s.broken());
        }
        s.ws();
        let start = s.pos;
        let escaped = s.skip_value(0)?;
        if let Some(i) = hit {
            let value = Some(Found {
                start,
                end: s.pos,
                escaped,
            });
            // The same name asked for twice gets the same value.
            let name = names[i].as_bytes();
            for j in i..N {
                // `same_bytes`, not `==`: in Wasm a slice's `==` is a call.
                if j == i || (found[j].is_none() && same_bytes(names[j].as_bytes(), name)) {
                    found[j] = value;
                    missing -= 1;
                }
            }
            if missing == 0 {
                return Ok(found);
            }
            next = i + 1;
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
    /// The value's text (not yet checked to be UTF-8), and whether it is a
    /// string with escapes.
    raw: Option<(&'a [u8], bool)>,
}

impl<'a, 'n> Field<'a, 'n> {
    /// The field `name` whose value's text is `raw` (and whether it is a
    /// string with escapes), or missing.
    pub(crate) fn located(name: &'n str, raw: Option<(&'a [u8], bool)>) -> Self {
        Field { name, raw }
    }
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
            Some((raw, _)) => serde_json::from_slice(raw)
                .map(Some)
                .map_err(|e| Error::new(format!("field {:?}: {e}", self.name))),
        }
    }

    /// The field's raw JSON text.
    pub fn raw(&self) -> Option<&'a [u8]> {
        self.raw.map(|(raw, _)| raw)
    }

    /// The field's number as `f64` (what [`get::<f64>`](Field::get) gives,
    /// read without serde: see [`number`]); an error naming the field when it
    /// is missing or not a number.
    pub fn f64(&self) -> Result<f64, Error> {
        number(self.present()?.0)
            .ok_or_else(|| Error::new(format!("field {:?} is not a number", self.name)))
    }

    /// The field's string, borrowed from the record unless it has escapes
    /// (what [`get::<Cow<str>>`](Field::get) gives, read without serde); an
    /// error naming the field when it is missing or not a string.
    pub fn str(&self) -> Result<Cow<'a, str>, Error> {
        let not_a_string = || Error::new(format!("field {:?} is not a string", self.name));
        match self.present()? {
            // The scan found the closing quote and no backslash: the text
            // between the quotes is the string.
            (raw, false) => match raw.strip_prefix(b"\"") {
                Some(quoted) => {
                    let text = &quoted[..quoted.len() - 1];
                    match plain_str(text) {
                        Some(plain) => Ok(Cow::Borrowed(plain)),
                        None => std::str::from_utf8(text).map(Cow::Borrowed).map_err(|e| {
                            Error::new(format!("field {:?} is not UTF-8: {e}", self.name))
                        }),
                    }
                }
                None => Err(not_a_string()),
            },
            (raw, true) => serde_json::from_slice::<Cow<'_, str>>(raw).map_err(|_| not_a_string()),
        }
    }

    fn present(&self) -> Result<(&'a [u8], bool), Error> {
        self.raw
            .ok_or_else(|| Error::new(format!("field {:?} is missing", self.name)))
    }
}

/// The JSON number `raw` as the nearest `f64`, or `None` when `raw` is not
/// exactly one JSON number or is beyond `f64`'s range (as `serde_json`
/// refuses `1e400`). Plain decimals (up to 15 significant digits with
/// a small exponent, such as amounts with cents) are read directly and
/// exactly; others go through the standard library's parser. Both round
/// correctly, so the result is the one `serde_json` gives for every number
/// it reads exactly (and no worse for the rest).
pub fn number(raw: &[u8]) -> Option<f64> {
    let negative = raw.first() == Some(&b'-');
    let mut i = usize::from(negative);
    let mut mantissa: u64 = 0;
    let mut digits = 0u32; // significant digits in `mantissa`
    let mut scale: i32 = 0; // the value is mantissa * 10^scale
    let int_start = i;
    while let Some(&d @ b'0'..=b'9') = raw.get(i) {
        push_digit(&mut mantissa, &mut digits, &mut scale, d, false);
        i += 1;
    }
    let int_len = i - int_start;
    if int_len == 0 || (int_len > 1 && raw[int_start] == b'0') {
        return None;
    }
    if raw.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while let Some(&d @ b'0'..=b'9') = raw.get(i) {
            push_digit(&mut mantissa, &mut digits, &mut scale, d, true);
            i += 1;
        }
        if i == frac_start {
            return None;
        }
    }
    let mut exact = digits <= 15;
    if let Some(b'e' | b'E') = raw.get(i) {
        i += 1;
        let exp_negative = raw.get(i) == Some(&b'-');
        if let Some(b'+' | b'-') = raw.get(i) {
            i += 1;
        }
        let exp_start = i;
        let mut exp: i32 = 0;
        while let Some(&d @ b'0'..=b'9') = raw.get(i) {
            exp = exp.saturating_mul(10).saturating_add(i32::from(d - b'0'));
            i += 1;
        }
        if i == exp_start {
            return None;
        }
        scale = scale.saturating_add(if exp_negative { -exp } else { exp });
    }
    if i != raw.len() {
        return None;
    }
    exact &= (-22..=22).contains(&scale);
    if !exact {
        // Many digits or a large exponent: the standard library's parser
        // (correctly rounded; the text is a valid JSON number, which it
        // accepts).
        return std::str::from_utf8(raw)
            .ok()?
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite());
    }
    // Both operands exact in f64 (at most 15 digits < 2^53, 10^22 is the
    // largest exact power), so one IEEE operation rounds correctly.
    let m = mantissa as f64;
    let v = if scale < 0 {
        m / POW10[scale.unsigned_abs() as usize]
    } else {
        m * POW10[scale as usize]
    };
    Some(if negative { -v } else { v })
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// One digit of a number into `mantissa * 10^scale`: leading zeros are not
/// significant, and past 19 digits only the scale of an integer part grows
/// (the result is then read by the fallback parser anyway).
#[inline]
fn push_digit(mantissa: &mut u64, digits: &mut u32, scale: &mut i32, d: u8, fraction: bool) {
    if *digits < 19 {
        *mantissa = *mantissa * 10 + u64::from(d - b'0');
        if *mantissa != 0 {
            *digits += 1;
        }
        if fraction {
            *scale -= 1;
        }
    } else {
        *digits = digits.saturating_add(1);
        if !fraction {
            *scale += 1;
        }
    }
}

/// [`fields`] with names attached, for [`Record::fields`](crate::Record::fields).
pub(crate) fn named_fields<'a, 'n, const N: usize>(
    doc: &'a [u8],
    names: [&'n str; N],
) -> Result<[Field<'a, 'n>; N], Error> {
    // No UTF-8 check of the whole record: each field read checks its own
    // text, and the others are only stepped over.
    let found = find(doc, names)?;
    Ok(std::array::from_fn(|i| Field {
        name: names[i],
        raw: found[i].map(|f| (&doc[f.start..f.end], f.escaped)),
    }))
}

/// Writes one JSON object member by member, straight into the output
/// batch: see [`Output::emit_object`](crate::Output::emit_object). The text
/// is what `serde_json` writes for the same members (compact, the same
/// escapes and float format, non-finite floats as `null`), without going
/// through `Serialize`.
pub struct ObjectWriter<'b> {
    buf: &'b mut Vec<u8>,
    first: bool,
}

impl<'b> ObjectWriter<'b> {
    fn open(buf: &'b mut Vec<u8>) -> Self {
        buf.push(b'{');
        ObjectWriter { buf, first: true }
    }

    fn close(self) {
        self.buf.push(b'}');
    }

    /// Appends the object `write` writes to `buf`; returns where it starts.
    /// When `write` fails, `buf` is left as it was and the error returned.
    pub(crate) fn append(
        buf: &mut Vec<u8>,
        write: impl FnOnce(&mut ObjectWriter<'_>) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let start = buf.len();
        let mut object = ObjectWriter::open(buf);
        if let Err(e) = write(&mut object) {
            buf.truncate(start);
            return Err(e);
        }
        object.close();
        Ok(start)
    }

    fn name(&mut self, name: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        write_string(self.buf, name);
        self.buf.push(b':');
    }

    /// A string member.
    pub fn str(&mut self, name: &str, value: &str) -> &mut Self {
        self.name(name);
        write_string(self.buf, value);
        self
    }

    /// A number member; `null` when `value` is NaN or infinite.
    pub fn f64(&mut self, name: &str, value: f64) -> &mut Self {
        use serde_json::ser::{CompactFormatter, Formatter};
        self.name(name);
        if value.is_finite() {
            CompactFormatter
                .write_f64(self.buf, value)
                .expect("writing to a Vec");
        } else {
            self.buf.extend_from_slice(b"null");
        }
        self
    }

    /// An integer member.
    pub fn i64(&mut self, name: &str, value: i64) -> &mut Self {
        use serde_json::ser::{CompactFormatter, Formatter};
        self.name(name);
        CompactFormatter
            .write_i64(self.buf, value)
            .expect("writing to a Vec");
        self
    }

    /// A member whose value is JSON text already (a record's key, a field
    /// read with [`field`]), written as it is. The host checks every
    /// record a module emits: text that is not JSON fails the job there.
    pub fn raw(&mut self, name: &str, json: &[u8]) -> &mut Self {
        self.name(name);
        self.buf.extend_from_slice(json);
        self
    }

    /// A `true` or `false` member.
    pub fn bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.name(name);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// A member whose value is encoded with `serde_json`; on an error the
    /// object is not emitted.
    pub fn json<T: serde::Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<&mut Self, Error> {
        self.name(name);
        serde_json::to_writer(&mut *self.buf, value)?;
        Ok(self)
    }
}

/// `value` as a JSON string, escaped as `serde_json` escapes it.
fn write_string(buf: &mut Vec<u8>, value: &str) {
    if needs_escape(value.as_bytes()) {
        serde_json::to_writer(buf, value).expect("writing a string to a Vec");
        return;
    }
    buf.reserve(value.len() + 2);
    buf.push(b'"');
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'"');
}

#[inline(always)]
fn key_is(raw: &[u8], escaped: bool, name: &[u8]) -> bool {
    if !escaped {
        return same_bytes(raw, name);
    }
    key_is_escaped(raw, name)
}

// In Wasm every turn of a loop checks the call's deadline (wasmtime's epoch
// check, measured at ~20 % of a JSON map's time), and `==` on slices is a
// call to `memcmp`, a byte loop. The helpers below read short byte strings
// a word at a time, the last word overlapping the one before, so that the
// field names and values of a typical record take no loop turns at all.

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// Bytes `i..i + 4` of `s`, as a number.
#[inline(always)]
fn word4(s: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"))
}

/// Bytes `i..i + 8` of `s`, as a number.
#[inline(always)]
fn word8(s: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"))
}

/// Up to eight bytes of `s` in one word that has every byte of `s` in it
/// at least once, padded with `pad` (for tests that look at each byte).
#[inline(always)]
fn short_word(s: &[u8], pad: u8) -> u64 {
    let n = s.len();
    match n {
        0 => u64::from_ne_bytes([pad; 8]),
        1..=3 => {
            let mut w = [pad; 8];
            (w[0], w[1], w[2]) = (s[0], s[n / 2], s[n - 1]);
            u64::from_le_bytes(w)
        }
        _ => u64::from(word4(s, 0)) | u64::from(word4(s, n - 4)) << 32,
    }
}

/// `a == b`.
#[inline(always)]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..=3 => short_word(a, 0) == short_word(b, 0),
        4..=7 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        8..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        _ => a == b,
    }
}

/// Whether a byte of `w` is `"`, `\\` or a control character (below
/// 0x20): one JSON must escape in a string.
#[inline(always)]
fn escape_in(w: u64) -> bool {
    let (q, b) = (
        w ^ u64::from_ne_bytes([b'"'; 8]),
        w ^ u64::from_ne_bytes([b'\\'; 8]),
    );
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let below_0x20 = w.wrapping_sub(ONES * 0x20) & !w;
    (zero(q) | zero(b) | below_0x20) & HIGH != 0
}

/// Whether `s` has a byte JSON must escape in a string.
#[inline]
fn needs_escape(s: &[u8]) -> bool {
    !every_word(s, |w| !escape_in(w))
}

/// Whether `s` is printable ASCII with no quote or backslash: a JSON
/// string's text as it is, and UTF-8.
#[inline]
fn plain_ascii(s: &[u8]) -> bool {
    every_word(s, |w| !escape_in(w) && w & HIGH == 0)
}

/// `s` as text when it is [`plain_ascii`], checked a word at a time
/// (`from_utf8` would check again, a loop turn per byte).
#[inline]
fn plain_str(s: &[u8]) -> Option<&str> {
    // SAFETY: `plain_ascii` checked that every byte is ASCII, which is UTF-8.
    plain_ascii(s).then(|| unsafe { std::str::from_utf8_unchecked(s) })
}

/// Whether `ok` holds for every eight bytes of `s` (overlapping at the end;
/// a short `s` padded with `a`s).
#[inline]
fn every_word(s: &[u8], ok: impl Fn(u64) -> bool) -> bool {
    let n = s.len();
    if n < 8 {
        return ok(short_word(s, b'a'));
    }
    let mut i = 0;
    while i + 8 < n {
        if !ok(word8(s, i)) {
            return false;
        }
        i += 8;
    }
    ok(word8(s, n - 8))
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

/// The index of the first `"` or `\\` in `bytes`: eight bytes at a time
/// (Wasm has 64-bit integers but, without SIMD, no faster `memchr`).
#[inline]
fn find_quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    find_either(bytes, b'"', b'\\')
}

/// The position of the first byte that is `a` or `b` (neither zero), eight
/// bytes at a time: no loop turn per byte.
#[inline]
fn find_either(bytes: &[u8], a: u8, b: u8) -> Option<usize> {
    let (wa, wb) = (ONES * u64::from(a), ONES * u64::from(b));
    first_hit(bytes, |w| {
        let (x, y) = (w ^ wa, w ^ wb);
        (x.wrapping_sub(ONES) & !x | y.wrapping_sub(ONES) & !y) & HIGH
    })
}

/// Where a number, `true`, `false` or `null` that starts `bytes` ends: at
/// the first `,`, `}`, `]`, whitespace or control character, or at the end.
#[inline]
fn scalar_end(bytes: &[u8]) -> usize {
    let (comma, brace, bracket) = (ONES * u64::from(b','), ONES * 0x7d, ONES * 0x5d);
    let ends = first_hit(bytes, |w| {
        let (x, y, z) = (w ^ comma, w ^ brace, w ^ bracket);
        let zero = |x: u64| x.wrapping_sub(ONES) & !x;
        let up_to_space = w.wrapping_sub(ONES * 0x21) & !w;
        (zero(x) | zero(y) | zero(z) | up_to_space) & HIGH
    });
    // The zeros that pad the last word are hits too: the end of `bytes`.
    ends.map_or(bytes.len(), |i| i.min(bytes.len()))
}

/// The first byte of `bytes` whose high bit `hits` sets in the word of
/// eight that has it (byte `i` of a word is bits `8i..8i + 8`; past the
/// first hit a word may have false ones, the lowest is the one that
/// counts). The last few bytes are read padded with zeros.
#[inline(always)]
fn first_hit(bytes: &[u8], hits: impl Fn(u64) -> u64) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let found = hits(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return None;
    }
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    let found = hits(u64::from_le_bytes(tail));
    (found != 0).then(|| at + (found.trailing_zeros() / 8) as usize)
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

    /// Moves past whitespace. Records rarely have any: the first byte is
    /// tested here, a loop runs only when it is whitespace.
    #[inline]
    fn ws(&mut self) {
        if let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.more_ws();
        }
    }

    #[inline(never)]
    fn more_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// Just after a key's opening quote: whether the key is `name` (which
    /// has no quote or backslash, so its text is the key's unescaped text),
    /// and if so, moves past the closing quote.
    #[inline]
    fn key_here(&mut self, name: &[u8]) -> bool {
        let end = self.pos + name.len();
        let here = self.doc.get(end) == Some(&b'"')
            && same_bytes(&self.doc[self.pos..end], name)
            && !needs_escape(name);
        if here {
            self.pos = end + 1;
        }
        here
    }

    /// After an opening quote: moves past the closing one. Returns whether
    /// the string has escapes.
    fn skip_string_body(&mut self) -> Result<bool, Error> {
        let mut escaped = false;
        loop {
            match find_quote_or_backslash(&self.doc[self.pos.min(self.doc.len())..]) {
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

    /// Moves past one value: whether it is a string with escapes.
    fn skip_value(&mut self, depth: usize) -> Result<bool, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::new("the record is nested too deeply"));
        }
        match self.next() {
            Some(b'"') => self.skip_string_body(),
            Some(open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.ws();
                if self.peek() == Some(close) {
                    self.pos += 1;
                    return Ok(false);
                }
                loop {
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next() {
                        Some(b',' | b':') => {}
                        Some(c) if c == close => return Ok(false),
                        _ => return Err(self.broken()),
                    }
                }
            }
            Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                self.pos += scalar_end(&self.doc[self.pos..]);
                Ok(false)
            }
            _ => Err(self.broken()),
        }
    }
}

/// Deserializes JSON text as `T`, as `serde_json::from_slice` does, with
/// shortcuts for what keyed state and accumulators hold most: a plain
/// integer (`-12`, `1700000001234`), or a flat object of them
/// (`{"count":3,"sum_cents":81234}`), is handed to `T` without serde_json's
/// parser. Anything else, and what `T` does not take that way, goes through
/// serde_json, so that results and errors are serde_json's.
pub(crate) fn from_slice<T: serde::de::DeserializeOwned>(text: &[u8]) -> serde_json::Result<T> {
    let quick = match text.first() {
        Some(b'{') => flat_object(text).and_then(|o| T::deserialize(o).ok()),
        _ => integer(text).and_then(|n| T::deserialize(n).ok()),
    };
    match quick {
        Some(v) => Ok(v),
        None => serde_json::from_slice(text),
    }
}

/// The rest of a quick deserializer ([`Integer`], [`FlatObject`]): an
/// `Option<T>`, a newtype or an enum would read the value differently (or
/// not at all), so they are refused and serde_json decides for them; every
/// other type is offered the value as it is (`deserialize_any`).
macro_rules! refuse_the_rest {
    () => {
        fn deserialize_option<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Declined> {
            Err(Declined)
        }

        fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            _: V,
        ) -> Result<V::Value, Declined> {
            Err(Declined)
        }

        fn deserialize_enum<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            _: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Declined> {
            Err(Declined)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf unit unit_struct seq tuple
            tuple_struct map struct identifier ignored_any
        }
    };
}

/// At most this many members in an object [`from_slice`] reads itself.
const FLAT_MEMBERS: usize = 8;

/// An object of up to [`FLAT_MEMBERS`] members whose names are plain
/// (no escapes, no control characters) and whose values are plain integers
/// (see [`integer`]), with no whitespace: what an accumulator of counters
/// looks like as serde_json writes it.
fn flat_object(text: &[u8]) -> Option<FlatObject<'_>> {
    let mut members = [("", Integer::Unsigned(0)); FLAT_MEMBERS];
    let mut n = 0;
    let mut at = 1;
    if text.get(at) == Some(&b'}') {
        return (text.len() == 2).then_some(FlatObject { members, len: 0 });
    }
    loop {
        if text.get(at) != Some(&b'"') || n == FLAT_MEMBERS {
            return None;
        }
        let name_len = find_quote_or_backslash(&text[at + 1..])?;
        if text.get(at + 1 + name_len) != Some(&b'"') || text.get(at + 2 + name_len) != Some(&b':')
        {
            return None;
        }
        let name = plain_str(&text[at + 1..at + 1 + name_len])?;
        at += 3 + name_len;
        let end = at + find_either(&text[at..], b',', b'}')?;
        members[n] = (name, integer(&text[at..end])?);
        n += 1;
        at = end + 1;
        match text[end] {
            b'}' if at == text.len() => return Some(FlatObject { members, len: n }),
            b',' => {}
            _ => return None,
        }
    }
}

/// A flat object read by [`flat_object`], as a serde deserializer that
/// offers it as a map, member by member, the way serde_json does.
struct FlatObject<'t> {
    members: [(&'t str, Integer); FLAT_MEMBERS],
    len: usize,
}

impl<'de, 't> serde::Deserializer<'de> for FlatObject<'t> {
    type Error = Declined;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Declined> {
        v.visit_map(Members {
            members: &self.members[..self.len],
            next: 0,
        })
    }

    refuse_the_rest!();
}

struct Members<'m, 't> {
    members: &'m [(&'t str, Integer)],
    next: usize,
}

impl<'de> serde::de::MapAccess<'de> for Members<'_, '_> {
    type Error = Declined;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Declined> {
        let Some(&(name, _)) = self.members.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(serde::de::value::StrDeserializer::<Declined>::new(name))
            .map(Some)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Declined> {
        let (_, value) = self.members[self.next];
        self.next += 1;
        seed.deserialize(value)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len() - self.next)
    }
}

/// A JSON integer in its plain form: an optional minus, then `0` or up to
/// 19 digits without a leading zero (so no overflow), within `i64` when
/// negative. Not `-0`, which serde_json reads as a float. Eight digits at a
/// time: in Wasm every loop turn costs an epoch check.
fn integer(text: &[u8]) -> Option<Integer> {
    let (negative, digits) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && digits.len() > 1) {
        return None;
    }
    let mut n: u64 = 0;
    let mut i = 0;
    while i + 8 <= digits.len() {
        n = n * 100_000_000 + u64::from(eight_digits(word8(digits, i))?);
        i += 8;
    }
    for &d in &digits[i..] {
        let d = d.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    if !negative {
        return Some(Integer::Unsigned(n));
    }
    if n == 0 || n > i64::MIN.unsigned_abs() {
        return None;
    }
    Some(Integer::Signed((n as i64).wrapping_neg()))
}

/// The value of eight ASCII digits read little-endian into `w` (the first
/// digit in the low byte), or `None` if one is not a digit.
fn eight_digits(w: u64) -> Option<u32> {
    const NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    // Each byte is 0x30..=0x39: its high nibble is 3, and adding 6 does
    // not carry into it.
    let digits = (w & NIBBLES) | (((w.wrapping_add(0x0606_0606_0606_0606)) & NIBBLES) >> 4);
    if digits != 0x3333_3333_3333_3333 {
        return None;
    }
    // Pairs, then fours, then all eight (each step multiplies and shifts
    // neighbours together).
    let w = (w & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    let w = (w & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
    Some(((w & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32) as u32)
}

/// An integer read by [`integer`], as a serde deserializer: it offers the
/// value the way serde_json does (`visit_u64` for a non-negative one,
/// `visit_i64` for a negative one).
#[derive(Clone, Copy)]
enum Integer {
    Unsigned(u64),
    Signed(i64),
}

/// Why a quick deserializer ([`Integer`], [`FlatObject`]) could not give a
/// `T`: serde_json then tries (and says).
#[derive(Debug)]
struct Declined;

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not read without serde_json")
    }
}

impl std::error::Error for Declined {}

impl serde::de::Error for Declined {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Declined
    }
}

impl<'de> serde::Deserializer<'de> for Integer {
    type Error = Declined;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Declined> {
        match self {
            Integer::Unsigned(n) => v.visit_u64(n),
            Integer::Signed(n) => v.visit_i64(n),
        }
    }

    refuse_the_rest!();
}

#[cfg(test)]
mod tests {
    use super::field;

    /// `from_slice` gives what serde_json gives (value, or an error with
    /// serde_json's message), whichever way it takes.
    fn same_as_serde_json<T>(text: &str)
    where
        T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let ours = super::from_slice::<T>(text.as_bytes()).map_err(|e| e.to_string());
        let theirs = serde_json::from_slice::<T>(text.as_bytes()).map_err(|e| e.to_string());
        assert_eq!(ours, theirs, "{text:?} as {}", std::any::type_name::<T>());
    }

    #[test]
    fn state_values_decode_as_serde_json_decodes_them() {
        #[derive(serde::Deserialize, PartialEq, Debug)]
        struct Ts(i64);
        #[derive(serde::Deserialize, PartialEq, Debug)]
        enum Unit {
            A,
        }
        #[derive(serde::Deserialize, PartialEq, Debug)]
        struct Acc {
            count: u64,
        }
        #[derive(serde::Deserialize, PartialEq, Debug)]
        #[serde(deny_unknown_fields)]
        struct Pair {
            count: u64,
            sum_cents: i64,
        }
        #[derive(serde::Deserialize, PartialEq, Debug)]
        struct Defaults {
            #[serde(default)]
            count: i32,
            #[serde(rename = "sum")]
            total: Option<i64>,
        }
        let objects = [
            "{}",
            "{\"count\":3}",
            "{\"count\":3,\"sum_cents\":-5}",
            "{\"sum_cents\":-5,\"count\":3}",
            "{\"count\":3,\"count\":4}",
            "{\"count\":\"3\"}",
            "{\"count\":3.5}",
            "{ \"count\":3}",
            "{\"count\":3} ",
            "{\"co\\u0075nt\":3}",
            "{\"count\":3,}",
            "{\"count\":3",
            "{\"count\"3}",
            "{\"count\":[1]}",
            "{\"count\":01}",
            "{\"x\":1}",
            "{\"count\":-0}",
            "{\"sum\":7}",
            "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8}",
            "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"count\":9}",
            "{\"count\":18446744073709551615}",
            "{\"count\":-1}",
            "{\"\u{e9}\":1}",
            "{\"a\\\"\":1}",
            "{\"count\":3}}",
            "{}}",
            "{,}",
            "{\"\":1}",
        ];
        for t in objects {
            same_as_serde_json::<Acc>(t);
            same_as_serde_json::<Pair>(t);
            same_as_serde_json::<Defaults>(t);
            same_as_serde_json::<Option<Acc>>(t);
            same_as_serde_json::<std::collections::BTreeMap<String, i64>>(t);
            same_as_serde_json::<std::collections::HashMap<String, u8>>(t);
            same_as_serde_json::<serde_json::Value>(t);
            same_as_serde_json::<Ts>(t);
            same_as_serde_json::<Unit>(t);
            same_as_serde_json::<i64>(t);
        }
        assert!(super::flat_object(b"{\"count\":3,\"sum_cents\":-5}").is_some());
        assert!(super::flat_object(b"{}").is_some());
        let texts = [
            "0",
            "7",
            "-7",
            "1700000001234",
            "-0",
            "00",
            "01",
            "-",
            "",
            " 1",
            "1 ",
            "1.5",
            "1e3",
            "255",
            "256",
            "-128",
            "-129",
            "4294967296",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "123456789012345678901",
            "null",
            "\"12\"",
            "{\"count\":3}",
            "true",
            "[1]",
            "1a",
            "+1",
        ];
        for t in texts {
            same_as_serde_json::<i64>(t);
            same_as_serde_json::<u64>(t);
            same_as_serde_json::<i32>(t);
            same_as_serde_json::<u8>(t);
            same_as_serde_json::<i8>(t);
            same_as_serde_json::<i128>(t);
            same_as_serde_json::<f64>(t);
            same_as_serde_json::<Option<i64>>(t);
            same_as_serde_json::<String>(t);
            same_as_serde_json::<bool>(t);
            same_as_serde_json::<Ts>(t);
            same_as_serde_json::<Unit>(t);
            same_as_serde_json::<Acc>(t);
            same_as_serde_json::<serde_json::Value>(t);
        }
        // The shortcut is taken where it can be.
        assert!(matches!(
            super::integer(b"-42"),
            Some(super::Integer::Signed(-42))
        ));
        assert!(matches!(
            super::integer(b"42"),
            Some(super::Integer::Unsigned(42))
        ));
        assert!(super::integer(b"-0").is_none() && super::integer(b"042").is_none());
        for n in [
            0u64,
            5,
            12_345_678,
            87_654_321,
            1_700_000_001_234,
            9_999_999_999_999_999_999,
        ] {
            assert!(
                matches!(super::integer(n.to_string().as_bytes()), Some(super::Integer::Unsigned(m)) if m == n)
            );
        }
        // Every byte of an eight-digit block is checked.
        for i in 0..8 {
            for bad in [b'/', b':', b'a', 0x00, 0xb0, b' '] {
                let mut t = *b"12345678";
                t[i] = bad;
                assert_eq!(super::eight_digits(u64::from_le_bytes(t)), None, "{t:?}");
            }
        }
    }

    #[test]
    fn word_helpers_agree_with_byte_loops() {
        let special = [b'"', b'\\', 0x00, 0x1f, 0x7f, b' ', 0xc3, b'a'];
        for n in 0..=24 {
            let base: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(super::same_bytes(&base, &base.clone()));
            assert!(!super::needs_escape(&base), "{base:?}");
            for i in 0..n {
                for &c in &special {
                    let mut other = base.clone();
                    other[i] = c;
                    assert_eq!(super::same_bytes(&base, &other), base == other, "{other:?}");
                    let naive = other.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20);
                    assert_eq!(super::needs_escape(&other), naive, "{other:?}");
                    let ascii = !naive && other.iter().all(|&b| b < 0x80);
                    assert_eq!(super::plain_ascii(&other), ascii, "{other:?}");
                }
            }
            assert!(!super::same_bytes(&base, &base[..n.saturating_sub(1)]) || n == 0);
        }
    }

    #[test]
    fn quotes_and_backslashes_are_found_at_every_offset() {
        for n in 0..=24 {
            for i in 0..n {
                for c in [b'"', b'\\'] {
                    let mut s = vec![b'x'; n];
                    s[i] = c;
                    if i + 1 < n {
                        s[i + 1] = b'"';
                    }
                    assert_eq!(super::find_quote_or_backslash(&s), Some(i), "{s:?}");
                }
            }
            assert_eq!(super::find_quote_or_backslash(&vec![b'x'; n]), None);
            // Any filler, zeros and high bytes among them, and any pair.
            for fill in [0x00, 0x01, b'+', 0x7f, 0x80, 0xff] {
                assert_eq!(super::find_either(&vec![fill; n], b',', b'}'), None);
                for i in 0..n {
                    for c in [b',', b'}'] {
                        let mut s = vec![fill; n];
                        s[i] = c;
                        assert_eq!(super::find_either(&s, b',', b'}'), Some(i), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn numbers_read_as_the_standard_parser_reads_them() {
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "1",
            "-1",
            "0.5",
            "137.52",
            "500.00",
            "0.01",
            "1e5",
            "1E-5",
            "2.5e+3",
            "123456789012345",
            "1234567890123456789",
            "12345678901234567890123",
            "0.1234567890123456789",
            "9007199254740993",
            "1e22",
            "1e23",
            "1e-22",
            "1e-23",
            "4.9e-324",
            "1.7976931348623157e308",
            "-1e-400",
            "100000000000000000000000e-10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Amounts with cents (every one the benchmark data can have, in
        // steps), and the same digits scaled.
        let mut amounts = Vec::new();
        for cents in (1..=50_000).step_by(7) {
            amounts.push(format!("{}.{:02}", cents / 100, cents % 100));
            cases.push(format!("-{}.{:03}e1", cents / 100, cents % 1000));
        }
        for c in cases.iter().chain(&amounts) {
            let want: f64 = c.parse().unwrap();
            let got = super::number(c.as_bytes()).unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{c}");
        }
        // serde_json reads such short decimals exactly too (others it reads
        // best-effort, sometimes a unit in the last place off), so a field
        // read either way has the same value.
        for c in &amounts {
            let serde: f64 = serde_json::from_str(c).unwrap();
            assert_eq!(super::number(c.as_bytes()), Some(serde), "{c}");
        }
        for bad in [
            "1e400", "-2e308", "", "-", "01", "1.", ".5", "+1", "1e", "1e+", "1x", "nan", "inf",
            " 1", "1 ", "--1", "0x1",
        ] {
            assert_eq!(super::number(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn objects_are_written_as_serde_json_writes_them() {
        let strings = [
            "",
            "a",
            "o-123456",
            "q\"uote",
            "back\\slash",
            "tab\t",
            "\u{1}",
            "\u{7f}",
            "é😀",
            "a longer string with no escapes",
        ];
        let floats = [
            0.0,
            -0.0,
            1.0,
            250.0,
            151.27200000000002,
            1e21,
            1e-7,
            f64::MAX,
            f64::NAN,
            f64::NEG_INFINITY,
        ];
        let json = |v: &dyn erased::Json| v.text();
        for s in strings {
            for f in floats {
                let mut buf = Vec::new();
                let mut o = super::ObjectWriter::open(&mut buf);
                o.str(s, s).f64("f", f).i64("i", i64::MIN).bool("b", false);
                o.json("j", &[1, 2]).unwrap();
                o.i64("max", i64::MAX)
                    .i64("zero", 0)
                    .raw("r", br#"{"a":[1]}"#);
                o.close();
                let want = format!(
                    "{{{}:{},\"f\":{},\"i\":{},\"b\":false,\"j\":[1,2],\"max\":9223372036854775807,\"zero\":0,\"r\":{{\"a\":[1]}}}}",
                    json(&s),
                    json(&s),
                    json(&f),
                    json(&i64::MIN)
                );
                assert_eq!(String::from_utf8(buf).unwrap(), want);
            }
        }
    }

    mod erased {
        /// serde_json's text of a value, behind a trait object.
        pub trait Json {
            fn text(&self) -> String;
        }
        impl<T: serde::Serialize> Json for T {
            fn text(&self) -> String {
                serde_json::to_string(self).unwrap()
            }
        }
    }

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
    fn keys_compared_in_place_are_whole_unescaped_keys() {
        // A name that is the start of a longer key, or a key that is the
        // start of a name, is not that key.
        let doc = br#"{"amount_usd":1,"amount":2,"am":3}"#;
        let [amount, am] = super::fields(doc, ["amount", "am"]).unwrap();
        assert_eq!((amount, am), (Some(&b"2"[..]), Some(&b"3"[..])));
        // A name with a quote in it matches the bytes of two members, never
        // a key; a name with escapes matches a key written with them.
        let doc = br#"{"a":1,"b":2,"a\"b":3}"#;
        let [odd, b] = super::fields(doc, [r#"a":1,"b"#, "b"]).unwrap();
        assert_eq!((odd, b), (None, Some(&b"2"[..])));
        let [quoted] = super::fields(doc, ["a\"b"]).unwrap();
        assert_eq!(quoted, Some(&b"3"[..]));
        let [tab] = super::fields(br#"{"x\ty":4}"#, ["x\ty"]).unwrap();
        assert_eq!(tab, Some(&b"4"[..]));
        // The expected name first, then a miss that falls back to the scan.
        let doc = br#"{"b":1,"a":2,"c":3}"#;
        let [a, b, c] = super::fields(doc, ["a", "b", "c"]).unwrap();
        assert_eq!(
            (a, b, c),
            (Some(&b"2"[..]), Some(&b"1"[..]), Some(&b"3"[..]))
        );
    }

    #[test]
    fn scalars_end_where_json_ends_them() {
        for n in 0..=24 {
            let digits = vec![b'7'; n];
            assert_eq!(super::scalar_end(&digits), n);
            for i in 0..n {
                for c in [b',', b'}', b']', b' ', b'\n', b'\r', b'\t', 0x00] {
                    let mut s = digits.clone();
                    s[i] = c;
                    assert_eq!(super::scalar_end(&s), i, "{s:?}");
                }
                // Bytes of numbers and literals, and high bytes, do not end one.
                for c in [b'.', b'-', b'+', b'e', b'E', b'a', b'u', 0x7f, 0x80, 0xff] {
                    let mut s = digits.clone();
                    s[i] = c;
                    assert_eq!(super::scalar_end(&s), n, "{s:?}");
                }
            }
        }
        let doc = b"{\"a\":1.5e3 ,\"b\":true\n}";
        assert_eq!(field(doc, "a").unwrap(), Some(&b"1.5e3"[..]));
        assert_eq!(field(doc, "b").unwrap(), Some(&b"true"[..]));
        assert_eq!(
            field(b"[-1]", "a").unwrap_err().to_string(),
            "the record is not a JSON object"
        );
        assert!(field(b"{\"a\":12", "b").is_err());
    }

    #[test]
    fn fields_check_their_own_text_only() {
        // Invalid UTF-8 in a field that is not read costs nothing; in one
        // that is read, it is that field's error.
        let doc = b"{\"a\":\"ok\",\"b\":\"\xff\",\"c\":\"caf\xc3\xa9\"}";
        let [a, b, c] = super::named_fields(doc, ["a", "b", "c"]).unwrap();
        assert_eq!(a.str().unwrap(), "ok");
        assert_eq!(c.str().unwrap(), "café");
        assert_eq!(c.get::<&str>().unwrap(), "café");
        let err = b.str().unwrap_err().to_string();
        assert!(err.starts_with("field \"b\" is not UTF-8"), "{err}");
        assert!(b.get::<&str>().is_err());
        let [a] = super::named_fields(b"{\"a\":\"x\\u00e9\"}", ["a"]).unwrap();
        assert_eq!(a.str().unwrap(), "xé");
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
