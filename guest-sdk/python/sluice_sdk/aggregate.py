"""`Aggregate`: incremental window aggregation over accumulators the host
keeps (the WIT `aggregate` interface), Flink's `AggregateFunction`.

Accumulators cross the boundary as JSON, as with the Rust SDK, so a
savepoint written by an aggregate in one language restores into the same
aggregate written in another.
"""

from ._core import Record, _batch_text, dumps, error_message, loads
from .transform import _open

__all__ = ["Aggregate"]

NOT_OPENED = "operator not opened"

# The bindings' types, set by `_bind`.
_Span = _ByteList = _RecordError = _AddOutput = None


def _bind(types_module, aggregate_module):
    """Binds the runner to the world's `types` and `aggregate` export types
    (the generated `wit_world` modules, or stand-ins in unit tests)."""
    global _Span, _ByteList, _RecordError, _AddOutput
    _Span = types_module.Span
    _ByteList = types_module.ByteList
    _RecordError = types_module.RecordError
    _AddOutput = aggregate_module.AddOutput


class Aggregate:
    """A window aggregate function. Subclass it in a module and build the
    module with `guest-sdk/python/build`:

        class MaxAmount(Aggregate):
            def create(self):
                return None

            def add(self, acc, record):
                amount = record.json()["amount"]
                return amount if acc is None else max(acc, amount)

            def merge(self, acc, other):
                return other if acc is None else acc if other is None else max(acc, other)

            def result(self, acc):
                return {"max_amount": acc}

    The host keeps one accumulator per window and key: `create` makes the
    accumulator of an empty window, `add` returns the accumulator with one
    more record in it, `merge` returns two accumulators combined (session
    windows, partial results), and `result` is what the window emits when it
    fires: a dict's fields are added to the window's output row, any other
    value becomes the field `result`.

    An accumulator is any value `sluice_sdk.dumps` can write (numbers,
    strings, lists, dicts, None); it is stored as JSON between calls. `add`
    may change the accumulator in place and return it.

    An exception raised by `add` sends that record to the dead-letter sink
    and leaves its accumulator as it was before that record (`add` must be
    deterministic: the SDK replays a call's earlier adds to rebuild it). An
    exception raised by `open`, `merge` or `result` stops the job with its
    message.
    """

    def open(self, config):
        """Called once before anything else with the `Config` from the spec."""

    def create(self):
        """The accumulator of an empty window."""
        raise NotImplementedError("Aggregate.create")

    def add(self, acc, record):
        """Returns `acc` with the `Record` added."""
        raise NotImplementedError("Aggregate.add")

    def merge(self, acc, other):
        """Returns accumulators `acc` and `other` combined."""
        raise NotImplementedError("Aggregate.merge")

    def result(self, acc):
        """The result of a window whose accumulator is `acc`."""
        raise NotImplementedError("Aggregate.result")


class _Failed(Exception):
    """A user method failed where the WIT returns `result<_, string>`: the
    export turns it into that error."""


def _items(accs):
    """The accumulators of a WIT `byte-list`, as bytes."""
    data = accs.data
    return [data[s.offset:s.offset + s.len] for s in accs.spans]


def _byte_list(encoded):
    """A WIT `byte-list` of the given bytes, in order."""
    data = bytearray()
    spans = []
    for b in encoded:
        spans.append(_Span(len(data), len(b)))
        data += b
    return _ByteList(bytes(data), spans)


def _decode(raw):
    try:
        return loads(raw.decode())
    except Exception as e:
        # The host hands back what it was given: an accumulator that does not
        # decode is a bug, or a module that changed its accumulator's layout.
        raise RuntimeError(f"an accumulator does not decode: {error_message(e)}") from None


class _Runner:
    """One instance's aggregate, behind the `aggregate` exports."""

    def __init__(self, cls):
        self.cls = cls
        self.op = None
        self.record = Record()

    def open(self, config):
        """The `open` export: `None`, or the error message."""
        self.op, message = _open(self.cls, config)
        return message

    def _opened(self):
        if self.op is None:
            raise RuntimeError(NOT_OPENED)
        return self.op

    def create_accumulator(self):
        """The `create-accumulator` export."""
        return dumps(self._opened().create()).encode()

    def add(self, accumulators, batch, targets):
        """The `add` export: record `i` goes into accumulator `targets[i]`, in
        input order. Only accumulators a record targets are decoded and
        encoded again; the others go back as they came. A failed `add`
        leaves its accumulator as before that record: the accumulator is
        decoded again and the call's earlier successful adds to it replayed
        (cheap, and only for accumulators that saw a failure)."""
        metas = batch.records
        if self.op is None:
            errors = [_RecordError(i, NOT_OPENED) for i in range(len(metas))]
            return _AddOutput(accumulators, errors)
        op = self.op
        raw = _items(accumulators)
        if len(targets) != len(metas):
            raise RuntimeError(f"{len(targets)} targets for {len(metas)} records")
        live = {}  # accumulator index -> its value
        added = {}  # accumulator index -> records added to it in this call
        errors = []
        rec = self.record
        rec._data = batch.data
        rec._text = _batch_text(batch.data)
        rec._headers = batch.headers
        for i, meta in enumerate(metas):
            t = targets[i]
            if t >= len(raw):
                raise RuntimeError(f"target {t} of record {i} is out of range ({len(raw)} accumulators)")
            acc = live[t] if t in live else _decode(raw[t])
            rec._meta = meta
            try:
                live[t] = op.add(acc, rec)
                added.setdefault(t, []).append(i)
            except Exception as e:
                errors.append(_RecordError(i, error_message(e)))
                acc = _decode(raw[t])
                for j in added.get(t, ()):
                    rec._meta = metas[j]
                    acc = op.add(acc, rec)
                if t in added:
                    live[t] = acc
                else:
                    live.pop(t, None)
        rec._meta = None
        out = [dumps(live[k]).encode() if k in live else raw[k] for k in range(len(raw))]
        return _AddOutput(_byte_list(out), errors)

    def merge(self, accumulators, groups):
        """The `merge` export: one accumulator per group of consecutive
        accumulators."""
        op = self._opened()
        raw = _items(accumulators)
        out = []
        for g in groups:
            if g.offset + g.len > len(raw) or g.len == 0:
                raise RuntimeError(f"merge group {g.offset}..+{g.len} of {len(raw)} accumulators")
            acc = _decode(raw[g.offset])
            try:
                for k in range(g.offset + 1, g.offset + g.len):
                    acc = op.merge(acc, _decode(raw[k]))
                out.append(dumps(acc).encode())
            except Exception as e:
                raise _Failed(f"merge: {error_message(e)}") from None
        return _byte_list(out)

    def get_result(self, accumulators):
        """The `get-result` export: each accumulator's result, as JSON."""
        op = self._opened()
        out = []
        for b in _items(accumulators):
            acc = _decode(b)
            try:
                out.append(dumps(op.result(acc)).encode())
            except Exception as e:
                raise _Failed(f"result: {error_message(e)}") from None
        return _byte_list(out)
