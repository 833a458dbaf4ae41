#!/usr/bin/env bash
# Installs everything wasmkube needs to build and test on a fresh Debian machine; safe to re-run.
#   - apt: protobuf-compiler (etcd-client and containerd-client build with protoc), etcd-server
#   - apt: nftables and conntrack (the node agent's service proxy)
#   - apt: containerd, runc, containernetworking-plugins, iptables, busybox-static (the node agent
#     and its test image), and wasmkube's own containerd started on /run/wasmkube/containerd.sock
#   - apt: dnsmasq-base (a UDP server image for the service tests)
#   - apt: haproxy (the load balancer in front of two apiservers in tests/failover.rs)
#   - the test images target/images/{busybox,busybox-users,dnsmasq}.tar (scripts/build-images.sh,
#     no network)
#   - rustup: the wasm32-wasip2 target for plugins
#   - cargo-nextest, when missing
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/apt.sh
source scripts/apt.sh

command -v protoc >/dev/null 2>&1 || apt_install protobuf-compiler
# The node agent's service proxy programs nftables through `nft`.
command -v nft >/dev/null 2>&1 || apt_install nftables
# ... and forgets stale UDP flows through `conntrack`.
command -v conntrack >/dev/null 2>&1 || apt_install conntrack
# dnsmasq: the UDP server of the service proxy's tests (scripts/build-images.sh).
apt_install dnsmasq-base
# HAProxy: the supported load balancer in front of several apiservers (tests/failover.rs runs
# manifests/haproxy/haproxy.cfg).
apt_install haproxy
scripts/etcd.sh
scripts/containerd.sh
scripts/build-images.sh

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi

command -v kubectl >/dev/null 2>&1 || echo "setup: warning: kubectl is not on PATH; the end-to-end tests need it" >&2
