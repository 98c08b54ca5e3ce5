// Unit tests of the JS SDK against a stand-in host (test/host.mjs); they
// mirror the Rust SDK's tests (guest-sdk/rust/src/process.rs, transform.rs) and
// the examples'. Run: `node --test guest-sdk/js/test/` (after `npm ci --prefix guest-sdk/js`).

import assert from "node:assert/strict";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { readFile } from "node:fs/promises";
import { batch, byteList, host, load, records, valueWrites } from "./host.mjs";

const example = async (name) =>
  load(await readFile(fileURLToPath(new URL(`../../../examples/js/${name}`, import.meta.url)), "utf8"));

const ABSENT = { offset: 0xffffffff, len: 0 };

function keyedInput({ keys, recordKeys, recordInputs, watermarks, end, processingTime = 0, timers = [], values }) {
  return {
    keys: byteList(keys),
    recordKeys: new Uint32Array(recordKeys),
    recordInputs: new Uint8Array(recordInputs ?? recordKeys.map(() => 0)),
    watermarks: new BigInt64Array(watermarks.map(BigInt)),
    endWatermark: BigInt(end),
    processingTime: BigInt(processingTime),
    timers: timers.map(([key, time, domain = "event-time"]) => ({ key, time: BigInt(time), domain })),
    values: values ?? { data: new Uint8Array(0), spans: keys.map(() => ABSENT) },
  };
}

const MIN = -(2n ** 63n);

test("transform: emits, filters, rolls back a failed record, keeps key, timestamp and headers", async () => {
  const { transform } = await load(`
    import { defineTransform } from "sluice";
    export const transform = defineTransform({
      process(record, out) {
        switch (record.text()) {
          case "drop": return;
          case "twice": out.forward(); out.forward(); return;
          case "emit-then-fail": out.emit("partial"); throw new Error("bad record");
          case "json": out.emitJson({ a: [1, "é"] }); return;
          case "record": out.emitRecord({ key: "k", value: new Uint8Array([120]), timestamp: 7, headers: [["h", "v"]] }); return;
          default: out.emit(record.text().toUpperCase());
        }
      },
    });`);
  assert.deepEqual(transform.open("null"), { tag: "ok", val: undefined });
  const out = transform.process(
    batch([
      { value: "a", key: "k1", timestamp: 1699999996432, headers: [["trace", "t1"]] },
      "drop",
      "twice",
      "emit-then-fail",
      "json",
      "record",
      "ünï",
    ]),
  );
  assert.deepEqual(
    records(out).map((r) => r.value),
    ["A", "twice", "twice", '{"a":[1,"é"]}', "x", "ÜNÏ"],
  );
  assert.deepEqual(Array.from(out.origins), [0, 2, 2, 4, 5, 6]);
  assert.deepEqual(out.errors, [{ index: 3, message: "bad record" }]);
  const first = records(out)[0];
  assert.deepEqual(first, { key: "k1", value: "A", timestamp: 1699999996432, headers: [["trace", "t1"]] });
  assert.deepEqual(records(out)[4], { key: "k", value: "x", timestamp: 7, headers: [["h", "v"]] });
});

test("transform: a map of a changelog keeps each record's kind; emitRecord sets one", async () => {
  const { transform } = await load(`
    import { defineTransform, RowKind } from "sluice";
    export const transform = defineTransform({
      process(record, out) {
        out.emitJson({ v: record.text(), kind: record.kind() });
        if (record.kind() === RowKind.DELETE) {
          out.emitRecord({ value: "as-insert" });
          out.emitRecord({ value: "retract", kind: RowKind.UPDATE_BEFORE });
          out.emitRecord({ value: "bad", kind: "delete" });
        }
      },
    });`);
  assert.equal(transform.open("null").tag, "ok");
  const out = transform.process(
    batch([
      { value: "i" },
      { value: "b", kind: "update-before" },
      { value: "a", kind: "update-after" },
      { value: "d", kind: "delete" },
    ]),
  );
  assert.deepEqual(
    records(out).map((r) => r.value),
    ['{"v":"i","kind":"+I"}', '{"v":"b","kind":"-U"}', '{"v":"a","kind":"+U"}'],
  );
  assert.deepEqual(
    out.records.records.map((m) => m.kind),
    ["insert", "update-before", "update-after"],
  );
  // A kind that is not RowKind's is that record's error.
  assert.equal(out.errors.length, 1);
  assert.equal(out.errors[0].index, 3);
  assert.match(out.errors[0].message, /a record kind is one of RowKind's.*"delete"/);
});

test("transform: a value that is not UTF-8 is that record's error", async () => {
  const { transform } = await load(`
    import { defineTransform } from "sluice";
    export const transform = defineTransform({ process(record, out) { out.emit(record.text()); } });`);
  transform.open("null");
  const b = batch(["ok", "xx", "fine"]);
  b.data[b.records[1].value.offset] = 0xff;
  const out = transform.process(b);
  assert.deepEqual(records(out).map((r) => r.value), ["ok", "fine"]);
  assert.equal(out.errors.length, 1);
  assert.equal(out.errors[0].index, 1);
  assert.match(out.errors[0].message, /not UTF-8/);
});

test("transform: emitting bytes that are not UTF-8 keeps them exact", async () => {
  const { transform } = await load(`
    import { defineTransform } from "sluice";
    export const transform = defineTransform({ process(record, out) {
      out.emit("é-" + record.text());
      out.emit(new Uint8Array([0xff, 0x00, 0x41]));
      out.emit("z");
    } });`);
  transform.open("null");
  const out = transform.process(batch(["a", "b"]));
  const b = out.records;
  const bytes = b.records.map((m) => Array.from(b.data.subarray(m.value.offset, m.value.offset + m.value.len)));
  assert.deepEqual(bytes, [
    [0xc3, 0xa9, 0x2d, 0x61],
    [0xff, 0x00, 0x41],
    [0x7a],
    [0xc3, 0xa9, 0x2d, 0x62],
    [0xff, 0x00, 0x41],
    [0x7a],
  ]);
});

test("transform: open errors and records before a successful open", async () => {
  const { transform } = await load(`
    import { defineTransform } from "sluice";
    export const transform = defineTransform({
      open(config) { this.s = config.parse({ limit: 1, name: null }); },
      process(record, out) { out.emit("x"); },
    });`);
  const err = transform.open('{"limt": 3}');
  assert.equal(err.tag, "err");
  assert.equal(err.val, 'invalid operator config {"limt": 3}: unknown field `limt`, expected `limit` or `name`');
  assert.equal(transform.open('{"limit": "3"}').tag, "err");
  const out = transform.process(batch(["a"]));
  assert.deepEqual(out.errors, [{ index: 0, message: "operator not opened" }]);
  assert.equal(transform.open('{"limit": 3, "name": [1]}').tag, "ok");
});

test("usd-orders: the Rust module's rows and errors", async () => {
  const { transform } = await example("usd-orders.js");
  const order = (id, amount, currency, status) =>
    `{"order_id":"o-${id}","customer_id":"c-9","amount":${amount},"currency":"${currency}","status":"${status}","event_ts":1699999996432}`;
  assert.equal(transform.open('{"status": "COMPLETED", "min_amount": 100.0}').tag, "ok");
  let out = transform.process(
    batch([
      order(1, "137.52", "EUR", "COMPLETED"),
      order(2, "100.00", "USD", "COMPLETED"),
      order(3, "500.00", "GBP", "PENDING"),
      order(4, "100.01", "GBP", "COMPLETED"),
      order(5, "250.00", "USD", "COMPLETED"),
    ]),
  );
  assert.deepEqual(out.errors, []);
  assert.deepEqual(
    records(out).map((r) => r.value),
    [
      '{"order_id":"o-1","customer_id":"c-9","amount_usd":151.27200000000002}',
      '{"order_id":"o-4","customer_id":"c-9","amount_usd":125.0125}',
      '{"order_id":"o-5","customer_id":"c-9","amount_usd":250.0}',
    ],
  );
  assert.deepEqual(Array.from(out.origins), [0, 3, 4]);

  assert.equal(transform.open("null").tag, "ok");
  out = transform.process(batch([order(1, "0.01", "GBP", "CANCELLED"), order(2, "3.00", "EUR", "PENDING")]));
  assert.deepEqual(
    records(out).map((r) => r.value),
    [
      '{"order_id":"o-1","customer_id":"c-9","amount_usd":0.0125}',
      '{"order_id":"o-2","customer_id":"c-9","amount_usd":3.3000000000000003}',
    ],
  );

  assert.equal(transform.open('{"status": "COMPLETED"}').tag, "ok");
  out = transform.process(
    batch([order(1, "200.00", "JPY", "COMPLETED"), "not json", '{"order_id":"o-3"}', order(4, "200.00", "JPY", "PENDING")]),
  );
  assert.equal(records(out).length, 0);
  assert.equal(out.errors.length, 3);
  assert.deepEqual(out.errors[0], { index: 0, message: 'unknown currency "JPY" (expected USD, EUR or GBP)' });
  assert.equal(out.errors[1].index, 1);
  assert.match(out.errors[2].message, /^missing field/);

  const typo = transform.open('{"min_ammount": 1}');
  assert.equal(typo.tag, "err");
  assert.match(typo.val, /unknown field `min_ammount`/);
});

/// Sums values per key and emits the sum at a timer 10 ms after the first
/// record; "bad" fails after writing (process.rs's `Summer`).
const SUMMER = `
  import { defineKeyedProcess, RowKind } from "sluice";
  export const keyedProcess = defineKeyedProcess({
    open(config, setup) {
      this.sum = setup.valueState("sum");
      this.late = setup.sideOutput("late");
    },
    process(record, ctx) {
      if (record.kind() === RowKind.DELETE) {
        const old = this.sum.get(ctx) ?? 0;
        this.sum.clear(ctx);
        ctx.emitChange(RowKind.DELETE, { sum: old });
        return;
      }
      const ts = record.timestamp() ?? 0;
      if (ts <= ctx.currentWatermark()) { ctx.emitTo(this.late, record.value()); return; }
      const old = this.sum.get(ctx);
      const v = Number.parseInt(record.text(), 10);
      this.sum.set(ctx, (old ?? 0) + (Number.isNaN(v) ? 1 : v));
      if (old === undefined) ctx.registerEventTimeTimer(ts + 10);
      if (record.text() === "bad") { ctx.emit("never"); throw new Error("bad record"); }
    },
    onTimer(timer, ctx) {
      ctx.emitJson({ at: timer.time, sum: this.sum.get(ctx) ?? 0 });
      this.sum.clear(ctx);
    },
  });`;

test("keyed: a function sees each record's kind and emits changes", async () => {
  const { keyedProcess } = await load(SUMMER);
  assert.equal(keyedProcess.open("null").tag, "ok");
  const out = keyedProcess.process(
    batch([
      { value: "5", timestamp: 100, key: "a" },
      { value: "x", timestamp: 101, key: "a", kind: "delete" },
    ]),
    keyedInput({ keys: ["a"], recordKeys: [0, 0], watermarks: [50, 50], end: 50 }),
  );
  assert.deepEqual(records(out).map((r) => r.value), ['{"sum":5}']);
  assert.deepEqual(out.records.records.map((m) => m.kind), ["delete"]);
  assert.deepEqual(Array.from(out.origins), [1]);
});

test("keyed: timers fire between records as the watermark passes them", async () => {
  const { keyedProcess } = await load(SUMMER);
  assert.equal(keyedProcess.open("null").tag, "ok");
  const out = keyedProcess.process(
    batch([
      { value: "1", timestamp: 100, key: "a" },
      { value: "2", timestamp: 105, key: "b" },
      { value: "4", timestamp: 120, key: "a" },
    ]),
    keyedInput({ keys: ["a", "b"], recordKeys: [0, 1, 0], watermarks: [50, 60, 112], end: 200 }),
  );
  const rows = records(out);
  assert.deepEqual(
    rows.map((r) => r.value),
    ['{"at":110,"sum":1}', '{"at":115,"sum":2}', '{"at":130,"sum":4}'],
  );
  assert.deepEqual(rows.map((r) => r.key), ["a", "b", "a"]);
  assert.deepEqual(Array.from(out.origins), [0xffffffff, 0xffffffff, 0xffffffff]);
  assert.equal(rows[0].timestamp, 110);
  assert.deepEqual(
    out.timerChanges.map((c) => [Number(c.timer.time), c.registered]),
    [
      [110, true],
      [115, true],
      [110, false],
      [130, true],
      [115, false],
      [130, false],
    ],
  );
  assert.deepEqual(valueWrites(out), [
    [0, 0, undefined],
    [0, 1, undefined],
  ]);
});

test("keyed co-process: both inputs share a key's state, in arrival order", async () => {
  const { keyedCoProcess } = await load(`
    import { defineKeyedCoProcess } from "sluice";
    export const keyedCoProcess = defineKeyedCoProcess({
      open(config, setup) { this.sum = setup.valueState("sum"); },
      processLeft(record, ctx) { this.sum.set(ctx, (this.sum.get(ctx) ?? 0) + Number(record.text())); },
      processRight(record, ctx) { ctx.emitJson(this.sum.get(ctx) ?? 0); },
    });`);
  assert.equal(keyedCoProcess.open("null").tag, "ok");
  const out = keyedCoProcess.process(
    batch(["1", "10", "0", "2", "0", "0"].map((value, i) => ({ value, key: "ab"[[0, 1, 0, 0, 0, 1][i]] }))),
    keyedInput({
      keys: ["a", "b"],
      recordKeys: [0, 1, 0, 0, 0, 1],
      recordInputs: [0, 0, 1, 0, 1, 1],
      watermarks: [0, 0, 0, 0, 0, 0],
      end: 0,
    }),
  );
  assert.deepEqual(records(out).map((r) => r.value), ["1", "3", "10"]);
});

test("keyed broadcast: rules from the broadcast side, read by the keyed side, refused from it", async () => {
  const { keyedBroadcastProcess } = await load(`
    import { defineKeyedBroadcastProcess } from "sluice";
    export const keyedBroadcastProcess = defineKeyedBroadcastProcess({
      open(config, setup) { this.limits = setup.broadcastState("limits"); },
      process(record, ctx) {
        const p = record.json();
        if (p.write) this.limits.put(ctx, "x", 1);
        if (p.amount > (this.limits.get(p.country) ?? Infinity)) ctx.emitJson(p.id);
      },
      processBroadcast(record, ctx) {
        const r = record.json();
        if (r.limit === undefined) throw new Error("no limit");
        ctx.emitJson({ set: r.country, at: ctx.currentWatermark() });
        this.limits.put(ctx, r.country, r.limit);
      },
    });`);
  assert.equal(keyedBroadcastProcess.open("null").tag, "ok");
  const b = keyedBroadcastProcess.processBroadcast(
    batch([{ value: '{"country":"FR","limit":100}' }, { value: '{"country":"DE"}' }]),
    new BigInt64Array([5n, 6n]),
  );
  assert.deepEqual(records(b).map((r) => r.value), ['{"set":"FR","at":5}']);
  assert.deepEqual(Array.from(b.origins), [0]);
  assert.deepEqual(b.errors, [{ index: 1, message: "no limit" }]);
  const out = keyedBroadcastProcess.process(
    batch([
      { value: '{"id":"p1","country":"FR","amount":150}', key: "a" },
      { value: '{"id":"p2","country":"FR","amount":50}', key: "a" },
      { value: '{"id":"p3","country":"FR","amount":500,"write":true}', key: "a" },
    ]),
    keyedInput({ keys: ["a"], recordKeys: [0, 0, 0], watermarks: [0, 0, 0], end: 0, values: { data: new Uint8Array(0), spans: [] } }),
  );
  assert.deepEqual(records(out).map((r) => r.value), ['"p1"']);
  assert.match(out.errors[0].message, /only be changed in processBroadcast/);
});

test("keyed: late records go to the side output and failures are undone", async () => {
  const { keyedProcess } = await load(SUMMER);
  keyedProcess.open("null");
  const out = keyedProcess.process(
    batch([
      { value: "7", timestamp: 10, key: "a" },
      { value: "bad", timestamp: 100, key: "b" },
      { value: "3", timestamp: 100, key: "b" },
    ]),
    keyedInput({ keys: ["a", "b"], recordKeys: [0, 1, 1], watermarks: [50, 50, 50], end: 60 }),
  );
  assert.deepEqual(records(out).map((r) => r.value), ["7"]);
  assert.deepEqual(Array.from(out.ports), [1]);
  assert.deepEqual(out.errors, [{ index: 1, message: "bad record" }]);
  assert.deepEqual(valueWrites(out), [[0, 1, "3"]]);
  assert.deepEqual(
    out.timerChanges.map((c) => [c.timer.key, Number(c.timer.time), c.registered]),
    [[1, 110, true]],
  );
});

test("keyed: processing-time timers fire at the start of a call and never within it", async () => {
  const { keyedProcess } = await load(`
    import { defineKeyedProcess } from "sluice";
    export const keyedProcess = defineKeyedProcess({
      process(record, ctx) { ctx.registerProcessingTimeTimer(ctx.currentProcessingTime() + 10); },
      onTimer(timer, ctx) { ctx.emitJson({ at: timer.time, domain: timer.domain }); },
    });`);
  keyedProcess.open("null");
  const out = keyedProcess.process(
    batch([{ value: "x", timestamp: 1, key: "a" }]),
    keyedInput({
      keys: ["a"],
      recordKeys: [0],
      watermarks: [0],
      end: 0,
      processingTime: 500,
      timers: [[0, 490, "processing-time"]],
      values: { data: new Uint8Array(0), spans: [] },
    }),
  );
  const rows = records(out);
  assert.deepEqual(rows.map((r) => r.value), ['{"at":490,"domain":"processing-time"}']);
  assert.equal(rows[0].timestamp, undefined);
  assert.deepEqual(
    out.timerChanges.map((c) => [Number(c.timer.time), c.registered]),
    [
      [490, false],
      [510, true],
    ],
  );
});

test("keyed: values and timers from the host; host timers fire in (time, key index) order", async () => {
  const { keyedProcess } = await load(SUMMER);
  keyedProcess.open("null");
  let out = keyedProcess.process(
    batch([{ value: "5", timestamp: 300, key: "a" }]),
    keyedInput({ keys: ["a"], recordKeys: [0], watermarks: [250], end: 250, timers: [[0, 240]], values: byteList(["40"]) }),
  );
  assert.deepEqual(records(out).map((r) => r.value), ['{"at":240,"sum":40}']);
  assert.deepEqual(valueWrites(out), [[0, 0, "5"]]);

  // The host orders timers by key bytes; key indices follow first use.
  out = keyedProcess.process(
    batch([]),
    keyedInput({
      keys: ["b", "a"],
      recordKeys: [],
      watermarks: [],
      end: 100,
      timers: [
        [1, 50],
        [0, 50],
      ],
      values: byteList(["1", "2"]),
    }),
  );
  assert.deepEqual(records(out).map((r) => r.key), ["b", "a"]);
});

test("keyed: deleting a due timer keeps it from firing", async () => {
  const { keyedProcess } = await load(`
    import { defineKeyedProcess } from "sluice";
    export const keyedProcess = defineKeyedProcess({
      process(record, ctx) { ctx.deleteEventTimeTimer(Number(record.text())); },
      onTimer(timer, ctx) { ctx.emit("fired " + timer.time); },
    });`);
  keyedProcess.open("null");
  const out = keyedProcess.process(
    batch([{ value: "90", timestamp: 1, key: "z" }]),
    keyedInput({
      keys: ["x", "y", "z"],
      recordKeys: [2],
      watermarks: [10],
      end: 200,
      timers: [
        [1, 90],
        [2, 90],
        [0, 90],
      ],
      values: { data: new Uint8Array(0), spans: [] },
    }),
  );
  assert.deepEqual(records(out).map((r) => `${r.key} ${r.value}`), ["x fired 90", "y fired 90"]);
});

test("keyed: a failing onTimer fails the call; process before open throws", async () => {
  const { keyedProcess } = await load(`
    import { defineKeyedProcess } from "sluice";
    export const keyedProcess = defineKeyedProcess({
      process(record, ctx) { ctx.registerEventTimeTimer(5); },
      onTimer() { throw new Error("boom"); },
    });`);
  const input = () =>
    keyedInput({ keys: ["a"], recordKeys: [0], watermarks: [0], end: 10, values: { data: new Uint8Array(0), spans: [] } });
  assert.throws(() => keyedProcess.process(batch([{ value: "x", key: "a" }]), input()), /operator not opened/);
  keyedProcess.open("null");
  assert.throws(() => keyedProcess.process(batch([{ value: "x", key: "a" }]), input()), /on_timer\(5\) failed: boom/);
});

test("keyed: list and map states encode JSON as the Rust SDK does", async () => {
  const h = host();
  const { keyedProcess } = await load(`
    import { defineKeyedProcess } from "sluice";
    export const keyedProcess = defineKeyedProcess({
      open(config, setup) {
        this.list = setup.listState("seen", { version: 2 });
        this.map = setup.mapState("by", { ttl: 60000 });
      },
      process(record, ctx) {
        const v = record.json();
        this.list.add(ctx, v);
        this.map.put(ctx, v.id, { n: v.n });
        ctx.emitJson({ list: this.list.get(ctx), entries: this.map.entries(ctx), one: this.map.get(ctx, v.id), none: this.map.get(ctx, "zz") ?? null });
      },
    });`);
  assert.equal(keyedProcess.open("null").tag, "ok");
  const decl = h.declared.slice(-2).map((d) => [d.name, d.kind, d.ttlMs, d.version]);
  assert.deepEqual(decl, [
    ["seen", "list", undefined, 2],
    ["by", "map", 60000, 1],
  ]);
  const out = keyedProcess.process(
    batch([
      { value: '{"id":"b","n":1}', key: "k" },
      { value: '{"id":"a","n":2}', key: "k" },
    ]),
    keyedInput({ keys: ["k"], recordKeys: [0, 0], watermarks: [0, 0], end: 0, values: { data: new Uint8Array(0), spans: [] } }),
  );
  assert.deepEqual(JSON.parse(records(out)[1].value), {
    list: [
      { id: "b", n: 1 },
      { id: "a", n: 2 },
    ],
    entries: [
      ["a", { n: 2 }],
      ["b", { n: 1 }],
    ],
    one: { n: 2 },
    none: null,
  });
  // Stored bytes: JSON text, user keys included (`"a"` with its quotes).
  const mapKeys = [...h.maps.values()].at(-1);
  assert.deepEqual(
    [...mapKeys.values()].map(([k, v]) => [new TextDecoder().decode(k), new TextDecoder().decode(v)]).sort(),
    [
      ['"a"', '{"n":2}'],
      ['"b"', '{"n":1}'],
    ],
  );
});

test("session-detector: the Rust module's sessions, late and dropped records", async () => {
  const { keyedProcess } = await example("session-detector.js");
  assert.equal(keyedProcess.open('{"gap_ms": 10, "key_field": "cid"}').tag, "ok");
  assert.equal(keyedProcess.open('{"gap_ms": 0}').tag, "err");
  assert.equal(keyedProcess.open('{"gap": 10}').tag, "err");
  assert.equal(keyedProcess.open('{"gap_ms": 10, "key_field": "cid"}').tag, "ok");
  const values = (n) => byteList(Array(n * 3).fill(null));
  const out = keyedProcess.process(
    batch([
      { value: "r1", timestamp: 100, key: '"c-1"' },
      { value: "r2", timestamp: 105, key: '"c-1"' },
      { value: "r3", timestamp: 200, key: '"c-1"' }, // closes 100..105 early
      { value: "r4", timestamp: 50, key: '"c-2"' }, // late: 59 <= watermark
      { value: "r5", timestamp: 150, key: '"c-1"' }, // before 200 - gap: dropped
    ]),
    keyedInput({ keys: ['"c-1"', '"c-2"'], recordKeys: [0, 0, 0, 1, 0], watermarks: [90, 90, 95, 95, 95], end: 1000, values: values(2) }),
  );
  assert.deepEqual(
    records(out).map((r) => r.value),
    [
      '{"cid":"c-1","session_start":100,"session_end":115,"count":2,"early_close":true}',
      "r4",
      "r5",
      '{"cid":"c-1","session_start":200,"session_end":210,"count":1}',
    ],
  );
  assert.deepEqual(Array.from(out.ports), [0, 1, 2, 0]);
  assert.deepEqual(records(out)[3].timestamp, 209);
});

test("jsonNumber writes f64 as serde_json does", async () => {
  const { jsonNumber } = await load(`export { jsonNumber } from "sluice";`);
  const cases = [
    [250, "250.0"],
    [0.0125, "0.0125"],
    [151.27200000000002, "151.27200000000002"],
    [1e-7, "1e-7"],
    [1.5e-7, "1.5e-7"],
    [0.00001, "0.00001"],
    [0.000001, "1e-6"],
    [1e16, "1e16"],
    [1.2345678901234567e19, "1.2345678901234567e19"],
    [9007199254740993, "9007199254740992.0"],
    [-3.5, "-3.5"],
    [0, "0.0"],
    [-0, "-0.0"],
    [1e21, "1e21"],
    [-2.5e-10, "-2.5e-10"],
    [NaN, "null"],
  ];
  for (const [x, want] of cases) assert.equal(jsonNumber(x), want, String(x));
});

test("keyed: output keys survive a rollback and non-ASCII text", async () => {
  const { keyedProcess } = await load(`
    import { defineKeyedProcess } from "sluice";
    export const keyedProcess = defineKeyedProcess({
      process(record, ctx) {
        ctx.emit(record.text() + "→" + ctx.keyText());
        if (record.text() === "fail") throw new Error("no");
      },
    });`);
  keyedProcess.open("null");
  const out = keyedProcess.process(
    batch([
      { value: "fail", key: "ké" },
      { value: "ok", key: "ké" },
      { value: "ok2", key: "b" },
      { value: "ok3", key: "ké" },
    ]),
    keyedInput({ keys: ["ké", "b"], recordKeys: [0, 0, 1, 0], watermarks: [0, 0, 0, 0], end: 0, values: { data: new Uint8Array(0), spans: [] } }),
  );
  assert.deepEqual(
    records(out).map((r) => [r.key, r.value]),
    [
      ["ké", "ok→ké"],
      ["b", "ok2→b"],
      ["ké", "ok3→ké"],
    ],
  );
  assert.deepEqual(out.errors, [{ index: 0, message: "no" }]);
});

const texts = (list) => list.spans.map((s) => new TextDecoder().decode(list.data.subarray(s.offset, s.offset + s.len)));

test("aggregate: count-sum counts, sums cents as Rust rounds, and reports bad records", async () => {
  const { aggregate } = await example("count-sum.js");
  assert.deepEqual(aggregate.open("null"), { tag: "ok", val: undefined });
  const empty = new TextDecoder().decode(aggregate.createAccumulator());
  assert.equal(empty, '{"count":0,"sum_cents":0}');
  const values = ['{"amount":137.52,"currency":"USD"}', '{"amount":"137.52"}', '{"amount":0.29}', '{"other":1}', '{"amount":10}', '{"amount":-0.125}'];
  const out = aggregate.add(byteList([empty]), batch(values), new Uint32Array(values.length));
  assert.deepEqual(out.errors, [
    { index: 1, message: 'field "amount" is not a number' },
    { index: 3, message: 'field "amount" is missing' },
  ]);
  // 13752 + 29 + 1000 - 13 (-12.5 rounds away from zero)
  assert.deepEqual(texts(out.accumulators), ['{"count":4,"sum_cents":14768}']);
  const result = aggregate.getResult(out.accumulators);
  assert.equal(result.tag, "ok");
  assert.deepEqual(texts(result.val), ['{"count":4,"sum_cents":14768}']);
  const merged = aggregate.merge(
    byteList(['{"count":1,"sum_cents":2}', '{"count":3,"sum_cents":4}', '{"count":5,"sum_cents":6}']),
    [{ offset: 0, len: 2 }, { offset: 2, len: 1 }],
  );
  assert.deepEqual(texts(merged.val), ['{"count":4,"sum_cents":6}', '{"count":5,"sum_cents":6}']);
  assert.match(aggregate.open('{"count_as": "x", "sum_as": "x"}').val, /name them apart/);
  assert.match(aggregate.open('{"feild": "amount"}').val, /unknown field/);
});

test("aggregate: a failed add leaves its accumulator as before that record; a failed result is the call's error", async () => {
  const { aggregate } = await load(`
    import { defineAggregate } from "sluice";
    export const aggregate = defineAggregate({
      create() { return { count: 0, sum_cents: 0 }; },
      add(acc, record) {
        acc.count += 1; // changed before failing
        if (record.json().fail) throw new Error("no");
        acc.sum_cents += 1;
        return acc;
      },
      merge(acc, other) { return acc; },
      result(acc) { throw new Error("cannot"); },
    });`);
  assert.deepEqual(aggregate.open("null"), { tag: "ok", val: undefined });
  const accs = byteList(['{"count":5,"sum_cents":5}', '{"count":1,"sum_cents":1}', '{"count":7,"sum_cents":7}']);
  const out = aggregate.add(accs, batch(["{}", '{"fail":true}', "{}", '{"fail":true}']), new Uint32Array([0, 0, 0, 1]));
  assert.deepEqual(out.errors.map((e) => e.index), [1, 3]);
  assert.deepEqual(texts(out.accumulators), ['{"count":7,"sum_cents":7}', '{"count":1,"sum_cents":1}', '{"count":7,"sum_cents":7}']);
  assert.deepEqual(aggregate.getResult(accs), { tag: "err", val: "result: cannot" });
});

test("window function: percentile per window, floats as Rust writes them, a failing window named", async () => {
  const { windowFunction } = await example("percentile.js");
  assert.deepEqual(windowFunction.open('{"p": 50}'), { tag: "ok", val: undefined });
  const keys = new TextEncoder().encode('"api""db"');
  const windows = [
    { key: { offset: 0, len: 5 }, start: 0n, end: 60000n, records: { offset: 0, len: 4 } },
    { key: { offset: 5, len: 4 }, start: 0n, end: 60000n, records: { offset: 4, len: 1 } },
  ];
  const out = windowFunction.process(windows, keys, batch(['{"latency_ms":30}', '{"latency_ms":10.5}', '{"other":1}', '{"latency_ms":20}', '{"x":1}']));
  assert.equal(out.tag, "ok");
  assert.deepEqual(texts(out.val), ['{"count":3,"p50_latency_ms":20.0}', '{"count":0,"p50_latency_ms":null}']);
  const one = [{ key: { offset: 0, len: 5 }, start: 0n, end: 60000n, records: { offset: 0, len: 1 } }];
  const bad = windowFunction.process(one, keys, batch(['{"latency_ms":"slow"}']));
  assert.deepEqual(bad, {
    tag: "err",
    val: 'window [0, 60000) of key "api": field `latency_ms`: invalid type: string "slow", expected f64',
  });
  assert.match(windowFunction.open('{"p": 150}').val, /p must be in \(0, 100\], not 150/);
  assert.match(windowFunction.open('{"feild": "x"}').val, /unknown field/);
});

test("sql functions: usd-udf's values, half-up rounding, a failed row alone, weighted_avg merged", async () => {
  const { sqlFunction: f } = await example("usd-udf.js");
  assert.deepEqual(
    f.functions().map((s) => [s.name, s.kind]),
    [["usd", "scalar"], ["per_unit", "scalar"], ["weighted_avg", "aggregate"]],
  );
  const le = (n, width) => {
    const b = new Uint8Array(width);
    const v = new DataView(b.buffer);
    if (width === 16) {
      v.setBigUint64(0, BigInt.asUintN(64, BigInt(n)), true);
      v.setBigInt64(8, BigInt(n) < 0n ? -1n : 0n, true);
    } else if (width === 8) v.setFloat64(0, n, true);
    else v.setInt32(0, n, true);
    return b;
  };
  const fixed = (values, width) => ({
    nulls: Uint8Array.from(values.map((v) => (v === null ? 1 : 0))),
    data: Uint8Array.from(values.flatMap((v) => [...le(v ?? 0, width)])),
    spans: [],
  });
  const text = (values) => {
    const enc = new TextEncoder();
    let data = [];
    const spans = values.map((v) => {
      const b = enc.encode(v ?? "");
      const s = { offset: data.length, len: b.length };
      data = data.concat([...b]);
      return s;
    });
    return { nulls: Uint8Array.from(values.map((v) => (v === null ? 1 : 0))), data: Uint8Array.from(data), spans };
  };
  // 9.99 EUR -> 10.989 -> 10.99; 0.05 EUR -> 0.055 -> 0.06; JPY fails alone.
  const out = f.call(0, [fixed([999, null, 100, 5], 16), text(["EUR", "EUR", "JPY", "EUR"])], 4);
  const view = new DataView(out.values.data.buffer, out.values.data.byteOffset);
  assert.deepEqual([...out.values.nulls], [0, 1, 1, 0]);
  assert.equal(view.getBigInt64(0, true), 1099n);
  assert.equal(view.getBigInt64(48, true), 6n);
  assert.deepEqual(out.errors.map((e) => e.index), [2]);
  assert.match(out.errors[0].message, /no rate for currency "JPY"/);
  // weighted_avg: the negative quantity is refused; the rest merge.
  const empty = new TextDecoder().decode(f.createAccumulator(2));
  const accs = byteList([empty, empty]);
  const acc = f.accumulate(2, accs, [fixed([2, 4, 1, 8], 8), fixed([1, 3, -5, 2], 4)], new Uint32Array([0, 0, 1, 1]));
  assert.deepEqual(acc.errors.map((e) => e.index), [2]);
  const merged = f.merge(2, acc.accumulators, [{ offset: 0, len: 2 }]);
  assert.equal(merged.tag, "ok");
  const value = f.getValue(2, merged.val);
  assert.equal(new DataView(value.val.data.buffer, value.val.data.byteOffset).getFloat64(0, true), 30 / 6);
});
