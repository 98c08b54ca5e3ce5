//! `fraud-rules`: payments over a limit raise alerts, and the limits — per
//! country and per card type — arrive on a second stream and change while
//! the job runs. A keyed broadcast process function (Flink's
//! `KeyedBroadcastProcessFunction`): payments are the keyed input (by card),
//! rules the broadcast input, which every subtask receives whole.
//!
//! Rules: `{"scope": "country:FR", "max_amount": 500.0, "ts": 1000}` sets the
//! limit of a scope (`country:<code>` or `card_type:<type>`) from event time
//! `ts` on; `"max_amount": null` lifts it. Payments: `{"payment_id", "card",
//! "country", "card_type", "amount", "ts"}`.
//!
//! A payment is judged by the rules *in force at its own event time*, not
//! by those that happened to arrive first: the two inputs are read at their
//! own pace, so a rule can arrive after a payment it applies to. Each
//! payment therefore waits (in a map state of its card) until the
//! watermark — the minimum over both inputs — passes its time; by then every
//! rule up to that time has arrived. The broadcast state keeps each scope's
//! versions (time and limit), and a payment takes the latest version at or
//! before its time of each scope it falls in; the lowest limit wins.
//!
//! Alerts: `{"payment_id", "card", "amount", "limit", "scope", "alerts"}`,
//! `alerts` counting the card's alerts so far (a value state).
//!
//! Versions are dropped by the rules' own times alone (all but the latest
//! version older than `retention_ms` before the newest rule of the scope):
//! the broadcast side must change broadcast state the same way on every
//! subtask, and the watermark, which differs between subtasks, must not
//! decide what is kept. Config: `{"retention_ms": 3600000}` (the default).

use serde::{Deserialize, Serialize};
use sluice_guest::{
    BroadcastContext, BroadcastState, Config, Context, Error, KeyedBroadcastProcess, MapState,
    Record, Setup, Timer, ValueState,
};

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    retention_ms: Option<i64>,
}

#[derive(Deserialize)]
struct Rule {
    scope: String,
    max_amount: Option<f64>,
    ts: i64,
}

#[derive(Serialize, Deserialize, Clone)]
struct Payment {
    payment_id: String,
    card: String,
    country: String,
    card_type: String,
    amount: f64,
    ts: i64,
}

/// One version of a scope's limit: from `ts` on (none: no limit).
#[derive(Serialize, Deserialize, Clone, Copy)]
struct Version {
    ts: i64,
    max_amount: Option<f64>,
}

#[derive(Serialize)]
struct Alert<'a> {
    payment_id: &'a str,
    card: &'a str,
    amount: f64,
    limit: f64,
    scope: &'a str,
    alerts: u64,
}

struct FraudRules {
    retention_ms: i64,
    /// Scope → its versions, by time.
    rules: BroadcastState<String, Vec<Version>>,
    /// Payments waiting for the watermark, by time.
    waiting: MapState<i64, Vec<Payment>>,
    alerts: ValueState<u64>,
}

impl FraudRules {
    /// The lowest limit in force at `p.ts` over the scopes `p` falls in.
    fn limit(&self, p: &Payment) -> Result<Option<(f64, String)>, Error> {
        let mut best: Option<(f64, String)> = None;
        for scope in [
            format!("country:{}", p.country),
            format!("card_type:{}", p.card_type),
        ] {
            let versions = self.rules.get(&scope)?.unwrap_or_default();
            let current = versions.iter().rev().find(|v| v.ts <= p.ts);
            if let Some(limit) = current.and_then(|v| v.max_amount)
                && best.as_ref().is_none_or(|(b, _)| limit < *b)
            {
                best = Some((limit, scope));
            }
        }
        Ok(best)
    }

    fn judge(&self, p: &Payment, ctx: &mut Context<'_>) -> Result<(), Error> {
        let Some((limit, scope)) = self.limit(p)? else {
            return Ok(());
        };
        if p.amount <= limit {
            return Ok(());
        }
        let alerts = self.alerts.get(ctx)?.unwrap_or(0) + 1;
        self.alerts.set(ctx, &alerts)?;
        ctx.emit_json(&Alert {
            payment_id: &p.payment_id,
            card: &p.card,
            amount: p.amount,
            limit,
            scope: &scope,
            alerts,
        })
    }
}

impl KeyedBroadcastProcess for FraudRules {
    fn open(config: Config, setup: &mut Setup) -> Result<Self, Error> {
        let Settings { retention_ms } = config.parse()?;
        let retention_ms = retention_ms.unwrap_or(3_600_000);
        if retention_ms < 0 {
            return Err(Error::new("retention_ms must not be negative"));
        }
        Ok(FraudRules {
            retention_ms,
            rules: setup.broadcast_state("rules")?,
            waiting: setup.map_state("waiting")?,
            alerts: setup.value_state("alerts")?,
        })
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
        let p: Payment = record.json()?;
        if p.ts <= ctx.current_watermark() {
            // Every rule up to its time is here already.
            return self.judge(&p, ctx);
        }
        let mut at = self.waiting.get(ctx, &p.ts)?.unwrap_or_default();
        at.push(p.clone());
        self.waiting.put(ctx, &p.ts, &at)?;
        ctx.register_event_time_timer(p.ts);
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        for p in self.waiting.get(ctx, &timer.time)?.unwrap_or_default() {
            self.judge(&p, ctx)?;
        }
        self.waiting.remove(ctx, &timer.time)
    }

    fn process_broadcast(
        &mut self,
        record: &Record<'_>,
        ctx: &mut BroadcastContext<'_>,
    ) -> Result<(), Error> {
        let rule: Rule = record.json()?;
        let (kind, _) = rule.scope.split_once(':').unwrap_or_default();
        if kind != "country" && kind != "card_type" {
            return Err(Error::new(format!(
                "scope `{}`: expected `country:<code>` or `card_type:<type>`",
                rule.scope
            )));
        }
        let mut versions = self.rules.get(&rule.scope)?.unwrap_or_default();
        // In time order; a second version at the same time replaces the first.
        let at = versions.partition_point(|v| v.ts < rule.ts);
        let version = Version {
            ts: rule.ts,
            max_amount: rule.max_amount,
        };
        match versions.get(at) {
            Some(v) if v.ts == rule.ts => versions[at] = version,
            _ => versions.insert(at, version),
        }
        // Keep the versions of the last `retention_ms` before the newest,
        // and the one in force at its start.
        let newest = versions.last().map_or(rule.ts, |v| v.ts);
        let keep_from = versions
            .iter()
            .rposition(|v| v.ts <= newest - self.retention_ms)
            .unwrap_or(0);
        versions.drain(..keep_from);
        self.rules.put(ctx, &rule.scope, &versions)
    }
}

sluice_guest::export_broadcast_process!(FraudRules);
