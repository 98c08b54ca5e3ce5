"""Stand-ins for the bindings componentize-py generates from wit/operator.wit
(`wit_world.imports.types`, `...exports.transform`, `...exports.aggregate`,
`...imports.keyed`,
`...exports.enricher`, `...exports.sql_function`, `...imports.state`, `...imports.output`,
`...imports.http`, `...imports.logging`), so that the SDK's loops run under
plain CPython in unit tests. The host side of `state` and `output` is an
in-memory store, as in the Rust SDK's native stand-in; that of `http` is a
function of the request (`Web`)."""

import types as _types
from dataclasses import dataclass
from enum import Enum
from typing import List, Optional, Tuple


# --- types ---
@dataclass
class Span:
    offset: int
    len: int


@dataclass
class Header:
    name: Span
    value: Span


class RowKind(Enum):
    INSERT = 0
    UPDATE_BEFORE = 1
    UPDATE_AFTER = 2
    DELETE = 3


@dataclass
class RecordMeta:
    key: Optional[Span]
    value: Span
    timestamp: Optional[int]
    headers_start: int
    headers_len: int
    kind: RowKind = RowKind.INSERT


@dataclass
class Batch:
    data: bytes
    records: List[RecordMeta]
    headers: List[Header]


@dataclass
class RecordError:
    index: int
    message: str


@dataclass
class ByteList:
    data: bytes
    spans: List[Span]


types = _types.SimpleNamespace(
    Span=Span, Header=Header, RecordMeta=RecordMeta, Batch=Batch, RowKind=RowKind,
    RecordError=RecordError, ByteList=ByteList,
)


# --- transform ---
@dataclass
class TransformOutput:
    records: Batch
    origins: List[int]
    errors: List[RecordError]


transform = _types.SimpleNamespace(TransformOutput=TransformOutput)


# --- aggregate ---
@dataclass
class AddOutput:
    accumulators: ByteList
    errors: List[RecordError]


aggregate = _types.SimpleNamespace(AddOutput=AddOutput)


# --- sql-function ---
class FunctionKind(Enum):
    SCALAR = 0
    AGGREGATE = 1


@dataclass
class Signature:
    name: str
    kind: FunctionKind
    params: List[str]
    returns: str


@dataclass
class Column:
    nulls: bytes
    data: bytes
    spans: List[Span]


@dataclass
class CallOutput:
    values: Column
    errors: List[RecordError]


@dataclass
class AccumulateOutput:
    accumulators: ByteList
    errors: List[RecordError]


sql_function = _types.SimpleNamespace(
    FunctionKind=FunctionKind, Signature=Signature, Column=Column, CallOutput=CallOutput,
    AccumulateOutput=AccumulateOutput,
)


# --- enricher ---
@dataclass
class EnricherOutput:
    records: Batch
    origins: List[int]
    errors: List[RecordError]


enricher = _types.SimpleNamespace(EnricherOutput=EnricherOutput)


# --- http: a function of the request ---
@dataclass
class Request:
    method: str
    url: str
    headers: List[Tuple[str, str]]
    body: bytes


@dataclass
class Response:
    status: int
    headers: List[Tuple[str, str]]
    body: bytes


class Web:
    """The host side of `http`: `handler(request)` returns a `Response`, or
    a str for a transport failure; `requests` keeps what was sent."""

    def __init__(self, handler):
        self.handler = handler
        self.requests = []

    def module(self):
        def fetch(request):
            assert isinstance(request, Request) and isinstance(request.body, bytes)
            assert all(isinstance(n, str) and isinstance(v, str) for n, v in request.headers)
            self.requests.append(request)
            r = self.handler(request)
            if isinstance(r, str):
                raise Err(r)
            return r

        return _types.SimpleNamespace(Request=Request, Response=Response, fetch=fetch)


# --- keyed (the types of keyed calls) ---
class TimeDomain(Enum):
    EVENT_TIME = 0
    PROCESSING_TIME = 1


@dataclass
class Timer:
    key: int
    time: int
    domain: TimeDomain


@dataclass
class KeyedInput:
    keys: ByteList
    record_keys: List[int]
    record_inputs: List[int]
    watermarks: List[int]
    end_watermark: int
    processing_time: int
    timers: List[Timer]
    values: ByteList


@dataclass
class ValueWrite:
    state: int
    key: int
    value: Optional[Span]


@dataclass
class TimerChange:
    timer: Timer
    registered: bool


@dataclass
class KeyedOutput:
    records: Batch
    origins: List[int]
    ports: List[int]
    timer_changes: List[TimerChange]
    value_data: bytes
    value_writes: List[ValueWrite]
    errors: List[RecordError]


keyed = _types.SimpleNamespace(
    TimeDomain=TimeDomain, Timer=Timer, KeyedInput=KeyedInput, ValueWrite=ValueWrite,
    TimerChange=TimerChange, KeyedOutput=KeyedOutput,
)


# --- keyed-broadcast-process and broadcast-state ---
@dataclass
class BroadcastOutput:
    records: Batch
    origins: List[int]
    ports: List[int]
    errors: List[RecordError]


keyed_broadcast_process = _types.SimpleNamespace(BroadcastOutput=BroadcastOutput)


class BroadcastStore:
    """The host's broadcast states: name and entries, by handle."""

    def __init__(self):
        self.states = []

    def module(self):
        states = self.states

        def declare(name):
            for i, (n, _) in enumerate(states):
                if n == name:
                    return i
            states.append((name, {}))
            return len(states) - 1

        def entries(s):
            items = sorted(states[s][1].items())
            return byte_list_of([k for k, _ in items]), byte_list_of([v for _, v in items])

        return _types.SimpleNamespace(
            declare=declare,
            get=lambda s, key: states[s][1].get(bytes(key)),
            put=lambda s, key, value: states[s][1].__setitem__(bytes(key), bytes(value)),
            remove=lambda s, key: states[s][1].pop(bytes(key), None),
            entries=entries,
        )


def byte_list_of(items):
    data, spans = b"", []
    for it in items:
        spans.append(Span(len(data), len(it)))
        data += it
    return ByteList(data, spans)


# --- state and output: an in-memory host ---
class StateKind(Enum):
    VALUE = 0
    LIST = 1
    MAP = 2


@dataclass
class StateDescriptor:
    name: str
    kind: StateKind
    ttl_ms: Optional[int]
    version: int


class Err(Exception):
    def __init__(self, value):
        super().__init__(value)
        self.value = value


class Host:
    """What the host keeps: declared states, side outputs, list and map
    states by (handle, key index)."""

    def __init__(self):
        self.declared = []
        self.sides = []
        self.lists = {}
        self.maps = {}

    def module(self):
        h = self

        def declare(d):
            for i, (name, kind, version) in enumerate(h.declared):
                if name == d.name:
                    if kind == d.kind and version == d.version:
                        return i
                    raise Err(f"state `{d.name}` is already declared as another kind or version")
            h.declared.append((d.name, d.kind, d.version))
            return len(h.declared) - 1

        def side_output(name):
            if name not in h.sides:
                h.sides.append(name)
            return h.sides.index(name) + 1

        def byte_list(items):
            data, spans = b"", []
            for it in items:
                spans.append(Span(len(data), len(it)))
                data += it
            return ByteList(data, spans)

        def list_get(s, k):
            return byte_list(h.lists.get((s, k), []))

        def list_add(s, k, e):
            h.lists.setdefault((s, k), []).append(bytes(e))

        def list_update(s, k, es):
            h.lists[(s, k)] = [es.data[sp.offset:sp.offset + sp.len] for sp in es.spans]

        def map_get(s, k, uk):
            return h.maps.get((s, k), {}).get(bytes(uk))

        def map_put(s, k, uk, v):
            h.maps.setdefault((s, k), {})[bytes(uk)] = bytes(v)

        def map_remove(s, k, uk):
            h.maps.get((s, k), {}).pop(bytes(uk), None)

        def map_entries(s, k):
            m = h.maps.get((s, k), {})
            ks = sorted(m)
            return byte_list(ks), byte_list([m[x] for x in ks])

        def clear(s, k):
            h.lists.pop((s, k), None)
            h.maps.pop((s, k), None)

        state = _types.SimpleNamespace(
            StateKind=StateKind, StateDescriptor=StateDescriptor, declare=declare,
            list_get=list_get, list_add=list_add, list_update=list_update, map_get=map_get,
            map_put=map_put, map_remove=map_remove, map_entries=map_entries, clear=clear,
        )
        output = _types.SimpleNamespace(side_output=side_output)
        return state, output


def bind(host=None, web=None):
    """Binds the SDK to these stand-ins (`http` to `web`, a `Web`, when
    given); returns the in-memory host."""
    from sluice_sdk import _core, aggregate as ag, broadcast, http, process, transform as tr, window as win

    host = host or Host()
    state, output = host.module()
    _core._bind(None, types)
    tr._bind(types, transform)
    ag._bind(types, aggregate)
    win._bind(types)
    process._bind(types, keyed, state, output)
    broadcast._bind(BroadcastStore().module(), keyed_broadcast_process)
    http._bind(web.module() if web else None, Err)
    return host


# --- helpers to build inputs and read outputs ---
def batch(values, keys=None, timestamps=None, headers=None, kinds=None):
    data = bytearray()
    metas, hs = [], []

    def put(b):
        if isinstance(b, str):
            b = b.encode()
        off = len(data)
        data.extend(b)
        return Span(off, len(b))

    for i, v in enumerate(values):
        k = keys[i] if keys else None
        ks = put(k) if k is not None else None
        vs = put(v)
        start = len(hs)
        for n, hv in (headers[i] if headers else []):
            hs.append(Header(put(n), put(hv)))
        kind = RowKind[kinds[i]] if kinds else RowKind.INSERT
        metas.append(RecordMeta(ks, vs, timestamps[i] if timestamps else None, start, len(hs) - start, kind))
    return Batch(bytes(data), metas, hs)


def byte_list(items):
    data, spans = b"", []
    for it in items:
        if isinstance(it, str):
            it = it.encode()
        spans.append(Span(len(data), len(it)))
        data += it
    return ByteList(data, spans)


ABSENT_SPAN = Span(0xFFFFFFFF, 0)


def records_of(b):
    """(key, value, timestamp, headers) of every record of an output batch."""
    d = b.data
    out = []
    for m in b.records:
        key = None if m.key is None else d[m.key.offset:m.key.offset + m.key.len]
        value = d[m.value.offset:m.value.offset + m.value.len]
        hs = [
            (d[h.name.offset:h.name.offset + h.name.len], d[h.value.offset:h.value.offset + h.value.len])
            for h in b.headers[m.headers_start:m.headers_start + m.headers_len]
        ]
        out.append((key, value, m.timestamp, hs))
    return out


def values_of(b):
    return [r[1].decode() for r in records_of(b)]


def byte_list(items):
    """A `ByteList` of `items` (bytes or str), in order."""
    data = bytearray()
    spans = []
    for b in items:
        if isinstance(b, str):
            b = b.encode()
        spans.append(Span(len(data), len(b)))
        data.extend(b)
    return ByteList(bytes(data), spans)


def items(byte_list):
    """The items of a `ByteList`, as str."""
    return [byte_list.data[s.offset:s.offset + s.len].decode() for s in byte_list.spans]
