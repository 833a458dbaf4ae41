#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: unit tests, the store conformance suite on
# both backends (a real etcd), the plugin runtime and Wasm controllers (plugins built for
# wasm32-wasip2 first), and the end-to-end tests that drive the real binary with kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CI:-}" = true ]; then
    # CI builds a fresh clone once, on a small disk: no incremental caches and no debug info
    # halve the target directory (panics still name their file and line).
    export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=false
fi
scripts/setup.sh
scripts/build-plugins.sh
cargo build -p wasmkube
# Every test's cluster shares this compilation cache: filled once here, not by the first tests.
target/debug/wasmkube plugin precompile --plugin-cache target/plugin-cache
cargo nextest run --workspace --no-fail-fast "$@"
