#!/usr/bin/env bash
# The VM lane: real reboots, real systemd, real power cuts (issue 24).
#
#   scripts/vm.sh build              build (or find cached) the guest image
#   scripts/vm.sh procedure          the documented procedure once, for real
#   scripts/vm.sh otheros            the files phase, then a boot of the other entry:
#                                    the refusal, the way back, the recovery's end
#   scripts/vm.sh ci                 the procedure, then >= 5 power cuts at
#                                    recovery steps chosen anew; last line vm: P/N
#   scripts/vm.sh soak               power cuts at every step, etcd sub-step,
#                                    backup generation-switch step, and at random
#                                    instants, and dmlog; its counts, last line vm: P/N
#   scripts/vm.sh start DIR [ENTRY]  a VM in DIR, booted on BLS entry ENTRY (0 default)
#   scripts/vm.sh exec DIR SCRIPT    run SCRIPT (bash) in it as root
#   scripts/vm.sh reboot DIR         reboot from inside, boot the default entry
#   scripts/vm.sh cut DIR            cut the power (kill -9 of qemu)
#   scripts/vm.sh entries DIR        the BLS entries on its boot disk, default first
#   scripts/vm.sh dmlog              every flush/FUA point of the files phase and of the
#                                    backup's generation switch, below the file system
#   scripts/vm.sh dmlog-check RUNDIR the host's replay and checks again, on a kept dmlog run
#   scripts/vm.sh can-run            exit 0 if this host can run the lane, else say why
#
# Environment: VM_CACHE (default /var/cache/upgrade-recovery-vm), VM_ACCEL
# (default kvm where usable, else tcg), VM_CUTS (ci: how many cuts, 5),
# VM_CHAIN (cuts a cycle: ci 5, soak 1), VM_POINTS (these points, not a random draw),
# VM_SOAK_PARTS (soak: "recovery random | backup etcd otheros dmlog"; | runs groups at once),
# VM_BUDGET (soak: no new cycle after that many seconds), VM_RANDOM_CUTS (10),
# VM_KEEP=1 (keep run dirs), VM_SEED (the random choices),
# VM_FRESH_CHECKPOINT=1 (make the cached checkpoint anew).
# Needs root. See docs/vm.md.
set -euo pipefail
# shellcheck source=vm/lib.sh
. "$(dirname "$0")/vm/lib.sh"
# shellcheck source=vm/lane.sh
. "$(dirname "$0")/vm/lane.sh"
# shellcheck source=vm/dmlog.sh
. "$(dirname "$0")/vm/dmlog.sh"
cmd=${1:-}; shift || true
if [ "$cmd" = can-run ]; then vm_can_run; exit; fi
[ "$(id -u)" -eq 0 ] || vm_die "run as root (qemu, debootstrap, loop-free image build)"
case $cmd in build|procedure|otheros|ci|soak|dmlog) trap vm_stop_all EXIT ;; esac
case $cmd in
  build) vm_build; echo "$VM_IMG" ;;
  start) vm_build; d=${1:?start needs DIR}; [ -e "$d/root.qcow2" ] || vm_new "$d"; vm_boot "$d" "${2:-0}" ;;
  exec) d=${1:?exec needs DIR}; vm_exec "$d" "${2:?exec needs a script}" ;;
  reboot) vm_reboot "${1:?reboot needs DIR}" ;;
  cut) vm_cut "${1:?cut needs DIR}" ;;
  entries) vm_entries "${1:?entries needs DIR}" ;;
  procedure) lane_procedure ;;
  otheros) vm_build; lane_checkpoint; rc=0; lane_other_os || rc=$?; [ "$LANE_CK_OWN" = 0 ] || lane_done "$LANE_CK"; exit "$rc" ;;
  ci) lane_ci ;;
  soak) lane_soak ;;
  dmlog) dmlog_run ;;
  dmlog-check) dmlog_check "${1:?dmlog-check needs a kept dmlog run dir}" ;;
  *) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
