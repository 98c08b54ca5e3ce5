#!/usr/bin/env bash
# What building and testing sluice needs besides Rust: the wasm32-wasip2
# target (for the example operators), libclang (RocksDB's bindings are
# generated with it) and Chromium (the dashboard is tested in it, headless).
# Idempotent; scripts/demo.sh and scripts/test.sh run it first.
#   scripts/setup.sh
set -euo pipefail
rustup target add wasm32-wasip2 >&2
if ! ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 \
    || ! command -v clang >/dev/null; then
    echo "scripts/setup.sh: installing clang and libclang-dev (RocksDB's build needs them)" >&2
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    if command -v apt-get >/dev/null; then
        "${sudo[@]}" apt-get install -y clang libclang-dev >&2
    else
        echo "scripts/setup.sh: install clang and libclang with your package manager" >&2
        exit 1
    fi
fi
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null \
    && ! command -v google-chrome >/dev/null; then
    echo "scripts/setup.sh: installing chromium (the dashboard test runs it headless)" >&2
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    if command -v apt-get >/dev/null; then
        "${sudo[@]}" apt-get install -y chromium >&2 \
            || { "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" apt-get install -y chromium >&2; }
    else
        echo "scripts/setup.sh: install Chromium with your package manager" >&2
        exit 1
    fi
fi
