//! The built-in aggregate functions: count, sum, min, max and avg of a field,
//! with fixed-size binary accumulators ([`NativeAggregator`]). The contract
//! they implement, [`Aggregator`], lives in [`crate::runtime::aggregate`],
//! beside the Wasm aggregators' use of it.

use crate::error::RuntimeError;
use crate::json::{self, Number, Pointer};
pub use crate::runtime::aggregate::{Aggregator, AggregatorFactory, ByteList, InPlace, WindowRef};
use crate::runtime::batch::Span;
use crate::runtime::{Batch, NodeInfo, Output};
use async_trait::async_trait;
use std::sync::Arc;

pub use crate::runtime::aggregate::NativeFn;

/// One native function, compiled from the spec.
#[derive(Debug, Clone)]
pub struct NativeAgg {
    pub func: NativeFn,
    pub field: Option<Pointer>,
    /// Output field name.
    pub name: String,
}

/// A number accumulator: exact decimal while it can be, float otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    None,
    Dec { mantissa: i128, scale: u32 },
    Float(f64),
}

const NUM_BYTES: usize = 1 + 4 + 16 + 8;

impl Num {
    fn from_number(n: Number) -> Num {
        match n {
            Number::Decimal { mantissa, scale } => Num::Dec { mantissa, scale },
            Number::Float(f) => Num::Float(f),
        }
    }

    fn to_f64(self) -> Option<f64> {
        match self {
            Num::None => None,
            Num::Dec { mantissa, scale } => Some(Number::Decimal { mantissa, scale }.to_f64()),
            Num::Float(f) => Some(f),
        }
    }

    fn add(self, other: Num) -> Num {
        match (self, other) {
            (Num::None, x) | (x, Num::None) => x,
            (
                Num::Dec {
                    mantissa: a,
                    scale: sa,
                },
                Num::Dec {
                    mantissa: b,
                    scale: sb,
                },
            ) => {
                let scale = sa.max(sb);
                let up = |m: i128, s: u32| m.checked_mul(10i128.checked_pow(scale - s)?);
                match (up(a, sa), up(b, sb)) {
                    (Some(x), Some(y)) => match x.checked_add(y) {
                        Some(mantissa) => Num::Dec { mantissa, scale },
                        None => {
                            Num::Float(self.to_f64().unwrap_or(0.0) + other.to_f64().unwrap_or(0.0))
                        }
                    },
                    _ => Num::Float(self.to_f64().unwrap_or(0.0) + other.to_f64().unwrap_or(0.0)),
                }
            }
            (a, b) => Num::Float(a.to_f64().unwrap_or(0.0) + b.to_f64().unwrap_or(0.0)),
        }
    }

    fn pick(self, other: Num, want_less: bool) -> Num {
        match (self.to_f64(), other.to_f64()) {
            (None, _) => other,
            (_, None) => self,
            (Some(a), Some(b)) => {
                if (b < a) == want_less && b != a {
                    other
                } else {
                    self
                }
            }
        }
    }

    fn encode(self, out: &mut [u8]) {
        out.fill(0);
        match self {
            Num::None => {}
            Num::Dec { mantissa, scale } => {
                out[0] = 1;
                out[1..5].copy_from_slice(&scale.to_le_bytes());
                out[5..21].copy_from_slice(&mantissa.to_le_bytes());
            }
            Num::Float(f) => {
                out[0] = 2;
                out[21..29].copy_from_slice(&f.to_le_bytes());
            }
        }
    }

    fn decode(b: &[u8]) -> Num {
        match b[0] {
            1 => Num::Dec {
                scale: u32::from_le_bytes(b[1..5].try_into().expect("4 bytes")),
                mantissa: i128::from_le_bytes(b[5..21].try_into().expect("16 bytes")),
            },
            2 => Num::Float(f64::from_le_bytes(b[21..29].try_into().expect("8 bytes"))),
            _ => Num::None,
        }
    }

    fn write_json(self, out: &mut Vec<u8>) {
        match self {
            Num::None => out.extend_from_slice(b"null"),
            Num::Dec { mantissa, scale } => json::write_decimal(out, mantissa, scale),
            Num::Float(f) => write_f64(out, f),
        }
    }
}

fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        out.extend_from_slice(serde_json::to_string(&f).expect("finite float").as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// count, sum, min, max and avg of fields, as a row of fixed-size slots.
pub struct NativeAggregator {
    aggs: Vec<NativeAgg>,
    /// Distinct field pointers, looked up in one pass per record.
    fields: Vec<Pointer>,
    /// For each agg: index into `fields`, and byte offset of its slot.
    layout: Vec<(Option<usize>, usize)>,
    empty: Vec<u8>,
    found: Vec<Option<Num>>,
}

impl NativeAggregator {
    pub fn new(aggs: Vec<NativeAgg>) -> NativeAggregator {
        let mut fields: Vec<Pointer> = Vec::new();
        let mut layout = Vec::new();
        let mut offset = 0;
        for a in &aggs {
            let field = a
                .field
                .as_ref()
                .map(|p| match fields.iter().position(|f| f == p) {
                    Some(i) => i,
                    None => {
                        fields.push(p.clone());
                        fields.len() - 1
                    }
                });
            layout.push((field, offset));
            offset += slot_size(a.func);
        }
        let found = vec![None; fields.len()];
        NativeAggregator {
            aggs,
            fields,
            layout,
            empty: vec![0; offset],
            found,
        }
    }

    /// Reads the fields of one record. `Ok(None)` for a field that is
    /// missing or null (it is skipped, as SQL aggregates skip NULL).
    fn read_fields(&mut self, value: &[u8]) -> Result<(), String> {
        // On the stack for up to 8 fields: this runs for every record.
        let mut raw = json::Slots::<_, 8>::new(None, self.fields.len());
        let raw = raw.slice();
        json::find_many_fast(value, &self.fields, raw).map_err(|e| e.to_string())?;
        for (i, r) in raw.iter().enumerate() {
            self.found[i] = match r {
                None | Some(b"null") => None,
                Some(text) => Some(Num::from_number(Number::parse(text).ok_or_else(|| {
                    format!(
                        "field {} is not a number: {}",
                        self.fields[i],
                        String::from_utf8_lossy(text)
                    )
                })?)),
            };
        }
        Ok(())
    }

    /// Adds the fields `read_fields` found to `acc`.
    fn add_found(&self, acc: &mut [u8]) {
        for (a, &(field, off)) in self.aggs.iter().zip(&self.layout) {
            let v = field.and_then(|f| self.found[f]);
            let slot = &mut acc[off..off + slot_size(a.func)];
            match a.func {
                NativeFn::Count => {
                    let n = u64::from_le_bytes(slot[..8].try_into().expect("8 bytes"));
                    slot.copy_from_slice(&(n + 1).to_le_bytes());
                }
                NativeFn::Sum | NativeFn::Min | NativeFn::Max => {
                    if let Some(v) = v {
                        let cur = Num::decode(slot);
                        let next = match a.func {
                            NativeFn::Sum => cur.add(v),
                            NativeFn::Min => cur.pick(v, true),
                            _ => cur.pick(v, false),
                        };
                        next.encode(slot);
                    }
                }
                NativeFn::Avg => {
                    if let Some(v) = v {
                        Num::decode(&slot[..NUM_BYTES])
                            .add(v)
                            .encode(&mut slot[..NUM_BYTES]);
                        let n = u64::from_le_bytes(slot[NUM_BYTES..].try_into().expect("8 bytes"));
                        slot[NUM_BYTES..].copy_from_slice(&(n + 1).to_le_bytes());
                    }
                }
            }
        }
    }

    fn merge_into(&self, acc: &mut [u8], other: &[u8]) {
        for (a, &(_, off)) in self.aggs.iter().zip(&self.layout) {
            let size = slot_size(a.func);
            let (slot, o) = (&mut acc[off..off + size], &other[off..off + size]);
            match a.func {
                NativeFn::Count => {
                    let n = u64::from_le_bytes(slot[..8].try_into().expect("8 bytes"))
                        + u64::from_le_bytes(o[..8].try_into().expect("8 bytes"));
                    slot.copy_from_slice(&n.to_le_bytes());
                }
                NativeFn::Sum => Num::decode(slot).add(Num::decode(o)).encode(slot),
                NativeFn::Min => Num::decode(slot).pick(Num::decode(o), true).encode(slot),
                NativeFn::Max => Num::decode(slot).pick(Num::decode(o), false).encode(slot),
                NativeFn::Avg => {
                    let sum = Num::decode(&slot[..NUM_BYTES]).add(Num::decode(&o[..NUM_BYTES]));
                    sum.encode(&mut slot[..NUM_BYTES]);
                    let n = u64::from_le_bytes(slot[NUM_BYTES..].try_into().expect("8 bytes"))
                        + u64::from_le_bytes(o[NUM_BYTES..].try_into().expect("8 bytes"));
                    slot[NUM_BYTES..].copy_from_slice(&n.to_le_bytes());
                }
            }
        }
    }

    fn result(&self, acc: &[u8], out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (a, &(_, off))) in self.aggs.iter().zip(&self.layout).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json::write_str(out, a.name.as_bytes());
            out.push(b':');
            let slot = &acc[off..off + slot_size(a.func)];
            match a.func {
                NativeFn::Count => json::write_i64(
                    out,
                    u64::from_le_bytes(slot.try_into().expect("8 bytes")) as i64,
                ),
                NativeFn::Sum | NativeFn::Min | NativeFn::Max => Num::decode(slot).write_json(out),
                NativeFn::Avg => {
                    let n = u64::from_le_bytes(slot[NUM_BYTES..].try_into().expect("8 bytes"));
                    match Num::decode(&slot[..NUM_BYTES]).to_f64() {
                        Some(sum) if n > 0 => write_f64(out, sum / n as f64),
                        _ => out.extend_from_slice(b"null"),
                    }
                }
            }
        }
        out.push(b'}');
    }
}

fn slot_size(f: NativeFn) -> usize {
    match f {
        NativeFn::Count => 8,
        NativeFn::Sum | NativeFn::Min | NativeFn::Max => NUM_BYTES,
        NativeFn::Avg => NUM_BYTES + 8,
    }
}

impl InPlace for NativeAggregator {
    fn add_one(&mut self, acc: &mut [u8], record: &[u8]) -> Result<(), String> {
        if !self.fields.is_empty() {
            self.read_fields(record)?;
        }
        self.add_found(acc);
        Ok(())
    }

    fn fold(&self, acc: &mut [u8], other: &[u8]) {
        self.merge_into(acc, other);
    }
}

#[async_trait]
impl Aggregator for NativeAggregator {
    fn empty(&self) -> &[u8] {
        &self.empty
    }

    fn in_place(&mut self) -> Option<&mut dyn InPlace> {
        Some(self)
    }

    async fn add(
        &mut self,
        accs: &mut ByteList,
        input: &Batch,
        targets: &[u32],
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        for (i, &t) in targets.iter().enumerate() {
            let record = input.get(i);
            if let Err(reason) = self.add_one(accs.get_mut(t as usize), record.value()) {
                out.dead_letter(record, &reason)?;
            }
        }
        Ok(())
    }

    async fn merge(&mut self, accs: &ByteList, groups: &[Span]) -> Result<ByteList, RuntimeError> {
        let mut merged = ByteList::default();
        let mut acc = Vec::with_capacity(self.empty.len());
        for g in groups {
            acc.clear();
            acc.extend_from_slice(&self.empty);
            for i in g.range() {
                self.merge_into(&mut acc, accs.get(i));
            }
            merged.push(&acc);
        }
        Ok(merged)
    }

    async fn results(
        &mut self,
        accs: &ByteList,
        _windows: &[WindowRef<'_>],
    ) -> Result<ByteList, RuntimeError> {
        let mut results = ByteList::default();
        let mut buf = Vec::new();
        for i in 0..accs.len() {
            buf.clear();
            self.result(accs.get(i), &mut buf);
            results.push(&buf);
        }
        Ok(results)
    }
}

/// Built-in aggregate functions, computed by the host.
pub struct NativeAggregates(pub Vec<NativeAgg>);

impl AggregatorFactory for NativeAggregates {
    fn create(&self, _info: &Arc<NodeInfo>) -> Box<dyn Aggregator> {
        Box::new(NativeAggregator::new(self.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{NodeInfo, Origin, Splits};
    use std::sync::Arc;

    fn agg(func: NativeFn, field: Option<&str>, name: &str) -> NativeAgg {
        NativeAgg {
            func,
            field: field.map(|f| Pointer::parse(f).unwrap()),
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn native_aggregates_are_exact_on_decimals_and_merge() {
        let mut a = NativeAggregator::new(vec![
            agg(NativeFn::Count, None, "n"),
            agg(NativeFn::Sum, Some("/x"), "sum"),
            agg(NativeFn::Min, Some("/x"), "min"),
            agg(NativeFn::Max, Some("/x"), "max"),
            agg(NativeFn::Avg, Some("/x"), "avg"),
        ]);
        let mut input = Batch::default();
        for v in [
            r#"{"x":0.1}"#,
            r#"{"x":0.2}"#,
            r#"{"x":-1.25}"#,
            r#"{"y":1}"#,
            r#"{"x":"a"}"#,
        ] {
            input.push(None, v.as_bytes(), None, Origin::NONE);
        }
        let mut accs = ByteList::default();
        accs.push(a.empty());
        accs.push(a.empty());
        let info = Arc::new(NodeInfo {
            uid: "w".into(),
            has_dead_letter: true,
            splits: Arc::new(Splits::default()),
            metrics: Arc::new(crate::runtime::NodeMetrics::new(1)),
            changelog: false,
        });
        let mut out = Output::new(info);
        a.add(&mut accs, &input, &[0, 0, 1, 0, 0], &mut out)
            .await
            .unwrap();
        let dead: Vec<_> = out.drain().collect();
        assert_eq!(dead[0].1.len(), 1, "the string value is rejected");
        let r = a.results(&accs, &[]).await.unwrap();
        assert_eq!(
            std::str::from_utf8(r.get(0)).unwrap(),
            r#"{"n":3,"sum":0.3,"min":0.1,"max":0.2,"avg":0.15}"#
        );
        let m = a.merge(&accs, &[Span { offset: 0, len: 2 }]).await.unwrap();
        let r = a.results(&m, &[]).await.unwrap();
        assert_eq!(
            std::str::from_utf8(r.get(0)).unwrap(),
            r#"{"n":4,"sum":-0.95,"min":-1.25,"max":0.2,"avg":-0.31666666666666665}"#
        );
    }

    #[test]
    fn decimals_print_exactly() {
        let mut out = Vec::new();
        json::write_decimal(&mut out, -5, 2);
        out.push(b' ');
        json::write_decimal(&mut out, 13752, 2);
        out.push(b' ');
        json::write_decimal(&mut out, 7, 0);
        assert_eq!(out, b"-0.05 137.52 7");
    }
}
