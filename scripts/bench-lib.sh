# Shared by bench-node.sh and bench-recovery.sh (sourced, not run).
#
# The corpus of issue 16, on a sandbox node, scaled by BENCH_SCALE (default 1;
# 2 doubles every part, to show that peak RSS does not grow with the trees):
#   /usr/local/share-N  a copy of this machine's /usr/share, once per scale step
#   /var/lib/kubelet/pods  100k small files (50 B to 3 KiB) in 500 pod dirs, per step
#   etcd                3k keys of 3 KiB, per step
# Timings are medians of BENCH_RUNS (default 3) runs, the commands compared
# alternating within each round, caches dropped before every timed command;
# the load average is recorded with each figure (the machine is shared).
# BENCH_REUSE=1 with BENCH_KEEP=1 keeps a filled node for the next run.
#
# BENCH_PROFILE=du: the DU-sized corpus of issue 25 instead (scripts/bench-du.py:
# /var/lib/kubelet 10 GiB in about 1M entries, /etc 200 MiB in 40k files with 20
# static-pod revisions per operator, /usr/local 1 GiB, etcd db about 1 GiB
# filled through its API), every size divided by BENCH_FACTOR (default 1;
# 100 for a quick run) and repeated BENCH_SCALE times (the growth runs).

BENCH_SCALE=${BENCH_SCALE:-1}
BENCH_PROFILE=${BENCH_PROFILE:-default}
BENCH_FACTOR=${BENCH_FACTOR:-1}
BENCH_RUNS=${BENCH_RUNS:-3}
BIN=${BENCH_BIN:-$PWD/target/x86_64-unknown-linux-gnu/release/upgrade-recovery}

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
load() { cut -d' ' -f1 /proc/loadavg; }

# timed FILE CMD...: one line "seconds maxrss_kib load user+sys_s written_mib"
# appended to FILE. Written: the bytes the command and its children dirtied
# (getrusage's ru_oublock, the kernel's write_bytes/512: what reaches the disk,
# page cache writeback included, whichever thread flushes it).
timed() {
  local out=$1 l; shift
  drop
  l=$(load)
  /usr/bin/time -f "%e %M %U %S %O" -o "$out.one" bash -c "$*" >"$out.log" 2>&1 || {
    echo "bench: failed: $*" >&2; tail -20 "$out.log" >&2; return 1; }
  awk -v l="$l" '{printf "%s %s %s %.2f %d\n", $1, $2, l, $3 + $4, $5 / 2048}' "$out.one" >> "$out"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
med_secs() { cut -d' ' -f1 "$1" | median; }
max_rss_mib() { awk '$2>m{m=$2} END {printf "%d", m/1024}' "$1"; }
loads() { cut -d' ' -f3 "$1" | paste -sd/; }
# The timing cells of one command's table row: median, runs, loads, peak RSS.
cells() { echo "$(med_secs "$1") s | $(cut -d' ' -f1 "$1" | paste -sd' ') | $(loads "$1") | $(max_rss_mib "$1") MiB"; }
med_cpu() { cut -d' ' -f4 "$1" | median; }
med_written() { cut -d' ' -f5 "$1" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b>0)?a/b:0}'; }

# bench_node W: a sandbox node in W/root, filled with the corpus. Sets R.
bench_node() {
  local w=$1 s
  if [ -n "${BENCH_REUSE:-}" ] && [ -f "$w/filled" ]; then # a node filled by an earlier run
    eval "$(scripts/sandbox.sh env "$w")"; R=$w/root; return
  fi
  scripts/sandbox.sh teardown "$w" 2>/dev/null || true
  scripts/sandbox.sh create "$w" >/dev/null
  eval "$(scripts/sandbox.sh env "$w")"
  R=$w/root
  echo "bench: filling the node (profile $BENCH_PROFILE, factor 1/$BENCH_FACTOR, scale $BENCH_SCALE)" >&2
  for s in $(seq 1 "$BENCH_SCALE"); do
    if [ "$BENCH_PROFILE" = du ]; then
      /usr/bin/python3 scripts/bench-du.py "$R" "$s" "$BENCH_FACTOR"
      du_etcd "$w" "$s"
      continue
    fi
    cp -a /usr/share "$R/usr/local/share-$s"
    small_files "$R/var/lib/kubelet/pods-$s" "$s"
    etcd_keys "$w" "$s"
  done
  touch "$w/filled"
}

small_files() { # DIR SEED: 100k files of 50 B to 3 KiB in 500 pod dirs
  /usr/bin/python3 - "$1" "$2" <<'PY'
import os, random, sys
root, seed = sys.argv[1], int(sys.argv[2])
random.seed(seed)
words = [b"kubelet", b"volume", b"config", b"token", b"etcd", b"pod", b"secret", b"data"]
for p in range(500):
    pod = os.path.join(root, "%08x-%d-pod" % (p, seed))
    for v in range(4):
        d = os.path.join(pod, "volumes", "kubernetes.io~configmap", "vol%d" % v)
        os.makedirs(d, exist_ok=True)
        for f in range(50):
            size = random.randint(50, 3072)
            if random.random() < 0.3:
                body = os.urandom(size)
            else:
                body = b" ".join(random.choice(words) for _ in range(size // 6 + 1))[:size]
            with open(os.path.join(d, "f%03d" % f), "wb") as fh:
                fh.write(body)
    os.symlink("volumes", os.path.join(pod, "vlink"))
PY
}

# etcdctl_w W ARGS...: etcdctl against the node in W, over TLS.
etcdctl_w() {
  local w=$1 c=$1/root/etc/kubernetes/static-pod-resources/etcd-certs; shift
  . "$w/ctl/state/ports"
  ETCDCTL_API=3 etcdctl --endpoints="https://127.0.0.1:$CLIENT_PORT" \
    --cacert="$c/configmaps/etcd-serving-ca/ca-bundle.crt" --cert="$c/secrets/etcd-all-certs/etcd-peer-sno.crt" \
    --key="$c/secrets/etcd-all-certs/etcd-peer-sno.key" "$@"
}

du_etcd() { # W STEP: about 1 GiB/BENCH_FACTOR of keys, put through the API
  local w=$1 s=$2 n
  # 64 KiB values (secrets base64, configmaps text) and 8 revisions of each
  # key, as a db of this size holds history; 16k puts at factor 1.
  n=$(awk -v f="$BENCH_FACTOR" 'BEGIN{n=int(2048/f); print (n<8)?8:n}')
  head -c 49152 /dev/urandom | base64 -w0 > "$w/value.1"
  /usr/bin/python3 -c 'import random,sys; random.seed(1); w=sys.argv[1].split(); print(" ".join(random.choice(w) for _ in range(9000))[:65536])' \
    "spec metadata name namespace image replicas status conditions type True lastTransitionTime" > "$w/value.2"
  export -f etcdctl_w
  for rev in 1 2 3 4 5 6 7 8; do
    seq 1 "$n" | xargs -P 4 -I{} bash -c "etcdctl_w '$w' put /kubernetes.io/du-$s/{} < $w/value.\$(( {} % 2 + 1 )) >/dev/null"
  done
}

etcd_keys() { # W SEED: 3k keys of 3 KiB
  local w=$1 s=$2 c
  . "$w/ctl/state/ports"
  c=$w/root/etc/kubernetes/static-pod-resources/etcd-certs
  head -c 2300 /dev/urandom | base64 -w0 > "$w/value"
  seq 1 3000 | xargs -P 4 -I{} sh -c "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:$CLIENT_PORT \
    --cacert=$c/configmaps/etcd-serving-ca/ca-bundle.crt --cert=$c/secrets/etcd-all-certs/etcd-peer-sno.crt \
    --key=$c/secrets/etcd-all-certs/etcd-peer-sno.key put /kubernetes.io/secrets/bench-$s/{} < $w/value >/dev/null"
}

# mutate DIR...: in the regular files below the DIRs, 20% changed in place
# keeping size and mtime (a copy tool trusting size+mtime would miss them),
# 5% deleted, 5% added. Seeded: the same tree gives the same mutation.
# Paths below the prefixes in MUTATE_SKIP (one a line) are left alone: the
# restore excludes them, so they would stay changed.
mutate() { /usr/bin/python3 scripts/bench-mutate.py "$@"; }
