//! `counter_v1`: counts records per key and emits the running count with
//! each record: `{"key": "...", "count": n}`. Its one state, `count`, is a
//! JSON number (layout version 1).
//!
//! It is the first module of the module-swap example
//! (`examples/savepoints/counter.yaml`): a savepoint taken while it runs is
//! restored with `counter_v2`, which migrates `count` to its own layout.

use sluice_guest::serde_json::json;
use sluice_guest::{Config, Context, Error, KeyedProcess, Record, Setup, ValueState};

struct Counter {
    count: ValueState<u64>,
}

impl KeyedProcess for Counter {
    fn open(_config: Config, setup: &mut Setup) -> Result<Self, Error> {
        Ok(Counter {
            count: setup.value_state("count")?,
        })
    }

    fn process(&mut self, _record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
        let n = self.count.get(ctx)?.unwrap_or(0) + 1;
        self.count.set(ctx, &n)?;
        let key = String::from_utf8_lossy(ctx.key()).into_owned();
        ctx.emit_json(&json!({ "key": key, "count": n }))
    }
}

sluice_guest::export_process!(Counter);
