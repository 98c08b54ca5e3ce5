// `customer-tier` in JavaScript: an async enricher that adds each order's
// customer tier, asked of an HTTP service. The same operator as
// examples/operators/customer-tier (Rust): same requests, same rows (as JSON
// values: the Rust module writes the fields in alphabetical order and
// `14.9` for `14.90`, this one keeps the input's order), same errors.
//
// For an order `{"order_id":"o-1","customer_id":"c-7",…}` it sends
// `GET <url>c-7` and expects `200` with `{"tier":"gold",…}`; it emits the
// order with `"tier":"gold"` added (key, timestamp and headers kept). Any
// other status, a body that is not such JSON, or a transport failure is an
// error for this attempt: the host retries the record (`enricher.retries`),
// then sends it to the dead-letter sink.
//
// Config: `{"url": "http://127.0.0.1:8080/customers/"}` (required; the
// customer id is appended; unknown fields are an error). The spec must grant
// the service's address: `grants: { network: ["127.0.0.1:8080"] }` (see
// examples/enricher/orders-tier.yaml, with TIER_MODULE=customer_tier_js.wasm).
//
// Build (from the repository root; `npm ci --prefix guest-sdk/js` once):
//
//     guest-sdk/js/build examples/js/customer-tier.js customer_tier_js.wasm

import { defineEnricher, describeJson, http } from "sluice";

/// What the service answers: `{"tier": "<string>", …}` (Rust: `struct
/// Customer { tier: String }`); the tier.
function customerTier(c) {
  if (c === null || typeof c !== "object" || Array.isArray(c)) {
    throw `invalid type: ${describeJson(c)}, expected struct Customer`;
  }
  const tier = c.tier;
  if (typeof tier !== "string") {
    throw tier === undefined ? "missing field `tier`" : `invalid type: ${describeJson(tier)}, expected a string`;
  }
  return tier;
}

export const enricher = defineEnricher({
  open(config) {
    const { url } = config.parse({ url: "" });
    if (url === "") {
      throw new Error("config needs `url`, the service's address (customer ids are appended)");
    }
    this.url = url;
  },

  process(record, out) {
    const order = record.json();
    if (order === null || typeof order !== "object" || Array.isArray(order)) {
      throw new Error(`invalid type: ${describeJson(order)}, expected a map`);
    }
    const id = order.customer_id;
    if (typeof id !== "string") throw new Error("the order has no string customer_id");
    order.tier = http.get(this.url + id).ok().json(customerTier);
    out.emitJson(order);
  },
});
