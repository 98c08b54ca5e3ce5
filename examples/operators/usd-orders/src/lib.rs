//! `usd-orders`: keeps order events of one status above an amount, and
//! converts their amount to US dollars.
//!
//! Input: one JSON order event per record, for example
//! `{"order_id":"o-1","customer_id":"c-1","amount":137.52,"currency":"EUR","status":"COMPLETED","event_ts":1699999996432}`.
//! Output, for each kept record (with the input's key, timestamp and headers):
//! `{"order_id":"o-1","customer_id":"c-1","amount_usd":151.27200000000002}`, where
//! `amount_usd` is `amount * rate` in `f64` (USD 1.0, EUR 1.1, GBP 1.25), not
//! rounded.
//!
//! Config (both fields optional; unknown fields are an error, so that a typo
//! cannot silently disable a filter):
//!
//! ```json
//! {"status": "COMPLETED", "min_amount": 100.0}
//! ```
//!
//! keeps records with `status == "COMPLETED"` and `amount > 100.0` (the
//! amount in its own currency). Without `status` every status is kept; without
//! `min_amount` every amount. A kept record with another currency is a record
//! error naming it (a dropped record is not converted, so not checked), as is
//! a value that is not an order.
//!
//! Build (from the workspace root):
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p usd-orders
//! ```
//!
//! which writes `target/wasm32-wasip2/release/usd_orders.wasm`, the module
//! the pipeline specs under `examples/` refer to.

use serde::Deserialize;
use sluice_guest::{Config, Error, Output, Record, Transform};

/// The operator's config.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    status: Option<String>,
    min_amount: Option<f64>,
}

/// US dollars per unit of `currency`.
fn usd_rate(currency: &str) -> Option<f64> {
    match currency {
        "USD" => Some(1.0),
        "EUR" => Some(1.1),
        "GBP" => Some(1.25),
        _ => None,
    }
}

/// The operator (public for the native benchmark, `benches/native.rs`).
pub struct UsdOrders {
    status: Option<String>,
    min_amount: Option<f64>,
}

impl Transform for UsdOrders {
    fn open(config: Config) -> Result<Self, Error> {
        let Settings { status, min_amount } = config.parse()?;
        sluice_guest::log_info!(
            "usd-orders: status {}, amount over {}",
            status.as_deref().unwrap_or("any"),
            min_amount.map_or("any".to_owned(), |m| m.to_string())
        );
        Ok(UsdOrders { status, min_amount })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        // The five fields in one pass over the record (`event_ts` is not
        // read), each read without serde. All five are checked before the
        // filters, so a value that is not an order is an error even when its
        // status would drop it.
        let [order_id, customer_id, amount, currency, status] =
            record.fields(["order_id", "customer_id", "amount", "currency", "status"])?;
        let (order_id, customer_id) = (order_id.str()?, customer_id.str()?);
        let (amount, currency, status) = (amount.f64()?, currency.str()?, status.str()?);
        if self.status.as_deref().is_some_and(|s| s != status) {
            return Ok(());
        }
        if self.min_amount.is_some_and(|min| amount <= min) {
            return Ok(());
        }
        let rate = usd_rate(&currency).ok_or_else(|| {
            Error::new(format!(
                "unknown currency {currency:?} (expected USD, EUR or GBP)"
            ))
        })?;
        out.emit_object(|o| {
            o.str("order_id", &order_id)
                .str("customer_id", &customer_id)
                .f64("amount_usd", amount * rate);
            Ok(())
        })
    }
}

sluice_guest::export_transform!(UsdOrders);

#[cfg(test)]
mod tests {
    use sluice_guest::OutRecord;
    use sluice_guest::testing::{run_transform, run_transform_records};

    use super::*;

    fn op(config: &str) -> UsdOrders {
        UsdOrders::open(Config::new(config)).unwrap()
    }

    fn order(id: u32, amount: &str, currency: &str, status: &str) -> String {
        format!(
            r#"{{"order_id":"o-{id}","customer_id":"c-9","amount":{amount},"currency":"{currency}","status":"{status}","event_ts":1699999996432}}"#
        )
    }

    #[test]
    fn keeps_by_status_and_amount_and_converts() {
        let input = [
            order(1, "137.52", "EUR", "COMPLETED"),
            order(2, "100.00", "USD", "COMPLETED"), // not over 100
            order(3, "500.00", "GBP", "PENDING"),   // wrong status
            order(4, "100.01", "GBP", "COMPLETED"),
            order(5, "250.00", "USD", "COMPLETED"),
        ];
        let input: Vec<&str> = input.iter().map(String::as_str).collect();
        let run = run_transform(
            &mut op(r#"{"status": "COMPLETED", "min_amount": 100.0}"#),
            &input,
        );
        assert!(run.errors.is_empty(), "{:?}", run.errors);
        assert_eq!(
            run.values(),
            [
                // 137.52 * 1.1 in f64, unrounded.
                r#"{"order_id":"o-1","customer_id":"c-9","amount_usd":151.27200000000002}"#,
                r#"{"order_id":"o-4","customer_id":"c-9","amount_usd":125.0125}"#,
                r#"{"order_id":"o-5","customer_id":"c-9","amount_usd":250.0}"#,
            ]
        );
        assert_eq!(
            run.records.iter().map(|r| r.origin).collect::<Vec<_>>(),
            [0, 3, 4]
        );
    }

    #[test]
    fn no_config_keeps_everything() {
        let input = [
            order(1, "0.01", "GBP", "CANCELLED"),
            order(2, "3.00", "EUR", "PENDING"),
        ];
        let input: Vec<&str> = input.iter().map(String::as_str).collect();
        let run = run_transform(&mut op("null"), &input);
        assert_eq!(
            run.values(),
            [
                r#"{"order_id":"o-1","customer_id":"c-9","amount_usd":0.0125}"#,
                r#"{"order_id":"o-2","customer_id":"c-9","amount_usd":3.3000000000000003}"#,
            ]
        );
    }

    #[test]
    fn bad_records_are_record_errors() {
        let input = [
            order(1, "200.00", "JPY", "COMPLETED"),
            "not json".to_owned(),
            r#"{"order_id":"o-3"}"#.to_owned(),
            order(4, "200.00", "JPY", "PENDING"), // filtered out first
        ];
        let input: Vec<&str> = input.iter().map(String::as_str).collect();
        let run = run_transform(&mut op(r#"{"status": "COMPLETED"}"#), &input);
        assert!(run.records.is_empty());
        assert_eq!(run.errors.len(), 3);
        assert_eq!(
            run.errors[0],
            (
                0,
                r#"unknown currency "JPY" (expected USD, EUR or GBP)"#.to_owned()
            )
        );
        assert_eq!(run.errors[1].0, 1);
        assert_eq!(run.errors[2].1, r#"field "customer_id" is missing"#);
    }

    #[test]
    fn output_keeps_key_timestamp_and_headers() {
        let value = order(1, "1.00", "USD", "COMPLETED");
        let run = run_transform_records(
            &mut op("null"),
            &[OutRecord {
                key: Some(b"c-9"),
                value: value.as_bytes(),
                timestamp: Some(1699999996432),
                headers: &[(b"trace", b"t-1")],
                ..OutRecord::default()
            }],
        );
        let out = &run.records[0];
        assert_eq!(out.key.as_deref(), Some(&b"c-9"[..]));
        assert_eq!(out.timestamp, Some(1699999996432));
        assert_eq!(out.headers, [(b"trace".to_vec(), b"t-1".to_vec())]);
    }

    #[test]
    fn config_typos_fail_open() {
        let err = UsdOrders::open(Config::new(r#"{"min_ammount": 1}"#))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("unknown field `min_ammount`"),
            "{err}"
        );
    }
}
