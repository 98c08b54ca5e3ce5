"""W6 of the shared benchmark (orders joined with their payments within 10
minutes) as a keyed co-process function in Python: the same function as the
Rust `examples/operators/bench-co-join`, row for row, with the same states
(so a savepoint of either restores into the other).

Left: orders; right: payments; both keyed by `order_id`. A pair matches when
`order.ts <= payment.ts <= order.ts + 600000` and becomes
`{"order_id", "payment_id", "delay_ms", "paid_cents"}`. An order waits in the
value state `order` until the watermark passes `order.ts + 600000`, payments
wait in `payments` until it passes their own time; an event-time timer drops
each then. A record at or behind the watermark is late and dropped.

Build (from the repository root):

    guest-sdk/python/build examples/python/bench_co_join.py bench_co_join_py.wasm
"""

from sluice_sdk import Error, KeyedCoProcess

UPPER_MS = 600_000


def on_time(record, ctx):
    """The record's event time, or None when it is late."""
    ts = record.timestamp
    if ts is None:
        raise Error("a record without event time (the source needs `event_time`)")
    return ts if ts > ctx.current_watermark else None


def emit(ctx, order, p):
    if order["ts"] <= p["ts"] <= order["ts"] + UPPER_MS:
        ctx.emit_json({"order_id": order["id"], "payment_id": p["id"],
                       "delay_ms": p["ts"] - order["ts"], "paid_cents": p["cents"]})


class PaidOrders(KeyedCoProcess):
    def open(self, config, setup):
        self.order = setup.value_state("order")
        self.payments = setup.value_state("payments")

    def process_left(self, record, ctx):
        ts = on_time(record, ctx)
        if ts is None:
            return
        order = {"id": record.json()["order_id"], "ts": ts}
        for p in self.payments.get(ctx) or ():
            emit(ctx, order, p)
        self.order.set(ctx, order)
        ctx.register_event_time_timer(ts + UPPER_MS)

    def process_right(self, record, ctx):
        ts = on_time(record, ctx)
        if ts is None:
            return
        p = record.json()
        payment = {"id": p["payment_id"], "ts": ts, "cents": round(p["amount"] * 100)}
        order = self.order.get(ctx)
        if order is not None:
            emit(ctx, order, payment)
        held = self.payments.get(ctx) or []
        held.append(payment)
        self.payments.set(ctx, held)
        ctx.register_event_time_timer(ts)

    def on_timer(self, timer, ctx):
        order = self.order.get(ctx)
        if order is not None and order["ts"] + UPPER_MS <= timer.time:
            self.order.clear(ctx)
        held = self.payments.get(ctx)
        if held is not None:
            held = [p for p in held if p["ts"] > timer.time]
            if held:
                self.payments.set(ctx, held)
            else:
                self.payments.clear(ctx)
