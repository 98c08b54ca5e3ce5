//! [`WindowFunction`]: Flink's `ProcessWindowFunction` — all records of a
//! window at once, for results an incremental [`Aggregate`](crate::Aggregate)
//! cannot compute (percentiles, medians, top-n).

use std::cell::RefCell;

use serde::Serialize;

use crate::batch::{Batch, ByteList, ByteListBuilder, slice};
use crate::bindings::window::exports::sluice::operator::window_function::Window as WitWindow;
use crate::{Config, Error, Record};

/// A window that fired: its key and bounds.
#[derive(Clone, Copy, Debug)]
pub struct Window<'a> {
    /// The key's bytes (with JSON input, the key field's JSON text).
    pub key: &'a [u8],
    /// Start (inclusive) and end (exclusive), epoch milliseconds.
    pub start: i64,
    pub end: i64,
}

/// A full-window function.
///
/// ```
/// use sluice_guest::{Config, Error, Record, Window, WindowFunction};
///
/// /// The largest amount of each window.
/// struct MaxAmount;
///
/// impl WindowFunction for MaxAmount {
///     type Output = serde_json::Value;
///
///     fn open(_config: Config) -> Result<Self, Error> {
///         Ok(MaxAmount)
///     }
///
///     fn process(&mut self, _window: &Window<'_>, records: &[Record<'_>]) -> Result<Self::Output, Error> {
///         let mut max = f64::MIN;
///         for r in records {
///             max = max.max(r.field::<f64>("amount")?.unwrap_or(f64::MIN));
///         }
///         Ok(serde_json::json!({ "max_amount": max }))
///     }
/// }
///
/// sluice_guest::export_window_function!(MaxAmount);
/// ```
///
/// The result's fields go into the window's output row, next to the key and
/// the window bounds. An error stops the job: it concerns a whole window, not
/// one record.
pub trait WindowFunction: Sized + 'static {
    /// Serialized as JSON: an object's fields join the output row.
    type Output: Serialize;

    fn open(config: Config) -> Result<Self, Error>;

    /// All records of one window, in the order they arrived.
    fn process(
        &mut self,
        window: &Window<'_>,
        records: &[Record<'_>],
    ) -> Result<Self::Output, Error>;
}

pub(crate) fn run<T: WindowFunction>(
    op: &mut T,
    windows: &[WitWindow],
    keys: &[u8],
    input: &Batch,
) -> Result<ByteList, String> {
    let mut out = ByteListBuilder::with_capacity(windows.len(), windows.len() * 32);
    let mut records = Vec::new();
    for w in windows {
        let first = w.records.offset as usize;
        let end = first + w.records.len as usize;
        if end > input.records.len() {
            return Err("malformed call from the host: window records out of range".into());
        }
        records.clear();
        records.extend((first..end).map(|i| Record::from_batch(input, i)));
        let window = Window {
            key: slice(keys, w.key),
            start: w.start,
            end: w.end,
        };
        let result = op.process(&window, &records).map_err(|e| {
            format!(
                "window [{}, {}) of key {}: {e}",
                w.start,
                w.end,
                String::from_utf8_lossy(window.key)
            )
        })?;
        out.push_json(&result).map_err(|e| e.to_string())?;
    }
    Ok(out.finish())
}

/// One instance's window function, behind `export_window_function!`.
#[doc(hidden)]
pub struct WindowState<T> {
    inner: RefCell<Option<T>>,
}

impl<T: WindowFunction> WindowState<T> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        WindowState {
            inner: RefCell::new(None),
        }
    }

    pub fn open(&self, config: String) -> Result<(), String> {
        let mut inner = self.inner.borrow_mut();
        *inner = None;
        *inner = Some(T::open(Config::new(config)).map_err(|e| e.to_string())?);
        Ok(())
    }

    pub fn process(
        &self,
        windows: Vec<WitWindow>,
        keys: Vec<u8>,
        input: Batch,
    ) -> Result<ByteList, String> {
        let mut inner = self.inner.borrow_mut();
        let op = inner
            .as_mut()
            .ok_or_else(|| crate::transform::NOT_OPENED.to_owned())?;
        run(op, &windows, &keys, &input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Span;
    use crate::batch::tests::{item, values};

    struct Concat;

    impl WindowFunction for Concat {
        type Output = String;
        fn open(_config: Config) -> Result<Self, Error> {
            Ok(Concat)
        }
        fn process(&mut self, w: &Window<'_>, records: &[Record<'_>]) -> Result<String, Error> {
            let mut s = format!("{}@{}-{}:", String::from_utf8_lossy(w.key), w.start, w.end);
            for r in records {
                s.push_str(r.value_str()?);
            }
            Ok(s)
        }
    }

    #[test]
    fn each_window_sees_its_records_and_bounds() {
        let input = values(&["a", "b", "c"]);
        let windows = [
            WitWindow {
                key: Span { offset: 0, len: 1 },
                start: 0,
                end: 10,
                records: Span { offset: 0, len: 2 },
            },
            WitWindow {
                key: Span { offset: 1, len: 1 },
                start: 10,
                end: 20,
                records: Span { offset: 2, len: 1 },
            },
        ];
        let out = run(&mut Concat, &windows, b"xy", &input).unwrap();
        assert_eq!(item(&out, 0), "\"x@0-10:ab\"");
        assert_eq!(item(&out, 1), "\"y@10-20:c\"");
        let bad = [WitWindow {
            records: Span { offset: 2, len: 5 },
            ..windows[0]
        }];
        assert!(run(&mut Concat, &bad, b"xy", &input).is_err());
    }
}
