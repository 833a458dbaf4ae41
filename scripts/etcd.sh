#!/usr/bin/env bash
# Installs etcd (the Debian package etcd-server) unless an `etcd` binary is already on PATH.
# The store's etcd conformance tests and benchmarks start their own etcd with it.
set -euo pipefail

if command -v etcd >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

install() {
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server
}

# The package lists may be stale or missing: refresh them only if the install fails.
if ! install; then
    $SUDO apt-get update
    install
fi

command -v etcd >/dev/null
