# shellcheck shell=bash
# The VM lane's host side (sourced by scripts/vm.sh): build and cache the
# guest, start it on a BLS entry, queue commands, reboot, cut the power.
# A VM is a run directory: root.qcow2 (over the cached root.img), boot.img (a
# copy: the host reads its BLS entries as a boot loader does), share/ (the
# 9p share), console.N.log and ctl.N.log (both serial ports of boot N).
VM_CACHE=${VM_CACHE:-/var/cache/upgrade-recovery-vm}
VM_TIMEOUT_BOOT=${VM_TIMEOUT_BOOT:-600}
VM_MEM=${VM_MEM:-2048}
# One vCPU by default: with two under TCG on a loaded 2-core host, a vCPU
# spinning on a lock the other (descheduled) one holds stalls for minutes
# (seen: udev workers in soft lockup for 300+ s during boot).
VM_SMP=${VM_SMP:-1}
vm_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
vm_proj=$(cd "$vm_here/../.." && pwd)

vm_die() { echo "vm: $*" >&2; exit 1; }
vm_now() { date +%s.%N; }
vm_took() { awk -v a="$1" -v b="$(vm_now)" 'BEGIN{printf "%.1f s", b-a}'; }
vm_log() { echo "vm: $*" >&2; }

vm_deps() {
  local p missing=()
  for p in qemu-system-x86 qemu-utils debootstrap ostree e2fsprogs rsync; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  vm_log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

# Can this host run the lane? Prints why not (exit 1): scripts/test.sh then
# skips it. Root, QEMU installed or installable from the host's apt
# sources, room for the cache (base 0.9 GiB, image 0.5, checkpoint 0.5,
# each run's overlays and copies up to ~1.5), memory for the guest.
vm_can_run() {
  [ "$(id -u)" -eq 0 ] || { echo "not root"; return 1; }
  command -v qemu-system-x86_64 >/dev/null \
    || apt-cache policy qemu-system-x86 2>/dev/null | grep -q 'Candidate: [0-9]' \
    || { echo "qemu-system-x86 is neither installed nor installable from this host's apt sources"; return 1; }
  local free mem
  mkdir -p "$VM_CACHE"
  free=$(df -Pk "$VM_CACHE" | awk 'NR==2 {print int($4 / 1048576)}')
  [ "$free" -ge 8 ] || { echo "only $free GiB free in $VM_CACHE (8 needed)"; return 1; }
  mem=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
  [ "$mem" -ge $((VM_MEM + 1024)) ] || { echo "only $mem MiB of memory available ($((VM_MEM + 1024)) needed)"; return 1; }
}

# The accelerator: KVM only where it runs a stock kernel (not kvm-pvm).
vm_accel() {
  if [ -n "${VM_ACCEL:-}" ]; then echo "$VM_ACCEL"; return; fi
  if [ -w /dev/kvm ] && grep -qE 'vmx|svm' /proc/cpuinfo && ! grep -q '^kvm_pvm ' /proc/modules 2>/dev/null; then
    echo kvm
  else
    echo tcg,thread=multi
  fi
}

# The static tool with fault points (the shipped build has none).
vm_binary() {
  local t0; t0=$(vm_now)
  # A first build starts from the static release build's dependencies
  # (scripts/build-static.sh: the same target and RUSTFLAGS; build scripts
  # and proc macros are in target/release): only this crate is compiled
  # then (measured: 44 s instead of about 9 min from scratch).
  if [ ! -e "$vm_proj/target/vm/x86_64-unknown-linux-gnu" ] && [ -d "$vm_proj/target/x86_64-unknown-linux-gnu" ]; then
    mkdir -p "$vm_proj/target/vm"
    cp -a "$vm_proj/target/x86_64-unknown-linux-gnu" "$vm_proj/target/vm/"
    [ ! -d "$vm_proj/target/release" ] || cp -a "$vm_proj/target/release" "$vm_proj/target/vm/"
  fi
  (cd "$vm_proj" && RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release \
    --target x86_64-unknown-linux-gnu --features fault-injection --target-dir target/vm) >&2 \
    || vm_die "cargo build of the static fault-injection binary failed"
  VM_BIN=$vm_proj/target/vm/x86_64-unknown-linux-gnu/release/upgrade-recovery
  file -b "$VM_BIN" | grep -q 'static' || vm_die "$VM_BIN is not static"
  vm_log "binary: $(vm_took "$t0")"
}

# Base and image, each cached by a hash of its inputs. Sets VM_IMG.
vm_build() {
  vm_deps
  vm_binary
  local bkey ikey t0
  bkey=$(sha256sum "$vm_here/base.sh" | cut -c1-16)
  local base=$VM_CACHE/base-$bkey
  if [ ! -e "$base/done" ]; then
    t0=$(vm_now); mkdir -p "$base"
    "$vm_here/base.sh" "$base" >&2 || vm_die "base build failed (logs in $base)"
    touch "$base/done"; vm_log "base: built in $(vm_took "$t0") ($base)"
  else
    vm_log "base: cached ($base)"
  fi
  ikey=$( { echo "$bkey"; cat "$vm_here/image.sh" "$vm_here/guest/"* "$vm_proj/scripts/shims/"{lib.sh,bootfs.sh,sandbox_ostree.py,crictl,crio,oc,rpm-ostree} \
    "$vm_proj/scripts/sandbox.sh" "$vm_proj/packaging/upgrade-recovery-resume.service" "$VM_BIN"; } | sha256sum | cut -c1-16)
  VM_IMG=$VM_CACHE/img-$ikey
  if [ ! -e "$VM_IMG/done" ]; then
    t0=$(vm_now); mkdir -p "$VM_IMG"
    "$vm_here/image.sh" "$base" "$VM_BIN" "$VM_IMG" >&2 || vm_die "image build failed"
    touch "$VM_IMG/done"; vm_log "image: built in $(vm_took "$t0") ($VM_IMG)"
  else
    vm_log "image: cached ($VM_IMG)"
  fi
  VM_IKEY=$ikey
  touch "$VM_IMG/used"
  # Old images of other inputs (and their checkpoints): beyond the newest
  # three, those no run used for two days (another worktree may share the
  # cache and be running on one).
  local d k
  for d in $(ls -dt "$VM_CACHE"/img-* 2>/dev/null | tail -n +4); do
    [ -n "$(find "$d" -maxdepth 1 \( -name used -o -name 'done' \) -mmin -2880)" ] && continue
    k=${d##*/img-}; rm -rf "$d" "$VM_CACHE"/ck-"$k"-*
  done
}

# A new VM over the image (or over a checkpoint VM's disks).
vm_new() { # $1 run dir, [$2 checkpoint run dir]
  local r=$1 from=${2:-}
  mkdir -p "$r/share/q"
  if [ -n "$from" ]; then
    qemu-img create -q -f qcow2 -F qcow2 -b "$from/root.qcow2" "$r/root.qcow2"
    cp --sparse=always "$from/boot.img" "$r/boot.img"
  else
    qemu-img create -q -f qcow2 -F raw -b "$VM_IMG/root.img" "$r/root.qcow2"
    cp --sparse=always "$VM_IMG/boot.img" "$r/boot.img"
  fi
  echo 0 > "$r/boots"; echo 0 > "$r/cmds"
}

# The BLS entries on the boot disk, as a boot loader reads them (without
# replaying the journal, as GRUB does): "version<TAB>file" lines, the
# default (highest version) first.
vm_entries() { # $1 run dir
  local img=$1/boot.img dir f
  dir=$(debugfs -R 'stat /loader' "$img" 2>/dev/null | sed -n 's/^Fast link dest: "\(.*\)"/\1/p')
  [ -n "$dir" ] || dir=loader
  for f in $(debugfs -R "ls -p /$dir/entries" "$img" 2>/dev/null | awk -F/ '$6 ~ /\.conf$/ {print $6}'); do
    printf '%s\t%s\n' "$(debugfs -R "cat /$dir/entries/$f" "$img" 2>/dev/null | awk '$1=="version"{print $2}')" "/$dir/entries/$f"
  done | sort -t$'\t' -k1,1nr
}

vm_entry_field() { # $1 run dir $2 entry file $3 key
  debugfs -R "cat $2" "$1/boot.img" 2>/dev/null | awk -v k="$3" '$1==k {sub("^" k "[ \t]+", ""); print; exit}'
}

vm_dump_boot() { # $1 run dir $2 path in the entry $3 out
  local p=$2
  debugfs -R "dump $p $3" "$1/boot.img" >/dev/null 2>&1
  if [ ! -s "$3" ]; then p=${p#/boot}; debugfs -R "dump $p $3" "$1/boot.img" >/dev/null 2>&1; fi
  [ -s "$3" ] || vm_die "cannot read $2 from the boot disk"
}

# Boot entry INDEX (0: the default), as a BLS boot loader would; -no-reboot:
# a reboot inside ends qemu, and the host starts it again with the entry of
# that moment.
vm_start() { # $1 run dir [$2 entry index]
  local r=$1 idx=${2:-0} e
  e=$(vm_entries "$r" | sed -n "$((idx + 1))p" | cut -f2)
  [ -n "$e" ] || vm_die "no boot entry $idx on $r/boot.img"
  vm_dump_boot "$r" "$(vm_entry_field "$r" "$e" linux)" "$r/vmlinuz"
  vm_dump_boot "$r" "$(vm_entry_field "$r" "$e" initrd)" "$r/initrd"
  vm_entry_field "$r" "$e" options > "$r/cmdline"
  vm_qemu "$r" "$(vm_entry_field "$r" "$e" title)"
}

# qemu on the run dir's disks, kernel, initrd and cmdline; extra arguments
# (-incoming) after. A QMP socket (qmp.sock) for stop/migrate/quit.
vm_qemu() { # $1 run dir $2 title [qemu args...]
  local r=$1 title=$2 n; shift 2
  n=$(( $(cat "$r/boots") + 1 )); echo "$n" > "$r/boots"
  : > "$r/ctl.$n.log"
  echo "$title" > "$r/entry.$n"
  rm -f "$r/qmp.sock"
  qemu-system-x86_64 -accel "$(vm_accel)" -m "$VM_MEM" -smp "$VM_SMP" -nodefaults -display none -no-reboot \
    -chardev "file,id=c0,path=$r/console.$n.log" -serial chardev:c0 \
    -chardev "file,id=c1,path=$r/ctl.$n.log" -serial chardev:c1 \
    -kernel "$r/vmlinuz" -initrd "$r/initrd" -append "$(cat "$r/cmdline")" \
    -drive "file=$r/root.qcow2,if=virtio,format=qcow2,cache=none,aio=threads" \
    -drive "file=$r/boot.img,if=virtio,format=raw,cache=none,aio=threads" \
    -virtfs "local,path=$r/share,mount_tag=host,security_model=none" \
    -qmp "unix:$r/qmp.sock,server=on,wait=off" "$@" \
    > "$r/qemu.$n.log" 2>&1 &
  echo $! > "$r/qemu.pid"
  VM_LIVE="${VM_LIVE:-} $r"
  VM_BOOT_T0=$(vm_now)
}

# QMP commands (JSON, one a line) to the run's qemu; prints each answer's
# "return" (or exits 1 on an "error").
vm_qmp() { # $1 run dir, commands on stdin
  python3 -c '
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
for _ in range(100):
    try:
        s.connect(sys.argv[1]); break
    except OSError:
        time.sleep(0.1)
f = s.makefile("rw")
json.loads(f.readline())
def ask(c):
    f.write(json.dumps(c) + "\n"); f.flush()
    while True:
        m = json.loads(f.readline())
        if "return" in m: return m["return"]
        if "error" in m: sys.exit("qmp: %s: %s" % (c["execute"], m["error"]["desc"]))
ask({"execute": "qmp_capabilities"})
for l in sys.stdin:
    if l.strip(): print(json.dumps(ask(json.loads(l))))
' "$1/qmp.sock"
}

vm_running() { local p; p=$(cat "$1/qemu.pid" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }

# Wait for a marker line on the control port of this boot. 0 found, 1 qemu
# exited, 2 timed out, 3 the tool reached its fault point (the power is cut).
vm_wait() { # $1 run dir $2 ERE $3 timeout s
  local r=$1 re=$2 end=$(( $(date +%s) + $3 )) n l
  n=$(cat "$r/boots")
  while [ "$(date +%s)" -lt "$end" ]; do
    l=$(tr -d '\r' < "$r/ctl.$n.log" | grep -m1 -E "$re") && { VM_MARK=$l; return 0; }
    l=$(tr -d '\r' < "$r/ctl.$n.log" | grep -m1 -E "^CUT ") && { VM_CUT=${l#CUT }; vm_cut "$r"; return 3; }
    vm_running "$r" || { sleep 0.2; VM_MARK=$(tr -d '\r' < "$r/ctl.$n.log" | grep -m1 -E "$re") && return 0; return 1; }
    sleep 0.2
  done
  return 2
}

# A boot that hangs before the agent (TCG on an overloaded host) is cut and
# started again once, as an admin power-cycles a hung node; counted in
# VM_HUNG_BOOTS, apart from the tool's results.
VM_HUNG_BOOTS=0
vm_boot() { # $1 run dir [$2 entry]: start and wait for the agent
  vm_start "$@"
  if ! vm_wait "$1" '^BOOT ' "$VM_TIMEOUT_BOOT"; then
    VM_HUNG_BOOTS=$((VM_HUNG_BOOTS + 1))
    vm_log "boot $(cat "$1/boots") hung before the agent ($(vm_took "$VM_BOOT_T0")): power-cycling once"
    vm_cut "$1"; vm_start "$@"
    vm_wait "$1" '^BOOT ' "$VM_TIMEOUT_BOOT" || { tail -30 "$1/console.$(cat "$1/boots").log" >&2; vm_die "no BOOT marker from boot $(cat "$1/boots") (console above)"; }
  fi
  vm_log "boot $(cat "$1/boots") ($(cat "$1/entry.$(cat "$1/boots")")): $(vm_took "$VM_BOOT_T0") to the agent, ${VM_MARK#BOOT }"
}

# The power cut: SIGKILL of qemu; the disks have cache=none, so what the
# guest had not flushed is lost as on a real node.
# A qemu this shell did not start (another soak group's subshell did) is not
# its child: `wait` returns at once, so wait until it is gone (its disks'
# locks with it) before a new qemu opens them.
vm_cut() {
  local p i; p=$(cat "$1/qemu.pid"); kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
}

# Run a script in the guest as root; its stdout/stderr go to ours (stderr
# also to $r/last.err). Returns its exit code, or 250 qemu exited,
# 251 timed out, 252 the power was cut at a fault point (VM_CUT names it).
vm_exec() { # $1 run dir $2 script [$3 timeout s]
  local r=$1 n rc
  n=$(( $(cat "$r/cmds") + 1 )); echo "$n" > "$r/cmds"
  printf '%s\n' "$2" > "$r/share/q/.$n.tmp"; mv "$r/share/q/.$n.tmp" "$r/share/q/$n.sh"
  vm_wait "$r" "^RC $n " "${3:-1800}"; rc=$?
  cat "$r/share/q/$n.out" 2>/dev/null; cat "$r/share/q/$n.err" 2>/dev/null | tee "$r/last.err" >&2
  case $rc in
    0) return "$(echo "$VM_MARK" | awk '{print $3}')" ;;
    1) return 250 ;; 2) return 251 ;; 3) return 252 ;;
  esac
}

# Reboot from inside (systemctl reboot), then boot the default entry.
vm_reboot() { # $1 run dir [$2 entry]
  local r=$1 t0; t0=$(vm_now)
  printf 'systemctl reboot\n' > "$r/share/q/reboot.$(cat "$r/boots").sh"
  vm_wait_exit "$r" || vm_die "the guest did not reboot"
  vm_log "reboot: down in $(vm_took "$t0")"
  vm_boot "$r" "${2:-0}"
}

vm_wait_exit() { # $1 run dir: qemu exits (the guest rebooted or powered off)
  local end=$(( $(date +%s) + VM_TIMEOUT_BOOT ))
  while vm_running "$1"; do [ "$(date +%s)" -lt "$end" ] || return 1; sleep 0.3; done
}

# Save the running guest's state to $1/state and end qemu: the run dir's
# disks and that file are then a checkpoint a VM restarts from in seconds,
# without a boot (vm_restore). QEMU refuses to migrate while the guest has
# the 9p share mounted: the agent unmounts it first (and mounts it again
# only after a pause, in which the VM is stopped). 1: not saved (the guest
# runs on; the caller powers it off instead).
vm_save() { # $1 run dir
  local r=$1 t0 st i
  t0=$(vm_now)
  : > "$r/share/unmount"
  vm_wait "$r" '^(UNMOUNTED|ERROR)' 300 && [ "$VM_MARK" = UNMOUNTED ] || { vm_log "save: the agent did not unmount the share"; return 1; }
  printf '%s\n' '{"execute":"stop"}' \
    '{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":8589934592}}' \
    "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat > $r/state\"}}" | vm_qmp "$r" >/dev/null \
    || { vm_log "save: migrate refused"; echo '{"execute":"cont"}' | vm_qmp "$r" >/dev/null; return 1; }
  for i in $(seq 600); do
    st=$(echo '{"execute":"query-migrate"}' | vm_qmp "$r" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status",""))')
    case $st in completed|failed|cancelled) break ;; esac
    sleep 0.5
  done
  if [ "$st" != completed ]; then
    vm_log "save: migration $st"; rm -f "$r/state"; echo '{"execute":"cont"}' | vm_qmp "$r" >/dev/null; return 1
  fi
  echo '{"execute":"quit"}' | vm_qmp "$r" >/dev/null 2>&1 || true
  vm_wait_exit "$r" || vm_cut "$r"
  vm_log "save: $(du -h "$r/state" | cut -f1) of state in $(vm_took "$t0")"
}

# Start run dir $1 (made by vm_new from checkpoint $2) from the checkpoint's
# saved state: the guest runs on from where it was saved, on this run's
# disks (overlays of the checkpoint's), and mounts this run's share.
vm_restore() { # $1 run dir $2 checkpoint dir
  local r=$1 ck=$2
  cp "$ck/vmlinuz" "$ck/initrd" "$ck/cmdline" "$r/"
  vm_qemu "$r" "$(cat "$ck/entry.$(cat "$ck/boots")") (restored)" -incoming "exec:cat $ck/state"
  # It was saved stopped: run it once the state is in.
  local i st
  for i in $(seq 600); do
    st=$(echo '{"execute":"query-migrate"}' | vm_qmp "$r" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status",""))' 2>/dev/null)
    [ "$st" = completed ] && break
    [ "$st" = failed ] && vm_die "qemu could not load $ck/state (qemu.$(cat "$r/boots").log)"
    sleep 0.2
  done
  echo '{"execute":"cont"}' | vm_qmp "$r" >/dev/null
  vm_wait "$r" '^MOUNTED ' 600 || vm_die "the VM restored from $ck/state did not mount its share (ctl.$(cat "$r/boots").log)"
  vm_log "restore: $(vm_took "$VM_BOOT_T0") to the agent (no boot: saved state)"
}

vm_stop() { vm_running "$1" && vm_cut "$1"; return 0; }
# On exit: no qemu of ours is left running.
vm_stop_all() { local d; for d in ${VM_LIVE:-}; do vm_stop "$d"; done; }
