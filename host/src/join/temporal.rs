//! `temporal_join:` — an event-time temporal join, Flink SQL's
//! `JOIN versioned FOR SYSTEM_TIME AS OF probe.ts ON key`.
//!
//! The left input is the probe stream (orders); the right input is the
//! changelog of a versioned table whose primary key is the join key (rates
//! by currency): each right record is the key's row from its time on. A
//! probe joins the key's version with the greatest time `<= probe.ts` (a
//! version at exactly the probe's time applies; of two versions with the
//! same time the one that arrived last). A probe is emitted once the
//! watermark reaches its time — until then a version for an earlier instant
//! may still arrive — with the probe's time. With `type: left` a probe
//! without a version is emitted with the right side `null` (left outer join);
//! with `type: inner` (the default) it is dropped.
//!
//! A version whose field at `deleted` (a JSON pointer) is `true` deletes
//! the row: probes at or after its time find no version until the next one.
//!
//! State: the probes waiting for the watermark, and per key the versions
//! still needed — every version after the watermark and the latest one at
//! or before it (older ones can never be chosen again; a latest one that is
//! a delete is not kept either). After the final watermark no probe can
//! come, and nothing is left.
//!
//! Late records: a probe at or behind the watermark goes to the `late` port
//! (its answer may already be wrong). A version at or behind the watermark
//! is still applied to later probes — it is the table's newest row — unless
//! a version at least as new already covers every probe still to come; then
//! it is late.

use super::buffer::Buffers;
use super::{JoinLogic, LEFT, RIGHT, Row, SIDES, Select, planned};
use crate::error::{PlanError, StateError};
use crate::json::{self, Pointer};
use crate::runtime::kind::InnerOrLeft;
use crate::runtime::kind::{OperatorKind, PlanContext, Planned, error, field};
use crate::runtime::{Batch, Origin, RecordRef};
use crate::time::MAX_WATERMARK;
use serde::Deserialize;
use std::sync::Arc;

/// Timer namespaces: a probe is due, a version may make older ones useless.
const PROBE: u8 = 0;
const VERSION: u8 = 1;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TemporalSpec {
    #[serde(default, rename = "type")]
    join: InnerOrLeft,
    #[serde(default)]
    deleted: Option<String>,
}

pub struct TemporalJoinKind;

impl OperatorKind for TemporalJoinKind {
    fn tag(&self) -> &'static str {
        "temporal_join"
    }

    fn what(&self) -> &'static str {
        "an event-time temporal join"
    }

    fn fields(&self) -> &'static [&'static str] {
        &["select"]
    }

    fn inputs(&self) -> &'static [&'static str] {
        SIDES
    }

    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError> {
        let spec = match cx.value("temporal_join") {
            Some(serde_yaml::Value::Null) | None => TemporalSpec::default(),
            Some(_) => field::<TemporalSpec>(cx, "temporal_join")?.expect("set"),
        };
        let deleted = match &spec.deleted {
            None => None,
            Some(p) => Some(Pointer::parse(p).map_err(|m| error(cx, "temporal_join.deleted", m))?),
        };
        let logic = TemporalJoin {
            outer: spec.join == InnerOrLeft::Left,
            deleted,
            select: Arc::new(Select::plan(cx)?),
        };
        planned(cx, "(the versioned table's primary key)", logic)
    }
}

/// A temporal join's settings.
pub struct TemporalJoin {
    /// Whether a probe without a version is emitted padded (`type: left`).
    pub outer: bool,
    /// Where a version says it is a delete.
    pub deleted: Option<Pointer>,
    pub select: Arc<Select>,
}

impl TemporalJoin {
    fn is_delete(&self, value: &[u8]) -> bool {
        self.deleted
            .as_ref()
            .is_some_and(|p| matches!(json::find_fast(value, p), Ok(Some(b"true"))))
    }
}

/// Probes are held on the left, versions on the right; a delete version is
/// held as an empty value.
impl JoinLogic for TemporalJoin {
    fn kind(&self) -> &'static str {
        "temporal_join"
    }

    fn what(&self) -> &'static str {
        "a temporal join"
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
        let behind = ts <= watermark;
        if side == LEFT {
            if behind {
                late.push_record(record, None);
            } else {
                let k = held.add(LEFT, key, ts, record.value())?;
                held.timers.insert(ts, k, PROBE);
            }
            return Ok(());
        }
        if behind
            && let Some(k) = held.keys.find(key)
            && held.keys.get(k).sides[RIGHT]
                .iter()
                .any(|v| v.ts >= ts && v.ts <= watermark)
        {
            // A version at least as new covers every probe still to come.
            late.push_record(record, None);
            return Ok(());
        }
        let value: &[u8] = if self.is_delete(record.value()) {
            b""
        } else {
            record.value()
        };
        let k = held.add(RIGHT, key, ts, value)?;
        // Past or not, the next advance compacts the key's versions.
        held.timers.insert(ts, k, VERSION);
        Ok(())
    }

    /// Emits the probes the watermark has reached and drops the versions no
    /// probe still to come can choose.
    fn advance(&self, held: &mut Buffers, w: i64, rows: &mut Batch) -> Result<(), StateError> {
        let (mut key, mut version) = (Vec::new(), Vec::new());
        while let Some((_, k, _)) = held.timers.pop_due(w) {
            // Every due timer of the key is handled at its first one.
            let Some(entry) = held.keys.live_mut(k) else {
                continue;
            };
            let due = entry.sides[LEFT].partition_point(|p| p.ts <= w);
            key.clear();
            key.extend_from_slice(held.keys.key(k));
            for i in 0..due {
                let entry = held.keys.get(k);
                let probe = entry.sides[LEFT][i];
                let versions = &entry.sides[RIGHT];
                let chosen = versions
                    .partition_point(|v| v.ts <= probe.ts)
                    .checked_sub(1)
                    .map(|j| versions[j]);
                version.clear();
                if let Some(v) = chosen {
                    held.with(v.slot, |b| version.extend_from_slice(b))?;
                }
                // An empty value is a delete: no row.
                let found = chosen.filter(|_| !version.is_empty());
                if found.is_none() && !self.outer {
                    continue;
                }
                let right = found.map(|v| (version.as_slice(), v.ts));
                held.with(probe.slot, |p| {
                    let row = Row {
                        key: &key,
                        sides: [Some((p, probe.ts)), right],
                        window: None,
                    };
                    rows.push_built(Some(&key), Some(probe.ts), Origin::NONE, |v| {
                        self.select.write(&row, v)
                    });
                })?;
            }
            if due > 0 {
                held.drop_range(k, LEFT, 0..due)?;
            }
            let Some(entry) = held.keys.live_mut(k) else {
                continue;
            };
            // The latest version at or before the watermark stays (unless it
            // is a delete); older ones go.
            let versions = &entry.sides[RIGHT];
            let at_or_before = versions.partition_point(|v| v.ts <= w);
            if at_or_before == 0 {
                continue;
            }
            let latest = versions[at_or_before - 1];
            let keep = !held.with(latest.slot, |b| b.is_empty())?;
            let gone = at_or_before - usize::from(keep);
            if gone > 0 {
                held.drop_range(k, RIGHT, 0..gone)?;
            }
        }
        if w == MAX_WATERMARK {
            // No probe can come any more: the versions are of no use.
            held.drop_all()?;
        }
        Ok(())
    }

    fn timers(&self, side: usize, ts: i64, add: &mut dyn FnMut(i64, u8)) {
        add(ts, if side == LEFT { PROBE } else { VERSION })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::testing::Harness;

    pub(crate) fn two_inputs(operator: &str, parallelism: u32) -> String {
        format!(
            "parallelism: {parallelism}\n\
             sources:\n\
             \x20 - {{ uid: a, type: datagen, count: 0, event_time: {{ timestamp: /ts, watermark: {{ max_out_of_orderness: 10ms, emit: per_event }} }} }}\n\
             \x20 - {{ uid: b, type: datagen, count: 0, event_time: {{ timestamp: /ts, watermark: {{ max_out_of_orderness: 10ms, emit: per_event }} }} }}\n\
             operators:\n\
             \x20 - uid: j\n    input: {{ left: a, right: b }}\n    key_by: /k\n{operator}\
             sinks:\n\
             \x20 - {{ uid: out, input: j, type: stdout }}\n\
             \x20 - {{ uid: late, input: j.late, type: stdout }}\n"
        )
    }

    /// Rates of two currencies with a change each, a delete, and orders
    /// around them: each order gets the version valid at its time, at
    /// parallelism 1 and 2; nothing is held after the final watermark.
    #[test]
    fn each_probe_gets_the_version_valid_at_its_time_and_nothing_is_left() {
        for (kind, parallelism) in [("inner", 1), ("left", 1), ("left", 2)] {
            let spec = two_inputs(
                &format!(
                    "    temporal_join: {{ type: {kind}, deleted: /gone }}\n    select: {{ id: /left/id, rate: /right/r, at: $right_time }}\n"
                ),
                parallelism,
            );
            let mut h = Harness::plan(&spec).unwrap_or_else(|e| panic!("{e}"));
            h.input(
                "a",
                [
                    r#"{"k":"E","id":1,"ts":5}"#,
                    r#"{"k":"E","id":2,"ts":10}"#,
                    r#"{"k":"E","id":3,"ts":19}"#,
                    r#"{"k":"G","id":4,"ts":20}"#,
                    r#"{"k":"E","id":5,"ts":30}"#,
                    r#"{"k":"E","id":6,"ts":41}"#,
                ],
            );
            h.input(
                "b",
                [
                    r#"{"k":"E","r":100,"ts":10}"#,
                    r#"{"k":"E","r":101,"ts":10}"#,
                    r#"{"k":"G","r":200,"ts":12}"#,
                    r#"{"k":"E","r":110,"ts":20}"#,
                    r#"{"k":"E","gone":true,"ts":40}"#,
                ],
            );
            let summary = h.run().unwrap();
            let mut rows = h.output("out");
            rows.sort();
            let mut want = vec![
                // Two versions at 10: the last one applies, also at exactly 10.
                r#"{"id":2,"rate":101,"at":10}"#,
                r#"{"id":3,"rate":101,"at":10}"#,
                r#"{"id":4,"rate":200,"at":12}"#,
                r#"{"id":5,"rate":110,"at":20}"#,
            ];
            if kind == "left" {
                // Before the first version, and after the delete.
                want.push(r#"{"id":1,"rate":null,"at":null}"#);
                want.push(r#"{"id":6,"rate":null,"at":null}"#);
            }
            want.sort();
            assert_eq!(rows, want, "{kind} at p={parallelism}");
            let join = summary.nodes.iter().find(|n| n.uid == "j").unwrap();
            assert_eq!(join.state_bytes, 0, "{kind} at p={parallelism}: state left");
            assert_eq!(join.late, 0);
        }
    }
}
