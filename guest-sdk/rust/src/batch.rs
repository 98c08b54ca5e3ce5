//! The flat batch layout of the WIT contract, read and written.
//!
//! A batch is one byte buffer plus records that point into it with
//! [`Span`]s (see `wit/operator.wit` for why). This module owns the two
//! directions: slicing a received buffer by span, and [`BatchBuilder`], which
//! appends records to the buffers of an outgoing batch. It knows nothing about
//! operators.

use std::mem;

pub(crate) use crate::bindings::transform::sluice::operator::types::{
    Batch, ByteList, Header, RecordError, RecordMeta, RowKind, Span,
};

/// `data[span]`, or `None` when the span is outside `data`.
#[inline]
pub(crate) fn get(data: &[u8], span: Span) -> Option<&[u8]> {
    let start = span.offset as usize;
    let end = start.checked_add(span.len as usize)?;
    data.get(start..end)
}

/// `data[span]`; a span outside `data` is a bug in the host, so it traps.
#[inline]
#[track_caller]
pub(crate) fn slice(data: &[u8], span: Span) -> &[u8] {
    match get(data, span) {
        Some(bytes) => bytes,
        None => bad_span(data.len(), span),
    }
}

#[cold]
#[track_caller]
fn bad_span(len: usize, span: Span) -> ! {
    panic!(
        "sluice: malformed batch from the host: span {}+{} is outside a {len}-byte buffer",
        span.offset, span.len
    )
}

/// A buffer offset as the WIT's `u32`. Wasm32 buffers cannot exceed `u32`,
/// so on the real target this check compiles to nothing.
#[inline]
pub(crate) fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("sluice: batch larger than 4 GiB")
}

/// The lengths of a [`BatchBuilder`]'s buffers, to roll back to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    data: usize,
    records: usize,
    headers: usize,
}

/// Appends records to the buffers of an outgoing [`Batch`].
#[derive(Default)]
pub(crate) struct BatchBuilder {
    pub(crate) data: Vec<u8>,
    pub(crate) records: Vec<RecordMeta>,
    pub(crate) headers: Vec<Header>,
}

impl BatchBuilder {
    /// Takes the builder's buffers, emptied and with room for at least the
    /// size of `like`, leaving an empty builder behind.
    pub(crate) fn take_sized_for(&mut self, like: &Batch) -> BatchBuilder {
        let mut b = mem::take(self);
        b.data.clear();
        b.records.clear();
        b.headers.clear();
        b.data.reserve(like.data.len());
        b.records.reserve(like.records.len());
        b.headers.reserve(like.headers.len());
        b
    }

    /// Keeps a received batch's buffers to build the next batch in.
    ///
    /// The buffers of a batch we return belong to the canonical ABI (it frees
    /// them after the call), but the input's are ours: reusing them saves
    /// allocating and growing three buffers per call.
    pub(crate) fn recycle(&mut self, batch: Batch) {
        let Batch {
            data,
            records,
            headers,
        } = batch;
        self.data = data;
        self.records = records;
        self.headers = headers;
    }

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            data: self.data.len(),
            records: self.records.len(),
            headers: self.headers.len(),
        }
    }

    pub(crate) fn rollback(&mut self, mark: Mark) {
        self.data.truncate(mark.data);
        self.records.truncate(mark.records);
        self.headers.truncate(mark.headers);
    }

    /// Appends bytes to the data buffer.
    #[inline]
    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) -> Span {
        let offset = to_u32(self.data.len());
        self.data.extend_from_slice(bytes);
        Span {
            offset,
            len: to_u32(bytes.len()),
        }
    }

    /// Appends `value` encoded as JSON to the data buffer: its span, or the
    /// error with nothing appended.
    pub(crate) fn push_json_bytes<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<Span, serde_json::Error> {
        let start = self.data.len();
        if let Err(e) = serde_json::to_writer(&mut self.data, value) {
            self.data.truncate(start);
            return Err(e);
        }
        Ok(self.span_since(start))
    }

    /// The span of everything written to the data buffer since `start`.
    #[inline]
    pub(crate) fn span_since(&self, start: usize) -> Span {
        Span {
            offset: to_u32(start),
            len: to_u32(self.data.len() - start),
        }
    }

    /// Appends a record whose value is already in the data buffer.
    #[inline]
    pub(crate) fn push_record<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: Span,
        timestamp: Option<i64>,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        kind: RowKind,
    ) {
        let key = key.map(|k| self.push_bytes(k));
        let headers_start = self.headers.len();
        for (name, value) in headers {
            let name = self.push_bytes(name);
            let value = self.push_bytes(value);
            self.headers.push(Header { name, value });
        }
        self.records.push(RecordMeta {
            key,
            value,
            timestamp,
            headers_start: to_u32(headers_start),
            headers_len: to_u32(self.headers.len() - headers_start),
            kind,
        });
    }

    /// Appends an insert, copying all its bytes.
    #[cfg(test)]
    pub(crate) fn push<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: Option<i64>,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) {
        let value = self.push_bytes(value);
        self.push_record(key, value, timestamp, headers, RowKind::Insert);
    }

    pub(crate) fn finish(self) -> Batch {
        Batch {
            data: self.data,
            records: self.records,
            headers: self.headers,
        }
    }
}

/// Appends items to an outgoing [`ByteList`].
pub(crate) struct ByteListBuilder {
    data: Vec<u8>,
    spans: Vec<Span>,
}

impl ByteListBuilder {
    pub(crate) fn with_capacity(items: usize, bytes: usize) -> Self {
        ByteListBuilder {
            data: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(items),
        }
    }

    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) {
        let offset = to_u32(self.data.len());
        self.data.extend_from_slice(bytes);
        self.spans.push(Span {
            offset,
            len: to_u32(bytes.len()),
        });
    }

    /// Appends `value` encoded as JSON; on error nothing is appended.
    pub(crate) fn push_json<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        let start = self.data.len();
        match serde_json::to_writer(&mut self.data, value) {
            Ok(()) => {
                self.spans.push(Span {
                    offset: to_u32(start),
                    len: to_u32(self.data.len() - start),
                });
                Ok(())
            }
            Err(e) => {
                self.data.truncate(start);
                Err(e)
            }
        }
    }

    pub(crate) fn finish(self) -> ByteList {
        ByteList {
            data: self.data,
            spans: self.spans,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Item `i` of a byte list, as text, for assertions.
    pub(crate) fn item(list: &ByteList, i: usize) -> &str {
        std::str::from_utf8(slice(&list.data, list.spans[i])).unwrap()
    }

    /// All items of a byte list, as text.
    pub(crate) fn items(list: &ByteList) -> Vec<&str> {
        (0..list.spans.len()).map(|i| item(list, i)).collect()
    }

    /// A byte list of these items.
    pub(crate) fn byte_list(items: &[&str]) -> ByteList {
        let mut b = ByteListBuilder::with_capacity(items.len(), 0);
        for item in items {
            b.push_bytes(item.as_bytes());
        }
        b.finish()
    }

    /// A batch of records with these values and nothing else.
    pub(crate) fn values(values: &[&str]) -> Batch {
        let mut b = BatchBuilder::default();
        for v in values {
            b.push(None, v.as_bytes(), None, []);
        }
        b.finish()
    }

    #[test]
    fn spans_outside_the_buffer_are_rejected() {
        let data = b"abcdef";
        assert_eq!(get(data, Span { offset: 2, len: 3 }), Some(&b"cde"[..]));
        assert_eq!(get(data, Span { offset: 6, len: 0 }), Some(&b""[..]));
        assert_eq!(get(data, Span { offset: 4, len: 3 }), None);
        assert_eq!(
            get(
                data,
                Span {
                    offset: u32::MAX,
                    len: u32::MAX
                }
            ),
            None
        );
    }

    #[test]
    #[should_panic(expected = "malformed batch from the host")]
    fn slice_traps_on_a_bad_span() {
        slice(b"abc", Span { offset: 1, len: 5 });
    }

    #[test]
    fn builder_lays_records_out_flat() {
        let mut b = BatchBuilder::default();
        b.push(Some(b"k1"), b"v1", Some(7), [(&b"h"[..], &b"x"[..])]);
        b.push(None, b"v2", None, []);
        let batch = b.finish();
        assert_eq!(batch.records.len(), 2);
        assert_eq!(batch.headers.len(), 1);
        let r0 = batch.records[0];
        assert_eq!(slice(&batch.data, r0.value), b"v1");
        assert_eq!(slice(&batch.data, r0.key.unwrap()), b"k1");
        assert_eq!(r0.timestamp, Some(7));
        assert_eq!((r0.headers_start, r0.headers_len), (0, 1));
        assert_eq!(slice(&batch.data, batch.headers[0].name), b"h");
        assert_eq!(slice(&batch.data, batch.headers[0].value), b"x");
        let r1 = batch.records[1];
        assert_eq!(slice(&batch.data, r1.value), b"v2");
        assert!(r1.key.is_none() && r1.timestamp.is_none());
        assert_eq!((r1.headers_start, r1.headers_len), (1, 0));
    }

    #[test]
    fn rollback_restores_all_buffers() {
        let mut b = BatchBuilder::default();
        b.push(None, b"keep", None, []);
        let mark = b.mark();
        b.push(Some(b"k"), b"drop", None, [(&b"h"[..], &b"v"[..])]);
        b.rollback(mark);
        let batch = b.finish();
        assert_eq!(batch.data, b"keep");
        assert_eq!(batch.records.len(), 1);
        assert!(batch.headers.is_empty());
    }

    #[test]
    fn recycled_buffers_come_back_empty_and_sized() {
        let mut spare = BatchBuilder::default();
        let input = values(&["0123456789", "abc"]);
        let data_cap = input.data.capacity();
        spare.recycle(input);
        let next = values(&["x"]);
        let b = spare.take_sized_for(&next);
        assert!(b.data.is_empty() && b.records.is_empty() && b.headers.is_empty());
        assert!(b.data.capacity() >= data_cap);
        assert!(b.records.capacity() >= 2);
    }

    #[test]
    fn byte_list_json_failure_appends_nothing() {
        use std::collections::BTreeMap;
        let mut b = ByteListBuilder::with_capacity(2, 0);
        b.push_json(&1u8).unwrap();
        // A map with non-string keys cannot be JSON.
        let bad: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(b.push_json(&bad).is_err());
        b.push_json("two").unwrap();
        let list = b.finish();
        assert_eq!(items(&list), ["1", "\"two\""]);
    }
}
