//! `counter_v3`: a counter that keeps `count` as decimal text (layout
//! version 3) and has no state-migration hook. The host refuses to restore
//! it from a snapshot of `counter_v1` or `counter_v2`, whose `count` has
//! another layout: the module-swap example's incompatible module.

use sluice_guest::serde_json::json;
use sluice_guest::{Config, Context, Error, KeyedProcess, Record, Setup, StateOptions, ValueState};

struct Counter {
    count: ValueState<String>,
}

impl KeyedProcess for Counter {
    fn open(_config: Config, setup: &mut Setup) -> Result<Self, Error> {
        Ok(Counter {
            count: setup.value_state_with("count", StateOptions::version(3))?,
        })
    }

    fn process(&mut self, _record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
        let n: u64 = match self.count.get(ctx)? {
            Some(text) => text.parse().map_err(|e| format!("count {text:?}: {e}"))?,
            None => 0,
        };
        self.count.set(ctx, &(n + 1).to_string())?;
        ctx.emit_json(&json!({ "total": (n + 1).to_string(), "counter": 3 }))
    }
}

sluice_guest::export_process!(Counter);
