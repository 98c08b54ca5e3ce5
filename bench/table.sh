#!/usr/bin/env bash
# The whole benchmark table in one command: sluice beside Apache Flink on every workload, at
# parallelism 1 and 2, round robin in one sitting (bench/compare.py), medians of RUNS runs.
#   bench/table.sh [RUNS] [PART,...]
#     RUNS: runs per cell and engine (default 3)
#     PART: heap (W1-W7, heap state; W7 against Flink SQL's temporal join), rocksdb (W2, W5 with
#           RocksDB state on both), sql (W1-W4 as `sluice sql` beside Flink SQL); default all three
#     e.g. bench/table.sh 3            # everything (about two hours: Flink's W7 alone is ~6 min a run)
#          bench/table.sh 1 heap       # one run of each heap cell
# Data: orders-5m (seed 42) with its payments and rates under BENCH_DATA (default /tmp/bench),
# generated with bench/gen_orders.py when missing (~1 GB, half a minute). Workloads: WORKLOADS
# (default W1,W2,W3,W4,W5,W6,W7) narrows the heap part.
# Needs the release build and the example modules (scripts/demo.sh, or scripts/build-guests.sh
# and cargo build --release -p sluice); Flink comes from ../shared/bench/flink (FLINK_BENCH).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
RUNS="${1:-3}"
PARTS="${2:-heap,rocksdb,sql}"
case "$RUNS" in ''|*[!0-9]*|0) sed -n '2,14p' "$0" >&2; exit 2 ;; esac
for part in ${PARTS//,/ }; do
    case "$part" in heap|rocksdb|sql) ;; *) echo "bench/table.sh: unknown part $part (heap, rocksdb, sql)" >&2; exit 2 ;; esac
done
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
if [ ! -x "${SLUICE:-$TARGET/release/sluice}" ]; then
    echo "bench/table.sh: no release build at ${SLUICE:-$TARGET/release/sluice} (run scripts/demo.sh first)" >&2
    exit 1
fi
DATA="${BENCH_DATA:-/tmp/bench}"
ORDERS="$DATA/orders-5m.jsonl" PAYMENTS="$DATA/payments-5m.jsonl" RATES="$DATA/rates-5m.jsonl"
if [ ! -s "$ORDERS" ] || [ ! -s "$PAYMENTS" ] || [ ! -s "$RATES" ]; then
    mkdir -p "$DATA"
    python3 "$HERE/gen_orders.py" --events 5000000 --seed 42 --out "$ORDERS" \
        --payments "$PAYMENTS" --rates "$RATES" >&2
fi
echo "# sluice $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?') beside Flink 2.3.0, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
for part in ${PARTS//,/ }; do
    echo
    case "$part" in
        heap) echo "## DataStream, heap state (W7: Flink SQL's temporal join)"
              "$HERE/compare.py" "$ORDERS" "$RUNS" "${WORKLOADS:-W1,W2,W3,W4,W5,W6,W7}" \
                  --payments "$PAYMENTS" --rates "$RATES" ;;
        rocksdb) echo "## DataStream, RocksDB state"
                 "$HERE/compare.py" "$ORDERS" "$RUNS" W2,W5 --rocksdb ;;
        sql) echo "## SQL (bench/sql/wN.sql on both)"
             "$HERE/compare.py" "$ORDERS" "$RUNS" W1,W2,W3,W4 --sql ;;
    esac
done
