//! JSON as the host sees it: check that a record is one JSON document, find
//! values in it by JSON pointer (RFC 6901) without building a tree, read
//! numbers out of them, and write JSON output.
//!
//! The host never materialises records as `serde_json::Value`: a source
//! validates each line once while it looks for the event-time field, a key-by
//! looks for the key field, and both get the raw bytes of the value they
//! asked for. Operators in Wasm parse what they need themselves.
//!
//! What this module does not do: decode whole documents (that is the
//! guest's business) or parse non-JSON formats.

use std::borrow::Borrow;
use std::fmt;

/// Deepest nesting accepted; deeper documents are rejected rather than
/// risking the stack.
const MAX_DEPTH: usize = 128;

/// A JSON pointer such as `/customer_id` or `/payload/items/0/sku`.
#[derive(Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    segments: Vec<Vec<u8>>,
}

impl Pointer {
    /// Parses RFC 6901 text: `""` is the whole document, otherwise
    /// `/`-separated segments with `~1` for `/` and `~0` for `~`.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Ok(Pointer {
                text: String::new(),
                segments: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "`{text}` is not a JSON pointer: it must start with `/` (for example `/{text}`)"
            ));
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            let mut seg = Vec::with_capacity(raw.len());
            let mut chars = raw.bytes();
            while let Some(b) = chars.next() {
                if b == b'~' {
                    match chars.next() {
                        Some(b'0') => seg.push(b'~'),
                        Some(b'1') => seg.push(b'/'),
                        _ => {
                            return Err(format!(
                                "`{text}` is not a JSON pointer: `~` must be followed by 0 or 1"
                            ));
                        }
                    }
                } else {
                    seg.push(b);
                }
            }
            segments.push(seg);
        }
        Ok(Pointer {
            text: text.to_owned(),
            segments,
        })
    }

    /// The pointer to the top-level member `name`.
    pub fn member(name: &[u8]) -> Pointer {
        let name_text = String::from_utf8_lossy(name);
        Pointer {
            text: format!("/{}", name_text.replace('~', "~0").replace('/', "~1")),
            segments: vec![name.to_vec()],
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The last segment as text: the natural output field name for a key
    /// taken from this pointer.
    pub fn last_name(&self) -> Option<&str> {
        self.segments
            .last()
            .and_then(|s| std::str::from_utf8(s).ok())
    }
}

impl fmt::Debug for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pointer({:?})", self.text)
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a document is not valid JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset in the document.
    pub offset: usize,
    pub message: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for JsonError {}

/// Checks that `doc` is exactly one JSON value (whitespace around it allowed).
pub fn validate(doc: &[u8]) -> Result<(), JsonError> {
    find_many(doc, &[], &mut [])
}

/// Validates `doc` and returns the raw text of the value at `pointer`, if
/// present (the first one, should an object repeat a key).
pub fn find<'a>(doc: &'a [u8], pointer: &Pointer) -> Result<Option<&'a [u8]>, JsonError> {
    let mut out = [None];
    find_many(doc, &[pointer], &mut out)?;
    Ok(out[0])
}

/// Validates `doc` and stores in `found[i]` the raw text of the value at
/// `pointers[i]` (or `None`). One pass over the document for all pointers.
pub fn find_many<'a>(
    doc: &'a [u8],
    pointers: &[&Pointer],
    found: &mut [Option<&'a [u8]>],
) -> Result<(), JsonError> {
    scan(doc, pointers, found, false)
}

/// [`find_many`] for a stream of documents that look alike, as a source's
/// records do: the top-level keys of the last document, each with the text
/// from its opening quote to its colon, are remembered in order, and a
/// document whose member `i` starts with the same text has that key taken as
/// read — it is that string, checked before — without scanning it again.
/// Everything else is checked as [`find_many`] checks it, and the results
/// are the same.
pub struct Checker {
    pointers: Vec<Pointer>,
    shape: Vec<KnownKey>,
}

/// A top-level key [`Checker`] has seen: `"key":` as it was written, and
/// which pointers go on (or end) below it.
struct KnownKey {
    text: Vec<u8>,
    child: u64,
}

/// At most this many top-level keys, of at most [`KNOWN_KEY_LEN`] bytes
/// with their quotes and colon, are remembered.
const KNOWN_KEYS: usize = 32;
const KNOWN_KEY_LEN: usize = 64;

impl Checker {
    /// A checker that finds `pointers` (at most 64).
    pub fn new(pointers: Vec<Pointer>) -> Checker {
        assert!(pointers.len() <= 64, "at most 64 pointers");
        Checker {
            pointers,
            shape: Vec::new(),
        }
    }

    /// Validates `doc` and stores in `found[i]` the raw text of the value at
    /// pointer `i` (or `None`), as [`find_many`] does.
    pub fn find<'a>(
        &mut self,
        doc: &'a [u8],
        found: &mut [Option<&'a [u8]>],
    ) -> Result<(), JsonError> {
        scan_with(doc, &self.pointers, found, false, Some(&mut self.shape))
    }
}

/// Like [`find`], but stops reading as soon as the value is found: the rest
/// of the document is not checked. For records the pipeline has already
/// validated (sources check JSON as records enter), where only the key is
/// wanted.
pub fn find_fast<'a>(doc: &'a [u8], pointer: &Pointer) -> Result<Option<&'a [u8]>, JsonError> {
    let mut out = [None];
    find_many_fast(doc, &[pointer], &mut out)?;
    Ok(out[0])
}

/// [`find_many`] with an early exit. One-segment pointers into an object —
/// the common case — are skimmed for: the values before them are stepped
/// over by their quotes, escapes and brackets, not checked (the values
/// found are), so a document invalid before them may give values here
/// that [`find_many`] would refuse; whoever needs a record checked checks
/// it whole.
pub fn find_many_fast<'a, P: Borrow<Pointer>>(
    doc: &'a [u8],
    pointers: &[P],
    found: &mut [Option<&'a [u8]>],
) -> Result<(), JsonError> {
    if pointers.iter().all(|p| p.borrow().segments.len() == 1)
        && skim(doc, pointers, found).is_some()
    {
        return Ok(());
    }
    scan(doc, pointers, found, true)
}

/// `n` copies of a value, on the stack when `n <= N`: the found values of a
/// lookup made for every record, without an allocation.
pub struct Slots<T: Copy, const N: usize> {
    stack: [T; N],
    heap: Vec<T>,
    n: usize,
}

impl<T: Copy, const N: usize> Slots<T, N> {
    #[inline]
    pub fn new(value: T, n: usize) -> Self {
        Slots {
            stack: [value; N],
            heap: if n > N { vec![value; n] } else { Vec::new() },
            n,
        }
    }

    #[inline]
    pub fn slice(&mut self) -> &mut [T] {
        if self.n <= N {
            &mut self.stack[..self.n]
        } else {
            &mut self.heap
        }
    }
}

/// A member's value, as [`find_members`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    /// Its JSON text.
    pub raw: &'a [u8],
    /// A string without escapes: its contents (checked UTF-8, as the whole
    /// document is).
    pub text: Option<&'a [u8]>,
}

/// Validates `doc` and stores in `found[i]` the raw text of the member
/// `names[i]` of the top-level object (the first one, should the object
/// repeat it), or `None` — all `None` when the document is not an object.
/// What [`find_many`] does for one-segment pointers, faster for flat
/// records: each member name is compared first with the name after the last
/// one found, since records of one source keep their fields in one order.
/// `names` must be distinct.
pub fn find_members<'a, N: AsRef<[u8]>>(
    doc: &'a [u8],
    names: &[N],
    found: &mut [Option<Member<'a>>],
) -> Result<(), JsonError> {
    assert_eq!(names.len(), found.len());
    found.iter_mut().for_each(|f| *f = None);
    let mut s = Scanner::<&Pointer> {
        doc,
        pos: 0,
        pointers: &[],
        found: &mut [],
        missing: 0,
        stop_when_found: false,
        shape: None,
    };
    s.skip_ws();
    if s.peek() != Some(b'{') {
        return validate(doc);
    }
    let halt = |h: Halt| match h {
        Halt::Invalid(e) => e,
        Halt::AllFound => unreachable!("nothing is looked for"),
    };
    s.pos += 1;
    s.skip_ws();
    let mut guess = 0;
    if s.peek() == Some(b'}') {
        s.pos += 1;
    } else {
        loop {
            if s.peek() != Some(b'"') {
                return Err(s.error("expected a string key"));
            }
            let (key, escaped) = s.string().map_err(halt)?;
            let decoded;
            let key = if escaped {
                let mut out = Vec::with_capacity(key.len());
                unescape_into(key, &mut out);
                decoded = out;
                &decoded[..]
            } else {
                key
            };
            let slot = match names.get(guess) {
                Some(n) if same(n.as_ref(), key) => Some(guess),
                _ => names.iter().position(|n| same(n.as_ref(), key)),
            };
            s.colon().map_err(halt)?;
            let start = s.pos;
            let text = if s.peek() == Some(b'"') {
                let (inner, escaped) = s.string().map_err(halt)?;
                (!escaped).then_some(inner)
            } else {
                s.value(0, 1).map_err(halt)?;
                None
            };
            if let Some(i) = slot {
                if found[i].is_none() {
                    found[i] = Some(Member {
                        raw: &doc[start..s.pos],
                        text,
                    });
                }
                guess = i + 1;
            }
            if !s.member_end().map_err(halt)? {
                break;
            }
        }
    }
    s.skip_ws();
    if s.pos != doc.len() {
        return Err(s.error("unexpected text after the JSON value"));
    }
    Ok(())
}

/// Where a member's value is in its object: `start..end`, and whether it is
/// a string with escapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    pub start: usize,
    pub end: usize,
    pub escaped: bool,
}

/// Finds the members `names` of the object `doc` for a module's projection
/// (the `fields` import): `out[i]` is where the value of the first member
/// named `names[i]` is, or `None`. Values are stepped over by their quotes,
/// escapes and brackets, not checked, and the scan stops when every name is
/// found — what the Rust SDK's own field scan does, so the two agree on
/// every valid document. `false` (and `out` unspecified) when `doc` is not
/// an object, a member name before the last one found has escapes, or the
/// text breaks before every name is found: the module then reads the record
/// itself. `names` must be distinct and hold no `"`, `\\` or control
/// character.
pub fn locate_members(doc: &[u8], names: &[Box<[u8]>], out: &mut [Option<Located>]) -> bool {
    out.fill(None);
    let mut missing = names.len();
    let mut pos = skip_ws(doc, 0);
    if doc.get(pos) != Some(&b'{') {
        return false;
    }
    pos = skip_ws(doc, pos + 1);
    if doc.get(pos) == Some(&b'}') || missing == 0 {
        return true;
    }
    // The name looked for first: the one after the last found, since the
    // records of one source keep their members in one order.
    let mut next = 0;
    loop {
        if doc.get(pos) != Some(&b'"') {
            return false;
        }
        pos += 1;
        let expected = names.get(next).filter(|_| out[next].is_none());
        let hit = match expected {
            Some(n)
                if doc.get(pos + n.len()) == Some(&b'"') && same(&doc[pos..pos + n.len()], n) =>
            {
                pos += n.len() + 1;
                Some(next)
            }
            _ => {
                let key_start = pos;
                match step_string(doc, pos - 1) {
                    Some((end, false)) => pos = end,
                    // A name with escapes is left to the module.
                    Some((_, true)) | None => return false,
                }
                let key = &doc[key_start..pos - 1];
                (0..names.len()).find(|&i| out[i].is_none() && same(&names[i], key))
            }
        };
        pos = skip_ws(doc, pos);
        if doc.get(pos) != Some(&b':') {
            return false;
        }
        pos = skip_ws(doc, pos + 1);
        let start = pos;
        let Some((end, escaped)) = step_value(doc, pos) else {
            return false;
        };
        pos = end;
        if let Some(i) = hit {
            out[i] = Some(Located {
                start,
                end,
                escaped,
            });
            missing -= 1;
            if missing == 0 {
                return true;
            }
            next = i + 1;
        }
        pos = skip_ws(doc, pos);
        match doc.get(pos) {
            Some(b',') => pos = skip_ws(doc, pos + 1),
            Some(b'}') => return true,
            _ => return false,
        }
    }
}

#[inline]
fn skip_ws(doc: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = doc.get(pos) {
        pos += 1;
    }
    pos
}

/// Past the string whose opening quote is at `pos`, and whether it has
/// escapes; `None` when it does not end.
#[inline]
fn step_string(doc: &[u8], mut pos: usize) -> Option<(usize, bool)> {
    pos += 1;
    let mut escaped = false;
    loop {
        pos = next_flagged(doc, pos, |w| has_byte(w, b'"') | has_byte(w, b'\\'));
        match doc.get(pos)? {
            b'"' => return Some((pos + 1, escaped)),
            b'\\' => {
                escaped = true;
                pos += 2;
            }
            _ => pos += 1,
        }
    }
}

/// Past the value that starts at `pos` (stepped over, not checked), and
/// whether it is a string with escapes; `None` when it does not end.
#[inline(always)]
fn step_value(doc: &[u8], mut pos: usize) -> Option<(usize, bool)> {
    match *doc.get(pos)? {
        b'"' => step_string(doc, pos),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match *doc.get(pos)? {
                    b'"' => {
                        pos = step_string(doc, pos)?.0;
                        continue;
                    }
                    // As deep as the SDK's scan steps (it refuses deeper).
                    b'{' | b'[' if depth > MAX_DEPTH => return None,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => depth -= 1,
                    _ => {}
                }
                pos += 1;
                if depth == 0 {
                    return Some((pos, false));
                }
            }
        }
        b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
            // A number or literal ends at a delimiter, whitespace or a
            // control character.
            let start = pos;
            while let Some(&b) = doc.get(pos) {
                if matches!(b, b',' | b'}' | b']') || b <= b' ' {
                    break;
                }
                pos += 1;
            }
            (pos > start).then_some((pos, false))
        }
        _ => None,
    }
}

/// The members of the object `doc` that one-segment `pointers` name into
/// `found`, skimmed: `None` when the skim meets something it does not
/// expect (the caller then reads properly).
fn skim<'a, P: Borrow<Pointer>>(
    doc: &'a [u8],
    pointers: &[P],
    found: &mut [Option<&'a [u8]>],
) -> Option<()> {
    found.iter_mut().for_each(|f| *f = None);
    let mut missing = pointers.len();
    let mut pos = skip_ws(doc, 0);
    if doc.get(pos) != Some(&b'{') {
        return None;
    }
    pos = skip_ws(doc, pos + 1);
    if doc.get(pos) == Some(&b'}') || missing == 0 {
        return Some(());
    }
    loop {
        if doc.get(pos) != Some(&b'"') {
            return None;
        }
        let key_start = pos + 1;
        let escaped;
        (pos, escaped) = step_string(doc, pos)?;
        let key = &doc[key_start..pos - 1];
        pos = skip_ws(doc, pos);
        if doc.get(pos) != Some(&b':') {
            return None;
        }
        pos = skip_ws(doc, pos + 1);
        let start = pos;
        pos = step_value(doc, pos)?.0;
        for (p, f) in pointers.iter().zip(found.iter_mut()) {
            if f.is_none() && key_matches(key, escaped, &p.borrow().segments[0]) {
                // What is handed out is checked: a record a module wrote
                // may not be JSON, and its key must not pass on as if.
                let value = &doc[start..pos];
                if !is_value(value) {
                    return None;
                }
                *f = Some(value);
                missing -= 1;
            }
        }
        if missing == 0 {
            return Some(());
        }
        pos = skip_ws(doc, pos);
        match doc.get(pos)? {
            b',' => pos = skip_ws(doc, pos + 1),
            b'}' => return Some(()),
            _ => return None,
        }
    }
}

/// Whether `v` is one JSON value: plain ASCII strings and integers (what
/// keys mostly are) at a glance, anything else by [`validate`].
fn is_value(v: &[u8]) -> bool {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    match v {
        [b'"', inner @ .., b'"']
            if inner
                .iter()
                .all(|&b| (0x20..0x80).contains(&b) && b != b'"' && b != b'\\') =>
        {
            true
        }
        _ if !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && (digits[0] != b'0' || digits.len() == 1) =>
        {
            true
        }
        _ => validate(v).is_ok(),
    }
}

/// Byte equality of short slices without a call to `memcmp`: up to 16
/// bytes as two words that overlap. Names, keys and member texts are mostly
/// that short, and a call costs more than the comparison.
#[inline]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    match n {
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

fn scan<'a, P: Borrow<Pointer>>(
    doc: &'a [u8],
    pointers: &[P],
    found: &mut [Option<&'a [u8]>],
    stop_when_found: bool,
) -> Result<(), JsonError> {
    scan_with(doc, pointers, found, stop_when_found, None)
}

fn scan_with<'a, P: Borrow<Pointer>>(
    doc: &'a [u8],
    pointers: &[P],
    found: &mut [Option<&'a [u8]>],
    stop_when_found: bool,
    shape: Option<&mut Vec<KnownKey>>,
) -> Result<(), JsonError> {
    assert!(pointers.len() <= 64 && found.len() == pointers.len());
    found.iter_mut().for_each(|f| *f = None);
    let mut s = Scanner {
        doc,
        pos: 0,
        pointers,
        found,
        missing: pointers.len(),
        stop_when_found,
        shape,
    };
    s.skip_ws();
    let all = if pointers.len() == 64 {
        u64::MAX
    } else {
        (1u64 << pointers.len()) - 1
    };
    match s.value(all, 0) {
        Ok(()) => {}
        Err(Halt::AllFound) => return Ok(()),
        Err(Halt::Invalid(e)) => return Err(e),
    }
    s.skip_ws();
    if s.pos != doc.len() {
        return Err(s.error("unexpected text after the JSON value"));
    }
    Ok(())
}

/// Why scanning stopped early.
enum Halt {
    Invalid(JsonError),
    /// Every pointer was found and the caller wants no more.
    AllFound,
}

struct Scanner<'a, 'p, 'f, P = &'p Pointer> {
    doc: &'a [u8],
    pos: usize,
    pointers: &'p [P],
    found: &'f mut [Option<&'a [u8]>],
    missing: usize,
    stop_when_found: bool,
    /// The top-level keys of the document before, learnt anew from this
    /// one (see [`Checker`]).
    shape: Option<&'f mut Vec<KnownKey>>,
}

impl<'a, P: Borrow<Pointer>> Scanner<'a, '_, '_, P> {
    fn error(&self, message: &'static str) -> JsonError {
        JsonError {
            offset: self.pos,
            message,
        }
    }

    fn err<T>(&self, message: &'static str) -> Result<T, Halt> {
        Err(Halt::Invalid(self.error(message)))
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.doc.get(self.pos).copied()
    }

    /// Past whitespace. Records rarely have any between their tokens: one
    /// byte is tested here, the loop is taken only when it is whitespace.
    #[inline]
    fn skip_ws(&mut self) {
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

    /// Parses one value. `live` holds the pointers whose segments matched the
    /// path so far, `depth` is the number of segments matched.
    fn value(&mut self, live: u64, depth: usize) -> Result<(), Halt> {
        let start = self.pos;
        let mut descend = 0u64;
        if live != 0 {
            for i in 0..self.pointers.len() {
                if live & (1 << i) != 0 {
                    if self.pointers[i].borrow().segments.len() == depth {
                        // This value is the target of pointer i; record it below.
                    } else {
                        descend |= 1 << i;
                    }
                }
            }
        }
        if depth > MAX_DEPTH {
            return self.err("nested too deeply");
        }
        match self.peek() {
            Some(b'{') => self.object(descend, depth)?,
            Some(b'[') => self.array(descend, depth)?,
            Some(b'"') => {
                self.string()?;
            }
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(b't') => self.literal(b"true")?,
            Some(b'f') => self.literal(b"false")?,
            Some(b'n') => self.literal(b"null")?,
            Some(_) => return self.err("expected a JSON value"),
            None => return self.err("unexpected end of input, expected a JSON value"),
        }
        let targets = live & !descend;
        if targets != 0 {
            for i in 0..self.pointers.len() {
                if targets & (1 << i) != 0 && self.found[i].is_none() {
                    self.found[i] = Some(&self.doc[start..self.pos]);
                    self.missing -= 1;
                }
            }
            if self.missing == 0 && self.stop_when_found {
                return Err(Halt::AllFound);
            }
        }
        Ok(())
    }

    fn object(&mut self, live: u64, depth: usize) -> Result<(), Halt> {
        self.pos += 1; // '{'
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            let child = match self.known_key(depth, index) {
                Some(child) => child,
                None => self.key(live, depth, index)?,
            };
            self.value(child, depth + 1)?;
            if !self.member_end()? {
                return Ok(());
            }
            index += 1;
        }
    }

    /// Member `index` of the top-level object, when its key is written as
    /// the last document's was: past the key and its colon, and which
    /// pointers go on below it.
    #[inline]
    fn known_key(&mut self, depth: usize, index: usize) -> Option<u64> {
        if depth != 0 {
            return None;
        }
        let known = self.shape.as_ref()?.get(index)?;
        let text = self.doc.get(self.pos..self.pos + known.text.len())?;
        if !same(text, &known.text) {
            return None;
        }
        let child = known.child;
        self.pos += text.len();
        self.skip_ws();
        Some(child)
    }

    /// Reads an object member's key and the colon after it: which pointers
    /// go on below it. A top-level key is remembered (see [`Checker`]).
    fn key(&mut self, live: u64, depth: usize, index: usize) -> Result<u64, Halt> {
        if self.peek() != Some(b'"') {
            return self.err("expected a string key");
        }
        let start = self.pos;
        let (key, escaped) = self.string()?;
        let mut child = 0u64;
        if live != 0 {
            for i in 0..self.pointers.len() {
                if live & (1 << i) != 0
                    && key_matches(key, escaped, &self.pointers[i].borrow().segments[depth])
                {
                    child |= 1 << i;
                }
            }
        }
        // Remembered as `"key":` with nothing between, as records are mostly
        // written.
        if depth == 0
            && self.peek() == Some(b':')
            && let Some(shape) = self.shape.as_deref_mut()
            && index <= shape.len()
            && index < KNOWN_KEYS
            && self.pos + 1 - start <= KNOWN_KEY_LEN
        {
            let text = &self.doc[start..self.pos + 1];
            match shape.get_mut(index) {
                Some(known) => {
                    known.text.clear();
                    known.text.extend_from_slice(text);
                    known.child = child;
                }
                None => shape.push(KnownKey {
                    text: text.to_vec(),
                    child,
                }),
            }
        }
        self.colon()?;
        Ok(child)
    }

    /// Past the `:` after an object's key, and the whitespace around it.
    fn colon(&mut self) -> Result<(), Halt> {
        self.skip_ws();
        if self.peek() != Some(b':') {
            return self.err("expected `:` after an object key");
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    /// Past what ends an object's member: `,` (true: another follows) or
    /// `}` (false).
    fn member_end(&mut self) -> Result<bool, Halt> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.skip_ws();
                Ok(true)
            }
            Some(b'}') => {
                self.pos += 1;
                Ok(false)
            }
            _ => self.err("expected `,` or `}` in an object"),
        }
    }

    fn array(&mut self, live: u64, depth: usize) -> Result<(), Halt> {
        self.pos += 1; // '['
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        let mut index = 0usize;
        loop {
            let mut child = 0u64;
            if live != 0 {
                for i in 0..self.pointers.len() {
                    if live & (1 << i) != 0
                        && index_matches(index, &self.pointers[i].borrow().segments[depth])
                    {
                        child |= 1 << i;
                    }
                }
            }
            self.value(child, depth + 1)?;
            index += 1;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.err("expected `,` or `]` in an array"),
            }
        }
    }

    /// Parses a string starting at `"`; returns its raw contents (between the
    /// quotes) and whether it contains escapes. Checks escapes, control
    /// characters and UTF-8 (JSON text outside strings is ASCII, so this is
    /// where non-ASCII bytes are checked).
    fn string(&mut self) -> Result<(&'a [u8], bool), Halt> {
        self.pos += 1; // opening quote
        let start = self.pos;
        let mut escaped = false;
        loop {
            // Eight bytes at a time until a quote, a backslash, a control
            // character or a non-ASCII byte.
            self.pos = next_flagged(self.doc, self.pos, |w| {
                has_byte(w, b'"') | has_byte(w, b'\\') | has_control(w) | (w & HIGH)
            });
            match self.peek() {
                Some(b'"') => {
                    let raw = &self.doc[start..self.pos];
                    self.pos += 1;
                    return Ok((raw, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            self.pos += 1;
                            for _ in 0..4 {
                                match self.peek() {
                                    Some(h) if h.is_ascii_hexdigit() => self.pos += 1,
                                    _ => return self.err("expected 4 hex digits after `\\u`"),
                                }
                            }
                        }
                        _ => return self.err("invalid escape in a string"),
                    }
                }
                Some(b) if b >= 0x80 => {
                    let width = match b {
                        0xC2..=0xDF => 2,
                        0xE0..=0xEF => 3,
                        0xF0..=0xF4 => 4,
                        _ => return self.err("not UTF-8"),
                    };
                    match self.doc.get(self.pos..self.pos + width) {
                        Some(c) if std::str::from_utf8(c).is_ok() => self.pos += width,
                        _ => return self.err("not UTF-8"),
                    }
                }
                Some(b) if b < 0x20 => return self.err("control character in a string"),
                Some(_) => self.pos += 1,
                None => return self.err("unterminated string"),
            }
        }
    }

    fn number(&mut self) -> Result<(), Halt> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return self.err("expected a digit"),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.err("expected a digit after `.`");
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.err("expected a digit in the exponent");
            }
            self.digits();
        }
        Ok(())
    }

    /// Past a run of digits: eight bytes at a time (an epoch-millisecond
    /// timestamp is two words), the last few one by one.
    #[inline]
    fn digits(&mut self) {
        self.pos = next_flagged(self.doc, self.pos, not_digit);
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), Halt> {
        if self.doc[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.err("expected `true`, `false` or `null`")
        }
    }
}

/// Steps from `i` eight bytes at a time while `flags` (a high bit per byte
/// of interest, exact for the lowest) flags none: the index of the first
/// flagged byte, or where fewer than eight bytes are left.
#[inline]
fn next_flagged(s: &[u8], mut i: usize, flags: impl Fn(u64) -> u64) -> usize {
    while let Some(chunk) = s.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let f = flags(w);
        if f != 0 {
            return i + (f.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// A high bit in each byte of `w` equal to `b` (exact for the lowest one,
/// which is the one used).
#[inline]
fn has_byte(w: u64, b: u8) -> u64 {
    let x = w ^ (LOW * b as u64);
    x.wrapping_sub(LOW) & !x & HIGH
}

/// A high bit in each byte of `w` below 0x20 (exact for the lowest one).
#[inline]
fn has_control(w: u64) -> u64 {
    w.wrapping_sub(LOW * 0x20) & !w & HIGH
}

/// A high bit in each byte of `w` that is not an ASCII digit (exact for
/// the lowest one: below `0`, above `9`, or not ASCII).
#[inline]
fn not_digit(w: u64) -> u64 {
    let below = w.wrapping_sub(LOW * u64::from(b'0')) & !w;
    // Adding 0x46 lifts an ASCII byte above `9` past 0x7f, and no ASCII
    // byte carries into the next; a non-ASCII byte is flagged by `w` itself.
    let above = w.wrapping_add(LOW * (0x7f - u64::from(b'9'))) | w;
    (below | above) & HIGH
}

#[inline]
fn key_matches(raw: &[u8], escaped: bool, segment: &[u8]) -> bool {
    if !escaped {
        return same(raw, segment);
    }
    escaped_key_matches(raw, segment)
}

#[inline(never)]
fn escaped_key_matches(raw: &[u8], segment: &[u8]) -> bool {
    let mut decoded = Vec::with_capacity(raw.len());
    unescape_into(raw, &mut decoded);
    decoded == segment
}

fn index_matches(index: usize, segment: &[u8]) -> bool {
    // RFC 6901: array indices are decimal without leading zeros.
    if segment.is_empty() || (segment.len() > 1 && segment[0] == b'0') {
        return false;
    }
    let mut n = 0usize;
    for &b in segment {
        if !b.is_ascii_digit() {
            return false;
        }
        n = match n
            .checked_mul(10)
            .and_then(|n| n.checked_add((b - b'0') as usize))
        {
            Some(n) => n,
            None => return false,
        };
    }
    n == index
}

/// Decodes the contents of a valid JSON string (without quotes) into UTF-8.
pub fn unescape_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let e = raw[i + 1];
        i += 2;
        let c = match e {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hex = |s: &[u8]| {
                    std::str::from_utf8(s)
                        .ok()
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .unwrap_or(0xFFFD)
                };
                let mut cp = hex(&raw[i..i + 4]);
                i += 4;
                if (0xD800..0xDC00).contains(&cp)
                    && raw.get(i) == Some(&b'\\')
                    && raw.get(i + 1) == Some(&b'u')
                {
                    let lo = hex(&raw[i + 2..i + 6]);
                    if (0xDC00..0xE000).contains(&lo) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        i += 6;
                    }
                }
                let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            other => other, // '"', '\\', '/'
        };
        out.push(c);
    }
}

/// Reads an integer from the raw text of a JSON value: a number without a
/// fraction (or with a zero one, `12.0`), or a string holding such a number.
pub fn parse_i64(raw: &[u8]) -> Option<i64> {
    let text = match raw {
        [b'"', inner @ .., b'"'] => inner,
        _ => raw,
    };
    if let Some(v) = parse_integer(text) {
        return Some(v);
    }
    let s = std::str::from_utf8(text).ok()?;
    if let Ok(v) = s.parse::<i64>() {
        return Some(v);
    }
    let f = s.parse::<f64>().ok()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15).then_some(f as i64)
}

/// A plain decimal integer (`-` and up to 18 digits), the common case read
/// without the standard library's general parser; `None` for anything else.
#[inline]
pub fn parse_integer(text: &[u8]) -> Option<i64> {
    let (neg, digits) = match text {
        [b'-', d @ ..] => (true, d),
        d => (false, d),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits.iter().fold(0i64, |v, b| v * 10 + (b - b'0') as i64);
    Some(if neg { -v } else { v })
}

/// The integer that the JSON text `text` is, if it is one integer in the
/// range of u64 (RFC 8259: no sign, no leading zero, no fraction or
/// exponent; whitespace around it allowed), as serde_json reads a `u64`.
pub fn exact_u64(text: &[u8]) -> Option<u64> {
    digits_u64(trim_json_ws(text))
}

/// As [`exact_u64`], for an integer in the range of i64 (`-` allowed).
pub fn exact_i64(text: &[u8]) -> Option<i64> {
    match trim_json_ws(text) {
        [b'-', digits @ ..] => {
            // `-0` is a float to serde_json, not an integer.
            let magnitude = digits_u64(digits)?;
            (magnitude != 0 && magnitude <= i64::MIN.unsigned_abs())
                .then(|| (magnitude as i64).wrapping_neg())
        }
        digits => i64::try_from(digits_u64(digits)?).ok(),
    }
}

fn trim_json_ws(text: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = text.iter().position(|b| !ws(b)).unwrap_or(text.len());
    let end = text.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    &text[start..end]
}

/// Decimal digits without a leading zero (`0` alone aside), in range.
fn digits_u64(digits: &[u8]) -> Option<u64> {
    match digits {
        [] => None,
        [b'0', _, ..] => None,
        _ => digits.iter().try_fold(0u64, |v, &b| {
            let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
            v.checked_mul(10)?.checked_add(d as u64)
        }),
    }
}

/// A JSON number read exactly when it is a plain decimal of moderate size
/// (`137.52` is 13752 × 10⁻²), approximately otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Decimal { mantissa: i128, scale: u32 },
    Float(f64),
}

/// Most fraction digits kept exactly.
pub const MAX_SCALE: u32 = 18;

impl Number {
    /// Parses the raw text of a JSON number (not a string).
    pub fn parse(raw: &[u8]) -> Option<Number> {
        let s = std::str::from_utf8(raw).ok()?;
        if !matches!(raw.first(), Some(b'-' | b'0'..=b'9')) {
            return None;
        }
        if !s.contains(['e', 'E']) {
            let (int, frac) = s.split_once('.').unwrap_or((s, ""));
            if frac.len() as u32 <= MAX_SCALE && int.len() + frac.len() <= 36 {
                let digits: String = [int, frac].concat();
                if let Ok(mantissa) = digits.parse::<i128>() {
                    return Some(Number::Decimal {
                        mantissa,
                        scale: frac.len() as u32,
                    });
                }
            }
        }
        s.parse::<f64>().ok().map(Number::Float)
    }

    pub fn to_f64(self) -> f64 {
        match self {
            Number::Decimal { mantissa, scale } => mantissa as f64 / 10f64.powi(scale as i32),
            Number::Float(f) => f,
        }
    }
}

/// Appends `s` as a JSON string (with quotes).
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let (mut start, mut i) = (0, 0);
    loop {
        // Eight bytes at a time to the next byte to escape.
        i = next_flagged(s, i, |w| {
            has_byte(w, b'"') | has_byte(w, b'\\') | has_control(w)
        });
        while i < s.len() && !matches!(s[i], b'"' | b'\\' | 0..=0x1f) {
            i += 1;
        }
        let Some(&b) = s.get(i) else { break };
        out.extend_from_slice(&s[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// Appends an integer.
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends `mantissa / 10^scale` as a plain decimal number with all its
/// scale's digits (`-0.05`, `12.50`).
pub fn write_decimal(out: &mut Vec<u8>, mantissa: i128, scale: u32) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(mantissa.unsigned_abs()).as_bytes();
    if mantissa < 0 {
        out.push(b'-');
    }
    let scale = scale as usize;
    if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int);
        if scale > 0 {
            out.push(b'.');
            out.extend_from_slice(frac);
        }
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + scale - digits.len(), b'0');
        out.extend_from_slice(digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    #[test]
    fn finds_top_level_and_nested_values() {
        let doc = br#"{"a":1,"b":{"c":[10,{"d":"x"}],"e\u0041":true},"f":"g"}"#;
        assert_eq!(find(doc, &p("/a")).unwrap(), Some(&b"1"[..]));
        assert_eq!(find(doc, &p("/b/c/1/d")).unwrap(), Some(&br#""x""#[..]));
        assert_eq!(find(doc, &p("/b/c/0")).unwrap(), Some(&b"10"[..]));
        assert_eq!(find(doc, &p("/b/eA")).unwrap(), Some(&b"true"[..]));
        assert_eq!(find(doc, &p("/b/c/2")).unwrap(), None);
        assert_eq!(find(doc, &p("/zz")).unwrap(), None);
        assert_eq!(find(doc, &p("")).unwrap(), Some(&doc[..]));
        let mut out = [None, None];
        find_many(doc, &[&p("/f"), &p("/b/c")], &mut out).unwrap();
        assert_eq!(out, [Some(&br#""g""#[..]), Some(&br#"[10,{"d":"x"}]"#[..])]);
    }

    #[test]
    fn numbers_are_checked_at_every_length_and_offset() {
        // Digits are read a word at a time: every length of run, at every
        // offset from the start of the document, followed by every kind of
        // byte, checks as a byte-by-byte reading would.
        for pad in 0..8 {
            let key = "k".repeat(pad);
            for n in 1..=20 {
                let digits: String = "9876543210".chars().cycle().take(n).collect();
                for (tail, ok) in [
                    ("", true),
                    (" ", true),
                    (".5", true),
                    ("e7", true),
                    ("E+17", true),
                    (".", false),
                    ("x", false),
                    ("/", false),
                    (":", false),
                    ("}", false),
                    ("\u{7f}", false),
                    ("\u{e9}", false),
                ] {
                    let body = format!("{digits}{tail}");
                    let doc = format!("{{\"{key}\":[{body}]}}");
                    let found = find(doc.as_bytes(), &p(&format!("/{key}/0")));
                    match ok {
                        true => {
                            assert_eq!(found.unwrap(), Some(body.trim_end().as_bytes()), "{doc}")
                        }
                        false => assert!(found.is_err(), "{doc}"),
                    }
                }
            }
        }
    }

    #[test]
    fn a_checker_finds_what_find_many_finds_whatever_came_before() {
        // Documents that share key texts at the same places, with values,
        // escapes, whitespace and errors that differ; every document is
        // checked after every other, so each is seen with a shape learnt
        // from each.
        let docs: [&[u8]; 16] = [
            br#"{"a":1,"b":{"c":[10,{"d":"x"}]},"ts":5}"#,
            br#"{"a":"1","b":{"c":[20]},"ts":6}"#,
            br#"{"a":1,"b":7,"ts":"x"}"#,
            br#"{"ts":1,"a":2,"b":{"c":[1,{"d":2}]}}"#,
            br#"{"a" :1,"b": {"c":[3,{"d":null}]} ,"ts":7}"#,
            br#"{"\u0061":1,"b":{"c":[4,{"d":4}]},"t\u0073":8}"#,
            br#"{"a":1,"b":{"c":[5,{"d":5}]},"ts":9"#,
            br#"{"a":1,"b":{"c":[5,{"d":5}]},"ts":9,}"#,
            br#"{"a":1,"b":{"c":[6]},"ts":10} x"#,
            br#"{"a":1,"b":"#,
            br#"{"a":"#,
            br#"{"a":1,"b":{"c":[7,{"d":"\x"}]},"ts":11}"#,
            b"{\"a\":1,\"b\":\"\xff\",\"ts\":12}",
            br#"[{"a":1},{"b":2}]"#,
            br#"{}"#,
            br#"{"a":1,"b":{"c":[8,{"d":8}]},"ts":13,"more":[1,2,3]}"#,
        ];
        let pointers = [p("/a"), p("/b/c/1/d"), p("/ts"), p("/b/c")];
        let refs: Vec<&Pointer> = pointers.iter().collect();
        for first in &docs {
            for second in &docs {
                let mut checker = Checker::new(pointers.to_vec());
                for doc in [first, second, first] {
                    let (mut want, mut got) = ([None; 4], [None; 4]);
                    let expected = find_many(doc, &refs, &mut want);
                    let actual = checker.find(doc, &mut got);
                    let shown = String::from_utf8_lossy(doc);
                    assert_eq!(actual, expected, "{shown}");
                    if actual.is_ok() {
                        assert_eq!(got, want, "{shown}");
                    }
                }
            }
        }
        // Learnt keys are taken as read: a document of the same shape
        // finds its values by them.
        let mut checker = Checker::new(vec![p("/ts")]);
        let mut found = [None];
        checker.find(docs[0], &mut found).unwrap();
        assert_eq!(checker.shape.len(), 3);
        checker.find(docs[1], &mut found).unwrap();
        assert_eq!(found, [Some(&b"6"[..])]);
    }

    #[test]
    fn members_are_found_as_one_segment_pointers_find_them() {
        let names: [&[u8]; 4] = [b"a", b"b", b"e/A", b"zz"];
        let pointers = [p("/a"), p("/b"), p("/e~1A"), p("/zz")];
        let pointers: Vec<&Pointer> = pointers.iter().collect();
        for doc in [
            &br#"{"a":1,"b":{"c":[10,{"d":"x"}]},"e/\u0041":true}"#[..],
            br#" { "b" : "x" , "a" : [1, 2] , "a": 3 } "#,
            br#"{"q":1,"zz":null,"b":2,"a":"\u00e9t\u00e9"}"#,
            br#"{}"#,
            br#"[1,{"a":2}]"#,
            br#""a""#,
            br#"{"a":1,}"#,
            br#"{"a":1} x"#,
            br#"{"a":"\x"}"#,
            br#"{"a" 1}"#,
            br#"{"a":1"#,
            b"{\"a\":\"\xff\"}",
            br#"{1:2}"#,
        ] {
            let (mut want, mut got) = ([None; 4], [None; 4]);
            let expected = find_many(doc, &pointers, &mut want);
            let actual = find_members(doc, &names, &mut got);
            assert_eq!(actual, expected, "{}", String::from_utf8_lossy(doc));
            if actual.is_ok() {
                let raw = got.map(|m| m.map(|m| m.raw));
                assert_eq!(raw, want, "{}", String::from_utf8_lossy(doc));
                for m in got.iter().flatten() {
                    // The text of a string without escapes, and only then.
                    let plain = match m.raw {
                        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => Some(inner),
                        _ => None,
                    };
                    assert_eq!(m.text, plain, "{}", String::from_utf8_lossy(doc));
                }
            }
        }
    }

    #[test]
    fn skimming_finds_what_a_checked_scan_finds() {
        let docs: [&[u8]; 9] = [
            br#"{"a":1,"b":{"c":[10,{"d":"x}]\""}]},"e/\u0041":true,"n":-1.5e3}"#,
            br#" { "b" : "x\\" , "a" : [1, [2, {}]] , "a": 3 , "n" : null } "#,
            br#"{"q":"\"","zz":null,"b":2,"a":"\u00e9t\u00e9","n":"n"}"#,
            br#"{}"#,
            br#"[1,{"a":2}]"#,
            br#""a""#,
            br#"{"b":[],"n":{}}"#,
            br#"{"b":"","e/A":"","n":0}"#,
            "{\"b\":\"é\",\"n\":7}".as_bytes(),
        ];
        for doc in docs {
            for pointer in ["/a", "/b", "/e~1A", "/n", "/zz", "/b/c"] {
                let pointer = p(pointer);
                let mut checked = [None];
                let checked = scan(doc, &[&pointer], &mut checked, true).map(|()| checked[0]);
                assert_eq!(
                    find_fast(doc, &pointer),
                    checked,
                    "{pointer} in {}",
                    String::from_utf8_lossy(doc)
                );
            }
            let several = [p("/n"), p("/a"), p("/zz"), p("/a")];
            let several: Vec<&Pointer> = several.iter().collect();
            let (mut skimmed, mut checked) = ([None; 4], [None; 4]);
            let checked = scan(doc, &several, &mut checked, true).map(|()| checked);
            let skimmed = find_many_fast(doc, &several, &mut skimmed).map(|()| skimmed);
            assert_eq!(skimmed, checked, "{}", String::from_utf8_lossy(doc));
        }
        // A value found is checked whole, whatever came before it.
        for doc in [
            &br#"{"a":[},"k":[1, 2}}"#[..],
            br#"{"k":abc}"#,
            br#"{"k":"\q"}"#,
            br#"{"k":-}"#,
            b"{\"k\":\"a\x01\"}",
        ] {
            assert!(
                find_fast(doc, &p("/k")).is_err(),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
        assert_eq!(
            find_fast(br#"{"a":[},"k":[1]}"#, &p("/k")),
            Ok(Some(&b"[1]"[..]))
        );
        // Whatever the bytes, an answer and no panic.
        for doc in [
            &br#"{"a":[["\"][}"#[..],
            br#"{"a""#,
            br#"{"a":"#,
            br#"{"\"#,
            br#"{"a":]"#,
            b"{,",
        ] {
            let _ = find_fast(doc, &p("/n"));
        }
    }

    #[test]
    fn decimals_are_written_with_all_their_scale() {
        for (mantissa, scale, want) in [
            (-5, 2, "-0.05"),
            (13752, 2, "137.52"),
            (7, 0, "7"),
            (0, 2, "0.00"),
            (-350, 2, "-3.50"),
            (5, 3, "0.005"),
            (100, 2, "1.00"),
            (-i128::MAX, 38, "-1.70141183460469231731687303715884105727"),
        ] {
            let mut out = b"x".to_vec();
            write_decimal(&mut out, mantissa, scale);
            assert_eq!(String::from_utf8(out).unwrap(), format!("x{want}"));
        }
    }

    #[test]
    fn pointer_escapes_and_errors() {
        let doc = br#"{"a/b":1,"m~n":2}"#;
        assert_eq!(find(doc, &p("/a~1b")).unwrap(), Some(&b"1"[..]));
        assert_eq!(find(doc, &p("/m~0n")).unwrap(), Some(&b"2"[..]));
        assert!(Pointer::parse("a").is_err());
        assert!(Pointer::parse("/a~2").is_err());
        assert_eq!(p("/x/customer_id").last_name(), Some("customer_id"));
    }

    #[test]
    fn rejects_malformed_documents_with_offsets() {
        for (doc, offset) in [
            (&br#"{"a":1"#[..], 6),
            (br#"{"a":1,}"#, 7),
            (br#"{"a" 1}"#, 5),
            (br#"[1,2]x"#, 5),
            (br#"{"a":01}"#, 6),
            (br#"{"a":"\x"}"#, 7),
            (b"{\"a\":\"\x01\"}", 6),
            (br#"{"a":tru}"#, 5),
            (br#""#, 0),
            (br#"{"a":1.}"#, 7),
            (br#"{"a":-}"#, 6),
            (b"\xff", 0),
        ] {
            let e = validate(doc).unwrap_err();
            assert_eq!(e.offset, offset, "{:?}: {e}", String::from_utf8_lossy(doc));
        }
        for ok in [
            &b" {} "[..],
            b"[]",
            b"0",
            b"-1.5e+3",
            br#""\u00e9\n""#,
            br#"{"a":[null,true,false,{}]}"#,
        ] {
            validate(ok).unwrap();
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(
            validate(deep.as_bytes()).unwrap_err().message,
            "nested too deeply"
        );
    }

    #[test]
    fn exact_integers_are_what_serde_json_reads_as_i64_and_u64() {
        // The range edges of both types, JSON that is not an integer, and
        // whitespace around one (comma-separated: no text has a comma).
        let texts = "0,-0,7,-7,1699999996432, 12 ,\t-3\r\n,012,-,, ,1.0,1e3,+1,\"5\",true,\
                     null,1 2,--1,0x10,１,9223372036854775807,9223372036854775808,\
                     -9223372036854775808,-9223372036854775809,18446744073709551615,\
                     18446744073709551616";
        for t in texts.split(',') {
            let i = serde_json::from_str::<i64>(t).ok();
            let u = serde_json::from_str::<u64>(t).ok();
            assert_eq!(exact_i64(t.as_bytes()), i, "i64 of {t:?}");
            assert_eq!(exact_u64(t.as_bytes()), u, "u64 of {t:?}");
        }
    }

    #[test]
    fn integers_and_decimals() {
        assert_eq!(parse_i64(b"1699999996432"), Some(1_699_999_996_432));
        assert_eq!(parse_i64(b"-5"), Some(-5));
        assert_eq!(parse_i64(b"12.0"), Some(12));
        assert_eq!(parse_i64(br#""42""#), Some(42));
        assert_eq!(parse_i64(b"12.5"), None);
        assert_eq!(parse_i64(b"true"), None);
        assert_eq!(
            Number::parse(b"137.52"),
            Some(Number::Decimal {
                mantissa: 13752,
                scale: 2
            })
        );
        assert_eq!(
            Number::parse(b"-7"),
            Some(Number::Decimal {
                mantissa: -7,
                scale: 0
            })
        );
        assert_eq!(Number::parse(b"1e3"), Some(Number::Float(1000.0)));
        assert_eq!(Number::parse(br#""1""#), None);
    }

    #[test]
    fn writes_escaped_strings() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\nd\u{1}é".as_bytes());
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\nd\u0001é""#);
        // Every byte to escape at every place of a long string, and long
        // runs with nothing to escape: read back as they were.
        for special in ["\"", "\\", "\n", "\u{1f}", "\u{0}", "é"] {
            for at in 0..20 {
                let text = format!("{}{special}{}", "x".repeat(at), "yz".repeat(at));
                let mut out = Vec::new();
                write_str(&mut out, text.as_bytes());
                assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), text);
            }
        }
        let mut s = Vec::new();
        unescape_into(br#"a\"b\u00e9\ud83d\ude00"#, &mut s);
        assert_eq!(String::from_utf8(s).unwrap(), "a\"bé😀");
    }

    /// A JSON value as text, from a seed: scalars, strings with and without
    /// escapes (and brackets inside), nested arrays and objects.
    fn value_text(seed: &[u8], depth: usize) -> String {
        let (&k, rest) = seed.split_first().unwrap_or((&0, &[]));
        match k % 9 {
            0 => "-12.5e3".into(),
            1 => "true".into(),
            2 => "null".into(),
            3 => r#""plain""#.into(),
            4 => r#""q\"}]\\""#.into(),
            5 => r#""{[""#.into(),
            6 if depth < 3 => format!(
                "[{}, {}]",
                value_text(rest, depth + 1),
                value_text(rest.get(1..).unwrap_or(&[]), depth + 1)
            ),
            7 if depth < 3 => format!(r#"{{"a" : {}, "x":[]}}"#, value_text(rest, depth + 1)),
            _ => "0".into(),
        }
    }

    #[test]
    fn same_agrees_with_byte_equality_at_every_length() {
        for n in 0..=24usize {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same(&a, &a.clone()), "{n}");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x20;
                assert!(!same(&a, &b), "{n} bytes, differing at {i}");
            }
            let longer: Vec<u8> = a.iter().copied().chain([b'a']).collect();
            assert!(!same(&a, &longer) && !same(&longer, &a), "{n}");
        }
    }

    proptest::proptest! {
        /// On valid objects the projection's scan finds what the validating
        /// member lookup finds (the first member of each name), unless a
        /// member name written with escapes comes first.
        #[test]
        fn locating_members_agrees_with_finding_them(
            members in proptest::collection::vec((0usize..6, proptest::collection::vec(proptest::prelude::any::<u8>(), 4), 0u8..4), 0..8),
            wanted in proptest::sample::subsequence(vec!["a", "b", "ab", "c"], 1..4),
        ) {
            const KEYS: [&str; 6] = ["a", "b", "ab", "c", r"a\u0062", "other"];
            const WS: [&str; 4] = ["", " ", "\t ", "  "];
            let mut doc = String::from("{");
            for (i, (key, seed, ws)) in members.iter().enumerate() {
                if i > 0 {
                    doc.push(',');
                }
                let ws = WS[*ws as usize];
                doc.push_str(&format!("{ws}\"{}\"{ws}:{ws}{}{ws}", KEYS[*key], value_text(seed, 0)));
            }
            doc.push('}');
            let doc = doc.as_bytes();
            validate(doc).unwrap();
            let names: Vec<Box<[u8]>> = wanted.iter().map(|n| n.as_bytes().into()).collect();
            let mut located = vec![None; names.len()];
            let mut found = vec![None; names.len()];
            find_members(doc, &names, &mut found).unwrap();
            if !locate_members(doc, &names, &mut located) {
                proptest::prop_assert!(members.iter().any(|m| KEYS[m.0].contains('\\')));
                return Ok(());
            }
            for (l, f) in located.iter().zip(&found) {
                let raw = l.map(|l| &doc[l.start..l.end]);
                proptest::prop_assert_eq!(raw, f.map(|f| f.raw));
                if let Some(l) = l {
                    let text = &doc[l.start..l.end];
                    proptest::prop_assert_eq!(l.escaped, text[0] == b'"' && text.contains(&b'\\'));
                }
            }
        }
    }
}
