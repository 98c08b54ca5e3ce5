//! `count-sum`: a window aggregate that counts records and sums one numeric
//! field of their JSON value, in cents.
//!
//! Config (every field optional; these are the defaults):
//!
//! ```json
//! {"field": "amount", "count_as": "count", "sum_as": "sum_cents"}
//! ```
//!
//! For each record, reads the top-level field `field` of the record's JSON
//! object (a missing or non-numeric field is a record error naming it) and
//! adds `(value * 100.0).round()` to the sum. The window's result is
//! `{"count": 7, "sum_cents": 81234}`, with the names from `count_as` and
//! `sum_as`. The accumulator is `{"count": u64, "sum_cents": i64}`.
//!
//! Build (from the workspace root):
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p count-sum
//! ```
//!
//! which writes `target/wasm32-wasip2/release/count_sum.wasm`, the module the
//! pipeline specs under `examples/` refer to.

use serde::{Deserialize, Serialize};
use sluice_guest::serde_json::{Map, Value};
use sluice_guest::{Aggregate, Config, Error, Record};

/// The operator's config.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    field: String,
    count_as: String,
    sum_as: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            field: "amount".to_owned(),
            count_as: "count".to_owned(),
            sum_as: "sum_cents".to_owned(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Acc {
    count: u64,
    sum_cents: i64,
}

struct CountSum {
    field: String,
    count_as: String,
    sum_as: String,
}

impl Aggregate for CountSum {
    type Acc = Acc;
    type Output = Map<String, Value>;

    fn open(config: Config) -> Result<Self, Error> {
        let Settings {
            field,
            count_as,
            sum_as,
        } = config.parse()?;
        if count_as == sum_as {
            return Err(
                format!("count_as and sum_as are both {count_as:?}; name them apart").into(),
            );
        }
        Ok(CountSum {
            field,
            count_as,
            sum_as,
        })
    }

    fn create(&self) -> Acc {
        Acc {
            count: 0,
            sum_cents: 0,
        }
    }

    fn add(&self, acc: &mut Acc, record: &Record<'_>) -> Result<(), Error> {
        // The SDK steps over the other fields without parsing them (or the
        // host has found the field already), and reads the number without
        // serde. If the field occurs twice, the first one counts.
        let [field] = record.fields([self.field.as_str()])?;
        let value = field.f64()?;
        acc.count += 1;
        acc.sum_cents += (value * 100.0).round() as i64;
        Ok(())
    }

    fn merge(&self, acc: &mut Acc, other: Acc) {
        acc.count += other.count;
        acc.sum_cents += other.sum_cents;
    }

    fn result(&self, acc: &Acc) -> Map<String, Value> {
        let mut row = Map::new();
        row.insert(self.count_as.clone(), acc.count.into());
        row.insert(self.sum_as.clone(), acc.sum_cents.into());
        row
    }
}

sluice_guest::export_aggregate!(CountSum);

#[cfg(test)]
mod tests {
    use sluice_guest::serde_json::json;
    use sluice_guest::testing::run_aggregate;

    use super::*;

    #[test]
    fn counts_and_sums_cents() {
        let op = CountSum::open(Config::new("null")).unwrap();
        let run = run_aggregate(
            &op,
            &[
                r#"{"amount":137.52,"currency":"USD"}"#,
                r#"{"amount":"137.52"}"#,
                r#"{"amount":0.29}"#,
                r#"{"other":1}"#,
                r#"{"amount":10}"#,
            ],
        );
        assert_eq!(run.result, json!({"count": 3, "sum_cents": 14781}));
        assert_eq!(run.accumulator, json!({"count": 3, "sum_cents": 14781}));
        assert_eq!(
            run.errors,
            [
                (1, r#"field "amount" is not a number"#.to_owned()),
                (3, r#"field "amount" is missing"#.to_owned()),
            ]
        );
    }

    #[test]
    fn names_come_from_the_config() {
        let op = CountSum::open(Config::new(
            r#"{"field": "price", "count_as": "n", "sum_as": "total"}"#,
        ))
        .unwrap();
        let run = run_aggregate(&op, &[r#"{"price":1.5}"#, r#"{"price":-0.5}"#]);
        assert_eq!(run.result, json!({"n": 2, "total": 100}));
        assert!(CountSum::open(Config::new(r#"{"count_as": "x", "sum_as": "x"}"#)).is_err());
    }

    #[test]
    fn merge_adds() {
        let op = CountSum::open(Config::new("null")).unwrap();
        let mut acc = Acc {
            count: 2,
            sum_cents: 5,
        };
        op.merge(
            &mut acc,
            Acc {
                count: 3,
                sum_cents: -1,
            },
        );
        assert_eq!((acc.count, acc.sum_cents), (5, 4));
    }

    /// What `add` reads from `json` as field `name`: the sum of one record.
    fn numeric_field(json: &[u8], name: &str) -> Result<f64, String> {
        let op = CountSum {
            field: name.into(),
            count_as: "count".into(),
            sum_as: "sum_cents".into(),
        };
        let run = run_aggregate(&op, &[std::str::from_utf8(json).unwrap()]);
        match run.errors.first() {
            Some((_, e)) => Err(e.clone()),
            None => Ok(run.result["sum_cents"].as_i64().unwrap() as f64 / 100.0),
        }
    }

    #[test]
    fn reads_the_named_numeric_field() {
        let order = br#"{"order_id":"o-1","amount":137.52,"nested":{"amount":1},"list":[1,{"a":2}],"n":-3}"#;
        assert_eq!(numeric_field(order, "amount").unwrap(), 137.52);
        assert_eq!(numeric_field(order, "n").unwrap(), -3.0);
        assert_eq!(numeric_field(br#"{"a\u0062":2}"#, "ab").unwrap(), 2.0);
        assert_eq!(numeric_field(br#"{"x":1,"x":2}"#, "x").unwrap(), 1.0);
    }

    #[test]
    fn errors_name_the_field() {
        let err = |json: &[u8]| numeric_field(json, "amount").unwrap_err();
        assert_eq!(err(br#"{"a":1}"#), r#"field "amount" is missing"#);
        assert_eq!(
            err(br#"{"amount":"1"}"#),
            r#"field "amount" is not a number"#
        );
        assert_eq!(
            err(br#"{"amount":null}"#),
            r#"field "amount" is not a number"#
        );
        assert_eq!(err(b"[1]"), "the record is not a JSON object");
    }

    #[test]
    fn cents_are_rounded_from_two_decimals() {
        // 0.29 * 100.0 is 28.999999999999996 in f64.
        assert_eq!((0.29f64 * 100.0).round() as i64, 29);
        assert_eq!((137.52f64 * 100.0).round() as i64, 13752);
    }
}
