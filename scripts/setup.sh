#!/usr/bin/env bash
# What building and testing sluice needs besides Rust: the wasm32-wasip2
# target (for the example operators), libclang (RocksDB's bindings are
# generated with it) and Chromium (the dashboard is tested in it, headless).
# Idempotent; scripts/demo.sh and scripts/test.sh run it first.
#   scripts/setup.sh
set -euo pipefail
rustup target add wasm32-wasip2 >&2

# apt_install WHY PACKAGE...: installs Debian packages (as root, or with sudo),
# fetching the package lists first if they are missing.
apt_install() {
    local why=$1
    shift
    echo "scripts/setup.sh: installing $* ($why)" >&2
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    if ! command -v apt-get >/dev/null; then
        echo "scripts/setup.sh: install $* with your package manager" >&2
        exit 1
    fi
    "${sudo[@]}" apt-get install -y "$@" >&2 \
        || { "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" apt-get install -y "$@" >&2; }
}

if ! ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 \
    || ! command -v clang >/dev/null; then
    apt_install "RocksDB's build needs them" clang libclang-dev
fi
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null \
    && ! command -v google-chrome >/dev/null; then
    apt_install "the dashboard test runs it headless" chromium
fi
