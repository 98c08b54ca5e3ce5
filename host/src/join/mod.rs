//! Joins of two keyed streams: the `left` and `right` inputs of an operator,
//! each with its own `key_by`, so that the records of one key from both
//! sides reach one subtask.
//!
//! - [`interval`]: Flink's interval join — a pair for every left and right
//!   record of a key with `l.ts + lower <= r.ts <= l.ts + upper`.
//!
//! What the joins share lives here: how an output row is shaped
//! ([`Select`]), the sides, and the treatment of late records. A record is
//! late when its time is at or behind the operator's watermark (the
//! watermark promises that no such record follows): a join drops it from the
//! join, counts it in the node's `late` metric and sends it to the node's
//! `late` side output, which a sink may read (`input: <uid>.late`) or not
//! (then it is dropped, as Flink drops late join input).
//!
//! Keys compare as the JSON text `key_by` extracts: `5` and `"5"` are
//! different keys and never join.

pub mod buffer;
pub mod interval;
pub mod temporal;
pub mod window;

use crate::checkpoint::{Barrier, OperatorState, RestoredState};
use crate::error::{PlanError, RuntimeError, StateError};
use crate::json::{self, Pointer};
use crate::runtime::kind::{PlanContext, error};
use crate::runtime::operator::FIRST_SIDE_PORT;
use crate::runtime::{Batch, NodeMetrics, Operator, OperatorFactory, Output, RecordRef, Subtask};
use crate::state::Backend;
use async_trait::async_trait;
use buffer::Buffers;
use std::sync::Arc;

/// The port of a join's late records.
pub const LATE_PORT: usize = FIRST_SIDE_PORT;

/// The left input (input 0) and the right one (input 1).
pub const LEFT: usize = 0;
pub const RIGHT: usize = 1;

/// The names of a join's inputs, in input order.
pub const SIDES: &[&str] = &["left", "right"];

/// Store keys of buffered join rows: a namespace of their own.
pub const ROW_NAMESPACE: u8 = 5;

/// What makes a join kind: its settings, and what a record or an advance of
/// the watermark does to the records it holds. [`Join`] runs it.
pub trait JoinLogic: Send + Sync + 'static {
    /// The node kind, as plans name it (`interval_join`).
    fn kind(&self) -> &'static str;

    /// What it is, for messages ("an interval join").
    fn what(&self) -> &'static str;

    /// A record of `side` with its time and key arrived while the watermark
    /// is `watermark`: hold it, emit rows to `rows`, or set it aside in
    /// `late`.
    #[allow(clippy::too_many_arguments)]
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
    ) -> Result<(), StateError>;

    /// The watermark advanced to `watermark`: emit what is due to `rows`,
    /// let go of what can match nothing more.
    fn advance(
        &self,
        held: &mut Buffers,
        watermark: i64,
        rows: &mut Batch,
    ) -> Result<(), StateError>;

    /// Calls `add(time, namespace)` for each timer of a restored record of
    /// `side` at `ts` (timers the restored watermark has passed pop at once
    /// and find nothing due).
    fn timers(&self, side: usize, ts: i64, add: &mut dyn FnMut(i64, u8));

    /// How late (in ms, plus one) the join's timers may fire: see
    /// [`buffer::JoinTimers`]. 1: exactly.
    fn timer_grain(&self) -> i64 {
        1
    }
}

/// A join kind's plan: it needs a key (`key` says which) and event time
/// on both inputs, and has a `late` side output.
fn planned<L: JoinLogic>(
    cx: &dyn PlanContext,
    key: &str,
    logic: L,
) -> Result<crate::runtime::kind::Planned, PlanError> {
    crate::runtime::kind::key(cx, &format!("{} needs a `key_by` {key}", logic.what()))?;
    Ok(crate::runtime::kind::Planned {
        side_ports: vec!["late".to_owned()],
        needs_event_time: true,
        ..crate::runtime::kind::Planned::new(Arc::new(JoinFactory::new(
            logic,
            cx.backend()?,
            cx.max_parallelism(),
        )))
    })
}

/// Makes the subtasks of a join.
pub struct JoinFactory<L> {
    logic: Arc<L>,
    backend: Backend,
    max_parallelism: u32,
}

impl<L: JoinLogic> JoinFactory<L> {
    pub fn new(logic: L, backend: Backend, max_parallelism: u32) -> JoinFactory<L> {
        JoinFactory {
            logic: Arc::new(logic),
            backend,
            max_parallelism,
        }
    }
}

impl<L: JoinLogic> OperatorFactory for JoinFactory<L> {
    fn kind(&self) -> &'static str {
        self.logic.kind()
    }

    fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator> {
        Box::new(Join {
            logic: self.logic.clone(),
            held: Buffers::new(
                self.backend.clone(),
                subtask.info.uid.to_string(),
                subtask.index,
                self.max_parallelism,
                self.logic.timer_grain(),
            ),
            watermark: i64::MIN,
        })
    }
}

/// One subtask of a join: the records it holds and its watermark.
pub struct Join<L> {
    logic: Arc<L>,
    held: Buffers,
    watermark: i64,
}

impl<L: JoinLogic> Join<L> {
    fn state_error(&self, error: StateError) -> RuntimeError {
        RuntimeError::State {
            uid: self.held.uid().to_owned(),
            error,
        }
    }

    async fn process(
        &mut self,
        side: usize,
        batch: Batch,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        let mut rows = Batch::default();
        let mut late = Batch::default();
        for i in 0..batch.len() {
            let record = batch.get(i);
            let (Some(ts), Some(key)) = (record.timestamp(), record.key()) else {
                let what = self.logic.what();
                out.dead_letter(
                    record,
                    &format!("{what} needs records with an event time and a key"),
                )?;
                continue;
            };
            self.logic
                .record(
                    &mut self.held,
                    self.watermark,
                    side,
                    record,
                    ts,
                    key,
                    &mut rows,
                    &mut late,
                )
                .map_err(|e| self.state_error(e))?;
        }
        out.emit(rows);
        if !late.is_empty() {
            NodeMetrics::add(&out.info().metrics.late, late.len() as u64);
            out.emit_to(LATE_PORT, late);
        }
        self.held.report_size(out);
        Ok(())
    }
}

#[async_trait]
impl<L: JoinLogic> Operator for Join<L> {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        self.held.open().map_err(|e| self.state_error(e))
    }

    async fn process_batch(&mut self, batch: Batch, out: &mut Output) -> Result<(), RuntimeError> {
        self.process(LEFT, batch, out).await
    }

    async fn process_input(
        &mut self,
        input: usize,
        batch: Batch,
        out: &mut Output,
    ) -> Result<(), RuntimeError> {
        debug_assert_eq!(input, RIGHT);
        self.process(input, batch, out).await
    }

    async fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), RuntimeError> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        let mut rows = Batch::default();
        self.logic
            .advance(&mut self.held, watermark, &mut rows)
            .map_err(|e| self.state_error(e))?;
        out.emit(rows);
        self.held.report_size(out);
        Ok(())
    }

    async fn snapshot(
        &mut self,
        _barrier: Barrier,
        _out: &mut Output,
    ) -> Result<OperatorState, RuntimeError> {
        let keyed = self.held.snapshot().map_err(|e| self.state_error(e))?;
        Ok(OperatorState {
            meta: serde_json::json!({ "watermark": self.watermark }),
            keyed: Some(keyed),
            committables: Vec::new(),
        })
    }

    async fn restore(&mut self, restored: RestoredState) -> Result<(), RuntimeError> {
        self.watermark = self.watermark.max(restored.watermark());
        let logic = self.logic.clone();
        self.held
            .restore(&restored, logic.what(), &|side, ts, add| {
                logic.timers(side, ts, add)
            })
            .map_err(|e| self.state_error(e))?;
        // Restored records the restored watermark has passed can go (a
        // subtask restores at the least watermark of those that wrote the
        // snapshot). Nothing is due: what was, was emitted before it.
        let mut rows = Batch::default();
        self.logic
            .advance(&mut self.held, self.watermark, &mut rows)
            .map_err(|e| self.state_error(e))?;
        debug_assert!(rows.is_empty(), "rows due at restore");
        Ok(())
    }
}

/// Where an output field comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A field of one side's record (`/left/amount`), or the whole record
    /// (`/left`); `null` where the side has no record (an outer join).
    Side(usize, Option<Pointer>),
    /// The join key, as `key_by` extracted it.
    Key,
    /// One side's event time (`$left_time`).
    Time(usize),
    /// The window's bounds (a window join's rows).
    WindowStart,
    WindowEnd,
}

/// How a join shapes its output rows: by default `{"left": L, "right": R}`;
/// with `select`, an object of the fields it lists, in order.
#[derive(Debug, Clone)]
pub enum Select {
    Pair,
    Fields(Vec<(String, Source)>),
}

/// One output row's inputs: the key, and each side's record and time
/// (absent on the padded side of an outer join).
pub struct Row<'a> {
    pub key: &'a [u8],
    pub sides: [Option<(&'a [u8], i64)>; 2],
    /// The window `[start, end)` of a window join's row.
    pub window: Option<(i64, i64)>,
}

impl Select {
    /// The `select:` of the operator, if any: field name → source, where a
    /// source is a JSON pointer into the pair (`/left/order_id`, `/right`)
    /// or one of `$key`, `$left_time`, `$right_time`, `$window_start`,
    /// `$window_end`.
    pub fn plan(cx: &dyn PlanContext) -> Result<Select, PlanError> {
        let Some(v) = cx.value("select") else {
            return Ok(Select::Pair);
        };
        let serde_yaml::Value::Mapping(m) = v else {
            return Err(error(
                cx,
                "select",
                "`select` maps output field names to sources: `{ id: /left/order_id, paid: /right/amount }`",
            ));
        };
        if m.is_empty() {
            return Err(error(cx, "select", "`select` lists no fields"));
        }
        let mut fields = Vec::new();
        for (name, source) in m {
            let (Some(name), Some(text)) = (name.as_str(), source.as_str()) else {
                return Err(error(
                    cx,
                    "select",
                    "`select` entries are `name: source`, both text",
                ));
            };
            let at = format!("select.{name}");
            let source = Self::source(text).map_err(|m| error(cx, &at, m))?;
            fields.push((name.to_owned(), source));
        }
        Ok(Select::Fields(fields))
    }

    fn source(text: &str) -> Result<Source, String> {
        let unknown = || {
            format!(
                "`{text}` is not a join source: write a JSON pointer below `/left` or `/right` (`/left/order_id`, `/right`), or `$key`, `$left_time`, `$right_time`, `$window_start`, `$window_end`"
            )
        };
        match text {
            "$key" => return Ok(Source::Key),
            "$left_time" => return Ok(Source::Time(LEFT)),
            "$right_time" => return Ok(Source::Time(RIGHT)),
            "$window_start" => return Ok(Source::WindowStart),
            "$window_end" => return Ok(Source::WindowEnd),
            _ => {}
        }
        let rest = text.strip_prefix('/').ok_or_else(unknown)?;
        let (side, pointer) = rest
            .split_once('/')
            .map_or((rest, None), |(s, p)| (s, Some(p)));
        let side = SIDES.iter().position(|s| *s == side).ok_or_else(unknown)?;
        let pointer = match pointer {
            None => None,
            Some(p) => Some(Pointer::parse(&format!("/{p}"))?),
        };
        Ok(Source::Side(side, pointer))
    }

    /// Writes the output row of `row` to `v`.
    pub fn write(&self, row: &Row<'_>, v: &mut Vec<u8>) {
        let side = |v: &mut Vec<u8>, i: usize, pointer: Option<&Pointer>| match row.sides[i] {
            None => v.extend_from_slice(b"null"),
            Some((doc, _)) => match pointer {
                None => v.extend_from_slice(doc.trim_ascii()),
                Some(p) => match json::find_fast(doc, p) {
                    Ok(Some(found)) => v.extend_from_slice(found),
                    _ => v.extend_from_slice(b"null"),
                },
            },
        };
        v.push(b'{');
        match self {
            Select::Pair => {
                v.extend_from_slice(b"\"left\":");
                side(v, LEFT, None);
                v.extend_from_slice(b",\"right\":");
                side(v, RIGHT, None);
            }
            Select::Fields(fields) => {
                for (i, (name, source)) in fields.iter().enumerate() {
                    if i > 0 {
                        v.push(b',');
                    }
                    json::write_str(v, name.as_bytes());
                    v.push(b':');
                    match source {
                        Source::Side(s, p) => side(v, *s, p.as_ref()),
                        Source::Key => v.extend_from_slice(row.key),
                        Source::Time(s) => match row.sides[*s] {
                            Some((_, ts)) => json::write_i64(v, ts),
                            None => v.extend_from_slice(b"null"),
                        },
                        Source::WindowStart | Source::WindowEnd => match row.window {
                            Some((start, end)) => json::write_i64(
                                v,
                                if matches!(source, Source::WindowStart) {
                                    start
                                } else {
                                    end
                                },
                            ),
                            None => v.extend_from_slice(b"null"),
                        },
                    }
                }
            }
        }
        v.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::operator::NodeInfo;
    use crate::runtime::{OperatorFactory, Origin, Splits, Subtask};
    use crate::time::{Clock, ManualClock};
    use std::sync::Arc;

    /// A watermark, or records `(side, key, ts)`.
    type Step<'a> = Result<i64, Vec<(usize, &'a str, i64)>>;

    /// Runs one join subtask directly: each step is a watermark, or a batch
    /// of `(side, key, ts)` records; returns how many rows and late records
    /// came out, and the node's late count.
    async fn drive(factory: &dyn OperatorFactory, steps: &[Step<'_>]) -> (usize, usize, u64) {
        let (rows, late, counted, _) = drive_held(factory, steps).await;
        (rows, late, counted)
    }

    /// [`drive`], and the bytes the join holds at the end.
    async fn drive_held(
        factory: &dyn OperatorFactory,
        steps: &[Step<'_>],
    ) -> (usize, usize, u64, u64) {
        let info = Arc::new(NodeInfo {
            uid: "j".into(),
            has_dead_letter: false,
            splits: Arc::new(Splits::default()),
            metrics: Arc::new(NodeMetrics::new(1)),
            changelog: false,
        });
        let clock: Arc<dyn Clock> = ManualClock::new(0);
        let mut op = factory.create(&Subtask {
            index: 0,
            parallelism: 1,
            info: &info,
            clock: &clock,
            side_ports: &["late".to_owned()],
            members: None,
        });
        op.open().await.unwrap();
        let mut out = Output::new(info.clone());
        for step in steps {
            match step {
                Ok(w) => op.on_watermark(*w, &mut out).await.unwrap(),
                Err(records) => {
                    for &(side, key, ts) in records {
                        let mut b = Batch::default();
                        b.push(Some(key.as_bytes()), b"{}", Some(ts), Origin::NONE);
                        if side == LEFT {
                            op.process_batch(b, &mut out).await.unwrap();
                        } else {
                            op.process_input(side, b, &mut out).await.unwrap();
                        }
                    }
                }
            }
        }
        let (mut rows, mut late) = (0, 0);
        for (port, batch) in out.drain() {
            match port {
                crate::runtime::operator::MAIN_PORT => rows += batch.len(),
                LATE_PORT => late += batch.len(),
                other => panic!("port {other}"),
            }
        }
        let held = info.metrics.state_bytes[0].load(std::sync::atomic::Ordering::Relaxed);
        (rows, late, NodeMetrics::get(&info.metrics.late), held)
    }

    /// An interval join's timers have a grain (16 ms for a 10,240 ms
    /// interval): a record goes at the first multiple of it at or after the
    /// watermark that lets it go, never before — a record kept that long
    /// still pairs only within the bounds.
    #[tokio::test]
    async fn interval_join_records_go_at_their_cleanup_time_rounded_up() {
        let interval = JoinFactory::new(
            interval::IntervalJoin {
                bounds: interval::Bounds {
                    lower: 0,
                    upper: 10_240,
                },
                select: Arc::new(Select::Pair),
            },
            crate::state::Backend::Memory { limit: 1 << 20 },
            128,
        );
        let steps = |last| {
            vec![
                // Both can pair up to 11,240.
                Err(vec![(LEFT, "1", 1000), (LEFT, "2", 1000)]),
                Ok(11_239),
                Err(vec![(RIGHT, "1", 11_240)]),
                Ok(11_240),
                // Still held (11,240 rounds up to 11,248), out of bounds.
                Err(vec![(RIGHT, "2", 11_241)]),
                Ok(last),
            ]
        };
        let (rows, late, _, held) = drive_held(&interval, &steps(11_247)).await;
        assert_eq!((rows, late), (1, 0));
        assert!(held > 0, "held until 11,248");
        let (rows, late, _, held) = drive_held(&interval, &steps(11_248)).await;
        assert_eq!((rows, late, held), (1, 0, 0));
    }

    /// A record at or behind the watermark is late in both joins: it goes to
    /// the late port, is counted, and joins nothing. A rate version behind
    /// the watermark still applies to later orders unless a newer one
    /// covers them.
    #[tokio::test]
    async fn records_at_or_behind_the_watermark_are_late() {
        let memory = crate::state::Backend::Memory { limit: 1 << 20 };
        let interval = JoinFactory::new(
            interval::IntervalJoin {
                bounds: interval::Bounds {
                    lower: 0,
                    upper: 10,
                },
                select: Arc::new(Select::Pair),
            },
            memory.clone(),
            128,
        );
        let got = drive(
            &interval,
            &[
                Err(vec![(LEFT, "1", 100)]),
                Ok(100),
                // Both at the watermark: late; the right one would match.
                Err(vec![(RIGHT, "1", 100), (LEFT, "1", 99)]),
                Err(vec![(RIGHT, "1", 101)]),
            ],
        )
        .await;
        assert_eq!(got, (1, 2, 2), "interval join: (rows, late, counted)");

        let temporal = JoinFactory::new(
            temporal::TemporalJoin {
                outer: false,
                deleted: None,
                select: Arc::new(Select::Pair),
            },
            memory,
            128,
        );
        let got = drive(
            &temporal,
            &[
                Err(vec![(RIGHT, "E", 10)]),
                Ok(50),
                // A probe at the watermark is late.
                Err(vec![(LEFT, "E", 50)]),
                // Behind the watermark but newer than the version there: applies.
                Err(vec![(RIGHT, "E", 20)]),
                // Older than that one: covered, late.
                Err(vec![(RIGHT, "E", 15)]),
                Err(vec![(LEFT, "E", 60)]),
                Ok(60),
            ],
        )
        .await;
        assert_eq!(got, (1, 2, 2), "temporal join: (rows, late, counted)");
    }

    fn fields(pairs: &[(&str, &str)]) -> Select {
        Select::Fields(
            pairs
                .iter()
                .map(|(n, s)| (n.to_string(), Select::source(s).unwrap()))
                .collect(),
        )
    }

    #[test]
    fn rows_take_fields_of_either_side_the_key_and_the_times() {
        let row = Row {
            key: b"\"o-1\"",
            sides: [
                Some((b"{\"id\":\"o-1\",\"n\":{\"x\":2}}", 10)),
                Some((b" {\"amount\":1.5} ", 20)),
            ],
            window: None,
        };
        let mut v = Vec::new();
        Select::Pair.write(&row, &mut v);
        assert_eq!(
            std::str::from_utf8(&v).unwrap(),
            r#"{"left":{"id":"o-1","n":{"x":2}},"right":{"amount":1.5}}"#
        );
        v.clear();
        let s = fields(&[
            ("k", "$key"),
            ("x", "/left/n/x"),
            ("paid", "/right/amount"),
            ("missing", "/right/nope"),
            ("lt", "$left_time"),
            ("r", "/right"),
        ]);
        s.write(&row, &mut v);
        assert_eq!(
            std::str::from_utf8(&v).unwrap(),
            r#"{"k":"o-1","x":2,"paid":1.5,"missing":null,"lt":10,"r":{"amount":1.5}}"#
        );
        v.clear();
        let padded = Row {
            key: b"7",
            sides: [Some((b"{}", 1)), None],
            window: Some((0, 10)),
        };
        fields(&[("paid", "/right/amount"), ("rt", "$right_time")]).write(&padded, &mut v);
        assert_eq!(
            std::str::from_utf8(&v).unwrap(),
            r#"{"paid":null,"rt":null}"#
        );
    }

    #[test]
    fn an_unknown_source_says_what_a_source_is() {
        for bad in ["left/x", "/middle/x", "$now", ""] {
            let e = Select::source(bad).unwrap_err();
            assert!(e.contains("/left") && e.contains("$key"), "{bad}: {e}");
        }
    }
}
