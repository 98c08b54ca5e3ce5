// `session-detector` in JavaScript: W5 of the shared benchmark
// (bench/README.md), the same keyed process function as
// examples/operators/session-detector (Rust): same rows, same side outputs,
// same config, and the same state (three value states holding JSON
// integers), so either module can restore the other's savepoints.
//
// Per key at most one open session, kept in three value states (`start`,
// `last`, `count`), and one event-time timer at `last + gap - 1` that closes
// it. The timer moves whenever `last` does.
//
// - A record whose session would already have closed (`ts + gap - 1 <=
//   watermark`) with no open session is late: it goes to the side output
//   `late`.
// - A record more than `gap` after the open session's last record closes
//   that session early (its timer has not fired yet because the watermark
//   lags) and opens a new one; the row says `"early_close":true`.
// - A record more than `gap` before the session's start cannot join it:
//   late if the watermark has passed its own session, else `dropped_ooo` (a
//   side output of that name).
//
// Output rows: `{"customer_id":…, "session_start":…, "session_end":…,
// "count":…}` with `session_end = last + gap`; the key field is named by the
// config's `key_field` (default `customer_id`), and its value is the
// record's key as the pipeline's `key_by` made it (the field's JSON text).
//
// Config (both optional, unknown fields are an error):
// `{"gap_ms": 30000, "key_field": "customer_id"}`.
//
// Build (from the repository root; `npm ci --prefix guest-sdk/js` once):
//
//     guest-sdk/js/build examples/js/session-detector.js session_detector_js.wasm

import { defineKeyedProcess } from "sluice";

export const keyedProcess = defineKeyedProcess({
  open(config, setup) {
    const s = config.parse({ gap_ms: 30000, key_field: "customer_id" });
    if (!Number.isSafeInteger(s.gap_ms)) {
      throw config.error(`invalid type: floating point \`${s.gap_ms}\`, expected i64`);
    }
    if (s.gap_ms <= 0) throw new Error("gap_ms must be positive");
    this.gap = s.gap_ms;
    // `{"<key_field>":`, the start of every output row.
    this.rowPrefix = `{${JSON.stringify(s.key_field)}:`;
    this.start = setup.valueState("start");
    this.last = setup.valueState("last");
    this.count = setup.valueState("count");
    this.late = setup.sideOutput("late");
    this.dropped = setup.sideOutput("dropped_ooo");
  },

  emitRow(ctx, start, last, count, early) {
    ctx.emit(
      `${this.rowPrefix}${ctx.keyText()},"session_start":${start},"session_end":${last + this.gap},"count":${count}${early ? ',"early_close":true' : ""}}`,
    );
  },

  openSession(ctx, ts) {
    this.start.set(ctx, ts);
    this.last.set(ctx, ts);
    this.count.set(ctx, 1);
    ctx.registerEventTimeTimer(ts + this.gap - 1);
  },

  process(record, ctx) {
    const ts = record.timestamp();
    if (ts === null) throw new Error("the record has no event time");
    const gap = this.gap;
    const late = ts + gap - 1 <= ctx.currentWatermark();
    const start = this.start.get(ctx);
    if (start === undefined) {
      if (late) ctx.emitTo(this.late, record.value());
      else this.openSession(ctx, ts);
      return;
    }
    const last = this.last.get(ctx);
    if (last === undefined) throw new Error("state `last` is missing");
    const count = this.count.get(ctx);
    if (count === undefined) throw new Error("state `count` is missing");
    if (ts > last + gap) {
      this.emitRow(ctx, start, last, count, true);
      ctx.deleteEventTimeTimer(last + gap - 1);
      this.openSession(ctx, ts);
      return;
    }
    if (ts + gap < start) {
      ctx.emitTo(late ? this.late : this.dropped, record.value());
      return;
    }
    if (ts < start) this.start.set(ctx, ts);
    if (ts > last) {
      ctx.deleteEventTimeTimer(last + gap - 1);
      ctx.registerEventTimeTimer(ts + gap - 1);
      this.last.set(ctx, ts);
    }
    this.count.set(ctx, count + 1);
  },

  onTimer(timer, ctx) {
    const start = this.start.get(ctx);
    const last = this.last.get(ctx);
    const count = this.count.get(ctx);
    if (start !== undefined && last !== undefined && count !== undefined) {
      this.emitRow(ctx, start, last, count, false);
    }
    this.start.clear(ctx);
    this.last.clear(ctx);
    this.count.clear(ctx);
  },
});
