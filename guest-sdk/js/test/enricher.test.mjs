// Unit tests of the JS SDK's async enricher (`defineEnricher`, `http`)
// against the stand-in host (test/host.mjs) with a fake `http.fetch`; they
// mirror guest-sdk/rust/src/http.rs and examples/operators/customer-tier.
// Run: `node --test guest-sdk/js/test/`.

import assert from "node:assert/strict";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { readFile } from "node:fs/promises";
import { batch, host, load, records } from "./host.mjs";

const example = async (name) =>
  load(await readFile(fileURLToPath(new URL(`../../../examples/js/${name}`, import.meta.url)), "utf8"));

const dec = new TextDecoder();

/// Runs `fn(http)` inside an enricher's `process` (where operators call
/// `http`) and returns what it emitted as JSON, or the record's error.
async function probe() {
  const { enricher } = await load(`
    import { defineEnricher, http } from "sluice";
    export const enricher = defineEnricher({
      process(record, out) { out.emitJson(globalThis.__probe(http)); },
    });`);
  enricher.open("null");
  return (fn) => {
    globalThis.__probe = fn;
    const out = enricher.process(batch(["{}"]));
    if (out.errors.length) return { error: out.errors[0].message };
    return records(out)[0].value;
  };
}

test("http: get and fetch send the request the host expects", async () => {
  const run = await probe();
  const h = host();
  h.requests = [];
  h.http = () => ({ status: 201, headers: [["Content-Type", "text/plain"]], body: "hi" });
  const got = run((http) => {
    const r = http.get("http://svc/a");
    return [r.status, r.headers, r.text(), r.header("content-type"), r.header("x-none")];
  });
  assert.equal(got, JSON.stringify([201, [["Content-Type", "text/plain"]], "hi", "text/plain", null]));
  run((http) => http.fetch("POST", "http://svc/b", { "x-a": "1" }, '{"é":1}').status);
  run((http) => http.fetch("PUT", "http://svc/c", [["x-b", "2"]], new Uint8Array([0, 255])).status);
  const [get, post, put] = h.requests;
  assert.deepEqual([get.method, get.url, get.headers, Array.from(get.body)], ["GET", "http://svc/a", [], []]);
  assert.deepEqual([post.method, post.url, post.headers], ["POST", "http://svc/b", [["x-a", "1"]]]);
  assert.equal(dec.decode(post.body), '{"é":1}');
  assert.deepEqual([put.method, put.headers, Array.from(put.body)], ["PUT", [["x-b", "2"]], [0, 255]]);
  assert.deepEqual(run((http) => http.fetch("POST", "http://svc/", [], { a: 1 })), {
    error: "a request body must be a string or a Uint8Array (JSON.stringify other values)",
  });
});

test("http: ok, json and text errors quote the start of the body as Rust does", async () => {
  const run = await probe();
  const h = host();
  h.http = () => ({ status: 500, body: '{"error":"internal"}' });
  assert.deepEqual(run((http) => http.get("http://svc/").ok().status), {
    error: 'HTTP status 500: "{\\"error\\":\\"internal\\"}"',
  });
  h.http = () => ({ status: 204, body: "" });
  assert.equal(run((http) => http.get("http://svc/").ok().status), "204");

  h.http = () => ({ status: 200, body: "<html>tier service</html>" });
  const e = run((http) => http.get("http://svc/").ok().json());
  assert.match(e.error, /^the response body is not the JSON expected \(.+\): "<html>tier service<\/html>"$/);

  // 60 bytes at most, lossy UTF-8 (a cut character is U+FFFD), Rust's escapes.
  h.http = () => ({ status: 200, body: "x".repeat(59) + "é and more" });
  assert.match(run((http) => http.get("http://svc/").json()).error, new RegExp(`: "${"x".repeat(59)}\uFFFD"$`));
  h.http = () => ({ status: 503, body: "a\tb\u0001\n" });
  assert.deepEqual(run((http) => http.get("http://svc/").ok()), { error: 'HTTP status 503: "a\\tb\\u{1}\\n"' });

  // A check: what it throws is the body not being the JSON expected.
  h.http = () => ({ status: 200, body: '{"customer_id":"c-1"}' });
  const check = (c) => {
    if (typeof c.tier !== "string") throw "missing field `tier`";
    return c.tier;
  };
  assert.deepEqual(run((http) => http.get("http://svc/").json(check)), {
    error: 'the response body is not the JSON expected (missing field `tier`): "{\\"customer_id\\":\\"c-1\\"}"',
  });
  h.http = () => ({ status: 200, body: '{"tier":"gold"}' });
  assert.equal(run((http) => http.get("http://svc/").json(check)), '"gold"');

  h.http = () => ({ status: 200, body: new Uint8Array([0xff]) });
  assert.match(run((http) => http.get("http://svc/").text()).error, /^the response body is not UTF-8: /);
});

test("http: a transport failure is an error with the host's message", async () => {
  const run = await probe();
  host().http = () => ({ err: "cannot connect to 127.0.0.1:9: Connection refused (os error 111)" });
  assert.deepEqual(run((http) => http.get("http://127.0.0.1:9/").status), {
    error: "cannot connect to 127.0.0.1:9: Connection refused (os error 111)",
  });
});

test("enricher: a transform under the enricher export; a failed attempt emits nothing", async () => {
  const { enricher } = await load(`
    import { defineEnricher } from "sluice";
    export const enricher = defineEnricher({
      open(config) { this.suffix = config.parse({ suffix: "!" }).suffix; },
      process(record, out) {
        out.emit(record.text() + this.suffix);
        if (record.text() === "fail") throw new Error("attempt failed");
        out.forward();
      },
    });`);
  assert.match(enricher.process(batch(["x"])).errors[0].message, /operator not opened/);
  assert.deepEqual(enricher.open('{"sufix": "?"}'), {
    tag: "err",
    val: 'invalid operator config {"sufix": "?"}: unknown field `sufix`, expected `suffix`',
  });
  assert.deepEqual(enricher.open('{"suffix": "?"}'), { tag: "ok", val: undefined });
  const out = enricher.process(batch([{ value: "a", key: "k", timestamp: 5, headers: [["h", "v"]] }]));
  assert.deepEqual(records(out), [
    { key: "k", value: "a?", timestamp: 5, headers: [["h", "v"]] },
    { key: "k", value: "a", timestamp: 5, headers: [["h", "v"]] },
  ]);
  assert.deepEqual(Array.from(out.origins), [0, 0]);
  assert.deepEqual(out.errors, []);
  const failed = enricher.process(batch(["fail"]));
  assert.deepEqual(records(failed), []);
  assert.deepEqual(Array.from(failed.origins), []);
  assert.deepEqual(failed.errors, [{ index: 0, message: "attempt failed" }]);
  await assert.rejects(load(`import { defineEnricher } from "sluice"; export const enricher = defineEnricher({});`), {
    message: "defineEnricher: the operator needs a process(record, out) method",
  });
});

test("customer-tier: the Rust module's requests, rows and errors", async () => {
  const { enricher } = await example("customer-tier.js");
  const h = host();
  const tier = (id) => {
    const k = Number(id.split("-")[1]);
    return k % 10 === 0 ? "gold" : k % 3 === 0 ? "silver" : "bronze";
  };
  h.http = (req) => {
    const id = req.url.slice("http://127.0.0.1:8088/customers/".length);
    if (!/^c-\d+$/.test(id)) return { status: 404, body: '{"error":"no such customer"}' };
    return { status: 200, headers: [["Content-Type", "application/json"]], body: JSON.stringify({ customer_id: id, tier: tier(id) }) };
  };

  assert.deepEqual(enricher.open('{"url": "x", "timeout": 1}'), {
    tag: "err",
    val: 'invalid operator config {"url": "x", "timeout": 1}: unknown field `timeout`, expected `url`',
  });
  assert.deepEqual(enricher.open("null"), {
    tag: "err",
    val: "config needs `url`, the service's address (customer ids are appended)",
  });
  assert.deepEqual(enricher.open('{"url": "http://127.0.0.1:8088/customers/"}'), { tag: "ok", val: undefined });

  const one = (value) => {
    h.requests = [];
    const out = enricher.process(batch([{ value, key: '"k"', timestamp: 1699999996432, headers: [["trace", "t"]] }]));
    return { rows: records(out), errors: out.errors, urls: h.requests.map((r) => `${r.method} ${r.url}`) };
  };
  const order = '{"order_id":"o-2","customer_id":"c-12","amount":14.90,"currency":"USD","status":"COMPLETED","event_ts":1699999999206}';
  assert.deepEqual(one(order), {
    rows: [
      {
        key: '"k"',
        value: '{"order_id":"o-2","customer_id":"c-12","amount":14.9,"currency":"USD","status":"COMPLETED","event_ts":1699999999206,"tier":"silver"}',
        timestamp: 1699999996432,
        headers: [["trace", "t"]],
      },
    ],
    errors: [],
    urls: ["GET http://127.0.0.1:8088/customers/c-12"],
  });
  for (const [id, t] of [["c-30", "gold"], ["c-9", "silver"], ["c-1", "bronze"]]) {
    assert.equal(JSON.parse(one(`{"customer_id":"${id}"}`).rows[0].value).tier, t);
  }
  // A tier already there is replaced, as Rust's `insert` does.
  assert.equal(one('{"customer_id":"c-3","tier":"old"}').rows[0].value, '{"customer_id":"c-3","tier":"silver"}');

  const error = (value) => {
    const r = one(value);
    assert.deepEqual(r.rows, []);
    return r.errors.map((e) => [e.index, e.message]);
  };
  assert.deepEqual(error('{"order_id":"o-1"}'), [[0, "the order has no string customer_id"]]);
  assert.deepEqual(error('{"customer_id":7}'), [[0, "the order has no string customer_id"]]);
  assert.deepEqual(error("[1]"), [[0, "invalid type: sequence, expected a map"]]);
  assert.deepEqual(error('{"customer_id":"nobody"}'), [[0, 'HTTP status 404: "{\\"error\\":\\"no such customer\\"}"']]);

  h.http = () => ({ status: 500, body: '{"error":"internal"}' });
  assert.deepEqual(error(order), [[0, 'HTTP status 500: "{\\"error\\":\\"internal\\"}"']]);
  h.http = () => ({ status: 200, body: "<html>tier service</html>" });
  const [[, garbage]] = error(order);
  assert.match(garbage, /^the response body is not the JSON expected \(.+\): "<html>tier service<\/html>"$/);
  h.http = () => ({ status: 200, body: '{"customer_id":"c-12"}' });
  assert.deepEqual(error(order), [
    [0, 'the response body is not the JSON expected (missing field `tier`): "{\\"customer_id\\":\\"c-12\\"}"'],
  ]);
  h.http = () => ({ status: 200, body: '{"tier":3}' });
  assert.deepEqual(error(order), [
    [0, 'the response body is not the JSON expected (invalid type: integer `3`, expected a string): "{\\"tier\\":3}"'],
  ]);
  h.http = () => ({ err: "cannot connect to 127.0.0.1:8088: Connection refused (os error 111)" });
  assert.deepEqual(error(order), [[0, "cannot connect to 127.0.0.1:8088: Connection refused (os error 111)"]]);
});
