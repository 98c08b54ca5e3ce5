//! `counter_v2`: the second version of `counter_v1`. It emits
//! `{"key": "...", "n": n, "last_ts": t, "counter": 2}` and keeps
//! `{"n": n, "last_ts": t}` in `count` (layout version 2, the time of the
//! key's latest record).
//!
//! It exports the state-migration hook: restored from a snapshot of
//! `counter_v1`, the host hands it every `count` of version 1 (a JSON
//! number) to convert before the first record, so counts go on where v1
//! left them.

use sluice_guest::serde::{Deserialize, Serialize};
use sluice_guest::serde_json::{self, json};
use sluice_guest::{
    Config, Context, Error, KeyedProcess, MigrateState, Record, Setup, StateOptions, ValueState,
};

#[derive(Serialize, Deserialize)]
#[serde(crate = "sluice_guest::serde")]
struct Tally {
    n: u64,
    /// The event time of the key's latest record (unknown for counts v1
    /// made).
    last_ts: Option<i64>,
}

struct Counter {
    count: ValueState<Tally>,
}

impl KeyedProcess for Counter {
    fn open(_config: Config, setup: &mut Setup) -> Result<Self, Error> {
        Ok(Counter {
            count: setup.value_state_with("count", StateOptions::version(2))?,
        })
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
        let old = self.count.get(ctx)?;
        let tally = Tally {
            n: old.map_or(0, |t| t.n) + 1,
            last_ts: record.timestamp(),
        };
        self.count.set(ctx, &tally)?;
        let key = String::from_utf8_lossy(ctx.key()).into_owned();
        ctx.emit_json(&json!({ "key": key, "n": tally.n, "last_ts": tally.last_ts, "counter": 2 }))
    }
}

impl MigrateState for Counter {
    fn migrate(&self, state: &str, from_version: u32, item: &[u8]) -> Result<Vec<u8>, Error> {
        match (state, from_version) {
            ("count", 1) => {
                let n: u64 = serde_json::from_slice(item)
                    .map_err(|e| format!("a version-1 count is a number: {e}"))?;
                Ok(serde_json::to_vec(&Tally { n, last_ts: None })?)
            }
            _ => Err(format!("no migration of state `{state}` from version {from_version}").into()),
        }
    }
}

sluice_guest::export_process!(Counter, migrate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_count_becomes_a_tally() {
        let op = Counter::open(Config::new("null"), &mut sluice_guest::testing::setup()).unwrap();
        assert_eq!(
            op.migrate("count", 1, b"41").unwrap(),
            br#"{"n":41,"last_ts":null}"#
        );
        assert!(op.migrate("count", 1, b"\"x\"").is_err());
        assert!(op.migrate("seen", 1, b"1").is_err());
    }
}
