#!/usr/bin/env bash
# Issue 25: the DU-sized node (bench-lib.sh's du profile, scripts/bench-du.py),
# each command as the user waits for it against today's commands on the same
# data, with peak RSS, CPU (user+sys) and the bytes written to disk:
#   backup    ours: `backup` (verified, as the hub's Job runs it)
#             tar -c | zstd -T0 -3 of the three trees + sync
#             today: cp -Ra of the three trees + etcdctl snapshot save + sync
#   files     ours: `restore --restart` up to its "Reboot now" (with the check
#             of every part the phase reads) after 20% of /usr/local and /etc
#             changed, 5% deleted, 5% added
#             today: rsync -aAXc --delete of /usr/local and /etc
#             (--exclude-from etc.exclude.list) + sync, same mutation
#   cluster   ours: after the node's reboot, `restore --resume` to its end
#             (the cluster phase and the shims' redeploy phase) after
#             /var/lib/kubelet mutated the same way
#             today: rsync -aAXc --delete of /var/lib/kubelet +
#             etcdctl snapshot restore + sync, same mutation
# The restored trees are checked against the plain copies with
# `rsync -naAXc --delete` (nothing may be left to do).
#
# Knobs (and bench-lib.sh's): BENCH_FACTOR divides every size (default 1: the
# DU's size; 100 a quick run), BENCH_GROWTH the scales to run one after the
# other on one node that grows (default "1"; "1 2 4 8" for the growth runs:
# the node gets steps added, each a new copy of the corpus), BENCH_RUNS rounds
# per scale (default 1 here), BENCH_DIR (default /var/tmp/ur-bench-du),
# BENCH_PREPARE=1 (make the node and the growth steps ahead, then stop; the
# timed run follows with BENCH_REUSE=1 BENCH_KEEP=1 BENCH_NO_BUILD=1).
# Disk: at factor 1 and scale S the node takes about 12 GiB x S and the
# plain copies as much again; the growth to 8 needs about 200 GiB.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-du.sh: run as root" >&2; exit 1; }
export BENCH_PROFILE=du BENCH_RUNS=${BENCH_RUNS:-1}
GROWTH=${BENCH_GROWTH:-1}
BENCH_SCALE=${GROWTH%% *}
. scripts/bench-lib.sh
[ -n "${BENCH_NO_BUILD:-}" ] || { scripts/install-deps.sh >/dev/null; scripts/build-static.sh >/dev/null; }
W=${BENCH_DIR:-/var/tmp/ur-bench-du}
bench_node "$W"
[ -n "${BENCH_KEEP:-}" ] || trap 'scripts/sandbox.sh teardown "$W"' EXIT
. "$W/ctl/state/ports"
T=$W/today
X=$R/var/recovery/etc.exclude.list
ours_opts="--poll-interval 100 --wait-timeout 120"

# grow S: add the steps up to S to the node (each step is seeded by its number,
# so a node grown to S is the node created at S). A step made ahead by
# BENCH_PREPARE (in $W/aside/STEP, same file system) is moved in by renames;
# its etcd keys are put through the API then, as the db grows with the node.
grow() {
  local s have a
  have=$(cat "$W/steps" 2>/dev/null || echo "$BENCH_SCALE")
  for s in $(seq $((have + 1)) "$1"); do
    echo "bench: adding step $s" >&2
    a=$W/aside/$s/root
    if [ -d "$a" ]; then
      mv "$a"/var/lib/kubelet/pods/* "$R/var/lib/kubelet/pods/"
      mv "$a"/etc/kubernetes/static-pod-resources/* "$R/etc/kubernetes/static-pod-resources/"
      mv "$a/etc/bench-du-$s" "$R/etc/"
      mv "$a/var/usrlocal/du-$s" "$R/var/usrlocal/"
      rm -rf "$W/aside/$s"
    else
      /usr/bin/python3 scripts/bench-du.py "$R" "$s" "$BENCH_FACTOR"
    fi
    du_etcd "$W" "$s"
  done
  echo "$1" > "$W/steps"
}

# BENCH_PREPARE=1: make the node at the first scale and the files of the
# other steps aside, then stop (kept, for a timed run with BENCH_REUSE=1 on a
# quiet machine: only the renames and the etcd puts are left to the run).
if [ -n "${BENCH_PREPARE:-}" ]; then
  trap - EXIT
  for s in $(seq $((BENCH_SCALE + 1)) "${GROWTH##* }"); do
    [ -d "$W/aside/$s" ] && continue
    echo "bench: making step $s aside" >&2
    mkdir -p "$W/aside/$s.tmp/root"
    /usr/bin/python3 scripts/bench-du.py "$W/aside/$s.tmp/root" "$s" "$BENCH_FACTOR"
    mv "$W/aside/$s.tmp" "$W/aside/$s"
  done
  echo "bench: prepared $W (scale $BENCH_SCALE, steps aside: $(ls "$W/aside" 2>/dev/null | xargs))" >&2
  exit 0
fi

copies() { # the plain copies today's restore reads, taken after a backup
  rm -rf "$T"; mkdir -p "$T"
  cp -a "$R/usr/local/" "$T/local"; cp -a "$R/etc/" "$T/etc"; cp -a "$R/var/lib/kubelet/" "$T/kubelet"
  etcdctl_w "$W" snapshot save "$T/snap.db" >/dev/null
}

b_ours() {
  rm -rf "$R/var/recovery"
  timed "$W/b.ours" "'$BIN' --root '$R' backup --min-free 0 --no-nice"
  find "$R/var/recovery" \( -name etc.tar.zst -o -name local.tar.zst -o -name kubelet.tar.zst \) -printf '%s\n' |
    awk '{s+=$1} END {printf "%.0f\n", s}' > "$W/b.ours.bytes"
}
b_tar() {
  rm -f "$W/ref.tar.zst"
  timed "$W/b.tar" "tar --one-file-system -C '$R' -cf - etc var/usrlocal var/lib/kubelet 2>/dev/null | zstd -T0 -3 -q -o '$W/ref.tar.zst' && sync"
  stat -c %s "$W/ref.tar.zst" > "$W/b.tar.bytes"; rm -f "$W/ref.tar.zst"
}
b_today() {
  rm -rf "$W/cp"; mkdir -p "$W/cp"
  timed "$W/b.today" "cp -Ra '$R/etc' '$W/cp/etc' && cp -Ra '$R/usr/local/' '$W/cp/local' && cp -Ra '$R/var/lib/kubelet' '$W/cp/kubelet' &&
    . scripts/bench-lib.sh && etcdctl_w '$W' snapshot save '$W/cp/snap.db' >/dev/null && sync"
  rm -rf "$W/cp"
}

# What the mutation leaves alone: /etc's excluded paths (the restore leaves
# them changed), the mounts below the kubelet's dir (the restore does not cross them).
kubelet_skip() { findmnt -rn -o TARGET | grep "^$R/var/lib/kubelet/" || true; }
etc_skip() { sed -n 's|^/*\([^#].*\)|'"$R"'/etc/\1|p' "$X"; echo "$R/etc/kubernetes/manifests"; }
f_ours() {
  MUTATE_SKIP=$(etc_skip) mutate "$R/usr/local/" "$R/etc" >/dev/null
  timed "$W/f.ours" "'$BIN' --root '$R' restore --restart $ours_opts"
  grep -q "Reboot now" "$W/f.ours.log" || { echo "bench: the files phase did not end with its reboot" >&2; tail "$W/f.ours.log" >&2; exit 1; }
  check "files phase" local etc
}
f_today() {
  MUTATE_SKIP=$(etc_skip) mutate "$R/usr/local/" "$R/etc" >/dev/null
  timed "$W/f.today" "rsync -aAXc --delete '$T/local/' '$R/usr/local/' &&
    rsync -aAXc --delete --exclude-from='$X' '$T/etc/' '$R/etc/' && sync"
}
c_ours() {
  scripts/sandbox.sh reboot "$W" >/dev/null
  MUTATE_SKIP=$(kubelet_skip) mutate "$R/var/lib/kubelet" >/dev/null
  timed "$W/c.ours" "'$BIN' --root '$R' restore --resume $ours_opts"
  grep -q "Recovery complete" "$W/c.ours.log" || { echo "bench: the recovery did not complete" >&2; tail "$W/c.ours.log" >&2; exit 1; }
  check "cluster phase" kubelet
}
c_today() {
  MUTATE_SKIP=$(kubelet_skip) mutate "$R/var/lib/kubelet" >/dev/null
  rm -rf "$W/etcd-restored"
  timed "$W/c.today" "rsync -aAXc --delete '$T/kubelet/' '$R/var/lib/kubelet/' &&
    ETCDCTL_API=3 etcdctl snapshot restore '$T/snap.db' --name sno --data-dir '$W/etcd-restored' \
      --initial-cluster sno=https://127.0.0.1:2380 --initial-advertise-peer-urls https://127.0.0.1:2380 >/dev/null && sync"
  rm -rf "$W/etcd-restored"
}
# check WHAT TREE...: nothing left for rsync -c to do (the oracle).
check() {
  local what=$1 t src dst ex left; shift
  for t in "$@"; do
    case $t in
      local) src=$T/local/ dst=$R/usr/local/ ex=() ;;
      etc) src=$T/etc/ dst=$R/etc/ ex=(--exclude-from="$X") ;;
      kubelet) src=$T/kubelet/ dst=$R/var/lib/kubelet/ ex=() ;;
    esac
    left=$(rsync -naAXc --delete "${ex[@]}" "$src" "$dst" | wc -l)
    [ "$left" -eq 0 ] || { echo "bench: after the $what, $dst differs from the backup ($left lines)" >&2; exit 1; }
  done
}

# row NAME FILE PER_GIB_BYTES PER_100K_ENTRIES: one table row.
row() {
  local s; s=$(med_secs "$2")
  echo "| $1 | $s s | $(med_cpu "$2") s | $(max_rss_mib "$2") MiB | $(med_written "$2") MiB | $(loads "$2") |" \
    "$(awk -v s="$s" -v b="$3" -v e="$4" 'BEGIN{printf "%.2f s | %.2f s", s / (b / 2^30), s / (e / 1e5)}') |"
}

for scale in $GROWTH; do
  grow "$scale"
  rm -f "$W"/b.* "$W"/f.* "$W"/c.*
  "$BIN" --root "$R" -q backup --min-free 0 --no-nice >/dev/null
  copies
  db=$(stat -c %s "$R/var/lib/etcd/member/snap/db")
  for t in etc var/usrlocal var/lib/kubelet; do
    echo "$t $(du -sx -B1 "$R/$t" | cut -f1) $(find "$R/$t" -xdev | wc -l)"
  done > "$W/sizes"
  trees=$(awk '{s+=$2} END {printf "%.0f\n", s}' "$W/sizes"); entries=$(awk '{s+=$3} END {printf "%.0f\n", s}' "$W/sizes")
  fb=$(awk '$1!="var/lib/kubelet"{s+=$2} END {printf "%.0f\n", s}' "$W/sizes"); fe=$(awk '$1!="var/lib/kubelet"{s+=$3} END {printf "%.0f\n", s}' "$W/sizes")
  kb=$(awk '$1=="var/lib/kubelet"{print $2}' "$W/sizes"); ke=$(awk '$1=="var/lib/kubelet"{print $3}' "$W/sizes")
  for i in $(seq 1 "$BENCH_RUNS"); do
    if [ $((i % 2)) -eq 1 ]; then b_ours; b_tar; b_today; else b_today; b_tar; b_ours; fi
    # The files phase and the cluster phase of one recovery, then today's two.
    f_ours; c_ours; f_today; c_today
  done
  ob=$(cat "$W/b.ours.bytes"); tb=$(cat "$W/b.tar.bytes")
  echo "## DU node, factor 1/$BENCH_FACTOR, scale $scale ($(date -u '+%F %H:%M'), $(nproc) CPUs):" \
    "trees $((trees >> 20)) MiB (allocated) in $entries entries, etcd db $((db >> 20)) MiB"
  echo
  echo "| command | median | CPU user+sys | peak RSS | written | loads | per GiB | per 100k entries |"
  echo "|---|---|---|---|---|---|---|---|"
  row "ours: backup (verified)" "$W/b.ours" $((trees + db)) "$entries"
  row "tar -c \\| zstd -T0 -3 + sync" "$W/b.tar" "$trees" "$entries"
  row "today: cp -Ra x3 + etcdctl snapshot save + sync" "$W/b.today" $((trees + db)) "$entries"
  row "ours: files phase (restore --restart)" "$W/f.ours" "$fb" "$fe"
  row "today: rsync -aAXc --delete /usr/local, /etc + sync" "$W/f.today" "$fb" "$fe"
  row "ours: cluster phase + redeploy (restore --resume)" "$W/c.ours" $((kb + db)) "$ke"
  row "today: rsync -aAXc --delete kubelet + etcdctl snapshot restore + sync" "$W/c.today" $((kb + db)) "$ke"
  echo
  echo "backup: ours/tar|zstd $(ratio "$(med_secs "$W/b.ours")" "$(med_secs "$W/b.tar")")," \
    "archive bytes $(ratio "$ob" "$tb") ($((ob >> 20)) / $((tb >> 20)) MiB), ours/today $(ratio "$(med_secs "$W/b.ours")" "$(med_secs "$W/b.today")");" \
    "files phase: ours/rsync $(ratio "$(med_secs "$W/f.ours")" "$(med_secs "$W/f.today")");" \
    "cluster phase: ours/today $(ratio "$(med_secs "$W/c.ours")" "$(med_secs "$W/c.today")")"
  echo
  echo "Steps of the last backup, files phase, cluster phase:"
  grep -E '[0-9.]+ ?(s|ms)\b' "$W/b.ours.log" | tail -12 || true
  grep -E '[0-9.]+ ?(s|ms)\b' "$W/f.ours.log" | tail -14 || true
  grep -E '[0-9.]+ ?(s|ms)\b' "$W/c.ours.log" | tail -14 || true
  echo
done
rm -rf "$T"
