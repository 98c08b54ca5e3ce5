//! `bench-joins`: the fields of the benchmark's join rows that a projection
//! cannot give, computed from what the native join selected
//! (`examples/bench/w6.yaml`, `w7.yaml`).
//!
//! Config `{"workload": "w6"}`: the input is an interval join's row
//! `{"order_id", "payment_id", "order_ts", "payment_ts", "amount"}` (the
//! payment's amount); the output
//! `{"order_id", "payment_id", "delay_ms": payment_ts - order_ts, "paid_cents"}`.
//!
//! Config `{"workload": "w7"}`: the input is a temporal join's row
//! `{"order_id", "currency", "status", "amount", "rate_ppm"}`; COMPLETED
//! orders become `{"order_id", "currency", "rate_ppm", "usd_cents"}` with
//! `usd_cents = cents * rate_ppm div 1000000` (integers), others are dropped.
//! A row without a rate (`rate_ppm` null: a left outer join's padding) is
//! dropped too.
//!
//! Amounts have two decimals; cents are `round(amount * 100)`, exact for
//! them.

use serde::{Deserialize, Serialize};
use sluice_guest::{Config, Error, Output, Record, Transform};

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Workload {
    W6,
    W7,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    workload: Option<Workload>,
}

#[derive(Deserialize)]
struct Paid<'a> {
    order_id: &'a str,
    payment_id: &'a str,
    order_ts: i64,
    payment_ts: i64,
    amount: f64,
}

#[derive(Serialize)]
struct PaidRow<'a> {
    order_id: &'a str,
    payment_id: &'a str,
    delay_ms: i64,
    paid_cents: i64,
}

#[derive(Deserialize)]
struct Converted<'a> {
    order_id: &'a str,
    currency: &'a str,
    status: &'a str,
    amount: f64,
    rate_ppm: Option<i64>,
}

#[derive(Serialize)]
struct ConvertedRow<'a> {
    order_id: &'a str,
    currency: &'a str,
    rate_ppm: i64,
    usd_cents: i64,
}

fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

struct BenchJoins {
    workload: Workload,
}

impl Transform for BenchJoins {
    fn open(config: Config) -> Result<Self, Error> {
        let Settings { workload } = config.parse()?;
        let workload =
            workload.ok_or_else(|| Error::new("config needs a `workload`: \"w6\" or \"w7\""))?;
        Ok(BenchJoins { workload })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        match self.workload {
            Workload::W6 => {
                let p: Paid<'_> = record.json()?;
                out.emit_json(&PaidRow {
                    order_id: p.order_id,
                    payment_id: p.payment_id,
                    delay_ms: p.payment_ts - p.order_ts,
                    paid_cents: cents(p.amount),
                })
            }
            Workload::W7 => {
                let c: Converted<'_> = record.json()?;
                let Some(rate_ppm) = c.rate_ppm else {
                    return Ok(());
                };
                if c.status != "COMPLETED" {
                    return Ok(());
                }
                out.emit_json(&ConvertedRow {
                    order_id: c.order_id,
                    currency: c.currency,
                    rate_ppm,
                    usd_cents: cents(c.amount) * rate_ppm / 1_000_000,
                })
            }
        }
    }
}

sluice_guest::export_transform!(BenchJoins);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::testing::run_transform;

    fn op(workload: &str) -> BenchJoins {
        BenchJoins::open(Config::new(format!(r#"{{"workload":"{workload}"}}"#))).unwrap()
    }

    #[test]
    fn w6_rows_get_the_delay_and_the_cents() {
        let run = run_transform(
            &mut op("w6"),
            &[
                r#"{"order_id":"o-1","payment_id":"p-2","order_ts":1000,"payment_ts":1600,"amount":282.88}"#,
            ],
        );
        assert!(run.errors.is_empty(), "{:?}", run.errors);
        assert_eq!(
            run.values(),
            [r#"{"order_id":"o-1","payment_id":"p-2","delay_ms":600,"paid_cents":28288}"#]
        );
    }

    #[test]
    fn w7_keeps_completed_orders_with_a_rate() {
        let run = run_transform(
            &mut op("w7"),
            &[
                r#"{"order_id":"o-1","currency":"EUR","status":"COMPLETED","amount":137.52,"rate_ppm":1100000}"#,
                r#"{"order_id":"o-2","currency":"EUR","status":"PENDING","amount":1.00,"rate_ppm":1100000}"#,
                r#"{"order_id":"o-3","currency":"EUR","status":"COMPLETED","amount":1.00,"rate_ppm":null}"#,
            ],
        );
        assert!(run.errors.is_empty(), "{:?}", run.errors);
        assert_eq!(
            run.values(),
            [r#"{"order_id":"o-1","currency":"EUR","rate_ppm":1100000,"usd_cents":15127}"#]
        );
    }

    #[test]
    fn a_row_that_is_not_a_join_row_is_a_record_error() {
        let run = run_transform(&mut op("w6"), &[r#"{"order_id":"o-1"}"#]);
        assert_eq!(run.errors.len(), 1);
    }
}
