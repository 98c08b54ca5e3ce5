"""Keyed broadcast process functions (Flink's `KeyedBroadcastProcessFunction`,
WIT `keyed-broadcast-process`): a keyed input processed as by a
`KeyedProcess`, and a broadcast input (rules, thresholds) that reaches every
subtask and may change the `BroadcastState` the keyed side reads.

Broadcast state lives in the host, whole on every subtask; every access is a
host call. Only the broadcast side may change it — `put` and `remove` take
the `BroadcastContext` only `process_broadcast` gets — and it must change it
the same way on every subtask: the host compares the subtasks' broadcast
state at every checkpoint and fails the job when they differ.
"""

from . import _core
from ._core import Record, _batch_text, dumps, error_message
from . import process as _p

# Bindings, set by `_bind`.
_bs = None
_BroadcastOutput = None


def _bind(broadcast_state_module, keyed_broadcast_process_module):
    global _bs, _BroadcastOutput
    _bs = broadcast_state_module
    _BroadcastOutput = keyed_broadcast_process_module.BroadcastOutput


class KeyedBroadcastProcess:
    """A keyed broadcast process function. Subclass it in a module and build
    the module with `guest-sdk/python/build`:

        class Limits(KeyedBroadcastProcess):
            def open(self, config, setup):
                self.limits = setup.broadcast_state("limits")

            def process(self, payment, ctx):
                p = payment.json()
                limit = self.limits.get(p["country"])
                if limit is not None and p["amount"] > limit:
                    ctx.forward()

            def process_broadcast(self, rule, ctx):
                r = rule.json()
                self.limits.put(ctx, r["country"], r["limit"])

    The host makes the calls in arrival order: the keyed records (and the
    timers) that arrived before a broadcast record are processed before it.
    An exception raised by `process_broadcast` sends the broadcast record to
    the dead-letter sink and drops what it emitted; its broadcast state
    writes stay (they went to the host already). `process` and `on_timer`
    behave as in `KeyedProcess`.
    """

    def open(self, config, setup):
        """Called once per instance with the `Config` and a `Setup` to
        declare states, broadcast states and side outputs with."""

    def process(self, record, ctx):
        """Handles one `Record` of the keyed input (broadcast state is
        read-only here)."""
        raise NotImplementedError("KeyedBroadcastProcess.process")

    def process_broadcast(self, record, ctx):
        """Handles one `Record` of the broadcast input, with a
        `BroadcastContext`."""
        raise NotImplementedError("KeyedBroadcastProcess.process_broadcast")

    def on_timer(self, timer, ctx):
        """A `Timer` of the current key fired."""


class BroadcastState:
    """A map from JSON keys to JSON values that every subtask holds whole
    (Flink's `BroadcastState`); declare it with `Setup.broadcast_state`."""

    __slots__ = ("name", "handle")

    def __init__(self, name, handle):
        self.name = name
        self.handle = handle

    def get(self, key):
        """The value under `key`, or `None`."""
        b = _bs.get(self.handle, _p._encode(key))
        return None if b is None else _p._decode(f"broadcast state `{self.name}`", b)

    def entries(self):
        """All `(key, value)` pairs, by the keys' JSON text."""
        keys, values = _bs.entries(self.handle)
        what = f"broadcast state `{self.name}`"
        return list(zip(_p._items(what, keys), _p._items(what, values)))

    def put(self, ctx, key, value):
        """Sets the value under `key` (in `process_broadcast` only)."""
        _writable(ctx)
        _bs.put(self.handle, _p._encode(key), _p._encode(value))

    def remove(self, ctx, key):
        """Removes `key` (in `process_broadcast` only)."""
        _writable(ctx)
        _bs.remove(self.handle, _p._encode(key))

    def __repr__(self):
        return f"BroadcastState({self.name!r})"


def _writable(ctx):
    if not isinstance(ctx, BroadcastContext):
        raise _p.Error("broadcast state can only be changed in process_broadcast, with its context")


def _declare(name):
    try:
        return BroadcastState(name, _bs.declare(name))
    except Exception as e:  # the bindings raise `Err(message)`
        value = getattr(e, "value", None)
        raise _p.Error(value if isinstance(value, str) else str(e)) from None


class BroadcastContext:
    """Where a broadcast record is processed: its watermark and the outputs.
    Emitted records have no key."""

    __slots__ = ("_buf", "_records", "_origins", "_ports", "_origin", "_ts", "_wm", "_value")

    @property
    def current_watermark(self):
        """The event-time watermark when the record arrived."""
        return self._wm

    def emit(self, value):
        """Emits `value` (bytes, or str written as UTF-8) to the main output,
        with the record's timestamp."""
        self._push(0, value)

    def emit_json(self, value):
        """Emits `value` as compact JSON to the main output."""
        self._push(0, dumps(value).encode())

    def emit_to(self, side, value):
        """Emits `value` (bytes or str) to a side output."""
        self._push(side.port, value)

    def emit_json_to(self, side, value):
        """Emits `value` as JSON to a side output."""
        self._push(side.port, dumps(value).encode())

    def forward(self, side=None):
        """Emits the broadcast record's value unchanged."""
        self._records.append(_p._RecordMeta(None, self._value, self._ts, 0, 0, _core._WIT_KINDS[0]))
        self._origins.append(self._origin)
        self._ports.append(0 if side is None else side.port)

    def emit_change(self, kind, value):
        """Emits `value` as compact JSON to the main output as a change of
        kind `kind`, a `RowKind` (the other `emit` functions emit inserts).
        Only a module whose section in the spec says `changelog: true` may
        emit anything but inserts; the host fails the job otherwise."""
        self._push(0, dumps(value).encode(), _core._wit_kind(kind))

    def _push(self, port, value, kind=None):
        if type(value) is str:
            value = value.encode()
        buf = self._buf
        span = _p._Span(len(buf), len(value))
        buf += value
        if kind is None:
            kind = _core._WIT_KINDS[0]
        self._records.append(_p._RecordMeta(None, span, self._ts, 0, 0, kind))
        self._origins.append(self._origin)
        self._ports.append(port)


def _process_broadcast(op, batch, watermarks):
    """The `process-broadcast` export: each record in order; a failed one's
    output dropped."""
    metas = batch.records
    if len(watermarks) != len(metas):
        raise RuntimeError("malformed call from the host: broadcast watermarks do not match the batch")
    ctx = BroadcastContext()
    # The output's data starts with the input's, so that forwarded values
    # point at bytes that are already there.
    ctx._buf = bytearray(batch.data)
    ctx._records, ctx._origins, ctx._ports = [], [], []
    rec = Record()
    rec._data = batch.data
    rec._text = _batch_text(batch.data)
    rec._headers = batch.headers
    errors = []
    for i, meta in enumerate(metas):
        rec._meta = meta
        ctx._origin, ctx._ts, ctx._wm, ctx._value = i, meta.timestamp, watermarks[i], meta.value
        emitted = len(ctx._records)
        try:
            op.process_broadcast(rec, ctx)
        except Exception as e:
            del ctx._records[emitted:], ctx._origins[emitted:], ctx._ports[emitted:]
            errors.append(_p._RecordError(i, error_message(e)))
    return _BroadcastOutput(_p._Batch(bytes(ctx._buf), ctx._records, []), ctx._origins, ctx._ports, errors)
