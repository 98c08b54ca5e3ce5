// `percentile` in JavaScript: a full-window function giving the `p`-th
// percentile (nearest rank; default the 99th) of a numeric field over all
// records of a window, something an incremental aggregate cannot compute
// exactly. The same function as examples/operators/percentile (Rust), row
// for row.
//
// Config (every field optional; these are the defaults; unknown fields are
// an error):
//
//     {"field": "latency_ms", "p": 99, "as": "p99_latency_ms"}
//
// (`as` defaults to `p<p>_<field>`.) Records without the field are skipped;
// a field that is not a number stops the job, naming the window. Output
// fields: `<as>` (a float, or null for a window with no values) and `count`,
// in the Rust module's (sorted) order.
//
// Build (from the repository root; `npm ci --prefix guest-sdk/js` once):
//
//     guest-sdk/js/build examples/js/percentile.js percentile_js.wasm

import { defineWindowFunction, describeJson, f64 } from "sluice";

export const windowFunction = defineWindowFunction({
  open(config) {
    const s = config.parse({ field: "latency_ms", p: 99, as: null });
    if (s.as !== null && typeof s.as !== "string") {
      throw config.error(`invalid type: ${describeJson(s.as)}, expected a string`);
    }
    if (!(s.p > 0 && s.p <= 100)) throw new Error(`p must be in (0, 100], not ${s.p}`);
    this.field = s.field;
    this.p = s.p;
    this.name = s.as ?? `p${s.p}_${s.field}`;
  },

  process(window, records) {
    const values = [];
    for (const r of records) {
      const v = r.json();
      if (v === null || typeof v !== "object" || Array.isArray(v) || !Object.hasOwn(v, this.field)) continue;
      const x = v[this.field];
      if (typeof x !== "number") {
        throw new Error(`field \`${this.field}\`: invalid type: ${describeJson(x)}, expected f64`);
      }
      values.push(x);
    }
    values.sort((a, b) => a - b);
    const n = values.length;
    // Nearest rank: the smallest value with at least p% at or below it.
    const value = n === 0 ? null : f64(values[Math.max(Math.ceil((this.p / 100) * n), 1) - 1]);
    const row = { count: n, [this.name]: value };
    return Object.fromEntries(Object.entries(row).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  },
});
