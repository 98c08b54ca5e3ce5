#!/usr/bin/env bash
# Builds the Python example operators into OUTDIR:
#
#   guest-sdk/python/build-examples.sh OUTDIR
#
#   examples/python/usd_orders.py       -> OUTDIR/usd_orders_py.wasm
#   examples/python/session_detector.py -> OUTDIR/session_detector_py.wasm
#   examples/python/customer_tier.py    -> OUTDIR/customer_tier_py.wasm
#   examples/python/count_sum.py        -> OUTDIR/count_sum_py.wasm
#   examples/python/percentile.py       -> OUTDIR/percentile_py.wasm
#   examples/python/bench_co_join.py    -> OUTDIR/bench_co_join_py.wasm
#   examples/python/fraud_rules.py      -> OUTDIR/fraud_rules_py.wasm
#   examples/python/usd_udf.py          -> OUTDIR/usd_udf_py.wasm
#
# An output newer than all its inputs (the example, the SDK's files,
# wit/operator.wit, the build script) is left as it is. Quiet on success;
# on failure it prints the tool's error and exits non-zero. Needs
# componentize-py (see guest-sdk/python/requirements.txt):
#   python3 -m pip install componentize-py==0.25.1
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
mkdir -p "$out"

# The inputs every example shares.
shared=("$here/build" "$repo/wit/operator.wit")
while IFS= read -r f; do shared+=("$f"); done < <(find "$here/sluice_sdk" -name '*.py' | sort)

# up_to_date OUTPUT INPUT...: the output exists and is newer than every input.
up_to_date() {
    local target=$1
    shift
    [ -f "$target" ] || return 1
    local f
    for f in "$@"; do
        [ "$target" -nt "$f" ] || return 1
    done
}

status=0
for name in usd_orders session_detector customer_tier count_sum percentile bench_co_join fraud_rules usd_udf; do
    src="$repo/examples/python/$name.py"
    dst="$out/${name}_py.wasm"
    if up_to_date "$dst" "$src" "${shared[@]}"; then
        continue
    fi
    if ! "$here/build" "$src" "$dst"; then
        echo "build-examples: building $dst failed" >&2
        status=1
    fi
done
exit $status
