"""`WindowFunction`: all records of a window at once (the WIT
`window-function` interface), Flink's `ProcessWindowFunction`, for results an
incremental `Aggregate` cannot compute (percentiles, medians, top-n)."""

from dataclasses import dataclass

from ._core import Record, _batch_text, dumps, error_message
from .transform import _open

__all__ = ["Window", "WindowFunction"]

NOT_OPENED = "operator not opened"

# The bindings' types, set by `_bind`.
_Span = _ByteList = None


def _bind(types_module):
    """Binds the runner to the world's `types` (the generated `wit_world`
    module, or stand-ins in unit tests)."""
    global _Span, _ByteList
    _Span = types_module.Span
    _ByteList = types_module.ByteList


@dataclass(frozen=True)
class Window:
    """A window that fired: its key's bytes (with JSON input, the key
    field's JSON text) and its bounds, epoch milliseconds, the start
    inclusive and the end exclusive."""

    key: bytes
    start: int
    end: int


class WindowFunction:
    """A full-window function. Subclass it in a module and build the module
    with `guest-sdk/python/build`:

        class MaxAmount(WindowFunction):
            def process(self, window, records):
                return {"max_amount": max(r.json()["amount"] for r in records)}

    `process` gets the `Window` and all its records (`Record`s, in the order
    they arrived) and returns the window's result: a dict's fields join the
    window's output row, next to the key and the bounds; any other value
    becomes the field `result`. An exception stops the job with its message
    (it concerns a whole window, not one record), as does one from `open`.
    """

    def open(self, config):
        """Called once before anything else with the `Config` from the spec."""

    def process(self, window, records):
        """The result of one `Window` from its `Record`s."""
        raise NotImplementedError("WindowFunction.process")


class _Failed(Exception):
    """`process` failed: the export turns it into the call's error."""


class _Runner:
    """One instance's window function, behind the `window-function` exports."""

    def __init__(self, cls):
        self.cls = cls
        self.op = None

    def open(self, config):
        """The `open` export: `None`, or the error message."""
        self.op, message = _open(self.cls, config)
        return message

    def process(self, windows, keys, batch):
        """The `process` export: one result per window, in order."""
        if self.op is None:
            raise _Failed(NOT_OPENED)
        op = self.op
        metas = batch.records
        text = _batch_text(batch.data)
        data = bytearray()
        spans = []
        for w in windows:
            first, n = w.records.offset, w.records.len
            if first + n > len(metas):
                raise _Failed("malformed call from the host: window records out of range")
            records = []
            for meta in metas[first:first + n]:
                r = Record()
                r._data, r._text, r._headers, r._meta = batch.data, text, batch.headers, meta
                records.append(r)
            key = keys[w.key.offset:w.key.offset + w.key.len]
            window = Window(bytes(key), w.start, w.end)
            try:
                encoded = dumps(op.process(window, records)).encode()
            except Exception as e:
                shown = key.decode(errors="replace")
                raise _Failed(f"window [{w.start}, {w.end}) of key {shown}: {error_message(e)}") from None
            spans.append(_Span(len(data), len(encoded)))
            data += encoded
        return _ByteList(bytes(data), spans)
