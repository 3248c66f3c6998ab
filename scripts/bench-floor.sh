#!/usr/bin/env bash
# The physical floor of this machine for what the backup and the recovery do,
# each on one core, with the load average it was taken at (issue 25):
#   sequential read   a cold read of a file of BENCH_FLOOR_MIB (default 1024) MiB
#   sequential write  the same size written and fsynced
#   sha256            openssl's sha256 of 1 MiB blocks (the crate sha2 uses the
#                     same SHA-NI instructions where the CPU has them)
#   zstd -3 / -d      zstd's own benchmark (-b) on one core, on a sample of
#                     BENCH_FLOOR_SAMPLE (default: the first 256 MiB of a tar
#                     of /usr/lib, this machine's mix of binaries and text)
#   many small files  a cold `tar -c | cat` of BENCH_FLOOR_TREE (default
#                     /usr/share): files a second, one read at a time
#   scripts/bench-floor.sh    (BENCH_DIR, default /var/tmp/ur-bench-floor)
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "bench-floor.sh: run as root" >&2; exit 1; }
W=${BENCH_DIR:-/var/tmp/ur-bench-floor}
MIB=${BENCH_FLOOR_MIB:-1024}
TREE=${BENCH_FLOOR_TREE:-/usr/share}
mkdir -p "$W"; trap 'rm -rf "$W"' EXIT
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
load() { cut -d' ' -f1 /proc/loadavg; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN{printf "%.0f MiB/s", b / 1048576 / s}'; }
secs() { /usr/bin/time -f %e -o "$W/t" bash -c "$1" >/dev/null 2>&1; cat "$W/t"; }

echo "# physical floor ($(date -u '+%F %H:%M'), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo
echo "| what | rate | load |"
echo "|---|---|---|"
l=$(load); s=$(secs "head -c $((MIB << 20)) /dev/urandom > '$W/big' && sync")
drop; l=$(load); s=$(secs "dd if='$W/big' of=/dev/null bs=1M iflag=direct")
echo "| sequential read (cold, 1 MiB O_DIRECT) | $(rate $((MIB << 20)) "$s") | $l |"
rm -f "$W/big2"; l=$(load); s=$(secs "dd if='$W/big' of='$W/big2' bs=1M conv=fsync")
echo "| sequential write + fsync (source cached) | $(rate $((MIB << 20)) "$s") | $l |"
rm -f "$W/big2"
l=$(load)
sha=$(openssl speed -seconds 3 -bytes 1048576 -evp sha256 2>/dev/null | awk '/^sha256/ {print $NF}' | tr -d k)
echo "| sha256, one core (openssl speed) | $(awk -v k="$sha" 'BEGIN{printf "%.0f MiB/s", k * 1000 / 1048576}') | $l |"
sample=${BENCH_FLOOR_SAMPLE:-}
if [ -z "$sample" ]; then
  sample=$W/sample.tar
  tar -C /usr/lib -cf - . 2>/dev/null | head -c $((256 << 20)) > "$sample" || true
fi
l=$(load)
zstd -b3 -T1 -i3 "$sample" 2>&1 | tr '\r' '\n' | grep -E 'MB/s' | tail -1 > "$W/z"
read -r c d < <(awk '{for (i=1;i<=NF;i++) if ($i ~ /MB\/s/) v[++n]=$(i-1)} END {print v[1], v[2]}' "$W/z")
echo "| zstd -3 compression, one core | $c MB/s ($(awk '{for (i=1;i<=NF;i++) if ($i ~ /^\(x/) {sub(/,$/, "", $i); print $i}}' "$W/z")) | $l |"
echo "| zstd decompression, one core | $d MB/s | $l |"
n=$(find "$TREE" -xdev -type f | wc -l); b=$(du -sbx "$TREE" | cut -f1)
drop; l=$(load); s=$(secs "tar --one-file-system -C '$TREE' -cf - . | cat > /dev/null")
echo "| cold tar -c of $TREE ($n files, $((b >> 20)) MiB) | $(awk -v n="$n" -v s="$s" 'BEGIN{printf "%.0f files/s", n / s}'), $(rate "$b" "$s") | $l |"
