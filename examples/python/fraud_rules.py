"""Payment limits per country and card type that change while the job runs:
the Python twin of the Rust `examples/operators/fraud-rules` (a keyed
broadcast process function), alert for alert, with the same states. See
there (and `examples/fraud-rules/pipeline.yaml`) for the rules and why
payments wait for the watermark.

Build (from the repository root):

    guest-sdk/python/build examples/python/fraud_rules.py fraud_rules_py.wasm
"""

from dataclasses import dataclass
from typing import Optional

from sluice_sdk import Error, KeyedBroadcastProcess


@dataclass
class Settings:
    retention_ms: Optional[int] = None


class FraudRules(KeyedBroadcastProcess):
    def open(self, config, setup):
        s = config.parse(Settings)
        self.retention_ms = 3_600_000 if s.retention_ms is None else s.retention_ms
        if self.retention_ms < 0:
            raise Error("retention_ms must not be negative")
        self.rules = setup.broadcast_state("rules")
        self.waiting = setup.map_state("waiting")
        self.alerts = setup.value_state("alerts")

    def limit(self, p):
        """The lowest limit in force at the payment's time, and its scope."""
        best = None
        for scope in ("country:" + p["country"], "card_type:" + p["card_type"]):
            versions = self.rules.get(scope) or []
            current = next((v for v in reversed(versions) if v["ts"] <= p["ts"]), None)
            limit = current and current["max_amount"]
            if limit is not None and (best is None or limit < best[0]):
                best = (limit, scope)
        return best

    def judge(self, p, ctx):
        found = self.limit(p)
        if found is None or p["amount"] <= found[0]:
            return
        alerts = (self.alerts.get(ctx) or 0) + 1
        self.alerts.set(ctx, alerts)
        ctx.emit_json({"payment_id": p["payment_id"], "card": p["card"], "amount": p["amount"],
                       "limit": found[0], "scope": found[1], "alerts": alerts})

    def process(self, record, ctx):
        p = record.json()
        if p["ts"] <= ctx.current_watermark:
            self.judge(p, ctx)
            return
        at = self.waiting.get(ctx, p["ts"]) or []
        at.append(p)
        self.waiting.put(ctx, p["ts"], at)
        ctx.register_event_time_timer(p["ts"])

    def on_timer(self, timer, ctx):
        for p in self.waiting.get(ctx, timer.time) or []:
            self.judge(p, ctx)
        self.waiting.remove(ctx, timer.time)

    def process_broadcast(self, record, ctx):
        rule = record.json()
        scope = rule["scope"]
        kind = scope.split(":", 1)[0] if ":" in scope else ""
        if kind not in ("country", "card_type"):
            raise Error(f"scope `{scope}`: expected `country:<code>` or `card_type:<type>`")
        versions = self.rules.get(scope) or []
        version = {"ts": rule["ts"], "max_amount": rule.get("max_amount")}
        at = next((i for i, v in enumerate(versions) if v["ts"] >= rule["ts"]), len(versions))
        if at < len(versions) and versions[at]["ts"] == rule["ts"]:
            versions[at] = version
        else:
            versions.insert(at, version)
        newest = versions[-1]["ts"]
        old = [i for i, v in enumerate(versions) if v["ts"] <= newest - self.retention_ms]
        keep_from = old[-1] if old else 0
        self.rules.put(ctx, scope, versions[keep_from:])
