//! The guest's side of the `fields` import (transform and aggregate
//! modules): the names of an instance's first [`Record::fields`] call are
//! projected after that call, and from the next call on the host says where
//! those members are in each input record, so that `fields` with the same
//! names reads them without stepping through the record. Any other names, a
//! record the host did not read, or a host that refuses the projection: the
//! SDK scans the record itself, as before. Either way the result is the one
//! [`crate::json`]'s scan gives.
//!
//! [`Record::fields`]: crate::Record::fields

use std::cell::RefCell;

use crate::json::Field;

/// A member the record does not have (its offset in `found`).
const ABSENT: u32 = u32::MAX;
/// A record the host did not read: every pair of it.
const UNREAD: u32 = u32::MAX;
/// The top bit of a length: a string with escapes.
const ESCAPED: u32 = 1 << 31;

/// One instance's projection.
pub(crate) struct Projection {
    /// The names the host finds; empty without a projection.
    names: Vec<String>,
    /// This call's pairs: two per record and name (empty when the host gave
    /// none, or not as many as the call has).
    found: Vec<u32>,
    /// The names of the first `fields` call, projected after the call.
    wanted: RefCell<Option<Vec<String>>>,
    /// Whether a projection was asked for (granted or refused): one per
    /// instance.
    settled: bool,
}

impl Projection {
    pub(crate) const fn new() -> Projection {
        Projection {
            names: Vec::new(),
            found: Vec::new(),
            wanted: RefCell::new(None),
            settled: false,
        }
    }

    /// Before a call on `records` input records: takes what the host found.
    pub(crate) fn begin(&mut self, records: usize, found: impl FnOnce() -> Vec<u32>) {
        self.found.clear();
        if self.names.is_empty() {
            return;
        }
        let pairs = found();
        if Some(pairs.len()) == records.checked_mul(self.names.len() * 2) {
            self.found = pairs;
        }
    }

    /// After a call: asks for the names wanted during it, once.
    pub(crate) fn end(&mut self, project: impl FnOnce(&[String]) -> Result<(), String>) {
        if self.settled {
            return;
        }
        let Some(names) = self.wanted.get_mut().take() else {
            return;
        };
        self.settled = true;
        if project(&names).is_ok() {
            self.names = names;
        }
    }

    /// The members `names` of record `index`, whose value is `value`, as
    /// the host found them; `None` when it did not (then the caller scans).
    pub(crate) fn fields<'a, 'n, const N: usize>(
        &self,
        index: usize,
        value: &'a [u8],
        names: [&'n str; N],
    ) -> Option<[Field<'a, 'n>; N]> {
        if !self.is_projection(&names) {
            if !self.settled && N > 0 {
                let mut wanted = self.wanted.borrow_mut();
                if wanted.is_none() {
                    *wanted = Some(names.iter().map(|n| n.to_string()).collect());
                }
            }
            return None;
        }
        let pairs = self.found.get(index * 2 * N..(index + 1) * 2 * N)?;
        if pairs[0] == UNREAD && pairs[1] == UNREAD {
            return None;
        }
        let mut fields = names.map(|name| Field::located(name, None));
        for (i, field) in fields.iter_mut().enumerate() {
            let (offset, len) = (pairs[2 * i], pairs[2 * i + 1]);
            if offset == ABSENT {
                continue;
            }
            let (start, len) = (offset as usize, (len & !ESCAPED) as usize);
            // The host's word is checked as far as memory safety goes.
            let raw = value.get(start..start.checked_add(len)?)?;
            let escaped = pairs[2 * i + 1] & ESCAPED != 0;
            *field = Field::located(names[i], Some((raw, escaped)));
        }
        Some(fields)
    }

    /// Whether `names` are the projected names, in order, and the host
    /// found them for this call.
    fn is_projection(&self, names: &[&str]) -> bool {
        if self.found.is_empty() || names.len() != self.names.len() {
            return false;
        }
        // Compared as words: in Wasm `==` on slices is a call and a loop.
        names
            .iter()
            .zip(&self.names)
            .all(|(a, b)| crate::json::same_bytes(a.as_bytes(), b.as_bytes()))
    }
}

/// The `fields` import's `found`.
pub(crate) fn host_found() -> Vec<u32> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::transform::sluice::operator::fields::found()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Vec::new()
    }
}

/// The `fields` import's `project`.
pub(crate) fn host_project(names: &[String]) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::transform::sluice::operator::fields::project(names)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = names;
        Err("no host".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Record;
    use crate::batch::tests::values;

    /// `(raw text, escaped)` of each field, as `fields` gives them.
    fn read<const N: usize>(r: &Record<'_>, names: [&str; N]) -> Vec<Option<(String, bool)>> {
        r.fields(names)
            .unwrap()
            .iter()
            .map(|f| {
                f.raw().map(|raw| {
                    let text = String::from_utf8(raw.to_vec()).unwrap();
                    let escaped =
                        text.starts_with('"') && f.str().unwrap() != text[1..text.len() - 1];
                    (text, escaped)
                })
            })
            .collect()
    }

    #[test]
    fn the_first_names_asked_for_are_projected_once() {
        let batch = values(&[r#"{"a":1,"b":2}"#]);
        let mut p = Projection::new();
        p.begin(1, || panic!("no projection: nothing to take"));
        let r = Record::projected(&batch, 0, &p);
        assert_eq!(
            read(&r, ["b", "a"]),
            [Some(("2".into(), false)), Some(("1".into(), false))]
        );
        read(&r, ["a"]);
        let mut asked = Vec::new();
        p.end(|names| {
            asked.push(names.to_vec());
            Ok(())
        });
        assert_eq!(asked, [["b", "a"]], "the first names, once");
        p.end(|_| panic!("settled"));
        assert_eq!(p.names, ["b", "a"]);
        // Refused: the module scans for itself from then on.
        let mut q = Projection::new();
        let r = Record::projected(&batch, 0, &q);
        read(&r, ["a"]);
        q.end(|_| Err("no".into()));
        assert!(q.names.is_empty() && q.settled);
    }

    #[test]
    fn fields_are_read_where_the_host_found_them() {
        // The host's pairs, deliberately different from the text where a
        // scan would find them, to see which one was used.
        let batch = values(&[
            r#"{"a":"x","b":"y\"z"}"#,
            r#"{"a":1}"#,
            r#"{"a":2,"b":3}"#,
            r#"{"a":4,"b":5}"#,
        ]);
        let mut p = Projection::new();
        p.names = vec!["a".into(), "b".into()];
        p.begin(4, || {
            vec![
                13,
                6 | ESCAPED,
                5,
                3, // a is b's value, b is a's
                ABSENT,
                0,
                5,
                1, // a missing, b is "1"
                UNREAD,
                UNREAD,
                UNREAD,
                UNREAD, // not read: scanned
                5,
                100,
                0,
                1, // outside the value: scanned
            ]
        });
        let got = |i: usize| read(&Record::projected(&batch, i, &p), ["a", "b"]);
        assert_eq!(
            got(0),
            [
                Some((r#""y\"z""#.into(), true)),
                Some((r#""x""#.into(), false))
            ]
        );
        assert_eq!(got(1), [None, Some(("1".into(), false))]);
        assert_eq!(
            got(2),
            [Some(("2".into(), false)), Some(("3".into(), false))]
        );
        assert_eq!(
            got(3),
            [Some(("4".into(), false)), Some(("5".into(), false))]
        );
        // Other names, or a record without the projection: scanned.
        let r = Record::projected(&batch, 0, &p);
        assert_eq!(read(&r, ["b"]), [Some((r#""y\"z""#.into(), true))]);
        assert_eq!(read(&r, ["b", "a"])[1], Some((r#""x""#.into(), false)));
        assert_eq!(
            read(&Record::from_batch(&batch, 0), ["a", "b"])[0],
            Some((r#""x""#.into(), false))
        );
    }

    #[test]
    fn pairs_that_do_not_fit_the_call_are_ignored() {
        let batch = values(&[r#"{"a":1}"#, r#"{"a":2}"#]);
        let mut p = Projection::new();
        p.names = vec!["a".into()];
        p.begin(2, || vec![0, 1, 0, 1, 0, 1]);
        assert!(p.found.is_empty());
        assert_eq!(
            read(&Record::projected(&batch, 1, &p), ["a"]),
            [Some(("2".into(), false))]
        );
        p.begin(2, || vec![0, 0, 6, 1]);
        assert_eq!(
            read(&Record::projected(&batch, 1, &p), ["a"]),
            [Some(("}".into(), false))]
        );
    }
}
