"""`usd-orders` in Python: keeps order events of one status above an amount,
and converts their amount to US dollars. The same operator as the Rust
`examples/operators/usd-orders`, record for record.

Input: one JSON order event per record, for example
`{"order_id":"o-1","customer_id":"c-1","amount":137.52,"currency":"EUR","status":"COMPLETED","event_ts":1699999996432}`.
Output, for each kept record (with the input's key, timestamp and headers):
`{"order_id":"o-1","customer_id":"c-1","amount_usd":151.27200000000002}`, where
`amount_usd` is `amount * rate` in double precision (USD 1.0, EUR 1.1,
GBP 1.25), not rounded, written as the Rust module writes it.

Config (both fields optional; unknown fields are an error, so that a typo
cannot silently disable a filter):

    {"status": "COMPLETED", "min_amount": 100.0}

keeps records with `status == "COMPLETED"` and `amount > 100.0` (the amount in
its own currency). Without `status` every status is kept; without
`min_amount` every amount. A kept record with another currency is a record
error naming it (a dropped record is not converted, so not checked), as is a
value that is not an order.

Build (from the repository root):

    guest-sdk/python/build examples/python/usd_orders.py usd_orders_py.wasm

or `guest-sdk/python/build-examples.sh OUTDIR` for both Python examples.
"""

from dataclasses import dataclass
from typing import Optional

from sluice_sdk import Error, Transform, float_json, json_kind, log_info
from sluice_sdk import dumps as json_str


@dataclass
class Settings:
    status: Optional[str] = None
    min_amount: Optional[float] = None


# US dollars per unit of a currency.
USD_RATE = {"USD": 1.0, "EUR": 1.1, "GBP": 1.25}

# An order's fields and their JSON types, in the Rust struct's order (other
# fields, such as `event_ts`, are ignored).
FIELDS = (("order_id", str), ("customer_id", str), ("amount", float), ("currency", str), ("status", str))


def bad_order(order):
    """The error for a value that is not an order, worded as serde's (less
    the position)."""
    if type(order) is not dict:
        return Error(f"invalid type: {json_kind(order)}, expected struct Order")
    for name, want in FIELDS:
        if name not in order:
            return Error(f"missing field `{name}`")
        v = order[name]
        if want is float and type(v) is not float and type(v) is not int:
            return Error(f"invalid type: {json_kind(v)}, expected f64")
        if want is str and type(v) is not str:
            return Error(f"invalid type: {json_kind(v)}, expected a borrowed string")
    return Error("not an order")


def show(m):
    """`m` as Rust's `f64` Display writes it (100, 0.5)."""
    return str(int(m)) if m == int(m) and abs(m) < 1e16 else repr(m)


class UsdOrders(Transform):
    def open(self, config):
        s = config.parse(Settings)
        self.status = s.status
        self.min_amount = s.min_amount
        log_info(
            f"usd-orders: status {s.status if s.status is not None else 'any'}, "
            f"amount over {show(s.min_amount) if s.min_amount is not None else 'any'}"
        )

    def process(self, record, out):
        order = record.json()
        try:
            order_id = order["order_id"]
            customer_id = order["customer_id"]
            amount = order["amount"]
            currency = order["currency"]
            status = order["status"]
        except (KeyError, TypeError):
            raise bad_order(order) from None
        if (type(amount) is not float and type(amount) is not int) or type(order_id) is not str \
                or type(customer_id) is not str or type(currency) is not str or type(status) is not str:
            raise bad_order(order)
        amount = float(amount)
        if self.status is not None and status != self.status:
            return
        if self.min_amount is not None and amount <= self.min_amount:
            return
        rate = USD_RATE.get(currency)
        if rate is None:
            raise Error(f"unknown currency {json_str(currency)} (expected USD, EUR or GBP)")
        out.emit(
            '{"order_id":%s,"customer_id":%s,"amount_usd":%s}'
            % (json_str(order_id), json_str(customer_id), float_json(amount * rate))
        )
