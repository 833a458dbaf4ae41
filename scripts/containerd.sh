#!/usr/bin/env bash
# Installs containerd and what pods need (runc, the CNI plugins, iptables, busybox-static for
# the test image), then starts wasmkube's own containerd unless it already answers; safe to re-run.
#   config  /etc/wasmkube/containerd.toml     socket  /run/wasmkube/containerd.sock
#   root    /var/lib/wasmkube/containerd      state   /run/wasmkube/containerd
#   log     /var/log/wasmkube-containerd.log
# There is no systemd on the machines this runs on: containerd is started in the background,
# in its own session, and outlives this script.
set -euo pipefail

CONFIG=/etc/wasmkube/containerd.toml
SOCKET=/run/wasmkube/containerd.sock
LOG=/var/log/wasmkube-containerd.log

# shellcheck source=scripts/apt.sh
source "$(dirname "$0")/apt.sh"

answers() {
    $SUDO timeout 5 ctr -a "$SOCKET" version >/dev/null 2>&1
}

apt_install containerd runc containernetworking-plugins iptables busybox-static docker-registry skopeo

if answers; then
    echo "containerd: already answering on $SOCKET"
    exit 0
fi

config="$(cat <<EOF
# wasmkube's own containerd, written by scripts/containerd.sh; edits are overwritten.
version = 2
root = "/var/lib/wasmkube/containerd"
state = "/run/wasmkube/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$SOCKET"
EOF
)"
$SUDO mkdir -p "$(dirname "$CONFIG")" "$(dirname "$SOCKET")" /var/lib/wasmkube/containerd /run/wasmkube/containerd
if [ "$($SUDO cat "$CONFIG" 2>/dev/null || true)" != "$config" ]; then
    printf '%s\n' "$config" | $SUDO tee "$CONFIG" >/dev/null
    echo "containerd: wrote $CONFIG"
fi

running() {
    pgrep -f "^containerd --config $CONFIG\$" >/dev/null 2>&1
}

if running; then
    # Started a moment ago (by another run of this script, say) and not listening yet.
    echo "containerd: already started; waiting for it to answer"
else
    # A socket left behind by a containerd that died would make the new one fail to listen.
    $SUDO rm -f "$SOCKET"
    echo "containerd: starting (log $LOG)"
    # The redirections happen in the (possibly sudo'd) shell: /var/log may not be ours to write.
    # Descriptors above 2 are closed first: a containerd that inherited a caller's `flock` lock
    # would hold it for as long as it runs.
    $SUDO setsid bash -c 'for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done
        exec nohup containerd --config "$1" </dev/null >>"$2" 2>&1' bash "$CONFIG" "$LOG" &
fi

deadline=$((SECONDS + 20))
while [ "$SECONDS" -lt "$deadline" ]; do
    if answers; then
        echo "containerd: answering on $SOCKET (pid $(pgrep -o -f "^containerd --config $CONFIG\$" || echo '?'))"
        exit 0
    fi
    sleep 0.5
done
echo "containerd: no answer on $SOCKET after 20 s; the end of $LOG:" >&2
$SUDO tail -n 20 "$LOG" >&2 || true
exit 1
