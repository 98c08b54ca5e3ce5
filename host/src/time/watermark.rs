//! Watermarks: generated per source split, combined as a minimum everywhere.
//!
//! A source subtask reads one or more splits (files, Kafka partitions, the
//! generator's streams). Each split tracks the largest timestamp it has seen;
//! its watermark is that minus the allowed out-of-orderness minus 1 ms
//! (Flink's definition). The subtask's watermark is the minimum over its live
//! splits — a split that has finished, or has been idle for longer than the
//! idleness timeout, does not hold it back. [`SourceWatermarks`] does this.
//!
//! Downstream, a task's watermark is the minimum over its input channels
//! that are neither idle nor finished (ended, or at the final watermark);
//! [`InputWatermarks`] does that. When no input is active but one is idle,
//! the watermark holds: a finished input never carries it to the end while an
//! idle one may still send data. Both only ever move their output forward.

use super::MAX_WATERMARK;

/// How the largest timestamp seen becomes a watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyKind {
    /// Flink's `forBoundedOutOfOrderness`: max timestamp - delay - 1 ms.
    BoundedOutOfOrderness,
    /// Flink's `forMonotonousTimestamps`: max timestamp - 1 ms.
    Monotonous,
    /// Flink SQL's `WATERMARK FOR ts AS ts - INTERVAL …`: the largest value
    /// of that expression, max timestamp - delay (no - 1 ms).
    MaxMinusDelay,
}

/// When a source sends its watermark downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// Every `interval` of processing time (Flink's default, 200 ms).
    Periodic,
    /// Whenever the watermark advances: results depend only on the input,
    /// not on the machine's speed.
    PerEvent,
    /// As `PerEvent`, but the source holds a watermark back with its batch
    /// while the records after it are all later than it, sending it before
    /// the first that is not (or when the batch ends). Such records can be
    /// neither late under it nor in a window it fires, so tumbling, sliding
    /// and cumulating windows give exactly `PerEvent`'s results, from far
    /// fewer and bigger batches. Not for timers or session windows: a timer
    /// it fires would see records that come after it with `PerEvent`.
    PerEventDeferred,
}

impl Emit {
    /// Sent whenever the watermark advances (deferred or not).
    pub fn per_event(self) -> bool {
        matches!(self, Emit::PerEvent | Emit::PerEventDeferred)
    }
}

/// A watermark or an idleness mark, as the runtime's messages carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watermark {
    /// No record with a timestamp at or before this is expected any more.
    Time(i64),
    /// The sender has no data for now and does not hold back the watermark
    /// of its receivers until it sends `Time` again.
    Idle,
}

/// How a source turns timestamps into watermarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatermarkStrategy {
    /// Subtracted from the largest timestamp seen (plus 1 ms).
    pub delay_ms: i64,
    pub emit: Emit,
    /// Processing-time period of `Periodic` emission.
    pub interval_ms: i64,
    /// A split silent for this long (processing time) is idle.
    pub idleness_ms: Option<i64>,
}

impl WatermarkStrategy {
    pub fn new(
        kind: StrategyKind,
        max_out_of_orderness_ms: i64,
        emit: Emit,
        interval_ms: i64,
        idleness_ms: Option<i64>,
    ) -> WatermarkStrategy {
        let delay_ms = match kind {
            StrategyKind::BoundedOutOfOrderness => max_out_of_orderness_ms,
            StrategyKind::Monotonous => 0,
            // `delay_ms` is subtracted with 1 ms more.
            StrategyKind::MaxMinusDelay => max_out_of_orderness_ms - 1,
        };
        WatermarkStrategy {
            delay_ms,
            emit,
            interval_ms: interval_ms.max(1),
            idleness_ms,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Split {
    max_ts: i64,
    last_activity_ms: i64,
    idle: bool,
    finished: bool,
}

/// The watermark of one source subtask over its splits.
#[derive(Debug)]
pub struct SourceWatermarks {
    strategy: WatermarkStrategy,
    splits: Vec<Split>,
    /// Last watermark sent downstream.
    emitted: i64,
    idle_sent: bool,
    last_periodic_ms: i64,
}

impl SourceWatermarks {
    /// Its watermarks may wait with the source's batch
    /// (`Emit::PerEventDeferred`).
    pub fn defers(&self) -> bool {
        self.strategy.emit == Emit::PerEventDeferred
    }

    pub fn new(strategy: WatermarkStrategy, now_ms: i64) -> SourceWatermarks {
        SourceWatermarks {
            strategy,
            splits: Vec::new(),
            emitted: i64::MIN,
            idle_sent: false,
            last_periodic_ms: now_ms,
        }
    }

    /// Starts tracking a split; returns its index.
    pub fn add_split(&mut self, now_ms: i64) -> usize {
        self.splits.push(Split {
            max_ts: i64::MIN,
            last_activity_ms: now_ms,
            idle: false,
            finished: false,
        });
        self.splits.len() - 1
    }

    /// The highest event time split `i` has seen.
    pub fn split_max(&self, i: usize) -> i64 {
        self.splits[i].max_ts
    }

    /// Goes on from a snapshot: split `i` has seen up to `max_ts`.
    pub fn set_split_max(&mut self, i: usize, max_ts: i64) {
        self.splits[i].max_ts = max_ts;
    }

    /// The split has no more records: it stops holding the watermark back.
    pub fn finish_split(&mut self, split: usize) {
        self.splits[split].finished = true;
    }

    /// Notes a record. In per-event mode returns the watermark to emit after
    /// it, if the watermark advanced (or the source wakes up from idleness).
    #[inline]
    pub fn on_record(&mut self, split: usize, ts: i64, now_ms: i64) -> Option<Watermark> {
        let s = &mut self.splits[split];
        s.last_activity_ms = now_ms;
        let woke = s.idle;
        s.idle = false;
        let advanced = ts > s.max_ts;
        if advanced {
            s.max_ts = ts;
        }
        if self.strategy.emit.per_event() && (advanced || woke) {
            self.next(woke)
        } else {
            None
        }
    }

    /// Called when the source has nothing to read for now, and between reads
    /// in periodic mode: marks silent splits idle and returns what to emit,
    /// in order. Splits go idle one at a time, in the order their silence
    /// passed the timeout, and in per-event mode the watermark of the splits
    /// still active is emitted after each: a split idle from the start does
    /// not swallow the advance the others make before they fall silent too.
    pub fn on_tick(&mut self, now_ms: i64) -> Vec<Watermark> {
        let mut out = Vec::new();
        let per_event = self.strategy.emit.per_event();
        if let Some(idle_ms) = self.strategy.idleness_ms {
            while let Some(s) = self
                .splits
                .iter_mut()
                .filter(|s| !s.finished && !s.idle && now_ms - s.last_activity_ms >= idle_ms)
                .min_by_key(|s| s.last_activity_ms)
            {
                s.idle = true;
                if per_event {
                    out.extend(self.next(false));
                }
            }
        }
        let due = now_ms - self.last_periodic_ms >= self.strategy.interval_ms;
        if self.strategy.emit == Emit::Periodic && due {
            self.last_periodic_ms = now_ms;
            out.extend(self.next(false));
        } else if per_event {
            out.extend(self.next(false));
        }
        out
    }

    /// The watermark to send now, if any: an advance, an idle mark when every
    /// live split is idle, or a repeat of the last watermark when coming back
    /// from idleness (so that receivers count this input again).
    fn next(&mut self, woke: bool) -> Option<Watermark> {
        let mut min: Option<i64> = None;
        let mut any_live = false;
        for s in &self.splits {
            if s.finished {
                continue;
            }
            any_live = true;
            if s.idle {
                continue;
            }
            let wm = s
                .max_ts
                .saturating_sub(self.strategy.delay_ms)
                .saturating_sub(1);
            min = Some(min.map_or(wm, |m| m.min(wm)));
        }
        match min {
            None if any_live => {
                if self.idle_sent {
                    None
                } else {
                    self.idle_sent = true;
                    Some(Watermark::Idle)
                }
            }
            None => None,
            Some(wm) => {
                if wm > self.emitted {
                    self.emitted = wm;
                    self.idle_sent = false;
                    Some(Watermark::Time(wm))
                } else if self.idle_sent || woke {
                    self.idle_sent = false;
                    (self.emitted > i64::MIN).then_some(Watermark::Time(self.emitted))
                } else {
                    None
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Input {
    watermark: i64,
    idle: bool,
    ended: bool,
}

impl Input {
    /// Whether the input has nothing more to say about event time: it ended,
    /// or sent the final watermark. A finished input does not hold the
    /// others back, and it does not carry the watermark forward either: if
    /// every other input is idle, the combined watermark stays where it is
    /// (an idle input may still have data; FLINK-38477 let the final
    /// watermark of a finished input through and made all of it late).
    fn finished(&self) -> bool {
        self.ended || self.watermark == MAX_WATERMARK
    }
}

/// What a task has received from its input channels, and the watermark it
/// passes on: the minimum over inputs that are neither idle nor ended.
#[derive(Debug)]
pub struct InputWatermarks {
    inputs: Vec<Input>,
    emitted: i64,
    idle_sent: bool,
}

impl InputWatermarks {
    /// How many inputs there are.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    pub fn new(inputs: usize) -> InputWatermarks {
        InputWatermarks {
            inputs: vec![
                Input {
                    watermark: i64::MIN,
                    idle: false,
                    ended: false,
                };
                inputs
            ],
            emitted: i64::MIN,
            idle_sent: false,
        }
    }

    /// The current combined watermark (`i64::MIN` before any).
    pub fn current(&self) -> i64 {
        self.emitted
    }

    /// Notes a watermark from `input`; returns what to pass on.
    pub fn on_watermark(&mut self, input: usize, wm: Watermark) -> Option<Watermark> {
        let i = &mut self.inputs[input];
        match wm {
            Watermark::Time(t) => {
                i.idle = false;
                i.watermark = i.watermark.max(t);
            }
            Watermark::Idle => i.idle = true,
        }
        self.next()
    }

    /// Of the inputs `eligible` admits, the active one (neither idle nor
    /// finished) with the lowest watermark, the lowest index on a tie.
    pub fn lowest(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        self.inputs
            .iter()
            .enumerate()
            .filter(|(i, input)| eligible(*i) && !input.idle && !input.finished())
            .min_by_key(|(i, input)| (input.watermark, *i))
            .map(|(i, _)| i)
    }

    /// Of `groups` groups of inputs (`group_of[i]` is input `i`'s), the one
    /// strictly behind all others in event time: its active inputs' lowest
    /// watermark is below every other group's. Only inputs `eligible`
    /// admits count. `None` on a tie, or when fewer than two groups have
    /// active inputs.
    pub fn behind(
        &self,
        group_of: &[usize],
        groups: usize,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if groups < 2 {
            return None;
        }
        let mut low: smallvec::SmallVec<[Option<i64>; 4]> = smallvec::smallvec![None; groups];
        for (i, (input, &g)) in self.inputs.iter().zip(group_of).enumerate() {
            if eligible(i) && !input.idle && !input.finished() {
                let l = &mut low[g];
                *l = Some(l.map_or(input.watermark, |w| w.min(input.watermark)));
            }
        }
        let mut active = low
            .iter()
            .enumerate()
            .filter_map(|(g, w)| w.map(|w| (w, g)));
        let (mut first, mut second) = (active.next()?, active.next()?);
        if second < first {
            std::mem::swap(&mut first, &mut second);
        }
        for w in active {
            if w < first {
                (first, second) = (w, first);
            } else if w < second {
                second = w;
            }
        }
        (first.0 < second.0).then_some(first.1)
    }

    /// Notes the end of `input`; returns what to pass on and whether all
    /// inputs have ended.
    pub fn on_end(&mut self, input: usize) -> (Option<Watermark>, bool) {
        self.inputs[input].ended = true;
        let all = self.inputs.iter().all(|i| i.ended);
        (if all { None } else { self.next() }, all)
    }

    fn next(&mut self) -> Option<Watermark> {
        let live = self.inputs.iter().filter(|i| !i.finished() && !i.idle);
        let min = match live.map(|i| i.watermark).min() {
            // Every input has finished: pass on the final watermark if one
            // of them sent it.
            None if self.inputs.iter().all(Input::finished) => self
                .inputs
                .iter()
                .any(|i| i.watermark == MAX_WATERMARK)
                .then_some(MAX_WATERMARK),
            min => min,
        };
        match min {
            None => {
                if self.idle_sent || self.inputs.iter().all(|i| i.ended) {
                    None
                } else {
                    self.idle_sent = true;
                    Some(Watermark::Idle)
                }
            }
            Some(min) => {
                if min > self.emitted {
                    self.emitted = min;
                    self.idle_sent = false;
                    Some(Watermark::Time(min))
                } else if self.idle_sent {
                    self.idle_sent = false;
                    (self.emitted > i64::MIN).then_some(Watermark::Time(self.emitted))
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn per_event(delay: i64, idleness: Option<i64>) -> WatermarkStrategy {
        WatermarkStrategy::new(
            StrategyKind::BoundedOutOfOrderness,
            delay,
            Emit::PerEvent,
            200,
            idleness,
        )
    }

    #[test]
    fn the_group_behind_is_the_one_strictly_lowest_among_active_inputs() {
        // Inputs 0 and 1 are group 0, 2 and 3 group 1.
        let groups = [0, 0, 1, 1];
        let mut w = InputWatermarks::new(4);
        let all = |_| true;
        assert_eq!(w.behind(&groups, 2, all), None, "all at the start: a tie");
        for (i, t) in [(0, 10), (1, 50), (2, 20), (3, 30)] {
            w.on_watermark(i, Watermark::Time(t));
        }
        assert_eq!(w.behind(&groups, 2, all), Some(0), "10 < 20");
        assert_eq!(w.behind(&groups, 1, all), None, "one group");
        w.on_watermark(0, Watermark::Idle);
        assert_eq!(w.behind(&groups, 2, all), Some(1), "idle input 0: 50 > 20");
        assert_eq!(w.behind(&groups, 2, |i| i != 2), Some(1), "30 < 50");
        w.on_watermark(3, Watermark::Time(50));
        assert_eq!(w.behind(&groups, 2, |i| i != 2), None, "50 = 50");
        w.on_end(2);
        w.on_end(3);
        assert_eq!(w.behind(&groups, 2, all), None, "group 1 ended");
        // Three groups: the lowest must be below the second lowest.
        let mut w = InputWatermarks::new(3);
        for (i, t) in [(0, 30), (1, 10), (2, 20)] {
            w.on_watermark(i, Watermark::Time(t));
        }
        assert_eq!(w.behind(&[0, 1, 2], 3, all), Some(1));
        w.on_watermark(1, Watermark::Time(40));
        assert_eq!(w.behind(&[0, 1, 2], 3, all), Some(2));
    }

    #[test]
    fn per_event_watermark_is_max_minus_delay_minus_one() {
        let mut w = SourceWatermarks::new(per_event(5000, None), 0);
        let s = w.add_split(0);
        assert_eq!(w.on_record(s, 10_000, 0), Some(Watermark::Time(4_999)));
        assert_eq!(w.on_record(s, 9_000, 0), None, "older record: no advance");
        assert_eq!(w.on_record(s, 10_500, 0), Some(Watermark::Time(5_499)));
    }

    #[test]
    fn a_sql_watermark_is_max_minus_delay_exactly() {
        let sql = |delay| {
            WatermarkStrategy::new(
                StrategyKind::MaxMinusDelay,
                delay,
                Emit::PerEvent,
                200,
                None,
            )
        };
        let mut w = SourceWatermarks::new(sql(5001), 0);
        let s = w.add_split(0);
        assert_eq!(w.on_record(s, 10_000, 0), Some(Watermark::Time(4_999)));
        let mut w = SourceWatermarks::new(sql(0), 0);
        let s = w.add_split(0);
        assert_eq!(w.on_record(s, 10_000, 0), Some(Watermark::Time(10_000)));
    }

    #[test]
    fn periodic_emits_on_interval_only() {
        let strategy =
            WatermarkStrategy::new(StrategyKind::Monotonous, 0, Emit::Periodic, 200, None);
        let mut w = SourceWatermarks::new(strategy, 0);
        let s = w.add_split(0);
        assert_eq!(w.on_record(s, 100, 10), None);
        assert_eq!(w.on_tick(150), []);
        assert_eq!(w.on_tick(200), [Watermark::Time(99)]);
        assert_eq!(w.on_tick(450), [], "nothing new");
    }

    #[test]
    fn idle_split_does_not_hold_back_and_wakes_up() {
        let mut w = SourceWatermarks::new(per_event(0, Some(1000)), 0);
        let a = w.add_split(0);
        let b = w.add_split(0);
        assert_eq!(
            w.on_record(a, 100, 0),
            None,
            "b has no data yet: min is MIN"
        );
        assert_eq!(w.on_record(b, 50, 0), Some(Watermark::Time(49)));
        assert_eq!(w.on_record(a, 500, 900), None, "b still holds at 49");
        assert_eq!(w.on_tick(1500), [Watermark::Time(499)], "b idle now");
        assert_eq!(w.on_tick(2000), [Watermark::Idle], "a idle too");
        assert_eq!(
            w.on_record(b, 60, 2100),
            Some(Watermark::Time(499)),
            "wakes up"
        );
        w.finish_split(a);
        w.finish_split(b);
        assert_eq!(w.on_tick(5000), []);
    }

    #[test]
    fn splits_going_idle_at_one_tick_go_in_the_order_they_fell_silent() {
        let mut w = SourceWatermarks::new(per_event(0, Some(1000)), 0);
        let a = w.add_split(0);
        let _b = w.add_split(0);
        assert_eq!(w.on_record(a, 500, 200), None, "b, silent, holds at MIN");
        // b's silence passed the timeout at 1000, a's at 1200: b goes idle
        // first, and a's watermark goes out before the idle mark.
        assert_eq!(
            w.on_tick(1500),
            [Watermark::Time(499), Watermark::Idle],
            "a's advance is not lost"
        );
    }

    #[test]
    fn inputs_take_the_minimum_of_live_channels() {
        let mut i = InputWatermarks::new(3);
        assert_eq!(i.on_watermark(0, Watermark::Time(10)), None);
        assert_eq!(i.on_watermark(1, Watermark::Time(20)), None);
        assert_eq!(
            i.on_watermark(2, Watermark::Time(5)),
            Some(Watermark::Time(5))
        );
        assert_eq!(
            i.on_watermark(2, Watermark::Idle),
            Some(Watermark::Time(10))
        );
        assert_eq!(i.on_end(0), (Some(Watermark::Time(20)), false));
        assert_eq!(i.on_watermark(1, Watermark::Idle), Some(Watermark::Idle));
        assert_eq!(
            i.on_watermark(2, Watermark::Time(7)),
            Some(Watermark::Time(20))
        );
        assert_eq!(i.on_end(1), (None, false), "input 2 is behind: nothing new");
        assert_eq!(i.on_end(2), (None, true));
    }

    /// FLINK-38477: one input finished (final watermark, then its end) and
    /// the other idle. The idle input may still have data, so the combined
    /// watermark stays where the idle input left it; it reaches the end only
    /// when the idle input finishes too.
    #[test]
    fn a_finished_input_and_an_idle_one_do_not_end_event_time() {
        let mut i = InputWatermarks::new(2);
        assert_eq!(i.on_watermark(0, Watermark::Time(100)), None);
        assert_eq!(
            i.on_watermark(1, Watermark::Time(50)),
            Some(Watermark::Time(50))
        );
        assert_eq!(
            i.on_watermark(1, Watermark::Idle),
            Some(Watermark::Time(100)),
            "an idle input does not hold back the active one"
        );
        assert_eq!(
            i.on_watermark(0, Watermark::Time(MAX_WATERMARK)),
            Some(Watermark::Idle),
            "the finished input's final watermark does not pass: input 1 is only idle"
        );
        assert_eq!(i.on_end(0), (None, false));
        assert_eq!(i.current(), 100);
        assert_eq!(
            i.on_watermark(1, Watermark::Time(120)),
            Some(Watermark::Time(120)),
            "input 1 comes back and leads"
        );
        assert_eq!(
            i.on_watermark(1, Watermark::Time(MAX_WATERMARK)),
            Some(Watermark::Time(MAX_WATERMARK))
        );
        assert_eq!(i.on_end(1), (None, true));
    }

    proptest! {
        /// Whatever arrives in whatever order, the combined watermark never
        /// goes back, and whenever it moves it moves to the minimum of the
        /// live inputs.
        #[test]
        fn combined_watermark_is_monotone_min_of_live_inputs(
            events in proptest::collection::vec((0usize..4, 0i64..1000, 0u8..11), 1..200)
        ) {
            let mut iw = InputWatermarks::new(4);
            let mut state = [(i64::MIN, false, false); 4]; // (wm, idle, ended)
            let mut last = i64::MIN;
            for (input, t, kind) in events {
                if state[input].2 { continue; }
                let out = match kind {
                    0 => { state[input].2 = true; iw.on_end(input).0 }
                    1 => { state[input].1 = true; iw.on_watermark(input, Watermark::Idle) }
                    2 => {
                        state[input].1 = false;
                        state[input].0 = MAX_WATERMARK;
                        iw.on_watermark(input, Watermark::Time(MAX_WATERMARK))
                    }
                    _ => {
                        state[input].1 = false;
                        state[input].0 = state[input].0.max(t);
                        iw.on_watermark(input, Watermark::Time(t))
                    }
                };
                let finished = |s: &(i64, bool, bool)| s.2 || s.0 == MAX_WATERMARK;
                let live_min = state.iter().filter(|s| !s.1 && !finished(s)).map(|s| s.0).min()
                    .or_else(|| state.iter().all(finished).then_some(MAX_WATERMARK));
                if let Some(Watermark::Time(wm)) = out {
                    prop_assert!(wm >= last);
                    if wm > last {
                        prop_assert_eq!(Some(wm), live_min);
                    }
                    last = wm;
                }
                prop_assert_eq!(iw.current(), last);
                if out == Some(Watermark::Idle) {
                    prop_assert!(live_min.is_none());
                }
            }
        }
    }
}
