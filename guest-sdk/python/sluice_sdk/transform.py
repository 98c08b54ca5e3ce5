"""`Transform`: map, filter and flat-map operators, and the loop that runs
them over the host's batches (the WIT `transform` interface)."""

from ._core import Config, Error, Record, _batch_text, _wit_kind, dumps, error_message

__all__ = ["Transform", "Output"]

NOT_OPENED = "operator not opened"

# The bindings' types, set by `_bind` (the generated `wit_world` modules, or
# stand-ins in unit tests).
_Span = _RecordMeta = _Header = _Batch = _RecordError = _TransformOutput = None


def _bind(types_module, transform_module=None):
    """Binds the loop to the world's `types` (and, in the transform world,
    to the `transform` export's types; the enricher world gives its output
    type to `_Runner` instead)."""
    global _Span, _RecordMeta, _Header, _Batch, _RecordError, _TransformOutput
    _Span = types_module.Span
    _RecordMeta = types_module.RecordMeta
    _Header = types_module.Header
    _Batch = types_module.Batch
    _RecordError = types_module.RecordError
    if transform_module is not None:
        _TransformOutput = transform_module.TransformOutput


class Transform:
    """A map, filter or flat-map operator. Subclass it in a module and build
    the module with `guest-sdk/python/build`:

        class Grep(Transform):
            def open(self, config):
                self.word = config.json()

            def process(self, record, out):
                if self.word in record.value_str():
                    out.forward()

    The SDK creates one instance per operator instance (without arguments)
    and calls `open` once, then `process` once per input record, in order.

    * Filter: emit nothing for the records you drop.
    * Map: emit one record (`out.emit_json` builds it from a value).
    * Flat-map: emit several.

    An exception raised by `process` sends that input record to the
    pipeline's dead-letter sink with the exception's message; what was
    already emitted for it is discarded and the batch goes on with the next
    record. An exception raised by `open` stops the job.
    """

    def open(self, config):
        """Called once before any record with the `Config` from the spec."""

    def process(self, record, out):
        """Handles one input `Record`, emitting any number of records to the
        `Output`."""
        raise NotImplementedError("Transform.process")


_KEEP = object()


class Output:
    """Where `Transform.process` emits the records it makes from the current
    input record.

    `emit`, `emit_json` and `forward` give the new record the input's key,
    timestamp, headers and changelog kind unless `key=`, `timestamp=`,
    `headers=` or `kind=` (a `RowKind`) say otherwise (`None` for none): a
    map of a changelog stays one, a delete of a row mapping to the delete of
    the mapped row. The SDK reuses one `Output` per call: do not keep it.
    """

    __slots__ = ("_buf", "_records", "_origins", "_headers", "_meta", "_index", "_data")

    def emit(self, value, key=_KEEP, timestamp=_KEEP, headers=_KEEP, kind=_KEEP):
        """Emits `value` (bytes, or str written as UTF-8) as a record's value."""
        if type(value) is str:
            value = value.encode()
        buf = self._buf
        off = len(buf)
        buf += value
        span = _Span(off, len(value))
        if key is _KEEP and timestamp is _KEEP and headers is _KEEP and kind is _KEEP:
            m = self._meta
            self._records.append(_RecordMeta(m.key, span, m.timestamp, m.headers_start, m.headers_len, m.kind))
        else:
            self._push_custom(span, key, timestamp, headers, kind)
        self._origins.append(self._index)

    def emit_json(self, value, key=_KEEP, timestamp=_KEEP, headers=_KEEP, kind=_KEEP):
        """Emits `value` encoded as compact JSON (see `sluice_sdk.dumps`).
        Nothing is emitted if it cannot be JSON (the exception propagates)."""
        self.emit(dumps(value).encode(), key, timestamp, headers, kind)

    def forward(self):
        """Emits the input record unchanged."""
        m = self._meta
        self._records.append(_RecordMeta(m.key, m.value, m.timestamp, m.headers_start, m.headers_len, m.kind))
        self._origins.append(self._index)

    def _push_custom(self, span, key, timestamp, headers, kind):
        m = self._meta
        kind = m.kind if kind is _KEEP else _wit_kind(kind)
        buf = self._buf
        if key is _KEEP:
            key = m.key
        elif key is not None:
            if type(key) is str:
                key = key.encode()
            off = len(buf)
            buf += key
            key = _Span(off, len(key))
        if timestamp is _KEEP:
            timestamp = m.timestamp
        if headers is _KEEP:
            start, n = m.headers_start, m.headers_len
        else:
            hs = self._headers
            start = len(hs)
            for name, val in headers or ():
                if type(name) is str:
                    name = name.encode()
                if type(val) is str:
                    val = val.encode()
                off = len(buf)
                buf += name
                buf += val
                hs.append(_Header(_Span(off, len(name)), _Span(off + len(name), len(val))))
            n = len(hs) - start
        self._records.append(_RecordMeta(key, span, timestamp, start, n, kind))


def _open(cls, config):
    """A new instance of operator class `cls`, opened with `config`:
    `(operator, None)`, or `(None, the error message)`."""
    try:
        op = cls()
        op.open(Config(config))
    except Exception as e:
        return None, error_message(e)
    return op, None


class _Runner:
    """One instance's operator, behind the `transform` exports (or the
    `enricher` ones: `output` is then their `enricher-output` type, which has
    the fields of `transform-output`)."""

    def __init__(self, cls, output=None):
        self.cls = cls
        self.output = output
        self.op = None
        self.record = Record()
        self.out = Output()

    def open(self, config):
        """The `open` export: `None`, or the error message."""
        self.op, message = _open(self.cls, config)
        return message

    def process(self, batch):
        """The `process` export."""
        metas = batch.records
        errors = []
        op = self.op
        data = batch.data
        make_output = self.output or _TransformOutput
        if op is None:
            errors = [_RecordError(i, NOT_OPENED) for i in range(len(metas))]
            return make_output(_Batch(b"", [], []), [], errors)
        # The output's data starts with a copy of the input's, so that
        # records keeping the input's key and headers (or its whole value)
        # point at the same bytes: nothing is copied or allocated for them.
        buf = bytearray(data)
        records = []
        origins = []
        headers = list(batch.headers)
        rec = self.record
        rec._data = data
        rec._text = _batch_text(data)
        rec._headers = batch.headers
        out = self.out
        out._buf = buf
        out._records = records
        out._origins = origins
        out._headers = headers
        process = op.process
        i = 0
        for meta in metas:
            rec._meta = meta
            out._meta = meta
            out._index = i
            try:
                process(rec, out)
            except Exception as e:
                # Undo what this record emitted: its records are the last
                # ones with its index (their bytes stay, unreferenced).
                while origins and origins[-1] == i:
                    origins.pop()
                    records.pop()
                errors.append(_RecordError(i, error_message(e)))
            i += 1
        rec._meta = out._meta = None
        return make_output(_Batch(bytes(buf), records, headers), origins, errors)
