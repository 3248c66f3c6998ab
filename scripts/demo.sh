#!/usr/bin/env bash
# The demo: build the tool, make a sandbox node, back it up, fail an upgrade,
# and recover it: OS rollback, restore, reboot, resume.
# Leaves the sandbox for you to look at unless KEEP=0; prints how to remove it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (the sandbox node mounts and sets xattrs)" >&2; exit 1; }
scripts/install-deps.sh >/dev/null
scripts/build-static.sh
bin=$PWD/target/x86_64-unknown-linux-gnu/release/upgrade-recovery
sb=$(mktemp -d /var/tmp/upgrade-recovery-demo-XXXXXX)
trap 'if [ "${KEEP:-1}" = 0 ]; then scripts/sandbox.sh teardown "$sb"; else echo; echo "sandbox kept: $sb (remove: scripts/sandbox.sh teardown $sb)"; fi' EXIT
scripts/sandbox.sh create "$sb"
eval "$(scripts/sandbox.sh env "$sb")"
root=$sb/root
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

ur() { echo "+ upgrade-recovery $*"; "$bin" --root "$root" "$@"; }

step "the node before the upgrade"
ur status

step "the hub's backup Job (here: backup on the node; tests run launchBackup in a jail)"
ur backup --min-free 1G
ur verify

step "a failed upgrade: new OS deployment, changed /etc, /usr/local, kubelet, etcd"
echo "upgraded" >> "$root/etc/hostname"
echo "new tool" > "$root/var/usrlocal/bin/upgrade-leftover"
rm -f "$root/var/lib/kubelet/config.json"
. "$sb/ctl/state/ports"; c=$root/etc/kubernetes/static-pod-resources/etcd-certs
ETCDCTL_API=3 etcdctl --endpoints="https://127.0.0.1:$CLIENT_PORT" --cacert="$c/configmaps/etcd-serving-ca/ca-bundle.crt" \
  --cert="$c/secrets/etcd-all-certs/etcd-peer-sno.crt" --key="$c/secrets/etcd-all-certs/etcd-peer-sno.key" put /upgrade/half-done yes >/dev/null
scripts/sandbox.sh upgrade-os "$sb" 417.94.202411010000-0
scripts/sandbox.sh reboot "$sb"
ur status

step "recovery: the OS first (the decision table), then reboot"
ur rollback --dry-run
ur rollback --reboot
scripts/sandbox.sh reboot "$sb"

step "recovery: phase files"
ur restore --dry-run | head -16
ur restore --poll-interval 500
ur status

step "reboot, then phases cluster and redeploy"
scripts/sandbox.sh reboot "$sb"
ur restore --resume --poll-interval 500
ur status
echo
echo "hostname: $(cat "$root/etc/hostname"); leftover gone: $([ -e "$root/var/usrlocal/bin/upgrade-leftover" ] && echo no || echo yes); etcd key /upgrade/half-done: $(ETCDCTL_API=3 etcdctl --endpoints="https://127.0.0.1:$CLIENT_PORT" --cacert="$c/configmaps/etcd-serving-ca/ca-bundle.crt" --cert="$c/secrets/etcd-all-certs/etcd-peer-sno.crt" --key="$c/secrets/etcd-all-certs/etcd-peer-sno.key" get /upgrade/half-done --print-value-only | grep -c . || true) values"
