# shellcheck shell=bash
# The VM lane's runs (sourced by scripts/vm.sh after vm/lib.sh): the
# documented procedure for real, and power cuts at the tool's fault points
# and at random instants. Every run prints how long each part took.
VM_RUNS=${VM_RUNS:-$VM_CACHE/runs}

lane_run() { # $1 name [$2 checkpoint dir] -> prints a new run dir
  mkdir -p "$VM_RUNS"
  local r; r=$(mktemp -d "$VM_RUNS/$1.XXXX")
  vm_new "$r" "${2:-}"
  cp "$vm_here/guest-steps.sh" "$r/share/steps.sh"
  echo "$r"
}

lane_done() { # $1 run dir: stop it, and remove it unless VM_KEEP=1
  vm_stop "$1"
  [ "${VM_KEEP:-0}" = 1 ] || rm -rf "$1"
}

# Run SCRIPT in the guest, logging what and how long; returns its code.
lane_x() { # $1 run dir $2 script [$3 timeout]
  local t0 rc=0; t0=$(vm_now)
  vm_exec "$1" "$2" "${3:-1800}" > "$1/last.out" || rc=$?
  sed 's/^/    | /' "$1/last.out" >&2
  vm_log "  [$rc, $(vm_took "$t0")] $2"
  return $rc
}

lane_step() { lane_x "$1" "bash /run/host/steps.sh $2"; }

# Wait until the boot has settled: every start job done, the auto-resume
# unit included (a oneshot: is-system-running --wait waits for it).
lane_settle() { # $1 run dir
  lane_x "$1" 'systemctl is-system-running --wait >/dev/null || true
systemctl show -p ActiveState,Result upgrade-recovery-resume.service | paste -sd" "
journalctl -b -o cat SYSLOG_IDENTIFIER=upgrade-recovery | tail -n 4'
}

# From a fresh image to the point the recovery starts: the cluster up, the
# backup, the upgrade (a new deployment, rebooted into for real), changes to
# /etc, /usr/local, kubelet and etcd, then `rollback --reboot` and its real
# reboot into the pinned deployment.
lane_to_recovery() { # $1 run dir
  local r=$1 rc t0
  vm_boot "$r"
  lane_step "$r" "booted 416.94.1" || vm_die "not booted into the first deployment"
  lane_step "$r" setup || vm_die "setup failed"
  lane_x "$r" "upgrade-recovery backup" || vm_die "backup failed"
  lane_step "$r" snapshot || vm_die "snapshot failed"
  lane_step "$r" upgrade-deploy || vm_die "upgrade deploy failed"
  vm_reboot "$r"
  lane_step "$r" "booted 417.94.2" || vm_die "the upgrade's deployment did not boot"
  lane_step "$r" upgrade-changes || vm_die "upgrade changes failed"
  lane_x "$r" "bash /run/host/steps.sh state" || true
  grep -q $'^upgraded-os-booted\tupgrade-recovery rollback --reboot$' "$r/last.out" \
    || vm_die "status does not say: upgraded-os-booted, next rollback --reboot"
  t0=$(vm_now); rc=0
  lane_x "$r" "upgrade-recovery rollback --reboot" || rc=$?
  [ $rc = 0 ] || [ $rc = 250 ] || vm_die "rollback --reboot failed ($rc)"
  vm_wait_exit "$r" || vm_die "rollback --reboot did not reboot"
  vm_log "rollback: down in $(vm_took "$t0")"
  vm_boot "$r"
  lane_step "$r" "booted 416.94.1" || vm_die "the BLS default after rollback is not the pinned deployment"
}

# A clean power-off: the run dir's disks become a checkpoint others start from.
lane_poweroff() { # $1 run dir
  printf 'systemctl poweroff\n' > "$1/share/q/poweroff.sh"
  vm_wait_exit "$1" || vm_die "the guest did not power off"
}

LANE_CK=
LANE_CK_OWN=1
# The checkpoint every cycle starts from: the node after backup, upgrade and
# `rollback --reboot`, booted into the pinned deployment (`backup-ready`),
# with the guest's running state saved (vm_save), so a cycle starts in
# seconds instead of a boot. Cached in VM_CACHE by the image's key and the
# recipe's (the steps, the functions that make it, the VM's size), so `ci`
# makes it once per image.
lane_checkpoint() {
  local t0 key ck r; t0=$(vm_now)
  # VM_CHECKPOINT=DIR: a kept checkpoint run dir (VM_KEEP=1) instead.
  if [ -n "${VM_CHECKPOINT:-}" ]; then
    [ -e "$VM_CHECKPOINT/root.qcow2" ] || vm_die "VM_CHECKPOINT=$VM_CHECKPOINT has no disks"
    LANE_CK=$VM_CHECKPOINT LANE_CK_OWN=0; vm_log "checkpoint: $LANE_CK (given)"; return
  fi
  key=$( { echo "$VM_IKEY $VM_MEM $VM_SMP $(vm_accel)"; cat "$vm_here/guest-steps.sh"
    declare -f lane_to_recovery lane_step lane_x lane_settle vm_save vm_qemu; } | sha256sum | cut -c1-16)
  ck=$VM_CACHE/ck-$VM_IKEY-$key
  if [ -e "$ck/done" ] && [ "${VM_FRESH_CHECKPOINT:-0}" != 1 ]; then
    LANE_CK=$ck LANE_CK_OWN=0; vm_log "checkpoint: cached ($ck)"; return
  fi
  rm -rf "$ck"
  r=$(lane_run checkpoint)
  lane_to_recovery "$r"
  lane_settle "$r" >/dev/null
  if ! vm_save "$r"; then
    vm_log "checkpoint: the VM's state was not saved: the cycles boot its disks"
    lane_poweroff "$r"
  fi
  rm -rf "$r/share"; mkdir -p "$r/share"
  mv "$r" "$ck"; touch "$ck/done"
  LANE_CK=$ck LANE_CK_OWN=0
  vm_log "checkpoint (backup, upgrade, rollback, saved): $(vm_took "$t0") ($ck)"
}

# A cycle's VM: from the checkpoint's saved state when it has one, else a
# boot of its disks.
lane_start() { # $1 run dir
  if [ -e "$LANE_CK/state" ]; then vm_restore "$1" "$LANE_CK"; else vm_boot "$1"; fi
}

# The cut points of the cycle under way, the next one at LANE_PTS[LANE_I].
# The pending one is given to the tool's runs the lane starts (lane_env) and,
# through the share's boot.sh (the agent runs it at each boot, before the
# auto-resume unit starts), to that unit: a runtime drop-in with the
# variable and the unit's stderr in a file the agent watches (the journal
# watcher of the first version never saw the unit's pause).
# In cycles with cuts (LANE_FAST=1) the waits poll every VM_POLL_MS (1000)
# instead of 10 s (the hidden --poll-interval; the unit's ExecStart too):
# each redeployment waits two looks of the oc shim. The procedure keeps
# the shipped unit as it is.
LANE_PTS=() LANE_I=0 LANE_FAST=0
lane_pending() { # $1 run dir
  local p=${LANE_PTS[$LANE_I]:-}
  [ "$LANE_FAST" = 1 ] || [ -n "$p" ] || [ -n "$(lane_poll)" ] || { rm -f "$1/share/boot.sh"; return; }
  {
    echo 'd=/run/systemd/system/upgrade-recovery-resume.service.d; u=/etc/systemd/system/upgrade-recovery-resume.service'
    echo 'mkdir -p "$d"; { echo "[Service]"; echo "StandardError=append:/run/vm-resume.err"'
    [ -z "$p" ] || echo "  echo 'Environment=UPGRADE_RECOVERY_PAUSE_AT=$p'"
    [ -z "$(lane_poll)" ] || echo "  [ ! -e \$u ] || { echo ExecStart=; echo \"ExecStart=\$(sed -n 's/^ExecStart=//p' \$u)$(lane_poll)\"; }"
    echo '} > "$d/vm-lane.conf"; cat "$d/vm-lane.conf"; systemctl daemon-reload'
  } > "$1/share/boot.sh"
}
lane_env() { local p=${LANE_PTS[$LANE_I]:-}; [ -z "$p" ] || printf 'UPGRADE_RECOVERY_PAUSE_AT=%s ' "$p"; }
# Options every recovery run of the cycle gets (the lane's, the unit's):
# the cut cycles' 1 s poll; VM_ETCD_NATIVE=1: the native etcd restore
# (etcdutl in the guest), whose sub-steps are cut points too.
lane_poll() {
  [ "$LANE_FAST" != 1 ] || printf ' --poll-interval %s' "${VM_POLL_MS:-1000}"
  [ "${VM_ETCD_NATIVE:-0}" != 1 ] || printf ' --etcd-restore native'
}

LANE_CUTS=0 LANE_CUT_LIST=
# After a run's exit code: 252 is the power cut at the pending point (the
# host cut it while the tool waited there): count it, make the next point
# pending, boot. 0 if it was a cut.
lane_after() { # $1 run dir $2 rc
  [ "$2" = 252 ] || return 1
  LANE_CUTS=$((LANE_CUTS + 1)); LANE_CUT_LIST="$LANE_CUT_LIST $VM_CUT"
  [ "$VM_CUT" = "${LANE_PTS[$LANE_I]:-}" ] || vm_log "  the cut came at $VM_CUT, not at the pending ${LANE_PTS[$LANE_I]:-none}"
  vm_log "  power cut at $VM_CUT"
  LANE_I=$((LANE_I + 1)); lane_pending "$1"
  vm_boot "$1"
}

# Follow what status names until the recovery completes (a cut at the
# pending point on the way: boot, and on); then the oracle. 0 converged,
# 1 diverged (the end state differs, or it never completed).
lane_drive() { # $1 run dir
  local r=$1 i next state rc
  for i in $(seq 16); do
    rc=0; lane_settle "$r" || rc=$?
    lane_after "$r" $rc && continue
    lane_step "$r" state || true
    state=$(cut -f1 "$r/last.out"); next=$(cut -f2 "$r/last.out")
    case $next in
      "oc get clusteroperators") lane_step "$r" check; return ;;
      "systemctl reboot") vm_reboot "$r" ;;
      /var/recovery/upgrade-recovery.sh*|"upgrade-recovery restore"*)
        rc=0; lane_x "$r" "$(lane_env)$next$(lane_poll)" || rc=$?
        lane_after "$r" $rc || true ;;
      *) vm_log "converge: state $state, next '$next': not a recovery step"; return 1 ;;
    esac
  done
  vm_log "converge: not completed after $i rounds"; return 1
}

# One cycle from the checkpoint: the files phase (`restore --auto-resume`,
# as documented), then what status names (the reboot, the auto-resume
# unit, `--resume`) until the recovery completes, with a power cut at each
# of the given points in turn (in the recovery's order: each run after a
# cut goes on to the next point); then the oracle. Without points it is the
# documented procedure, which must also say "Reboot now" and finish by the
# auto-resume unit alone. 0 converged, 1 diverged.
LANE_MISSED=0 LANE_MISSED_LIST=
lane_cycle() { # $1 name, [$2... points]
  local name=$1 r rc t0 ok=0; shift
  t0=$(vm_now); LANE_PTS=("$@"); LANE_I=0; LANE_FAST=$(( $# > 0 ))
  r=$(lane_run "$name" "$LANE_CK")
  lane_pending "$r"
  lane_start "$r"
  rc=0; lane_x "$r" "$(lane_env)upgrade-recovery restore --auto-resume$(lane_poll)" || rc=$?
  if ! lane_after "$r" $rc; then
    [ $rc = 0 ] && grep -q "Reboot now" "$r/last.out" || { vm_log "cycle $name: the files phase failed ($rc)"; ok=1; }
  fi
  if [ $ok = 0 ] && [ $# = 0 ]; then
    # The procedure: the reboot, then the unit alone.
    vm_reboot "$r"; lane_settle "$r"
    grep -q "Result=success" "$r/last.out" && grep -q "ActiveState=inactive" "$r/last.out" \
      || { vm_log "cycle $name: the auto-resume unit did not succeed"; ok=1; }
  fi
  [ $ok = 0 ] && { lane_drive "$r" || ok=1; }
  if [ "$LANE_I" -lt $# ]; then
    LANE_MISSED=$((LANE_MISSED + $# - LANE_I)); LANE_MISSED_LIST="$LANE_MISSED_LIST ${LANE_PTS[*]:$LANE_I}"
    vm_log "cycle $name: not reached: ${LANE_PTS[*]:$LANE_I}"
  fi
  vm_log "cycle $name: $( [ $ok = 0 ] && echo converged || echo DIVERGED ) after $LANE_I cut(s) ($(vm_took "$t0"))"
  if [ $ok = 0 ]; then lane_done "$r"; else vm_log "kept $r"; vm_stop "$r"; fi
  return $ok
}

lane_procedure() {
  vm_build
  local t0 rc=0; t0=$(vm_now)
  lane_checkpoint
  lane_cycle procedure || rc=$?
  [ $LANE_CK_OWN = 0 ] || lane_done "$LANE_CK"
  vm_log "procedure: $( [ $rc = 0 ] && echo converged || echo FAILED ) in $(vm_took "$t0")"
  return $rc
}

# The boot menu's other entry after the files phase (the independent
# tester's finding of session 8: `--resume` ran the cluster phase on the
# upgrade's deployment). On the guest each deployment has its own /etc:
# the one the files phase restored (with the auto-resume unit in it) is
# not the booted one. `status` must say recovery-stopped-other-os naming
# `systemctl reboot` (the default is the recovery's deployment), `--resume`
# must refuse (exit 1) and change nothing; that reboot and what status names
# then finish the recovery; the oracle. 0 converged, 1 diverged.
lane_other_os() {
  local r rc t0 ok=0; t0=$(vm_now)
  LANE_PTS=(); LANE_I=0; LANE_FAST=0
  r=$(lane_run otheros "$LANE_CK")
  lane_pending "$r"
  lane_start "$r"
  rc=0; lane_x "$r" "upgrade-recovery restore --auto-resume" || rc=$?
  [ $rc = 0 ] && grep -q "Reboot now" "$r/last.out" || { vm_log "otheros: the files phase failed ($rc)"; ok=1; }
  if [ $ok = 0 ]; then
    vm_reboot "$r" 1
    lane_step "$r" "booted 417.94.2" || { vm_log "otheros: boot entry 1 is not the upgrade's deployment"; ok=1; }
  fi
  if [ $ok = 0 ]; then
    lane_settle "$r" >/dev/null || true
    lane_step "$r" state || true
    grep -q $'^recovery-stopped-other-os\tsystemctl reboot$' "$r/last.out" \
      || { vm_log "otheros: status does not say recovery-stopped-other-os, next systemctl reboot"; ok=1; }
    rc=0; lane_x "$r" "/var/recovery/upgrade-recovery.sh --resume" || rc=$?
    [ $rc = 1 ] && grep -q "whose /etc was not restored" "$r/last.err" \
      || { vm_log "otheros: --resume on the upgrade's deployment: exit $rc, not the refusal"; ok=1; }
  fi
  [ $ok = 0 ] && { lane_drive "$r" || ok=1; }
  vm_log "cycle otheros: $( [ $ok = 0 ] && echo converged || echo DIVERGED ) ($(vm_took "$t0"))"
  if [ $ok = 0 ]; then lane_done "$r"; else vm_log "kept $r"; vm_stop "$r"; fi
  return $ok
}

# Every fault point of a recovery, in the order a run reaches them: each
# step before and after its body, each redeployment's patch
# (src/recovery/steps.rs, src/recovery/mod.rs, src/recovery/bodies.rs).
# The etcd sub-steps (ETCD_SUBSTEPS) are points of the native etcd restore
# only: the guest has the node's cluster-restore.sh, as RHCOS 4.14-4.17
# has, so `--etcd-restore auto` runs the script and never reaches them;
# VM_ETCD_NATIVE=1 runs every recovery of the lane with `--etcd-restore
# native` (etcdutl in the guest) and lists them (VM_ETCD_SUBSTEPS=1 lists
# them anyway).
lane_recovery_points() {
  local s=$vm_proj/src/recovery/steps.rs id
  echo preflight:before
  for id in $(sed -n 's/^ *[A-Za-z]* => "\([a-z-]*\)",$/\1/p' "$s"); do
    [ "$id" = preflight ] && { echo preflight; continue; }
    echo "$id:before"
    [ "$id" = restore-etcd ] && { [ "${VM_ETCD_SUBSTEPS:-0}" = 1 ] || [ "${VM_ETCD_NATIVE:-0}" = 1 ]; } && sed -n '/ETCD_SUBSTEPS/,/];/p' "$s" | grep -o '"[a-z-]*"' | tr -d '"' | sed 's/^/restore-etcd:/'
    case $id in redeploy-*) echo "$id:patched" ;; esac
    echo "$id"
  done
}

# A byte stream seeded by $1 for shuf (coreutils' manual, "Sources of random
# data"): `yes SEED` gave nearly the same draw for every seed.
lane_random() { openssl enc -aes-256-ctr -pass pass:"$1" -nosalt </dev/zero 2>/dev/null; }

# Points in the recovery's order (the order lane_recovery_points prints).
lane_in_order() { grep -Fxf <(cat) <(lane_recovery_points); }

# The backup's generation switch (src/store/mod.rs, src/backup/*.rs): the
# literal points, and those named per tree (`backup:{name}`, the trees of
# src/backup/trees.rs) and per documented path of the backup dir
# (`convert:link:{name}`, `convert:exchanged:{name}` for the flat `cluster/`
# dir: src/store/layout.rs STABLE, in its order).
lane_backup_points() {
  grep -rhoE 'fault::point\("(backup|switch|convert):[a-z:-]+"\)' "$vm_proj/src" | sed 's/.*("\(.*\)")/\1/' | sort -u
  grep -rhoE 'fault::point\(&format!\("backup:\{name\}"' "$vm_proj/src" >/dev/null && printf 'backup:%s\n' etc local kubelet
  local l=$vm_proj/src/store/layout.rs n v
  for n in $(sed -n 's/^pub const STABLE: \[&str; [0-9]*\] = \[\(.*\)\];$/\1/p' "$l" | tr -d ' ' | tr , ' '); do
    v=$(sed -n "s/^pub const $n: &str = \"\\(.*\\)\";\$/\\1/p" "$l")
    [ -n "$v" ] || vm_die "no value for $n in $l"
    [ "$n" != CLUSTER ] || echo "convert:exchanged:$v"
    echo "convert:link:$v"
  done
}

# A power cut at a random instant of the files phase (after DELAY s), then
# what status names until completed, and the oracle.
lane_cut_random() { # $1 delay (s, decimal)
  local d=$1 r rc=0 t0; t0=$(vm_now)
  LANE_PTS=() LANE_I=0 LANE_FAST=1
  r=$(lane_run "rand" "$LANE_CK")
  lane_pending "$r"
  lane_start "$r"
  printf 'upgrade-recovery restore --auto-resume%s\n' "$(lane_poll)" > "$r/share/q/r.sh"
  sleep "$d"; vm_cut "$r"
  vm_log "cut at random: $d s into the files phase"
  vm_boot "$r"
  rc=0; lane_drive "$r" || rc=1
  vm_log "cut at $d s: $( [ $rc = 0 ] && echo converged || echo DIVERGED ) ($(vm_took "$t0"))"
  if [ $rc = 0 ]; then lane_done "$r"; else vm_log "kept $r"; vm_stop "$r"; fi
  return $rc
}

# A power cut in the second backup's generation switch: afterwards verify
# passes (the old generation or the new one, whole) and status is ready.
# 0 intact, 1 diverged, 2 the point was not reached. The checkpoint is a
# node rolled back and not recovered, where the lifecycle rule refuses a
# plain backup (src/recovery/lifecycle.rs); `--replace-backup` is the
# admin's "this node is the new baseline", and runs the same switch.
# Some points need another starting layout, made from the checkpoint
# before the backup (lane_backup_setup); their checks add to the above.
lane_cut_backup() { # $1 point
  local p=$1 r rc=0 args
  r=$(lane_run "bcut-${p//:/_}" "$LANE_CK")
  lane_start "$r"
  lane_backup_setup "$r" "$p" || { vm_log "cut $p: the setup failed"; vm_stop "$r"; vm_log "kept $r"; return 1; }
  args=$LANE_BARGS
  lane_x "$r" "UPGRADE_RECOVERY_PAUSE_AT=$p upgrade-recovery backup --replace-backup$args" || rc=$?
  if [ $rc != 252 ]; then vm_log "cut $p: never reached ($rc)"; lane_done "$r"; return 2; fi
  vm_boot "$r"
  rc=0
  lane_backup_after "$r" "$p" "$args" || rc=1
  lane_x "$r" "upgrade-recovery verify" || rc=1
  lane_step "$r" state || rc=1
  grep -q '^backup-ready' "$r/last.out" || rc=1
  lane_backup_final "$r" "$p" || rc=1
  vm_log "cut $p: $( [ $rc = 0 ] && echo "backup intact" || echo DIVERGED )"
  if [ $rc = 0 ]; then lane_done "$r"; else vm_log "kept $r"; vm_stop "$r"; fi
  return $rc
}

# The layout a point needs; the backup's extra arguments in LANE_BARGS.
# - convert:*: the flat layout of the release before generations (every
#   file in the backup dir, as tests/generations.rs `flatten` makes it),
#   which the next backup converts first; it must verify as it is.
# - backup:removed-previous: a backup dir short of room, so that the new
#   backup fits only once the previous one is gone (src/backup/space.rs
#   `Space::decide`): `--min-free` set from the dry run's own figures to
#   free - estimate + previous/2. An admin's file beside the backup, which
#   must survive (`store::owned_and_foreign`).
# - backup:release:*: the node booted into the upgrade's deployment, made
#   the default again (`rpm-ostree rollback` undoes the rollback: the
#   shim's rule is rpm-ostree's), as after an upgrade that went well, so
#   the new backup pins it and, once current, unpins and undeploys the one
#   the previous backup pinned.
LANE_BARGS=
lane_backup_setup() { # $1 run dir $2 point
  local r=$1 p=$2 m
  LANE_BARGS=
  case $p in
    convert:*)
      lane_x "$r" 'cd /var/recovery && g=$(readlink current) && rm -f current manifest.json cluster etc.exclude.list upgrade-recovery upgrade-recovery.sh && mv "$g"/* . && rmdir "$g" && ls -la && upgrade-recovery verify' >/dev/null || return 1 ;;
    backup:removed-previous)
      lane_x "$r" 'echo "kept by the admin" > /var/recovery/admin-notes.txt
upgrade-recovery --output json backup --replace-backup --dry-run --min-free 0 > /tmp/dry.json
python3 -c "import json; s = json.load(open(\"/tmp/dry.json\"))[\"space\"]; print(s[\"free\"] - s[\"estimate\"] + s[\"previous\"] // 2)"' >/dev/null || return 1
      m=$(tail -1 "$r/last.out")
      [ "$m" -gt 0 ] 2>/dev/null || { vm_log "cut $p: no margin from the dry run ($m)"; return 1; }
      lane_x "$r" "upgrade-recovery backup --replace-backup --dry-run --min-free $m" >/dev/null || return 1
      grep -q 'REMOVE THE PREVIOUS BACKUP' "$r/last.out" || { vm_log "cut $p: the dry run with --min-free $m would not remove the previous backup"; return 1; }
      LANE_BARGS=" --min-free $m" ;;
    backup:release:*)
      lane_x "$r" 'rpm-ostree rollback && ostree admin status' >/dev/null || return 1
      vm_reboot "$r"
      lane_step "$r" "booted 417.94.2" >/dev/null || return 1
      lane_x "$r" 'ostree admin status' >/dev/null || return 1 ;;
  esac
}

# After the boot, before the common checks: what the point's layout asks.
# - backup:removed-previous: the node has no backup (the previous one
#   stopped being one before anything was removed); status says so and
#   names `upgrade-recovery backup`, which must then succeed.
# - backup:release:unpinned: the deployment unpinned is not pinned.
lane_backup_after() { # $1 run dir $2 point $3 the backup's extra arguments
  local r=$1 p=$2 args=$3
  case $p in
    backup:removed-previous)
      # What status names, as it names it (the margin of the cut run does
      # not hold here: the boot's journal and etcd took some of the room).
      lane_step "$r" state || return 1
      vm_log "  after the cut: $(head -1 "$r/last.out")"
      grep -q $'^no-backup\tupgrade-recovery backup$' "$r/last.out" || return 1
      lane_x "$r" "upgrade-recovery backup" || return 1 ;;
    backup:release:unpinned)
      # The unpin is on disk (the tool syncs the sysroot after it; ostree
      # alone did not: the first soak's cut came back with it pinned).
      lane_x "$r" 'ostree admin status | awk "/^[* ] rhcos /{v=0} /Version: 416.94.1/{v=1} v && /Pinned: yes/{bad=1} END{exit bad}"' || { vm_log "  the unpin of 416.94.1 did not survive the power cut"; return 1; } ;;
  esac
}

# After the common checks.
# - backup:removed-previous: the admin's file is intact.
# - backup:release:*: the booted deployment is pinned; the same backup run
#   again finishes the release: one deployment left, the booted one.
lane_backup_final() { # $1 run dir $2 point
  local r=$1 p=$2
  case $p in
    backup:removed-previous)
      lane_x "$r" 'test "$(cat /var/recovery/admin-notes.txt)" = "kept by the admin"' ;;
    backup:release:*)
      lane_x "$r" 'ostree admin status; ostree admin status | grep -A4 "^\* " | grep -q "Pinned: yes"' || return 1
      lane_x "$r" 'upgrade-recovery backup --replace-backup && ostree admin status && test "$(ostree admin status | grep -c "^[* ] rhcos ")" = 1' ;;
  esac
}

LANE_RUN=0 LANE_OK=0 LANE_BAD=0 LANE_SKIPPED=0
lane_count() { # $1 0 converged, else diverged
  LANE_RUN=$((LANE_RUN + 1))
  if [ "$1" = 0 ]; then LANE_OK=$((LANE_OK + 1)); else LANE_BAD=$((LANE_BAD + 1)); fi
  vm_log "so far: cycles $LANE_RUN, converged $LANE_OK, diverged $LANE_BAD; cuts at points $LANE_CUTS, not reached $LANE_MISSED (load $(cut -d' ' -f1-3 /proc/loadavg))"
}
# VM_BUDGET=SECONDS (soak): start no new cycle after that long; what is left
# is counted as skipped.
LANE_T0=$(date +%s)
lane_budget_left() { [ -z "${VM_BUDGET:-}" ] || [ $(( $(date +%s) - LANE_T0 )) -lt "$VM_BUDGET" ]; }

# Cycles of VM_CHAIN cut points each (drawn from POINTS on stdin, in a
# random order, each cycle's in the recovery's order).
lane_chains() { # $1 cycle name prefix
  local pts chain k=0 c=${VM_CHAIN:-3} rc
  mapfile -t pts
  while [ $k -lt ${#pts[@]} ]; do
    lane_budget_left || { LANE_SKIPPED=$((LANE_SKIPPED + ${#pts[@]} - k)); return 0; }
    mapfile -t chain < <(printf '%s\n' "${pts[@]:$k:$c}" | lane_in_order)
    rc=0; lane_cycle "$1$((k / c + 1))" "${chain[@]}" || rc=$?; lane_count $rc
    k=$((k + c))
  done
}

lane_ci() {
  vm_build
  local t0 rc n=${VM_CUTS:-5}
  t0=$(vm_now)
  local seed=${VM_SEED:-$$}
  RANDOM=$seed
  vm_log "ci: seed $seed (VM_SEED=$seed repeats its choices)"
  lane_checkpoint
  rc=0; lane_cycle procedure || rc=$?; lane_count $rc
  # VM_POINTS="P ...": these points instead of a random draw.
  if [ -n "${VM_POINTS:-}" ]; then
    VM_CHAIN=${VM_CHAIN:-5} lane_chains cuts < <(printf '%s\n' $VM_POINTS)
  else
    # One cycle of five cuts by default: a boot per cut, one files phase
    # and one oracle check for all (idle 2-core host: about 11 min with
    # the checkpoint cached; docs/vm.md "CI").
    VM_CHAIN=${VM_CHAIN:-5} lane_chains cuts < <(lane_recovery_points | shuf --random-source=<(lane_random "$seed") | head -n "$n")
  fi
  [ $LANE_CK_OWN = 0 ] || lane_done "$LANE_CK"
  vm_log "ci: $(vm_took "$t0") (load $(cut -d' ' -f1-3 /proc/loadavg)); $LANE_CUTS power cuts at:$LANE_CUT_LIST; not reached:${LANE_MISSED_LIST:- none}; hung boots $VM_HUNG_BOOTS"
  echo "vm: $LANE_OK/$LANE_RUN"
  # The power cuts must have happened, not only the cycles converged.
  [ "$LANE_CUTS" -ge "$n" ] || [ -n "${VM_POINTS:-}" ] || { vm_log "ci: only $LANE_CUTS of $n power cuts reached their point"; return 1; }
  [ "$LANE_OK" = "$LANE_RUN" ] && [ "$LANE_RUN" -gt 0 ]
}

# The soak: every recovery fault point (VM_CHAIN at a time, default 1: one
# cut a cycle), the 6 etcd sub-steps of the native restore, every point of
# the backup's generation switch (from the layouts they need), VM_RANDOM_CUTS
# cuts at random instants of the files phase, and `dmlog` (every flush/FUA
# point below the file system). VM_SOAK_PARTS names the parts; `|` separates
# groups run at once, each by a process of its own with its own VMs (one
# vCPU each: on a 2-core host two groups use both cores), in the order
# given within a group. Its last lines: the counts of each part, and
# `vm: P/N` (cycles and backup cuts intact / run; dmlog's points apart).
LANE_SOAK_DEFAULT="recovery random | backup etcd otheros dmlog"
lane_soak() {
  vm_build
  local t0 g i=0 rc=0 dir f
  t0=$(vm_now)
  local parts=${VM_SOAK_PARTS:-$LANE_SOAK_DEFAULT}
  case $parts in *recovery*|*etcd*|*backup*|*random*) lane_checkpoint ;; esac
  local seed=${VM_SEED:-$$}
  vm_log "soak: seed $seed (VM_SEED=$seed repeats its choices); parts: $parts"
  dir=$(mktemp -d "$VM_RUNS/soak.XXXX")
  local IFS_=$IFS
  IFS='|'; local groups=($parts); IFS=$IFS_
  for g in "${groups[@]}"; do
    i=$((i + 1))
    ( VM_LIVE=; trap vm_stop_all EXIT; lane_soak_group "$seed.$i" $g > "$dir/counts.$i" ) 2> >(sed -u "s/^/[$i] /" >&2) &
  done
  wait || true
  cat "$dir"/counts.* > "$dir/all"
  [ "$LANE_CK_OWN" = 0 ] || lane_done "$LANE_CK"
  # Sum the groups' counters (lane_soak_group's last line each).
  local sum; sum=$(awk '$1 == "counts" { for (i = 2; i <= NF; i++) s[i] += $i; n = NF } END { for (i = 2; i <= n; i++) printf "%d ", s[i] }' "$dir/all")
  # shellcheck disable=SC2086
  set -- $sum
  [ $# = 14 ] || { grep -v '^counts' "$dir/all"; vm_log "soak: a group did not finish (kept $dir)"; echo "vm: 0/1"; return 1; }
  grep -v '^counts' "$dir/all" || true
  vm_log "soak: $(vm_took "$t0") (load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "vm soak: recovery cycles $1 (converged $2, diverged $3) with $4 cuts at points and ${7} at random instants, not reached $5;" \
    "backup switch cuts tried $8, intact $9, diverged $(( $8 - $9 )), not reached ${10}; points skipped (VM_BUDGET) $6;" \
    "dmlog points ${11}, converged ${12}, refused ${13}, failed ${14}"
  echo "vm: $(( $2 + $9 ))/$(( $1 + $8 ))"
  rm -rf "$dir"
  [ "$3" = 0 ] && [ "$8" = "$9" ] && [ "${14}" = 0 ] && [ "$(( $1 + $8 + ${11} ))" -gt 0 ]
}

# One group of soak parts, in order; prints each part's result and, last,
# `counts` and its 14 counters (summed by lane_soak).
lane_soak_group() { # $1 seed, then parts
  local seed=$1 p part rc btried=0 bok=0 bmiss=0 rand=0 dp=0 dc=0 dr=0 df=0 t0 out; shift
  RANDOM=${seed%%.*}
  for part; do
    t0=$(vm_now)
    case $part in
      recovery)
        # VM_POINTS="P ...": only these (a soak's remainder), in the recovery's order.
        VM_CHAIN=${VM_CHAIN:-1} lane_chains soak < <(if [ -n "${VM_POINTS:-}" ]; then printf '%s\n' $VM_POINTS | lane_in_order; else lane_recovery_points | shuf --random-source=<(lane_random "$seed"); fi)
        echo "soak recovery: $LANE_CUTS cut, not reached $LANE_MISSED, $LANE_OK/$LANE_RUN cycles converged ($(vm_took "$t0")); cut at:$LANE_CUT_LIST; not reached:${LANE_MISSED_LIST:- none}" ;;
      etcd)
        # The native restore's sub-steps, in one cycle of cuts in turn.
        local c0=$LANE_CUTS o0=$LANE_OK r0=$LANE_RUN
        VM_ETCD_NATIVE=1 VM_CHAIN=${VM_ETCD_CHAIN:-6} lane_chains etcd < <(VM_ETCD_NATIVE=1 lane_recovery_points | grep '^restore-etcd:')
        echo "soak etcd: $((LANE_CUTS - c0)) sub-step cuts, $((LANE_OK - o0))/$((LANE_RUN - r0)) cycles converged ($(vm_took "$t0"))" ;;
      backup)
        for p in $(lane_backup_points); do
          lane_budget_left || { bmiss=$((bmiss + 1)); continue; }
          rc=0; lane_cut_backup "$p" || rc=$?
          case $rc in 2) bmiss=$((bmiss + 1)) ;; 0) btried=$((btried + 1)); bok=$((bok + 1)) ;; *) btried=$((btried + 1)); echo "soak backup: DIVERGED at $p" ;; esac
          vm_log "so far: backup switch cuts $btried, intact $bok, not reached $bmiss"
        done
        echo "soak backup: cuts $btried, intact $bok, not reached or skipped $bmiss ($(vm_took "$t0"))" ;;
      random)
        for _ in $(seq "${VM_RANDOM_CUTS:-10}"); do
          lane_budget_left || { LANE_SKIPPED=$((LANE_SKIPPED + 1)); continue; }
          rand=$((rand + 1))
          rc=0; lane_cut_random "$(awk -v s="$RANDOM" 'BEGIN{srand(s); printf "%.1f", rand()*20}')" || rc=$?; lane_count $rc
        done
        echo "soak random: $rand cuts ($(vm_took "$t0"))" ;;
      otheros)
        rc=0; lane_other_os || rc=$?; lane_count $rc
        echo "soak otheros: $( [ $rc = 0 ] && echo converged || echo DIVERGED ) ($(vm_took "$t0"))" ;;
      dmlog)
        out=$( (VM_LIVE=; trap vm_stop_all EXIT; dmlog_run) ) || true
        printf '%s\n' "$out" | grep '^dmlog' | sed 's/^/soak /'
        read -r dp dc dr df < <(printf '%s\n' "$out" | sed -n 's/^dmlog: points \([0-9]*\), converged \([0-9]*\), refused \([0-9]*\), failed \([0-9]*\)$/\1 \2 \3 \4/p' | tail -1)
        [ -n "$df" ] || { echo "soak dmlog: did not finish"; dp=1 dc=0 dr=0 df=1; } ;;
      *) vm_die "soak: unknown part $part (recovery, etcd, backup, random, otheros, dmlog)" ;;
    esac
  done
  echo "counts $LANE_RUN $LANE_OK $LANE_BAD $LANE_CUTS $LANE_MISSED $LANE_SKIPPED $rand $btried $bok $bmiss $dp $dc $dr $df"
}
