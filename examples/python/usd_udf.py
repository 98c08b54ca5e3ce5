"""`usd_udf` in Python: the SQL functions of examples/operators/usd-udf
(Rust), with the same signatures and results.

- `usd(amount DECIMAL(10, 2), currency STRING) -> DECIMAL(12, 2)`: the amount
  in US dollars (USD 1.00, EUR 1.10, GBP 1.25, exact; the SDK rounds half up
  to cents); another currency fails the row, naming it.
- `per_unit(amount DECIMAL(10, 2), qty INT) -> DECIMAL(12, 2)`: the amount per
  unit, rounded down to cents; a quantity of 0 fails the row (Python raises
  ZeroDivisionError, which fails that row as any exception does).
- `weighted_avg(price DOUBLE, qty INT) -> DOUBLE`, an aggregate: the average
  price weighted by quantity over the rows where both are set (NULL without
  one); a negative quantity fails its row. Its accumulator is the Rust one's
  JSON, `{"sum": …, "qty": …}`.

Build (from the repository root):

    guest-sdk/python/build examples/python/usd_udf.py usd_udf_py.wasm

and in a script:

    CREATE FUNCTION usd AS 'usd' LANGUAGE WASM USING JAR 'usd_udf_py.wasm';
"""

from decimal import ROUND_DOWN, Decimal

from sluice_sdk import AggregateFunction, ScalarFunction, SqlFunctions

RATES = {"USD": Decimal("1.00"), "EUR": Decimal("1.10"), "GBP": Decimal("1.25")}


def usd(amount, currency):
    if amount is None or currency is None:
        return None
    rate = RATES.get(currency)
    if rate is None:
        raise ValueError(f"no rate for currency {currency!r} (it knows USD, EUR and GBP)")
    return amount * rate


def per_unit(amount, qty):
    if amount is None or qty is None:
        return None
    return (amount / qty).quantize(Decimal("0.01"), rounding=ROUND_DOWN)


def create():
    return {"sum": 0.0, "qty": 0}


def accumulate(acc, price, qty):
    if price is not None and qty is not None:
        if qty < 0:
            raise ValueError(f"a quantity cannot be negative ({qty})")
        acc["sum"] += price * qty
        acc["qty"] += qty
    return acc


def merge(acc, other):
    return {"sum": acc["sum"] + other["sum"], "qty": acc["qty"] + other["qty"]}


def value(acc):
    return None if acc["qty"] == 0 else acc["sum"] / acc["qty"]


class UsdFunctions(SqlFunctions):
    def functions(self):
        return [
            ScalarFunction("usd", ["DECIMAL(10, 2)", "STRING"], "DECIMAL(12, 2)", usd),
            ScalarFunction("per_unit", ["DECIMAL(10, 2)", "INT"], "DECIMAL(12, 2)", per_unit),
            AggregateFunction("weighted_avg", ["DOUBLE", "INT"], "DOUBLE",
                              create, accumulate, merge, value),
        ]
