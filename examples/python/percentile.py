"""`percentile` in Python: a full-window function giving the `p`-th
percentile (nearest rank; default the 99th) of a numeric field over all
records of a window, something an incremental aggregate cannot compute
exactly. The same function as the Rust `examples/operators/percentile`, row
for row.

Config (every field optional; these are the defaults; unknown fields are an
error):

    {"field": "latency_ms", "p": 99, "as": "p99_latency_ms"}

(`as` defaults to `p<p>_<field>`.) Records without the field are skipped; a
field that is not a number stops the job, naming the window. Output fields:
`<as>` (a float, or null for a window with no values) and `count`, in the
Rust module's (sorted) order.

Build (from the repository root):

    guest-sdk/python/build examples/python/percentile.py percentile_py.wasm
"""

import math

from sluice_sdk import Error, WindowFunction, json_kind


def show(x):
    """`x` as Rust's `f64` Display writes it (99, 99.5)."""
    return str(int(x)) if x == int(x) and abs(x) < 1e16 else repr(x)


class Percentile(WindowFunction):
    def open(self, config):
        # Read by hand, not with `config.parse`: `as` is a Python keyword.
        settings = {"field": "latency_ms", "p": 99.0, "as": None}
        raw = config.json()
        if raw is not None:
            if type(raw) is not dict:
                raise Error(f"invalid operator config {config.raw.strip()}: expected a map of settings")
            for k, v in raw.items():
                if k not in settings:
                    raise Error(f"invalid operator config {config.raw.strip()}: unknown field `{k}`, "
                                "expected one of `field`, `p`, `as`")
                settings[k] = v
        field, p, name = settings["field"], settings["p"], settings["as"]
        if type(field) is not str or (name is not None and type(name) is not str):
            raise Error(f"invalid operator config {config.raw.strip()}: `field` and `as` are strings")
        if type(p) not in (int, float):
            raise Error(f"invalid operator config {config.raw.strip()}: `p` is a number")
        if not (0 < p <= 100):
            raise Error(f"p must be in (0, 100], not {show(p)}")
        self.field = field
        self.p = float(p)
        self.name = name if name is not None else f"p{show(p)}_{field}"

    def process(self, window, records):
        values = []
        for r in records:
            order = r.json()
            if type(order) is not dict or self.field not in order:
                continue
            v = order[self.field]
            if type(v) is not int and type(v) is not float:
                raise Error(f"field `{self.field}`: invalid type: {json_kind(v)}, expected f64")
            values.append(float(v))
        values.sort()
        n = len(values)
        value = None
        if n:
            # Nearest rank: the smallest value with at least p% at or below it.
            rank = max(math.ceil((self.p / 100.0) * n), 1)
            value = values[rank - 1]
        return dict(sorted({self.name: value, "count": n}.items()))
