#!/usr/bin/env bash
# Runs the whole test suite: builds the example operators as Wasm components
# (the end-to-end tests run them), then every test of the workspace — unit,
# property, end-to-end and doc tests — in the release profile.
#   scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "scripts/test.sh: python3 is needed (bench/gen_orders.py, bench/checksum.py)" >&2; exit 1; }
scripts/setup.sh
SLUICE_MODULE_PATH="$(scripts/build-guests.sh --quiet)"
export SLUICE_MODULE_PATH
# The Python and JavaScript SDKs' own tests (no Wasm; a second or two).
python3 -m unittest discover -q -s guest-sdk/python/tests 2>&1 | tail -n 3 >&2
node --test --test-reporter=dot guest-sdk/js/test/ >&2
cargo test --release --workspace "$@"
