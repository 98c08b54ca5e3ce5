//! [`Record`]: a borrowed view of one input record.

use std::fmt;

use serde::Deserialize;

use crate::Error;
use crate::batch::{self, Batch, Header};
use crate::projection::Projection;

/// What a record does to the row it describes, as in Flink's `RowKind`.
///
/// Records of an append-only stream are all `Insert`. A changelog (a
/// `postgres-cdc` source, a `debezium-json` topic, a `group_aggregate`)
/// also carries updates, as the row before (`UpdateBefore`, a retraction)
/// then the row after (`UpdateAfter`), and deletes (`Delete`, carrying the
/// row removed).
pub use crate::bindings::transform::sluice::operator::types::RowKind;

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

    /// Whether the record adds its row (`+I`, `+U`) rather than retracting
    /// it (`-U`, `-D`).
    pub fn is_addition(self) -> bool {
        matches!(self, RowKind::Insert | RowKind::UpdateAfter)
    }
}

// The type is generated (wit-bindgen), so the default cannot be derived.
#[allow(clippy::derivable_impls)]
impl Default for RowKind {
    fn default() -> RowKind {
        RowKind::Insert
    }
}

/// One input record: a borrowed view into the batch the host sent.
///
/// Nothing is copied or parsed until you ask: [`value`](Record::value) is a
/// slice of the batch, and [`json`](Record::json) deserializes from it, so a
/// struct with `&str` fields borrows its strings from the batch too.
///
/// ```
/// # use sluice_guest::{Record, Error};
/// #[derive(serde::Deserialize)]
/// struct Order<'a> {
///     order_id: &'a str,
///     amount: f64,
/// }
///
/// fn order_id<'a>(record: &Record<'a>) -> Result<&'a str, Error> {
///     let order: Order<'a> = record.json()?;
///     Ok(order.order_id)
/// }
/// ```
///
/// A `&str` field fails on a JSON string with escapes (`"a\"b"`), which cannot
/// be borrowed; use `Cow<'a, str>` with `#[serde(borrow)]` where that can
/// happen.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    /// The whole batch's data, which the headers point into.
    data: &'a [u8],
    key: Option<&'a [u8]>,
    value: &'a [u8],
    timestamp: Option<i64>,
    headers: &'a [Header],
    kind: RowKind,
    /// The call's projection and this record's index in the call, where the
    /// host may have found the members [`Record::fields`] reads.
    projected: Option<(&'a Projection, usize)>,
}

impl<'a> Record<'a> {
    /// Record `i` of `batch`. Spans outside the batch trap (a host bug).
    #[inline]
    pub(crate) fn from_batch(batch: &'a Batch, i: usize) -> Record<'a> {
        let meta = &batch.records[i];
        let start = meta.headers_start as usize;
        let headers = start
            .checked_add(meta.headers_len as usize)
            .and_then(|end| batch.headers.get(start..end))
            .unwrap_or_else(|| {
                panic!(
                    "sluice: malformed batch from the host: record {i} has headers \
                     {start}+{} of {}",
                    meta.headers_len,
                    batch.headers.len()
                )
            });
        Record {
            data: &batch.data,
            key: meta.key.map(|k| batch::slice(&batch.data, k)),
            value: batch::slice(&batch.data, meta.value),
            timestamp: meta.timestamp,
            headers,
            kind: meta.kind,
            projected: None,
        }
    }

    /// Record `i` of `batch`, whose members the host may have found for
    /// `projection`.
    #[inline]
    pub(crate) fn projected(batch: &'a Batch, i: usize, projection: &'a Projection) -> Record<'a> {
        Record {
            projected: Some((projection, i)),
            ..Record::from_batch(batch, i)
        }
    }

    /// The record's changelog kind: `RowKind::Insert` for every record of
    /// an append-only stream.
    #[inline]
    pub fn kind(&self) -> RowKind {
        self.kind
    }

    /// The record's key, if it has one: set by a `key-by` in the pipeline or by
    /// the source (a Kafka message key, for example).
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The record's value: with the JSON format, one JSON document.
    #[inline]
    pub fn value(&self) -> &'a [u8] {
        self.value
    }

    /// The value as text; an error if it is not UTF-8.
    pub fn value_str(&self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.value)
            .map_err(|e| Error::new(format!("record value is not UTF-8: {e}")))
    }

    /// Event time in epoch milliseconds, if the record has one.
    #[inline]
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The record's headers (Kafka headers, for example) as `(name, value)`, in
    /// order. A name can occur more than once.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + use<'a> {
        let data = self.data;
        self.headers
            .iter()
            .map(move |h| (batch::slice(data, h.name), batch::slice(data, h.value)))
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// Deserializes the value as JSON (`serde_json::from_slice`).
    ///
    /// `T` may borrow from the record (`&'a str` fields); the error says what
    /// is wrong and where, and becomes the record's dead-letter message when
    /// returned from `process` or `add`.
    pub fn json<T: Deserialize<'a>>(&self) -> Result<T, Error> {
        // One UTF-8 check of the whole value, then a `&str` parse: serde_json
        // then skips its own check of every string it reads.
        let text = std::str::from_utf8(self.value)?;
        serde_json::from_str(text).map_err(Error::from)
    }
}

impl<'a> Record<'a> {
    /// Deserializes the top-level field `name` of the record's JSON object;
    /// `Ok(None)` when there is no such field. Much faster than
    /// [`Record::json`] when only a few fields of a large object are needed
    /// (see [`crate::json`]).
    ///
    /// For `{"order_id":"o-1","amount":137.52}`, `record.field::<f64>("amount")`
    /// is `Ok(Some(137.52))`, `record.field::<&str>("order_id")` is
    /// `Ok(Some("o-1"))` and a missing field gives `Ok(None)`.
    pub fn field<T: Deserialize<'a>>(&self, name: &str) -> Result<Option<T>, Error> {
        self.fields([name])?[0].get_opt()
    }

    /// Several top-level fields in one pass over the record, each read with
    /// [`Field::get`](crate::json::Field::get) (an error naming the field when
    /// it is missing) or `get_opt`. In a transform or an aggregate the names
    /// of the instance's first call are passed to the host, which from then
    /// on finds those members in every record itself (natively, see
    /// `crate::projection`); the result is the same either way:
    ///
    /// ```text
    /// let [status, amount] = record.fields(["status", "amount"])?;
    /// let (status, amount): (&str, f64) = (status.get()?, amount.get()?);
    /// ```
    pub fn fields<'n, const N: usize>(
        &self,
        names: [&'n str; N],
    ) -> Result<[crate::json::Field<'a, 'n>; N], Error> {
        if let Some((projection, i)) = self.projected
            && let Some(found) = projection.fields(i, self.value, names)
        {
            return Ok(found);
        }
        crate::json::named_fields(self.value, names)
    }
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Bytes<'b>(&'b [u8]);
        impl fmt::Debug for Bytes<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match std::str::from_utf8(self.0) {
                    Ok(s) => fmt::Debug::fmt(s, f),
                    Err(_) => fmt::Debug::fmt(self.0, f),
                }
            }
        }
        struct Headers<'b>(Record<'b>);
        impl fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.headers().map(|(n, v)| (Bytes(n), Bytes(v))))
                    .finish()
            }
        }
        f.debug_struct("Record")
            .field("key", &self.key.map(Bytes))
            .field("value", &Bytes(self.value))
            .field("timestamp", &self.timestamp)
            .field("headers", &Headers(*self))
            .field("kind", &self.kind.short())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;

    fn batch() -> Batch {
        let mut b = BatchBuilder::default();
        b.push(
            Some(b"c-1"),
            br#"{"id":"o-1","amount":1.5}"#,
            Some(1_700_000_000_000),
            [
                (&b"trace"[..], &b"t1"[..]),
                (&b"src"[..], &b"kafka"[..]),
                (&b"trace"[..], &b"t2"[..]),
            ],
        );
        b.push(None, b"\xff\xfe", None, []);
        b.finish()
    }

    #[test]
    fn field_reads_one_top_level_field() {
        let batch = batch();
        let r = Record::from_batch(&batch, 0);
        assert_eq!(r.field::<f64>("amount").unwrap(), Some(1.5));
        assert_eq!(r.field::<&str>("id").unwrap(), Some("o-1"));
        assert_eq!(r.field::<f64>("missing").unwrap(), None);
        let e = r.field::<f64>("id").unwrap_err().to_string();
        assert!(e.starts_with("field \"id\": invalid type"), "{e}");
    }

    #[test]
    fn accessors_read_the_flat_layout() {
        let batch = batch();
        let r = Record::from_batch(&batch, 0);
        assert_eq!(r.key(), Some(&b"c-1"[..]));
        assert_eq!(r.value_str().unwrap(), r#"{"id":"o-1","amount":1.5}"#);
        assert_eq!(r.timestamp(), Some(1_700_000_000_000));
        let headers: Vec<_> = r.headers().collect();
        assert_eq!(
            headers,
            [
                (&b"trace"[..], &b"t1"[..]),
                (&b"src"[..], &b"kafka"[..]),
                (&b"trace"[..], &b"t2"[..]),
            ]
        );
        assert_eq!(r.header("trace"), Some(&b"t1"[..]));
        assert_eq!(r.header("src"), Some(&b"kafka"[..]));
        assert_eq!(r.header("nope"), None);

        let r = Record::from_batch(&batch, 1);
        assert_eq!(r.key(), None);
        assert_eq!(r.timestamp(), None);
        assert_eq!(r.headers().len(), 0);
        let err = r.value_str().unwrap_err().to_string();
        assert!(err.starts_with("record value is not UTF-8"), "{err}");
    }

    #[test]
    fn json_borrows_from_the_batch() {
        #[derive(Deserialize, Debug)]
        struct Order<'a> {
            id: &'a str,
            amount: f64,
        }
        let batch = batch();
        let r = Record::from_batch(&batch, 0);
        let order: Order<'_> = r.json().unwrap();
        assert_eq!((order.id, order.amount), ("o-1", 1.5));
        let id_ptr = order.id.as_ptr() as usize;
        let data = batch.data.as_ptr() as usize;
        assert!((data..data + batch.data.len()).contains(&id_ptr));

        let err = Record::from_batch(&batch, 1)
            .json::<Order<'_>>()
            .unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn debug_shows_text() {
        let batch = batch();
        let shown = format!("{:?}", Record::from_batch(&batch, 0));
        assert!(shown.contains(r#"key: Some("c-1")"#), "{shown}");
        assert!(shown.contains(r#"("src", "kafka")"#), "{shown}");
    }

    #[test]
    #[should_panic(expected = "record 0 has headers")]
    fn headers_outside_the_batch_trap() {
        let mut batch = batch();
        batch.records[0].headers_len = 9;
        Record::from_batch(&batch, 0);
    }
}
