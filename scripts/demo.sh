#!/usr/bin/env bash
# Sets up what the demo needs (scripts/setup.sh --demo: the wasm32-wasip2
# Rust target, libclang for RocksDB, cmake for librdkafka), builds the host
# and the two example operators the demo runs, and runs the orders demo on
# the built-in generator: hourly revenue per customer, late orders on their
# own lines.
#   scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --demo
SLUICE_MODULE_PATH="$(scripts/build-guests.sh --quiet usd-orders count-sum)"
export SLUICE_MODULE_PATH
cargo build --release --quiet -p sluice >&2
"${CARGO_TARGET_DIR:-target}/release/sluice" run examples/orders/pipeline.yaml
