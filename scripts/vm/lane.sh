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

# Follow what status names until the recovery completes; then the oracle.
# 0 converged, 1 diverged (the end state differs, or it never completed).
lane_converge() { # $1 run dir
  local r=$1 i next state rc
  for i in 1 2 3 4 5 6 7 8; do
    lane_settle "$r" || true
    lane_step "$r" state || true
    state=$(cut -f1 "$r/last.out"); next=$(cut -f2 "$r/last.out")
    case $next in
      "oc get clusteroperators") break ;;
      "systemctl reboot") vm_reboot "$r" ;;
      /var/recovery/upgrade-recovery.sh*|"upgrade-recovery restore"*)
        rc=0; lane_x "$r" "$next" || rc=$?
        [ $rc = 252 ] && { vm_log "converge: cut again?"; vm_boot "$r"; } ;;
      *) vm_log "converge: state $state, next '$next': not a recovery step"; return 1 ;;
    esac
  done
  lane_step "$r" check
}

# The procedure's recovery as documented: restore (with the auto-resume
# unit), the real reboot, the unit finishing by itself, the oracle.
lane_recover() { # $1 run dir
  local r=$1
  lane_x "$r" "upgrade-recovery restore --auto-resume" || vm_die "the files phase failed"
  grep -q "Reboot now" "$r/last.out" || vm_die "the files phase did not say Reboot now"
  vm_reboot "$r"
  lane_settle "$r"
  grep -q "Result=success" "$r/last.out" && grep -q "ActiveState=inactive" "$r/last.out" || vm_die "the auto-resume unit did not succeed"
  lane_step "$r" check
}

LANE_CK=
LANE_CK_OWN=1
lane_checkpoint() {
  local t0; t0=$(vm_now)
  # VM_CHECKPOINT=DIR: start the cycles from a kept checkpoint run dir
  # (VM_KEEP=1) instead of making one (about 10 boots' worth of time).
  if [ -n "${VM_CHECKPOINT:-}" ]; then
    [ -e "$VM_CHECKPOINT/root.qcow2" ] || vm_die "VM_CHECKPOINT=$VM_CHECKPOINT has no disks"
    LANE_CK=$VM_CHECKPOINT LANE_CK_OWN=0; vm_log "checkpoint: $LANE_CK (given)"; return
  fi
  LANE_CK=$(lane_run checkpoint)
  lane_to_recovery "$LANE_CK"
  lane_poweroff "$LANE_CK"
  vm_log "checkpoint (backup, upgrade, rollback): $(vm_took "$t0")"
}

lane_procedure() {
  vm_build
  local t0 r rc=0; t0=$(vm_now)
  lane_checkpoint
  r=$(lane_run procedure "$LANE_CK")
  vm_boot "$r"
  lane_recover "$r" || rc=$?
  lane_done "$r"; [ $LANE_CK_OWN = 0 ] || lane_done "$LANE_CK"
  vm_log "procedure: $( [ $rc = 0 ] && echo converged || echo FAILED ) in $(vm_took "$t0")"
  return $rc
}

# Every fault point of a recovery: each step before and after its body,
# each etcd sub-step (src/recovery/steps.rs, src/recovery/mod.rs,
# src/recovery/bodies.rs).
lane_recovery_points() {
  local s=$vm_proj/src/recovery/steps.rs id
  echo preflight:before
  for id in $(sed -n 's/^ *[A-Za-z]* => "\([a-z-]*\)",$/\1/p' "$s"); do
    [ "$id" = preflight ] && { echo preflight; continue; }
    echo "$id:before"; echo "$id"
  done
  sed -n '/ETCD_SUBSTEPS/,/];/p' "$s" | grep -o '"[a-z-]*"' | tr -d '"' | sed 's/^/restore-etcd:/'
}

# The backup's generation switch (src/store/mod.rs, src/backup/*.rs).
lane_backup_points() {
  grep -rhoE 'fault::point\("(backup|switch|convert):[a-z-]+"\)' "$vm_proj/src" | sed 's/.*("\(.*\)")/\1/' | sort -u
  grep -rhoE 'fault::point\(&format!\("backup:\{name\}"' "$vm_proj/src" >/dev/null && printf 'backup:%s\n' etc local kubelet
}

# One power cut at a recovery fault point: 0 converged, 1 diverged, 2 the
# point was not reached.
lane_cut_recovery() { # $1 point
  local p=$1 r rc=0 t0; t0=$(vm_now)
  r=$(lane_run "cut-${p//:/_}" "$LANE_CK")
  echo "$p" > "$r/share/pause-at"
  vm_boot "$r"
  lane_x "$r" "UPGRADE_RECOVERY_PAUSE_AT=$p upgrade-recovery restore --auto-resume" || rc=$?
  if [ $rc = 0 ]; then
    vm_reboot "$r"; rc=0; lane_settle "$r" || rc=$?
  fi
  if [ $rc != 252 ]; then vm_log "cut $p: never reached ($rc)"; lane_done "$r"; return 2; fi
  vm_log "cut $p: power cut at the point ($(vm_took "$t0") in)"
  rm -f "$r/share/pause-at"
  vm_boot "$r"
  rc=0; lane_converge "$r" || rc=1
  vm_log "cut $p: $( [ $rc = 0 ] && echo converged || echo DIVERGED ) ($(vm_took "$t0"))"
  if [ $rc = 0 ]; then lane_done "$r"; else vm_log "kept $r"; vm_stop "$r"; fi
  return $rc
}

# A power cut at a random instant of the files phase (after DELAY s).
lane_cut_random() { # $1 delay (s, decimal)
  local d=$1 r rc=0 t0; t0=$(vm_now)
  r=$(lane_run "rand" "$LANE_CK")
  vm_boot "$r"
  printf 'upgrade-recovery restore --auto-resume\n' > "$r/share/q/r.sh"
  sleep "$d"; vm_cut "$r"
  vm_log "cut at random: $d s into the files phase"
  vm_boot "$r"
  rc=0; lane_converge "$r" || rc=1
  vm_log "cut at $d s: $( [ $rc = 0 ] && echo converged || echo DIVERGED ) ($(vm_took "$t0"))"
  if [ $rc = 0 ]; then lane_done "$r"; else vm_log "kept $r"; vm_stop "$r"; fi
  return $rc
}

# A power cut in the second backup's generation switch: afterwards verify
# passes (the old generation or the new one, whole) and status is ready.
lane_cut_backup() { # $1 point
  local p=$1 r rc=0
  r=$(lane_run "bcut-${p//:/_}" "$LANE_CK")
  vm_boot "$r"
  lane_x "$r" "UPGRADE_RECOVERY_PAUSE_AT=$p upgrade-recovery backup" || rc=$?
  if [ $rc != 252 ]; then vm_log "cut $p: never reached ($rc)"; lane_done "$r"; return 2; fi
  vm_boot "$r"
  rc=0
  lane_x "$r" "upgrade-recovery verify" || rc=1
  lane_step "$r" state || rc=1
  grep -q '^backup-ready' "$r/last.out" || rc=1
  vm_log "cut $p: $( [ $rc = 0 ] && echo "backup intact" || echo DIVERGED )"
  if [ $rc = 0 ]; then lane_done "$r"; else vm_log "kept $r"; vm_stop "$r"; fi
  return $rc
}

LANE_TRIED=0 LANE_OK=0 LANE_BAD=0 LANE_MISSED=0
lane_count() { # $1 code of a cut
  case $1 in
    0) LANE_TRIED=$((LANE_TRIED + 1)); LANE_OK=$((LANE_OK + 1)) ;;
    2) LANE_MISSED=$((LANE_MISSED + 1)) ;;
    *) LANE_TRIED=$((LANE_TRIED + 1)); LANE_BAD=$((LANE_BAD + 1)) ;;
  esac
}

lane_ci() {
  vm_build
  local t0 r rc n=${VM_CUTS:-5} p pts
  t0=$(vm_now)
  RANDOM=${VM_SEED:-$$}
  lane_checkpoint
  r=$(lane_run procedure "$LANE_CK"); vm_boot "$r"
  rc=0; lane_recover "$r" || rc=1
  lane_done "$r"; lane_count $rc
  vm_log "procedure: $( [ $rc = 0 ] && echo converged || echo FAILED ) ($(vm_took "$t0") so far)"
  mapfile -t pts < <(lane_recovery_points | shuf --random-source=<(yes "$RANDOM") | head -n "$n")
  for p in "${pts[@]}"; do rc=0; lane_cut_recovery "$p" || rc=$?; lane_count $rc; done
  [ $LANE_CK_OWN = 0 ] || lane_done "$LANE_CK"
  vm_log "ci: $(vm_took "$t0"); cut points $(IFS=,; echo "${pts[*]}"); $LANE_MISSED not reached"
  echo "vm: $LANE_OK/$LANE_TRIED"
  [ "$LANE_OK" = "$LANE_TRIED" ] && [ "$LANE_TRIED" -gt 0 ]
}

lane_soak() {
  vm_build
  local t0 rc p
  t0=$(vm_now)
  lane_checkpoint
  for p in $(lane_recovery_points); do rc=0; lane_cut_recovery "$p" || rc=$?; lane_count $rc; done
  for p in $(lane_backup_points); do rc=0; lane_cut_backup "$p" || rc=$?; lane_count $rc; done
  for _ in $(seq "${VM_RANDOM_CUTS:-10}"); do
    rc=0; lane_cut_random "$(awk -v s="$RANDOM" 'BEGIN{srand(s); printf "%.1f", rand()*20}')" || rc=$?; lane_count $rc
  done
  [ $LANE_CK_OWN = 0 ] || lane_done "$LANE_CK"
  vm_log "soak: $(vm_took "$t0")"
  echo "vm soak: tried $LANE_TRIED, converged $LANE_OK, diverged $LANE_BAD, not reached $LANE_MISSED"
  echo "vm: $LANE_OK/$LANE_TRIED"
  [ "$LANE_BAD" = 0 ]
}
