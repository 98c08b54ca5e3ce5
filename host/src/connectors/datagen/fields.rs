//! `schema: fields`: records of named fields, each a sequence or random
//! values within bounds — Flink's `datagen` connector, which `sluice sql`
//! maps its `fields.<name>.*` options onto. Random values come from a
//! seeded generator (splitmix64), so a run is reproducible.

use serde::Deserialize;

/// One generated field.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(default)]
    pub kind: FieldKind,
    /// `sequence`: the first and last value (both included).
    #[serde(default)]
    pub start: Option<i64>,
    #[serde(default)]
    pub end: Option<i64>,
    /// `random` numbers: the bounds (both included for integers).
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// `random` strings: their length (Flink's default, 100).
    #[serde(default)]
    pub length: Option<usize>,
    /// `decimal`: digits after the point.
    #[serde(default)]
    pub scale: u8,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Int,
    Bigint,
    Double,
    Decimal,
    String,
    Boolean,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    #[default]
    Random,
    Sequence,
}

impl FieldSpec {
    /// Checks the bounds; returns how many values a sequence has.
    pub fn check(&self) -> Result<Option<u64>, String> {
        let n = &self.name;
        match self.kind {
            FieldKind::Sequence => {
                let (Some(s), Some(e)) = (self.start, self.end) else {
                    return Err(format!("field `{n}`: a sequence needs `start` and `end`"));
                };
                if e < s {
                    return Err(format!(
                        "field `{n}`: the sequence ends ({e}) before it starts ({s})"
                    ));
                }
                if !matches!(
                    self.ty,
                    FieldType::Int | FieldType::Bigint | FieldType::String | FieldType::Decimal
                ) {
                    return Err(format!(
                        "field `{n}`: a sequence of {:?} is not supported",
                        self.ty
                    ));
                }
                if self.ty == FieldType::Int && (s < i32::MIN as i64 || e > i32::MAX as i64) {
                    return Err(format!("field `{n}`: the sequence leaves INT's range"));
                }
                Ok(Some((e - s) as u64 + 1))
            }
            FieldKind::Random => {
                if let (Some(lo), Some(hi)) = (self.min, self.max)
                    && hi < lo
                {
                    return Err(format!("field `{n}`: `max` ({hi}) is below `min` ({lo})"));
                }
                if self.scale > 18 {
                    return Err(format!("field `{n}`: a scale of at most 18"));
                }
                Ok(None)
            }
        }
    }
}

/// Generates records of the fields, one JSON object each.
pub struct FieldsGenerator {
    fields: Vec<FieldSpec>,
    state: u64,
    generated: u64,
}

impl FieldsGenerator {
    pub fn new(fields: Vec<FieldSpec>, seed: u64) -> FieldsGenerator {
        FieldsGenerator {
            fields,
            state: seed,
            generated: 0,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform f64 in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform integer in [lo, hi].
    fn int_in(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi as i128 - lo as i128 + 1) as u128;
        (lo as i128 + (self.next_u64() as u128 % span) as i128) as i64
    }

    /// Appends the next record (a JSON object, no newline) to `out`.
    pub fn next_into(&mut self, out: &mut Vec<u8>) {
        let i = self.generated;
        self.generated += 1;
        out.push(b'{');
        // Taken out while the random source, also `self`'s, is drawn from.
        let fields = std::mem::take(&mut self.fields);
        for (k, f) in fields.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            crate::json::write_str(out, f.name.as_bytes());
            out.push(b':');
            if f.kind == FieldKind::Sequence {
                let v = f.start.unwrap_or(0) + i as i64;
                match f.ty {
                    FieldType::String => {
                        out.push(b'"');
                        crate::json::write_i64(out, v);
                        out.push(b'"');
                    }
                    _ => crate::json::write_i64(out, v),
                }
                continue;
            }
            match f.ty {
                FieldType::Int | FieldType::Bigint => {
                    let (lo, hi) = if f.ty == FieldType::Int {
                        (i32::MIN as i64, i32::MAX as i64)
                    } else {
                        (i64::MIN, i64::MAX)
                    };
                    let lo = f.min.map_or(lo, |m| m.ceil() as i64);
                    let hi = f.max.map_or(hi, |m| m.floor() as i64);
                    let v = self.int_in(lo, hi.max(lo));
                    crate::json::write_i64(out, v);
                }
                FieldType::Double => {
                    let (lo, hi) = (
                        f.min.unwrap_or(f64::MIN / 2.0),
                        f.max.unwrap_or(f64::MAX / 2.0),
                    );
                    let v = lo + self.unit() * (hi - lo);
                    out.extend_from_slice(format!("{v:?}").as_bytes());
                }
                FieldType::Decimal => {
                    let p = 10f64.powi(f.scale as i32);
                    let lo = (f.min.unwrap_or(0.0) * p).ceil() as i64;
                    let hi = (f.max.unwrap_or(9_999_999.0) * p).floor() as i64;
                    let v = self.int_in(lo, hi.max(lo));
                    crate::json::write_decimal(out, v as i128, f.scale as u32);
                }
                FieldType::String => {
                    const ALPHABET: &[u8] = b"0123456789abcdef";
                    out.push(b'"');
                    for _ in 0..f.length.unwrap_or(100) {
                        out.push(ALPHABET[(self.next_u64() % 16) as usize]);
                    }
                    out.push(b'"');
                }
                FieldType::Boolean => {
                    let b = self.next_u64() & 1 == 1;
                    out.extend_from_slice(if b { b"true" } else { b"false" });
                }
            }
        }
        self.fields = fields;
        out.push(b'}');
    }

    pub fn generated(&self) -> u64 {
        self.generated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, ty: FieldType, kind: FieldKind) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            ty,
            kind,
            start: Some(5),
            end: Some(7),
            min: Some(1.0),
            max: Some(3.0),
            length: Some(4),
            scale: 2,
        }
    }

    #[test]
    fn sequences_count_up_and_random_values_stay_in_bounds() {
        let fields = vec![
            field("id", FieldType::Bigint, FieldKind::Sequence),
            field("n", FieldType::Int, FieldKind::Random),
            field("d", FieldType::Decimal, FieldKind::Random),
            field("s", FieldType::String, FieldKind::Random),
        ];
        assert_eq!(fields[0].check(), Ok(Some(3)));
        let mut g = FieldsGenerator::new(fields, 7);
        for i in 0..3 {
            let mut line = Vec::new();
            g.next_into(&mut line);
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["id"], 5 + i);
            assert!((1..=3).contains(&v["n"].as_i64().unwrap()), "{v}");
            let d = v["d"].as_f64().unwrap();
            assert!((1.0..=3.0).contains(&d), "{v}");
            assert_eq!(v["s"].as_str().unwrap().len(), 4);
        }
        let mut again = FieldsGenerator::new(g.fields.clone(), 7);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        again.next_into(&mut a);
        FieldsGenerator::new(g.fields.clone(), 7).next_into(&mut b);
        assert_eq!(a, b, "a seed gives the same records");
    }
}
