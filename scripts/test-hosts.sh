#!/usr/bin/env bash
# Test hosts on this machine: each a network namespace joined by a veth pair to the bridge
# wkhosts0 (172.31.0.1/24, the host's side), with the address 172.31.0.N. A node agent started in
# one (`test-hosts.sh run NAME -- wasmkube node …`) is a node on its own "machine" as far as the
# network goes; all of them share this machine's containerd, each in its own node name.
# Test hosts get no default route: what is not another test host, the host or a pod route the
# agents add stays unreachable, so nothing a test sends can leave the machine.
#   test-hosts.sh add NAME N     make host NAME at 172.31.0.N (N in 2..254)
#   test-hosts.sh del NAME       remove it (and the bridge when it is the last)
#   test-hosts.sh run NAME -- CMD…  run CMD in NAME's network namespace (the mount namespace is
#                                the machine's, so pod namespaces it makes are seen by containerd)
set -euo pipefail

BRIDGE=wkhosts0
PREFIX=172.31.0

usage() {
    sed -n '2,12p' "$0" >&2
    exit 2
}

valid_name() {
    [[ "$1" =~ ^[a-z][a-z0-9]{0,9}$ ]] || { echo "test host name must be [a-z][a-z0-9]{0,9}: $1" >&2; exit 2; }
}

bridge_up() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$PREFIX.1/24" dev "$BRIDGE"
        ip link set "$BRIDGE" up
    fi
}

case "${1:-}" in
add)
    [ $# -eq 3 ] || usage
    name=$2 n=$3
    valid_name "$name"
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 2 ] && [ "$n" -le 254 ] || { echo "N must be 2..254" >&2; exit 2; }
    "$0" del "$name" 2>/dev/null || true
    bridge_up
    ip netns add "wkh-$name"
    ip link add "wkh-$name" type veth peer name eth0 netns "wkh-$name"
    ip link set "wkh-$name" master "$BRIDGE" up
    ip -n "wkh-$name" addr add "$PREFIX.$n/24" dev eth0
    ip -n "wkh-$name" link set eth0 up
    ip -n "wkh-$name" link set lo up
    # The pods' traffic to other nodes is forwarded through this host's namespace.
    ip netns exec "wkh-$name" sysctl -qw net.ipv4.ip_forward=1
    ;;
del)
    [ $# -eq 2 ] || usage
    valid_name "$2"
    ip netns delete "wkh-$2" 2>/dev/null || true
    ip link delete "wkh-$2" 2>/dev/null || true
    if ip link show "$BRIDGE" >/dev/null 2>&1 && [ -z "$(ip link show master "$BRIDGE")" ]; then
        ip link delete "$BRIDGE"
    fi
    ;;
run)
    [ $# -ge 4 ] && [ "$3" = "--" ] || usage
    valid_name "$2"
    name=$2
    shift 3
    exec nsenter --net="/run/netns/wkh-$name" "$@"
    ;;
*) usage ;;
esac
