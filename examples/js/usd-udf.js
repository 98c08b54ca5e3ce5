// `usd_udf` in JavaScript: the SQL functions of examples/operators/usd-udf
// (Rust), with the same signatures and results.
//
// - usd(amount DECIMAL(10, 2), currency STRING) -> DECIMAL(12, 2): the
//   amount in US dollars (USD 1.00, EUR 1.10, GBP 1.25, exact; the SDK
//   rounds half up to cents); another currency fails the row, naming it.
// - per_unit(amount DECIMAL(10, 2), qty INT) -> DECIMAL(12, 2): the amount
//   per unit, rounded down to cents; a quantity of 0 fails the row (BigInt
//   division by zero throws a RangeError, which fails that row).
// - weighted_avg(price DOUBLE, qty INT) -> DOUBLE, an aggregate: the average
//   price weighted by quantity over the rows where both are set (NULL
//   without one); a negative quantity fails its row.
//
// Build (from the repository root; `npm ci --prefix guest-sdk/js` once):
//
//     guest-sdk/js/build examples/js/usd-udf.js usd_udf_js.wasm
//
// and in a script:
//
//     CREATE FUNCTION usd AS 'usd' LANGUAGE WASM USING JAR 'usd_udf_js.wasm';

import { defineSqlFunctions, SqlDecimal } from "sluice";

/// Rates to USD, in hundredths.
const RATES = { USD: 100n, EUR: 110n, GBP: 125n };

export const sqlFunction = defineSqlFunctions([
  {
    name: "usd",
    params: ["DECIMAL(10, 2)", "STRING"],
    returns: "DECIMAL(12, 2)",
    scalar(amount, currency) {
      if (amount === null || currency === null) return null;
      const rate = RATES[currency];
      if (rate === undefined) {
        throw new Error(`no rate for currency ${JSON.stringify(currency)} (it knows USD, EUR and GBP)`);
      }
      return new SqlDecimal(amount.unscaled * rate, amount.scale + 2);
    },
  },
  {
    name: "per_unit",
    params: ["DECIMAL(10, 2)", "INT"],
    returns: "DECIMAL(12, 2)",
    scalar(amount, qty) {
      if (amount === null || qty === null) return null;
      return new SqlDecimal(amount.unscaled / BigInt(qty), amount.scale);
    },
  },
  {
    name: "weighted_avg",
    params: ["DOUBLE", "INT"],
    returns: "DOUBLE",
    create: () => ({ sum: 0, qty: 0 }),
    accumulate(acc, price, qty) {
      if (price !== null && qty !== null) {
        if (qty < 0) throw new Error(`a quantity cannot be negative (${qty})`);
        acc.sum += price * qty;
        acc.qty += qty;
      }
      return acc;
    },
    merge: (acc, other) => ({ sum: acc.sum + other.sum, qty: acc.qty + other.qty }),
    value: (acc) => (acc.qty === 0 ? null : acc.sum / acc.qty),
  },
]);
