//! Example SQL functions for `sluice sql`, in one module (`usd_udf.wasm`):
//!
//! ```sql
//! CREATE FUNCTION usd AS 'usd' LANGUAGE WASM USING JAR 'usd_udf.wasm';
//! CREATE FUNCTION per_unit AS 'per_unit' LANGUAGE WASM USING JAR 'usd_udf.wasm';
//! CREATE FUNCTION weighted_avg AS 'weighted_avg' LANGUAGE WASM USING JAR 'usd_udf.wasm';
//! ```
//!
//! - `usd(amount DECIMAL(10, 2), currency STRING) -> DECIMAL(12, 2)`: the
//!   amount in US dollars (USD 1.00, EUR 1.10, GBP 1.25, exact, rounded
//!   half up to cents); another currency fails the row, naming it.
//! - `per_unit(amount DECIMAL(10, 2), qty INT) -> DECIMAL(12, 2)`: the
//!   amount per unit, rounded down to cents. It divides without checking
//!   `qty`, as a careless function would: a `qty` of 0 panics (the module
//!   traps), which costs that row alone.
//! - `weighted_avg(price DOUBLE, qty INT) -> DOUBLE`, an aggregate: the
//!   average price weighted by quantity, over the rows where both are set
//!   (NULL for a group without one); a negative quantity fails its row.

use serde::{Deserialize, Serialize};
use sluice_guest::Error;
use sluice_guest::sql::{AggregateFunction, Function, Value};

/// The rate to USD, in hundredths.
fn rate_hundredths(currency: &str) -> Option<i128> {
    match currency {
        "USD" => Some(100),
        "EUR" => Some(110),
        "GBP" => Some(125),
        _ => None,
    }
}

fn usd(args: &[Value<'_>]) -> Result<Value<'static>, Error> {
    let (Value::Decimal(cents, 2), Value::String(currency)) = (&args[0], &args[1]) else {
        return Ok(Value::Null);
    };
    let rate = rate_hundredths(currency).ok_or_else(|| {
        Error::new(format!(
            "no rate for currency {currency:?} (it knows USD, EUR and GBP)"
        ))
    })?;
    // Scale 4; the SDK rounds it half up to the declared DECIMAL(12, 2).
    Ok(Value::Decimal(cents * rate, 4))
}

fn per_unit(args: &[Value<'_>]) -> Result<Value<'static>, Error> {
    let (Value::Decimal(cents, 2), Value::Int(qty)) = (&args[0], &args[1]) else {
        return Ok(Value::Null);
    };
    // No check of `qty`: 0 panics here.
    Ok(Value::Decimal(cents / i128::from(*qty), 2))
}

/// Σ price·qty and Σ qty of the rows seen.
#[derive(Serialize, Deserialize, Default)]
struct Weighted {
    sum: f64,
    qty: i64,
}

struct WeightedAvg;

impl AggregateFunction for WeightedAvg {
    type Acc = Weighted;

    fn create(&self) -> Weighted {
        Weighted::default()
    }

    fn accumulate(&self, acc: &mut Weighted, args: &[Value<'_>]) -> Result<(), Error> {
        if let (Value::Double(price), Value::Int(qty)) = (&args[0], &args[1]) {
            if *qty < 0 {
                return Err(Error::new(format!("a quantity cannot be negative ({qty})")));
            }
            acc.sum += price * f64::from(*qty);
            acc.qty += i64::from(*qty);
        }
        Ok(())
    }

    fn merge(&self, acc: &mut Weighted, other: Weighted) {
        acc.sum += other.sum;
        acc.qty += other.qty;
    }

    fn value(&self, acc: &Weighted) -> Value<'static> {
        if acc.qty == 0 {
            Value::Null
        } else {
            Value::Double(acc.sum / acc.qty as f64)
        }
    }
}

fn functions() -> Vec<Function> {
    vec![
        Function::scalar("usd", &["DECIMAL(10, 2)", "STRING"], "DECIMAL(12, 2)", usd),
        Function::scalar(
            "per_unit",
            &["DECIMAL(10, 2)", "INT"],
            "DECIMAL(12, 2)",
            per_unit,
        ),
        Function::aggregate("weighted_avg", &["DOUBLE", "INT"], "DOUBLE", WeightedAvg),
    ]
}

sluice_guest::export_sql_functions!(functions);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_is_exact_and_names_an_unknown_currency() {
        let eur = usd(&[Value::Decimal(999, 2), Value::String("EUR".into())]).unwrap();
        assert_eq!(eur, Value::Decimal(109_890, 4));
        let err = usd(&[Value::Decimal(1, 2), Value::String("JPY".into())]).unwrap_err();
        assert!(err.message().contains("\"JPY\""), "{err}");
        assert_eq!(
            usd(&[Value::Null, Value::String("EUR".into())]).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn weighted_avg_skips_rows_without_both() {
        let f = WeightedAvg;
        let mut acc = f.create();
        f.accumulate(&mut acc, &[Value::Double(2.0), Value::Int(3)])
            .unwrap();
        f.accumulate(&mut acc, &[Value::Null, Value::Int(5)])
            .unwrap();
        f.accumulate(&mut acc, &[Value::Double(4.0), Value::Int(1)])
            .unwrap();
        assert_eq!(f.value(&acc), Value::Double(2.5));
        assert!(
            f.accumulate(&mut acc, &[Value::Double(1.0), Value::Int(-2)])
                .is_err()
        );
        assert_eq!(f.value(&f.create()), Value::Null);
    }
}
