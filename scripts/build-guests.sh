#!/usr/bin/env bash
# Builds every operator crate under examples/operators/ as a Wasm component
# (wasm32-wasip2, release), and the Python (examples/python/) and JavaScript
# (examples/js/) operators, and prints the folder the .wasm files land in —
# the folder to put on SLUICE_MODULE_PATH. Given crate names, builds only
# those Rust operators (the demo needs two).
#   scripts/build-guests.sh [--quiet] [CRATE...]
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
quiet=()
if [ "${1:-}" = "--quiet" ]; then
    quiet=(--quiet)
    shift
fi
packages=()
for name in "$@"; do
    [ -f "examples/operators/$name/Cargo.toml" ] || {
        echo "build-guests.sh: no operator crate examples/operators/$name" >&2
        exit 2
    }
    packages+=(-p "$name")
done
all=$(( $# == 0 ))
if [ "$all" = 1 ]; then
    for manifest in examples/operators/*/Cargo.toml; do
        name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)
        packages+=(-p "$name")
    done
fi
out="$target_dir/wasm32-wasip2/release"
# Whole-program optimisation for the guests only (the host's release build
# would take many minutes more with it): the SDK's small functions are
# inlined into each operator, and W2's window thread does ~9 % less work.
CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    cargo build "${quiet[@]}" --release --target wasm32-wasip2 "${packages[@]}" >&2
if [ "$all" = 1 ]; then
    # The Python and JavaScript examples, with their SDKs (skipped when up
    # to date).
    guest-sdk/python/build-examples.sh "$out" >&2
    guest-sdk/js/build-examples.sh "$out" >&2
fi
echo "$out"
