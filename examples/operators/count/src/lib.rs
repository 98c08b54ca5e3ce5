//! `count`: a window aggregate that counts records, without parsing them.
//!
//! Config (optional; this is the default):
//!
//! ```json
//! {"as": "count"}
//! ```
//!
//! The window's result is `{"count": n}`, with the field name from `as`. The
//! accumulator is the count itself, a JSON number.
//!
//! Build (from the workspace root):
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p count
//! ```
//!
//! which writes `target/wasm32-wasip2/release/count.wasm`, the module the
//! pipeline specs under `examples/` refer to.

use sluice_guest::serde_json::{Map, Value};
use sluice_guest::{Aggregate, Config, Error, Record};

/// The operator's config.
#[derive(sluice_guest::serde::Deserialize)]
#[serde(crate = "sluice_guest::serde", default, deny_unknown_fields)]
struct Settings {
    #[serde(rename = "as")]
    name: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: "count".to_owned(),
        }
    }
}

struct Count {
    name: String,
}

impl Aggregate for Count {
    type Acc = u64;
    type Output = Map<String, Value>;

    fn open(config: Config) -> Result<Self, Error> {
        let Settings { name } = config.parse()?;
        Ok(Count { name })
    }

    fn create(&self) -> u64 {
        0
    }

    fn add(&self, acc: &mut u64, _record: &Record<'_>) -> Result<(), Error> {
        *acc += 1;
        Ok(())
    }

    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }

    fn result(&self, acc: &u64) -> Map<String, Value> {
        let mut row = Map::new();
        row.insert(self.name.clone(), (*acc).into());
        row
    }
}

sluice_guest::export_aggregate!(Count);

#[cfg(test)]
mod tests {
    use sluice_guest::serde_json::json;
    use sluice_guest::testing::run_aggregate;

    use super::*;

    #[test]
    fn counts_anything() {
        let op = Count::open(Config::new(r#"{"as": "events"}"#)).unwrap();
        let run = run_aggregate(&op, &["{}", "not json", ""]);
        assert_eq!(run.result, json!({"events": 3}));
        assert_eq!(run.accumulator, json!(3));
        assert!(run.errors.is_empty());
        let op = Count::open(Config::new("null")).unwrap();
        assert_eq!(run_aggregate(&op, &[]).result, json!({"count": 0}));
    }
}
