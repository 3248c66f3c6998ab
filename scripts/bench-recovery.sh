#!/usr/bin/env bash
# The files phase of a recovery as the admin waits for it (`restore --restart`
# from start to exit: preflight with the backup check, the service steps, the
# restore of /usr/local, /etc and the extras), against today's restore of the
# same trees (`rsync -aAXc --delete` from plain copies, /etc with
# `--exclude-from etc.exclude.list`, then sync), on the same mutated node:
# before each timed command 20% of the files in /usr/local and /etc are
# changed (same size and mtime), 5% deleted, 5% added; caches dropped.
# Medians of BENCH_RUNS (default 3) alternating rounds, ratios printed.
#   scripts/bench-recovery.sh   (BENCH_DIR, default /var/tmp/ur-bench-rec;
#                                BENCH_SCALE=2 doubles the corpus, see bench-lib.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-recovery.sh: run as root" >&2; exit 1; }
. scripts/bench-lib.sh
[ -n "${BENCH_NO_BUILD:-}" ] || { scripts/install-deps.sh >/dev/null; scripts/build-static.sh >/dev/null; }
W=${BENCH_DIR:-/var/tmp/ur-bench-rec}
bench_node "$W"
[ -n "${BENCH_KEEP:-}" ] || trap 'scripts/sandbox.sh teardown "$W"' EXIT
"$BIN" --root "$R" -q backup --min-free 0 --no-nice >/dev/null
T=$W/today; mkdir -p "$T"
cp -a "$R/usr/local/" "$T/local"; cp -a "$R/etc/" "$T/etc"
X=$R/var/recovery/etc.exclude.list
# What the restore of /etc excludes is not mutated (it would stay changed).
MUTATE_SKIP=$(sed -n 's|^/*\([^#].*\)|'"$R"'/etc/\1|p' "$X"; echo "$R/etc/kubernetes/manifests")
export MUTATE_SKIP
files=$(find "$R/usr/local/" "$R/etc" -type f | wc -l)
bytes=$(du -sbx "$R/usr/local/" "$R/etc" | awk '{s+=$1} END {printf "%.0f\n", s}')
rm -f "$W"/r.*

ours() { mutate "$R/usr/local/" "$R/etc" >/dev/null; timed "$W/r.ours" "'$BIN' --root '$R' restore --restart"; }
today() {
  mutate "$R/usr/local/" "$R/etc" >/dev/null
  timed "$W/r.rsync" "rsync -aAXc --delete '$T/local/' '$R/usr/local/' &&
    rsync -aAXc --delete --exclude-from='$X' '$T/etc/' '$R/etc/' && sync"
}
for i in $(seq 1 "$BENCH_RUNS"); do
  if [ $((i % 2)) -eq 1 ]; then ours; today; else today; ours; fi
done
# The oracle, after one more run of ours (not counted): nothing left for rsync to do.
mutate "$R/usr/local/" "$R/etc" >/dev/null
"$BIN" --root "$R" -q restore --restart >/dev/null
left=$( (rsync -naAXc --delete "$T/local/" "$R/usr/local/"; rsync -naAXc --delete --exclude-from="$X" "$T/etc/" "$R/etc/") | wc -l)
[ "$left" -eq 0 ] || { echo "bench-recovery: the restored trees differ from the backup ($left lines)" >&2; exit 1; }

o=$(med_secs "$W/r.ours"); r=$(med_secs "$W/r.rsync")
echo "# files phase ($(date -u +%F), $(nproc) CPUs, scale $BENCH_SCALE: $files files, $((bytes >> 20)) MiB in /usr/local + /etc; load averages per run)"
echo
echo "| files phase | median | runs (s) | loads | peak RSS |"
echo "|---|---|---|---|---|"
echo "| ours: restore --restart | $(cells "$W/r.ours") |"
echo "| today: rsync -aAXc --delete + sync | $(cells "$W/r.rsync") |"
echo
echo "ours/rsync: $(ratio "$o" "$r")"
echo
echo "Steps of the last run:"
grep -E '[0-9.]+ ?(s|ms)\b' "$W/r.ours.log" | tail -20 || true
