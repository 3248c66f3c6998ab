# shellcheck shell=bash
# `scripts/vm.sh dmlog` (issue 24 item 5): every flush point below the file
# system. Sourced by scripts/vm.sh after vm/lib.sh and vm/lane.sh.
#
# 1. The host makes base.img: an ext4 (mkfs defaults) holding a sandbox node
#    (scripts/sandbox.sh create, default profile) at sb/.
# 2. The guest (scripts/vm/dmlog-guest.sh) puts a dm-log-writes device over
#    two loop files (a copy of base.img, and the log), and records:
#    - raw: known blocks written with O_DIRECT, with and without a flush,
#      a discard, marks: the replayer's check;
#    - node: the node's ext4 mounted with RHCOS /var's options (defaults:
#      data=ordered), the tool run on it with its --root: a backup, a
#      second backup (marks switch-start/switch-end: the generation
#      switch), a failed upgrade's changes, the files phase of `restore`
#      (marks files-start/files-end).
# 3. The host replays the log (scripts/vm/dmlog-replay.py) onto a copy of
#    base.img and, at each flush or FUA entry between the marks, checks the
#    device as a power cut at that instant leaves it
#    (scripts/vm/dmlog-point.sh): e2fsck -n, mounted ro (status), fsck -n
#    after the journal's replay, mounted rw, the node booted, then for the
#    switch `verify` + `status`, for the files phase the journal against
#    the disk and `restore`/`--resume` as status names it, with the sandbox
#    tests' oracles. Prints `dmlog: points P, converged C, refused R, failed F`
#    for each range and in all.
# Environment: VM_IMG (a cached image dir to boot instead of building one),
# DMLOG_EVERY (check every k-th point; default 1, all), DMLOG_SIZE (the
# node's file system, default 1G), VM_KEEP=1 (keep the run dir),
# DMLOG_FS=xfs (the node's file system is XFS, RHCOS's /var, instead of
# ext4; xfs_repair -n is then the fsck),
# DMLOG_SKIP_SYNCS=1 (the negative control: the guest's restore runs
# without the syncs before its journal entries, a fault-injection switch;
# the run passes only if points fail).
DMLOG_MNT=${DMLOG_MNT:-/var/tmp/dmlog-node}

dmlog_t() { vm_now; }

# base.img: an ext4 with a sandbox node at sb/, etcd stopped, unmounted.
dmlog_base() { # $1 image
  local img=$1 M=$DMLOG_MNT t0; t0=$(vm_now)
  rm -f "$img"; truncate -s "${DMLOG_SIZE:-1G}" "$img"
  case ${DMLOG_FS:-ext4} in
    ext4) mkfs.ext4 -q -F "$img" ;;
    xfs) mkfs.xfs -q -f "$img" ;;   # RHCOS's /var (its root file system)
    *) vm_die "DMLOG_FS: ext4 or xfs" ;;
  esac
  mkdir -p "$M"; dmlog_umount
  mount -o loop "$img" "$M"
  "$vm_proj/scripts/sandbox.sh" create "$M/sb" >&2 || { dmlog_umount; vm_die "sandbox create failed"; }
  ( . "$M/sb/ctl/lib/lib.sh"; etcd_stop )
  dmlog_umount
  vm_log "dmlog: base.img (${DMLOG_FS:-ext4}, sandbox node): $(vm_took "$t0")"
}

dmlog_umount() {
  awk -v p="$DMLOG_MNT" '$2 == p || index($2, p "/") == 1 {print $2}' /proc/self/mounts | sort -r | xargs -r umount
}

# The replayer's check: replay the raw log to each mark and compare with
# the blocks written (C, written without a flush before mark three, must
# not be there yet; the discarded range reads as zeros).
dmlog_raw_check() { # $1 run dir
  local r=$1 s=$1/share t=$1/raw.img m fail=0
  local py=(/usr/bin/python3 "$vm_here/dmlog-replay.py")
  "${py[@]}" list "$s/raw.log" | sed 's/^/    | /' >&2
  # exp MARK: the expected 16 MiB device at that mark.
  exp() {
    rm -f "$r/exp.img"; truncate -s 16M "$r/exp.img"
    dd if="$s/pat/A" of="$r/exp.img" bs=4096 seek=0 conv=notrunc status=none
    case $1 in one) return ;; esac
    dd if="$s/pat/B" of="$r/exp.img" bs=4096 seek=256 conv=notrunc status=none
    case $1 in two|three) return ;; esac
    dd if="$s/pat/C" of="$r/exp.img" bs=4096 seek=512 conv=notrunc status=none
    dd if="$s/pat/D" of="$r/exp.img" bs=4096 seek=1024 conv=notrunc status=none
    if [ "$(cat "$s/raw.discard")" = discard ]; then
      dd if=/dev/zero of="$r/exp.img" bs=4096 seek=$((1024 + 16)) count=16 conv=notrunc status=none
    fi
  }
  for m in one two three four; do
    rm -f "$t"; truncate -s 16M "$t"
    "${py[@]}" replay "$s/raw.log" "$t" --to-mark "$m" >/dev/null || { fail=1; continue; }
    exp "$m"
    if cmp -s "$t" "$r/exp.img"; then vm_log "dmlog: raw: replayed to mark $m: as written"; else vm_log "dmlog: raw: replayed to mark $m: DIFFERS ($(cmp "$t" "$r/exp.img" | head -1))"; fail=1; fi
  done
  return $fail
}

DMLOG_P=0 DMLOG_C=0 DMLOG_R=0 DMLOG_F=0
dmlog_count() { # $1 results file $2 kind: prints the range's line, adds to the totals
  local p c rr f
  p=$(awk -v k="$2" '$3 == k' "$1" | wc -l)
  c=$(awk -v k="$2" '$3 == k && $4 == "converged"' "$1" | wc -l)
  rr=$(awk -v k="$2" '$3 == k && $4 == "refused"' "$1" | wc -l)
  f=$(awk -v k="$2" '$3 == k && $4 == "failed"' "$1" | wc -l)
  DMLOG_P=$((DMLOG_P + p)) DMLOG_C=$((DMLOG_C + c)) DMLOG_R=$((DMLOG_R + rr)) DMLOG_F=$((DMLOG_F + f))
  echo "dmlog $2: points $p, converged $c, refused $rr, failed $f"
}

# Replay the node's log between two marks, checking each point. Each point
# runs in a network namespace of its own: the node's etcd listens on the
# ports chosen when base.img was made, which other sandboxes on this host
# may have taken since.
dmlog_replay() { # $1 run dir $2 kind (switch|files) $3 start mark $4 end mark
  local r=$1 w=$1/work t0; t0=$(vm_now)
  mkdir -p "$w"
  cp --sparse=always "$r/share/base.img" "$w/work.img"
  DMLOG_WORK=$w DMLOG_BIN=$VM_BIN DMLOG_PROJ=$vm_proj DMLOG_MNT=$DMLOG_MNT DMLOG_FS=$(cat "$r/share/fs" 2>/dev/null || echo ext4) \
    /usr/bin/python3 "$vm_here/dmlog-replay.py" check "$r/share/node.log" "$w/work.img" \
      --start-mark "$3" --end-mark "$4" --exec "unshare --net bash -c 'ip link set lo up && exec bash $vm_here/dmlog-point.sh $2'" > "$r/replay.$2.log" \
    || vm_die "dmlog: the replay of $2 failed (see $r/replay.$2.log)"
  vm_log "dmlog: $2: $(tail -1 "$r/replay.$2.log") in $(vm_took "$t0") (load $(cut -d' ' -f1-3 /proc/loadavg))"
}

# The trees at the end of the second backup (mark switch-end): the oracle.
dmlog_before() { # $1 run dir
  local r=$1 w=$1/work M=$DMLOG_MNT
  mkdir -p "$w/before"
  cp --sparse=always "$r/share/base.img" "$w/before.img"
  /usr/bin/python3 "$vm_here/dmlog-replay.py" replay "$r/share/node.log" "$w/before.img" --to-mark switch-end >/dev/null \
    || vm_die "dmlog: no mark switch-end in the node's log"
  dmlog_umount; mount -o loop "$w/before.img" "$M"
  rsync -aAXHx --numeric-ids "$M/sb/root/etc/" "$w/before/etc/"
  rsync -aAXHx --numeric-ids "$M/sb/root/var/usrlocal/" "$w/before/local/"
  rsync -aAXHx --numeric-ids "$M/sb/root/opt/" "$w/before/opt/"
  bash "$vm_here/dmlog-point.sh" meta "$M/sb/root/var/usrlocal" > "$w/before/local.meta"
  dmlog_umount; rm -f "$w/before.img"
}

dmlog_run() {
  local r t0 t1 rc=0 i
  t0=$(vm_now)
  vm_deps
  vm_binary
  if [ -n "${VM_IMG:-}" ] && [ -e "$VM_IMG/done" ]; then vm_log "image: given ($VM_IMG)"; else vm_build; fi
  r=$(lane_run dmlog)
  local s=$r/share
  # What the guest needs: the tool, the sandbox and its shims, the blocks.
  install -m 0755 "$VM_BIN" "$s/upgrade-recovery"
  mkdir -p "$s/scripts" "$s/pat" "$s/bin"
  # The native etcd restore needs etcd 3.5+'s etcdutl (the guest has 3.4),
  # as the host has it (scripts/install-deps.sh); the files phase checks it.
  cp "$(command -v etcdutl)" "$s/bin/" || vm_die "dmlog: no etcdutl on this host (scripts/install-deps.sh)"
  cp -a "$vm_proj/scripts/sandbox.sh" "$vm_proj/scripts/shims" "$s/scripts/"
  cp "$vm_here/dmlog-guest.sh" "$s/"
  for i in A B C D; do
    case $i in D) n=64 ;; *) n=1 ;; esac
    /usr/bin/python3 -c 'import sys; c=sys.argv[1].encode(); n=int(sys.argv[2]); sys.stdout.buffer.write(b"".join((c*8 + b"%07d\n" % j) * 256 for j in range(n)))' "$i" "$n" > "$s/pat/$i"
  done
  dmlog_base "$s/base.img"
  [ "${DMLOG_SKIP_SYNCS:-0}" = 0 ] || touch "$s/skip-syncs"
  echo "${DMLOG_FS:-ext4}" > "$s/fs"
  t1=$(vm_now); vm_boot "$r"
  lane_x "$r" "bash /run/host/dmlog-guest.sh raw" || vm_die "dmlog: the raw recording failed"
  lane_x "$r" "DMLOG_MNT=$DMLOG_MNT bash /run/host/dmlog-guest.sh node" 3600 || vm_die "dmlog: the node's recording failed"
  lane_poweroff "$r"
  vm_log "dmlog: recorded in the guest in $(vm_took "$t1") (load $(cut -d' ' -f1-3 /proc/loadavg))"
  dmlog_check "$r"
}

# The host's half on a recorded run dir (also `scripts/vm.sh dmlog-check
# RUNDIR` on a kept one): the replayer's check, then every point.
dmlog_check() { # $1 run dir
  local r=$1 s=$1/share rc=0 t0; t0=$(vm_now)
  [ -n "${VM_BIN:-}" ] || vm_binary
  [ -s "$s/node.log" ] || vm_die "dmlog: no recorded log in $s"
  DMLOG_P=0 DMLOG_C=0 DMLOG_R=0 DMLOG_F=0
  dmlog_raw_check "$r" || rc=1
  /usr/bin/python3 "$vm_here/dmlog-replay.py" list "$s/node.log" | grep -E 'mark|^entries' | sed 's/^/    | /' >&2
  rm -rf "$r/work"
  dmlog_before "$r"
  : > "$r/work/results"
  dmlog_replay "$r" switch switch-start switch-end
  dmlog_replay "$r" files files-start files-end
  dmlog_count "$r/work/results" switch
  dmlog_count "$r/work/results" files
  grep -v ' converged ' "$r/work/results" | sed 's/^/    | /' >&2 || true
  vm_log "dmlog: replayed and checked in $(vm_took "$t0") (load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "dmlog: points $DMLOG_P, converged $DMLOG_C, refused $DMLOG_R, failed $DMLOG_F"
  if [ -e "$s/skip-syncs" ]; then
    # The negative control: a restore without its syncs must be caught.
    vm_log "kept $r"
    [ "$DMLOG_F" -gt 0 ] && { echo "dmlog: negative control: the restore without its syncs was caught ($DMLOG_F points)"; return 0; }
    echo "dmlog: negative control: NOT caught"; return 1
  fi
  [ "$DMLOG_F" = 0 ] && [ "$rc" = 0 ] && [ "$DMLOG_P" -gt 0 ] || { vm_log "kept $r"; return 1; }
  lane_done "$r"
}
