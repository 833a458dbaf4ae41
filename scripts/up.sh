#!/usr/bin/env bash
# Sets everything up, builds wasmkube and starts a single-node control plane on the embedded store.
# Usage: scripts/up.sh [--data-dir DIR] [--port N]   (defaults: .data, 6443)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p wasmkube
exec ./target/release/wasmkube server --data-dir .data "$@"
