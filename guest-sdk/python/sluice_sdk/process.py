"""`KeyedProcess`: Flink's `KeyedProcessFunction` (records in, records out,
with keyed state, timers and side outputs), and the loop that runs it (the
WIT `keyed-process` interface).

The host sends a batch of records together with everything it needs: the
distinct keys, each record's key and watermark, the timers that may fire, and
the current value of every value state for every key. This module replays
that call as the events it stands for, exactly as the Rust SDK does
(`guest-sdk/rust/src/process.rs`):

1. processing-time timers due at the call's processing time;
2. for each record: the event-time timers whose time is at most the record's
   watermark, in (time, key) order, including timers registered earlier in
   the same call; then the record;
3. the event-time timers up to the call's end watermark.

Value states stay in guest memory during the call and go back in its result;
list and map states are host calls. States are stored as JSON text, the same
bytes the Rust SDK writes, so a savepoint written by a Rust module restores
into a Python one and back.
"""

import heapq
from datetime import timedelta
from enum import Enum
from typing import NamedTuple

from . import _core
from ._core import Config, Error, Record, _batch_text, dumps, error_message, float_json, loads

__all__ = [
    "KeyedProcess",
    "Context",
    "Setup",
    "Timer",
    "Domain",
    "ValueState",
    "ListState",
    "MapState",
    "SideOutput",
]

ABSENT = 0xFFFFFFFF  # a span meaning "no value" in `keyed-input.values`
NO_ORIGIN = 0xFFFFFFFF  # the origin of records emitted by a timer

# Bindings, set by `_bind`.
_t = _kp = _state = _output = None
_Span = _RecordMeta = _Batch = _RecordError = None
_WitTimer = _TimerChange = _ValueWrite = _KeyedOutput = None
_EVENT = _PROC = None
_KIND = {}


def _bind(types_module, keyed_module, state_module, output_module):
    global _t, _kp, _state, _output, _Span, _RecordMeta, _Batch, _RecordError
    global _WitTimer, _TimerChange, _ValueWrite, _KeyedOutput, _EVENT, _PROC
    _t, _kp, _state, _output = types_module, keyed_module, state_module, output_module
    keyed_process_module = keyed_module
    _Span = types_module.Span
    _RecordMeta = types_module.RecordMeta
    _Batch = types_module.Batch
    _RecordError = types_module.RecordError
    _WitTimer = keyed_process_module.Timer
    _TimerChange = keyed_process_module.TimerChange
    _ValueWrite = keyed_process_module.ValueWrite
    _KeyedOutput = keyed_process_module.KeyedOutput
    _EVENT = keyed_process_module.TimeDomain.EVENT_TIME
    _PROC = keyed_process_module.TimeDomain.PROCESSING_TIME
    _KIND.update(
        value=state_module.StateKind.VALUE,
        list=state_module.StateKind.LIST,
        map=state_module.StateKind.MAP,
    )


class Domain(Enum):
    """Event time (fires when the watermark reaches it) or processing time
    (fires when the host's clock does)."""

    EVENT_TIME = 0
    PROCESSING_TIME = 1


class Timer(NamedTuple):
    """A fired timer: the time it was registered for (epoch ms) and its
    domain."""

    time: int
    domain: Domain


class KeyedProcess:
    """A keyed process function. Subclass it in a module and build the module
    with `guest-sdk/python/build`:

        class CountThenReport(KeyedProcess):
            def open(self, config, setup):
                self.count = setup.value_state("count")

            def process(self, record, ctx):
                self.count.set(ctx, (self.count.get(ctx) or 0) + 1)
                ctx.register_event_time_timer(record.timestamp + 10_000)

            def on_timer(self, timer, ctx):
                ctx.emit_json({"count": self.count.get(ctx)})
                self.count.clear(ctx)

    Each call of `process` or `on_timer` is scoped to one key: the record's
    or the timer's. State handles read and write that key's state, timers are
    registered for that key, and emitted records carry that key.

    An exception raised by `process` sends the input record to the
    dead-letter sink; what the call emitted, the value states it wrote and
    the timers it changed are undone (list and map writes are not: they went
    to the host already). An exception raised by `on_timer` fails the job.

    Define `migrate(self, state, from_version, item)` too to take over state
    that an older module wrote with another layout version (see
    `Setup.value_state`); the build then targets the migrating world.
    """

    def open(self, config, setup):
        """Called once per instance with the `Config` and a `Setup` to
        declare states and side outputs with."""

    def process(self, record, ctx):
        """Handles one `Record` of the current key."""
        raise NotImplementedError("KeyedProcess.process")

    def on_timer(self, timer, ctx):
        """A `Timer` of the current key fired."""


class KeyedCoProcess:
    """A keyed co-process function (Flink's `KeyedCoProcessFunction`): two
    inputs, `left` and `right` in the pipeline spec, each keyed by its own
    `key_by`, whose records of one key share that key's state and timers.
    Subclass it in a module and build the module with
    `guest-sdk/python/build`:

        class PaidOrders(KeyedCoProcess):
            def open(self, config, setup):
                self.order = setup.value_state("order")

            def process_left(self, order, ctx):
                self.order.set(ctx, order.json()["amount"])

            def process_right(self, payment, ctx):
                amount = self.order.get(ctx)
                if amount is not None:
                    ctx.emit_json({"payment": payment.json()["payment_id"], "amount": amount})

    Records and timers are handled one at a time, in the order the host
    received them, each scoped to its key as in `KeyedProcess`; exceptions
    behave as there.
    """

    def open(self, config, setup):
        """Called once per instance with the `Config` and a `Setup` to
        declare states and side outputs with."""

    def process_left(self, record, ctx):
        """Handles one `Record` of the left input."""
        raise NotImplementedError("KeyedCoProcess.process_left")

    def process_right(self, record, ctx):
        """Handles one `Record` of the right input."""
        raise NotImplementedError("KeyedCoProcess.process_right")

    def on_timer(self, timer, ctx):
        """A `Timer` of the current key fired."""


def _ttl_ms(ttl):
    if ttl is None:
        return None
    if isinstance(ttl, timedelta):
        return int(ttl.total_seconds() * 1000)
    return int(ttl * 1000)


class SideOutput:
    """A handle to a named side output (Flink's `OutputTag`), routed in the
    pipeline spec as `operator-uid.name`."""

    __slots__ = ("name", "port")

    def __init__(self, name, port):
        self.name = name
        self.port = port

    def __repr__(self):
        return f"SideOutput({self.name!r})"


class Setup:
    """What `open` declares: states and side outputs. States are named
    uniquely within the operator (the name identifies the state in
    savepoints: keep it when the module changes).

    `ttl`: entries expire this long (processing time) after their last
    write: seconds (a number) or a `datetime.timedelta`.
    `version`: the layout of the state's JSON, from 1. A savepoint records
    it; a module that declares another version than the savepoint holds must
    define `migrate`.
    """

    def __init__(self):
        self._value_handles = []

    def _declare(self, name, kind, ttl, version):
        d = _state.StateDescriptor(name, _KIND[kind], _ttl_ms(ttl), version)
        try:
            return _state.declare(d)
        except Exception as e:  # the bindings raise `Err(message)`
            value = getattr(e, "value", None)
            raise Error(value if isinstance(value, str) else str(e)) from None

    def value_state(self, name, ttl=None, version=1):
        """A value state: one JSON value per key."""
        handle = self._declare(name, "value", ttl, version)
        slot = len(self._value_handles)
        self._value_handles.append(handle)
        return ValueState(name, handle, slot)

    def list_state(self, name, ttl=None, version=1):
        """A list state: a list of JSON values per key."""
        return ListState(name, self._declare(name, "list", ttl, version))

    def map_state(self, name, ttl=None, version=1):
        """A map state: a map from JSON keys to JSON values per key."""
        return MapState(name, self._declare(name, "map", ttl, version))

    def side_output(self, name):
        """A side output, routed in the pipeline spec as `operator-uid.name`."""
        return SideOutput(name, _output.side_output(name))

    def broadcast_state(self, name):
        """A broadcast state (a `KeyedBroadcastProcess` only): a map from
        JSON keys to JSON values, the same on every subtask."""
        from .broadcast import _declare

        return _declare(name)


_UNREAD = object()
_NOWRITE = object()
# Values that cannot change after `set`, kept decoded so that reading them
# back does not parse JSON again.
_IMMUTABLE = frozenset((int, float, str, bool))


def _encode(value):
    """A state value's bytes: JSON, as the Rust SDK writes it."""
    t = type(value)
    if t is int:
        return str(value).encode()
    if t is float:
        return float_json(value).encode()
    return dumps(value).encode()


class ValueState:
    """A value state handle; read and write it through a `Context` (the
    current key's value)."""

    __slots__ = ("name", "handle", "slot")

    def __init__(self, name, handle, slot):
        self.name = name
        self.handle = handle
        self.slot = slot

    def get(self, ctx):
        """The current key's value, or `None`."""
        call = ctx._call
        i = ctx._kidx * call.nvs + self.slot
        v = call.cache[i]
        if v is not _UNREAD:
            return v
        w = call.written.get(i, _NOWRITE)
        if w is _NOWRITE:
            s = call.in_spans[i]
            if s.offset == ABSENT:
                call.cache[i] = None
                return None
            b = call.in_data[s.offset:s.offset + s.len]
        elif w is None:
            return None
        else:
            b = w
        if b.isdigit() and (b[0] != 48 or len(b) == 1):  # a JSON natural number, the commonest value
            v = int(b)
            call.cache[i] = v
            return v
        try:
            v = loads(b.decode())
        except Exception as e:
            raise Error(
                f"value state `{self.name}` holds a value this operator cannot read: {error_message(e)}"
            ) from None
        if v is None or type(v) in _IMMUTABLE:
            call.cache[i] = v
        return v

    def set(self, ctx, value):
        """Sets the current key's value (stored as JSON)."""
        call = ctx._call
        i = ctx._kidx * call.nvs + self.slot
        b = _encode(value)
        written = call.written
        call.undo_slots.append((i, call.cache[i], written.get(i, _NOWRITE)))
        written[i] = b
        call.cache[i] = value if type(value) in _IMMUTABLE else _UNREAD

    def clear(self, ctx):
        """Removes the current key's value."""
        call = ctx._call
        i = ctx._kidx * call.nvs + self.slot
        written = call.written
        call.undo_slots.append((i, call.cache[i], written.get(i, _NOWRITE)))
        written[i] = None
        call.cache[i] = None

    def __repr__(self):
        return f"ValueState({self.name!r})"


def _decode(what, b):
    try:
        return loads(b.decode())
    except Exception as e:
        raise Error(f"{what} holds a value this operator cannot read: {error_message(e)}") from None


def _items(what, byte_list):
    d = byte_list.data
    return [_decode(what, d[s.offset:s.offset + s.len]) for s in byte_list.spans]


class ListState:
    """A list of JSON values per key (Flink's `ListState`); every access is a
    host call."""

    __slots__ = ("name", "handle")

    def __init__(self, name, handle):
        self.name = name
        self.handle = handle

    def get(self, ctx):
        """The current key's elements, in the order they were added (an empty
        list when there are none)."""
        return _items(f"list state `{self.name}`", _state.list_get(self.handle, ctx._kidx))

    def add(self, ctx, value):
        """Appends an element for the current key."""
        _state.list_add(self.handle, ctx._kidx, _encode(value))

    def update(self, ctx, values):
        """Replaces the current key's elements (an empty list clears them)."""
        data = bytearray()
        spans = []
        for v in values:
            b = _encode(v)
            spans.append(_Span(len(data), len(b)))
            data += b
        _state.list_update(self.handle, ctx._kidx, _t.ByteList(bytes(data), spans))

    def clear(self, ctx):
        """Removes the current key's list."""
        _state.clear(self.handle, ctx._kidx)

    def __repr__(self):
        return f"ListState({self.name!r})"


class MapState:
    """A map from JSON keys to JSON values per key (Flink's `MapState`). User
    keys are stored as their JSON text (as the Rust SDK stores them), and
    `entries` returns them in the order of those bytes. Every access is a
    host call."""

    __slots__ = ("name", "handle")

    def __init__(self, name, handle):
        self.name = name
        self.handle = handle

    def get(self, ctx, key, default=None):
        """The value under `key` for the current key, or `default`."""
        b = _state.map_get(self.handle, ctx._kidx, _encode(key))
        if b is None:
            return default
        return _decode(f"map state `{self.name}`", b)

    def contains(self, ctx, key):
        return _state.map_get(self.handle, ctx._kidx, _encode(key)) is not None

    def put(self, ctx, key, value):
        _state.map_put(self.handle, ctx._kidx, _encode(key), _encode(value))

    def remove(self, ctx, key):
        _state.map_remove(self.handle, ctx._kidx, _encode(key))

    def entries(self, ctx):
        """All `(key, value)` pairs of the current key, by key bytes."""
        keys, values = _state.map_entries(self.handle, ctx._kidx)
        what = f"map state `{self.name}`"
        return list(zip(_items(what + " key", keys), _items(what, values)))

    def keys(self, ctx):
        return [k for k, _ in self.entries(ctx)]

    def values(self, ctx):
        return [v for _, v in self.entries(ctx)]

    def clear(self, ctx):
        """Removes all entries of the current key."""
        _state.clear(self.handle, ctx._kidx)

    def __repr__(self):
        return f"MapState({self.name!r})"


class _Call:
    """What one `process` call accumulates."""

    __slots__ = (
        "nvs", "handles", "in_data", "in_spans", "cache", "written",
        "epending", "eheap", "ppending", "pheap", "end_watermark",
        "changes", "buf", "records", "origins", "ports",
        "undo_slots", "undo_timers", "key_bytes", "key_spans", "keys",
        "key_base",
    )


class Context:
    """Where the current record or timer is processed: its key, time, state
    scope, timers and outputs. The SDK reuses one `Context` per call: do not
    keep it."""

    __slots__ = ("_call", "_kidx", "_origin", "_ts", "_wm", "_now", "_value")

    @property
    def key(self):
        """The current key's bytes."""
        call = self._call
        k = call.key_bytes[self._kidx]
        if k is None:
            s = call.keys.spans[self._kidx]
            k = call.keys.data[s.offset:s.offset + s.len]
            call.key_bytes[self._kidx] = k
        return k

    @property
    def key_str(self):
        """The current key as text (invalid UTF-8 replaced)."""
        return self.key.decode("utf-8", "replace")

    @property
    def current_watermark(self):
        """The event-time watermark (-2**63 before the first one)."""
        return self._wm

    @property
    def current_processing_time(self):
        """The host's processing time for this call, epoch milliseconds."""
        return self._now

    def register_event_time_timer(self, time):
        """Registers an event-time timer for the current key; it fires once
        the watermark reaches `time`. One timer per key and time:
        registering it again does nothing."""
        self._change_timer(time, True, True)

    def delete_event_time_timer(self, time):
        """Deletes an event-time timer of the current key (nothing if none)."""
        self._change_timer(time, True, False)

    def register_processing_time_timer(self, time):
        """Registers a processing-time timer for the current key."""
        self._change_timer(time, False, True)

    def delete_processing_time_timer(self, time):
        self._change_timer(time, False, False)

    def _change_timer(self, time, event, registered):
        call = self._call
        t = (time, self._kidx)
        if event:
            pending = call.epending
            # A timer registered now may fire within this call if the call's
            # end watermark already passes it.
            may_fire = time <= call.end_watermark
        else:
            pending = call.ppending
            may_fire = False
        was = t in pending
        if registered:
            if may_fire and not was:
                pending.add(t)
                heapq.heappush(call.eheap, t)
        elif was:
            pending.discard(t)
        call.undo_timers.append((t, event, was))
        call.changes.append((t, event, registered))

    def emit(self, value):
        """Emits `value` (bytes, or str written as UTF-8) to the main output,
        with the current key and timestamp (the record's, or the timer's time
        for an event-time timer)."""
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
        """Emits the current record's value unchanged (to `side`, or the main
        output); only while processing a record."""
        v = self._value
        if v is None:
            raise Error("forward() outside of process()")
        call = self._call
        call.records.append(_RecordMeta(self._key_span(), v, self._ts, 0, 0, _core._WIT_KINDS[0]))
        call.origins.append(self._origin)
        call.ports.append(0 if side is None else side.port)

    def _key_span(self):
        call = self._call
        s = call.key_spans[self._kidx]
        if s is None:
            k = call.keys.spans[self._kidx]
            s = _Span(call.key_base + k.offset, k.len)
            call.key_spans[self._kidx] = s
        return s

    def emit_change(self, kind, value):
        """Emits `value` as compact JSON to the main output as a change of
        kind `kind`, a `RowKind` (the other `emit` functions emit inserts): a
        function that keeps a result per key retracts the old one with
        `RowKind.UPDATE_BEFORE` and adds the new one with
        `RowKind.UPDATE_AFTER`. Only a module whose section in the spec says
        `changelog: true` may emit anything but inserts; the host fails the
        job otherwise."""
        self._push(0, dumps(value).encode(), _core._wit_kind(kind))

    def _push(self, port, value, kind=None):
        if type(value) is str:
            value = value.encode()
        call = self._call
        buf = call.buf
        off = len(buf)
        buf += value
        if kind is None:
            kind = _core._WIT_KINDS[0]
        call.records.append(_RecordMeta(self._key_span(), _Span(off, len(value)), self._ts, 0, 0, kind))
        call.origins.append(self._origin)
        call.ports.append(port)


def _fire(op, call, ctx, event, until, watermark):
    """Fires the pending timers of one domain up to `until`, in (time, key)
    order, including ones registered while firing."""
    if event:
        heap, pending, domain = call.eheap, call.epending, Domain.EVENT_TIME
    else:
        heap, pending, domain = call.pheap, call.ppending, Domain.PROCESSING_TIME
    on_timer = op.on_timer
    while heap and heap[0][0] <= until:
        t = heapq.heappop(heap)
        if t not in pending:
            continue  # deleted, or a stale duplicate
        pending.discard(t)
        time, kidx = t
        call.changes.append((t, event, False))
        ctx._kidx = kidx
        ctx._origin = NO_ORIGIN
        ctx._ts = time if event else None
        ctx._wm = watermark
        ctx._value = None
        try:
            on_timer(Timer(time, domain), ctx)
        except Exception as e:
            raise RuntimeError(f"on_timer({time}) failed: {error_message(e)}") from None


class _Runner:
    """One instance's keyed process function, behind the exports."""

    def __init__(self, cls):
        self.cls = cls
        self.op = None
        self.handles = None
        self.record = Record()
        self.ctx = Context()

    def open(self, config):
        """The `open` export: `None`, or the error message."""
        self.op = None
        try:
            op = self.cls()
            setup = Setup()
            op.open(Config(config), setup)
        except Exception as e:
            return error_message(e)
        self.op = op
        self.handles = setup._value_handles
        return None

    def migrate(self, state, from_version, items):
        """The `migrate` export: a `ByteList`, or raises `Error`."""
        op = self.op
        if op is None:
            raise Error("operator not opened")
        data = bytearray()
        spans = []
        d = items.data
        for i, s in enumerate(items.spans):
            try:
                new = op.migrate(state, from_version, d[s.offset:s.offset + s.len])
            except Exception as e:
                raise Error(f"item {i}: {error_message(e)}") from None
            if type(new) is str:
                new = new.encode()
            spans.append(_Span(len(data), len(new)))
            data += new
        return _t.ByteList(bytes(data), spans)

    @staticmethod
    def handlers(op):
        """The record handler of each input of `op`."""
        if isinstance(op, KeyedCoProcess):
            return (op.process_left, op.process_right)
        return (op.process,)

    def process(self, batch, context):
        """The `process` export. A broken call (never opened, malformed
        input, a failing timer) raises: the component traps and the host
        fails the job with the message."""
        op = self.op
        if op is None:
            raise RuntimeError("operator not opened")
        handles = self.handles
        nvs = len(handles)
        keys = context.keys
        nkeys = len(keys.spans)
        metas = batch.records
        n = len(metas)
        values = context.values
        if len(values.spans) != nkeys * nvs:
            raise RuntimeError(
                f"malformed call from the host: {len(values.spans)} values for "
                f"{nkeys} keys and {nvs} value states"
            )
        record_keys = context.record_keys
        watermarks = context.watermarks
        if len(record_keys) != n or len(watermarks) != n:
            raise RuntimeError("malformed call from the host: record keys or watermarks do not match the batch")

        data = batch.data
        call = _Call()
        call.nvs = nvs
        call.handles = handles
        call.in_data = values.data
        call.in_spans = values.spans
        call.cache = [_UNREAD] * (nkeys * nvs)
        call.written = {}
        call.end_watermark = context.end_watermark
        call.epending = set()
        call.ppending = set()
        call.eheap = []
        call.pheap = []
        for t in context.timers:
            tk = (t.time, t.key)
            if t.domain == _EVENT:
                call.epending.add(tk)
                call.eheap.append(tk)
            else:
                call.ppending.add(tk)
                call.pheap.append(tk)
        heapq.heapify(call.eheap)
        heapq.heapify(call.pheap)
        call.changes = []
        # The output's data starts with the input's and then the keys, so
        # that forwarded values and every record's key point at bytes that
        # are already there.
        buf = bytearray(data)
        call.key_base = len(buf)
        buf += keys.data
        call.buf = buf
        call.records = []
        call.origins = []
        call.ports = []
        call.undo_slots = []
        call.undo_timers = []
        call.keys = keys
        call.key_bytes = [None] * nkeys
        call.key_spans = [None] * nkeys

        ctx = self.ctx
        ctx._call = call
        ctx._now = context.processing_time
        rec = self.record
        rec._data = data
        rec._text = _batch_text(data)
        rec._headers = batch.headers
        errors = []

        if call.pheap:
            _fire(op, call, ctx, False, context.processing_time,
                  watermarks[0] if n else context.end_watermark)
            call.undo_slots.clear()
            call.undo_timers.clear()
        eheap = call.eheap
        # The function for each input: `process`, or a co-process
        # function's `process_left` and `process_right`.
        handlers = self.handlers(op)
        record_inputs = context.record_inputs
        if len(record_inputs) != n:
            raise RuntimeError("malformed call from the host: record inputs do not match the batch")
        undo_slots = call.undo_slots
        undo_timers = call.undo_timers
        origins = call.origins
        i = 0
        for meta in metas:
            wm = watermarks[i]
            if eheap and eheap[0][0] <= wm:
                _fire(op, call, ctx, True, wm, wm)
                # What the timers did is not the record's to undo.
                undo_slots.clear()
                undo_timers.clear()
            kidx = record_keys[i]
            if kidx >= nkeys:
                raise RuntimeError(f"malformed call from the host: record {i} has key {kidx} of {nkeys}")
            rec._meta = meta
            ctx._kidx = kidx
            ctx._origin = i
            ctx._ts = meta.timestamp
            ctx._wm = wm
            ctx._value = meta.value
            try:
                handlers[record_inputs[i]](rec, ctx)
            except Exception as e:
                self._rollback(call, i)
                errors.append(_RecordError(i, error_message(e)))
            if undo_slots:
                undo_slots.clear()
            if undo_timers:
                undo_timers.clear()
            i += 1
        end = context.end_watermark
        if eheap and eheap[0][0] <= end:
            _fire(op, call, ctx, True, end, end)
        rec._meta = None
        ctx._call = None
        return self._output(call, errors)

    @staticmethod
    def _rollback(call, i):
        origins, records, ports = call.origins, call.records, call.ports
        while origins and origins[-1] == i:
            origins.pop()
            records.pop()
            ports.pop()
        undo = call.undo_timers
        if undo:
            del call.changes[len(call.changes) - len(undo):]
            for t, event, was in reversed(undo):
                pending, heap = (call.epending, call.eheap) if event else (call.ppending, call.pheap)
                if not was:
                    pending.discard(t)
                elif t not in pending:
                    pending.add(t)
                    heapq.heappush(heap, t)
        cache, written = call.cache, call.written
        for slot, old_cache, old_written in reversed(call.undo_slots):
            cache[slot] = old_cache
            if old_written is _NOWRITE:
                written.pop(slot, None)
            else:
                written[slot] = old_written

    @staticmethod
    def _output(call, errors):
        WitTimer, TimerChange = _WitTimer, _TimerChange
        changes = [
            TimerChange(WitTimer(kidx, time, _EVENT if event else _PROC), registered)
            for (time, kidx), event, registered in call.changes
        ]
        value_data = bytearray()
        writes = []
        nvs, handles = call.nvs, call.handles
        for i, b in call.written.items():
            if b is None:
                span = None
            else:
                span = _Span(len(value_data), len(b))
                value_data += b
            writes.append(_ValueWrite(handles[i % nvs], i // nvs, span))
        return _KeyedOutput(
            _Batch(bytes(call.buf), call.records, []),
            call.origins,
            call.ports,
            changes,
            bytes(value_data),
            writes,
            errors,
        )
