//! The host's side of the `fields` import (the import functions are in
//! `imports`): a transform or aggregate module names the top-level members
//! it reads (`project`), and before each call the host finds them in the
//! call's input records ([`Projection::locate`]) for the module to take
//! (`found`). The host's scan is native code and stops at the last member
//! named; in Wasm the same scan costs several times more (cranelift's code,
//! and a deadline check at every loop turn). A transform fed straight by
//! JSON sources asks them to find the members as they check the records
//! ([`crate::runtime::batch::Members`]): the scan is then not made again.

use crate::json::{Located, locate_members};
use crate::runtime::Batch;
// `found`'s pairs are those of a batch's `Members`: an offset of `ABSENT`
// for a member the record does not have, `UNREAD` for every name of a
// record the host did not read, `ESCAPED` in a length for a string with
// escapes.
use crate::runtime::batch::{
    MEMBER_ABSENT as ABSENT, MEMBER_ESCAPED as ESCAPED, MEMBERS_UNREAD as UNREAD, Members,
};

/// At most this many names in a projection.
pub const MAX_NAMES: usize = 32;
/// At most this many bytes in a projected name.
pub const MAX_NAME_BYTES: usize = 256;

/// One instance's projection, and what was found for the current call.
#[derive(Default)]
pub struct Projection {
    names: Vec<Box<[u8]>>,
    found: Vec<u32>,
    scratch: Vec<Option<Located>>,
    /// Whether the log has said that members came with a batch.
    told: bool,
}

impl Projection {
    /// Finds the projected members in every record of `batch` (what `found`
    /// returns during the next call), unless `by_source` (the members the
    /// source found, taken from the batch) has them; nothing without a
    /// projection.
    pub fn locate(&mut self, batch: &Batch, by_source: Option<Members>) {
        self.found.clear();
        if self.names.is_empty() {
            return;
        }
        if let Some(m) = by_source.filter(|m| m.describe(batch, &self.names)) {
            if !self.told {
                self.told = true;
                tracing::debug!("a call's members come with its batch, as its source found them");
            }
            self.found = m.found;
            return;
        }
        let n = self.names.len();
        self.found.reserve(batch.len() * n * 2);
        self.scratch.resize(n, None);
        for record in batch.iter() {
            let value = record.value();
            // Offsets and lengths must fit below the flag bit.
            let read = value.len() < ESCAPED as usize
                && locate_members(value, &self.names, &mut self.scratch);
            if !read {
                for _ in 0..n {
                    self.found.extend_from_slice(&[UNREAD.0, UNREAD.1]);
                }
                continue;
            }
            for slot in &self.scratch {
                match slot {
                    Some(l) => {
                        let len = (l.end - l.start) as u32;
                        self.found.push(l.start as u32);
                        self.found.push(if l.escaped { len | ESCAPED } else { len });
                    }
                    None => self.found.extend_from_slice(&[ABSENT, 0]),
                }
            }
        }
    }

    /// The names projected, if any.
    pub fn names(&self) -> &[Box<[u8]>] {
        &self.names
    }

    /// What was found for the current call, handed over once.
    pub(crate) fn take_found(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.found)
    }

    /// Checks and keeps the names a module projects.
    pub(crate) fn project(&mut self, names: Vec<String>) -> Result<(), String> {
        if names.is_empty() || names.len() > MAX_NAMES {
            return Err(format!(
                "a projection names 1 to {MAX_NAMES} members, not {}",
                names.len()
            ));
        }
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() || name.len() > MAX_NAME_BYTES {
                return Err(format!(
                    "projected name #{i} has {} bytes (1 to {MAX_NAME_BYTES})",
                    name.len()
                ));
            }
            // Such names only match member names written with escapes,
            // which the host leaves to the module.
            if name.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
                return Err(format!(
                    "projected name {name:?} has a quote, backslash or control character"
                ));
            }
            if names[..i].contains(name) {
                return Err(format!("member {name:?} is projected twice"));
            }
        }
        self.names = names
            .into_iter()
            .map(|n| n.into_bytes().into_boxed_slice())
            .collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::batch::Origin;

    fn batch(values: &[&str]) -> Batch {
        let mut b = Batch::default();
        for (i, v) in values.iter().enumerate() {
            let origin = Origin {
                split: 0,
                position: i as u64,
            };
            b.push(None, v.as_bytes(), None, origin);
        }
        b
    }

    #[test]
    fn finds_the_projected_members_of_each_record() {
        let mut p = Projection::default();
        p.locate(&batch(&[r#"{"a":1}"#]), None);
        assert!(p.found.is_empty(), "nothing without a projection");
        p.project(vec!["b".into(), "a".into()]).unwrap();
        let values = [
            r#"{"a":1,"b":"x\"y"}"#,
            r#" { "b" : [1,{"a":2}] , "c":3 } "#,
            r#"[1,2]"#,
            r#"{"a":true,"a":false}"#,
            r#"{"a\u0062":1,"b":2}"#,
        ];
        p.locate(&batch(&values), None);
        let u = UNREAD;
        assert_eq!(
            p.found,
            [
                11,
                6 | ESCAPED,
                5,
                1, // b then a
                9,
                11,
                ABSENT,
                0, // b nested; no a
                u.0,
                u.1,
                u.0,
                u.1, // not an object
                ABSENT,
                0,
                5,
                4, // the first a
                u.0,
                u.1,
                u.0,
                u.1, // an escaped member name
            ]
        );
        // `found` hands the pairs over once.
        assert_eq!(p.take_found().len(), 20);
        assert!(p.take_found().is_empty());
    }

    /// Members a source found for the batch are taken as they are (here
    /// deliberately not where a scan would find them, to see which was
    /// used); for other names the host scans.
    #[test]
    fn takes_the_members_the_source_found() {
        let mut p = Projection::default();
        p.project(vec!["a".into()]).unwrap();
        let b = batch(&[r#"{"a":1}"#, r#"{"a":22}"#]);
        let mut members = Members {
            names: vec![b"a"[..].into()].into(),
            found: vec![0, 1, 2, 3],
        };
        p.locate(&b, Some(members.clone()));
        assert_eq!(p.take_found(), [0, 1, 2, 3]);
        members.names = vec![b"b"[..].into()].into();
        p.locate(&b, Some(members.clone()));
        assert_eq!(p.take_found(), [5, 1, 5, 2]);
        members.names = vec![b"a"[..].into()].into();
        members.found.truncate(2);
        p.locate(&b, Some(members));
        assert_eq!(p.take_found(), [5, 1, 5, 2], "not every record's");
    }

    #[test]
    fn refuses_projections_it_cannot_serve() {
        let mut p = Projection::default();
        let refused = |p: &mut Projection, names: &[&str]| {
            p.project(names.iter().map(|n| n.to_string()).collect())
                .unwrap_err()
        };
        assert!(refused(&mut p, &[]).contains("1 to 32"));
        assert!(refused(&mut p, &["a"; 33]).contains("not 33"));
        assert!(refused(&mut p, &[""]).contains("0 bytes"));
        assert!(refused(&mut p, &[&"x".repeat(257)]).contains("257 bytes"));
        assert!(refused(&mut p, &["a\"b"]).contains("quote"));
        assert!(refused(&mut p, &["a", "b", "a"]).contains("twice"));
        assert!(p.names.is_empty(), "a refused projection changes nothing");
        p.project(vec!["a".into()]).unwrap();
        refused(&mut p, &["a\\"]);
        assert_eq!(p.names, [b"a".to_vec().into_boxed_slice()]);
    }
}
