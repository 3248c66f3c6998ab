#!/usr/bin/env bash
# What container images add to a backup: a sandbox node whose storage holds
# an image of ~512 MiB (incompressible layers, the worst case), backed up
# without and with --with-images; reports the added time and size per GiB.
#   scripts/bench-images.sh     (BENCH_DIR, default /var/tmp/ur-bench-images)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-images.sh: run as root" >&2; exit 1; }
scripts/install-deps.sh >/dev/null
scripts/build-static.sh >/dev/null
BIN=$PWD/target/x86_64-unknown-linux-gnu/release/upgrade-recovery
W=${BENCH_DIR:-/var/tmp/ur-bench-images}
scripts/sandbox.sh teardown "$W" 2>/dev/null || true
scripts/sandbox.sh create "$W" >/dev/null
trap 'scripts/sandbox.sh teardown "$W"' EXIT
eval "$(scripts/sandbox.sh env "$W")"
R=$W/root
scripts/sandbox.sh images "$W" >/dev/null
# Replace the etcd image with a big one: 4 layers of 128 MiB.
ctx=$(mktemp -d)
for i in 1 2 3 4; do head -c $((128 << 20)) /dev/urandom > "$ctx/l$i.bin"; done
printf 'FROM scratch\nCOPY l1.bin /\nCOPY l2.bin /\nCOPY l3.bin /\nCOPY l4.bin /\n' > "$ctx/Containerfile"
buildah --root "$R/var/lib/containers/storage" --runroot "$R/run/containers/storage" --storage-driver vfs \
  bud -q --isolation chroot -t quay.io/openshift-release-dev/ocp-v4.0-art-dev:etcd-sandbox "$ctx" >/dev/null
rm -rf "$ctx"
run() { sync; echo 3 > /proc/sys/vm/drop_caches; /usr/bin/time -f "%e" -o "$W/t" "$BIN" --root "$R" -q backup --min-free 0 "$@" >/dev/null; cat "$W/t"; }
t0=$(run); s0=$(du -sb "$R/var/recovery" | cut -f1)
t1=$(run --with-images); s1=$(du -sb "$R/var/recovery" | cut -f1)
img=$(jq '[.images[].size] | add' "$R/var/recovery/manifest.json")
awk -v t0="$t0" -v t1="$t1" -v s0="$s0" -v s1="$s1" -v img="$img" 'BEGIN {
  gib = img / 1073741824
  printf "| images | without | with --with-images | added time per GiB | added size per GiB of images |\n|---|---|---|---|---|\n"
  printf "| %.0f MiB | %.2f s | %.2f s | %.2f s | %.2f GiB |\n", img / 1048576, t0, t1, (t1 - t0) / gib, (s1 - s0) / 1073741824 / gib
}'
