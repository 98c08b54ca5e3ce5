"""SQL functions for `sluice sql`: scalar and aggregate functions in Python.

A script registers one with

    CREATE FUNCTION usd AS 'usd' LANGUAGE WASM USING JAR 'usd_udf_py.wasm';

where `'usd'` is the name the module gives it. The module is one subclass of
`SqlFunctions` whose `functions()` lists them, each with its SQL signature
(types as Flink SQL writes them: STRING, BOOLEAN, INT, BIGINT, DOUBLE,
DECIMAL(p, s), TIMESTAMP(3), TIMESTAMP_LTZ(3)):

    from decimal import Decimal
    from sluice_sdk import AggregateFunction, ScalarFunction, SqlFunctions

    def usd(amount, currency):
        return None if amount is None else amount * Decimal("1.10")

    class Functions(SqlFunctions):
        def functions(self):
            return [ScalarFunction("usd", ["DECIMAL(10, 2)", "STRING"], "DECIMAL(12, 2)", usd)]

Values are Python's: `str`, `bool`, `int` (INT, BIGINT, and timestamps in
epoch milliseconds), `float`, `decimal.Decimal`, and `None` for NULL. The host
casts arguments to the declared types before the call; a result is converted
to the declared type (a Decimal rounded half up to its scale). An exception
fails that row only: the host dead-letters its record (or stops the job,
naming it). An aggregate's accumulator is kept by the host as JSON, so it
must be a JSON value (dicts, lists, numbers, strings).
"""

import json
import struct
from decimal import ROUND_HALF_UP, Decimal, localcontext

from . import _core

_types = None
_wit = None


def _bind(types, wit_sql):
    global _types, _wit
    _types = types
    _wit = wit_sql


class ScalarFunction:
    """A scalar function: `fn(*args)` for each row."""

    def __init__(self, name, params, returns, fn):
        self.name, self.params, self.returns, self.fn = name, list(params), returns, fn


class AggregateFunction:
    """An aggregate function, for window aggregations: `create()` makes an
    empty accumulator, `accumulate(acc, *args)` returns it with a row
    added, `merge(acc, other)` returns the two merged, `value(acc)` the
    group's value."""

    def __init__(self, name, params, returns, create, accumulate, merge, value):
        self.name, self.params, self.returns = name, list(params), returns
        self.create, self.accumulate, self.merge, self.value = create, accumulate, merge, value


class SqlFunctions:
    """The module's functions: subclass it and return them from
    `functions()`."""

    def functions(self):
        raise NotImplementedError("SqlFunctions.functions() must return the module's functions")


# Type kinds: (kind, scale).
def _parse_type(text):
    t = "".join(text.split()).upper()
    if t.endswith("NOTNULL"):
        t = t[: -len("NOTNULL")]
    if t == "BOOLEAN":
        return ("bool", 0)
    if t in ("INT", "INTEGER"):
        return ("int", 0)
    if t == "BIGINT":
        return ("bigint", 0)
    if t == "DOUBLE":
        return ("double", 0)
    if t == "STRING" or t.startswith("VARCHAR(") or t.startswith("CHAR("):
        return ("string", 0)
    if t in ("TIMESTAMP(3)", "TIMESTAMP_LTZ(3)", "TIMESTAMP", "TIMESTAMP_LTZ"):
        return ("ts", 0)
    if t.startswith("DECIMAL"):
        inner = t[len("DECIMAL"):]
        if not inner:
            return ("decimal", 0)
        if inner.startswith("(") and inner.endswith(")"):
            parts = inner[1:-1].split(",")
            try:
                return ("decimal", int(parts[1]) if len(parts) > 1 else 0)
            except ValueError:
                pass
    raise TypeError(f"`{text}` is not a type a function can take")


_WIDTH = {"bool": 1, "int": 4, "bigint": 8, "double": 8, "ts": 8, "decimal": 16, "string": 0}
_FMT = {"int": "<i", "bigint": "<q", "double": "<d", "ts": "<q"}


def _read(col, ty, i):
    if col.nulls[i]:
        return None
    kind, scale = ty
    if kind == "string":
        s = col.spans[i]
        return bytes(col.data[s.offset:s.offset + s.len]).decode("utf-8")
    w = _WIDTH[kind]
    if kind == "bool":
        return col.data[i] != 0
    if kind == "decimal":
        u = int.from_bytes(col.data[i * w:(i + 1) * w], "little", signed=True)
        return Decimal(u).scaleb(-scale)
    return struct.unpack_from(_FMT[kind], col.data, i * w)[0]


class _Out:
    """A column being written."""

    def __init__(self, ty):
        self.ty = ty
        self.nulls = bytearray()
        self.data = bytearray()
        self.spans = []

    def push(self, v):
        kind, scale = self.ty
        if kind == "string":
            b = b"" if v is None else _text(v).encode("utf-8")
            self.spans.append(_types.Span(offset=len(self.data), len=len(b)))
            self.data += b
            self.nulls.append(1 if v is None else 0)
            return
        if v is None:
            self.nulls.append(1)
            self.data += bytes(_WIDTH[kind])
            return
        if kind == "bool":
            if not isinstance(v, bool):
                raise TypeError(f"returned {v!r}, not a BOOLEAN")
            self.data.append(1 if v else 0)
        elif kind == "decimal":
            if isinstance(v, bool) or not isinstance(v, (int, Decimal)):
                raise TypeError(f"returned {v!r}, not a DECIMAL (return a decimal.Decimal or an int)")
            with localcontext() as ctx:
                ctx.prec = 80
                q = Decimal(v).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
                u = int(q.scaleb(scale))
            if not -(1 << 127) <= u < (1 << 127):
                raise ValueError(f"returned {v}, which does not fit a DECIMAL")
            self.data += u.to_bytes(16, "little", signed=True)
        elif kind == "double":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"returned {v!r}, not a DOUBLE")
            self.data += struct.pack("<d", float(v))
        else:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"returned {v!r}, not an integer")
            self.data += struct.pack(_FMT[kind], v)
        self.nulls.append(0)

    def column(self):
        return _wit.Column(nulls=bytes(self.nulls), data=bytes(self.data), spans=self.spans)


def _text(v):
    if not isinstance(v, str):
        raise TypeError(f"returned {v!r}, not a STRING")
    return v


def _byte_list(items):
    data = bytearray()
    spans = []
    for b in items:
        spans.append(_types.Span(offset=len(data), len=len(b)))
        data += b
    return _types.ByteList(data=bytes(data), spans=spans)


def _items(lst):
    return [bytes(lst.data[s.offset:s.offset + s.len]) for s in lst.spans]


class _Runner:
    """Serves the `sql-function` export for a `SqlFunctions` subclass."""

    def __init__(self, cls):
        self.cls = cls
        self.fns = None

    def _all(self):
        if self.fns is None:
            fns = list(self.cls().functions())
            for f in fns:
                if not isinstance(f, (ScalarFunction, AggregateFunction)):
                    raise TypeError(f"{f!r} is not a ScalarFunction or an AggregateFunction")
                f._params = [_parse_type(p) for p in f.params]
                f._returns = _parse_type(f.returns)
            self.fns = fns
        return self.fns

    def _fn(self, index, kind):
        fns = self._all()
        if index >= len(fns) or not isinstance(fns[index], kind):
            raise RuntimeError(f"function {index} of {len(fns)} is not a {kind.__name__}")
        return fns[index]

    def functions(self):
        return [
            _wit.Signature(
                name=f.name,
                kind=_wit.FunctionKind.AGGREGATE
                if isinstance(f, AggregateFunction)
                else _wit.FunctionKind.SCALAR,
                params=list(f.params),
                returns=f.returns,
            )
            for f in self._all()
        ]

    def call(self, index, args, rows):
        f = self._fn(index, ScalarFunction)
        out = _Out(f._returns)
        errors = []
        for i in range(rows):
            row = [_read(c, t, i) for c, t in zip(args, f._params)]
            try:
                out.push(f.fn(*row))
            except Exception as e:
                out.push(None)
                errors.append(_types.RecordError(index=i, message=_core.error_message(e)))
        return _wit.CallOutput(values=out.column(), errors=errors)

    def create_accumulator(self, index):
        f = self._fn(index, AggregateFunction)
        return json.dumps(f.create(), separators=(",", ":")).encode()

    def accumulate(self, index, accumulators, args, targets):
        f = self._fn(index, AggregateFunction)
        accs = _items(accumulators)
        errors = []
        for i, t in enumerate(targets):
            row = [_read(c, ty, i) for c, ty in zip(args, f._params)]
            try:
                acc = f.accumulate(json.loads(accs[t]), *row)
                accs[t] = json.dumps(acc, separators=(",", ":")).encode()
            except Exception as e:
                errors.append(_types.RecordError(index=i, message=_core.error_message(e)))
        return _wit.AccumulateOutput(accumulators=_byte_list(accs), errors=errors)

    def merge(self, index, accumulators, groups):
        f = self._fn(index, AggregateFunction)
        accs = _items(accumulators)
        out = []
        for g in groups:
            acc = f.create()
            for k in range(g.offset, g.offset + g.len):
                acc = f.merge(acc, json.loads(accs[k]))
            out.append(json.dumps(acc, separators=(",", ":")).encode())
        return _byte_list(out)

    def get_value(self, index, accumulators):
        f = self._fn(index, AggregateFunction)
        out = _Out(f._returns)
        for b in _items(accumulators):
            out.push(f.value(json.loads(b)))
        return out.column()
