//! `window_join:` — the records of both inputs that fall into the same
//! event-time window and have the same key make pairs (Flink's
//! `join(...).window(...)`, and Flink SQL's window join with its outer
//! variants).
//!
//! Windows are tumbling, sliding or session windows. When the watermark
//! passes a window's end, every left and right record of a key in it make
//! one row each (`type: inner`, the default); `left`, `right` and `full`
//! also emit the records of that side that found no partner in the window,
//! with the other side `null`. A row's event time is the window's last
//! millisecond; `select` may name `$window_start` and `$window_end`.
//!
//! Session windows are formed over both inputs together: records of a key
//! less than `gap` apart (from either side) are one session
//! `[first, last + gap)`, which fires when the watermark reaches its end.
//!
//! State: each record is held (per key, in time order) until the last
//! window holding it has fired. A record whose windows have all fired is
//! late (a session record is not when it falls into a session still open).

use super::buffer::{Buffers, Held};
use super::{JoinLogic, LEFT, RIGHT, Row, SIDES, Select, planned};
use crate::error::{PlanError, StateError};
use crate::runtime::kind::{OperatorKind, PlanContext, Planned, error, field};
use crate::runtime::{Batch, Origin, RecordRef};
use crate::time::windows::{Aligned, Window, WindowKind, WindowSpec};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum JoinType {
    #[default]
    Inner,
    Left,
    Right,
    Full,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowJoinSpec {
    window: WindowSpec,
    #[serde(default, rename = "type")]
    join: JoinType,
}

pub struct WindowJoinKind;

impl OperatorKind for WindowJoinKind {
    fn tag(&self) -> &'static str {
        "window_join"
    }

    fn what(&self) -> &'static str {
        "a window join"
    }

    fn fields(&self) -> &'static [&'static str] {
        &["select"]
    }

    fn inputs(&self) -> &'static [&'static str] {
        SIDES
    }

    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError> {
        let spec = field::<WindowJoinSpec>(cx, "window_join")?.expect("the tag is set");
        let windows = match spec.window {
            WindowSpec::Cumulate { .. } => {
                Err("a window join takes tumbling, sliding or session windows".to_owned())
            }
            other => other.kind(),
        }
        .map_err(|m| error(cx, "window_join.window", m))?;
        let (pad_left, pad_right) = match spec.join {
            JoinType::Inner => (false, false),
            JoinType::Left => (true, false),
            JoinType::Right => (false, true),
            JoinType::Full => (true, true),
        };
        let logic = WindowJoin {
            windows,
            pad: [pad_left, pad_right],
            select: Arc::new(Select::plan(cx)?),
        };
        planned(cx, "(one key, or one per input)", logic)
    }
}

/// A window join's settings.
pub struct WindowJoin {
    pub windows: WindowKind,
    /// Per side: whether its records without a partner are emitted.
    pub pad: [bool; 2],
    pub select: Arc<Select>,
}

impl WindowJoin {
    /// The watermark at which every window holding a record at `ts` has
    /// fired (for a session, the record's own `[ts, ts + gap)`).
    fn done_at(&self, ts: i64) -> i64 {
        match self.windows {
            WindowKind::Aligned(a) => a.last_end(ts).saturating_sub(1),
            WindowKind::Session { gap } => ts.saturating_add(gap).saturating_sub(1),
        }
    }

    /// Emits the rows of window `w` of key `k`, from its records at list
    /// positions `ranges` (left, right).
    fn emit(
        &self,
        held: &mut Buffers,
        k: u32,
        w: Window,
        ranges: [std::ops::Range<usize>; 2],
        rows: &mut Batch,
    ) -> Result<(), StateError> {
        let key = held.keys.key(k).to_vec();
        let mut values: [Vec<(Vec<u8>, i64)>; 2] = [Vec::new(), Vec::new()];
        for side in [LEFT, RIGHT] {
            let list: Vec<Held> = held.keys.get(k).sides[side][ranges[side].clone()].to_vec();
            for h in list {
                let v = held.with(h.slot, |b| b.to_vec())?;
                values[side].push((v, h.ts));
            }
        }
        let time = w.max_timestamp();
        let mut push = |sides: [Option<(&[u8], i64)>; 2]| {
            let row = Row {
                key: &key,
                sides,
                window: Some((w.start, w.end)),
            };
            rows.push_built(Some(&key), Some(time), Origin::NONE, |v| {
                self.select.write(&row, v)
            });
        };
        let [left, right] = &values;
        for (l, lt) in left {
            for (r, rt) in right {
                push([Some((l, *lt)), Some((r, *rt))]);
            }
        }
        if right.is_empty() && self.pad[LEFT] {
            for (l, lt) in left {
                push([Some((l, *lt)), None]);
            }
        }
        if left.is_empty() && self.pad[RIGHT] {
            for (r, rt) in right {
                push([None, Some((r, *rt))]);
            }
        }
        Ok(())
    }

    /// Fires the aligned window ending at `time + 1` for key `k`.
    fn fire_aligned(
        &self,
        held: &mut Buffers,
        a: Aligned,
        k: u32,
        time: i64,
        rows: &mut Batch,
    ) -> Result<(), StateError> {
        let w = Window {
            start: time + 1 - a.size,
            end: time + 1,
        };
        let entry = held.keys.get(k);
        let range = |side: usize| {
            let list = &entry.sides[side];
            list.partition_point(|h| h.ts < w.start)..list.partition_point(|h| h.ts < w.end)
        };
        let ranges = [range(LEFT), range(RIGHT)];
        if ranges.iter().all(|r| r.is_empty()) {
            return Ok(());
        }
        self.emit(held, k, w, ranges, rows)
    }

    /// Fires the sessions of key `k` that the watermark `w` has closed: the
    /// records of both sides, in time order, cut where two are `gap` or more
    /// apart.
    fn fire_sessions(
        &self,
        held: &mut Buffers,
        k: u32,
        gap: i64,
        watermark: i64,
        rows: &mut Batch,
    ) -> Result<(), StateError> {
        loop {
            let Some(entry) = held.keys.live_mut(k) else {
                return Ok(());
            };
            // The first session: from the earliest record on, while the
            // next record of either side is less than `gap` after the last.
            let [left, right] = &entry.sides;
            let (mut i, mut j) = (0, 0);
            let first = match (left.first(), right.first()) {
                (Some(l), Some(r)) => l.ts.min(r.ts),
                (Some(l), None) => l.ts,
                (None, Some(r)) => r.ts,
                (None, None) => return Ok(()),
            };
            let mut last = first;
            loop {
                let next_l = left.get(i).map(|h| h.ts);
                let next_r = right.get(j).map(|h| h.ts);
                let next = match (next_l, next_r) {
                    (Some(a), Some(b)) => a.min(b),
                    (Some(a), None) => a,
                    (None, Some(b)) => b,
                    (None, None) => break,
                };
                if next - last >= gap {
                    break;
                }
                last = last.max(next);
                if next_l == Some(next) {
                    i += 1;
                } else {
                    j += 1;
                }
            }
            let end = last.saturating_add(gap);
            if end - 1 > watermark {
                return Ok(());
            }
            let w = Window { start: first, end };
            self.emit(held, k, w, [0..i, 0..j], rows)?;
            if j > 0 {
                held.drop_range(k, RIGHT, 0..j)?;
            }
            if i > 0 && held.keys.contains(k) {
                held.drop_range(k, LEFT, 0..i)?;
            }
        }
    }
}

/// Timer namespaces: an aligned window's end (the time names the window), or
/// a record's session end.
const WINDOW: u8 = 0;
const SESSION: u8 = 1;

impl JoinLogic for WindowJoin {
    fn kind(&self) -> &'static str {
        "window_join"
    }

    fn what(&self) -> &'static str {
        "a window join"
    }

    fn record(
        &self,
        held: &mut Buffers,
        watermark: i64,
        side: usize,
        record: RecordRef<'_>,
        ts: i64,
        key: &[u8],
        _rows: &mut Batch,
        late: &mut Batch,
    ) -> Result<(), StateError> {
        if self.done_at(ts) <= watermark {
            let merges = match self.windows {
                WindowKind::Aligned(_) => false,
                // A session still open that the record falls into.
                WindowKind::Session { gap } => held.keys.find(key).is_some_and(|k| {
                    held.keys
                        .get(k)
                        .sides
                        .iter()
                        .flatten()
                        .any(|h| (h.ts - ts).abs() < gap && self.done_at(h.ts) > watermark)
                }),
            };
            if !merges {
                late.push_record(record, None);
                return Ok(());
            }
        }
        let k = held.add(side, key, ts, record.value())?;
        match self.windows {
            // Only windows still to fire: one that has fired does not again.
            WindowKind::Aligned(a) => a.for_each_window(ts, |w| {
                if w.max_timestamp() > watermark {
                    held.timers.insert(w.max_timestamp(), k, WINDOW);
                }
            }),
            WindowKind::Session { .. } => {
                held.timers.insert(self.done_at(ts), k, SESSION);
            }
        }
        Ok(())
    }

    fn advance(
        &self,
        held: &mut Buffers,
        watermark: i64,
        rows: &mut Batch,
    ) -> Result<(), StateError> {
        while let Some((time, k, _)) = held.timers.pop_due(watermark) {
            if !held.keys.contains(k) {
                continue;
            }
            match self.windows {
                WindowKind::Aligned(a) => {
                    self.fire_aligned(held, a, k, time, rows)?;
                    // Records whose last window has fired can go.
                    for side in [LEFT, RIGHT] {
                        if !held.keys.contains(k) {
                            break;
                        }
                        let gone = held.keys.get(k).sides[side]
                            .partition_point(|h| self.done_at(h.ts) <= time);
                        if gone > 0 {
                            held.drop_range(k, side, 0..gone)?;
                        }
                    }
                }
                WindowKind::Session { gap } => self.fire_sessions(held, k, gap, watermark, rows)?,
            }
        }
        Ok(())
    }

    fn timers(&self, _side: usize, ts: i64, add: &mut dyn FnMut(i64, u8)) {
        match self.windows {
            WindowKind::Aligned(a) => a.for_each_window(ts, |w| add(w.max_timestamp(), WINDOW)),
            WindowKind::Session { .. } => add(self.done_at(ts), SESSION),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::join::temporal::tests::two_inputs;
    use crate::testing::Harness;

    /// Sliding and session window joins hold nothing after the final
    /// watermark, at parallelism 1 and 2.
    #[test]
    fn nothing_is_left_after_the_final_watermark() {
        for window in [
            "{ type: sliding, size: 10ms, slide: 5ms }",
            "{ type: session, gap: 5ms }",
        ] {
            for parallelism in [1, 2] {
                let spec = two_inputs(
                    &format!(
                        "    window_join: {{ window: {window}, type: full }}\n    select: {{ l: /left/id, r: /right/id }}\n"
                    ),
                    parallelism,
                );
                let mut h = Harness::plan(&spec).unwrap_or_else(|e| panic!("{e}"));
                let left: Vec<String> = (0..50)
                    .map(|i| format!(r#"{{"k":{},"id":"l{i}","ts":{}}}"#, i % 4, i * 3))
                    .collect();
                let right: Vec<String> = (0..50)
                    .map(|i| format!(r#"{{"k":{},"id":"r{i}","ts":{}}}"#, i % 5, i * 3 + 1))
                    .collect();
                h.input("a", &left).input("b", &right);
                let summary = h.run().unwrap();
                let join = summary.nodes.iter().find(|n| n.uid == "j").unwrap();
                assert!(join.records_out > 0, "{window} at p={parallelism}");
                assert_eq!(
                    (join.late, join.state_bytes),
                    (0, 0),
                    "{window} at p={parallelism}"
                );
            }
        }
    }
}
