#!/usr/bin/env bash
# Sets everything up, builds wasmkube and its built-in plugins, and starts a single-node cluster:
# the control plane on the embedded store with the built-in Wasm controllers, and a node agent
# running pods through the project's containerd (started by setup) with CNI networking. The
# project's busybox image is imported first. Needs root (containers, network namespaces).
# Usage: scripts/up.sh [--port N] [wasmkube up flags…]   (data in .data, port 6443)
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
./target/release/wasmkube image import target/images/busybox.tar
exec ./target/release/wasmkube up --data-dir .data "${plugins[@]}" "$@"
