#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: unit tests, the store conformance suite on
# both backends (a real etcd), the plugin runtime and Wasm controllers (plugins built for
# wasm32-wasip2 first), and the end-to-end tests that drive the real binary with kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-plugins.sh
cargo build -p wasmkube
# Every test's cluster shares this compilation cache: filled once here, not by the first tests.
target/debug/wasmkube plugin precompile --plugin-cache target/plugin-cache
cargo nextest run --workspace --no-fail-fast "$@"
