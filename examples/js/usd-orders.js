// `usd-orders` in JavaScript: keeps order events of one status above an
// amount, and converts their amount to US dollars. The same operator as
// examples/operators/usd-orders (Rust): same rows, same record errors, same
// config.
//
// Input: one JSON order event per record, for example
// `{"order_id":"o-1","customer_id":"c-1","amount":137.52,"currency":"EUR","status":"COMPLETED","event_ts":1699999996432}`.
// Output, for each kept record (with the input's key, timestamp and headers):
// `{"order_id":"o-1","customer_id":"c-1","amount_usd":151.27200000000002}`,
// where `amount_usd` is `amount * rate` in f64 (USD 1.0, EUR 1.1, GBP 1.25),
// not rounded, and written as serde_json writes an f64 (`250.0`), so the
// rows are byte-equal to the Rust module's.
//
// Config (both fields optional; unknown fields are an error, so that a typo
// cannot silently disable a filter):
//
//     {"status": "COMPLETED", "min_amount": 100.0}
//
// keeps records with `status == "COMPLETED"` and `amount > 100.0` (the
// amount in its own currency). Without `status` every status is kept;
// without `min_amount` every amount. A kept record with another currency is
// a record error naming it (a dropped record is not converted, so not
// checked), as is a value that is not an order.
//
// Build (from the repository root; `npm ci --prefix guest-sdk/js` once):
//
//     guest-sdk/js/build examples/js/usd-orders.js usd_orders_js.wasm
//
// or `guest-sdk/js/build-examples.sh DIR` for both JS examples.

import { defineTransform, describeJson, jsonNumber, log } from "sluice";

/// The error serde gives for a field that is missing or of another type
/// than the Rust struct declares.
function fieldError(order, name, type) {
  const v = order[name];
  if (v === undefined) return new Error(`missing field \`${name}\``);
  return new Error(`invalid type: ${describeJson(v)}, expected ${type}`);
}

export const transform = defineTransform({
  open(config) {
    const { status, min_amount } = config.parse({ status: null, min_amount: null });
    if (status !== null && typeof status !== "string") {
      throw config.error(`invalid type: ${describeJson(status)}, expected a string`);
    }
    if (min_amount !== null && typeof min_amount !== "number") {
      throw config.error(`invalid type: ${describeJson(min_amount)}, expected f64`);
    }
    this.status = status;
    this.minAmount = min_amount;
    log.info(`usd-orders: status ${status ?? "any"}, amount over ${min_amount ?? "any"}`);
  },

  process(record, out) {
    const order = record.json();
    if (order === null || typeof order !== "object" || Array.isArray(order)) {
      throw new Error(`invalid type: ${describeJson(order)}, expected struct Order`);
    }
    const orderId = order.order_id;
    const customerId = order.customer_id;
    const amount = order.amount;
    const currency = order.currency;
    const status = order.status;
    // One test on the fast path; the error names the first bad field.
    if (
      typeof orderId !== "string" ||
      typeof customerId !== "string" ||
      typeof amount !== "number" ||
      typeof currency !== "string" ||
      typeof status !== "string"
    ) {
      if (typeof orderId !== "string") throw fieldError(order, "order_id", "a string");
      if (typeof customerId !== "string") throw fieldError(order, "customer_id", "a string");
      if (typeof amount !== "number") throw fieldError(order, "amount", "f64");
      if (typeof currency !== "string") throw fieldError(order, "currency", "a string");
      throw fieldError(order, "status", "a string");
    }
    if (this.status !== null && status !== this.status) return;
    if (this.minAmount !== null && amount <= this.minAmount) return;
    const rate = currency === "EUR" ? 1.1 : currency === "USD" ? 1.0 : currency === "GBP" ? 1.25 : undefined;
    if (rate === undefined) {
      throw new Error(`unknown currency ${JSON.stringify(currency)} (expected USD, EUR or GBP)`);
    }
    out.emit(
      `{"order_id":${JSON.stringify(orderId)},"customer_id":${JSON.stringify(customerId)},"amount_usd":${jsonNumber(amount * rate)}}`,
    );
  },
});
