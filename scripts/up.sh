#!/usr/bin/env bash
# Sets everything up, builds wasmkube (its build embeds the built-in Wasm plugins), and starts a
# single-node cluster: the control plane on the embedded store with the built-in Wasm controllers
# and scheduling policy, and a node agent running pods through the project's containerd (started
# by setup) with CNI networking. The project's busybox image is imported first. Needs root
# (containers, network namespaces).
# Usage: scripts/up.sh [--port N] [wasmkube up flags…]   (data in .data, port 6443)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p wasmkube
./target/release/wasmkube image import target/images/busybox.tar
exec ./target/release/wasmkube up --data-dir .data "$@"
