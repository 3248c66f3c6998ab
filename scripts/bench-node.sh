#!/usr/bin/env bash
# The whole `backup` of a sandbox node (etcd snapshot, static pods, the trees
# /etc, /usr/local, /var/lib/kubelet, extras, fsync, verified), timed end to
# end against (a) a bare `tar -c | zstd -T0 -3` of the same three trees and
# (b) today's way: `cp -Ra` of the trees + `etcdctl snapshot save`, then sync.
# Corpus and knobs in bench-lib.sh (BENCH_SCALE=2 doubles it; BENCH_RUNS).
# Medians of alternating rounds, caches dropped before each command; the
# archive bytes of the three trees against the tar.zst's.
#   scripts/bench-node.sh     (BENCH_DIR, default /var/tmp/ur-bench-node)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-node.sh: run as root" >&2; exit 1; }
. scripts/bench-lib.sh
[ -n "${BENCH_NO_BUILD:-}" ] || { scripts/install-deps.sh >/dev/null; scripts/build-static.sh >/dev/null; }
W=${BENCH_DIR:-/var/tmp/ur-bench-node}
bench_node "$W"
[ -n "${BENCH_KEEP:-}" ] || trap 'scripts/sandbox.sh teardown "$W"' EXIT
. "$W/ctl/state/ports"
c=$R/etc/kubernetes/static-pod-resources/etcd-certs
db=$(stat -c %s "$R/var/lib/etcd/member/snap/db")
trees=$(du -sbx "$R/etc" "$R/var/usrlocal" "$R/var/lib/kubelet" | awk '{s+=$1} END {printf "%.0f\n", s}')
entries=$(find "$R/etc" "$R/var/usrlocal" "$R/var/lib/kubelet" -xdev | wc -l)
rm -f "$W"/b.*

ours() {
  rm -rf "$R/var/recovery"
  timed "$W/b.ours" "'$BIN' --root '$R' backup --min-free 0 --no-nice"
  find "$R/var/recovery" \( -name etc.tar.zst -o -name local.tar.zst -o -name kubelet.tar.zst \) -printf '%s\n' |
    awk '{s+=$1} END {printf "%.0f\n", s}' > "$W/b.ours.bytes"
}
tarzstd() {
  rm -f "$W/ref.tar.zst"
  timed "$W/b.tar" "tar --one-file-system -C '$R' -cf - etc var/usrlocal var/lib/kubelet 2>/dev/null | zstd -T0 -3 -q -o '$W/ref.tar.zst' && sync"
}
today() {
  rm -rf "$W/today"; mkdir -p "$W/today"
  timed "$W/b.today" "cp -Ra '$R/etc' '$W/today/etc' && cp -Ra '$R/usr/local/' '$W/today/local' && cp -Ra '$R/var/lib/kubelet' '$W/today/kubelet' &&
    ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:$CLIENT_PORT --cacert='$c/configmaps/etcd-serving-ca/ca-bundle.crt' \
    --cert='$c/secrets/etcd-all-certs/etcd-peer-sno.crt' --key='$c/secrets/etcd-all-certs/etcd-peer-sno.key' snapshot save '$W/today/snap.db' && sync"
  rm -rf "$W/today"
}
for i in $(seq 1 "$BENCH_RUNS"); do
  if [ $((i % 2)) -eq 1 ]; then ours; tarzstd; today; else today; tarzstd; ours; fi
done
o=$(med_secs "$W/b.ours"); t=$(med_secs "$W/b.tar"); d=$(med_secs "$W/b.today")
ob=$(cat "$W/b.ours.bytes"); tb=$(stat -c %s "$W/ref.tar.zst")
echo "# node backup ($(date -u +%F), $(nproc) CPUs, scale $BENCH_SCALE: trees $((trees >> 20)) MiB in $entries entries, etcd db $((db >> 20)) MiB; load averages per run)"
echo
echo "| command | median | runs (s) | loads | peak RSS | tree archive bytes |"
echo "|---|---|---|---|---|---|"
echo "| ours: backup (verified) | $(cells "$W/b.ours") | $((ob >> 20)) MiB |"
echo "| tar -c \\| zstd -T0 -3 + sync | $(cells "$W/b.tar") | $((tb >> 20)) MiB |"
echo "| today: cp -Ra x3 + etcdctl snapshot save + sync | $(cells "$W/b.today") | |"
echo
echo "ours/tar|zstd: $(ratio "$o" "$t") (bytes $(ratio "$ob" "$tb")); ours/today: $(ratio "$o" "$d")"
echo
echo "Parts of the last backup:"
tail -12 "$W/b.ours.log"
