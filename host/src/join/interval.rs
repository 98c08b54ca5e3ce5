//! `interval_join:` — Flink's interval join of two keyed streams.
//!
//! For every key, every left record `l` and right record `r` with
//! `l.ts + lower <= r.ts <= l.ts + upper` make one output row, whose event
//! time is `max(l.ts, r.ts)`. Either bound may be made exclusive; bounds may
//! be negative, and `lower == upper` is allowed (`lower > upper` is a plan
//! error). Pairs are emitted as soon as their second record arrives, so the
//! output does not wait for the watermark.
//!
//! Each side's records are buffered per key, in time order, until no record
//! of the other side can match them any more: a left record goes once the
//! watermark reaches `l.ts + upper`, a right one once it reaches
//! `r.ts - lower` (a cleanup timer per key and side, as Flink's). A record
//! that can match nothing that is still to come is not buffered at all.
//! After the final watermark nothing is left.
//!
//! The records are held in [`Buffers`], on either state backend; a timer
//! (time, key, side) says when some of a key's records of a side can go.

use super::buffer::{Buffers, Held};
use super::{JoinLogic, LEFT, Row, SIDES, Select, planned};
use crate::error::{PlanError, StateError};
use crate::runtime::kind::{OperatorKind, PlanContext, Planned, error, field};
use crate::runtime::{Batch, RecordRef};
use crate::units::SignedDur;
use serde::Deserialize;
use smallvec::SmallVec;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntervalSpec {
    lower: SignedDur,
    upper: SignedDur,
    #[serde(default)]
    lower_exclusive: bool,
    #[serde(default)]
    upper_exclusive: bool,
}

/// The join's bounds, inclusive, in milliseconds: `r.ts - l.ts` in
/// `lower..=upper`.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub lower: i64,
    pub upper: i64,
}

impl Bounds {
    /// The times of the other side's records that match a record of `side`
    /// at `ts`.
    fn matching(self, side: usize, ts: i64) -> (i64, i64) {
        if side == LEFT {
            (ts.saturating_add(self.lower), ts.saturating_add(self.upper))
        } else {
            (ts.saturating_sub(self.upper), ts.saturating_sub(self.lower))
        }
    }

    /// The watermark at which a record of `side` at `ts` can match nothing
    /// more: every record of the other side still to come is later than
    /// its range.
    fn cleanup(self, side: usize, ts: i64) -> i64 {
        self.matching(side, ts).1
    }
}

pub struct IntervalJoinKind;

impl OperatorKind for IntervalJoinKind {
    fn tag(&self) -> &'static str {
        "interval_join"
    }

    fn what(&self) -> &'static str {
        "an interval join"
    }

    fn fields(&self) -> &'static [&'static str] {
        &["select"]
    }

    fn inputs(&self) -> &'static [&'static str] {
        SIDES
    }

    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError> {
        let spec = field::<IntervalSpec>(cx, "interval_join")?.expect("the tag is set");
        let lower = spec.lower.0.saturating_add(spec.lower_exclusive as i64);
        let upper = spec.upper.0.saturating_sub(spec.upper_exclusive as i64);
        if lower > upper {
            return Err(error(
                cx,
                "interval_join",
                format!(
                    "the bounds admit no pair: `lower` ({} ms{}) is above `upper` ({} ms{})",
                    spec.lower.0,
                    if spec.lower_exclusive {
                        ", exclusive"
                    } else {
                        ""
                    },
                    spec.upper.0,
                    if spec.upper_exclusive {
                        ", exclusive"
                    } else {
                        ""
                    },
                ),
            ));
        }
        let logic = IntervalJoin {
            bounds: Bounds { lower, upper },
            select: Arc::new(Select::plan(cx)?),
        };
        planned(cx, "(one key, or one per input)", logic)
    }
}

/// An interval join's settings.
pub struct IntervalJoin {
    pub bounds: Bounds,
    pub select: Arc<Select>,
}

impl JoinLogic for IntervalJoin {
    fn kind(&self) -> &'static str {
        "interval_join"
    }

    fn what(&self) -> &'static str {
        "an interval join"
    }

    fn record(
        &self,
        held: &mut Buffers,
        watermark: i64,
        side: usize,
        record: RecordRef<'_>,
        ts: i64,
        key: &[u8],
        rows: &mut Batch,
        late: &mut Batch,
    ) -> Result<(), StateError> {
        if ts <= watermark {
            late.push_record(record, None);
            return Ok(());
        }
        let other = 1 - side;
        let (from, to) = self.bounds.matching(side, ts);
        let cleanup = self.bounds.cleanup(side, ts);
        // A record that will be held takes its key's id at once: one lookup.
        let k = if cleanup > watermark {
            Some(held.intern(key))
        } else {
            held.keys.find(key)
        };
        let mut matches: SmallVec<[Held; 4]> = SmallVec::new();
        if let Some(k) = k {
            let list = &held.keys.get(k).sides[other];
            let start = list.partition_point(|h| h.ts < from);
            matches.extend(list[start..].iter().take_while(|h| h.ts <= to).copied());
        }
        for m in &matches {
            held.with(m.slot, |stored| {
                let mut sides = [None, None];
                sides[side] = Some((record.value(), ts));
                sides[other] = Some((stored, m.ts));
                rows.push_built(Some(key), Some(ts.max(m.ts)), record.origin(), |v| {
                    self.select.write(
                        &Row {
                            key,
                            sides,
                            window: None,
                        },
                        v,
                    )
                });
            })?;
        }
        if cleanup > watermark {
            let k = k.expect("interned");
            held.hold(k, side, ts, record.value())?;
            held.timers.insert(cleanup, k, side as u8);
        }
        // Else nothing still to come on the other side can match it.
        Ok(())
    }

    /// Lets go of the records no future record can match.
    fn advance(
        &self,
        held: &mut Buffers,
        watermark: i64,
        _rows: &mut Batch,
    ) -> Result<(), StateError> {
        while let Some((_, k, side)) = held.timers.pop_due(watermark) {
            let side = side as usize;
            // A key released by an earlier timer of this advance.
            let Some(entry) = held.keys.live_mut(k) else {
                continue;
            };
            let bounds = self.bounds;
            let gone =
                entry.sides[side].partition_point(|h| bounds.cleanup(side, h.ts) <= watermark);
            held.drop_range(k, side, 0..gone)?;
        }
        Ok(())
    }

    fn timers(&self, side: usize, ts: i64, add: &mut dyn FnMut(i64, u8)) {
        add(self.bounds.cleanup(side, ts), side as u8)
    }

    /// The timers only let go of records: one may go up to 1/512 of the
    /// interval (at most ~1 s) after it could have, which keeps each
    /// record's timer a push to a list instead of a B-tree insert.
    fn timer_grain(&self) -> i64 {
        grain_of(self.bounds)
    }
}

/// The largest power of two at most 1/512 of the interval's length, between
/// 1 and 1024 ms.
fn grain_of(bounds: Bounds) -> i64 {
    let span = bounds.upper.saturating_sub(bounds.lower) / 512;
    if span <= 1 {
        1
    } else {
        (1i64 << (63 - span.leading_zeros())).min(1024)
    }
}

#[cfg(test)]
mod tests {
    use crate::join::temporal::tests::two_inputs;
    use crate::testing::Harness;

    fn run(
        bounds: &str,
        left: &[&str],
        right: &[&str],
        parallelism: u32,
    ) -> (Vec<String>, Vec<String>, crate::runtime::job::JobSummary) {
        let spec = two_inputs(
            &format!(
                "    interval_join: {{ {bounds} }}\n    select: {{ l: /left/id, r: /right/id }}\n"
            ),
            parallelism,
        );
        let mut h = Harness::plan(&spec).unwrap_or_else(|e| panic!("{e}"));
        h.input("a", left).input("b", right);
        let summary = h.run().unwrap();
        let (mut out, mut late) = (h.output("out"), h.output("late"));
        out.sort();
        late.sort();
        (out, late, summary)
    }

    /// Flink's bounds, inclusive and exclusive, with a negative lower one:
    /// the pairs, at parallelism 1 and 2; nothing is held after the final
    /// watermark.
    #[test]
    fn pairs_within_the_bounds_and_nothing_is_left() {
        let left = [
            r#"{"k":1,"id":"a","ts":100}"#,
            r#"{"k":1,"id":"b","ts":100}"#,
            r#"{"k":2,"id":"c","ts":100}"#,
        ];
        let right = [
            r#"{"k":1,"id":"x","ts":95}"#,
            r#"{"k":1,"id":"y","ts":100}"#,
            r#"{"k":1,"id":"z","ts":110}"#,
            r#"{"k":1,"id":"w","ts":111}"#,
            r#"{"k":2,"id":"v","ts":105}"#,
        ];
        for parallelism in [1, 2] {
            let (out, late, summary) = run("lower: -5ms, upper: 10ms", &left, &right, parallelism);
            let want = [
                ("a", "x"),
                ("a", "y"),
                ("a", "z"),
                ("b", "x"),
                ("b", "y"),
                ("b", "z"),
                ("c", "v"),
            ];
            let mut want: Vec<String> = want
                .iter()
                .map(|(l, r)| format!(r#"{{"l":"{l}","r":"{r}"}}"#))
                .collect();
            want.sort();
            assert_eq!(out, want, "p={parallelism}");
            assert!(late.is_empty());
            let join = summary.nodes.iter().find(|n| n.uid == "j").unwrap();
            assert_eq!((join.late, join.state_bytes), (0, 0), "p={parallelism}");

            let (out, _, _) = run(
                "lower: -5ms, upper: 10ms, lower_exclusive: true, upper_exclusive: true",
                &left[..1],
                &right[..4],
                parallelism,
            );
            assert_eq!(
                out,
                [r#"{"l":"a","r":"y"}"#],
                "exclusive bounds at p={parallelism}"
            );
        }
    }

    #[test]
    fn the_timer_grain_is_a_small_power_of_two_of_the_interval() {
        let grain = |lower, upper| super::grain_of(super::Bounds { lower, upper });
        assert_eq!(grain(0, 0), 1);
        assert_eq!(grain(-5, 10), 1);
        assert_eq!(grain(0, 1023), 1);
        assert_eq!(grain(0, 1024), 2);
        assert_eq!(grain(0, 600_000), 1024, "W6's 10 minutes");
        assert_eq!(grain(-60_000, 0), 64);
        assert_eq!(grain(i64::MIN, i64::MAX), 1024);
    }

    #[test]
    fn bounds_that_admit_no_pair_are_a_plan_error() {
        let spec = two_inputs(
            "    interval_join: { lower: 5s, upper: 5s, upper_exclusive: true }\n",
            1,
        );
        let e = Harness::plan(&spec).err().expect("refused").to_string();
        assert!(
            e.contains("harness.yaml:9") && e.contains("admit no pair"),
            "{e}"
        );
    }
}
