//! `bench-co-join`: the benchmark's interval join (W6, orders ⋈ payments
//! within 10 minutes) written as a keyed co-process function, the way a
//! Flink user writes a join the built-in ones do not cover
//! (`examples/bench/w6-rs.yaml`; the same function in Python and
//! JavaScript is `examples/python/bench_co_join.py` and
//! `examples/js/bench-co-join.js`).
//!
//! Left: orders `{"order_id", "event_ts", ...}`; right: payments
//! `{"payment_id", "order_id", "amount", "event_ts"}`; both keyed by
//! `order_id`. A pair matches when `order.ts <= payment.ts <= order.ts +
//! 600000` (Flink's `between(0, 10 min)`, both bounds inclusive) and becomes
//! `{"order_id", "payment_id", "delay_ms": payment.ts - order.ts,
//! "paid_cents"}`.
//!
//! Each side waits in a value state of its key for the other: an order
//! until the watermark passes `order.ts + 600000`, a payment until it passes
//! `payment.ts` (no order that could still match it can come after that).
//! An event-time timer drops each at that point, so the state after the
//! final watermark is empty. A record at or behind the watermark is late
//! and dropped, as the native join does.

use serde::{Deserialize, Serialize};
use sluice_guest::{Config, Context, Error, KeyedCoProcess, Record, Setup, Timer, ValueState};

/// How far after an order its payments may be, in milliseconds.
const UPPER_MS: i64 = 600_000;

#[derive(Deserialize)]
struct Order<'a> {
    order_id: &'a str,
}

#[derive(Deserialize)]
struct Payment<'a> {
    payment_id: &'a str,
    amount: f64,
}

/// A held order: its id and time.
#[derive(Serialize, Deserialize)]
struct HeldOrder {
    id: String,
    ts: i64,
}

/// A held payment: its id, time and cents.
#[derive(Serialize, Deserialize, Clone)]
struct HeldPayment {
    id: String,
    ts: i64,
    cents: i64,
}

#[derive(Serialize)]
struct Row<'a> {
    order_id: &'a str,
    payment_id: &'a str,
    delay_ms: i64,
    paid_cents: i64,
}

struct PaidOrders {
    order: ValueState<HeldOrder>,
    payments: ValueState<Vec<HeldPayment>>,
}

fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

/// The record's event time, or `None` when it is late.
fn on_time(record: &Record<'_>, ctx: &Context<'_>) -> Result<Option<i64>, Error> {
    let ts = record
        .timestamp()
        .ok_or("a record without event time (the source needs `event_time`)")?;
    Ok((ts > ctx.current_watermark()).then_some(ts))
}

fn emit(ctx: &mut Context<'_>, order: &HeldOrder, p: &HeldPayment) -> Result<(), Error> {
    if order.ts <= p.ts && p.ts <= order.ts + UPPER_MS {
        ctx.emit_json(&Row {
            order_id: &order.id,
            payment_id: &p.id,
            delay_ms: p.ts - order.ts,
            paid_cents: p.cents,
        })?;
    }
    Ok(())
}

impl KeyedCoProcess for PaidOrders {
    fn open(_config: Config, setup: &mut Setup) -> Result<Self, Error> {
        Ok(PaidOrders {
            order: setup.value_state("order")?,
            payments: setup.value_state("payments")?,
        })
    }

    fn process_left(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
        let Some(ts) = on_time(record, ctx)? else {
            return Ok(());
        };
        let o: Order<'_> = record.json()?;
        let order = HeldOrder {
            id: o.order_id.to_owned(),
            ts,
        };
        for p in self.payments.get(ctx)?.unwrap_or_default() {
            emit(ctx, &order, &p)?;
        }
        self.order.set(ctx, &order)?;
        ctx.register_event_time_timer(ts + UPPER_MS);
        Ok(())
    }

    fn process_right(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
        let Some(ts) = on_time(record, ctx)? else {
            return Ok(());
        };
        let p: Payment<'_> = record.json()?;
        let payment = HeldPayment {
            id: p.payment_id.to_owned(),
            ts,
            cents: cents(p.amount),
        };
        if let Some(order) = self.order.get(ctx)? {
            emit(ctx, &order, &payment)?;
        }
        let mut held = self.payments.get(ctx)?.unwrap_or_default();
        held.push(payment);
        self.payments.set(ctx, &held)?;
        ctx.register_event_time_timer(ts);
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        if self
            .order
            .get(ctx)?
            .is_some_and(|o| o.ts + UPPER_MS <= timer.time)
        {
            self.order.clear(ctx);
        }
        if let Some(mut held) = self.payments.get(ctx)? {
            held.retain(|p| p.ts > timer.time);
            if held.is_empty() {
                self.payments.clear(ctx);
            } else {
                self.payments.set(ctx, &held)?;
            }
        }
        Ok(())
    }
}

sluice_guest::export_co_process!(PaidOrders);
