#!/usr/bin/env bash
# One flush/FUA point of a dm-log-writes log, on the host (run by
# dmlog-replay.py check --exec, from scripts/vm/dmlog.sh): the replayed
# device as a power cut at that instant leaves it, then what an admin does
# after the boot, with the sandbox tests' oracles.
#   dmlog-point.sh files|switch
#   dmlog-point.sh meta DIR      the xattr/ACL dump the oracle compares
# Environment: DMLOG_WORK (work.img: the replayed device; before/: the
# trees at the backup), DMLOG_BIN (the tool), DMLOG_PROJ (the project),
# DMLOG_MNT (where the node's file system is mounted: the path it had in the
# guest), DMLOG_POINT, DMLOG_ENTRY, DMLOG_FLAGS (from the replayer).
# Appends one line to $DMLOG_WORK/results:
#   <point> <entry> <kind> converged|refused|failed [fsck-raw RC status-ro RC] <detail>
# DMLOG_FS: ext4 (default) or xfs, the file system's fsck.
# and keeps the outputs of a point that did not converge in
# $DMLOG_WORK/points/<point>/.
set -uo pipefail
# Every xattr and ACL below DIR (tests/common meta_dump); also
# `dmlog-point.sh meta DIR`, for the backup's side.
meta() {
  (cd "$1" || exit 1
   find . -xdev -print0 | sort -z | xargs -0 getfattr -h -d -m - -e hex 2>/dev/null | grep -v '^$'
   find . -xdev ! -type l -print0 | sort -z | xargs -0 getfacl -P -n 2>/dev/null
   true)
}
[ "${1:-}" = meta ] && { meta "$2"; exit; }
kind=$1
w=$DMLOG_WORK M=$DMLOG_MNT bin=$DMLOG_BIN proj=$DMLOG_PROJ
k=$DMLOG_POINT e=$DMLOG_ENTRY
o=$w/points/$k
rm -rf "$o"; mkdir -p "$o"
sb=$M/sb r=$M/sb/root
pt=$w/pt.img
ETC_EX=(--exclude=/cni/multus/certs --exclude=/kubernetes/cni/net.d --exclude=/sandbox-runtime --exclude=/.updated --exclude=/kubernetes/manifests)

result() { # $1 outcome $2 detail
  # with: fsck -n before the journal's replay, status on the ro mount
  echo "$k $e $kind $1 [fsck-raw $(cat "$o/fsck.raw.rc" 2>/dev/null) status-ro $(cat "$o/status.ro.rc" 2>/dev/null)] $2" >> "$w/results"
  echo "dmlog: point $k (entry $e, $DMLOG_FLAGS): $1 $2" >&2
  [ "$1" = converged ] && rm -rf "$o"
  cleanup
  exit 0
}
mounts() { awk -v p="$M" '$2 == p || index($2, p "/") == 1 {print $2}' /proc/self/mounts | sort -r; }
unmount() { # a busy unmount is tried again, then detached
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    [ -z "$(mounts)" ] && return 0
    mounts | xargs -r umount 2>/dev/null
    [ -z "$(mounts)" ] && return 0
    sleep 0.5
  done
  mounts | xargs -r umount -l
}
cleanup() {
  [ -f "$sb/ctl/lib/lib.sh" ] && mountpoint -q "$M" && ( . "$sb/ctl/lib/lib.sh"; etcd_stop ) 2>/dev/null
  unmount
  [ -n "${lo:-}" ] && losetup -d "$lo" 2>/dev/null
  rm -f "$pt"
}
tool() { PATH=$sb/ctl/bin:$PATH "$bin" --root "$r" "$@"; }
# rsync's view of a tree against the backup's copy (tests/common rsync_diff).
differs() { # $1 name $2 path in the root
  local ex=(-x)
  case $1 in etc) ex=("${ETC_EX[@]}") ;; opt) ex=(-x --omit-dir-times) ;; esac
  rsync -naAXHc --delete --numeric-ids --itemize-changes "${ex[@]}" "$w/before/$1/" "$r/$2/" > "$o/diff.$1" 2>&1
  [ -s "$o/diff.$1" ]
}
oracle() { # the files phase's trees equal the backup's: 0, else names them
  local bad=
  differs etc etc && bad="$bad etc"
  differs local var/usrlocal && bad="$bad usr-local"
  differs opt opt && bad="$bad extras"
  meta "$r/var/usrlocal" | cmp -s - "$w/before/local.meta" || bad="$bad usr-local-xattrs"
  [ -z "$bad" ] || { echo "$bad"; return 1; }
}

unmount
cp --sparse=always "$w/work.img" "$pt" || result failed "copy of the replayed device"
# fsck -n as the device is (its journal not replayed: informational).
fsck_n() { # $1 device: the file system's own check, changing nothing
  case ${DMLOG_FS:-ext4} in
    xfs) xfs_repair -n "$1" ;;   # refuses (exit 2) while its log needs replaying
    *) e2fsck -fn "$1" ;;
  esac
}
fsck_n "$pt" > "$o/fsck.raw" 2>&1; echo "$?" > "$o/fsck.raw.rc"
# Mounted read-only, status on it. One loop device of ours for the whole
# point (mount -o loop picks a free one at each mount, and another user of
# this host's loop devices can take the same one in between: EBUSY,
# "already mounted"). It is writable, as a node's disk is: ext4 does not
# mount a file system whose journal needs replaying from a read-only device
# ("cannot mount read-only"); on a writable one a read-only mount replays
# the journal, as the boot's first mount of a node's disk does.
lo=
for _ in 1 2 3 4 5; do lo=$(losetup -f --show "$pt" 2>/dev/null) && break; sleep 1; done
[ -n "$lo" ] || result failed "losetup of the replayed device"
mnt() { # $1 options $2 log: mount $lo, tried again while the device settles
  for _ in 1 2 3 4 5; do mount -o "$1" "$lo" "$M" 2> "$2" && return 0; sleep 1; done
  return 1
}
mnt ro "$o/mount.ro" || result failed "mount -o ro: $(head -c 200 "$o/mount.ro")"
tool status > "$o/status.ro" 2>&1; echo "$?" > "$o/status.ro.rc"
unmount
# The file system after its journal's replay must be consistent.
fsck_n "$lo" > "$o/fsck" 2>&1 || result failed "fsck -n: exit $? ($(grep -m1 -iE 'error|corrupt|inode|block' "$o/fsck" | head -c 150))"
mnt rw "$o/mount.rw" || result failed "mount rw: $(head -c 200 "$o/mount.rw")"
# The power cut's boot: a new boot id, units as enabled, etcd if its pod runs.
bash "$proj/scripts/sandbox.sh" reboot "$sb" > "$o/boot" 2>&1 || result failed "sandbox boot: $(tail -1 "$o/boot")"

state() { tool status --output json > "$o/status.json" 2> "$o/status.err"
  st=$(jq -r '.state.state' "$o/status.json" 2>/dev/null); next=$(jq -r '.next_command' "$o/status.json" 2>/dev/null); }
refused() { # $1 what ran, $2 its code, $3 its stderr file: a clear refusal or a failure
  case $2 in
    1|3|4) [ -s "$3" ] && result refused "$1 exit $2: $(grep -m1 -v '^\s*$' "$3" | head -c 160)" ;;
  esac
  result failed "$1 exit $2 (no clear refusal): $(head -c 200 "$3")"
}

case $kind in
  switch)
    # A cut in the second backup: one whole backup is there (the first or
    # the second), verify passes and status is ready (as lane_cut_backup).
    rc=0; tool verify > "$o/verify.out" 2> "$o/verify.err" || rc=$?
    state
    [ "$rc" = 0 ] || refused verify "$rc" "$o/verify.err"
    [ "$st" = backup-ready ] || result failed "verify passed, status says $st"
    result converged "verify ok, backup-ready" ;;
  files)
    # Never a journal entry whose change is not on disk: each tree step the
    # journal records as done holds the backup's tree now, before any run.
    j=$r/var/recovery/journal.json
    at="no journal"
    [ -f "$j" ] && at="journal at $(jq -r '.completed[-1].id // "start"' "$j" 2>/dev/null)"
    if [ -f "$j" ]; then
      cp "$j" "$o/journal.json"
      done_ids=$(jq -r '.completed[].id' "$j" 2>/dev/null) || result failed "journal.json unreadable: $(head -c 100 "$j")"
      for s in restore-usr-local:local:var/usrlocal restore-etc:etc:etc restore-extras:opt:opt; do
        id=${s%%:*} rest=${s#*:}
        if grep -qx "$id" <<< "$done_ids" && differs "${rest%%:*}" "${rest#*:}"; then
          result failed "the journal says $id is done, the disk does not hold it ($(wc -l < "$o/diff.${rest%%:*}") rsync lines)"
        fi
      done
    fi
    state
    ran=
    for _ in 1 2 3; do
      # The files phase done before the cut: nothing to run for it.
      if [ -f "$j" ] && jq -e '.completed | map(.id) | index("selinux-restore")' "$j" >/dev/null 2>&1; then break; fi
      case $next in
        "upgrade-recovery restore") args=(restore) ;;
        *"upgrade-recovery.sh --resume"|"upgrade-recovery restore --resume") args=(restore --resume) ;;
        *) [ -n "$ran" ] && break
           result refused "status: $st, next '$next'" ;;
      esac
      rc=0; tool "${args[@]}" > "$o/run.out" 2> "$o/run.err" || rc=$?
      ran="${args[*]}"
      [ "$rc" = 0 ] || refused "$ran" "$rc" "$o/run.err"
      grep -q "Reboot now" "$o/run.out" && break
      state
    done
    bad=$(oracle) || result failed "($at) after ${ran:-nothing}: differs from the backup:$bad"
    result converged "($at) ${ran:-nothing: the files phase was done}" ;;
  *) echo "dmlog-point.sh files|switch" >&2; exit 2 ;;
esac
