#!/usr/bin/env bash
# Builds every plugin crate (plugins/*/, plugins/tests/*/ and plugins/examples/*/, those with
# crate-type cdylib) for wasm32-wasip2 in release, into target/plugins/wasm32-wasip2/release/<crate>.wasm:
# the target directory where host/wasmkube/build.rs builds the built-in ones it embeds, so each is
# compiled once. Extra arguments go to cargo (e.g. --locked).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

packages=()
shopt -s nullglob
for manifest in plugins/*/Cargo.toml plugins/tests/*/Cargo.toml plugins/examples/*/Cargo.toml; do
    grep -Eq '^crate-type *=.*"cdylib"' "$manifest" || continue
    name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n1)
    [ -n "$name" ] && packages+=(-p "$name")
done

if [ ${#packages[@]} -eq 0 ]; then
    echo "build-plugins: no plugin crates found under plugins/" >&2
    exit 1
fi

target_dir="${CARGO_TARGET_DIR:-target}/plugins"
echo "build-plugins: cargo build --release --target wasm32-wasip2 --target-dir $target_dir ${packages[*]}"
cargo build --release --target wasm32-wasip2 --target-dir "$target_dir" "${packages[@]}" "$@"
