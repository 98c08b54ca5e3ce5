// sluice operators in JavaScript: the SDK over the WIT contract
// `sluice:operator` (wit/operator.wit). Its imports name the interfaces
// without a version: the build adds the one wit/operator.wit declares.
//
// An operator is one ES module that imports from "sluice" and exports what
// its world needs; `guest-sdk/js/build OPERATOR.js OUT.wasm` bundles it with this
// file and makes a Wasm component of it (see the header of `guest-sdk/js/build`).
//
// A map, filter or flat-map (world `transform-operator`):
//
//     import { defineTransform } from "sluice";
//     export const transform = defineTransform({
//       open(config) { this.min = config.parse({ min: 0 }).min; },
//       process(record, out) {
//         const order = record.json();
//         if (order.amount > this.min) out.emitJson({ id: order.order_id });
//       },
//     });
//
// An async enricher (world `enricher-operator`): a transform that
// may call out over HTTP (the host's `http`, to the hosts the spec grants),
// one record per call:
//
//     import { defineEnricher, http } from "sluice";
//     export const enricher = defineEnricher({
//       open(config) { this.url = config.parse({ url: "" }).url; },
//       process(record, out) {
//         const order = record.json();
//         order.tier = http.get(this.url + order.customer_id).ok().json().tier;
//         out.emitJson(order);
//       },
//     });
//
// A keyed process function (world `keyed-process-operator`; add
// `export const migration = defineMigration(op)` for
// `keyed-process-migrating-operator`):
//
//     import { defineKeyedProcess } from "sluice";
//     export const keyedProcess = defineKeyedProcess({
//       open(config, setup) { this.count = setup.valueState("count"); },
//       process(record, ctx) {
//         this.count.set(ctx, (this.count.get(ctx) ?? 0) + 1);
//         ctx.registerEventTimeTimer(record.timestamp() + 10000);
//       },
//       onTimer(timer, ctx) { ctx.emitJson({ count: this.count.get(ctx) }); this.count.clear(ctx); },
//     });
//
// A keyed co-process function (world `keyed-co-process-operator`): two
// keyed inputs, `left` and `right`, sharing the state of a key:
//
//     import { defineKeyedCoProcess } from "sluice";
//     export const keyedCoProcess = defineKeyedCoProcess({
//       open(config, setup) { this.order = setup.valueState("order"); },
//       processLeft(order, ctx) { this.order.set(ctx, order.json().amount); },
//       processRight(payment, ctx) {
//         const amount = this.order.get(ctx);
//         if (amount !== undefined) ctx.emitJson({ payment: payment.json().payment_id, amount });
//       },
//     });
//
// A keyed broadcast process function (world
// `keyed-broadcast-process-operator`): see `defineKeyedBroadcastProcess`.
//
// The semantics are the Rust guest SDK's (guest-sdk/rust/src): the same replay of
// a batched keyed call as events, the same rollback of a failed record, the
// same JSON encoding of every state (a savepoint written by a Rust module can
// be restored by a JS one and back, as long as both read the same JSON
// shapes). Differences a port must know about:
//
// * Numbers are JS numbers: integers are exact up to 2^53 (event times,
//   counts); `JSON.stringify(250.0)` is `250` where serde_json writes
//   `250.0` (`jsonNumber` writes a float the way serde_json does).
// * An absent value state reads as `undefined` (a stored JSON `null` reads as
//   `null`).
// * Map state keys are stored as their JSON text, as in Rust: strings and
//   integers give the same bytes in both SDKs; prefer them over floats.
// * Throwing from `process` is the record's error (dead letter; for an
//   enricher, a failed attempt the host retries) with the exception's
//   message; throwing from `onTimer` fails the call (a trap), and so the
//   job, as an `Err` from Rust's `on_timer` does.

import { log as hostLog } from "sluice:operator/logging";
import {
  declare as hostDeclare,
  listGet as hostListGet,
  listAdd as hostListAdd,
  listUpdate as hostListUpdate,
  mapGet as hostMapGet,
  mapPut as hostMapPut,
  mapRemove as hostMapRemove,
  mapEntries as hostMapEntries,
  clear as hostClear,
} from "sluice:operator/state";
import { sideOutput as hostSideOutput } from "sluice:operator/output";
// Only in `keyed-broadcast-process-operator`; dropped from other modules as
// `http` is.
import {
  declare as hostBroadcastDeclare,
  get as hostBroadcastGet,
  put as hostBroadcastPut,
  remove as hostBroadcastRemove,
  entries as hostBroadcastEntries,
} from "sluice:operator/broadcast-state";
// Only in `enricher-operator`; the build drops the import from modules
// that do not use `http`.
import { fetch as hostFetch } from "sluice:operator/http";

const UTF8 = new TextDecoder("utf-8", { fatal: true });
const UTF8_LOSSY = new TextDecoder("utf-8");
const ENCODER = new TextEncoder();

/// The message of every record sent to a transform whose `open` failed.
const NOT_OPENED = "operator not opened";
/// A span meaning "no value" in `keyed-input.values`, and the origin of
/// records emitted by a timer.
const ABSENT = 0xffffffff;
const NO_ORIGIN = 0xffffffff;
/// Set on a keyed process operator's object while it is open.
const OPENED = Symbol("sluice.opened");

/// The watermark before the first one (`i64::MIN`, exact as a JS number).
export const NO_WATERMARK = -(2 ** 63);

function message(e) {
  // Errors from the WIT bindings come from another realm: no instanceof.
  if (e !== null && typeof e === "object" && typeof e.message === "string") return e.message;
  if (typeof e === "string") return e;
  try {
    return String(e);
  } catch {
    return "error";
  }
}

// ---------------------------------------------------------------------------
// Logging

/// Lines in the host's log, with the job and operator uid. A call into the
/// host each: log per batch or per problem, not per record.
export const log = {
  trace: (m) => hostLog("trace", String(m)),
  debug: (m) => hostLog("debug", String(m)),
  info: (m) => hostLog("info", String(m)),
  warn: (m) => hostLog("warn", String(m)),
  error: (m) => hostLog("error", String(m)),
};

// ---------------------------------------------------------------------------
// JSON helpers

/// `x` as serde_json (Rust) writes an `f64`: `250.0` for an integral value,
/// `1e-7` / `1.5e16` outside [1e-5, 1e16). `null` for NaN and infinities
/// (serde_json's choice too). Use it where output rows should be byte-equal
/// to a Rust module's.
export function jsonNumber(x) {
  if ((x >= 1e-5 && x < 1e16) || (x <= -1e-5 && x > -1e16)) {
    // Same shortest digits as Rust's ryu, plain decimal notation in both.
    return x % 1 === 0 ? x + ".0" : "" + x;
  }
  if (x === 0) return 1 / x < 0 ? "-0.0" : "0.0";
  if (!Number.isFinite(x)) return "null";
  // Shortest digits d.ddd and exponent, then ryu's layout.
  const e = x.toExponential();
  const at = e.indexOf("e");
  const neg = e[0] === "-";
  const mant = e.slice(neg ? 1 : 0, at);
  const digits = mant.replace(".", "");
  const exp = Number(e.slice(at + 1));
  const sign = neg ? "-" : "";
  const kk = exp + 1; // 10^(kk-1) <= |x| < 10^kk
  const n = digits.length;
  if (n <= kk && kk <= 16) return sign + digits + "0".repeat(kk - n) + ".0";
  if (0 < kk && kk <= 16) return sign + digits.slice(0, kk) + "." + digits.slice(kk);
  if (-5 < kk && kk <= 0) return sign + "0." + "0".repeat(-kk) + digits;
  const m = n === 1 ? digits : digits[0] + "." + digits.slice(1);
  return sign + m + "e" + (kk - 1);
}

function toJson(value) {
  const text = JSON.stringify(value);
  if (text === undefined) {
    throw new TypeError(`${typeof value} cannot be encoded as JSON`);
  }
  return text;
}

/// A JSON value described as serde describes it in its errors
/// (`string "x"`, `integer \`5\``, `floating point \`1.5\``, `null`, ...):
/// for messages like a Rust module's.
export function describeJson(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "sequence";
  switch (typeof v) {
    case "string":
      return `string ${JSON.stringify(v)}`;
    case "number":
      return Number.isInteger(v) ? `integer \`${v}\`` : `floating point \`${v}\``;
    case "boolean":
      return `boolean \`${v}\``;
    default:
      return "map";
  }
}

// ---------------------------------------------------------------------------
// Config

/// The operator's `config` from the pipeline spec, as the host sent it.
export class Config {
  constructor(raw) {
    /// The JSON text (`null` when the spec gives no config).
    this.raw = raw;
  }

  /// The config as a JS value; `null` when the spec gives none.
  value() {
    const raw = this.raw.trim();
    if (raw === "" || raw === "null") return null;
    try {
      return JSON.parse(raw);
    } catch (e) {
      throw this.error(message(e));
    }
  }

  /// The config as settings: `defaults` overridden by the config's fields.
  /// No config (`null`) gives a copy of `defaults`. As Rust's
  /// `#[serde(default, deny_unknown_fields)]`: a field `defaults` does not
  /// name is an error (a typo must not silently disable a setting), and so
  /// is a value whose type differs from a non-null default's (a `null`
  /// default accepts anything: check it yourself).
  parse(defaults) {
    const v = this.value();
    const out = Object.assign({}, defaults);
    if (v === null) return out;
    if (typeof v !== "object" || Array.isArray(v)) {
      throw this.error(`invalid type: ${describeJson(v)}, expected a map of settings`);
    }
    const names = Object.keys(defaults);
    for (const k of Object.keys(v)) {
      if (!Object.prototype.hasOwnProperty.call(defaults, k)) {
        throw this.error(`unknown field \`${k}\`, ${expectedFields(names)}`);
      }
      const d = defaults[k];
      const x = v[k];
      if (d !== null && d !== undefined) {
        const want = Array.isArray(d) ? "array" : typeof d;
        const got = x === null ? "null" : Array.isArray(x) ? "array" : typeof x;
        if (want !== got) {
          throw this.error(`invalid type: ${describeJson(x)}, expected ${want} for field \`${k}\``);
        }
      }
      out[k] = x;
    }
    return out;
  }

  /// An error about this config; the job's failure message quotes it.
  error(what) {
    const raw = this.raw.trim();
    const shown = raw.length > 200 ? raw.slice(0, 200) + "..." : raw;
    return new Error(`invalid operator config ${shown}: ${what}`);
  }
}

function expectedFields(names) {
  const q = names.map((n) => `\`${n}\``);
  if (q.length === 0) return "there are no fields";
  if (q.length === 1) return `expected ${q[0]}`;
  if (q.length === 2) return `expected ${q[0]} or ${q[1]}`;
  return `expected one of ${q.join(", ")}`;
}

// ---------------------------------------------------------------------------
// Input batches

/// A batch from the host, with its data decoded to text once, lazily: when
/// all of it is ASCII (JSON records nearly always are), a record's text is a
/// substring of that, which costs much less than a decode per record.
class Input {
  constructor() {
    this.data = null;
    this.headers = null;
    /// undefined: not decoded yet; null: not all ASCII (decode per piece).
    this.all = undefined;
  }

  reset(data, headers) {
    this.data = data;
    this.headers = headers;
    this.all = undefined;
  }

  decodeAll() {
    let all = null;
    try {
      const t = UTF8.decode(this.data);
      if (t.length === this.data.length) all = t;
    } catch {
      // Invalid UTF-8 somewhere: each piece is decoded (and fails) alone.
    }
    this.all = all;
    return all;
  }

  bytes(span) {
    return this.data.subarray(span.offset, span.offset + span.len);
  }

  /// The piece's text; throws if it is not UTF-8.
  text(span) {
    let all = this.all;
    if (all === undefined) all = this.decodeAll();
    if (all !== null) return all.substring(span.offset, span.offset + span.len);
    return UTF8.decode(this.bytes(span));
  }
}

/// What a record does to the row it describes, as in Flink's `RowKind`, in
/// Flink's short form: records of an append-only stream are all inserts
/// (`+I`); a changelog (a `postgres-cdc` source, a `debezium-json` topic, a
/// `group_aggregate`) also carries updates, as the row before (`-U`, a
/// retraction) then the row after (`+U`), and deletes (`-D`, carrying the
/// row removed).
export const RowKind = Object.freeze({
  INSERT: "+I",
  UPDATE_BEFORE: "-U",
  UPDATE_AFTER: "+U",
  DELETE: "-D",
});

// The WIT `row-kind` cases (jco's strings) and the short forms, both ways.
const KIND_OF_WIT = { insert: "+I", "update-before": "-U", "update-after": "+U", delete: "-D" };
const WIT_OF_KIND = { "+I": "insert", "-U": "update-before", "+U": "update-after", "-D": "delete" };

/// The WIT case of a short kind (`RowKind.DELETE`, "-D"); throws a
/// `TypeError` naming anything else.
function witKind(kind) {
  const w = WIT_OF_KIND[kind];
  if (w === undefined) {
    throw new TypeError(`a record kind is one of RowKind's: "+I", "-U", "+U", "-D", not ${JSON.stringify(kind)}`);
  }
  return w;
}

/// One input record: a view into the batch the host sent. The SDK moves one
/// object from record to record: it is valid only during the callback that
/// received it (copy what you keep).
export class Record {
  constructor(input) {
    this._in = input;
    this._meta = null;
    this._text = undefined;
  }

  _at(meta) {
    this._meta = meta;
    this._text = undefined;
    return this;
  }

  /// The value's bytes (with the JSON format, one JSON document).
  value() {
    return this._in.bytes(this._meta.value);
  }

  /// The value as text; throws if it is not UTF-8.
  text() {
    let t = this._text;
    if (t === undefined) {
      try {
        t = this._in.text(this._meta.value);
      } catch (e) {
        throw new Error(`record value is not UTF-8: ${message(e)}`);
      }
      this._text = t;
    }
    return t;
  }

  /// The value parsed as JSON; throws (the record's error) if it is not.
  json() {
    let t = this._text;
    if (t === undefined) t = this.text();
    return JSON.parse(t);
  }

  /// The key's bytes (set by a `key_by` or by the source), or `null`.
  key() {
    const k = this._meta.key;
    return k === undefined ? null : this._in.bytes(k);
  }

  /// The key as text (with a JSON-pointer `key_by`, the JSON text of the
  /// key field: `"c-1"` with its quotes), or `null`.
  keyText() {
    const k = this._meta.key;
    if (k === undefined) return null;
    try {
      return this._in.text(k);
    } catch {
      return UTF8_LOSSY.decode(this._in.bytes(k));
    }
  }

  /// Event time in epoch milliseconds, or `null`.
  timestamp() {
    const t = this._meta.timestamp;
    return t === undefined ? null : Number(t);
  }

  /// The record's changelog kind, one of `RowKind`'s (`"+I"` for every
  /// record of an append-only stream).
  kind() {
    return KIND_OF_WIT[this._meta.kind];
  }

  /// Headers as `[name, value]` byte arrays, in order.
  headers() {
    const m = this._meta;
    const hs = this._in.headers;
    const out = [];
    for (let i = m.headersStart, end = i + m.headersLen; i < end; i++) {
      out.push([this._in.bytes(hs[i].name), this._in.bytes(hs[i].value)]);
    }
    return out;
  }

  /// The value of the first header called `name` (string or bytes), or
  /// `null`.
  header(name) {
    const want = typeof name === "string" ? ENCODER.encode(name) : name;
    for (const [n, v] of this.headers()) {
      if (bytesEqual(n, want)) return v;
    }
    return null;
  }
}

function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function isBytes(v) {
  // Byte arrays from the WIT bindings come from another realm: no instanceof.
  return ArrayBuffer.isView(v) && v.BYTES_PER_ELEMENT === 1;
}

// ---------------------------------------------------------------------------
// Output buffers

/// A growable Uint32Array (origins, ports): lowered by a single copy.
class U32s {
  constructor() {
    this.a = new Uint32Array(1024);
    this.n = 0;
  }
  grow() {
    const b = new Uint32Array(this.a.length * 2);
    b.set(this.a);
    this.a = b;
  }
  push(x) {
    if (this.n === this.a.length) this.grow();
    this.a[this.n++] = x;
  }
  view() {
    return this.a.subarray(0, this.n);
  }
}

/// The data buffer of an outgoing batch (or byte list): pieces appended in
/// order, each with its span.
///
/// Pieces are kept as one JS string while they are text (the common case)
/// and encoded to UTF-8 once, in `finish`: one native call instead of one
/// per piece. Spans count UTF-16 units until then; when the text turns out
/// not to be ASCII, `finish` recomputes them in bytes. A byte piece that is
/// not UTF-8 switches the buffer to bytes for good.
class OutData {
  constructor(capacity = 1 << 16) {
    this.buf = new Uint8Array(capacity);
    this.reset();
  }

  reset() {
    /// Text mode: the pieces so far, and their length in UTF-16 units.
    this.s = "";
    this.n = 0;
    /// Bytes mode (`bytes`): the length used in `buf`.
    this.bytes = false;
    this.len = 0;
    /// Every span handed out, in order: pieces are contiguous.
    this.spans = [];
  }

  /// Appends a string (as UTF-8); returns its span.
  text(str) {
    let span;
    if (this.bytes) {
      span = this._encode(str);
    } else {
      span = { offset: this.n, len: str.length };
      this.s += str;
      this.n += str.length;
    }
    this.spans.push(span);
    return span;
  }

  /// Appends bytes; returns their span.
  raw(b) {
    if (!this.bytes) {
      let str;
      try {
        str = UTF8.decode(b);
      } catch {
        str = undefined;
      }
      if (str !== undefined) return this.text(str);
      this._toBytes();
    }
    const span = this._copy(b);
    this.spans.push(span);
    return span;
  }

  /// Appends a record value: a string (UTF-8) or bytes.
  value(v) {
    if (typeof v === "string") return this.text(v);
    if (isBytes(v)) return this.raw(v);
    throw new TypeError("a record value must be a string or a Uint8Array (use emitJson for other values)");
  }

  /// The length so far (in the unit spans count).
  size() {
    return this.bytes ? this.len : this.n;
  }

  /// A position to roll back to: the number of pieces.
  mark() {
    return this.spans.length;
  }

  rollback(mark) {
    const spans = this.spans;
    if (spans.length === mark) return;
    const end = mark === 0 ? 0 : spans[mark - 1].offset + spans[mark - 1].len;
    spans.length = mark;
    if (this.bytes) {
      this.len = end;
    } else {
      this.s = this.s.substring(0, end);
      this.n = end;
    }
  }

  _reserve(n) {
    const need = this.len + n;
    if (need > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < need) size *= 2;
      const b = new Uint8Array(size);
      b.set(this.buf.subarray(0, this.len));
      this.buf = b;
    }
  }

  _copy(b) {
    const offset = this.len;
    this._reserve(b.length);
    this.buf.set(b, offset);
    this.len = offset + b.length;
    return { offset, len: b.length };
  }

  _encode(str) {
    const offset = this.len;
    this._reserve(str.length * 3);
    const { written } = ENCODER.encodeInto(str, this.buf.subarray(offset));
    this.len = offset + written;
    return { offset, len: written };
  }

  /// Encodes the text so far into `buf` and makes every span count bytes.
  _toBytes() {
    const s = this.s;
    this.len = 0;
    this._reserve(s.length * 3);
    const { written } = ENCODER.encodeInto(s, this.buf);
    if (written !== s.length) {
      // Not ASCII: each span's length in bytes.
      let at = 0;
      for (const span of this.spans) {
        const piece = s.substring(span.offset, span.offset + span.len);
        const n = ENCODER.encodeInto(piece, this.buf.subarray(at)).written;
        span.offset = at;
        span.len = n;
        at += n;
      }
    }
    this.len = written;
    this.s = "";
    this.n = 0;
    this.bytes = true;
  }

  /// The bytes of all pieces (a view of an internal buffer, valid until the
  /// next reset).
  finish() {
    if (!this.bytes) {
      if (this.n === 0) return this.buf.subarray(0, 0);
      this._toBytes();
    }
    return this.buf.subarray(0, this.len);
  }
}

// ---------------------------------------------------------------------------
// Transform

/// Where a transform emits the records it makes from the current input
/// record. `emit`, `emitJson` and `forward` give the new record the input's
/// key, timestamp, headers and changelog kind (a map of a changelog stays
/// one: a delete of a row maps to the delete of the mapped row);
/// `emitRecord` sets them all.
class Output {
  constructor(input) {
    this._in = input;
    this._data = new OutData();
    this._records = [];
    this._headers = [];
    this._origins = new U32s();
    this._meta = null;
    this._origin = 0;
  }

  _reset() {
    this._data.reset();
    this._records = [];
    this._headers = [];
    this._origins.n = 0;
  }

  /// Emits a value (a string, as UTF-8, or a Uint8Array).
  emit(value) {
    this._likeInput(typeof value === "string" ? this._data.text(value) : this._data.value(value));
  }

  /// Emits `value` encoded as JSON (`JSON.stringify`).
  emitJson(value) {
    this._likeInput(this._data.text(toJson(value)));
  }

  /// Emits the input record's value unchanged.
  forward() {
    this._likeInput(this._piece(this._meta.value));
  }

  /// Emits a record built from `{key, value, timestamp, headers, kind}`:
  /// `key` and `value` strings or bytes (`key` null for none), `timestamp`
  /// epoch ms or null (not "the input's": pass `record.timestamp()` to keep
  /// it), `headers` `[name, value]` pairs of strings or bytes, `kind` one of
  /// `RowKind`'s (an insert by default, not "the input's").
  emitRecord({ key = null, value = "", timestamp = null, headers = [], kind = RowKind.INSERT }) {
    if (timestamp !== null && timestamp !== undefined && !Number.isSafeInteger(timestamp)) {
      throw new TypeError(`timestamp ${timestamp} is not an integer number of milliseconds`);
    }
    const wk = witKind(kind);
    const d = this._data;
    const v = d.value(value);
    const k = key === null || key === undefined ? undefined : d.value(key);
    const start = this._headers.length;
    for (const [n, hv] of headers) {
      this._headers.push({ name: d.value(n), value: d.value(hv) });
    }
    this._records.push({
      key: k,
      value: v,
      timestamp: timestamp ?? undefined,
      headersStart: start,
      headersLen: this._headers.length - start,
      kind: wk,
    });
    this._origins.push(this._origin);
  }

  /// A piece of the input batch, appended to the output data.
  _piece(span) {
    const input = this._in;
    let all = input.all;
    if (all === undefined) all = input.decodeAll();
    if (all !== null && !this._data.bytes) {
      return this._data.text(all.substring(span.offset, span.offset + span.len));
    }
    return this._data.raw(input.bytes(span));
  }

  _likeInput(value) {
    const m = this._meta;
    const key = m.key === undefined ? undefined : this._piece(m.key);
    const start = this._headers.length;
    if (m.headersLen !== 0) {
      const hs = this._in.headers;
      for (let i = m.headersStart, end = i + m.headersLen; i < end; i++) {
        this._headers.push({ name: this._piece(hs[i].name), value: this._piece(hs[i].value) });
      }
    }
    this._records.push({
      key,
      value,
      timestamp: m.timestamp,
      headersStart: start,
      headersLen: this._headers.length - start,
      kind: m.kind,
    });
    const o = this._origins;
    if (o.n === o.a.length) o.grow();
    o.a[o.n++] = this._origin;
  }
}

/// The `transform` export of a map, filter or flat-map operator.
///
/// `op` has `process(record, out)` and optionally `open(config)`; both are
/// called with `this` = `op`, so `open` can keep settings on it. `open`
/// throwing stops the job with the message. `process` throwing sends that
/// input record to the dead-letter sink with the message; what it emitted
/// is discarded, and the batch goes on.
export function defineTransform(op) {
  return transformExport(op, "defineTransform");
}

/// Calls `op.open(config)` if it has one: the `open` export's result.
function openOp(op, raw) {
  try {
    if (typeof op.open === "function") op.open(new Config(raw));
  } catch (e) {
    return { tag: "err", val: message(e) };
  }
  return { tag: "ok", val: undefined };
}

/// The export of `defineTransform` and `defineEnricher` (`transform` and
/// `enricher` have the same functions and output).
function transformExport(op, what) {
  if (typeof op?.process !== "function") {
    throw new TypeError(`${what}: the operator needs a process(record, out) method`);
  }
  let opened = false;
  const input = new Input();
  const record = new Record(input);
  const out = new Output(input);
  return {
    open(raw) {
      const r = openOp(op, raw);
      opened = r.tag === "ok";
      return r;
    },

    process(batch) {
      const metas = batch.records;
      const n = metas.length;
      const errors = [];
      out._reset();
      if (!opened) {
        for (let i = 0; i < n; i++) errors.push({ index: i, message: NOT_OPENED });
      } else {
        input.reset(batch.data, batch.headers);
        const data = out._data;
        const records = out._records;
        const headers = out._headers;
        const origins = out._origins;
        for (let i = 0; i < n; i++) {
          const meta = metas[i];
          out._meta = meta;
          out._origin = i;
          const mark = data.spans.length;
          const recs = records.length;
          const hdrs = headers.length;
          try {
            op.process(record._at(meta), out);
          } catch (e) {
            data.rollback(mark);
            records.length = recs;
            headers.length = hdrs;
            origins.n = recs;
            errors.push({ index: i, message: message(e) });
          }
        }
      }
      return {
        records: { data: out._data.finish(), records: out._records, headers: out._headers },
        origins: out._origins.view(),
        errors,
      };
    },
  };
}

// ---------------------------------------------------------------------------
// Async enricher: outbound HTTP and the `enricher` export

/// `s` as Rust's `{:?}` writes a string (quoted, `\"`, `\\`, `\n`, `\u{1}`):
/// for error messages like a Rust module's.
function debugString(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c === 0) out += "\\0";
    else if (c < 0x20 || (c >= 0x7f && c < 0xa0)) out += `\\u{${c.toString(16)}}`;
    else out += ch;
  }
  return out + '"';
}

/// The start of a body (60 bytes at most, lossy UTF-8), quoted, as the Rust
/// SDK quotes it in its errors.
function bodyStart(body) {
  return debugString(UTF8_LOSSY.decode(body.subarray(0, Math.min(body.length, 60))));
}

/// A response of `http.fetch`: any status (check it, or call `ok()`),
/// `headers` as `[name, value]` strings in order, and the whole `body`
/// (a Uint8Array).
class HttpResponse {
  constructor(status, headers, body) {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }

  /// The body as text; throws if it is not UTF-8.
  text() {
    try {
      return UTF8.decode(this.body);
    } catch (e) {
      throw new Error(`the response body is not UTF-8: ${message(e)}`);
    }
  }

  /// The body parsed as JSON. `check(value)`, if given, is called with the
  /// parsed value and its result returned; what it throws (an Error or a
  /// string: "missing field `tier`") counts as the body not being the JSON
  /// expected, like serde's typed parse in Rust. The error quotes the start
  /// of the body:
  /// `the response body is not the JSON expected (...): "<html>..."`.
  json(check) {
    let value;
    try {
      value = JSON.parse(UTF8.decode(this.body));
      if (typeof check === "function") value = check(value);
    } catch (e) {
      // SpiderMonkey's messages start with where they come from.
      const why = message(e).replace(/^JSON\.parse: /, "");
      throw new Error(`the response body is not the JSON expected (${why}): ${bodyStart(this.body)}`);
    }
    return value;
  }

  /// This response if its status is 2xx; else throws `HTTP status 500:
  /// "<start of the body>"`.
  ok() {
    if (this.status >= 200 && this.status < 300) return this;
    throw new Error(`HTTP status ${this.status}: ${bodyStart(this.body)}`);
  }

  /// The value of the first header called `name` (case-insensitive), or
  /// `null`.
  header(name) {
    const want = String(name).toLowerCase();
    for (const [n, v] of this.headers) {
      if (n.toLowerCase() === want) return v;
    }
    return null;
  }
}

function requestHeaders(headers) {
  if (headers === undefined || headers === null) return [];
  const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
  return pairs.map((h) => {
    if (!Array.isArray(h) || h.length !== 2) {
      throw new TypeError("request headers must be [name, value] pairs or an object of name: value");
    }
    return [String(h[0]), String(h[1])];
  });
}

function requestBody(body) {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (typeof body === "string") return ENCODER.encode(body);
  if (isBytes(body)) return body;
  throw new TypeError("a request body must be a string or a Uint8Array (JSON.stringify other values)");
}

/// Outbound HTTP, for async enrichers (world `enricher-operator`;
/// the host's `sluice:operator/http`, not the web's `fetch`).
///
/// Plain `http://` only, and only to the hosts and ports the pipeline spec
/// grants the operator (`grants.network`): a request anywhere else stops
/// the job with an error naming the operator and the host. The host bounds
/// each enrichment by `enricher.timeout`, so these have no timeout of their
/// own. The call blocks: the host runs up to `enricher.capacity` instances at
/// once instead.
export const http = {
  /// Sends a request and reads the whole response. `headers`: `[name,
  /// value]` pairs or an object; `body`: a string (UTF-8) or bytes. Throws
  /// on a transport failure (connection refused, closed, not HTTP) with the
  /// host's message; any status, 500 included, is a response.
  fetch(method, url, headers = [], body = null) {
    const request = {
      method: String(method),
      url: String(url),
      headers: requestHeaders(headers),
      body: requestBody(body),
    };
    let r;
    try {
      r = hostFetch(request);
    } catch (e) {
      // The bindings throw the `err` string as the error's payload.
      const payload = e !== null && typeof e === "object" ? e.payload : undefined;
      throw new Error(typeof payload === "string" ? payload : message(e));
    }
    return new HttpResponse(r.status, r.headers, r.body);
  },

  /// `GET url` (with optional `headers`).
  get(url, headers = []) {
    return http.fetch("GET", url, headers, null);
  },

  Response: HttpResponse,
};

/// The `enricher` export of an async enricher (Flink's Async I/O; world
/// `enricher-operator`): `export const enricher = defineEnricher(op)`.
///
/// `op` is a transform's (`open(config)`, `process(record, out)`, see
/// `defineTransform`); `process` typically asks a service with `http.get`
/// and emits the record enriched. The host calls it with one record at a
/// time, up to the spec's `enricher.capacity` calls at once on as many
/// instances, so blocking in `http.fetch` does not hold up the pipeline.
/// Throwing from `process` fails this attempt: the host retries the record
/// with backoff (`enricher.retries`), then sends it to the dead-letter sink
/// with the message.
export function defineEnricher(op) {
  return transformExport(op, "defineEnricher");
}

// ---------------------------------------------------------------------------
// Window aggregate: the `aggregate` export

/// The `aggregate` export of a window's incremental aggregate (Flink's
/// `AggregateFunction`).
///
/// `op` has `create()` (the accumulator of an empty window), `add(acc,
/// record)`, `merge(acc, other)` and `result(acc)`, each returning the new
/// value, and optionally `open(config)`; all are called with `this` = `op`.
/// The host keeps one accumulator per window and key, as JSON (the Rust
/// SDK's encoding of its `Acc`, so either reads the other's savepoints).
/// `result` is what the window emits: an object's fields join the window's
/// output row, any other value becomes the field `result`.
///
/// `add` throwing sends that record to the dead-letter sink and leaves its
/// accumulator as it was before that record: the SDK decodes it again and
/// replays the call's earlier adds to it (so `add` must be deterministic).
/// `open`, `merge` or `result` throwing stops the job with the message.
export function defineAggregate(op) {
  for (const f of ["create", "add", "merge", "result"]) {
    if (typeof op?.[f] !== "function") {
      throw new TypeError(`defineAggregate: the operator needs a ${f} method`);
    }
  }
  let opened = false;
  const input = new Input();
  const record = new Record(input);
  const items = (list) => list.spans.map((s) => list.data.subarray(s.offset, s.offset + s.len));
  const decode = (b) => {
    try {
      return JSON.parse(UTF8.decode(b));
    } catch (e) {
      // The host hands back what it was given: a bug, or a module that
      // changed its accumulator's layout.
      throw new Error(`an accumulator does not decode: ${message(e)}`);
    }
  };
  /// A byte-list of encoded accumulators: strings (JSON) or bytes as given.
  const list = (pieces) => {
    const d = new OutData(256);
    const spans = pieces.map((p) => (typeof p === "string" ? d.text(p) : d.raw(p)));
    return { data: d.finish(), spans };
  };
  const mustBeOpen = () => {
    if (!opened) throw new Error(NOT_OPENED);
  };
  return {
    open(raw) {
      const r = openOp(op, raw);
      opened = r.tag === "ok";
      return r;
    },

    createAccumulator() {
      mustBeOpen();
      return ENCODER.encode(toJson(op.create()));
    },

    add(accumulators, batch, targets) {
      const metas = batch.records;
      const errors = [];
      if (!opened) {
        for (let i = 0; i < metas.length; i++) errors.push({ index: i, message: NOT_OPENED });
        return { accumulators, errors };
      }
      const raw = items(accumulators);
      if (targets.length !== metas.length) {
        throw new Error(`${targets.length} targets for ${metas.length} records`);
      }
      input.reset(batch.data, batch.headers);
      const live = new Map(); // accumulator index -> its value
      const added = new Map(); // accumulator index -> records added to it in this call
      for (let i = 0; i < metas.length; i++) {
        const t = targets[i];
        if (t >= raw.length) {
          throw new Error(`target ${t} of record ${i} is out of range (${raw.length} accumulators)`);
        }
        const acc = live.has(t) ? live.get(t) : decode(raw[t]);
        try {
          live.set(t, op.add(acc, record._at(metas[i])));
          if (!added.has(t)) added.set(t, []);
          added.get(t).push(i);
        } catch (e) {
          errors.push({ index: i, message: message(e) });
          const done = added.get(t);
          if (done === undefined) {
            live.delete(t);
          } else {
            let again = decode(raw[t]);
            for (const j of done) again = op.add(again, record._at(metas[j]));
            live.set(t, again);
          }
        }
      }
      const out = raw.map((b, k) => (live.has(k) ? toJson(live.get(k)) : b));
      return { accumulators: list(out), errors };
    },

    merge(accumulators, groups) {
      mustBeOpen();
      const raw = items(accumulators);
      const out = [];
      for (const g of groups) {
        if (g.len === 0 || g.offset + g.len > raw.length) {
          throw new Error(`merge group ${g.offset}..+${g.len} of ${raw.length} accumulators`);
        }
        let acc = decode(raw[g.offset]);
        try {
          for (let k = g.offset + 1; k < g.offset + g.len; k++) acc = op.merge(acc, decode(raw[k]));
          out.push(toJson(acc));
        } catch (e) {
          return { tag: "err", val: `merge: ${message(e)}` };
        }
      }
      return { tag: "ok", val: list(out) };
    },

    getResult(accumulators) {
      mustBeOpen();
      const out = [];
      for (const b of items(accumulators)) {
        const acc = decode(b);
        try {
          out.push(toJson(op.result(acc)));
        } catch (e) {
          return { tag: "err", val: `result: ${message(e)}` };
        }
      }
      return { tag: "ok", val: list(out) };
    },
  };
}

// ---------------------------------------------------------------------------
// Full-window function: the `window-function` export

/// JSON text that a window's result carries as it is (see `f64`).
class JsonText {
  constructor(text) {
    this.text = text;
  }
}

/// `x` in a window's result, written as serde_json (Rust) writes an `f64`
/// (`410.0`, where a JS number would give `410`): for results byte-equal to
/// a Rust module's.
export function f64(x) {
  return new JsonText(jsonNumber(x));
}

/// `value` as JSON, with `f64(...)` values written as their text.
function resultJson(value) {
  if (value instanceof JsonText) return value.text;
  if (Array.isArray(value)) {
    return `[${value.map((v) => (v === undefined || typeof v === "function" ? "null" : resultJson(v))).join(",")}]`;
  }
  if (value !== null && typeof value === "object" && typeof value.toJSON !== "function") {
    const parts = [];
    for (const k of Object.keys(value)) {
      const v = value[k];
      if (v === undefined || typeof v === "function") continue;
      parts.push(`${JSON.stringify(k)}:${resultJson(v)}`);
    }
    return `{${parts.join(",")}}`;
  }
  return toJson(value);
}

/// The `windowFunction` export of a full-window function (Flink's
/// `ProcessWindowFunction`), for results an incremental aggregate cannot
/// compute (percentiles, medians, top-n).
///
/// `op` has `process(window, records)` and optionally `open(config)`, called
/// with `this` = `op`. `window` is `{ key, keyText(), start, end }` (the key's
/// bytes; start inclusive, end exclusive, epoch ms) and `records` the
/// window's records in arrival order (valid during the call only). The
/// result's fields join the window's output row (any other value becomes the
/// field `result`); wrap floats in `f64(x)` to write them as Rust does. A
/// throw stops the job with the message, naming the window: it concerns a
/// whole window, not one record.
export function defineWindowFunction(op) {
  if (typeof op?.process !== "function") {
    throw new TypeError("defineWindowFunction: the operator needs a process(window, records) method");
  }
  let opened = false;
  const input = new Input();
  return {
    open(raw) {
      const r = openOp(op, raw);
      opened = r.tag === "ok";
      return r;
    },

    process(windows, keys, batch) {
      if (!opened) return { tag: "err", val: NOT_OPENED };
      input.reset(batch.data, batch.headers);
      const metas = batch.records;
      const out = [];
      for (const w of windows) {
        const first = w.records.offset;
        const end = first + w.records.len;
        if (end > metas.length) {
          return { tag: "err", val: "malformed call from the host: window records out of range" };
        }
        const records = [];
        for (let i = first; i < end; i++) records.push(new Record(input)._at(metas[i]));
        const key = keys.subarray(w.key.offset, w.key.offset + w.key.len);
        const window = { key, keyText: () => UTF8_LOSSY.decode(key), start: Number(w.start), end: Number(w.end) };
        try {
          out.push(resultJson(op.process(window, records)));
        } catch (e) {
          return {
            tag: "err",
            val: `window [${window.start}, ${window.end}) of key ${window.keyText()}: ${message(e)}`,
          };
        }
      }
      return { tag: "ok", val: byteList(out) };
    },
  };
}

// ---------------------------------------------------------------------------
// Keyed process: states and setup

/// A value state: one JSON value per key, carried in the call.
class ValueState {
  constructor(handle, slot) {
    this.handle = handle;
    this.slot = slot;
  }
  /// The current key's value, or `undefined`.
  get(ctx) {
    const call = ctx._call;
    const i = ctx._key * call.nvs + this.slot;
    const c = call.cache[i];
    return c !== undefined ? c : call.readValue(i, this.handle);
  }
  /// Sets the current key's value (any JSON-encodable value).
  set(ctx, value) {
    ctx._call.setValue(ctx._key * ctx._call.nvs + this.slot, toJson(value), value);
  }
  /// Removes the current key's value.
  clear(ctx) {
    ctx._call.setValue(ctx._key * ctx._call.nvs + this.slot, null, undefined);
  }
}

function decodeItem(what, data, span) {
  const text = UTF8_LOSSY.decode(data.subarray(span.offset, span.offset + span.len));
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} holds a value this operator cannot read: ${message(e)}`);
  }
}

function byteList(texts) {
  const d = new OutData(256);
  const spans = [];
  for (const t of texts) spans.push(d.text(t));
  return { data: d.finish(), spans };
}

/// A list of JSON values per key; every access is one host call. Writes
/// are not undone when the record fails (they reached the host already).
class ListState {
  constructor(handle) {
    this.handle = handle;
  }
  /// The current key's elements, in the order they were added.
  get(ctx) {
    const l = hostListGet(this.handle, ctx._key);
    return l.spans.map((s) => decodeItem("a list state", l.data, s));
  }
  add(ctx, value) {
    hostListAdd(this.handle, ctx._key, ENCODER.encode(toJson(value)));
  }
  /// Replaces the current key's elements (an empty array clears them).
  update(ctx, values) {
    hostListUpdate(this.handle, ctx._key, byteList(values.map(toJson)));
  }
  clear(ctx) {
    hostClear(this.handle, ctx._key);
  }
}

/// A map from JSON keys to JSON values per key; user keys are stored as
/// their JSON text and `entries` returns them in the order of those bytes.
class MapState {
  constructor(handle) {
    this.handle = handle;
  }
  get(ctx, key) {
    const v = hostMapGet(this.handle, ctx._key, ENCODER.encode(toJson(key)));
    return v === undefined ? undefined : decodeItem("a map state", v, { offset: 0, len: v.length });
  }
  contains(ctx, key) {
    return hostMapGet(this.handle, ctx._key, ENCODER.encode(toJson(key))) !== undefined;
  }
  put(ctx, key, value) {
    hostMapPut(this.handle, ctx._key, ENCODER.encode(toJson(key)), ENCODER.encode(toJson(value)));
  }
  remove(ctx, key) {
    hostMapRemove(this.handle, ctx._key, ENCODER.encode(toJson(key)));
  }
  /// All `[key, value]` entries of the current key.
  entries(ctx) {
    const [keys, values] = hostMapEntries(this.handle, ctx._key);
    const out = [];
    for (let i = 0; i < keys.spans.length; i++) {
      out.push([
        decodeItem("a map state key", keys.data, keys.spans[i]),
        decodeItem("a map state", values.data, values.spans[i]),
      ]);
    }
    return out;
  }
  clear(ctx) {
    hostClear(this.handle, ctx._key);
  }
}

/// A handle to a named side output (`operator-uid.name` in the spec).
class SideOutput {
  constructor(port, name) {
    this.port = port;
    this.name = name;
  }
}

function declare(name, kind, options = {}) {
  const { ttl = null, version = 1 } = options;
  if (ttl !== null && !(Number.isSafeInteger(ttl) && ttl >= 0)) {
    throw new TypeError(`state \`${name}\`: ttl must be a whole number of milliseconds`);
  }
  if (!(Number.isSafeInteger(version) && version >= 0 && version <= 0xffffffff)) {
    throw new TypeError(`state \`${name}\`: version must be a whole number`);
  }
  try {
    return hostDeclare({ name, kind, ttlMs: ttl === null ? undefined : ttl, version });
  } catch (e) {
    throw new Error(message(e));
  }
}

/// What `open` declares: states (options `{ttl, version}`: `ttl` in
/// milliseconds of processing time since the last write, `version` the
/// layout of the state's JSON, from 1) and side outputs.
class Setup {
  constructor() {
    this._handles = [];
  }
  valueState(name, options) {
    const handle = declare(name, "value", options);
    const slot = this._handles.length;
    this._handles.push(handle);
    return new ValueState(handle, slot);
  }
  listState(name, options) {
    return new ListState(declare(name, "list", options));
  }
  mapState(name, options) {
    return new MapState(declare(name, "map", options));
  }
  sideOutput(name) {
    return new SideOutput(hostSideOutput(name), name);
  }
}

// ---------------------------------------------------------------------------
// Keyed process: one call

const EVENT_TIME = "event-time";
const PROCESSING_TIME = "processing-time";

/// Timers that may still fire in this call, of one domain, in (time, key
/// index) order: a sorted array of times and one of keys, consumed from
/// `head`.
class Pending {
  constructor() {
    this.t = [];
    this.k = [];
    this.head = 0;
  }

  reset() {
    this.t = [];
    this.k = [];
    this.head = 0;
  }

  /// Sorts the timers by (time, key index), the order the Rust SDK fires
  /// them in (the host's is by time and key bytes).
  sort() {
    const t = this.t;
    const k = this.k;
    let sorted = true;
    for (let i = 1; i < t.length; i++) {
      if (t[i - 1] > t[i] || (t[i - 1] === t[i] && k[i - 1] > k[i])) {
        sorted = false;
        break;
      }
    }
    if (sorted) return;
    const order = t.map((_, i) => i);
    order.sort((a, b) => t[a] - t[b] || k[a] - k[b]);
    this.t = order.map((i) => t[i]);
    this.k = order.map((i) => k[i]);
  }

  /// The index of (time, key), or of where it would go.
  find(time, key) {
    let lo = this.head;
    let hi = this.t.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const mt = this.t[mid];
      if (mt < time || (mt === time && this.k[mid] < key)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  has(time, key) {
    const t = this.t;
    const n = t.length;
    // Most timers a record touches are later than every pending one.
    if (this.head === n || time > t[n - 1] || time < t[this.head]) return false;
    const i = this.find(time, key);
    return i < this.t.length && this.t[i] === time && this.k[i] === key;
  }

  insert(time, key) {
    const i = this.find(time, key);
    if (i < this.t.length && this.t[i] === time && this.k[i] === key) return;
    if (i === this.t.length) {
      this.t.push(time);
      this.k.push(key);
    } else {
      this.t.splice(i, 0, time);
      this.k.splice(i, 0, key);
    }
  }

  remove(time, key) {
    const i = this.find(time, key);
    if (i < this.t.length && this.t[i] === time && this.k[i] === key) {
      this.t.splice(i, 1);
      this.k.splice(i, 1);
    }
  }
}

/// Where the current record or timer is processed: its key, time, state
/// scope, timers and outputs. The SDK moves one object from event to event:
/// do not keep it past the callback.
class Context {
  constructor(call) {
    this._call = call;
    this._key = 0;
    this._origin = NO_ORIGIN;
    this._timestamp = undefined;
    this._watermark = NO_WATERMARK;
  }

  /// The current key's bytes.
  key() {
    return this._call.keyBytes(this._key);
  }

  /// The current key as text (with a JSON-pointer `key_by`, the key field's
  /// JSON text: `"c-1"` with its quotes).
  keyText() {
    const t = this._call.keyTexts[this._key];
    return t !== undefined ? t : this._call.keyText(this._key);
  }

  /// The event-time watermark (`NO_WATERMARK` before the first one).
  currentWatermark() {
    return this._watermark;
  }

  /// The host's processing time for this call, epoch milliseconds.
  currentProcessingTime() {
    return this._call.processingTime;
  }

  /// Registers an event-time timer for the current key; it fires once the
  /// watermark reaches `time`. One timer per key and time: registering it
  /// again does nothing.
  registerEventTimeTimer(time) {
    this._call.changeTimer(this._key, time, EVENT_TIME, true);
  }

  /// Deletes an event-time timer of the current key (nothing if none).
  deleteEventTimeTimer(time) {
    this._call.changeTimer(this._key, time, EVENT_TIME, false);
  }

  registerProcessingTimeTimer(time) {
    this._call.changeTimer(this._key, time, PROCESSING_TIME, true);
  }

  deleteProcessingTimeTimer(time) {
    this._call.changeTimer(this._key, time, PROCESSING_TIME, false);
  }

  /// Emits a value (a string, as UTF-8, or bytes) to the main output, with
  /// the current key and timestamp (the record's, or an event-time timer's
  /// time).
  emit(value) {
    const d = this._call.out;
    this._call.emit(this, 0, typeof value === "string" ? d.text(value) : d.value(value));
  }

  /// Emits `value` as JSON to the main output.
  emitJson(value) {
    this._call.emit(this, 0, this._call.out.text(toJson(value)));
  }

  /// Emits a value (string or bytes) to a side output.
  emitTo(side, value) {
    const d = this._call.out;
    this._call.emit(this, side.port, typeof value === "string" ? d.text(value) : d.value(value));
  }

  /// Emits `value` as JSON to a side output.
  emitJsonTo(side, value) {
    this._call.emit(this, side.port, this._call.out.text(toJson(value)));
  }

  /// Emits `value` as JSON to the main output as a change of kind `kind`,
  /// one of `RowKind`'s (the other `emit` functions emit inserts): a
  /// function that keeps a result per key retracts the old one with
  /// `RowKind.UPDATE_BEFORE` and adds the new one with
  /// `RowKind.UPDATE_AFTER`. Only a module whose section in the spec says
  /// `changelog: true` may emit anything but inserts; the host fails the
  /// job otherwise.
  emitChange(kind, value) {
    const wk = witKind(kind);
    this._call.emit(this, 0, this._call.out.text(toJson(value)), wk);
  }
}

/// What one `process` call accumulates (Rust: `process::Call`). One object
/// per operator, reset for each call.
class Call {
  constructor(handles) {
    this.handles = handles;
    this.nvs = handles.length;
    this.out = new OutData();
    this.valueData = new OutData();
    this.origins = new U32s();
    this.ports = new U32s();
    this.event = new Pending();
    this.processing = new Pending();
  }

  reset(context) {
    const keys = context.keys;
    const slots = keys.spans.length * this.nvs;
    this.keys = keys;
    this.keyTexts = [];
    /// Per key: the span of its bytes in the output data, once written.
    this.keySpans = [];
    this.values = new Input();
    this.values.reset(context.values.data, null);
    this.valueSpans = context.values.spans;
    /// Per slot: undefined (the input's value), null (cleared) or the JSON
    /// written in this call.
    this.written = new Array(slots);
    /// Per slot: the value when known and a primitive (safe to share).
    this.cache = new Array(slots);
    this.processingTime = Number(context.processingTime);
    this.endWatermark = Number(context.endWatermark);
    this.event.reset();
    this.processing.reset();
    for (const t of context.timers) {
      const p = t.domain === EVENT_TIME ? this.event : this.processing;
      p.t.push(Number(t.time));
      p.k.push(t.key);
    }
    this.event.sort();
    this.processing.sort();
    this.changes = [];
    this.out.reset();
    this.records = [];
    this.origins.n = 0;
    this.ports.n = 0;
    /// Undo log of the current record: (slot, written, cache) triples.
    this.undoSlots = [];
    /// Undo log of pending-timer edits: (pending, time, key, was there).
    this.undoTimers = [];
  }

  keyBytes(k) {
    const s = this.keys.spans[k];
    return this.keys.data.subarray(s.offset, s.offset + s.len);
  }

  keyText(k) {
    let t = this.keyTexts[k];
    if (t === undefined) {
      t = UTF8_LOSSY.decode(this.keyBytes(k));
      this.keyTexts[k] = t;
    }
    return t;
  }

  /// Slot `i`'s value when not cached.
  readValue(i, handle) {
    const w = this.written[i];
    let v;
    if (w === undefined) {
      const s = this.valueSpans[i];
      if (s.offset === ABSENT) return undefined;
      let text;
      try {
        text = this.values.text(s);
        v = JSON.parse(text);
      } catch (e) {
        throw new Error(`value state #${handle} holds a value this operator cannot read: ${message(e)}`);
      }
    } else if (w === null) {
      return undefined;
    } else {
      v = JSON.parse(w);
    }
    if (v === null || typeof v !== "object") this.cache[i] = v;
    return v;
  }

  setValue(i, json, value) {
    this.undoSlots.push(i, this.written[i], this.cache[i]);
    this.written[i] = json;
    this.cache[i] = json !== null && (value === null || typeof value !== "object") ? value : undefined;
  }

  changeTimer(key, time, domain, registered) {
    if (typeof time !== "number" || time % 1 !== 0) {
      throw new TypeError(`timer time ${time} is not an integer number of milliseconds`);
    }
    const p = domain === EVENT_TIME ? this.event : this.processing;
    // A timer registered now may fire within this call if the call's
    // watermark already passes it; a processing-time timer never does.
    const was = p.has(time, key);
    if (registered) {
      if (!was && domain === EVENT_TIME && time <= this.endWatermark) p.insert(time, key);
    } else if (was) {
      p.remove(time, key);
    }
    this.undoTimers.push(p, time, key, was);
    this.changes.push({ timer: { key, time, domain }, registered });
  }

  emit(ctx, port, value, kind = "insert") {
    const k = ctx._key;
    let key = this.keySpans[k];
    if (key === undefined) {
      key = this.out.raw(this.keyBytes(k));
      this.keySpans[k] = key;
    }
    this.records.push({ key, value, timestamp: ctx._timestamp, headersStart: 0, headersLen: 0, kind });
    this.origins.push(ctx._origin);
    this.ports.push(port);
  }

  /// Fires the pending timers of one domain up to `until`, in (time, key)
  /// order, including ones registered while firing.
  fire(op, ctx, p, domain, until, watermark) {
    while (p.head < p.t.length) {
      const time = p.t[p.head];
      if (time > until) return;
      const key = p.k[p.head];
      p.head++;
      this.changes.push({ timer: { key, time, domain }, registered: false });
      ctx._key = key;
      ctx._origin = NO_ORIGIN;
      ctx._timestamp = domain === EVENT_TIME ? time : undefined;
      ctx._watermark = watermark;
      try {
        op.onTimer({ time, domain }, ctx);
      } catch (e) {
        throw trap(`on_timer(${time}) failed: ${message(e)}`);
      }
    }
  }

  rollback(mark, recs, changes) {
    this.out.rollback(mark);
    this.records.length = recs;
    this.origins.n = recs;
    this.ports.n = recs;
    this.changes.length = changes;
    // Key spans appended after the mark went with the data.
    const ks = this.keySpans;
    const end = this.out.size();
    for (let k = 0; k < ks.length; k++) {
      const s = ks[k];
      if (s !== undefined && s.offset + s.len > end) ks[k] = undefined;
    }
    const u = this.undoSlots;
    for (let j = u.length - 3; j >= 0; j -= 3) {
      this.written[u[j]] = u[j + 1];
      this.cache[u[j]] = u[j + 2];
    }
    const t = this.undoTimers;
    for (let j = t.length - 4; j >= 0; j -= 4) {
      const p = t[j];
      if (t[j + 3]) p.insert(t[j + 1], t[j + 2]);
      else p.remove(t[j + 1], t[j + 2]);
    }
  }

  /// The value writes of the call: the last of each state and key.
  valueWrites() {
    const data = this.valueData;
    data.reset();
    const writes = [];
    const w = this.written;
    const nvs = this.nvs;
    for (let i = 0; i < w.length; i++) {
      const json = w[i];
      if (json === undefined) continue;
      writes.push({
        state: this.handles[i % nvs],
        key: (i / nvs) | 0,
        value: json === null ? undefined : data.text(json),
      });
    }
    return { valueData: data.finish(), valueWrites: writes };
  }
}

function noTimer() {}

/// What a broken call throws: the host fails the job with the guest's last
/// lines of stderr, where StarlingMonkey prints an uncaught exception. A
/// string, not an Error, so that no stack trace pushes the message out.
function trap(msg) {
  return `sluice: ${msg}`;
}

/// The `keyed-process` export of a keyed process function (Flink's
/// `KeyedProcessFunction`).
///
/// `op` has `process(record, ctx)`, optionally `open(config, setup)` (to
/// declare states and side outputs) and `onTimer(timer, ctx)`, with `this`
/// = `op`. `timer` is `{time, domain}`, domain "event-time" or
/// "processing-time". Each call is scoped to one key, the record's or the
/// timer's. Throwing from `process` sends the record to the dead-letter
/// sink; what it emitted, the value states it wrote and the timers it
/// changed are undone (list and map writes are not). Throwing from
/// `onTimer` fails the job.
export function defineKeyedProcess(op) {
  if (typeof op?.process !== "function") {
    throw new TypeError("defineKeyedProcess: the operator needs a process(record, ctx) method");
  }
  return keyedExport(op, [op.process]);
}

/// The exports `open` and `process` of a keyed function: `handlers[i]`
/// takes the records of input `i`; `open` gets a `setupClass`.
function keyedExport(op, handlers, setupClass = Setup) {
  if (op.onTimer === undefined) op.onTimer = noTimer;
  let call = null;
  const input = new Input();
  const record = new Record(input);
  return {
    open(raw) {
      call = null;
      op[OPENED] = false;
      const setup = new setupClass();
      try {
        if (typeof op.open === "function") op.open(new Config(raw), setup);
      } catch (e) {
        return { tag: "err", val: message(e) };
      }
      call = new Call(setup._handles);
      op[OPENED] = true;
      return { tag: "ok", val: undefined };
    },

    process(batch, context) {
      if (call === null) throw trap(NOT_OPENED);
      input.reset(batch.data, batch.headers);
      return run(op, handlers, call, record, batch, context);
    },
  };
}

/// The `keyed-co-process` export of a keyed co-process function (Flink's
/// `KeyedCoProcessFunction`): two inputs, `left` and `right` in the
/// pipeline spec, each keyed by its own `key_by`, whose records of one key
/// share that key's state and timers.
///
/// `op` has `processLeft(record, ctx)` and `processRight(record, ctx)`,
/// optionally `open(config, setup)` and `onTimer(timer, ctx)`, as
/// `defineKeyedProcess`'s `process`. Records and timers are handled one at
/// a time, in the order the host received them.
export function defineKeyedCoProcess(op) {
  for (const m of ["processLeft", "processRight"]) {
    if (typeof op?.[m] !== "function") {
      throw new TypeError(`defineKeyedCoProcess: the operator needs a ${m}(record, ctx) method`);
    }
  }
  return keyedExport(op, [op.processLeft, op.processRight]);
}

/// The `keyed-broadcast-process` export of a keyed broadcast process
/// function (Flink's `KeyedBroadcastProcessFunction`): a keyed input
/// (`keyed` in the spec) processed as by `defineKeyedProcess`'s `process`,
/// and a broadcast input (`broadcast`) that reaches every subtask.
///
/// `op` has `process(record, ctx)` and `processBroadcast(record, ctx)`,
/// optionally `open(config, setup)` and `onTimer(timer, ctx)`. `setup` also
/// has `broadcastState(name)`: a map from JSON keys to JSON values that
/// every subtask holds whole, readable anywhere (`get(key)`, `entries()`),
/// changed only with the broadcast side's `ctx` (`put(ctx, key, value)`,
/// `remove(ctx, key)`) — and the same way on every subtask: the host
/// compares the subtasks' broadcast state at every checkpoint and fails the
/// job when they differ. The broadcast `ctx` has `currentWatermark()`,
/// `emit`, `emitJson`, `emitTo`, `emitJsonTo`; its records have no key.
/// Throwing from `processBroadcast` sends the broadcast record to the
/// dead-letter sink and drops what it emitted (its broadcast state writes
/// stay).
export function defineKeyedBroadcastProcess(op) {
  for (const m of ["process", "processBroadcast"]) {
    if (typeof op?.[m] !== "function") {
      throw new TypeError(`defineKeyedBroadcastProcess: the operator needs a ${m}(record, ctx) method`);
    }
  }
  const keyed = keyedExport(op, [op.process], BroadcastSetup);
  const input = new Input();
  const record = new Record(input);
  return {
    open: keyed.open,
    process: keyed.process,
    processBroadcast(batch, watermarks) {
      if (!op[OPENED]) throw trap(NOT_OPENED);
      input.reset(batch.data, batch.headers);
      const metas = batch.records;
      if (watermarks.length !== metas.length) {
        throw trap("malformed call from the host: broadcast watermarks do not match the batch");
      }
      const ctx = new BroadcastContext();
      const errors = [];
      for (let i = 0; i < metas.length; i++) {
        const meta = metas[i];
        const mark = ctx._out.spans.length;
        const emitted = ctx._records.length;
        ctx._origin = i;
        ctx._timestamp = meta.timestamp;
        ctx._watermark = Number(watermarks[i]);
        try {
          op.processBroadcast(record._at(meta), ctx);
        } catch (e) {
          ctx._out.rollback(mark);
          ctx._records.length = emitted;
          ctx._origins.length = emitted;
          ctx._ports.length = emitted;
          errors.push({ index: i, message: message(e) });
        }
      }
      return {
        records: { data: ctx._out.finish(), records: ctx._records, headers: [] },
        origins: new Uint32Array(ctx._origins),
        ports: new Uint32Array(ctx._ports),
        errors,
      };
    },
  };
}

/// `Setup` with broadcast states.
class BroadcastSetup extends Setup {
  broadcastState(name) {
    return new BroadcastState(hostBroadcastDeclare(name), name);
  }
}

/// A broadcast state: see `defineKeyedBroadcastProcess`.
class BroadcastState {
  constructor(handle, name) {
    this.handle = handle;
    this.name = name;
  }
  get(key) {
    const v = hostBroadcastGet(this.handle, ENCODER.encode(toJson(key)));
    return v === undefined ? undefined : decodeItem(`broadcast state \`${this.name}\``, v, { offset: 0, len: v.length });
  }
  entries() {
    const [keys, values] = hostBroadcastEntries(this.handle);
    const what = `broadcast state \`${this.name}\``;
    const out = [];
    for (let i = 0; i < keys.spans.length; i++) {
      out.push([decodeItem(what, keys.data, keys.spans[i]), decodeItem(what, values.data, values.spans[i])]);
    }
    return out;
  }
  put(ctx, key, value) {
    writable(ctx);
    hostBroadcastPut(this.handle, ENCODER.encode(toJson(key)), ENCODER.encode(toJson(value)));
  }
  remove(ctx, key) {
    writable(ctx);
    hostBroadcastRemove(this.handle, ENCODER.encode(toJson(key)));
  }
}

function writable(ctx) {
  if (!(ctx instanceof BroadcastContext)) {
    throw new Error("broadcast state can only be changed in processBroadcast, with its context");
  }
}

/// Where a broadcast record is processed.
class BroadcastContext {
  constructor() {
    this._out = new OutData();
    this._records = [];
    this._origins = [];
    this._ports = [];
  }
  currentWatermark() {
    return this._watermark;
  }
  emit(value) {
    this._push(0, typeof value === "string" ? this._out.text(value) : this._out.value(value));
  }
  emitJson(value) {
    this._push(0, this._out.text(toJson(value)));
  }
  emitTo(side, value) {
    this._push(side.port, typeof value === "string" ? this._out.text(value) : this._out.value(value));
  }
  emitJsonTo(side, value) {
    this._push(side.port, this._out.text(toJson(value)));
  }
  /// Emits `value` as JSON to the main output as a change of kind `kind`,
  /// one of `RowKind`'s (see the keyed context's `emitChange`).
  emitChange(kind, value) {
    const wk = witKind(kind);
    this._push(0, this._out.text(toJson(value)), wk);
  }
  _push(port, value, kind = "insert") {
    this._records.push({ key: undefined, value, timestamp: this._timestamp, headersStart: 0, headersLen: 0, kind });
    this._origins.push(this._origin);
    this._ports.push(port);
  }
}

function run(op, handlers, call, record, batch, context) {
  const metas = batch.records;
  const n = metas.length;
  const nkeys = context.keys.spans.length;
  if (context.values.spans.length !== nkeys * call.nvs) {
    throw trap(
      `malformed call from the host: ${context.values.spans.length} values for ${nkeys} keys and ${call.nvs} value states`,
    );
  }
  const recordKeys = context.recordKeys;
  const recordInputs = context.recordInputs;
  const watermarks = context.watermarks;
  if (recordKeys.length !== n || watermarks.length !== n || recordInputs.length !== n) {
    throw trap("malformed call from the host: record keys, inputs or watermarks do not match the batch");
  }
  call.reset(context);
  const ctx = new Context(call);
  const errors = [];
  const end = call.endWatermark;
  const event = call.event;
  const out = call.out;
  const records = call.records;
  call.fire(op, ctx, call.processing, PROCESSING_TIME, call.processingTime, n > 0 ? Number(watermarks[0]) : end);
  for (let i = 0; i < n; i++) {
    const wm = Number(watermarks[i]);
    if (event.head < event.t.length && event.t[event.head] <= wm) {
      call.fire(op, ctx, event, EVENT_TIME, wm, wm);
    }
    const key = recordKeys[i];
    if (key >= nkeys) {
      throw trap(`malformed call from the host: record ${i} has key ${key} of ${nkeys}`);
    }
    const meta = metas[i];
    if (call.undoSlots.length !== 0) call.undoSlots = [];
    if (call.undoTimers.length !== 0) call.undoTimers = [];
    const mark = out.spans.length;
    const recs = records.length;
    const changes = call.changes.length;
    ctx._key = key;
    ctx._origin = i;
    ctx._timestamp = meta.timestamp;
    ctx._watermark = wm;
    try {
      handlers[recordInputs[i]].call(op, record._at(meta), ctx);
    } catch (e) {
      call.rollback(mark, recs, changes);
      errors.push({ index: i, message: message(e) });
    }
  }
  call.fire(op, ctx, event, EVENT_TIME, end, end);
  const { valueData, valueWrites } = call.valueWrites();
  return {
    records: { data: out.finish(), records, headers: [] },
    origins: call.origins.view(),
    ports: call.ports.view(),
    timerChanges: call.changes,
    valueData,
    valueWrites,
    errors,
  };
}

/// The `migration` export (world `keyed-process-migrating-operator`): the
/// host calls `op.migrate(stateName, fromVersion, item)` for every item of
/// every inherited state whose version in the snapshot differs from the one
/// `open` declares: a value state's value, one element of a list state,
/// one value of a map state (map keys stay as they are). `item` is the
/// parsed JSON; return the item in the current layout (any JSON value).
/// Called after `open`, with `this` = `op`.
export function defineMigration(op) {
  if (typeof op?.migrate !== "function") {
    throw new TypeError("defineMigration: the operator needs a migrate(state, fromVersion, item) method");
  }
  return {
    migrate(state, fromVersion, items) {
      if (!op[OPENED]) return { tag: "err", val: NOT_OPENED };
      try {
        const texts = [];
        for (let i = 0; i < items.spans.length; i++) {
          try {
            const s = items.spans[i];
            const item = JSON.parse(UTF8.decode(items.data.subarray(s.offset, s.offset + s.len)));
            texts.push(toJson(op.migrate(state, fromVersion, item)));
          } catch (e) {
            throw new Error(`item ${i}: ${message(e)}`);
          }
        }
        return { tag: "ok", val: byteList(texts) };
      } catch (e) {
        return { tag: "err", val: message(e) };
      }
    },
  };
}

// ---------------------------------------------------------------------------
// SQL functions: the `sql-function` export (world `sql-function-module`)

/// A DECIMAL value: an unscaled BigInt and a scale (12.30 is
/// `new SqlDecimal(1230n, 2)`). Arguments come with their parameter's scale;
/// a result is rounded half up (or extended) to the declared scale.
export class SqlDecimal {
  constructor(unscaled, scale) {
    this.unscaled = BigInt(unscaled);
    this.scale = scale;
  }

  /// This value at `scale`, rounded half up (away from zero).
  rescale(scale) {
    if (scale >= this.scale) return new SqlDecimal(this.unscaled * 10n ** BigInt(scale - this.scale), scale);
    const d = 10n ** BigInt(this.scale - scale);
    let q = this.unscaled / d;
    const r = this.unscaled % d;
    const abs = r < 0n ? -r : r;
    if (abs * 2n >= d) q += this.unscaled < 0n ? -1n : 1n;
    return new SqlDecimal(q, scale);
  }

  toString() {
    const neg = this.unscaled < 0n;
    let digits = (neg ? -this.unscaled : this.unscaled).toString();
    if (this.scale > 0) {
      digits = digits.padStart(this.scale + 1, "0");
      digits = `${digits.slice(0, -this.scale)}.${digits.slice(-this.scale)}`;
    }
    return neg ? `-${digits}` : digits;
  }
}

/// A type of a signature: [kind, scale].
function sqlType(text) {
  let t = text.replace(/\s+/g, "").toUpperCase();
  if (t.endsWith("NOTNULL")) t = t.slice(0, -7);
  if (t === "BOOLEAN") return ["bool", 0];
  if (t === "INT" || t === "INTEGER") return ["int", 0];
  if (t === "BIGINT") return ["bigint", 0];
  if (t === "DOUBLE") return ["double", 0];
  if (t === "STRING" || t.startsWith("VARCHAR(") || t.startsWith("CHAR(")) return ["string", 0];
  if (["TIMESTAMP(3)", "TIMESTAMP_LTZ(3)", "TIMESTAMP", "TIMESTAMP_LTZ"].includes(t)) return ["ts", 0];
  const m = /^DECIMAL(?:\((\d+)(?:,(\d+))?\))?$/.exec(t);
  if (m) return ["decimal", m[2] === undefined ? 0 : Number(m[2])];
  throw new TypeError(`\`${text}\` is not a type a function can take`);
}

const SQL_WIDTH = { bool: 1, int: 4, bigint: 8, double: 8, ts: 8, decimal: 16, string: 0 };

function sqlRead(col, [kind, scale], i) {
  if (col.nulls[i]) return null;
  if (kind === "string") {
    const s = col.spans[i];
    return UTF8_LOSSY.decode(col.data.subarray(s.offset, s.offset + s.len));
  }
  const w = SQL_WIDTH[kind];
  const view = new DataView(col.data.buffer, col.data.byteOffset + i * w, w);
  switch (kind) {
    case "bool":
      return view.getUint8(0) !== 0;
    case "int":
      return view.getInt32(0, true);
    case "bigint":
      return view.getBigInt64(0, true);
    case "double":
      return view.getFloat64(0, true);
    case "ts":
      return Number(view.getBigInt64(0, true));
    default: {
      const lo = view.getBigUint64(0, true);
      const hi = view.getBigInt64(8, true);
      return new SqlDecimal((hi << 64n) | lo, scale);
    }
  }
}

/// A column being written.
class SqlColumn {
  constructor([kind, scale]) {
    this.kind = kind;
    this.scale = scale;
    this.nulls = [];
    /// Text: its pieces and their spans; other types: fixed-width chunks.
    this.data = new OutData(256);
    this.spans = [];
    this.chunks = [];
  }

  push(v) {
    const { kind } = this;
    if (kind === "string") {
      if (v !== null && v !== undefined && typeof v !== "string") {
        throw new TypeError(`returned ${describeJson(v)}, not a STRING`);
      }
      this.spans.push(this.data.text(v ?? ""));
      this.nulls.push(v === null || v === undefined ? 1 : 0);
      return;
    }
    const bytes = new Uint8Array(SQL_WIDTH[kind]);
    const view = new DataView(bytes.buffer);
    const isNull = v === null || v === undefined;
    if (!isNull) {
      switch (kind) {
        case "bool":
          if (typeof v !== "boolean") throw new TypeError(`returned ${describeJson(v)}, not a BOOLEAN`);
          view.setUint8(0, v ? 1 : 0);
          break;
        case "int":
          if (!Number.isInteger(v)) throw new TypeError(`returned ${describeJson(v)}, not an INT`);
          view.setInt32(0, v, true);
          break;
        case "bigint":
        case "ts":
          if (typeof v !== "bigint" && !Number.isInteger(v)) {
            throw new TypeError(`returned ${describeJson(v)}, not an integer`);
          }
          view.setBigInt64(0, BigInt(v), true);
          break;
        case "double":
          if (typeof v !== "number") throw new TypeError(`returned ${describeJson(v)}, not a DOUBLE`);
          view.setFloat64(0, v, true);
          break;
        default: {
          let d;
          if (v instanceof SqlDecimal) d = v;
          else if (typeof v === "bigint" || Number.isInteger(v)) d = new SqlDecimal(BigInt(v), 0);
          else throw new TypeError(`returned ${describeJson(v)}, not a DECIMAL (return a SqlDecimal)`);
          const u = d.rescale(this.scale).unscaled;
          view.setBigUint64(0, BigInt.asUintN(64, u), true);
          view.setBigInt64(8, BigInt.asIntN(64, u >> 64n), true);
        }
      }
    }
    this.nulls.push(isNull ? 1 : 0);
    this.chunks.push(bytes);
  }

  column() {
    const nulls = Uint8Array.from(this.nulls);
    if (this.kind === "string") return { nulls, data: this.data.finish(), spans: this.spans };
    const data = new Uint8Array(this.chunks.length * SQL_WIDTH[this.kind]);
    this.chunks.forEach((c, i) => data.set(c, i * c.length));
    return { nulls, data, spans: [] };
  }
}

/// The SQL functions a module offers (see `guest-sdk/js/README.md`):
///
///     export const sqlFunction = defineSqlFunctions([
///       { name: "usd", params: ["DECIMAL(10, 2)", "STRING"], returns: "DECIMAL(12, 2)",
///         scalar(amount, currency) { … } },
///       { name: "weighted_avg", params: ["DOUBLE", "INT"], returns: "DOUBLE",
///         create() {…}, accumulate(acc, price, qty) {…}, merge(acc, other) {…}, value(acc) {…} },
///     ]);
///
/// Values: strings, booleans, numbers (INT, DOUBLE, timestamps in epoch
/// milliseconds), BigInts (BIGINT), `SqlDecimal`s, `null`. A thrown error
/// fails its row only. An aggregate's accumulator is kept by the host as
/// JSON.
export function defineSqlFunctions(functions) {
  const fns = functions.map((f) => {
    const aggregate = typeof f.accumulate === "function";
    const need = aggregate ? ["create", "accumulate", "merge", "value"] : ["scalar"];
    for (const m of need) {
      if (typeof f[m] !== "function") {
        throw new TypeError(`defineSqlFunctions: function ${f.name} needs a ${m} method`);
      }
    }
    return { ...f, aggregate, types: f.params.map(sqlType), ret: sqlType(f.returns) };
  });
  const fn = (i, aggregate) => {
    const f = fns[i];
    if (f === undefined || f.aggregate !== aggregate) {
      throw new Error(`function ${i} of ${fns.length} is not ${aggregate ? "an aggregate" : "a scalar"} function`);
    }
    return f;
  };
  const row = (f, args, i) => f.types.map((t, k) => sqlRead(args[k], t, i));
  const items = (list) => list.spans.map((s) => list.data.subarray(s.offset, s.offset + s.len));
  const list = (texts) => {
    const d = new OutData(256);
    const spans = texts.map((t) => d.text(t));
    return { data: d.finish(), spans };
  };
  const json = (v) => JSON.stringify(v, (_, x) => (typeof x === "bigint" ? x.toString() : x));
  const parse = (b) => JSON.parse(UTF8.decode(b));
  return {
    functions() {
      return fns.map((f) => ({
        name: f.name,
        kind: f.aggregate ? "aggregate" : "scalar",
        params: f.params,
        returns: f.returns,
      }));
    },

    call(index, args, rows) {
      const f = fn(index, false);
      const out = new SqlColumn(f.ret);
      const errors = [];
      for (let i = 0; i < rows; i++) {
        try {
          out.push(f.scalar(...row(f, args, i)));
        } catch (e) {
          out.push(null);
          errors.push({ index: i, message: message(e) });
        }
      }
      return { values: out.column(), errors };
    },

    createAccumulator(index) {
      return ENCODER.encode(json(fn(index, true).create()));
    },

    accumulate(index, accumulators, args, targets) {
      const f = fn(index, true);
      const accs = items(accumulators).map((b) => UTF8.decode(b));
      const errors = [];
      for (let i = 0; i < targets.length; i++) {
        const t = targets[i];
        try {
          accs[t] = json(f.accumulate(JSON.parse(accs[t]), ...row(f, args, i)));
        } catch (e) {
          errors.push({ index: i, message: message(e) });
        }
      }
      return { accumulators: list(accs), errors };
    },

    merge(index, accumulators, groups) {
      const f = fn(index, true);
      const accs = items(accumulators);
      try {
        const out = groups.map((g) => {
          let acc = f.create();
          for (let k = g.offset; k < g.offset + g.len; k++) acc = f.merge(acc, parse(accs[k]));
          return json(acc);
        });
        return { tag: "ok", val: list(out) };
      } catch (e) {
        return { tag: "err", val: `merge: ${message(e)}` };
      }
    },

    getValue(index, accumulators) {
      const f = fn(index, true);
      try {
        const out = new SqlColumn(f.ret);
        for (const b of items(accumulators)) out.push(f.value(parse(b)));
        return { tag: "ok", val: out.column() };
      } catch (e) {
        return { tag: "err", val: `get-value: ${message(e)}` };
      }
    },
  };
}
