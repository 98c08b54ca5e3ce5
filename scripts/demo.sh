#!/usr/bin/env bash
# Sets up what sluice needs (the wasm32-wasip2 Rust target), builds the host
# and the example operators, and runs the orders demo on the built-in
# generator: hourly revenue per customer, late orders on their own lines.
#   scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >&2
SLUICE_MODULE_PATH="$(scripts/build-guests.sh --quiet)"
export SLUICE_MODULE_PATH
cargo build --release --quiet -p sluice >&2
"${CARGO_TARGET_DIR:-target}/release/sluice" run examples/orders/pipeline.yaml
