#!/usr/bin/env python3
"""Print what a correct `read_committed` Kafka consumer sees in a topic.

Why this exists: the Tansu 0.6 broker used by the e2e tests answers Fetch
requests with an empty `aborted_transactions` list (Fetch v4+ response field,
KIP-98), even after a transaction was aborted, including the abort marker it
writes itself when a new producer with the same transactional.id fences a dead
one (InitProducerId).  librdkafka's read_committed consumers rely on that list
to drop aborted records, so against Tansu they deliver aborted records too.
Tansu's ListOffsets "latest" is also wrong (it returns the base offset of the
last batch + 1, not the log end), but the high watermark and last stable offset
inside Fetch responses are correct.

So this script talks the Kafka wire protocol itself (standard library only):
ApiVersions, Metadata (v4, or v1) and Fetch (highest version in v4..v11 that the
broker supports; none of these are flexible versions).  It fetches every
partition with isolation_level=0 (read_uncommitted) from the log start up to the
high watermark from the Fetch response, parses record batches v2, and applies
the transaction control markers itself:
  * non-transactional records are emitted;
  * records of transactional batches are buffered per (partition, producerId);
    a control record COMMIT (type 1) emits them, ABORT (type 0) drops them;
  * records of transactions with no marker yet (open) are not emitted and are
    counted on stderr.  Note: a real consumer would also stop at the last stable
    offset (LSO) until such a transaction ends; this script still prints the
    decided records after it, and reports the LSO and the open count on stderr.
Output: one line per record (the value bytes; `key<TAB>value` with
--with-keys; with --json a JSON object with partition, offset, key, value
(null for a tombstone), timestamp and headers, bytes as UTF-8 text),
partition order then offset order.  Batch CRCs are not verified.
Compression: none and gzip; other codecs fail with a clear error.

Usage: kafka_committed.py --bootstrap HOST:PORT --topic NAME [--out FILE]
                          [--with-keys | --json] [--timeout SECONDS]
"""
import argparse, json, socket, struct, sys, time, zlib

API_FETCH, API_METADATA, API_VERSIONS = 1, 3, 18
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


class KafkaError(Exception):
    pass


class Reader:
    def __init__(self, buf, pos=0):
        self.b, self.p = buf, pos

    def take(self, n):
        if n < 0 or self.p + n > len(self.b):
            raise KafkaError(f"truncated data at byte {self.p} (need {n})")
        v = self.b[self.p:self.p + n]; self.p += n
        return v

    def unpack(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.p); self.p += struct.calcsize(fmt)
        return v if len(v) > 1 else v[0]

    def i8(self): return self.unpack(">b")
    def i16(self): return self.unpack(">h")
    def i32(self): return self.unpack(">i")
    def i64(self): return self.unpack(">q")

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def array(self, fn):
        n = self.i32()
        return [fn() for _ in range(max(n, 0))]

    def varint(self):  # zigzag-encoded signed varint (record fields)
        shift = result = 0
        while True:
            byte = self.b[self.p]; self.p += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (result >> 1) ^ -(result & 1)
            shift += 7

    def vbytes(self):
        n = self.varint()
        return None if n < 0 else self.take(n)


def kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class Conn:
    def __init__(self, host, port, deadline):
        self.deadline, self.corr = deadline, 0
        self.sock = socket.create_connection((host, port), timeout=self.left())

    def left(self):
        t = self.deadline - time.monotonic()
        if t <= 0:
            raise TimeoutError("deadline passed")
        return t

    def recv(self, n):
        out = bytearray()
        while len(out) < n:
            self.sock.settimeout(self.left())
            chunk = self.sock.recv(min(n - len(out), 1 << 20))
            if not chunk:
                raise KafkaError("connection closed by broker")
            out += chunk
        return bytes(out)

    def request(self, api, version, body):
        self.corr += 1
        msg = struct.pack(">hhi", api, version, self.corr) + kstr("kafka_committed") + body
        self.sock.settimeout(self.left())
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        r = Reader(self.recv(struct.unpack(">i", self.recv(4))[0]))
        if r.i32() != self.corr:
            raise KafkaError("correlation id mismatch")
        return r  # non-flexible versions only: response header v0


def api_versions(conn):
    r = conn.request(API_VERSIONS, 0, b"")
    if (err := r.i16()) != 0:
        raise KafkaError(f"ApiVersions error code {err}")
    return {k: (lo, hi) for k, lo, hi in r.array(lambda: r.unpack(">hhh"))}


def pick(versions, api, wanted, name):
    lo, hi = versions.get(api, (0, -1))
    for v in wanted:
        if lo <= v <= hi:
            return v
    raise KafkaError(f"broker supports {name} v{lo}..v{hi}, need one of {wanted}")


def metadata(conn, version, topic):
    body = struct.pack(">i", 1) + kstr(topic) + (b"\x00" if version >= 4 else b"")
    r = conn.request(API_METADATA, version, body)
    if version >= 3:
        r.i32()  # throttle_time_ms
    brokers = {}
    for node, host, port in r.array(lambda: (r.i32(), r.string(), r.i32(), r.string())[:3]):
        brokers[node] = (host, port)
    if version >= 2:
        r.string()  # cluster_id
    r.i32()  # controller_id
    leaders = {}
    for _ in range(r.i32()):
        err, name, _internal = r.i16(), r.string(), r.i8()
        if err:
            raise KafkaError(f"Metadata error code {err} for topic {name!r}"
                             + (" (unknown topic)" if err == 3 else ""))
        for _ in range(r.i32()):
            perr, part, leader = r.i16(), r.i32(), r.i32()
            r.array(r.i32); r.array(r.i32)  # replicas, isr
            if version >= 5:
                r.array(r.i32)  # offline replicas
            if perr:
                raise KafkaError(f"Metadata error code {perr} for {topic}/{part}")
            leaders[part] = leader
    if not leaders:
        raise KafkaError(f"topic {topic!r} not found / has no partitions")
    return brokers, leaders


def fetch(conn, v, topic, part, offset, max_bytes):
    body = struct.pack(">iiii", -1, 100, 1, max_bytes) + struct.pack(">b", 0)  # isolation 0
    if v >= 7:
        body += struct.pack(">ii", 0, -1)  # sessionless full fetch
    body += struct.pack(">i", 1) + kstr(topic) + struct.pack(">ii", 1, part)
    if v >= 9:
        body += struct.pack(">i", -1)  # current_leader_epoch
    body += struct.pack(">q", offset) + (struct.pack(">q", -1) if v >= 5 else b"")
    body += struct.pack(">i", max_bytes)
    if v >= 7:
        body += struct.pack(">i", 0)  # forgotten topics
    if v >= 11:
        body += kstr("")  # rack_id
    r = conn.request(API_FETCH, v, body)
    r.i32()  # throttle_time_ms
    if v >= 7:
        if (err := r.i16()) != 0:
            raise KafkaError(f"Fetch error code {err} for {topic}/{part} at offset {offset}")
        r.i32()  # session_id
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            p, err, hw, lso = r.i32(), r.i16(), r.i64(), r.i64()
            log_start = r.i64() if v >= 5 else -1
            r.array(lambda: r.unpack(">qq"))  # aborted_transactions (empty on Tansu)
            if v >= 11:
                r.i32()  # preferred_read_replica
            n = r.i32()
            records = r.take(n) if n > 0 else b""
            if p == part:
                return err, hw, lso, log_start, records
    raise KafkaError(f"Fetch response lacks {topic}/{part}")


def batches(data):
    """Yield complete v2 record batches; a trailing partial batch is ignored."""
    pos = 0
    while len(data) - pos >= 17:
        base, length, _epoch, magic = struct.unpack_from(">qiib", data, pos)
        if pos + 12 + length > len(data):
            return
        if magic != 2:
            raise KafkaError(f"record batch magic {magic} at offset {base} (only v2 supported)")
        yield base, Reader(data[pos + 21:pos + 12 + length])  # after the crc
        pos += 12 + length


def records(topic, part, base, r):
    attrs, last_delta = r.i16(), r.i32()
    first_ts = r.i64()
    r.i64()  # max timestamp
    pid, _pepoch, _seq, count = r.i64(), r.i16(), r.i32(), r.i32()
    codec = attrs & 7
    if codec == 1:
        r = Reader(zlib.decompress(r.b[r.p:], 16 + zlib.MAX_WBITS))
    elif codec:
        raise KafkaError(f"{topic}/{part} offset {base}: unsupported compression "
                         f"{CODECS.get(codec, codec)} (only none and gzip)")
    recs = []
    for _ in range(count):
        r.varint(); r.i8()  # record length, attributes
        ts = first_ts + r.varint()
        off = base + r.varint()
        key, value = r.vbytes(), r.vbytes()
        headers = [(r.vbytes(), r.vbytes()) for _ in range(r.varint())]
        recs.append((off, key, value, ts, headers))
    return attrs, base + last_delta, pid, recs


def read_partition(conn, v, topic, part, deadline):
    offset, max_bytes, emitted, pending = 0, 4 << 20, [], {}
    stats = dict(emitted=0, aborted=0, open=0, hw=-1, lso=-1)
    while True:
        try:
            err, hw, lso, log_start, data = fetch(conn, v, topic, part, offset, max_bytes)
        except TimeoutError as e:
            raise KafkaError(f"{topic}/{part}: timed out fetching at offset {offset} ({e})")
        if err == 1 and offset == 0 and log_start > 0:  # OFFSET_OUT_OF_RANGE: log start moved
            offset = log_start
            continue
        if err:
            raise KafkaError(f"Fetch error code {err} for {topic}/{part} at offset {offset}")
        stats.update(hw=hw, lso=lso)
        got = False
        for base, r in batches(data):
            attrs, last, pid, recs = records(topic, part, base, r)
            if last < offset:
                continue  # already seen
            got = True
            recs = [x for x in recs if x[0] >= offset]
            offset = last + 1
            if attrs & 0x20:  # control batch: key = (int16 version, int16 type)
                for _, key, *_ in recs:
                    kind = struct.unpack(">hh", key[:4])[1] if key and len(key) >= 4 else None
                    buf = pending.pop(pid, [])
                    if kind == 1:
                        emitted += buf
                    elif kind == 0:
                        stats["aborted"] += len(buf)
                    else:
                        raise KafkaError(f"{topic}/{part} offset {base}: control type {kind}")
            elif attrs & 0x10:  # transactional data
                pending.setdefault(pid, []).extend(recs)
            else:
                emitted += recs
        if not got:
            if offset >= hw:
                break
            if time.monotonic() > deadline:
                raise KafkaError(f"{topic}/{part}: no progress at offset {offset} below hw {hw}")
            if data:  # only a partial batch fitted: ask for more bytes
                max_bytes *= 2
    emitted.sort(key=lambda x: x[0])
    stats["emitted"] = len(emitted)
    stats["open"] = sum(map(len, pending.values()))
    return emitted, stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--out", help="write records here instead of stdout")
    ap.add_argument("--with-keys", action="store_true", help="print key<TAB>value")
    ap.add_argument("--json", action="store_true", help="print records as JSON objects")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    a = ap.parse_args()
    deadline = time.monotonic() + a.timeout
    try:
        host, port = a.bootstrap.rsplit(":", 1)
        boot = Conn(host, int(port), deadline)
        vers = api_versions(boot)
        mv = pick(vers, API_METADATA, [4, 1], "Metadata")
        fv = pick(vers, API_FETCH, [11, 10, 9, 8, 7, 6, 5, 4], "Fetch")
        brokers, leaders = metadata(boot, mv, a.topic)
        conns, results = {}, []
        for part in sorted(leaders):
            node = leaders[part]
            if node not in brokers:
                raise KafkaError(f"{a.topic}/{part}: leader {node} not available")
            if node not in conns:
                conns[node] = Conn(*brokers[node], deadline)
            results.append((part, *read_partition(conns[node], fv, a.topic, part, deadline)))
    except TimeoutError as e:
        sys.exit(f"kafka_committed: topic {a.topic}: timed out after {a.timeout}s ({e})")
    except (KafkaError, OSError, ValueError, IndexError, zlib.error, struct.error) as e:
        sys.exit(f"kafka_committed: topic {a.topic}: {type(e).__name__}: {e}")
    out = open(a.out, "wb") if a.out else sys.stdout.buffer
    with out:
        for part, recs, _ in results:
            if a.json:
                text = lambda b: None if b is None else b.decode("utf-8", "replace")
                out.write(b"".join(json.dumps(dict(
                    partition=part, offset=o, key=text(k), value=text(v), timestamp=ts,
                    headers=[[text(hk), text(hv)] for hk, hv in h])).encode() + b"\n"
                    for o, k, v, ts, h in recs))
            else:
                out.write(b"".join((((k or b"") + b"\t") if a.with_keys else b"") + (v or b"") + b"\n"
                                   for _, k, v, *_ in recs))
    print(f"kafka_committed: topic {a.topic} (Metadata v{mv}, Fetch v{fv})", file=sys.stderr)
    for part, _, s in results:
        print(f"  partition {part}: emitted={s['emitted']} aborted={s['aborted']} "
              f"open_txn={s['open']} high_watermark={s['hw']} lso={s['lso']}", file=sys.stderr)


if __name__ == "__main__":
    main()
