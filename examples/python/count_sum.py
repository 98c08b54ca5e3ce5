"""`count-sum` in Python: a window aggregate that counts records and sums one
numeric field of their JSON value, in cents. The same aggregate as the Rust
`examples/operators/count-sum`, with the same accumulator, so either can take
over the other's savepoint.

Config (every field optional; these are the defaults; unknown fields are an
error):

    {"field": "amount", "count_as": "count", "sum_as": "sum_cents"}

For each record, reads the top-level field `field` of the record's JSON
object (a missing or non-numeric field is a record error naming it) and adds
`round(value * 100)` (halves away from zero, as Rust's `f64::round`) to the
sum. The window's result is `{"count": 7, "sum_cents": 81234}`, with the names
from `count_as` and `sum_as`. The accumulator is
`{"count": ..., "sum_cents": ...}`. (Unlike the Rust module, which reads the
first, a field that occurs twice counts with its last value.)

Build (from the repository root):

    guest-sdk/python/build examples/python/count_sum.py count_sum_py.wasm

or `guest-sdk/python/build-examples.sh OUTDIR` for all Python examples.
"""

import math
from dataclasses import dataclass

from sluice_sdk import Aggregate, Error


@dataclass
class Settings:
    field: str = "amount"
    count_as: str = "count"
    sum_as: str = "sum_cents"


def cents(value):
    """`(value * 100.0).round()` as Rust computes it: halves away from zero
    (`x - trunc(x)` is exact, so no sum rounds up a value just below a
    half)."""
    x = value * 100.0
    r = math.trunc(x)
    if abs(x - r) >= 0.5:
        r += 1 if x > 0 else -1
    return r


class CountSum(Aggregate):
    def open(self, config):
        s = config.parse(Settings)
        if s.count_as == s.sum_as:
            raise Error(f'count_as and sum_as are both "{s.count_as}"; name them apart')
        self.field, self.count_as, self.sum_as = s.field, s.count_as, s.sum_as

    def create(self):
        return {"count": 0, "sum_cents": 0}

    def add(self, acc, record):
        order = record.json()
        if type(order) is not dict or self.field not in order:
            raise Error(f'field "{self.field}" is missing')
        value = order[self.field]
        if type(value) is not int and type(value) is not float:
            raise Error(f'field "{self.field}" is not a number')
        acc["count"] += 1
        acc["sum_cents"] += cents(value)
        return acc

    def merge(self, acc, other):
        acc["count"] += other["count"]
        acc["sum_cents"] += other["sum_cents"]
        return acc

    def result(self, acc):
        return {self.count_as: acc["count"], self.sum_as: acc["sum_cents"]}
