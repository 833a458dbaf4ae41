#!/usr/bin/env bash
# Sets everything up, builds wasmkube and its built-in plugins, and starts a single-node control
# plane on the embedded store with the built-in Wasm controllers running.
# Usage: scripts/up.sh [--data-dir DIR] [--port N]   (defaults: .data, 6443)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-plugins.sh
cargo build --release -p wasmkube
# The built-in controllers: plugins/<name>/ (not the examples, nor the runtime's test plugins).
plugins=()
for manifest in plugins/*/Cargo.toml; do
    crate=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n1)
    plugins+=(--plugin "target/wasm32-wasip2/release/${crate//-/_}.wasm")
done
exec ./target/release/wasmkube server --data-dir .data "${plugins[@]}" "$@"
