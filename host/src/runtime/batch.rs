//! Batches: the unit in which records move between operators, and the unit
//! in which they cross into Wasm.
//!
//! A batch keeps the bytes of all its records in one buffer and describes
//! each record with a small fixed-size [`RecordMeta`]. This is the same
//! layout as the WIT `batch` type, so handing a batch to a guest is two
//! copies, whatever the number of records (see `wit/operator.wit`). Each
//! record also carries its [`Origin`] — the source split and position it was
//! read from — so that an error about it can say where it came from — and
//! its [`RowKind`]: whether it inserts, updates or deletes a row of a
//! changelog (an insert unless a changelog source or operator says so).

use std::sync::{Arc, OnceLock};

/// A byte range in a batch's `data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub offset: u32,
    pub len: u32,
}

impl Span {
    #[inline]
    pub fn range(self) -> std::ops::Range<usize> {
        self.offset as usize..(self.offset + self.len) as usize
    }
}

/// Where a record entered the pipeline: a source split (see
/// [`crate::runtime::Splits`]) and a position in it (the line number for
/// files, the sequence number for the generator). Records made by windows
/// have no origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub split: u32,
    pub position: u64,
}

impl Origin {
    pub const NONE: Origin = Origin {
        split: u32::MAX,
        position: 0,
    };
}

/// A record header's name and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderMeta {
    pub name: Span,
    pub value: Span,
}

/// What a record does to the row it describes (Flink's `RowKind`): every
/// record of an append-only stream is an insert; a changelog (a CDC source,
/// an aggregate that updates its results) also has updates, as a pair of
/// the row before and the row after, and deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum RowKind {
    /// `+I`
    #[default]
    Insert = 0,
    /// `-U`: the row as it was before an update (retracts it).
    UpdateBefore = 1,
    /// `+U`: the row as it is after an update.
    UpdateAfter = 2,
    /// `-D`
    Delete = 3,
}

impl RowKind {
    /// Flink's short form: `+I`, `-U`, `+U`, `-D`.
    pub fn short(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    pub fn parse(s: &str) -> Option<RowKind> {
        Some(match s {
            "+I" => RowKind::Insert,
            "-U" => RowKind::UpdateBefore,
            "+U" => RowKind::UpdateAfter,
            "-D" => RowKind::Delete,
            _ => return None,
        })
    }

    /// Whether the record adds its row (`+I`, `+U`) rather than retracting
    /// it (`-U`, `-D`).
    pub fn is_addition(self) -> bool {
        matches!(self, RowKind::Insert | RowKind::UpdateAfter)
    }
}

/// One record of a batch.
#[derive(Clone, Copy, Debug)]
pub struct RecordMeta {
    pub key: Option<Span>,
    pub value: Span,
    /// Event time, epoch milliseconds.
    pub timestamp: Option<i64>,
    pub origin: Origin,
    pub headers_start: u32,
    pub headers_len: u32,
    pub kind: RowKind,
}

/// Records laid out flat (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub data: Vec<u8>,
    pub records: Vec<RecordMeta>,
    pub headers: Vec<HeaderMeta>,
    /// Where some top-level members are in each record's value, when the
    /// source that made the batch found them as it checked the records.
    pub members: Option<Members>,
}

/// Where the members `names` are in each record's value of a batch, found
/// by the source as it checked (or, unchecked, scanned) the records: for
/// the operator it feeds, a Wasm transform or a `sql` operator, which would
/// otherwise look for them itself (`wasm::fields`, `SqlOperator::read`).
/// The operator asks through a [`MemberRequest`].
///
/// `found` holds, per record and name, the value's offset in the record's
/// value ([`MEMBER_ABSENT`] when the record lacks the member) and its
/// length ([`MEMBER_ESCAPED`] set for a string with escapes), or
/// [`MEMBERS_UNREAD`]. It describes
/// every record of the batch or none: a batch with records added after
/// the source made it has more records than `found` describes, and its
/// members are not to be used.
#[derive(Clone, Debug)]
pub struct Members {
    pub names: Arc<[Box<[u8]>]>,
    pub found: Vec<u32>,
}

/// A [`Members`] offset: the record has no such member.
pub const MEMBER_ABSENT: u32 = u32::MAX;
/// The top bit of a [`Members`] length: the value is a string with escapes.
pub const MEMBER_ESCAPED: u32 = 1 << 31;
/// Every pair of a record whose members were not looked for (not an
/// object, or too long for the offsets): the reader finds them itself.
pub const MEMBERS_UNREAD: (u32, u32) = (u32::MAX, u32::MAX);

impl Members {
    /// Whether these are members `names` of every record of `batch` (a
    /// batch's own, or taken from it).
    pub fn describe(&self, batch: &Batch, names: &[Box<[u8]>]) -> bool {
        *self.names == *names && self.fit(batch)
    }

    /// Whether these hold pairs for every record of `batch`, whatever the
    /// names.
    pub fn fit(&self, batch: &Batch) -> bool {
        Some(self.found.len()) == batch.len().checked_mul(2 * self.names.len())
    }

    /// The pairs of record `i`, or `None` when its reader is to find its
    /// members itself ([`MEMBERS_UNREAD`]).
    #[inline]
    pub fn of_record(&self, i: usize) -> Option<&[u32]> {
        let pairs = self.pairs(i);
        (pairs[..2] != [MEMBERS_UNREAD.0, MEMBERS_UNREAD.1]).then_some(pairs)
    }

    /// The pairs of record `i` as they are.
    #[inline]
    fn pairs(&self, i: usize) -> &[u32] {
        let n = 2 * self.names.len();
        &self.found[i * n..(i + 1) * n]
    }

    /// After record `i` of the batch these describe was copied to the end
    /// of another batch, whose members are `to`: copies its pairs there
    /// (they are places in the record's value, which the copy keeps). A
    /// batch some of whose records came without pairs, or with pairs of
    /// other names, has fewer pairs than [`Members::describe`] asks, so its
    /// reader finds the members itself.
    #[inline]
    pub fn copy_record(&self, i: usize, to: &mut Option<Members>) {
        let to = to.get_or_insert_with(|| Members {
            names: self.names.clone(),
            found: Vec::new(),
        });
        if Arc::ptr_eq(&to.names, &self.names) || to.names == self.names {
            to.found.extend_from_slice(self.pairs(i));
        }
    }
}

/// The member that `offset` and `len` (a pair of [`Members::found`]) place
/// in the record's `value`, if it has one.
#[inline]
pub fn member_at(value: &[u8], offset: u32, len: u32) -> Option<crate::json::Member<'_>> {
    if offset == MEMBER_ABSENT {
        return None;
    }
    let raw = &value[offset as usize..][..(len & !MEMBER_ESCAPED) as usize];
    let plain = len & MEMBER_ESCAPED == 0 && raw.len() >= 2 && raw[0] == b'"';
    Some(crate::json::Member {
        raw,
        text: plain.then(|| &raw[1..raw.len() - 1]),
    })
}

/// The members an operator would have its input's source find (see
/// [`Members`]), once it knows them: a Wasm transform learns its module's
/// projection after the first call, a `sql` operator knows its query's
/// before the job starts. The source takes them up as its next batch
/// starts.
#[derive(Debug, Default)]
pub struct MemberRequest(OnceLock<Arc<[Box<[u8]>]>>);

impl MemberRequest {
    /// Asks for `names`; only the first request counts.
    pub fn ask(&self, names: &[Box<[u8]>]) {
        if self.0.get().is_none() {
            let _ = self.0.set(names.into());
        }
    }

    /// The members asked for, if any yet.
    pub fn names(&self) -> Option<&Arc<[Box<[u8]>]>> {
        self.0.get()
    }
}

impl Batch {
    pub fn with_capacity(records: usize, bytes: usize) -> Batch {
        Batch {
            data: Vec::with_capacity(bytes),
            records: Vec::with_capacity(records),
            headers: Vec::new(),
            members: None,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.records.clear();
        self.headers.clear();
        self.members = None;
    }

    #[inline]
    pub fn get(&self, i: usize) -> RecordRef<'_> {
        RecordRef {
            batch: self,
            meta: &self.records[i],
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> {
        self.records
            .iter()
            .map(move |meta| RecordRef { batch: self, meta })
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Span {
        let offset = self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        Span {
            offset,
            len: bytes.len() as u32,
        }
    }

    /// Appends a record without headers.
    #[inline]
    pub fn push(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: Option<i64>,
        origin: Origin,
    ) {
        self.push_built(key, timestamp, origin, |data| data.extend_from_slice(value));
    }

    /// Sets the changelog kind of the record pushed last.
    #[inline]
    pub fn set_last_kind(&mut self, kind: RowKind) {
        if let Some(m) = self.records.last_mut() {
            m.kind = kind;
        }
    }

    /// Appends a record with headers (name, value).
    pub fn push_with_headers<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: Option<i64>,
        origin: Origin,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) {
        self.push(key, value, timestamp, origin);
        let start = self.headers.len();
        for (name, value) in headers {
            let name = self.put(name);
            let value = self.put(value);
            self.headers.push(HeaderMeta { name, value });
        }
        let meta = self.records.last_mut().expect("just pushed");
        meta.headers_start = start as u32;
        meta.headers_len = (self.headers.len() - start) as u32;
    }

    /// Appends a record whose value `write` produces in place.
    #[inline]
    pub fn push_built(
        &mut self,
        key: Option<&[u8]>,
        timestamp: Option<i64>,
        origin: Origin,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let key = key.map(|k| self.put(k));
        let start = self.data.len();
        write(&mut self.data);
        let value = Span {
            offset: start as u32,
            len: (self.data.len() - start) as u32,
        };
        self.records.push(RecordMeta {
            key,
            value,
            timestamp,
            origin,
            headers_start: self.headers.len() as u32,
            headers_len: 0,
            kind: RowKind::Insert,
        });
    }

    /// Appends a copy of `record`, with its key replaced when `key` is given.
    #[inline]
    pub fn push_record(&mut self, record: RecordRef<'_>, key: Option<&[u8]>) {
        self.push_copy(record, key, record.value());
    }

    /// Appends a copy of `record` with `value` for its value.
    pub fn push_record_with_value(&mut self, record: RecordRef<'_>, value: &[u8]) {
        self.push_copy(record, None, value);
    }

    #[inline]
    fn push_copy(&mut self, record: RecordRef<'_>, key: Option<&[u8]>, value: &[u8]) {
        let key = match key {
            Some(k) => Some(self.put(k)),
            None => record.key().map(|k| self.put(k)),
        };
        let value = self.put(value);
        let headers_start = self.headers.len() as u32;
        for (name, value) in record.headers() {
            let name = self.put(name);
            let value = self.put(value);
            self.headers.push(HeaderMeta { name, value });
        }
        self.records.push(RecordMeta {
            key,
            value,
            timestamp: record.timestamp(),
            origin: record.origin(),
            headers_start,
            headers_len: record.meta.headers_len,
            kind: record.meta.kind,
        });
    }
}

/// A record inside a batch.
#[derive(Clone, Copy)]
pub struct RecordRef<'a> {
    batch: &'a Batch,
    meta: &'a RecordMeta,
}

impl<'a> RecordRef<'a> {
    #[inline]
    pub fn value(&self) -> &'a [u8] {
        &self.batch.data[self.meta.value.range()]
    }

    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        self.meta.key.map(|k| &self.batch.data[k.range()])
    }

    #[inline]
    pub fn timestamp(&self) -> Option<i64> {
        self.meta.timestamp
    }

    #[inline]
    pub fn origin(&self) -> Origin {
        self.meta.origin
    }

    #[inline]
    pub fn kind(&self) -> RowKind {
        self.meta.kind
    }

    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + use<'a> {
        let data = &self.batch.data;
        let start = self.meta.headers_start as usize;
        self.batch.headers[start..start + self.meta.headers_len as usize]
            .iter()
            .map(move |h| (&data[h.name.range()], &data[h.value.range()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_copy_records() {
        let mut a = Batch::default();
        a.push(
            Some(b"k1"),
            b"{\"v\":1}",
            Some(5),
            Origin {
                split: 0,
                position: 1,
            },
        );
        a.push(None, b"{\"v\":2}", None, Origin::NONE);
        a.headers.push(HeaderMeta {
            name: Span { offset: 0, len: 1 },
            value: Span { offset: 1, len: 1 },
        });
        a.records[1].headers_start = 0;
        a.records[1].headers_len = 1;

        let mut b = Batch::default();
        b.push_record(a.get(1), Some(b"new"));
        a.records[0].kind = RowKind::UpdateAfter;
        b.push_record(a.get(0), None);
        assert_eq!(b.get(0).key(), Some(&b"new"[..]));
        assert_eq!(b.get(0).value(), b"{\"v\":2}");
        assert_eq!(
            b.get(0).headers().collect::<Vec<_>>(),
            vec![(&b"k"[..], &b"1"[..])]
        );
        assert_eq!(b.get(1).key(), Some(&b"k1"[..]));
        assert_eq!(b.get(1).timestamp(), Some(5));
        assert_eq!(b.get(1).kind(), RowKind::UpdateAfter);
        assert_eq!(b.get(0).kind(), RowKind::Insert);
        assert_eq!(
            b.get(1).origin(),
            Origin {
                split: 0,
                position: 1
            }
        );
    }
}
