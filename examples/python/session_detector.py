"""W5 of the shared benchmark in Python, the same operator as the Rust
`examples/operators/session-detector`, row for row: per key at most one open
session, kept in three value states (`start`, `last`, `count`), and one
event-time timer at `last + gap - 1` that closes it. The timer moves whenever
`last` does.

- A record whose session would already have closed (`ts + gap - 1 <=
  watermark`) with no open session is late: it goes to the side output
  `late`.
- A record more than `gap` after the open session's last record closes that
  session early (its timer has not fired yet because the watermark lags) and
  opens a new one; the row says `"early_close":true`.
- A record more than `gap` before the session's start cannot join it: late if
  the watermark has passed its own session, else `dropped_ooo` (a side output
  of that name).

Output rows: `{"customer_id":…, "session_start":…, "session_end":…,
"count":…}` with `session_end = last + gap`; the key field is named by the
config's `key_field` (default `customer_id`). The key is written as it is
(with `key_by` on a JSON string field it is that string's JSON text).

Config (both optional; unknown fields are an error):
`{"gap_ms": 30000, "key_field": "customer_id"}`.

The states hold the same JSON as the Rust module's, so a savepoint of either
restores into the other.

Build (from the repository root):

    guest-sdk/python/build examples/python/session_detector.py session_detector_py.wasm
"""

from dataclasses import dataclass

from sluice_sdk import Error, KeyedProcess, dumps


@dataclass
class Settings:
    gap_ms: int = 30_000
    key_field: str = "customer_id"


class SessionDetector(KeyedProcess):
    def open(self, config, setup):
        s = config.parse(Settings)
        if s.gap_ms <= 0:
            raise Error("gap_ms must be positive")
        self.gap = s.gap_ms
        # `{"<key_field>":`, the start of every output row.
        self.row_prefix = "{" + dumps(s.key_field) + ":"
        self.start = setup.value_state("start")
        self.last = setup.value_state("last")
        self.count = setup.value_state("count")
        self.late = setup.side_output("late")
        self.dropped = setup.side_output("dropped_ooo")

    def emit(self, ctx, start, last, count, early):
        ctx.emit(
            '%s%s,"session_start":%d,"session_end":%d,"count":%d%s}'
            % (self.row_prefix, ctx.key_str, start, last + self.gap, count,
               ',"early_close":true' if early else "")
        )

    def open_session(self, ctx, ts):
        self.start.set(ctx, ts)
        self.last.set(ctx, ts)
        self.count.set(ctx, 1)
        ctx.register_event_time_timer(ts + self.gap - 1)

    def process(self, record, ctx):
        ts = record.timestamp
        if ts is None:
            raise Error("the record has no event time")
        gap = self.gap
        late = ts + gap - 1 <= ctx.current_watermark
        start = self.start.get(ctx)
        if start is None:
            if late:
                ctx.forward(self.late)
                return
            self.open_session(ctx, ts)
            return
        last = self.last.get(ctx)
        if last is None:
            raise Error("state `last` is missing")
        count = self.count.get(ctx)
        if count is None:
            raise Error("state `count` is missing")
        if ts > last + gap:
            self.emit(ctx, start, last, count, True)
            ctx.delete_event_time_timer(last + gap - 1)
            self.open_session(ctx, ts)
            return
        if ts + gap < start:
            ctx.forward(self.late if late else self.dropped)
            return
        if ts < start:
            self.start.set(ctx, ts)
        if ts > last:
            ctx.delete_event_time_timer(last + gap - 1)
            ctx.register_event_time_timer(ts + gap - 1)
            self.last.set(ctx, ts)
        self.count.set(ctx, count + 1)

    def on_timer(self, timer, ctx):
        start, last, count = self.start.get(ctx), self.last.get(ctx), self.count.get(ctx)
        if start is not None and last is not None and count is not None:
            self.emit(ctx, start, last, count, False)
        self.start.clear(ctx)
        self.last.clear(ctx)
        self.count.clear(ctx)
