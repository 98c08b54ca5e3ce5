#!/usr/bin/env bash
# Builds every operator crate under examples/operators/ as a Wasm component
# (wasm32-wasip2, release), and the Python (examples/python/) and JavaScript
# (examples/js/) operators, and prints the folder the .wasm files land in —
# the folder to put on SLUICE_MODULE_PATH.
#   scripts/build-guests.sh [--quiet]
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
packages=()
for manifest in examples/operators/*/Cargo.toml; do
    name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)
    packages+=(-p "$name")
done
quiet=()
[ "${1:-}" = "--quiet" ] && quiet=(--quiet)
out="$target_dir/wasm32-wasip2/release"
cargo build "${quiet[@]}" --release --target wasm32-wasip2 "${packages[@]}" >&2
# The Python and JavaScript examples, with their SDKs (skipped when up to
# date).
sdk/python/build-examples.sh "$out" >&2
sdk/js/build-examples.sh "$out" >&2
echo "$out"
