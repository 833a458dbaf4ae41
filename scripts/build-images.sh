#!/usr/bin/env bash
# Builds the test image target/images/busybox.tar (docker.io/library/busybox:latest, also tagged
# :stable so that `kubectl create deployment --image=busybox:stable` runs it without a pull: only
# :latest defaults to imagePullPolicy Always), an OCI image-layout archive made from Debian's
# busybox-static, without any network, and
# target/images/busybox-users.tar: the same layer as busybox:nosuchuser (USER nosuchuser, in no
# /etc/passwd) and busybox:nobody (USER nobody), for the hostile-node tests, and
# target/images/dnsmasq.tar (wasmkube.local/dnsmasq:latest): the busybox files plus Debian's
# dnsmasq and the libraries it links, a UDP server for the service proxy's tests. The output is
# the same bytes on every run (for the same packages): names sorted, mtimes 0, owners 0:0, modes
# set, gzip -n. Skipped when the archives are newer than /bin/busybox, dnsmasq and this script.
set -euo pipefail
cd "$(dirname "$0")/.."

BUSYBOX=/bin/busybox
OUT=target/images/busybox.tar
USERS_OUT=target/images/busybox-users.tar
DNSMASQ=/usr/sbin/dnsmasq
DNSMASQ_OUT=target/images/dnsmasq.tar
NAME=docker.io/library/busybox

if [ -f "$OUT" ] && [ "$OUT" -nt "$BUSYBOX" ] && [ "$OUT" -nt "$0" ] &&
    [ -f "$USERS_OUT" ] && [ "$USERS_OUT" -nt "$BUSYBOX" ] && [ "$USERS_OUT" -nt "$0" ] &&
    [ -f "$DNSMASQ_OUT" ] && [ "$DNSMASQ_OUT" -nt "$DNSMASQ" ] && [ "$DNSMASQ_OUT" -nt "$0" ]; then
    echo "build-images: $OUT is up to date"
    exit 0
fi
if [ ! -x "$BUSYBOX" ]; then
    echo "build-images: $BUSYBOX is missing; scripts/containerd.sh installs busybox-static" >&2
    exit 1
fi
if [ ! -x "$DNSMASQ" ]; then
    echo "build-images: $DNSMASQ is missing; scripts/setup.sh installs dnsmasq-base" >&2
    exit 1
fi

case "$(dpkg --print-architecture 2>/dev/null || uname -m)" in
    amd64 | x86_64) ARCH=amd64 ;;
    arm64 | aarch64) ARCH=arm64 ;;
    *) echo "build-images: unsupported architecture" >&2; exit 1 ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export LC_ALL=C

# det_tar DIR OUT ENTRY...: a reproducible tar of the ENTRYs under DIR.
det_tar() {
    local dir="$1" out="$2"
    shift 2
    tar --create --file="$out" --directory="$dir" --format=gnu --sort=name \
        --mtime=@0 --owner=0 --group=0 --numeric-owner "$@"
}

sha256() {
    sha256sum "$1" | cut -d' ' -f1
}

size() {
    stat -c %s "$1"
}

# === the root filesystem ===
root="$work/rootfs"
mkdir -p "$root"/{bin,etc,tmp,root,var/www,proc,sys,dev}
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list | sort -u); do
    case "$applet" in
        busybox | */*) ;;
        *) ln -s busybox "$root/bin/$applet" ;;
    esac
done
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'nobody:x:65534:' >"$root/etc/group"
printf '%s\n' '<h1>wasmkube</h1>' >"$root/var/www/index.html"
find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod 0644 {} +
chmod 0755 "$root/bin/busybox"
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"

# === the OCI layouts ===
# make_layer ROOT: packs ROOT as the layer the next layouts are made of (diff_id, layer_digest,
# layer_size and $work/layer.tar.gz).
make_layer() {
    local root="$1" entries
    entries="$(cd "$root" && ls | tr '\n' ' ')"
    # shellcheck disable=SC2086 # the entries are top-level names without spaces
    det_tar "$root" "$work/layer.tar" $entries
    diff_id="$(sha256 "$work/layer.tar")"
    gzip -n -9 -c "$work/layer.tar" >"$work/layer.tar.gz"
    layer_digest="$(sha256 "$work/layer.tar.gz")"
    layer_size="$(size "$work/layer.tar.gz")"
}

# blob LAYOUT FILE: moves FILE into LAYOUT under its digest; prints "digest size".
blob() {
    local digest
    digest="$(sha256 "$2")"
    echo "$digest $(size "$2")"
    mv "$2" "$1/blobs/sha256/$digest"
}

# manifest LAYOUT USER: the config (running as USER, when not empty) and manifest of the image
# in LAYOUT; prints the manifest's "digest size".
manifest() {
    local layout="$1" user="$2" config_digest config_size
    local user_field=""
    if [ -n "$user" ]; then
        user_field=',"User":"'"$user"'"'
    fi
    printf '%s' '{"architecture":"'"$ARCH"'","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]'"$user_field"'},"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]}}' >"$work/config.json"
    read -r config_digest config_size < <(blob "$layout" "$work/config.json")
    printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config_digest"'","size":'"$config_size"'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:'"$layer_digest"'","size":'"$layer_size"'}]}' >"$work/manifest.json"
    blob "$layout" "$work/manifest.json"
}

# entry DIGEST SIZE TAG: an index entry naming the manifest NAME:TAG.
entry() {
    printf '%s' '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$1"'","size":'"$2"',"annotations":{"io.containerd.image.name":"'"$NAME:$3"'","org.opencontainers.image.ref.name":"'"$3"'"},"platform":{"architecture":"'"$ARCH"'","os":"linux"}}'
}

# layout OUT TAG:USER...: an OCI layout archive at OUT with one image per TAG:USER.
layout() {
    local out="$1" layout="$work/layout" entries="" tag user digest size
    shift
    rm -rf "$layout"
    mkdir -p "$layout/blobs/sha256"
    cp "$work/layer.tar.gz" "$layout/blobs/sha256/$layer_digest"
    for image in "$@"; do
        tag="${image%%:*}"
        user="${image#*:}"
        read -r digest size < <(manifest "$layout" "$user")
        entries="$entries${entries:+,}$(entry "$digest" "$size" "$tag")"
        echo "build-images: $out has $NAME:$tag (manifest sha256:$digest)"
    done
    printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":['"$entries"']}' >"$layout/index.json"
    printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
    find "$layout" -type d -exec chmod 0755 {} +
    find "$layout" -type f -exec chmod 0644 {} +
    mkdir -p "$(dirname "$out")"
    det_tar "$layout" "$work/image.tar" blobs index.json oci-layout
    mv "$work/image.tar" "$out"
}

make_layer "$root"
layout "$OUT" "latest:" "stable:"
layout "$USERS_OUT" "nosuchuser:nosuchuser" "nobody:nobody"

# === dnsmasq: the busybox files, the binary and every library ldd names, at their own paths ===
dnsmasq_root="$work/dnsmasq-root"
cp -a "$root" "$dnsmasq_root"
for file in "$DNSMASQ" $(ldd "$DNSMASQ" | grep -o '/[^ ]*'); do
    mkdir -p "$dnsmasq_root$(dirname "$file")"
    cp -L "$file" "$dnsmasq_root$file"
done
find "$dnsmasq_root" -type d -exec chmod 0755 {} +
chmod 0755 "$dnsmasq_root$DNSMASQ"
chmod 1777 "$dnsmasq_root/tmp"
chmod 0700 "$dnsmasq_root/root"
make_layer "$dnsmasq_root"
NAME=wasmkube.local/dnsmasq layout "$DNSMASQ_OUT" "latest:"
