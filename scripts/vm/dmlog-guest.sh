#!/usr/bin/env bash
# The guest's side of `scripts/vm.sh dmlog` (issue 24 item 5): record every
# write, flush and FUA below a file system with dm-log-writes, with marks
# around what the host replays. Run by the lane's agent from the 9p share
# (/run/host), which holds: upgrade-recovery (the tool), scripts/ (the
# sandbox and its shims), base.img (an ext4 holding a sandbox node at
# sb/, made on the host), pat/ (the replayer check's blocks), bin/etcdutl
# (etcd 3.5+, which the native etcd restore needs; the guest has 3.4).
#   dmlog-guest.sh raw     the replayer's check: known blocks, O_DIRECT, marks
#   dmlog-guest.sh node    the sandbox node on an ext4 over dm-log-writes:
#                          backup, a second backup (the generation switch),
#                          a failed upgrade's changes, the files phase
# Each leaves its log in the share (raw.log, node.log) and prints what it did.
set -euo pipefail
S=/run/host
W=/var/tmp/dmlog
M=${DMLOG_MNT:-/var/tmp/dmlog-node}
mkdir -p "$W" "$M"
modprobe dm-log-writes
modprobe loop
t() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(t)" 'BEGIN{printf "%.1f s", b-a}'; }
mark() { dmsetup message "$1" 0 mark "$2"; echo "dmlog: mark $2 ($(dmsetup status "$1" | awk '{print $4}') entries)"; }
# fsync of the device itself: a REQ_PREFLUSH, which makes the writes done
# so far go into the log before the next mark.
devsync() { /usr/bin/python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$1"; }
# A log-writes device NAME over DATA and LOG (files, attached to loops).
lw_create() { # $1 name $2 data file $3 log file
  local d l
  d=$(losetup -f --show "$2"); l=$(losetup -f --show "$3")
  dmsetup create "$1" --table "0 $(blockdev --getsz "$d") log-writes $d $l"
  echo "$d $l" > "$W/$1.loops"
}
lw_remove() { # $1 name: the log's super block is final once the target goes
  local d l
  dmsetup remove "$1"
  read -r d l < "$W/$1.loops"
  losetup -d "$d"; losetup -d "$l"
}

case ${1:-} in
  raw)
    rm -f "$W/raw-data.img" "$W/raw-log.img"
    truncate -s 16M "$W/raw-data.img"; truncate -s 64M "$W/raw-log.img"
    lw_create dmraw "$W/raw-data.img" "$W/raw-log.img"
    X=/dev/mapper/dmraw
    mark dmraw start
    # A at block 0 with fsync (a flush follows the write).
    dd if="$S/pat/A" of=$X bs=4096 seek=0 oflag=direct conv=fsync,notrunc status=none
    mark dmraw one
    # B at block 256 with O_DSYNC (FUA where the device takes it, else a flush).
    dd if="$S/pat/B" of=$X bs=4096 seek=256 oflag=direct,dsync conv=notrunc status=none
    mark dmraw two
    # C at block 512: written and completed, never flushed before the mark:
    # not on stable storage at mark three, so not in the log before it.
    dd if="$S/pat/C" of=$X bs=4096 seek=512 oflag=direct conv=notrunc status=none
    mark dmraw three
    # D (256 KiB at block 1024), then a discard of its second 64 KiB, then a flush.
    dd if="$S/pat/D" of=$X bs=4096 seek=1024 oflag=direct conv=notrunc status=none
    if blkdiscard -o $(( (1024 * 4096) + 65536 )) -l 65536 $X; then echo discard > "$S/raw.discard"; else echo none > "$S/raw.discard"; fi
    devsync $X
    mark dmraw four
    lw_remove dmraw
    cp --sparse=always "$W/raw-log.img" "$S/raw.log"
    echo "dmlog: raw log $(du -h --apparent-size "$S/raw.log" | cut -f1), discard: $(cat "$S/raw.discard")" ;;
  node)
    t0=$(t)
    rm -f "$W/data.img" "$W/log.img"
    cp --sparse=always "$S/base.img" "$W/data.img"
    truncate -s 4G "$W/log.img"
    lw_create dmnode "$W/data.img" "$W/log.img"
    N=/dev/mapper/dmnode
    mark dmnode start
    # RHCOS mounts /var with the defaults: for ext4 that is data=ordered
    # (the file system is the one base.img was made with: ext4 or xfs).
    [ "$(cat "$S/fs" 2>/dev/null)" = xfs ] && modprobe xfs
    mount -o defaults $N "$M"
    echo "dmlog: mounted: $(findmnt -no OPTIONS "$M")"
    sb=$M/sb
    export PATH=$sb/ctl/bin:$S/bin:$PATH
    install -m 0755 "$S/upgrade-recovery" "$W/upgrade-recovery"
    tool() { "$W/upgrade-recovery" --root "$sb/root" "$@"; }
    bash "$S/scripts/sandbox.sh" reboot "$sb"
    t1=$(t); tool backup --min-free 0 > "$S/node.backup1.out" 2>&1 || { cat "$S/node.backup1.out"; exit 1; }
    echo "dmlog: backup 1: $(took "$t1")"
    devsync $N; mark dmnode switch-start
    t1=$(t); tool backup --min-free 0 > "$S/node.backup2.out" 2>&1 || { cat "$S/node.backup2.out"; exit 1; }
    echo "dmlog: backup 2 (the generation switch): $(took "$t1")"
    devsync $N; mark dmnode switch-end
    # What a failed upgrade leaves (as tests/common/recovery.rs upgrade()).
    bash "$S/scripts/sandbox.sh" cluster-upgrade "$sb" 4.17.1 Partial
    r=$sb/root
    (cd "$r"
     echo upgraded-1 >> etc/hostname; echo new > etc/new-in-upgrade-1; rm -f etc/kubernetes/kubelet.conf; chmod 0600 etc/tmpfiles.d/sandbox.conf
     m=$(stat -c %y var/usrlocal/bin/configure-ovs.sh); sed -i 's/ovs/OVS/' var/usrlocal/bin/configure-ovs.sh; touch -d "$m" var/usrlocal/bin/configure-ovs.sh
     echo tool > var/usrlocal/bin/new-tool-1; rm -f var/usrlocal/bin/recover-kubeconfig.sh
     echo '{"kind":"KubeletConfigurationX"}' > var/lib/kubelet/config.json
     echo extra=2 > opt/sandbox/tool.conf)
    sync; devsync $N; mark dmnode files-start
    # The negative control (DMLOG_SKIP_SYNCS=1 on the host): the restore
    # without the syncs before its journal entries (src/util/fault.rs).
    skip=(); [ -e "$S/skip-syncs" ] && skip=(env UPGRADE_RECOVERY_SKIP_SYNCS=1) && echo "dmlog: the restore runs WITHOUT its syncs (negative control)"
    t1=$(t); rc=0; "${skip[@]}" "$W/upgrade-recovery" --root "$sb/root" restore > "$S/node.restore.out" 2>&1 || rc=$?
    echo "dmlog: restore (the files phase): exit $rc, $(took "$t1")"
    grep -q "Reboot now" "$S/node.restore.out" || { cat "$S/node.restore.out"; exit 1; }
    devsync $N; mark dmnode files-end
    ( . "$sb/ctl/lib/lib.sh"; etcd_stop )
    awk -v p="$M" '$2 == p || index($2, p "/") == 1 {print $2}' /proc/self/mounts | sort -r | xargs -r umount
    lw_remove dmnode
    cp --sparse=always "$W/log.img" "$S/node.log"
    echo "dmlog: node log $(du -h "$S/node.log" | cut -f1) used; recorded in $(took "$t0")" ;;
  *) echo "dmlog-guest.sh raw|node" >&2; exit 2 ;;
esac
