//! W5 of the shared benchmark (`bench/README.md` there): per key at most one
//! open session, kept in three value states (`start`, `last`, `count`), and
//! one event-time timer at `last + gap - 1` that closes it. The timer moves
//! whenever `last` does.
//!
//! - A record whose session would already have closed (`ts + gap - 1 <=
//!   watermark`) with no open session is late: it goes to the side output
//!   `late`.
//! - A record more than `gap` after the open session's last record closes
//!   that session early (its timer has not fired yet because the watermark
//!   lags) and opens a new one; the row says `"early_close":true`.
//! - A record more than `gap` before the session's start cannot join it: late
//!   if the watermark has passed its own session, else `dropped_ooo` (a side
//!   output of that name).
//!
//! Output rows: `{"customer_id":…, "session_start":…, "session_end":…,
//! "count":…}` with `session_end = last + gap`; the key field is named by the
//! config's `key_field` (default `customer_id`).

use sluice_guest::{
    Config, Context, Error, KeyedProcess, Record, Setup, SideOutput, Timer, ValueState,
};

#[derive(sluice_guest::serde::Deserialize)]
#[serde(crate = "sluice_guest::serde", default, deny_unknown_fields)]
struct Settings {
    gap_ms: i64,
    key_field: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            gap_ms: 30_000,
            key_field: "customer_id".into(),
        }
    }
}

struct SessionDetector {
    gap: i64,
    /// The output rows' name for the key.
    key_field: String,
    start: ValueState<i64>,
    last: ValueState<i64>,
    count: ValueState<u64>,
    late: SideOutput,
    dropped: SideOutput,
}

impl SessionDetector {
    fn emit(
        &self,
        ctx: &mut Context<'_>,
        start: i64,
        last: i64,
        count: u64,
        early: bool,
    ) -> Result<(), Error> {
        // The key is the key field's JSON text (`key_by` on it).
        let key = ctx.key();
        ctx.emit_object(|row| {
            row.raw(&self.key_field, key)
                .i64("session_start", start)
                .i64("session_end", last + self.gap)
                .i64("count", count as i64);
            if early {
                row.bool("early_close", true);
            }
            Ok(())
        })
    }

    fn open_session(&self, ctx: &mut Context<'_>, ts: i64) -> Result<(), Error> {
        self.start.set(ctx, &ts)?;
        self.last.set(ctx, &ts)?;
        self.count.set(ctx, &1)?;
        ctx.register_event_time_timer(ts + self.gap - 1);
        Ok(())
    }
}

impl KeyedProcess for SessionDetector {
    fn open(config: Config, setup: &mut Setup) -> Result<Self, Error> {
        let s: Settings = config.parse()?;
        if s.gap_ms <= 0 {
            return Err("gap_ms must be positive".into());
        }
        Ok(SessionDetector {
            gap: s.gap_ms,
            key_field: s.key_field,
            start: setup.value_state("start")?,
            last: setup.value_state("last")?,
            count: setup.value_state("count")?,
            late: setup.side_output("late"),
            dropped: setup.side_output("dropped_ooo"),
        })
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
        let ts = record.timestamp().ok_or("the record has no event time")?;
        let wm = ctx.current_watermark();
        let late = ts + self.gap - 1 <= wm;
        let Some(start) = self.start.get(ctx)? else {
            if late {
                ctx.emit_value_to(self.late, record.value());
                return Ok(());
            }
            return self.open_session(ctx, ts);
        };
        let last = self.last.get(ctx)?.ok_or("state `last` is missing")?;
        let count = self.count.get(ctx)?.ok_or("state `count` is missing")?;
        if ts > last + self.gap {
            self.emit(ctx, start, last, count, true)?;
            ctx.delete_event_time_timer(last + self.gap - 1);
            return self.open_session(ctx, ts);
        }
        if ts + self.gap < start {
            let to = if late { self.late } else { self.dropped };
            ctx.emit_value_to(to, record.value());
            return Ok(());
        }
        if ts < start {
            self.start.set(ctx, &ts)?;
        }
        if ts > last {
            ctx.delete_event_time_timer(last + self.gap - 1);
            ctx.register_event_time_timer(ts + self.gap - 1);
            self.last.set(ctx, &ts)?;
        }
        self.count.set(ctx, &(count + 1))
    }

    fn on_timer(&mut self, _timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        if let (Some(start), Some(last), Some(count)) = (
            self.start.get(ctx)?,
            self.last.get(ctx)?,
            self.count.get(ctx)?,
        ) {
            self.emit(ctx, start, last, count, false)?;
        }
        self.start.clear(ctx);
        self.last.clear(ctx);
        self.count.clear(ctx);
        Ok(())
    }
}

sluice_guest::export_process!(SessionDetector);
