#!/usr/bin/env bash
# Builds the JavaScript example operators into OUTDIR:
#
#   guest-sdk/js/build-examples.sh OUTDIR
#
#   examples/js/usd-orders.js        -> OUTDIR/usd_orders_js.wasm
#   examples/js/session-detector.js  -> OUTDIR/session_detector_js.wasm
#   examples/js/customer-tier.js     -> OUTDIR/customer_tier_js.wasm
#   examples/js/count-sum.js         -> OUTDIR/count_sum_js.wasm
#   examples/js/percentile.js        -> OUTDIR/percentile_js.wasm
#   examples/js/bench-co-join.js     -> OUTDIR/bench_co_join_js.wasm
#   examples/js/fraud-rules.js       -> OUTDIR/fraud_rules_js.wasm
#
# An output newer than all its inputs (the example, the SDK's files,
# wit/operator.wit) is left as it is. Quiet on success; on failure prints the
# build's error and exits non-zero. Needs `npm ci --prefix guest-sdk/js` first.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: guest-sdk/js/build-examples.sh OUTDIR" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$1
mkdir -p "$out"

# What every example depends on besides its own source.
common=("$here/sluice.js" "$here/build.mjs" "$here/build" "$here/package-lock.json" "$root/wit/operator.wit")

# up_to_date OUT INPUT...: OUT exists and is newer than every INPUT.
up_to_date() {
    local target=$1 input
    shift
    [[ -f "$target" ]] || return 1
    for input in "$@"; do
        [[ "$target" -nt "$input" ]] || return 1
    done
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# build SOURCE OUTPUT: starts the build of examples/js/SOURCE in the
# background unless OUTDIR/OUTPUT is up to date.
pids=()
names=()
build() {
    local src=$root/examples/js/$1 target=$out/$2
    up_to_date "$target" "$src" "${common[@]}" && return 0
    "$here/build" "$src" "$target" >"$tmp/$2.log" 2>&1 &
    pids+=($!)
    names+=("$1:$2")
}

build usd-orders.js usd_orders_js.wasm
build session-detector.js session_detector_js.wasm
build customer-tier.js customer_tier_js.wasm
build count-sum.js count_sum_js.wasm
build percentile.js percentile_js.wasm
build bench-co-join.js bench_co_join_js.wasm
build fraud-rules.js fraud_rules_js.wasm
build usd-udf.js usd_udf_js.wasm

# All at once: each build is mostly one single-threaded process.
status=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        src=${names[$i]%%:*}
        target=${names[$i]#*:}
        cat "$tmp/$target.log" >&2
        echo "guest-sdk/js/build-examples.sh: building $out/$target from examples/js/$src failed" >&2
        status=1
    fi
done
exit $status
