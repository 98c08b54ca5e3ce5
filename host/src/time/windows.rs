//! Which windows a timestamp belongs to.
//!
//! Tumbling, sliding and cumulate windows are *aligned*: every window is a
//! union of consecutive panes of one size (the window size for tumbling, the
//! gcd of size and slide for sliding, the step for cumulate), aligned to the
//! epoch plus an offset. The window operator keeps one accumulator per key and
//! pane, so a record is added once however many windows it belongs to, and a
//! firing window merges its panes. A pane lives until the last window that
//! contains it has expired. Session windows are not aligned; they are merged
//! per key (see `crate::window`).

use crate::units::Dur;
use serde::Deserialize;
use std::fmt;

/// Aligned windows, or sessions that close after `gap` without a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    Aligned(Aligned),
    Session { gap: i64 },
}

/// Windows as a spec writes them (`{ type: tumbling, size: 60s }`), for
/// the window operator and the window join.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowSpec {
    Tumbling {
        size: Dur,
        #[serde(default)]
        offset: Dur,
    },
    Sliding {
        size: Dur,
        slide: Dur,
        #[serde(default)]
        offset: Dur,
    },
    Session {
        gap: Dur,
    },
    /// Flink SQL's CUMULATE: windows that grow by `step` from a common start
    /// up to `size`.
    Cumulate {
        size: Dur,
        step: Dur,
        #[serde(default)]
        offset: Dur,
    },
}

impl WindowSpec {
    pub fn kind(self) -> Result<WindowKind, String> {
        match self {
            WindowSpec::Tumbling { size, offset } => {
                Aligned::tumbling(size.millis(), offset.millis()).map(WindowKind::Aligned)
            }
            WindowSpec::Sliding {
                size,
                slide,
                offset,
            } => Aligned::sliding(size.millis(), slide.millis(), offset.millis())
                .map(WindowKind::Aligned),
            WindowSpec::Cumulate { size, step, offset } => {
                Aligned::cumulate(size.millis(), step.millis(), offset.millis())
                    .map(WindowKind::Aligned)
            }
            WindowSpec::Session { gap } if gap.millis() > 0 => {
                Ok(WindowKind::Session { gap: gap.millis() })
            }
            WindowSpec::Session { .. } => Err("a session gap must be positive".to_owned()),
        }
    }
}

/// A window `[start, end)`, epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The last timestamp inside the window: it fires when the watermark
    /// reaches this.
    #[inline]
    pub fn max_timestamp(self) -> i64 {
        self.end - 1
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlignedKind {
    Tumbling,
    Sliding,
    Cumulate,
}

/// An aligned window assigner (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Aligned {
    pub kind: AlignedKind,
    pub size: i64,
    /// Tumbling: the size; sliding: the slide; cumulate: the step.
    pub slide: i64,
    pub offset: i64,
    pub pane: i64,
}

impl fmt::Debug for Aligned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}(size {} ms, slide {} ms, offset {} ms, pane {} ms)",
            self.kind, self.size, self.slide, self.offset, self.pane
        )
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Aligned {
    pub fn tumbling(size: i64, offset: i64) -> Result<Aligned, String> {
        positive("size", size)?;
        Ok(Aligned {
            kind: AlignedKind::Tumbling,
            size,
            slide: size,
            offset: offset.rem_euclid(size),
            pane: size,
        })
    }

    pub fn sliding(size: i64, slide: i64, offset: i64) -> Result<Aligned, String> {
        positive("size", size)?;
        positive("slide", slide)?;
        if slide > size {
            return Err(format!(
                "a sliding window's slide ({slide} ms) must not exceed its size ({size} ms)"
            ));
        }
        Ok(Aligned {
            kind: AlignedKind::Sliding,
            size,
            slide,
            offset: offset.rem_euclid(slide),
            pane: gcd(size, slide),
        })
    }

    pub fn cumulate(size: i64, step: i64, offset: i64) -> Result<Aligned, String> {
        positive("size", size)?;
        positive("step", step)?;
        if size % step != 0 {
            return Err(format!(
                "a cumulate window's size ({size} ms) must be a multiple of its step ({step} ms)"
            ));
        }
        Ok(Aligned {
            kind: AlignedKind::Cumulate,
            size,
            slide: step,
            offset: offset.rem_euclid(size),
            pane: step,
        })
    }

    /// Start of the pane holding `ts`.
    #[inline]
    pub fn pane_of(&self, ts: i64) -> i64 {
        ts - (ts - self.offset).rem_euclid(self.pane)
    }

    #[inline]
    fn align(&self, ts: i64, unit: i64) -> i64 {
        ts - (ts - self.offset).rem_euclid(unit)
    }

    /// Calls `f` for every window holding `ts`, latest end first.
    #[inline]
    pub fn for_each_window(&self, ts: i64, mut f: impl FnMut(Window)) {
        match self.kind {
            AlignedKind::Tumbling => {
                let start = self.align(ts, self.size);
                f(Window {
                    start,
                    end: start + self.size,
                });
            }
            AlignedKind::Sliding => {
                let mut start = self.align(ts, self.slide);
                while start > ts - self.size {
                    f(Window {
                        start,
                        end: start + self.size,
                    });
                    start -= self.slide;
                }
            }
            AlignedKind::Cumulate => {
                let start = self.align(ts, self.size);
                let mut end = start + self.size;
                while end > ts {
                    f(Window { start, end });
                    end -= self.slide;
                }
            }
        }
    }

    /// The end of the last window holding `ts`: once that window has
    /// expired, `ts` is late for all of them.
    #[inline]
    pub fn last_end(&self, ts: i64) -> i64 {
        match self.kind {
            AlignedKind::Tumbling | AlignedKind::Cumulate => self.align(ts, self.size) + self.size,
            AlignedKind::Sliding => self.align(ts, self.slide) + self.size,
        }
    }
}

fn positive(what: &str, v: i64) -> Result<(), String> {
    if v <= 0 {
        return Err(format!("the window {what} must be positive"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn windows(a: &Aligned, ts: i64) -> Vec<Window> {
        let mut v = Vec::new();
        a.for_each_window(ts, |w| v.push(w));
        v
    }

    #[test]
    fn examples() {
        let t = Aligned::tumbling(60_000, 0).unwrap();
        assert_eq!(
            windows(&t, 1_700_000_059_999),
            [Window {
                start: 1_700_000_040_000,
                end: 1_700_000_100_000
            }]
        );
        let s = Aligned::sliding(600_000, 60_000, 0).unwrap();
        let ws = windows(&s, 1_700_000_000_123);
        assert_eq!(ws.len(), 10);
        assert_eq!(ws[0].start, 1_699_999_980_000);
        assert_eq!(ws[9].start, 1_699_999_980_000 - 9 * 60_000);
        let c = Aligned::cumulate(86_400_000, 3_600_000, 0).unwrap();
        let ws = windows(&c, 5 * 3_600_000 + 10);
        assert_eq!(ws.len(), 19, "windows ending at 6h, 7h, ... 24h");
        assert!(ws.iter().all(|w| w.start == 0));
        assert_eq!(Aligned::sliding(10, 4, 0).unwrap().pane, 2);
        assert!(Aligned::sliding(1, 4, 0).is_err());
        assert!(Aligned::cumulate(10, 3, 0).is_err());
    }

    fn assigner() -> impl Strategy<Value = Aligned> {
        prop_oneof![
            (1i64..100, -50i64..50).prop_map(|(s, o)| Aligned::tumbling(s, o).unwrap()),
            (1i64..40, 1i64..40, -50i64..50)
                .prop_filter("slide <= size", |(a, b, _)| b <= a)
                .prop_map(|(size, slide, o)| Aligned::sliding(size, slide, o).unwrap()),
            (1i64..20, 1i64..8, -50i64..50).prop_map(|(step, n, o)| Aligned::cumulate(
                step * n,
                step,
                o
            )
            .unwrap()),
        ]
    }

    proptest! {
        /// Every window holding ts contains it, is a whole number of panes,
        /// is aligned, and the windows are exactly the ones of a brute-force
        /// scan; the pane of ts lies inside each of them.
        #[test]
        fn windows_hold_their_timestamps_and_are_unions_of_panes(a in assigner(), ts in -1000i64..1000) {
            let ws = windows(&a, ts);
            prop_assert!(!ws.is_empty());
            let pane = a.pane_of(ts);
            prop_assert!(pane <= ts && ts < pane + a.pane);
            for w in &ws {
                prop_assert!(w.start <= ts && ts < w.end, "{:?} {:?} {}", a, w, ts);
                prop_assert_eq!((w.end - w.start) % a.pane, 0);
                prop_assert_eq!((w.start - a.offset).rem_euclid(a.pane), 0);
                prop_assert!(w.start <= pane && pane + a.pane <= w.end);
            }
            prop_assert_eq!(ws.iter().map(|w| w.end).max().unwrap(), a.last_end(ts));
            // Brute force over all windows of this assigner near ts.
            let mut expected = Vec::new();
            for start in (ts - 200)..=ts {
                for end in (ts + 1)..=(ts + 200) {
                    let w = Window { start, end };
                    let ok = match a.kind {
                        AlignedKind::Tumbling => end - start == a.size && (start - a.offset).rem_euclid(a.size) == 0,
                        AlignedKind::Sliding => end - start == a.size && (start - a.offset).rem_euclid(a.slide) == 0,
                        AlignedKind::Cumulate => (start - a.offset).rem_euclid(a.size) == 0
                            && end - start <= a.size && (end - start) % a.slide == 0,
                    };
                    if ok { expected.push(w); }
                }
            }
            let mut got = ws.clone();
            got.sort();
            expected.sort();
            prop_assert_eq!(got, expected);
        }
    }
}
