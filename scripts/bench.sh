#!/usr/bin/env bash
# Benchmarks of the tree archives against today's commands, on the same data
# in one run (timings never go into tests: these machines are noisy).
#
#   scripts/bench.sh            both corpora; BENCH_DIR (default /var/tmp/ur-bench)
#
# Corpora made here: (a) a copy of this machine's /usr/share (a real OS tree),
# (b) a kubelet-like tree of 100k small files. For each:
#   backup : ours (`tree archive`, tar+zstd+sha256, fsynced) vs `cp -Ra` + sync
#            (today's tool) vs `tar -c | zstd -T0 -3` + sync (a compressed copy)
#   restore: onto a changed copy (20% of files modified, 5% added, 5% deleted),
#            ours (`tree sync`: full verify, then sync) vs `rsync -aAXc --delete`
#            from a plain copy (today's restore)
# Caches are dropped before every timed command. Peak RSS from GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench.sh: run as root (drop caches, xattrs)" >&2; exit 1; }
scripts/install-deps.sh >/dev/null
scripts/build-static.sh >/dev/null
BIN=$PWD/target/x86_64-unknown-linux-gnu/release/upgrade-recovery
W=${BENCH_DIR:-/var/tmp/ur-bench}
rm -rf "$W"; mkdir -p "$W"
out=$W/results.md

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# timed NAME CMD...: seconds and peak RSS (KiB) into $W/t.NAME
timed() {
  local name=$1; shift
  drop
  /usr/bin/time -f "%e %M" -o "$W/t.$name" bash -c "$*" >/dev/null
}
secs() { cut -d' ' -f1 "$W/t.$1"; }
rss() { awk '{printf "%.0f", $2/1024}' "$W/t.$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b>0)?a/b:0}'; }

make_small() { # 100k small files in pod-like dirs, with symlinks and xattrs
  /usr/bin/python3 - "$1" <<'PY'
import os, random, sys
random.seed(7)
root = sys.argv[1]
words = [b"kubelet", b"volume", b"config", b"token", b"etcd", b"pod", b"secret", b"data"]
n = 0
for p in range(500):
    pod = os.path.join(root, "pods", "%08x-pod" % p)
    for v in range(4):
        d = os.path.join(pod, "volumes", "kubernetes.io~configmap", "vol%d" % v)
        os.makedirs(d, exist_ok=True)
        for f in range(50):
            size = random.choice([120, 400, 900, 2000, 4000, 8000])
            body = b" ".join(random.choice(words) for _ in range(size // 6))
            if random.random() < 0.3:
                body = os.urandom(size)
            with open(os.path.join(d, "f%03d" % f), "wb") as fh:
                fh.write(body)
            n += 1
    os.symlink("volumes", os.path.join(pod, "vlink"))
print(n)
PY
}

mutate() { /usr/bin/python3 scripts/bench-mutate.py "$1"; } # 20% changed (same size), 5% added, 5% deleted

echo "# upgrade-recovery benchmark ($(date -u +%F), $(nproc) CPUs, $(uname -r))" > "$out"
echo >> "$out"
echo "| corpus | files | raw | ours | cp -Ra+sync | tar\\|zstd -T0 -3 | ours/cp | ours/tar\\|zstd | archive/raw | ours RSS |" >> "$out"
echo "|---|---|---|---|---|---|---|---|---|---|" >> "$out"
restore_rows=()

for corpus in os small; do
  src=$W/corpus-$corpus
  case $corpus in
    os) cp -a /usr/share "$src" ;;
    small) mkdir -p "$src"; make_small "$src" >/dev/null ;;
  esac
  files=$(find "$src" -type f | wc -l)
  raw=$(du -sb "$src" | cut -f1)
  timed cp-$corpus "cp -Ra '$src' '$W/plain-$corpus' && sync"
  timed tz-$corpus "tar -C '$src' -cf - . | zstd -T0 -3 -q -o '$W/ref-$corpus.tar.zst' && sync"
  timed ur-$corpus "'$BIN' tree archive '$src' '$W/ours-$corpus.tar.zst'"
  asz=$(stat -c %s "$W/ours-$corpus.tar.zst")
  echo "| $corpus | $files | $((raw / 1048576)) MiB | $(secs ur-$corpus) s | $(secs cp-$corpus) s | $(secs tz-$corpus) s | $(ratio "$(secs ur-$corpus)" "$(secs cp-$corpus)") | $(ratio "$(secs ur-$corpus)" "$(secs tz-$corpus)") | $(ratio "$asz" "$raw") | $(rss ur-$corpus) MiB |" >> "$out"

  # Restore onto a changed copy.
  cp -a "$src" "$W/target-rsync-$corpus"
  mutate "$W/target-rsync-$corpus" >/dev/null
  cp -a "$W/target-rsync-$corpus" "$W/target-ours-$corpus"
  timed rs-$corpus "rsync -aAXc --delete '$W/plain-$corpus/' '$W/target-rsync-$corpus/' && sync"
  timed us-$corpus "'$BIN' tree sync '$W/ours-$corpus.tar.zst' '$W/target-ours-$corpus'"
  left=$(rsync -naAXc --delete "$src/" "$W/target-ours-$corpus/" | wc -l)
  [ "$left" -eq 0 ] || { echo "bench: restored $corpus tree differs from the source ($left lines)" >&2; exit 1; }
  restore_rows+=("| $corpus | $(secs us-$corpus) s | $(secs rs-$corpus) s | $(ratio "$(secs us-$corpus)" "$(secs rs-$corpus)") | $(rss us-$corpus) MiB |")
  rm -rf "$W/plain-$corpus" "$W/target-rsync-$corpus" "$W/target-ours-$corpus" "$W/ref-$corpus.tar.zst"
done

{
  echo
  echo "| restore onto a changed copy | ours | rsync -aAXc --delete | ours/rsync | ours RSS |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${restore_rows[@]}"
} >> "$out"
cat "$out"
rm -rf "$W"/corpus-* "$W"/ours-*
