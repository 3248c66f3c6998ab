#!/usr/bin/env bash
# The lane's steps inside the guest (the host puts this file on the 9p
# share; scripts/vm/lane.sh runs `bash /run/host/steps.sh STEP`).
set -euo pipefail
certs=/etc/kubernetes/static-pod-resources/etcd-certs
ectl() {
  ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --command-timeout=20s \
    --cacert=$certs/configmaps/etcd-serving-ca/ca-bundle.crt \
    --cert=$certs/secrets/etcd-all-certs/etcd-peer-sno.crt \
    --key=$certs/secrets/etcd-all-certs/etcd-peer-sno.key "$@"
}
# etcd answering: after a boot the node's services start it (the shims'
# reconcile loop), which under a loaded host's TCG takes minutes (seen: a
# put 47 s after the boot failed with "context deadline exceeded").
etcd_wait() { for _ in $(seq 300); do ectl endpoint health >/dev/null 2>&1 && return; sleep 1; done; echo "etcd did not answer in 300 s" >&2; return 1; }
before=/var/lib/vmcheck/before
# The trees the recovery restores, and what the oracle leaves out of /etc:
# the files the sandbox tests leave out (tests/procedure.rs ETC_EXCLUDES:
# tmpfiles-managed, and the manifests the etcd restore rewrites).
trees="etc:/etc local:/var/usrlocal kubelet:/var/lib/kubelet"
etc_ex=(--exclude=/cni/multus/certs --exclude=/kubernetes/cni/net.d --exclude=/sandbox-runtime --exclude=/.updated --exclude=/kubernetes/manifests)
# What real systemd and a real boot change after the restore, which the
# sandbox's shims do not: the cluster phase's `systemctl enable kubelet`
# makes the unit's link anew (same target, new time; checked below), the
# auto-resume unit's install and removal touch /etc/systemd/system's time,
# and the kubelet's pod volume is a new tmpfs each boot (a mount point: the
# tool does not cross it; its root's time is the new mount's).
real_systemd() { # EREs of rsync -i lines
  case $1 in
    etc) printf '%s\n' '^\.d\.\.t\.{6} systemd/system/(multi-user\.target\.wants/)?$' \
      '^cLc\.t\.{6} systemd/system/multi-user\.target\.wants/kubelet\.service -> ' ;;
    kubelet) echo '^\.d\.\.t\.{6} pods/4f2a9c1e-1111-4a3b-9c2d-000000000001/volumes/kubernetes\.io~empty-dir/cache/$' ;;
    *) echo '^$' ;;
  esac
}
booted_version() { sed -n 's/^VERSION="\(.*\)"/\1/p' /usr/lib/os-release; }
# Every xattr and ACL, symlinks not followed, mount points below the top not
# crossed (as tests/common meta_dump).
xattrs() {
  (cd "$1" && find . -xdev -print0 | sort -z | xargs -0 getfattr -h -d -m - -e hex 2>/dev/null | grep -v '^$' || true
   cd "$1" && find . -xdev ! -type l -print0 | sort -z | xargs -0 getfacl -P -n 2>/dev/null || true)
}

case $1 in
  setup) # the cluster's first start: etcd up and its keys written
    for u in kubelet crio; do
      for _ in $(seq 300); do systemctl is-active -q $u && break; sleep 1; done
      systemctl is-active -q $u || { echo "$u not active after 300 s" >&2; exit 1; }
    done
    # etcd's first start makes its data dir, with kubelet and crio stopped (their
    # reconcile loops run etcd only once the data dir is there).
    systemctl stop kubelet crio
    ( . /var/lib/vmshim/ctl/lib/lib.sh; etcd_start )
    for i in $(seq 1 20); do ectl put "/kubernetes.io/configmaps/openshift-config/vm-$i" "value-$i" >/dev/null; done
    ( . /var/lib/vmshim/ctl/lib/lib.sh; etcd_stop )
    systemctl start crio kubelet
    etcd_wait
    echo "setup: etcd up, $(ectl get '' --prefix --keys-only | grep -c .) keys" ;;
  snapshot) # what the node was at backup time: the oracle's side
    rm -rf "$before"; mkdir -p "$before"
    for t in $trees; do
      n=${t%%:*} p=${t#*:}
      rsync -aAXHx --numeric-ids "$p/" "$before/$n/"
      xattrs "$p" > "$before/$n.xattrs"
    done
    ectl get '' --prefix > "$before/keys"
    booted_version > "$before/version"
    echo "snapshot: $(du -sh "$before" | cut -f1), $(grep -c . "$before/keys") lines of etcd keys" ;;
  upgrade-deploy) # the upgrade's new OS, the new default (libostree writes the read-only /boot from its own mount namespace)
    ostree admin deploy --os=rhcos rhcos/417.94.2
    ostree admin status ;;
  upgrade-changes) # what a failed upgrade leaves behind
    echo upgraded >> /etc/hostname; echo new > /etc/new-in-upgrade
    echo tool > /var/usrlocal/bin/new-tool
    echo '{"kind":"X"}' > /var/lib/kubelet/config.json
    rm -f /var/lib/kubelet/pki/kubelet-client-current.pem
    etcd_wait
    ectl put /upgrade/key v >/dev/null
    ectl del /kubernetes.io/configmaps/openshift-config/vm-3 >/dev/null
    sync; echo "upgrade-changes: /etc, /usr/local, kubelet and etcd changed" ;;
  booted) # assert the booted OS version
    v=$(booted_version); [ "$v" = "$2" ] || { echo "booted $v, expected $2" >&2; ostree admin status >&2; exit 1; }
    grep -q ' ostree=' /proc/cmdline && [ -e /run/ostree-booted ] || { echo "not booted through ostree" >&2; exit 1; }
    echo "booted: $v ($(grep -o 'ostree=[^ ]*' /proc/cmdline))" ;;
  state) # status's state and next command
    upgrade-recovery status --output json | jq -r '.state.state + "\t" + .next_command' ;;
  check) # the end state against the backup
    fail=0
    for t in $trees; do
      n=${t%%:*} p=${t#*:} ex=(-x)
      [ "$n" = etc ] && ex=("${etc_ex[@]}")
      d=$(rsync -naAXHc --delete --numeric-ids --itemize-changes "${ex[@]}" "$before/$n/" "$p/" | grep -vE -f <(real_systemd "$n") || true)
      [ -z "$d" ] || { echo "check: $p differs from the backup:"; echo "$d" | head -20; fail=1; }
      [ "$n" = etc ] || diff "$before/$n.xattrs" <(xattrs "$p") > /tmp/x.diff || { echo "check: $p xattrs/ACLs differ:"; head -20 /tmp/x.diff; fail=1; }
    done
    l=systemd/system/multi-user.target.wants/kubelet.service
    # systemctl enable on Debian links /lib/systemd/... (merged /usr): the same file.
    [ "$(readlink -f "$(readlink "$before/etc/$l")")" = "$(readlink -f "/etc/$l")" ] || { echo "check: /etc/$l is not the backup's unit"; fail=1; }
    etcd_wait || true
    ectl get '' --prefix > /tmp/keys.now || { echo "check: etcd does not answer"; fail=1; }
    cmp -s "$before/keys" /tmp/keys.now || { echo "check: etcd keys differ:"; diff "$before/keys" /tmp/keys.now | head; fail=1; }
    v=$(booted_version); [ "$v" = "$(cat "$before/version")" ] || { echo "check: booted $v"; fail=1; }
    e=$(systemctl is-enabled kubelet || true); [ "$e" = enabled ] || { echo "check: kubelet is $e"; fail=1; }
    a=$(systemctl is-active kubelet || true); [ "$a" = active ] || { echo "check: kubelet is $a"; fail=1; }
    [ ! -e /var/recovery/journal.json ] || { echo "check: journal still there"; fail=1; }
    [ ! -e /etc/systemd/system/upgrade-recovery-resume.service ] || { echo "check: auto-resume unit still installed"; fail=1; }
    s=$(upgrade-recovery status --output json | jq -r .state.state); [ "$s" = recovery-completed ] || { echo "check: status says $s"; fail=1; }
    ostree admin status
    echo "kubelet: $e, $a; status: $s"
    [ $fail = 0 ] && echo "check: OK" ;
    exit $fail ;;
  *) echo "steps.sh: unknown step $1" >&2; exit 2 ;;
esac
