//! `customer-tier`: an async enricher that adds each order's customer tier,
//! asked of an HTTP service.
//!
//! For an order `{"order_id":"o-1","customer_id":"c-7",…}` it sends
//! `GET <url>c-7` and expects `200` with `{"tier":"gold",…}`; it emits the
//! order with `"tier":"gold"` added (key, timestamp and headers kept). Any
//! other status, a body that is not such JSON, or a transport failure is an
//! error for this attempt: the host retries the record (`enricher.retries`),
//! then sends it to the dead-letter sink.
//!
//! Config: `{"url": "http://127.0.0.1:8080/customers/"}` (required; the
//! customer id is appended). The spec must grant the service's address:
//! `grants: { network: ["127.0.0.1:8080"] }`.

use serde::Deserialize;
use sluice_guest::serde_json::{Map, Value};
use sluice_guest::{Config, Error, Output, Record, Transform, http};

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    url: String,
}

/// What the service answers.
#[derive(Deserialize)]
struct Customer {
    tier: String,
}

struct CustomerTier {
    url: String,
}

impl Transform for CustomerTier {
    fn open(config: Config) -> Result<Self, Error> {
        let Settings { url } = config.parse()?;
        if url.is_empty() {
            return Err(
                "config needs `url`, the service's address (customer ids are appended)".into(),
            );
        }
        Ok(CustomerTier { url })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        let mut order: Map<String, Value> = record.json()?;
        let id = match order.get("customer_id") {
            Some(Value::String(id)) => id.clone(),
            _ => return Err("the order has no string customer_id".into()),
        };
        let customer: Customer = http::get(&format!("{}{id}", self.url))?.ok()?.json()?;
        order.insert("tier".to_owned(), Value::String(customer.tier));
        out.emit_json(&order)
    }
}

sluice_guest::export_enricher!(CustomerTier);
