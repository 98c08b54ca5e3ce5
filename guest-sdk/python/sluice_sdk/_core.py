"""What every operator kind shares: errors, config, records, JSON, logging.

Nothing here imports the generated bindings (`wit_world`): the export glue
(`sluice_sdk._exports`) hands them over with `_bind`, so that this package
loads in every operator world and, for unit tests, under plain CPython.
"""

import dataclasses
import enum
import json
import types
import typing

__all__ = [
    "Error",
    "Config",
    "Record",
    "RowKind",
    "dumps",
    "float_json",
    "json_kind",
    "log_trace",
    "log_debug",
    "log_info",
    "log_warn",
    "log_error",
]


class Error(Exception):
    """An operator error: a message for a person.

    Raised from `open` it stops the job; raised from `process` it sends the
    one input record to the dead-letter sink with `str(error)` as the message.
    Any other exception does the same, with the message
    `"<ExceptionType>: <text>"` (a `KeyError` says only the key otherwise).
    """


def error_message(e):
    """The message an exception becomes (a record error, a failed `open`)."""
    if isinstance(e, Error):
        return str(e)
    text = str(e)
    name = type(e).__name__
    return f"{name}: {text}" if text else name


# --- JSON -------------------------------------------------------------------

def _not_json(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


try:
    from json.encoder import c_make_encoder as _c_make_encoder
    from json.encoder import encode_basestring as _encode_str
except ImportError:  # pragma: no cover - CPython without the C accelerator
    _c_make_encoder = None
    from json.encoder import encode_basestring as _encode_str

if _c_make_encoder is not None:
    # One C encoder for the process, without the circular-reference check:
    # what `json.dumps(o, ensure_ascii=False, separators=(",", ":"),
    # allow_nan=False)` does, minus building an encoder per call.
    _c_encoder = _c_make_encoder(
        None, _not_json, _encode_str, None, ":", ",", False, False, False
    )

    def dumps(obj):
        """`obj` as compact JSON text, as serde_json writes it: no spaces,
        non-ASCII characters kept (not `\\u` escaped).

        Floats are written by Python's `repr` (`1e+16` where serde_json
        writes `1e16`: the same number); use `float_json` where the exact
        text matters. NaN and infinities raise `ValueError`.
        """
        if type(obj) is str:
            return _encode_str(obj)
        return "".join(_c_encoder(obj, 0))

else:  # pragma: no cover
    _py_encoder = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_not_json
    )
    dumps = _py_encoder.encode


def float_json(x):
    """The JSON text serde_json (ryu) writes for the f64 `x`: `250.0`,
    `0.00001`, `1e16`, `1.5e-7`; `null` for NaN and infinities."""
    r = repr(x)
    if "e" not in r:
        if r[-1] == "f" or r[-1] == "n":  # inf, -inf, nan
            return "null"
        return r
    mant, exp = r.split("e")
    neg = mant[0] == "-"
    if neg:
        mant = mant[1:]
    digits = mant.replace(".", "")
    kk = int(exp) + 1  # the decimal point's position after the first digit
    # repr writes an exponent below 1e-4 and from 1e16 on; ryu writes one
    # below 1e-5 and from 1e16 on, without a `+` or leading zeros.
    if -5 < kk <= 0:
        s = "0." + "0" * -kk + digits
    elif len(digits) == 1:
        s = f"{digits}e{kk - 1}"
    else:
        s = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return "-" + s if neg else s


_decoder = json.JSONDecoder()
try:
    from json.scanner import c_make_scanner as _c_make_scanner

    _scan = _c_make_scanner(_decoder)
except ImportError:  # pragma: no cover
    _scan = None


def _json_error(e):
    return Error(f"{e.msg} at line {e.lineno} column {e.colno}")


def loads(text):
    """Parses JSON text (a whole document) like `json.loads`; an `Error`
    with the position when it is not JSON."""
    if _scan is not None:
        try:
            obj, end = _scan(text, 0)
            if end == len(text):
                return obj
        except StopIteration:
            pass
        except json.JSONDecodeError as e:
            raise _json_error(e) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _json_error(e) from None


# --- config -----------------------------------------------------------------

def _one_of(names):
    names = [f"`{n}`" for n in names]
    if not names:
        return "there are no fields"
    if len(names) == 1:
        return f"expected {names[0]}"
    if len(names) == 2:
        return f"expected {names[0]} or {names[1]}"
    return "expected one of " + ", ".join(names)


def json_kind(v):
    """A JSON value as serde's "invalid type" messages name it: `null`,
    ``integer `5` ``, `string "x"`, `sequence`, `map`, ..."""
    if v is None:
        return "null"
    if type(v) is bool:
        return f"boolean `{'true' if v else 'false'}`"
    if type(v) is int:
        return f"integer `{v}`"
    if type(v) is float:
        return f"floating point `{float_json(v)}`"
    if type(v) is str:
        return f"string {dumps(v)}"
    if type(v) is list:
        return "sequence"
    return "map"


def _check_type(name, value, hint):
    """Checks a config field against a simple annotation (str, int, float,
    bool, list, dict, Optional[...] and unions of those); anything else is
    accepted as it is."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        options = typing.get_args(hint)
    else:
        options = (hint,)
    for h in options:
        o = typing.get_origin(h) or h
        if h is type(None) or h is None:
            if value is None:
                return value
        elif o is typing.Any:
            return value
        elif o is float:
            if type(value) is float:
                return value
            if type(value) is int:
                return float(value)
        elif o is int:
            if type(value) is int:
                return value
        elif o is bool:
            if type(value) is bool:
                return value
        elif o is str:
            if type(value) is str:
                return value
        elif o is list or o is tuple:
            if type(value) is list:
                return value
        elif o is dict:
            if type(value) is dict:
                return value
        else:
            return value  # not checked
    want = " or ".join(getattr(h, "__name__", str(h)) for h in options)
    raise ValueError(f"field `{name}`: invalid type: {json_kind(value)}, expected {want}")


def _from_json(value, schema, deny_unknown):
    """The parsed JSON `value` as an instance of the dataclass `schema`, as
    serde derives it: a `ValueError` saying what does not fit. Fields without
    a default are required; with `deny_unknown`, other fields are an error
    (else ignored)."""
    if type(value) is not dict:
        raise ValueError(f"invalid type: {json_kind(value)}, expected struct {schema.__name__}")
    fields = [f for f in dataclasses.fields(schema) if f.init]
    names = [f.name for f in fields]
    if deny_unknown:
        for k in value:
            if k not in names:
                raise ValueError(f"unknown field `{k}`, {_one_of(names)}")
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for f in fields:
        if f.name in value:
            kwargs[f.name] = _check_type(f.name, value[f.name], hints.get(f.name, typing.Any))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"missing field `{f.name}`")
    return schema(**kwargs)


class Config:
    """The operator's `config` from the pipeline spec, as JSON text (`null`
    when the spec gives none)."""

    __slots__ = ("raw",)

    def __init__(self, raw):
        self.raw = raw

    def __repr__(self):
        return f"Config({self.raw!r})"

    def json(self):
        """The config parsed as JSON (`None` for `null` or nothing)."""
        raw = self.raw.strip()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise self._invalid(f"{e.msg} at line {e.lineno} column {e.colno}") from None

    def parse(self, schema):
        """The config as an instance of the dataclass `schema`.

        `null` (no config) gives `schema()`, so give every field a default to
        make it optional. Unknown fields are an error (a typo must not
        silently turn a setting off), and so is a field whose value does not
        match a simple annotation (`str`, `int`, `float`, `bool`, `list`,
        `dict`, `Optional[...]`; an `int` is accepted for a `float`). The
        error quotes the config, as the Rust SDK's does.
        """
        value = self.json()
        if value is None:
            try:
                return schema()
            except TypeError as e:
                raise self._invalid(f"missing fields: {e}") from None
        try:
            return _from_json(value, schema, deny_unknown=True)
        except ValueError as e:
            raise self._invalid(str(e)) from None

    def _invalid(self, why):
        raw = self.raw.strip()
        shown = raw if len(raw) <= 200 else raw[:200] + "..."
        return Error(f"invalid operator config {shown}: {why}")


# --- records ----------------------------------------------------------------

class RowKind(enum.IntEnum):
    """What a record does to the row it describes, as in Flink's `RowKind`.

    Records of an append-only stream are all `INSERT`. A changelog (a
    `postgres-cdc` source, a `debezium-json` topic, a `group_aggregate`) also
    carries updates, as the row before (`UPDATE_BEFORE`, a retraction) then
    the row after (`UPDATE_AFTER`), and deletes (`DELETE`, carrying the row
    removed)."""

    INSERT = 0
    UPDATE_BEFORE = 1
    UPDATE_AFTER = 2
    DELETE = 3

    @property
    def short(self):
        """Flink's short form: `+I`, `-U`, `+U`, `-D`."""
        return ("+I", "-U", "+U", "-D")[self]

    @property
    def is_addition(self):
        """Whether the record adds its row (`+I`, `+U`) rather than
        retracting it (`-U`, `-D`)."""
        return self == RowKind.INSERT or self == RowKind.UPDATE_AFTER


# The bindings' `row-kind` cases in WIT order, and back (set by `_bind`).
_WIT_KINDS = ()
_FROM_WIT = {}


def _wit_kind(kind):
    """The bindings' case of `kind` (a `RowKind`); a `TypeError` naming what
    was given otherwise."""
    if not isinstance(kind, RowKind):
        raise TypeError(f"a record kind is a sluice_sdk.RowKind, not {kind!r}")
    return _WIT_KINDS[kind]


class Record:
    """One input record: a view into the batch the host sent.

    The SDK reuses one `Record` object for all records of a call: read what
    you need during `process`, and do not keep the object itself (keep
    `record.value` or what you parsed from it instead).
    """

    __slots__ = ("_data", "_text", "_meta", "_headers")

    def __init__(self):
        self._data = b""
        self._text = None
        self._meta = None
        self._headers = ()

    @property
    def value(self):
        """The value's bytes: with the JSON format, one JSON document."""
        s = self._meta.value
        o = s.offset
        return self._data[o:o + s.len]

    def value_str(self):
        """The value as text; an `Error` if it is not UTF-8."""
        s = self._meta.value
        o = s.offset
        text = self._text
        if text is not None:  # the batch is ASCII: byte offsets are char offsets
            return text[o:o + s.len]
        try:
            return self._data[o:o + s.len].decode()
        except UnicodeDecodeError as e:
            raise Error(f"record value is not UTF-8: {e}") from None

    def json(self):
        """The value parsed as JSON; an `Error` saying what is wrong and where
        (it becomes the dead-letter message when not caught)."""
        s = self._meta.value
        o = s.offset
        text = self._text
        if text is not None:
            text = text[o:o + s.len]
        else:
            try:
                text = self._data[o:o + s.len].decode()
            except UnicodeDecodeError as e:
                raise Error(f"not UTF-8: {e}") from None
        return loads(text)

    @property
    def key(self):
        """The key's bytes (set by a `key_by` or by the source), or `None`."""
        k = self._meta.key
        if k is None:
            return None
        o = k.offset
        return self._data[o:o + k.len]

    @property
    def timestamp(self):
        """Event time in epoch milliseconds, or `None`."""
        return self._meta.timestamp

    @property
    def kind(self):
        """The record's changelog kind, a `RowKind`: `RowKind.INSERT` for
        every record of an append-only stream."""
        return _FROM_WIT[self._meta.kind]

    @property
    def headers(self):
        """The headers as a list of `(name, value)` byte strings, in order; a
        name can occur more than once."""
        m = self._meta
        n = m.headers_len
        if not n:
            return []
        d = self._data
        out = []
        for h in self._headers[m.headers_start:m.headers_start + n]:
            a, b = h.name, h.value
            out.append((d[a.offset:a.offset + a.len], d[b.offset:b.offset + b.len]))
        return out

    def header(self, name):
        """The value of the first header called `name` (str or bytes), or
        `None`."""
        if isinstance(name, str):
            name = name.encode()
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def __repr__(self):
        def show(b):
            if b is None:
                return "None"
            try:
                return repr(b.decode())
            except UnicodeDecodeError:
                return repr(b)

        return (
            f"Record(key={show(self.key)}, value={show(self.value)}, "
            f"timestamp={self.timestamp!r}, headers={self.headers!r}, kind={self.kind.short})"
        )


def _batch_text(data):
    """The batch's data as `str` when it is ASCII (so that byte spans index
    it directly), else `None`."""
    if data.isascii():
        return data.decode("ascii")
    return None


# --- logging ----------------------------------------------------------------

_logging = None  # the bindings' `logging` import, set by `_bind`


def _log(level, message):
    if _logging is None:
        import sys

        print(f"[{level}] {message}", file=sys.stderr)
        return
    _logging.log(getattr(_logging.Level, level), str(message))


def log_trace(message):
    """A line in the host's log at trace level. A log line is a host call:
    log per batch or per problem, not per record."""
    _log("TRACE", message)


def log_debug(message):
    _log("DEBUG", message)


def log_info(message):
    _log("INFO", message)


def log_warn(message):
    _log("WARN", message)


def log_error(message):
    _log("ERROR", message)


def _bind(logging_module, types_module):
    global _logging, _WIT_KINDS, _FROM_WIT
    _logging = logging_module
    _WIT_KINDS = tuple(types_module.RowKind)
    if len(_WIT_KINDS) != len(RowKind):
        raise RuntimeError(f"the bindings' row-kind has {len(_WIT_KINDS)} cases, the SDK knows {len(RowKind)}")
    _FROM_WIT = {w: RowKind(i) for i, w in enumerate(_WIT_KINDS)}
