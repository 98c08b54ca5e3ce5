"""Unit tests of the Python SDK and the Python examples, under plain CPython
with stand-in bindings (no Wasm, no componentize-py):

    python3 -m unittest discover -s guest-sdk/python/tests

The keyed-process cases are those of the Rust SDK's `process.rs` tests, so
that both SDKs replay a call the same way."""

import importlib.util
import sys
import unittest
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ beside the examples

HERE = Path(__file__).resolve().parent
SDK = HERE.parent
REPO = SDK.parent.parent
sys.path.insert(0, str(SDK))
sys.path.insert(0, str(HERE))

import fake_bindings as fb  # noqa: E402
from sluice_sdk import (  # noqa: E402
    Config, Enricher, Error, KeyedBroadcastProcess, KeyedProcess, PROCESSING_TIME, RowKind, Transform, float_json,
    http,
)
from sluice_sdk import aggregate as A  # noqa: E402
from sluice_sdk import process as P  # noqa: E402
from sluice_sdk import window as W  # noqa: E402
from sluice_sdk import transform as T  # noqa: E402

I64_MIN = -(1 << 63)


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / "python" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_transform(cls, config, batch):
    r = T._Runner(cls)
    err = r.open(config)
    if err is not None:
        raise AssertionError(err)
    return r.process(batch)


def order(i, amount, currency, status):
    return (f'{{"order_id":"o-{i}","customer_id":"c-9","amount":{amount},"currency":"{currency}",'
            f'"status":"{status}","event_ts":1699999996432}}')


class FloatJson(unittest.TestCase):
    def test_matches_serde_json(self):
        cases = [
            (250.0, "250.0"), (151.27200000000002, "151.27200000000002"), (0.0125, "0.0125"),
            (1e16, "1e16"), (1.5e16, "1.5e16"), (1e-5, "0.00001"), (1.234e-5, "0.00001234"),
            (1e-7, "1e-7"), (1.5e-7, "1.5e-7"), (-2.5e-6, "-2.5e-6"), (1e300, "1e300"),
            (123456789012345.6, "123456789012345.6"), (0.0, "0.0"), (-0.0, "-0.0"),
            (float("nan"), "null"), (float("inf"), "null"),
        ]
        for x, want in cases:
            self.assertEqual(float_json(x), want, repr(x))


class UsdOrders(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        fb.bind()
        cls.mod = load_example("usd_orders")

    def test_keeps_by_status_and_amount_and_converts(self):
        inputs = [
            order(1, "137.52", "EUR", "COMPLETED"),
            order(2, "100.00", "USD", "COMPLETED"),
            order(3, "500.00", "GBP", "PENDING"),
            order(4, "100.01", "GBP", "COMPLETED"),
            order(5, "250.00", "USD", "COMPLETED"),
        ]
        out = run_transform(self.mod.UsdOrders, '{"status": "COMPLETED", "min_amount": 100.0}', fb.batch(inputs))
        self.assertEqual(out.errors, [])
        self.assertEqual(fb.values_of(out.records), [
            '{"order_id":"o-1","customer_id":"c-9","amount_usd":151.27200000000002}',
            '{"order_id":"o-4","customer_id":"c-9","amount_usd":125.0125}',
            '{"order_id":"o-5","customer_id":"c-9","amount_usd":250.0}',
        ])
        self.assertEqual(out.origins, [0, 3, 4])

    def test_no_config_keeps_everything(self):
        inputs = [order(1, "0.01", "GBP", "CANCELLED"), order(2, "3.00", "EUR", "PENDING")]
        out = run_transform(self.mod.UsdOrders, "null", fb.batch(inputs))
        self.assertEqual(fb.values_of(out.records), [
            '{"order_id":"o-1","customer_id":"c-9","amount_usd":0.0125}',
            '{"order_id":"o-2","customer_id":"c-9","amount_usd":3.3000000000000003}',
        ])

    def test_bad_records_are_record_errors(self):
        inputs = [
            order(1, "200.00", "JPY", "COMPLETED"),
            "not json",
            '{"order_id":"o-3"}',
            order(4, "200.00", "JPY", "PENDING"),
        ]
        out = run_transform(self.mod.UsdOrders, '{"status": "COMPLETED"}', fb.batch(inputs))
        self.assertEqual(fb.values_of(out.records), [])
        self.assertEqual([e.index for e in out.errors], [0, 1, 2])
        self.assertEqual(out.errors[0].message, 'unknown currency "JPY" (expected USD, EUR or GBP)')
        self.assertTrue(out.errors[1].message.startswith("Expecting value at line 1 column 1"), out.errors[1])
        self.assertTrue(out.errors[2].message.startswith("missing field"), out.errors[2])

    def test_output_keeps_key_timestamp_and_headers(self):
        b = fb.batch([order(1, "1.00", "USD", "COMPLETED")], keys=["c-9"], timestamps=[1699999996432],
                     headers=[[("trace", "t-1")]])
        out = run_transform(self.mod.UsdOrders, "null", b)
        [(key, _, ts, hs)] = fb.records_of(out.records)
        self.assertEqual((key, ts, hs), (b"c-9", 1699999996432, [(b"trace", b"t-1")]))

    def test_config_typos_fail_open(self):
        r = T._Runner(self.mod.UsdOrders)
        err = r.open('{"min_ammount": 1}')
        self.assertIn("unknown field `min_ammount`", err)
        self.assertIn("invalid type", T._Runner(self.mod.UsdOrders).open('{"min_amount": "x"}'))


class TransformLoop(unittest.TestCase):
    def setUp(self):
        fb.bind()

    def test_failed_record_emits_nothing_and_custom_fields(self):
        class Op(Transform):
            def process(self, record, out):
                out.emit(b"a")
                out.emit_json({"v": record.value_str(), "k": record.key and record.key.decode()},
                              key="new", timestamp=None, headers=[("h", "x")])
                if record.value == b"bad":
                    raise ValueError("nope")
                out.forward()

        b = fb.batch(["ok", "bad", "é"], keys=["k1", None, "k3"], timestamps=[1, 2, 3])
        out = run_transform(Op, "null", b)
        recs = fb.records_of(out.records)
        self.assertEqual(recs, [
            (b"k1", b"a", 1, []),
            (b"new", b'{"v":"ok","k":"k1"}', None, [(b"h", b"x")]),
            (b"k1", b"ok", 1, []),
            (b"k3", b"a", 3, []),
            (b"new", '{"v":"é","k":"k3"}'.encode(), None, [(b"h", b"x")]),
            (b"k3", "é".encode(), 3, []),
        ])
        self.assertEqual(out.origins, [0, 0, 0, 2, 2, 2])
        self.assertEqual([(e.index, e.message) for e in out.errors], [(1, "ValueError: nope")])

    def test_a_map_of_a_changelog_keeps_each_record_kind(self):
        seen = []

        class Op(Transform):
            def process(self, record, out):
                seen.append(record.kind)
                out.emit_json({"v": record.value_str()})
                if record.value == b"d":
                    out.emit(b"as-insert", kind=RowKind.INSERT)
                    with self_test.assertRaises(TypeError):
                        out.emit(b"x", kind="-D")

        self_test = self
        b = fb.batch(["i", "b", "a", "d"], kinds=["INSERT", "UPDATE_BEFORE", "UPDATE_AFTER", "DELETE"])
        out = run_transform(Op, "null", b)
        self.assertEqual(seen, [RowKind.INSERT, RowKind.UPDATE_BEFORE, RowKind.UPDATE_AFTER, RowKind.DELETE])
        self.assertEqual([RowKind(m.kind.value).short for m in out.records.records], ["+I", "-U", "+U", "-D", "+I"])
        self.assertEqual(out.errors, [])

    def test_not_opened_fails_every_record(self):
        r = T._Runner(Transform)
        out = r.process(fb.batch(["a", "b"]))
        self.assertEqual([e.message for e in out.errors], ["operator not opened"] * 2)

    def test_record_accessors(self):
        seen = []

        class Op(Transform):
            def process(self, record, out):
                seen.append((record.key, record.value, record.timestamp, record.headers,
                             record.header("trace"), record.header(b"nope"), record.json()))

        b = fb.batch(['{"a":1}'], keys=["c-1"], timestamps=[7],
                     headers=[[("trace", "t1"), ("src", "kafka"), ("trace", "t2")]])
        run_transform(Op, "null", b)
        self.assertEqual(seen, [(b"c-1", b'{"a":1}', 7, [(b"trace", b"t1"), (b"src", b"kafka"), (b"trace", b"t2")],
                                 b"t1", None, {"a": 1})])

    def test_non_utf8_value(self):
        class Op(Transform):
            def process(self, record, out):
                record.value_str()

        out = run_transform(Op, "null", fb.Batch(b"\xff\xfe", [fb.RecordMeta(None, fb.Span(0, 2), None, 0, 0)], []))
        self.assertTrue(out.errors[0].message.startswith("record value is not UTF-8"), out.errors)


class Summer(KeyedProcess):
    """Sums values per key and emits the sum at a timer 10 ms after the first
    record; "bad" fails after writing (the Rust SDK's test operator)."""

    def open(self, config, setup):
        self.sum = setup.value_state("sum")
        self.late = setup.side_output("late")

    def process(self, record, ctx):
        if record.kind == RowKind.DELETE:
            old = self.sum.get(ctx) or 0
            self.sum.clear(ctx)
            ctx.emit_change(RowKind.DELETE, {"sum": old})
            return
        ts = record.timestamp or 0
        if ts <= ctx.current_watermark:
            ctx.emit_to(self.late, record.value)
            return
        old = self.sum.get(ctx)
        try:
            v = int(record.value_str())
        except ValueError:
            v = 1
        self.sum.set(ctx, (old or 0) + v)
        if old is None:
            ctx.register_event_time_timer(ts + 10)
        if record.value_str() == "bad":
            ctx.emit(b"never")
            raise Error("bad record")

    def on_timer(self, timer, ctx):
        ctx.emit_json({"at": timer.time, "sum": self.sum.get(ctx) or 0})
        self.sum.clear(ctx)


def keyed_input(record_keys, watermarks, end, nkeys, nvs=1):
    return fb.KeyedInput(
        keys=fb.byte_list(["a", "b"][:nkeys]),
        record_keys=record_keys,
        record_inputs=[0] * len(record_keys),
        watermarks=watermarks,
        end_watermark=end,
        processing_time=0,
        timers=[],
        values=fb.ByteList(b"", [fb.ABSENT_SPAN] * (nkeys * nvs)),
    )


def opened(cls, config="null", host=None):
    fb.bind(host)
    r = P._Runner(cls)
    err = r.open(config)
    if err is not None:
        raise AssertionError(err)
    return r


class KeyedProcessLoop(unittest.TestCase):
    def test_timers_fire_between_records_as_the_watermark_passes_them(self):
        r = opened(Summer)
        b = fb.batch(["1", "2", "4"], timestamps=[100, 105, 120])
        out = r.process(b, keyed_input([0, 1, 0], [50, 60, 112], 200, 2))
        self.assertEqual(fb.values_of(out.records),
                         ['{"at":110,"sum":1}', '{"at":115,"sum":2}', '{"at":130,"sum":4}'])
        self.assertEqual(out.origins, [P.NO_ORIGIN] * 3)
        self.assertEqual(out.records.records[0].timestamp, 110)
        self.assertEqual([(c.timer.time, c.registered) for c in out.timer_changes],
                         [(110, True), (115, True), (110, False), (130, True), (115, False), (130, False)])
        self.assertEqual(len(out.value_writes), 2)
        self.assertTrue(all(w.value is None for w in out.value_writes))
        # Every emitted record carries its key.
        self.assertEqual([k for k, *_ in fb.records_of(out.records)], [b"a", b"b", b"a"])

    def test_a_function_sees_each_record_kind_and_emits_changes(self):
        r = opened(Summer)
        b = fb.batch(["5", "x"], timestamps=[100, 101], kinds=["INSERT", "DELETE"])
        out = r.process(b, keyed_input([0, 0], [50, 50], 50, 1))
        self.assertEqual(fb.values_of(out.records), ['{"sum":5}'])
        self.assertEqual(out.records.records[0].kind, fb.RowKind.DELETE)
        self.assertEqual(out.origins, [1])

    def test_late_records_go_to_the_side_output_and_failures_are_undone(self):
        r = opened(Summer)
        late_port = r.op.late.port
        b = fb.batch(["7", "bad", "3"], timestamps=[10, 100, 100])
        out = r.process(b, keyed_input([0, 1, 1], [50, 50, 50], 60, 2))
        self.assertEqual(fb.values_of(out.records), ["7"])
        self.assertEqual(out.ports, [late_port])
        self.assertEqual([(e.index, e.message) for e in out.errors], [(1, "bad record")])
        self.assertEqual(len(out.value_writes), 1)
        w = out.value_writes[0]
        self.assertEqual((w.key, out.value_data[w.value.offset:w.value.offset + w.value.len]), (1, b"3"))
        self.assertEqual([(c.timer.time, c.registered) for c in out.timer_changes], [(110, True)])

    def test_processing_time_timers_fire_at_the_start_of_a_call_and_never_within_it(self):
        class ProcTimers(KeyedProcess):
            def process(self, record, ctx):
                ctx.register_processing_time_timer(ctx.current_processing_time + 10)

            def on_timer(self, timer, ctx):
                ctx.emit_json({"at": timer.time, "domain": timer.domain.name})

        r = opened(ProcTimers)
        inp = keyed_input([0], [0], 0, 1, nvs=0)
        inp.processing_time = 500
        inp.timers = [fb.Timer(0, 490, fb.TimeDomain.PROCESSING_TIME)]
        out = r.process(fb.batch(["x"], timestamps=[1]), inp)
        self.assertEqual(fb.values_of(out.records), ['{"at":490,"domain":"PROCESSING_TIME"}'])
        self.assertIsNone(out.records.records[0].timestamp)
        self.assertEqual([(c.timer.time, c.registered, c.timer.domain) for c in out.timer_changes],
                         [(490, False, fb.TimeDomain.PROCESSING_TIME), (510, True, fb.TimeDomain.PROCESSING_TIME)])

    def test_values_from_the_host_are_read_and_timers_from_the_host_fire(self):
        r = opened(Summer)
        inp = keyed_input([0], [250], 250, 1)
        inp.values = fb.byte_list(["40"])
        inp.timers = [fb.Timer(0, 240, fb.TimeDomain.EVENT_TIME)]
        out = r.process(fb.batch(["5"], timestamps=[300]), inp)
        self.assertEqual(fb.values_of(out.records), ['{"at":240,"sum":40}'])
        w = out.value_writes[0]
        self.assertEqual(out.value_data[w.value.offset:w.value.offset + w.value.len], b"5")

    def test_failing_timer_raises(self):
        class Bad(KeyedProcess):
            def process(self, record, ctx):
                ctx.register_event_time_timer(5)

            def on_timer(self, timer, ctx):
                raise Error("broken")

        r = opened(Bad)
        with self.assertRaisesRegex(RuntimeError, r"on_timer\(5\) failed: broken"):
            r.process(fb.batch(["x"], timestamps=[1]), keyed_input([0], [0], 10, 1, nvs=0))

    def test_timer_state_is_not_undone_by_a_failing_record(self):
        """What a timer did before a record stays when the record fails."""

        class Op(KeyedProcess):
            def open(self, config, setup):
                self.v = setup.value_state("v")

            def process(self, record, ctx):
                if record.value == b"fail":
                    self.v.set(ctx, "from-failed-record")
                    raise Error("x")
                ctx.register_event_time_timer(record.timestamp)

            def on_timer(self, timer, ctx):
                self.v.set(ctx, timer.time)
                ctx.register_event_time_timer(timer.time + 1000)

        r = opened(Op)
        out = r.process(fb.batch(["ok", "fail"], timestamps=[5, 6]), keyed_input([0, 0], [0, 10], 10, 1))
        [w] = out.value_writes
        self.assertEqual(out.value_data[w.value.offset:w.value.offset + w.value.len], b"5")
        self.assertEqual([(c.timer.time, c.registered) for c in out.timer_changes],
                         [(5, True), (5, False), (1005, True)])

    def test_list_and_map_state_encoding_matches_the_rust_sdk(self):
        class Op(KeyedProcess):
            def open(self, config, setup):
                self.l = setup.list_state("l", ttl=1.5)
                self.m = setup.map_state("m", version=2)

            def process(self, record, ctx):
                self.l.add(ctx, {"x": 1.0})
                self.l.add(ctx, "é")
                self.m.put(ctx, "k", [1, 2])
                self.m.put(ctx, 7, None)
                ctx.emit_json({"l": self.l.get(ctx), "m": self.m.entries(ctx), "has": self.m.contains(ctx, "k"),
                               "get": self.m.get(ctx, "zz", "dflt")})

        host = fb.Host()
        r = opened(Op, host=host)
        out = r.process(fb.batch(["x"], timestamps=[1]), keyed_input([0], [0], 0, 1, nvs=0))
        self.assertEqual(host.lists[(0, 0)], [b'{"x":1.0}', '"é"'.encode()])
        self.assertEqual(host.maps[(1, 0)], {b'"k"': b"[1,2]", b"7": b"null"})
        self.assertEqual(fb.values_of(out.records),
                         ['{"l":[{"x":1.0},"é"],"m":[["k",[1,2]],[7,null]],"has":true,"get":"dflt"}'])
        self.assertEqual([(d[0], d[1].name, d[2]) for d in host.declared], [("l", "LIST", 1), ("m", "MAP", 2)])

    def test_session_detector_example(self):
        mod = load_example("session_detector")
        r = opened(mod.SessionDetector, '{"gap_ms": 100}')
        k = '"c-1"'
        b = fb.batch(["r1", "r2", "r3", "r4", "r5"], timestamps=[1000, 1050, 1300, 1100, 1299])
        inp = fb.KeyedInput(
            keys=fb.byte_list([k]), record_keys=[0] * 5, record_inputs=[0] * 5,
            watermarks=[I64_MIN, 995, 1045, 1295, 1295], end_watermark=1500, processing_time=0,
            timers=[], values=fb.ByteList(b"", [fb.ABSENT_SPAN] * 3))
        out = r.process(b, inp)
        self.assertEqual(fb.values_of(out.records), [
            '{"customer_id":"c-1","session_start":1000,"session_end":1150,"count":2,"early_close":true}',
            'r4',
            '{"customer_id":"c-1","session_start":1299,"session_end":1400,"count":2}',
        ])
        ports = dict((name, i + 1) for i, name in enumerate(["late", "dropped_ooo"]))
        self.assertEqual(out.ports, [0, ports["late"], 0])
        self.assertIn("unknown field `gap`", P._Runner(mod.SessionDetector).open('{"gap": 1}'))
        self.assertEqual(P._Runner(mod.SessionDetector).open('{"gap_ms": 0}'), "gap_ms must be positive")


class CoSum(P.KeyedCoProcess):
    """Left records add to the key's sum, right records emit it."""

    def open(self, config, setup):
        self.sum = setup.value_state("sum")

    def process_left(self, record, ctx):
        self.sum.set(ctx, (self.sum.get(ctx) or 0) + int(record.value_str()))

    def process_right(self, record, ctx):
        ctx.emit_json(self.sum.get(ctx) or 0)


class KeyedCoProcessLoop(unittest.TestCase):
    def test_both_inputs_share_a_keys_state_in_arrival_order(self):
        r = opened(CoSum)
        b = fb.batch(["1", "10", "0", "2", "0", "0"])
        inp = keyed_input([0, 1, 0, 0, 0, 1], [0] * 6, 0, 2)
        inp.record_inputs = [0, 0, 1, 0, 1, 1]
        out = r.process(b, inp)
        self.assertEqual(fb.values_of(out.records), ["1", "3", "10"])
        inp = keyed_input([0], [0], 0, 2)
        inp.record_inputs = []
        with self.assertRaisesRegex(RuntimeError, "record inputs"):
            r.process(fb.batch(["1"]), inp)


class Limits(KeyedBroadcastProcess):
    def open(self, config, setup):
        self.limits = setup.broadcast_state("limits")

    def process(self, record, ctx):
        p = record.json()
        if p.get("write"):
            self.limits.put(ctx, "x", 1)
        limit = self.limits.get(p["country"])
        if limit is not None and p["amount"] > limit:
            ctx.emit_json(p["id"])

    def process_broadcast(self, record, ctx):
        r = record.json()
        if "limit" not in r:
            raise Error("no limit")
        ctx.emit_json({"set": r["country"], "at": ctx.current_watermark})
        self.limits.put(ctx, r["country"], r["limit"])


class KeyedBroadcastLoop(unittest.TestCase):
    def test_rules_from_the_broadcast_side_read_by_the_keyed_side_refused_from_it(self):
        from sluice_sdk import broadcast as B

        r = opened(Limits)
        out = B._process_broadcast(r.op, fb.batch(['{"country":"FR","limit":100}', '{"country":"DE"}']), [5, 6])
        self.assertEqual(fb.values_of(out.records), ['{"set":"FR","at":5}'])
        self.assertEqual(out.origins, [0])
        self.assertEqual([(e.index, e.message) for e in out.errors], [(1, "no limit")])
        self.assertEqual(r.op.limits.entries(), [("FR", 100)])
        b = fb.batch(['{"id":"p1","country":"FR","amount":150}', '{"id":"p2","country":"FR","amount":50}',
                      '{"id":"p3","country":"FR","amount":500,"write":true}'])
        out = r.process(b, keyed_input([0, 0, 0], [0, 0, 0], 0, 1, nvs=0))
        self.assertEqual(fb.values_of(out.records), ['"p1"'])
        self.assertIn("only be changed in process_broadcast", out.errors[0].message)


class Configs(unittest.TestCase):
    def test_parse(self):
        from dataclasses import dataclass, field
        from typing import List, Optional

        @dataclass
        class S:
            a: int = 1
            b: Optional[float] = None
            c: List[str] = field(default_factory=list)

        self.assertEqual(Config("null").parse(S), S())
        self.assertEqual(Config("").parse(S), S())
        self.assertEqual(Config('{"b": 2, "c": ["x"]}').parse(S), S(1, 2.0, ["x"]))
        with self.assertRaisesRegex(Error, "unknown field `d`, expected one of `a`, `b`, `c`"):
            Config('{"d": 1}').parse(S)
        with self.assertRaisesRegex(Error, "field `a`: invalid type: floating point `1.5`, expected int"):
            Config('{"a": 1.5}').parse(S)
        with self.assertRaisesRegex(Error, "invalid operator config"):
            Config("{").parse(S)


def tier_service(mode="ok"):
    """The stand-in of examples/enricher/tier_service.py."""
    def handle(req):
        prefix = "http://tiers/customers/"
        if mode == "down":
            return "cannot connect to tiers:80: Connection refused (os error 111)"
        if mode == "error":
            return fb.Response(500, [], b'{"error":"internal"}')
        if mode == "garbage":
            return fb.Response(200, [("Content-Type", "text/html")], b"<html>tier service</html>")
        if mode == "no-tier":
            return fb.Response(200, [], b'{"customer_id":"c-1"}')
        customer = req.url[len(prefix):]
        k = int(customer.split("-", 1)[1])
        t = "gold" if k % 10 == 0 else "silver" if k % 3 == 0 else "bronze"
        return fb.Response(200, [("Content-Type", "application/json")],
                           ('{"customer_id": "%s", "tier": "%s"}' % (customer, t)).encode())
    return fb.Web(handle)


def run_enrich(cls, config, batch):
    r = T._Runner(cls, fb.EnricherOutput)
    err = r.open(config)
    if err is not None:
        raise AssertionError(err)
    return r.process(batch)


class Http(unittest.TestCase):
    def tearDown(self):
        fb.bind()

    def test_fetch_sends_the_request_and_reads_the_response(self):
        web = fb.Web(lambda req: fb.Response(201, [("X-Id", "7"), ("x-id", "8")], b'{"a": [1, 2.5]}'))
        fb.bind(web=web)
        r = http.fetch("POST", "http://svc/x", {"Content-Type": "application/json"}, '{"q":"é"}')
        self.assertEqual(web.requests, [fb.Request("POST", "http://svc/x", [("Content-Type", "application/json")],
                                                   '{"q":"é"}'.encode())])
        self.assertEqual(r.status, 201)
        self.assertIs(r.ok(), r)
        self.assertEqual(r.json(), {"a": [1, 2.5]})
        self.assertEqual(r.text(), '{"a": [1, 2.5]}')
        self.assertEqual(r.header("X-ID"), "7")
        self.assertIsNone(r.header("y"))
        http.get("http://svc/y")
        self.assertEqual(web.requests[-1], fb.Request("GET", "http://svc/y", [], b""))

    def test_errors_say_what_and_quote_the_body_as_the_rust_sdk(self):
        fb.bind(web=fb.Web(lambda req: "cannot connect to svc:80: Connection refused"))
        with self.assertRaises(Error) as e:
            http.get("http://svc/")
        self.assertEqual(str(e.exception), "cannot connect to svc:80: Connection refused")

        r = http.Response(500, [], b'{"error":"internal"}')
        with self.assertRaises(Error) as e:
            r.ok()
        self.assertEqual(str(e.exception), r'HTTP status 500: "{\"error\":\"internal\"}"')
        r = http.Response(200, [], b"<html>tier service</html>\n\t\x01" + b"x" * 100)
        with self.assertRaises(Error) as e:
            r.json()
        self.assertEqual(str(e.exception),
                         "the response body is not the JSON expected (Expecting value at line 1 column 1): "
                         '"<html>tier service</html>\\n\\t\\u{1}' + "x" * 32 + '"')
        # A cut UTF-8 sequence at byte 60 and invalid UTF-8 are shown lossily.
        r = http.Response(404, [], b"a" * 59 + "é".encode())
        with self.assertRaisesRegex(Error, '^HTTP status 404: "a{59}\ufffd"$'):
            r.ok()
        r = http.Response(200, [], b"\xff")
        with self.assertRaisesRegex(Error, r"^the response body is not UTF-8: "):
            r.text()
        with self.assertRaisesRegex(Error, r'^the response body is not the JSON expected \(not UTF-8: .*\): "\ufffd"$'):
            r.json()

    def test_json_into_a_dataclass(self):
        from dataclasses import dataclass
        from typing import Optional

        @dataclass
        class Customer:
            tier: str
            since: Optional[int] = None

        r = http.Response(200, [], b'{"customer_id":"c-1","tier":"gold"}')
        self.assertEqual(r.json(Customer), Customer("gold"))
        r = http.Response(200, [], b'{"customer_id":"c-1"}')
        with self.assertRaises(Error) as e:
            r.json(Customer)
        self.assertEqual(str(e.exception),
                         'the response body is not the JSON expected (missing field `tier`): "{\\"customer_id\\":\\"c-1\\"}"')
        with self.assertRaisesRegex(Error, r"\(field `tier`: invalid type: integer `1`, expected str\)"):
            http.Response(200, [], b'{"tier":1}').json(Customer)
        with self.assertRaisesRegex(Error, r"\(invalid type: sequence, expected struct Customer\)"):
            http.Response(200, [], b"[]").json(Customer)
        self.assertIn("(no string `tier`)", str(r.not_expected("no string `tier`")))

    def test_http_outside_an_enricher(self):
        fb.bind()
        with self.assertRaisesRegex(Error, "only available to enrichers"):
            http.get("http://svc/")


class EnrichLoop(unittest.TestCase):
    def tearDown(self):
        fb.bind()

    def test_an_enricher_is_a_transform_with_the_enrich_output(self):
        fb.bind(web=fb.Web(lambda req: fb.Response(200, [], req.url.rsplit("/", 1)[1].encode())))

        class Upper(Enricher):
            def process(self, record, out):
                reply = http.get("http://svc/" + record.value_str()).ok().text()
                if reply == "bad":
                    out.emit("partial")
                    raise Error("bad record")
                out.emit(reply.upper(), key="k")

        out = run_enrich(Upper, "null", fb.batch(["abc"], timestamps=[5]))
        self.assertIsInstance(out, fb.EnricherOutput)
        self.assertEqual(fb.records_of(out.records), [(b"k", b"ABC", 5, [])])
        self.assertEqual((out.origins, out.errors), ([0], []))
        out = run_enrich(Upper, "null", fb.batch(["bad"]))
        self.assertEqual((fb.values_of(out.records), out.origins), ([], []))
        self.assertEqual(out.errors, [fb.RecordError(0, "bad record")])
        r = T._Runner(Upper, fb.EnricherOutput)
        out = r.process(fb.batch(["abc"]))
        self.assertIsInstance(out, fb.EnricherOutput)
        self.assertEqual(out.errors, [fb.RecordError(0, "operator not opened")])

    def test_customer_tier_example(self):
        mod = load_example("customer_tier")
        web = tier_service()
        fb.bind(web=web)
        config = '{"url": "http://tiers/customers/"}'
        inputs = [
            '{"order_id":"o-1","customer_id":"c-1","amount":137.52,"currency":"USD","status":"PENDING","event_ts":1699999996432}',
            '{"order_id":"o-2","customer_id":"c-12","amount":14.90,"currency":"USD","status":"COMPLETED","event_ts":1699999999206}',
            '{"order_id":"o-3","customer_id":"c-30","amount":1e-7,"nested":{"b":1,"a":[2.0,1e16]}}',
        ]
        want = [
            '{"amount":137.52,"currency":"USD","customer_id":"c-1","event_ts":1699999996432,"order_id":"o-1","status":"PENDING","tier":"bronze"}',
            '{"amount":14.9,"currency":"USD","customer_id":"c-12","event_ts":1699999999206,"order_id":"o-2","status":"COMPLETED","tier":"silver"}',
            '{"amount":1e-7,"customer_id":"c-30","nested":{"a":[2.0,1e16],"b":1},"order_id":"o-3","tier":"gold"}',
        ]
        for value, expected in zip(inputs, want):
            out = run_enrich(mod.CustomerTier, config, fb.batch([value], keys=["c"], timestamps=[7], headers=[[("h", "v")]]))
            self.assertEqual(out.errors, [])
            self.assertEqual(fb.records_of(out.records), [(b"c", expected.encode(), 7, [(b"h", b"v")])])
            self.assertEqual(out.origins, [0])
        self.assertEqual([r.url for r in web.requests],
                         ["http://tiers/customers/c-1", "http://tiers/customers/c-12", "http://tiers/customers/c-30"])

        def error(value, mode="ok"):
            fb.bind(web=tier_service(mode))
            out = run_enrich(mod.CustomerTier, config, fb.batch([value]))
            self.assertEqual((out.records.records, out.origins), ([], []))
            return out.errors[0].message

        self.assertEqual(error(inputs[0], "error"), 'HTTP status 500: "{\\"error\\":\\"internal\\"}"')
        self.assertEqual(error(inputs[0], "garbage"),
                         "the response body is not the JSON expected (Expecting value at line 1 column 1): "
                         '"<html>tier service</html>"')
        self.assertEqual(error(inputs[0], "no-tier"),
                         'the response body is not the JSON expected (missing field `tier`): "{\\"customer_id\\":\\"c-1\\"}"')
        self.assertEqual(error(inputs[0], "down"), "cannot connect to tiers:80: Connection refused (os error 111)")
        self.assertEqual(error('{"order_id":"o-1"}'), "the order has no string customer_id")
        self.assertEqual(error('{"customer_id":7}'), "the order has no string customer_id")
        self.assertEqual(error("[1]"), "invalid type: sequence, expected a map")
        self.assertEqual(error("{"), "Expecting property name enclosed in double quotes at line 1 column 2")

        r = T._Runner(mod.CustomerTier, fb.EnricherOutput)
        self.assertEqual(r.open("null"), "config needs `url`, the service's address (customer ids are appended)")
        self.assertIn("unknown field `uri`, expected `url`", r.open('{"uri": "http://x/"}'))
        self.assertIn("field `url`: invalid type: integer `1`, expected str", r.open('{"url": 1}'))


class BuildWorlds(unittest.TestCase):
    """`guest-sdk/python/build` picks the world from the class."""

    @classmethod
    def setUpClass(cls):
        from importlib.machinery import SourceFileLoader
        loader = SourceFileLoader("sluice_build", str(SDK / "build"))
        spec = importlib.util.spec_from_loader("sluice_build", loader)
        cls.build = importlib.util.module_from_spec(spec)
        loader.exec_module(cls.build)

    def find(self, source, wanted=None):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "op.py"
            path.write_text(source)
            return self.build.find_operator(path, wanted)

    def test_kinds(self):
        self.assertEqual(self.find("from sluice_sdk import Enricher\nclass A(Enricher): pass\n"),
                         ("A", "enricher", False))
        self.assertEqual(self.find("import sluice_sdk\nclass A(sluice_sdk.Enricher): pass\n"),
                         ("A", "enricher", False))
        self.assertEqual(self.find("from sluice_sdk import Enricher as E\nclass B(E): pass\nclass A(B): pass\n"),
                         ("A", "enricher", False))
        self.assertEqual(self.find("from sluice_sdk import Transform\nclass A(Transform): pass\n"),
                         ("A", "transform", False))
        self.assertEqual(self.find("from sluice_sdk import KeyedProcess\nclass A(KeyedProcess):\n"
                                   "    def migrate(self, s, v, i): return i\n"),
                         ("A", "keyed-process", True))
        for name in ("usd_orders", "session_detector", "customer_tier"):
            kind = self.build.find_operator(REPO / "examples" / "python" / f"{name}.py", None)[1]
            self.assertEqual(self.build.WORLDS[kind], {"usd_orders": "transform-operator",
                                                       "session_detector": "keyed-process-operator",
                                                       "customer_tier": "enricher-operator"}[name])


if __name__ == "__main__":
    unittest.main()


class CountSum(unittest.TestCase):
    """The Python count-sum aggregate, as the Rust module's tests run it."""

    @classmethod
    def setUpClass(cls):
        fb.bind()
        cls.mod = load_example("count_sum")

    def runner(self, config="null"):
        r = A._Runner(self.mod.CountSum)
        self.assertIsNone(r.open(config))
        return r

    def test_counts_and_sums_cents_and_reports_bad_records(self):
        r = self.runner()
        empty = r.create_accumulator().decode()
        self.assertEqual(empty, '{"count":0,"sum_cents":0}')
        values = ['{"amount":137.52,"currency":"USD"}', '{"amount":"137.52"}', '{"amount":0.29}',
                  '{"other":1}', '{"amount":10}', '{"amount":-0.125}']
        out = r.add(fb.byte_list([empty]), fb.batch(values), [0] * len(values))
        self.assertEqual([(e.index, e.message) for e in out.errors],
                         [(1, 'field "amount" is not a number'), (3, 'field "amount" is missing')])
        # 13752 + 29 + 1000 - 13 (-12.5 rounds away from zero)
        self.assertEqual(fb.items(out.accumulators), ['{"count":4,"sum_cents":14768}'])
        result = r.get_result(out.accumulators)
        self.assertEqual(fb.items(result), ['{"count":4,"sum_cents":14768}'])

    def test_a_failed_add_leaves_its_accumulator_as_before_that_record(self):
        class Fragile(self.mod.CountSum):
            def add(self, acc, record):
                acc["count"] += 1  # changed before failing
                if record.json().get("fail"):
                    raise Error("no")
                acc["sum_cents"] += 1
                return acc

        r = A._Runner(Fragile)
        self.assertIsNone(r.open("null"))
        accs = fb.byte_list(['{"count":5,"sum_cents":5}', '{"count":1,"sum_cents":1}', '{"count":7,"sum_cents":7}'])
        values = ['{}', '{"fail":true}', '{}', '{"fail":true}']
        out = r.add(accs, fb.batch(values), [0, 0, 0, 1])
        self.assertEqual([e.index for e in out.errors], [1, 3])
        self.assertEqual(fb.items(out.accumulators),
                         ['{"count":7,"sum_cents":7}', '{"count":1,"sum_cents":1}', '{"count":7,"sum_cents":7}'])

    def test_merge_groups_and_config(self):
        r = self.runner('{"count_as": "n", "sum_as": "cents"}')
        accs = fb.byte_list(['{"count":1,"sum_cents":2}', '{"count":3,"sum_cents":4}', '{"count":5,"sum_cents":6}'])
        merged = r.merge(accs, [fb.Span(0, 2), fb.Span(2, 1)])
        self.assertEqual(fb.items(merged), ['{"count":4,"sum_cents":6}', '{"count":5,"sum_cents":6}'])
        self.assertEqual(fb.items(r.get_result(merged)), ['{"n":4,"cents":6}', '{"n":5,"cents":6}'])
        bad = A._Runner(self.mod.CountSum)
        self.assertIn("name them apart", bad.open('{"count_as": "x", "sum_as": "x"}'))
        self.assertIn("unknown", bad.open('{"feild": "amount"}').lower())

    def test_a_failing_result_is_the_calls_error(self):
        class Broken(self.mod.CountSum):
            def result(self, acc):
                raise Error("cannot")

        r = A._Runner(Broken)
        self.assertIsNone(r.open("null"))
        with self.assertRaises(A._Failed) as e:
            r.get_result(fb.byte_list(['{"count":1,"sum_cents":1}']))
        self.assertEqual(str(e.exception), "result: cannot")


class Percentile(unittest.TestCase):
    """The Python percentile window function, over windows as the host
    sends them (records of several windows in one batch)."""

    @classmethod
    def setUpClass(cls):
        fb.bind()
        cls.mod = load_example("percentile")

    def test_nearest_rank_per_window_in_the_rust_modules_field_order(self):
        from types import SimpleNamespace as NS
        r = W._Runner(self.mod.Percentile)
        self.assertIsNone(r.open('{"p": 50}'))
        values = ['{"latency_ms":30}', '{"latency_ms":10.5}', '{"other":1}', '{"latency_ms":20}', '{"x":1}']
        keys = b'"api""db"'
        windows = [NS(key=fb.Span(0, 5), start=0, end=60000, records=fb.Span(0, 4)),
                   NS(key=fb.Span(5, 4), start=0, end=60000, records=fb.Span(4, 1))]
        out = r.process(windows, keys, fb.batch(values))
        self.assertEqual(fb.items(out), ['{"count":3,"p50_latency_ms":20.0}', '{"count":0,"p50_latency_ms":null}'])

    def test_a_failing_window_names_itself_and_bad_configs_are_refused(self):
        from types import SimpleNamespace as NS
        r = W._Runner(self.mod.Percentile)
        self.assertIsNone(r.open("null"))
        windows = [NS(key=fb.Span(0, 5), start=0, end=60000, records=fb.Span(0, 1))]
        with self.assertRaises(W._Failed) as e:
            r.process(windows, b'"api"', fb.batch(['{"latency_ms":"slow"}']))
        self.assertEqual(str(e.exception),
                         'window [0, 60000) of key "api": field `latency_ms`: invalid type: string "slow", expected f64')
        self.assertIn("p must be in (0, 100], not 150", r.open('{"p": 150}'))
        self.assertIn("unknown field `feild`", r.open('{"feild": "x"}'))


class SqlFunctions(unittest.TestCase):
    """The SQL functions of examples/python/usd_udf.py through the SDK's
    column loops: the Rust example's values, rounding and errors."""

    def setUp(self):
        from sluice_sdk import sql as S
        S._bind(fb.types, fb.sql_function)
        self.S = S
        self.runner = S._Runner(load_example("usd_udf").UsdFunctions)

    def column(self, ty, values):
        out = self.S._Out(self.S._parse_type(ty))
        for v in values:
            out.push(v)
        return out.column()

    def test_signatures_are_the_rust_modules(self):
        sigs = self.runner.functions()
        self.assertEqual([s.name for s in sigs], ["usd", "per_unit", "weighted_avg"])
        self.assertEqual(sigs[0].params, ["DECIMAL(10, 2)", "STRING"])
        self.assertEqual(sigs[2].kind, fb.FunctionKind.AGGREGATE)

    def test_usd_rounds_half_up_and_fails_a_row_alone(self):
        from decimal import Decimal
        amounts = self.column("DECIMAL(10, 2)", [Decimal("9.99"), None, Decimal("1.00"), Decimal("0.05")])
        currencies = self.column("STRING", ["EUR", "EUR", "JPY", "EUR"])
        out = self.runner.call(0, [amounts, currencies], 4)
        got = [self.S._read(out.values, ("decimal", 2), i) for i in range(4)]
        # 10.989 -> 10.99; 0.055 -> 0.06 (half up).
        self.assertEqual(got, [Decimal("10.99"), None, None, Decimal("0.06")])
        self.assertEqual([e.index for e in out.errors], [2])
        self.assertIn("no rate for currency 'JPY'", out.errors[0].message)

    def test_weighted_avg_accumulates_merges_and_refuses_a_negative_quantity(self):
        empty = self.runner.create_accumulator(2)
        accs = fb.ByteList(data=empty + empty, spans=[fb.Span(0, len(empty)), fb.Span(len(empty), len(empty))])
        prices = self.column("DOUBLE", [2.0, 4.0, 1.0, 8.0])
        qtys = self.column("INT", [1, 3, -5, 2])
        out = self.runner.accumulate(2, accs, [prices, qtys], [0, 0, 1, 1])
        self.assertEqual([e.index for e in out.errors], [2])
        merged = self.runner.merge(2, out.accumulators, [fb.Span(0, 2)])
        value = self.runner.get_value(2, merged)
        self.assertEqual(self.S._read(value, ("double", 0), 0), (2.0 + 12.0 + 16.0) / 6)
