#!/usr/bin/env bash
# Runs one bench spec (examples/bench/wN.yaml) on an input file under
# /usr/bin/time -v and prints, like ../shared/bench/flink/run.sh does:
#   CHECKSUM ...   (bench/checksum.py over the outputs)
#   TIME wall_s=… events_per_s_wall=… max_rss_mb=… user_s=… sys_s=… cpu=…
#   bench/run.sh W PARALLELISM FILE [--payments FILE] [--rates FILE] [--sql]
#     e.g. bench/run.sh W2 2 /tmp/bench/orders-5m.jsonl
# With --sql (W1-W4): `sluice sql bench/sql/wN.sql` instead of the spec (no late file: SQL
# reports no late count).
#          bench/run.sh W6 1 /tmp/bench/orders-5m.jsonl --payments /tmp/bench/payments-5m.jsonl
# W6 and W7 read their second input from --payments / --rates (or PAYMENTS / RATES in the
# environment); events/s counts the records of both inputs.
# Build first (scripts/demo.sh or scripts/build-guests.sh + cargo build --release -p sluice).
# Env: SLUICE (the binary; default $CARGO_TARGET_DIR/release/sluice), BENCH_KEEP=1 keeps outputs,
# STATE_BACKEND=memory|rocksdb (passed through to the spec).
set -euo pipefail
if [ $# -lt 3 ]; then sed -n '2,14p' "$0" >&2; exit 2; fi
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
W="$1"; P="$2"; FILE="$(realpath "$3")"
shift 3
while [ $# -gt 0 ]; do
    case "$1" in
        --payments) PAYMENTS="$(realpath "$2")"; shift 2 ;;
        --rates) RATES="$(realpath "$2")"; shift 2 ;;
        --sql) SQL=1; shift ;;
        *) echo "bench/run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
w="$(echo "$W" | tr '[:upper:]' '[:lower:]')"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
SLUICE="${SLUICE:-$TARGET/release/sluice}"
export SLUICE_MODULE_PATH="${SLUICE_MODULE_PATH:-$TARGET/wasm32-wasip2/release}"
OUT="$(mktemp -d /tmp/sluice-bench.XXXXXX)"
[ -n "${BENCH_KEEP:-}" ] || trap 'rm -rf "$OUT"' EXIT
events=$(wc -l < "$FILE")
case "$W" in
    W6) [ -n "${PAYMENTS:-}" ] || { echo "bench/run.sh: W6 needs --payments FILE" >&2; exit 2; }
        events=$((events + $(wc -l < "$PAYMENTS"))) ;;
    W7) [ -n "${RATES:-}" ] || { echo "bench/run.sh: W7 needs --rates FILE" >&2; exit 2; }
        events=$((events + $(wc -l < "$RATES"))) ;;
esac

set +e
if [ -n "${SQL:-}" ]; then
    ORDERS="$FILE" /usr/bin/time -v -o "$OUT/time.txt" "$SLUICE" sql -q -p "$P" --output "$OUT/out.jsonl" \
        "$HERE/sql/$w.sql" 2> "$OUT/stderr.txt"
else
    PAYMENTS="${PAYMENTS:-}" RATES="${RATES:-}" INPUT="$FILE" OUTPUT="$OUT/out.jsonl" LATE_OUTPUT="$OUT/late.jsonl" DROPPED_OUTPUT="$OUT/dropped.jsonl" PARALLELISM="$P" \
        /usr/bin/time -v -o "$OUT/time.txt" "$SLUICE" run "$REPO/examples/bench/$w.yaml" 2> "$OUT/stderr.txt"
fi
rc=$?
set -e
if [ "$rc" != 0 ]; then cat "$OUT/stderr.txt" >&2; exit "$rc"; fi
if [ -n "${SQL:-}" ] && [ "$W" != W1 ]; then
    python3 "$HERE/checksum.py" "$W" "$OUT/out.jsonl" /dev/null
elif [ "$W" = W1 ]; then
    python3 "$HERE/checksum.py" W1 "$OUT/out.jsonl"
elif [ "$W" = W5 ]; then
    early=$(grep -c '"early_close":true' "$OUT/out.jsonl" || true)
    dropped=$(cat "$OUT/dropped.jsonl" 2>/dev/null | wc -l)
    python3 "$HERE/checksum.py" W5 "$OUT/out.jsonl" "$OUT/late.jsonl" --extra "early_close=$early" "dropped_ooo=$dropped"
elif [ "$W" = W6 ] || [ "$W" = W7 ]; then
    python3 "$HERE/checksum.py" "$W" "$OUT/out.jsonl"
else
    python3 "$HERE/checksum.py" "$W" "$OUT/out.jsonl" "$OUT/late.jsonl"
fi
python3 - "$OUT/time.txt" "$events" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
events = int(sys.argv[2])
def get(label):
    m = re.search(r"^\s*" + re.escape(label) + r":\s*(.+)$", t, re.M)
    return m.group(1).strip() if m else "?"
wall = get("Elapsed (wall clock) time (h:mm:ss or m:ss)")
secs = sum(float(v) * 60 ** i for i, v in enumerate(reversed(wall.split(":"))))
rss_mb = int(get("Maximum resident set size (kbytes)")) / 1024
print(f"TIME wall_s={secs:.2f} events_per_s_wall={events / secs if secs else 0:.0f} max_rss_mb={rss_mb:.0f} "
      f"user_s={get('User time (seconds)')} sys_s={get('System time (seconds)')} cpu={get('Percent of CPU this job got')}")
PY
