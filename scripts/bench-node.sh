#!/usr/bin/env bash
# The whole backup of a sandbox node whose trees hold ~1.5 GB (a copy of
# /usr/share in /etc, another in /var/lib/kubelet, and 100k small files) and
# whose etcd holds ~200 MB, timed end to end against the same work done
# today's way: `cp -Ra` of the three trees + `etcdctl snapshot save` +
# `tar czf` of the extras, then sync. Caches are dropped before each.
#   scripts/bench-node.sh     (BENCH_DIR, default /var/tmp/ur-bench-node)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-node.sh: run as root" >&2; exit 1; }
scripts/install-deps.sh >/dev/null
scripts/build-static.sh >/dev/null
BIN=$PWD/target/x86_64-unknown-linux-gnu/release/upgrade-recovery
W=${BENCH_DIR:-/var/tmp/ur-bench-node}
scripts/sandbox.sh teardown "$W" 2>/dev/null || true
scripts/sandbox.sh create "$W" >/dev/null
trap 'scripts/sandbox.sh teardown "$W"' EXIT
eval "$(scripts/sandbox.sh env "$W")"
R=$W/root
. "$W/ctl/state/ports"
c=$R/etc/kubernetes/static-pod-resources/etcd-certs
ctl() { ETCDCTL_API=3 etcdctl --endpoints="https://127.0.0.1:$CLIENT_PORT" --cacert="$c/configmaps/etcd-serving-ca/ca-bundle.crt" \
  --cert="$c/secrets/etcd-all-certs/etcd-peer-sno.crt" --key="$c/secrets/etcd-all-certs/etcd-peer-sno.key" "$@"; }

echo "bench-node: filling the trees and etcd (takes a while)" >&2
cp -a /usr/share "$R/etc/share-copy"
cp -a /usr/share "$R/var/lib/kubelet/share-copy"
sed -n '/^make_small()/,/^}/p' scripts/bench.sh > "$W/small.sh"; . "$W/small.sh"
mkdir -p "$R/var/lib/kubelet/small"; make_small "$R/var/lib/kubelet/small" >/dev/null
head -c 100000 /dev/urandom | base64 -w0 > "$W/value"
for i in $(seq 1 1500); do ctl put "/kubernetes.io/secrets/bench/$i" < "$W/value" >/dev/null; done
db=$(stat -c %s "$R/var/lib/etcd/member/snap/db")
trees=$(du -sbx "$R/etc" "$R/var/usrlocal" "$R/var/lib/kubelet" | awk '{s+=$1} END {print s}')

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
drop
/usr/bin/time -f "%e %M" -o "$W/t.ours" "$BIN" --root "$R" -q backup --min-free 0 >/dev/null
today=$W/today; mkdir -p "$today"
drop
/usr/bin/time -f "%e %M" -o "$W/t.today" bash -c "
  cp -Ra '$R/etc' '$today/etc' && cp -Ra '$R/usr/local/' '$today/local' && cp -Ra '$R/var/lib/kubelet' '$today/kubelet' &&
  ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:$CLIENT_PORT --cacert='$c/configmaps/etcd-serving-ca/ca-bundle.crt' \
    --cert='$c/secrets/etcd-all-certs/etcd-peer-sno.crt' --key='$c/secrets/etcd-all-certs/etcd-peer-sno.key' snapshot save '$today/snap.db' >/dev/null &&
  tar czf '$today/extras.tgz' -C '$R' opt/sandbox/tool.conf var/lib/mco/state.json && sync"
ours=$(cut -d' ' -f1 "$W/t.ours"); old=$(cut -d' ' -f1 "$W/t.today")
stored=$(du -sb "$R/var/recovery" | cut -f1)
printf '| node backup | trees | etcd db | ours | today (cp -Ra + snapshot + tar czf) | ours/today | stored | ours RSS |\n|---|---|---|---|---|---|---|---|\n'
printf '| sandbox | %d MiB | %d MiB | %s s | %s s | %s | %d MiB | %d MiB |\n' $((trees >> 20)) $((db >> 20)) "$ours" "$old" \
  "$(awk -v a="$ours" -v b="$old" 'BEGIN{printf "%.2f", a/b}')" $((stored >> 20)) "$(awk '{printf "%d", $2/1024}' "$W/t.ours")"
