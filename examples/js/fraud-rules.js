// `fraud-rules` in JavaScript: payment limits per country and card type that
// change while the job runs — the twin of examples/operators/fraud-rules
// (Rust), alert for alert. See there (and examples/fraud-rules/pipeline.yaml)
// for the rules and why payments wait for the watermark.
//
// Build (from the repository root; `npm ci --prefix guest-sdk/js` once):
//
//     guest-sdk/js/build examples/js/fraud-rules.js fraud_rules_js.wasm

import { defineKeyedBroadcastProcess, jsonNumber } from "sluice";

export const keyedBroadcastProcess = defineKeyedBroadcastProcess({
  open(config, setup) {
    const { retention_ms: retention } = config.parse({ retention_ms: 3600000 });
    if (!(retention >= 0)) throw new Error("retention_ms must not be negative");
    this.retention = retention;
    this.rules = setup.broadcastState("rules");
    this.waiting = setup.mapState("waiting");
    this.alerts = setup.valueState("alerts");
  },

  /// The lowest limit in force at the payment's time, and its scope.
  limit(p) {
    let best;
    for (const scope of [`country:${p.country}`, `card_type:${p.card_type}`]) {
      const versions = this.rules.get(scope) ?? [];
      const current = versions.findLast((v) => v.ts <= p.ts);
      const limit = current?.max_amount;
      if (limit !== undefined && limit !== null && (best === undefined || limit < best[0])) best = [limit, scope];
    }
    return best;
  },

  judge(p, ctx) {
    const found = this.limit(p);
    if (found === undefined || p.amount <= found[0]) return;
    const alerts = (this.alerts.get(ctx) ?? 0) + 1;
    this.alerts.set(ctx, alerts);
    // Amounts as serde_json writes them (300.0, not 300), like the Rust module.
    ctx.emit(
      `{"payment_id":${JSON.stringify(p.payment_id)},"card":${JSON.stringify(p.card)},` +
        `"amount":${jsonNumber(p.amount)},"limit":${jsonNumber(found[0])},` +
        `"scope":${JSON.stringify(found[1])},"alerts":${alerts}}`,
    );
  },

  process(record, ctx) {
    const p = record.json();
    if (p.ts <= ctx.currentWatermark()) {
      this.judge(p, ctx);
      return;
    }
    const at = this.waiting.get(ctx, p.ts) ?? [];
    at.push(p);
    this.waiting.put(ctx, p.ts, at);
    ctx.registerEventTimeTimer(p.ts);
  },

  onTimer(timer, ctx) {
    for (const p of this.waiting.get(ctx, timer.time) ?? []) this.judge(p, ctx);
    this.waiting.remove(ctx, timer.time);
  },

  processBroadcast(record, ctx) {
    const rule = record.json();
    const scope = rule.scope;
    const kind = scope.includes(":") ? scope.slice(0, scope.indexOf(":")) : "";
    if (kind !== "country" && kind !== "card_type") {
      throw new Error(`scope \`${scope}\`: expected \`country:<code>\` or \`card_type:<type>\``);
    }
    const versions = this.rules.get(scope) ?? [];
    const version = { ts: rule.ts, max_amount: rule.max_amount ?? null };
    let at = versions.findIndex((v) => v.ts >= rule.ts);
    if (at < 0) at = versions.length;
    if (at < versions.length && versions[at].ts === rule.ts) versions[at] = version;
    else versions.splice(at, 0, version);
    const newest = versions[versions.length - 1].ts;
    const keepFrom = Math.max(0, versions.findLastIndex((v) => v.ts <= newest - this.retention));
    this.rules.put(ctx, scope, versions.slice(keepFrom));
  },
});
