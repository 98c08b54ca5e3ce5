// `bench-co-join` in JavaScript: W6 of the shared benchmark (orders joined
// with their payments within 10 minutes) as a keyed co-process function, the
// same function as examples/operators/bench-co-join (Rust), row for row, with
// the same states (so a savepoint of either restores into the other).
//
// Left: orders; right: payments; both keyed by `order_id`. A pair matches
// when `order.ts <= payment.ts <= order.ts + 600000` and becomes
// `{"order_id", "payment_id", "delay_ms", "paid_cents"}`. An order waits in
// the value state `order` until the watermark passes `order.ts + 600000`,
// payments wait in `payments` until it passes their own time; an event-time
// timer drops each then. A record at or behind the watermark is late and
// dropped.
//
// Build (from the repository root; `npm ci --prefix guest-sdk/js` once):
//
//     guest-sdk/js/build examples/js/bench-co-join.js bench_co_join_js.wasm

import { defineKeyedCoProcess } from "sluice";

const UPPER_MS = 600000;

/// The record's event time, or undefined when it is late.
function onTime(record, ctx) {
  const ts = record.timestamp();
  if (ts === undefined) throw new Error("a record without event time (the source needs `event_time`)");
  return ts > ctx.currentWatermark() ? ts : undefined;
}

function emit(ctx, order, p) {
  if (order.ts <= p.ts && p.ts <= order.ts + UPPER_MS) {
    ctx.emitJson({ order_id: order.id, payment_id: p.id, delay_ms: p.ts - order.ts, paid_cents: p.cents });
  }
}

export const keyedCoProcess = defineKeyedCoProcess({
  open(config, setup) {
    this.order = setup.valueState("order");
    this.payments = setup.valueState("payments");
  },

  processLeft(record, ctx) {
    const ts = onTime(record, ctx);
    if (ts === undefined) return;
    const order = { id: record.json().order_id, ts };
    for (const p of this.payments.get(ctx) ?? []) emit(ctx, order, p);
    this.order.set(ctx, order);
    ctx.registerEventTimeTimer(ts + UPPER_MS);
  },

  processRight(record, ctx) {
    const ts = onTime(record, ctx);
    if (ts === undefined) return;
    const p = record.json();
    const payment = { id: p.payment_id, ts, cents: Math.round(p.amount * 100) };
    const order = this.order.get(ctx);
    if (order !== undefined) emit(ctx, order, payment);
    const held = this.payments.get(ctx) ?? [];
    held.push(payment);
    this.payments.set(ctx, held);
    ctx.registerEventTimeTimer(ts);
  },

  onTimer(timer, ctx) {
    const order = this.order.get(ctx);
    if (order !== undefined && order.ts + UPPER_MS <= timer.time) this.order.clear(ctx);
    const held = this.payments.get(ctx);
    if (held !== undefined) {
      const left = held.filter((p) => p.ts > timer.time);
      if (left.length > 0) this.payments.set(ctx, left);
      else this.payments.clear(ctx);
    }
  },
});
