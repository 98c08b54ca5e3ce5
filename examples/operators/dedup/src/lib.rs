//! Deduplication: the first record per key goes to the main output, later
//! ones with the same key to the side output `duplicates`. The "seen" flag is
//! a value state with a TTL (`ttl_ms`, processing time, default one hour), so
//! the state of keys that stop appearing is dropped by the host: the memory
//! a dedup needs is bounded by the keys of the last `ttl_ms`, not by all keys
//! ever seen.

use serde::Deserialize;
use sluice_guest::{Config, Context, Error, KeyedProcess, Record, Setup, SideOutput, ValueState};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    ttl_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { ttl_ms: 3_600_000 }
    }
}

struct Dedup {
    seen: ValueState<bool>,
    duplicates: SideOutput,
}

impl KeyedProcess for Dedup {
    fn open(config: Config, setup: &mut Setup) -> Result<Self, Error> {
        let s: Settings = config.parse()?;
        if s.ttl_ms == 0 {
            return Err("ttl_ms must be positive".into());
        }
        Ok(Dedup {
            seen: setup.value_state_with_ttl("seen", Some(Duration::from_millis(s.ttl_ms)))?,
            duplicates: setup.side_output("duplicates"),
        })
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
        if self.seen.get(ctx)?.is_some() {
            ctx.emit_value_to(self.duplicates, record.value());
        } else {
            self.seen.set(ctx, &true)?;
            ctx.emit_value(record.value());
        }
        Ok(())
    }
}

sluice_guest::export_process!(Dedup);
