//! Fraud detection, the classic keyed-state example: per card (the key), the
//! recent uses are kept in a list state; a use in a city other than one of
//! the card's uses within the last `window_ms` (event time, default ten
//! minutes) raises an alert. An event-time timer `window_ms` after each use
//! expires it, so the state holds only what can still matter. A map state
//! remembers which city pairs have already alerted, so a card going back
//! and forth alerts once per pair until its memory expires.
//!
//! Input: `{"card":…, "city":…, "ts":…}` (other fields ignored).
//! Output: `{"card":…, "cities":[earlier, later], "first_ts":…, "second_ts":…}`.

use serde::{Deserialize, Serialize};
use sluice_guest::{
    Config, Context, Error, KeyedProcess, ListState, MapState, Record, Setup, Timer,
};

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    window_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { window_ms: 600_000 }
    }
}

#[derive(Deserialize)]
struct Use<'a> {
    card: &'a str,
    city: &'a str,
}

#[derive(Serialize, Deserialize, Clone)]
struct Seen {
    city: String,
    ts: i64,
}

#[derive(Serialize)]
struct Alert<'a> {
    card: &'a str,
    cities: [&'a str; 2],
    first_ts: i64,
    second_ts: i64,
}

struct FraudDetector {
    window: i64,
    recent: ListState<Seen>,
    /// "city-a|city-b" → when the pair alerted.
    alerted: MapState<String, i64>,
}

impl KeyedProcess for FraudDetector {
    fn open(config: Config, setup: &mut Setup) -> Result<Self, Error> {
        let s: Settings = config.parse()?;
        if s.window_ms <= 0 {
            return Err("window_ms must be positive".into());
        }
        Ok(FraudDetector {
            window: s.window_ms,
            recent: setup.list_state("recent")?,
            alerted: setup.map_state("alerted")?,
        })
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
        let ts = record.timestamp().ok_or("the record has no event time")?;
        let u: Use<'_> = record.json()?;
        let recent = self.recent.get(ctx)?;
        for s in &recent {
            if s.city == u.city || (s.ts - ts).abs() > self.window {
                continue;
            }
            let (first, second) = if s.ts <= ts {
                ((s.city.as_str(), s.ts), (u.city, ts))
            } else {
                ((u.city, ts), (s.city.as_str(), s.ts))
            };
            let pair = format!("{}|{}", first.0, second.0);
            if self.alerted.contains(ctx, &pair)? {
                continue;
            }
            self.alerted.put(ctx, &pair, &ts)?;
            ctx.emit_json(&Alert {
                card: u.card,
                cities: [first.0, second.0],
                first_ts: first.1,
                second_ts: second.1,
            })?;
        }
        self.recent.add(
            ctx,
            &Seen {
                city: u.city.to_owned(),
                ts,
            },
        )?;
        ctx.register_event_time_timer(ts + self.window);
        Ok(())
    }

    /// Forgets the uses (and alerts) older than the window.
    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        let horizon = timer.time - self.window;
        let kept: Vec<Seen> = self
            .recent
            .get(ctx)?
            .into_iter()
            .filter(|s| s.ts > horizon)
            .collect();
        self.recent.update(ctx, &kept)?;
        for (pair, at) in self.alerted.entries(ctx)? {
            if at <= horizon {
                self.alerted.remove(ctx, &pair)?;
            }
        }
        Ok(())
    }
}

sluice_guest::export_process!(FraudDetector);
