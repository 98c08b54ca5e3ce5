//! Keys and key groups.
//!
//! A `key_by` names one or more fields of the record value (JSON pointers);
//! the key is the JSON text of that field (`"c-17"` with its quotes, or
//! `42`), or a JSON array of the fields' texts for a composite key. Keys are
//! compared byte for byte.
//!
//! Keys are spread over subtasks by key group (see
//! [`crate::state::key_groups`]).

use crate::json::{self, Pointer};

/// Extracts keys from record values.
#[derive(Clone, Debug)]
pub struct KeySelector {
    pointers: Vec<Pointer>,
}

impl KeySelector {
    pub fn new(pointers: Vec<Pointer>) -> KeySelector {
        assert!(!pointers.is_empty() && pointers.len() <= 64);
        KeySelector { pointers }
    }

    /// The output field name for the key: the pointer's last segment for a
    /// single field, `key` for a composite key.
    pub fn field_name(&self) -> &str {
        match self.pointers.as_slice() {
            [p] => p.last_name().unwrap_or("key"),
            _ => "key",
        }
    }

    pub fn describe(&self) -> String {
        let ps: Vec<_> = self.pointers.iter().map(Pointer::as_str).collect();
        ps.join(", ")
    }

    /// The fields the key is made of.
    pub fn pointers(&self) -> &[Pointer] {
        &self.pointers
    }

    /// Writes the key of `value` into `out` (cleared first). Fails with a
    /// message when the value lacks a key field or is not JSON up to it;
    /// reading stops at the key (values were checked when they entered the
    /// pipeline).
    pub fn extract(&self, value: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        // On the stack for up to 8 fields: this runs for every record.
        let mut found = json::Slots::<_, 8>::new(None, self.pointers.len());
        let found = found.slice();
        match self.pointers.as_slice() {
            [p] => found[0] = json::find_fast(value, p).map_err(|e| e.to_string())?,
            _ => json::find_many_fast(value, &self.pointers, found).map_err(|e| e.to_string())?,
        }
        self.assemble(found, out)
    }

    /// Writes into `out` (cleared first) the key made of the fields' texts
    /// `found[i]` (one per pointer, in order, found in a value that was
    /// checked): a field's text for one field, their JSON array for several.
    pub fn assemble(&self, found: &[Option<&[u8]>], out: &mut Vec<u8>) -> Result<(), String> {
        out.clear();
        let missing = |p: &Pointer| format!("no key field at {p}");
        if let ([p], [raw]) = (self.pointers.as_slice(), found) {
            out.extend_from_slice(raw.ok_or_else(|| missing(p))?);
            return Ok(());
        }
        out.push(b'[');
        for (i, (raw, p)) in found.iter().zip(&self.pointers).enumerate() {
            let raw = raw.ok_or_else(|| missing(p))?;
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(raw);
        }
        out.push(b']');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_single_and_composite_keys() {
        let one = KeySelector::new(vec![Pointer::parse("/customer_id").unwrap()]);
        let mut out = Vec::new();
        one.extract(br#"{"customer_id":"c-3","amount":1}"#, &mut out)
            .unwrap();
        assert_eq!(out, br#""c-3""#);
        assert_eq!(one.field_name(), "customer_id");
        let err = one.extract(br#"{"amount":1}"#, &mut out).unwrap_err();
        assert!(err.contains("/customer_id"), "{err}");
        assert!(
            one.extract(b"{nope", &mut out)
                .unwrap_err()
                .contains("invalid JSON")
        );

        let two = KeySelector::new(vec![
            Pointer::parse("/a").unwrap(),
            Pointer::parse("/b/c").unwrap(),
        ]);
        two.extract(br#"{"b":{"c":7},"a":"x"}"#, &mut out).unwrap();
        assert_eq!(out, br#"["x",7]"#);
        assert_eq!(two.field_name(), "key");
    }
}
