"""The export glue between the generated bindings (`wit_world`) and the SDK.

`guest-sdk/python/build` writes an app module that calls one of these with the
operator class; they bind the SDK to the world's imports and return the
classes componentize-py looks for in the app module (`Transform`,
`KeyedProcess`, `KeyedCoProcess`, `KeyedBroadcastProcess`, `Migration`, `Enrich`, `Aggregate`, `WindowFunction`,
`SqlFunction`). This runs at build time (componentize-py
snapshots the initialized interpreter), so an error here fails the build.
"""

from . import _core, aggregate, broadcast, http, process, sql, transform, window


def _check(cls, base):
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{cls!r} is not a subclass of sluice_sdk.{base.__name__}")


def transform_exports(cls):
    """`Transform`, the export of the `transform-operator` world, running
    the `sluice_sdk.Transform` subclass `cls`."""
    _check(cls, transform.Transform)
    from componentize_py_types import Err
    from wit_world import exports
    from wit_world.exports import transform as wit_transform
    from wit_world.imports import logging, types

    _core._bind(logging, types)
    transform._bind(types, wit_transform)
    runner = transform._Runner(cls)

    return _batch_export(exports.Transform, runner, Err)


def enricher_exports(cls):
    """`Enricher`, the export of the `enricher-operator` world, running the
    `sluice_sdk.Enricher` subclass `cls` (any `Transform` subclass runs, as
    with the Rust SDK's `export_enricher!`)."""
    _check(cls, transform.Transform)
    from componentize_py_types import Err
    from wit_world import exports
    from wit_world.exports import enricher as wit_enricher
    from wit_world.imports import http as wit_http
    from wit_world.imports import logging, types

    _core._bind(logging, types)
    transform._bind(types)
    http._bind(wit_http, Err)
    runner = transform._Runner(cls, wit_enricher.EnricherOutput)

    return _batch_export(exports.Enricher, runner, Err)


def aggregate_exports(cls):
    """`Aggregate`, the export of the `aggregate-operator` world, running the
    `sluice_sdk.Aggregate` subclass `cls`."""
    _check(cls, aggregate.Aggregate)
    from componentize_py_types import Err
    from wit_world import exports
    from wit_world.exports import aggregate as wit_aggregate
    from wit_world.imports import logging, types

    _core._bind(logging, types)
    aggregate._bind(types, wit_aggregate)
    runner = aggregate._Runner(cls)

    class Export(exports.Aggregate):
        def open(self, config):
            message = runner.open(config)
            if message is not None:
                raise Err(message)

        def create_accumulator(self):
            return runner.create_accumulator()

        def add(self, accumulators, input, targets):
            return runner.add(accumulators, input, targets)

        def merge(self, accumulators, groups):
            try:
                return runner.merge(accumulators, groups)
            except aggregate._Failed as e:
                raise Err(str(e))

        def get_result(self, accumulators):
            try:
                return runner.get_result(accumulators)
            except aggregate._Failed as e:
                raise Err(str(e))

    return Export


def sql_function_exports(cls):
    """`SqlFunction`, the export of the `sql-function-module` world, serving
    the functions of the `sluice_sdk.SqlFunctions` subclass `cls`."""
    _check(cls, sql.SqlFunctions)
    from componentize_py_types import Err
    from wit_world import exports
    from wit_world.exports import sql_function as wit_sql
    from wit_world.imports import logging, types

    _core._bind(logging, types)
    sql._bind(types, wit_sql)
    runner = sql._Runner(cls)

    class Export(exports.SqlFunction):
        def functions(self):
            return runner.functions()

        def call(self, function, args, rows):
            return runner.call(function, args, rows)

        def create_accumulator(self, function):
            return runner.create_accumulator(function)

        def accumulate(self, function, accumulators, args, targets):
            return runner.accumulate(function, accumulators, args, targets)

        def merge(self, function, accumulators, groups):
            try:
                return runner.merge(function, accumulators, groups)
            except Exception as e:
                raise Err(f"merge: {_core.error_message(e)}") from None

        def get_value(self, function, accumulators):
            try:
                return runner.get_value(function, accumulators)
            except Exception as e:
                raise Err(f"get-value: {_core.error_message(e)}") from None

    return Export


def window_function_exports(cls):
    """`WindowFunction`, the export of the `window-function-operator` world,
    running the `sluice_sdk.WindowFunction` subclass `cls`."""
    _check(cls, window.WindowFunction)
    from componentize_py_types import Err
    from wit_world import exports
    from wit_world.imports import logging, types

    _core._bind(logging, types)
    window._bind(types)
    runner = window._Runner(cls)

    class Export(exports.WindowFunction):
        def open(self, config):
            message = runner.open(config)
            if message is not None:
                raise Err(message)

        def process(self, windows, keys, input):
            try:
                return runner.process(windows, keys, input)
            except window._Failed as e:
                raise Err(str(e))

    return Export


def _batch_export(base, runner, Err):
    """The export class of a world whose `open` and `process(batch)` a
    `transform._Runner` serves (transform, enricher)."""

    class Export(base):
        def open(self, config):
            message = runner.open(config)
            if message is not None:
                raise Err(message)

        def process(self, input):
            return runner.process(input)

    return Export


def keyed_process_exports(cls, migrating=False):
    """`KeyedProcess` (and `Migration` when `migrating`), the exports of the
    `keyed-process-operator` (`keyed-process-migrating-operator`) world,
    running the `sluice_sdk.KeyedProcess` subclass `cls`."""
    from wit_world import exports

    runner, KeyedProcess, Err = _keyed_export(cls, process.KeyedProcess, exports.KeyedProcess)
    if not migrating:
        return KeyedProcess, None
    if not callable(getattr(cls, "migrate", None)):
        raise TypeError(f"{cls.__name__} has no migrate(self, state, from_version, item) method")

    class Migration(exports.Migration):
        def migrate(self, state, from_version, items):
            try:
                return runner.migrate(state, from_version, items)
            except Exception as e:
                raise Err(_core.error_message(e)) from None

    return KeyedProcess, Migration


def keyed_co_process_exports(cls):
    """`KeyedCoProcess`, the export of the `keyed-co-process-operator`
    world, running the `sluice_sdk.KeyedCoProcess` subclass `cls`."""
    from wit_world import exports

    return _keyed_export(cls, process.KeyedCoProcess, exports.KeyedCoProcess)[1]


def keyed_broadcast_process_exports(cls):
    """`KeyedBroadcastProcess`, the export of the
    `keyed-broadcast-process-operator` world, running the
    `sluice_sdk.KeyedBroadcastProcess` subclass `cls`."""
    from wit_world import exports
    from wit_world.exports import keyed_broadcast_process
    from wit_world.imports import broadcast_state

    runner, Export, _ = _keyed_export(cls, broadcast.KeyedBroadcastProcess,
                                      exports.KeyedBroadcastProcess)
    broadcast._bind(broadcast_state, keyed_broadcast_process)

    class KeyedBroadcastProcess(Export):
        def process_broadcast(self, input, watermarks):
            if runner.op is None:
                raise RuntimeError("operator not opened")
            return broadcast._process_broadcast(runner.op, input, watermarks)

    return KeyedBroadcastProcess


def _keyed_export(cls, sdk_base, export_base):
    """(runner, export class, Err) of a keyed world whose export has `open`
    and `process(batch, keyed-input)`, running `cls`."""
    _check(cls, sdk_base)
    from componentize_py_types import Err
    from wit_world.imports import keyed, logging, output, state, types

    _core._bind(logging, types)
    process._bind(types, keyed, state, output)
    runner = process._Runner(cls)

    class Export(export_base):
        def open(self, config):
            message = runner.open(config)
            if message is not None:
                raise Err(message)

        def process(self, input, context):
            return runner.process(input, context)

    return runner, Export, Err
