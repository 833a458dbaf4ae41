#!/usr/bin/env bash
# Sets everything up, builds wasmkube and its built-in plugins, and starts a single-node control
# plane on the embedded store with the built-in Wasm controllers running.
# Usage: scripts/up.sh [--data-dir DIR] [--port N]   (defaults: .data, 6443)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-plugins.sh
cargo build --release -p wasmkube
plugins=()
for wasm in target/wasm32-wasip2/release/wasmkube_plugin_*.wasm; do
    plugins+=(--plugin "$wasm")
done
exec ./target/release/wasmkube server --data-dir .data "${plugins[@]}" "$@"
