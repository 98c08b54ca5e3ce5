"""Write sluice stream operators in Python.

A sluice operator is a WebAssembly component that the host runs in a
sandbox. With this package you write it as a Python class, subclassing
`Transform` (map, filter, flat-map), `KeyedProcess` (keyed state, timers,
side outputs), `Enricher` (a transform that asks an outside service, with
`sluice_sdk.http`), `Aggregate` (a window's incremental aggregate) or
`WindowFunction` (all of a window's records at once), in one module, and build that module into a component with

    guest-sdk/python/build my_operator.py my_operator.wasm

(componentize-py underneath; see `guest-sdk/python/README.md`). The WIT contract
(`wit/operator.wit`), the batch layout and the Wasm ABI stay out of sight; the
semantics are those of the Rust SDK (`guest-sdk/rust/`), including the state
encoding (JSON), so either can restore the other's savepoints.

    from dataclasses import dataclass
    from sluice_sdk import Transform

    @dataclass
    class Settings:
        min_amount: float = 0.0

    class BigOrders(Transform):
        def open(self, config):
            self.min_amount = config.parse(Settings).min_amount

        def process(self, record, out):
            order = record.json()
            if order["amount"] > self.min_amount:
                out.emit_json({"id": order["order_id"], "amount": order["amount"]})

An exception from `process` turns that one record into a dead letter with the
exception's message (`Error("...")` for a message of your own); from `open`
it stops the job.
"""

from ._core import (
    Config,
    Error,
    Record,
    RowKind,
    dumps,
    float_json,
    json_kind,
    loads,
    log_debug,
    log_error,
    log_info,
    log_trace,
    log_warn,
)
from . import http
from .aggregate import Aggregate
from .broadcast import BroadcastContext, BroadcastState, KeyedBroadcastProcess
from .enricher import Enricher
from .process import (
    Context,
    Domain,
    KeyedCoProcess,
    KeyedProcess,
    ListState,
    MapState,
    Setup,
    SideOutput,
    Timer,
    ValueState,
)
from .sql import AggregateFunction, ScalarFunction, SqlFunctions
from .transform import Output, Transform
from .window import Window, WindowFunction

EVENT_TIME = Domain.EVENT_TIME
PROCESSING_TIME = Domain.PROCESSING_TIME

__all__ = [
    "Aggregate",
    "AggregateFunction",
    "BroadcastContext",
    "BroadcastState",
    "Config",
    "Context",
    "Domain",
    "EVENT_TIME",
    "Enricher",
    "Error",
    "KeyedBroadcastProcess",
    "KeyedCoProcess",
    "KeyedProcess",
    "ListState",
    "MapState",
    "Output",
    "PROCESSING_TIME",
    "Record",
    "RowKind",
    "Setup",
    "ScalarFunction",
    "SideOutput",
    "SqlFunctions",
    "Timer",
    "Transform",
    "ValueState",
    "Window",
    "WindowFunction",
    "dumps",
    "float_json",
    "http",
    "json_kind",
    "loads",
    "log_debug",
    "log_error",
    "log_info",
    "log_trace",
    "log_warn",
]
