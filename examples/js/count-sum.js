// `count-sum` in JavaScript: a window aggregate that counts records and sums
// one numeric field of their JSON value, in cents. The same aggregate as
// examples/operators/count-sum (Rust), with the same accumulator, so either
// can take over the other's savepoint.
//
// Config (every field optional; these are the defaults; unknown fields are
// an error):
//
//     {"field": "amount", "count_as": "count", "sum_as": "sum_cents"}
//
// For each record, reads the top-level field `field` of the record's JSON
// object (a missing or non-numeric field is a record error naming it) and
// adds `round(value * 100)` (halves away from zero, as Rust's `f64::round`)
// to the sum. The window's result is `{"count": 7, "sum_cents": 81234}`, with
// the names from `count_as` and `sum_as`. The accumulator is
// `{"count": ..., "sum_cents": ...}`. (Unlike the Rust module, which reads
// the first, a field that occurs twice counts with its last value.)
//
// Build (from the repository root; `npm ci --prefix guest-sdk/js` once):
//
//     guest-sdk/js/build examples/js/count-sum.js count_sum_js.wasm
//
// or `guest-sdk/js/build-examples.sh DIR` for all JS examples.

import { defineAggregate } from "sluice";

/// `(value * 100.0).round()` as Rust computes it: halves away from zero
/// (`x - trunc(x)` is exact, so no sum rounds up a value just below a half).
function cents(value) {
  const x = value * 100;
  let r = Math.trunc(x);
  if (Math.abs(x - r) >= 0.5) r += x > 0 ? 1 : -1;
  return r;
}

export const aggregate = defineAggregate({
  open(config) {
    const s = config.parse({ field: "amount", count_as: "count", sum_as: "sum_cents" });
    if (s.count_as === s.sum_as) {
      throw new Error(`count_as and sum_as are both "${s.count_as}"; name them apart`);
    }
    this.field = s.field;
    this.countAs = s.count_as;
    this.sumAs = s.sum_as;
  },

  create() {
    return { count: 0, sum_cents: 0 };
  },

  add(acc, record) {
    const order = record.json();
    const isObject = order !== null && typeof order === "object" && !Array.isArray(order);
    if (!isObject || !Object.hasOwn(order, this.field)) {
      throw new Error(`field "${this.field}" is missing`);
    }
    const value = order[this.field];
    if (typeof value !== "number") throw new Error(`field "${this.field}" is not a number`);
    acc.count += 1;
    acc.sum_cents += cents(value);
    return acc;
  },

  merge(acc, other) {
    acc.count += other.count;
    acc.sum_cents += other.sum_cents;
    return acc;
  },

  result(acc) {
    return { [this.countAs]: acc.count, [this.sumAs]: acc.sum_cents };
  },
});
