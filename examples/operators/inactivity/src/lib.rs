//! Inactivity alerts with processing-time timers: every record of a key
//! moves that key's timer to `timeout_ms` from now (the host's clock); when a
//! key stays quiet that long, the timer fires and the operator emits
//! `{"key": …, "records": n, "last_event_ts": …}` and forgets the key.

use serde::{Deserialize, Serialize};
use sluice_guest::{Config, Context, Error, KeyedProcess, Record, Setup, Timer, ValueState};

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    timeout_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { timeout_ms: 60_000 }
    }
}

#[derive(Serialize)]
struct Quiet<'a> {
    key: &'a str,
    records: u64,
    last_event_ts: Option<i64>,
}

struct Inactivity {
    timeout: i64,
    timer: ValueState<i64>,
    records: ValueState<u64>,
    last_event_ts: ValueState<i64>,
}

impl KeyedProcess for Inactivity {
    fn open(config: Config, setup: &mut Setup) -> Result<Self, Error> {
        let s: Settings = config.parse()?;
        if s.timeout_ms <= 0 {
            return Err("timeout_ms must be positive".into());
        }
        Ok(Inactivity {
            timeout: s.timeout_ms,
            timer: setup.value_state("timer")?,
            records: setup.value_state("records")?,
            last_event_ts: setup.value_state("last_event_ts")?,
        })
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
        if let Some(old) = self.timer.get(ctx)? {
            ctx.delete_processing_time_timer(old);
        }
        let at = ctx.current_processing_time() + self.timeout;
        ctx.register_processing_time_timer(at);
        self.timer.set(ctx, &at)?;
        let n = self.records.get(ctx)?.unwrap_or(0);
        self.records.set(ctx, &(n + 1))?;
        if let Some(ts) = record.timestamp() {
            self.last_event_ts.set(ctx, &ts)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, _timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        let key = String::from_utf8_lossy(ctx.key()).into_owned();
        let quiet = Quiet {
            key: key.trim_matches('"'),
            records: self.records.get(ctx)?.unwrap_or(0),
            last_event_ts: self.last_event_ts.get(ctx)?,
        };
        ctx.emit_json(&quiet)?;
        self.timer.clear(ctx);
        self.records.clear(ctx);
        self.last_event_ts.clear(ctx);
        Ok(())
    }
}

sluice_guest::export_process!(Inactivity);
