#!/usr/bin/env bash
# The sandbox node: a throwaway single-node-OpenShift-like root in a directory.
#
#   scripts/sandbox.sh create [--profile default|minimal|rhcos] DIR
#                                     build DIR/root (the node) and DIR/ctl (shims, state)
#   scripts/sandbox.sh env DIR        print the exports that put the shims on PATH
#   scripts/sandbox.sh reboot DIR [INDEX]
#                                     new boot id, default deployment booted (or deployment
#                                     INDEX, as when its boot menu entry is chosen), services as enabled
#   scripts/sandbox.sh teardown DIR   stop etcd, unmount, remove DIR
#   scripts/sandbox.sh images DIR     build two small images into the node's container
#                                     storage; crictl then reports them for its containers
#   scripts/sandbox.sh etcd-scripts DIR
#                                     install the stand-ins of the node's
#                                     cluster-backup.sh and cluster-restore.sh
#   scripts/sandbox.sh upgrade-os DIR VERSION [STATEROOT]
#                                     commit and deploy a new OS (the new default;
#                                     older deployments are retained)
#   scripts/sandbox.sh cluster-upgrade DIR VERSION Completed|Partial
#                                     record a cluster upgrade in the ClusterVersion
#                                     the oc shim serves: a new status.history entry,
#                                     newest first, started now (Partial: not completed)
#   scripts/sandbox.sh stage-os DIR VERSION
#                                     commit VERSION and stage it, as the MCO's
#                                     update leaves a node until its reboot
#   scripts/sandbox.sh job DIR [ARGS...]
#                                     the hub's backup Job on the node: TALM's jail
#                                     (/host with the Job's hostPath mounts, in a
#                                     mount namespace of its own), then
#                                     `launchBackup --host-dir /host ARGS`; the binary
#                                     is $UPGRADE_RECOVERY_BIN (default: the static
#                                     build in target/, else upgrade-recovery on PATH),
#                                     the jail's dir $SANDBOX_JAIL (default DIR/job-host)
#
# The node has a real ostree sysroot with two deployments, a real etcd with TLS
# on free loopback ports, /etc, /usr/local (-> var/usrlocal), /var/lib/kubelet
# with every kind of file, and PATH shims for systemctl, crictl, crio,
# setenforce, getenforce, oc and rpm-ostree (see scripts/shims/).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# shellcheck source=shims/bootfs.sh
. "$here/shims/bootfs.sh"

die() { echo "sandbox: $*" >&2; exit 1; }
need() { for t in "$@"; do command -v "$t" >/dev/null || die "missing program '$t' (run scripts/install-deps.sh)"; done; }

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

make_commit() { # $1 sysroot $2 version
  local t; t=$(mktemp -d)
  mkdir -p "$t/usr/lib/modules/5.14.0-427.el9.x86_64" "$t/var" "$t/usr/etc" "$t/usr/bin"
  echo "kernel $2" > "$t/usr/lib/modules/5.14.0-427.el9.x86_64/vmlinuz"
  echo "initramfs $2" > "$t/usr/lib/modules/5.14.0-427.el9.x86_64/initramfs.img"
  printf 'NAME="Red Hat Enterprise Linux CoreOS"\nID="rhcos"\nVERSION="%s"\nPRETTY_NAME="Red Hat Enterprise Linux CoreOS %s"\n' "$2" "$2" > "$t/usr/lib/os-release"
  echo "os $2" > "$t/usr/bin/os-marker"
  ostree --repo="$1/ostree/repo" commit --branch="rhcos/$2" --tree=dir="$t" \
    --add-metadata-string=version="$2" >/dev/null
  rm -rf "$t"
}

make_certs() { # $1 dir for configmaps/secrets layout
  local d=$1 tmp; tmp=$(mktemp -d)
  mkdir -p "$d/configmaps/etcd-serving-ca" "$d/secrets/etcd-all-certs"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=etcd-signer" \
    -keyout "$tmp/ca.key" -out "$d/configmaps/etcd-serving-ca/ca-bundle.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=system:etcd-peer:sno" \
    -keyout "$d/secrets/etcd-all-certs/etcd-peer-sno.key" -out "$tmp/peer.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > "$tmp/ext"
  openssl x509 -req -in "$tmp/peer.csr" -CA "$d/configmaps/etcd-serving-ca/ca-bundle.crt" \
    -CAkey "$tmp/ca.key" -CAcreateserial -days 3650 -extfile "$tmp/ext" \
    -out "$d/secrets/etcd-all-certs/etcd-peer-sno.crt" 2>/dev/null
  chmod 0600 "$d/secrets/etcd-all-certs/etcd-peer-sno.key"
  rm -rf "$tmp"
}

static_pod() { # $1 root $2 name $3 live revision $4 other revisions...
  local r=$1 n=$2 live=$3; shift 3
  for rev in "$live" "$@"; do
    local p=$r/etc/kubernetes/static-pod-resources/$n-pod-$rev
    mkdir -p "$p/configmaps/config" "$p/secrets/serving-cert"
    echo "{\"revision\": $rev}" > "$p/configmaps/config/config.yaml"
    echo "revision $rev" > "$p/secrets/serving-cert/tls.crt"
    cat > "$p/$n-pod.yaml" <<POD
apiVersion: v1
kind: Pod
metadata: {name: $n, namespace: openshift-$n, labels: {revision: "$rev"}}
spec:
  volumes:
  - {name: resource-dir, hostPath: {path: /etc/kubernetes/static-pod-resources/$n-pod-$rev}}
POD
  done
  cp "$r/etc/kubernetes/static-pod-resources/$n-pod-$live/$n-pod.yaml" "$r/etc/kubernetes/manifests/$n-pod.yaml"
}

make_etc() { # $1 root
  local r=$1
  mkdir -p "$r/etc/tmpfiles.d" "$r/etc/kubernetes/manifests" "$r/etc/machine-config-daemon" \
    "$r/etc/selinux" "$r/etc/systemd/system/multi-user.target.wants" "$r/etc/containers"
  cat > "$r/etc/tmpfiles.d/cleanup-cni.conf" <<'T'
# Clean up the CNI state on boot
r /etc/cni/multus/certs - - - - -
D /etc/kubernetes/cni/net.d 0755 root root - -
d /run/multus 0755 root root - -
T
  cat > "$r/etc/tmpfiles.d/sandbox.conf" <<'T'
d /etc/sandbox-runtime 0755 root root - -
L /var/run/x - - - - /run/x
T
  mkdir -p "$r/etc/cni/multus/certs" "$r/etc/kubernetes/cni/net.d"
  echo cert > "$r/etc/cni/multus/certs/multus.pem"
  echo '{"cniVersion":"0.3.1"}' > "$r/etc/kubernetes/cni/net.d/00-multus.conf"
  # No /etc/selinux/config: with one, libostree (ostree admin pin) loads the
  # SELinux policy it names, which a sandbox cannot have. The boot-time mode
  # lives in the sandbox state instead (ctl/state/selinux-boot).
  printf 'root:x:0:0:root:/root:/bin/bash\n' > "$r/etc/passwd"
  printf 'root:x:0:\n' > "$r/etc/group"
  echo sno > "$r/etc/hostname"
  printf 'apiVersion: v1\nkind: Config\nclusters: []\n' > "$r/etc/kubernetes/kubelet.conf"
  ln -s /usr/lib/systemd/system/kubelet.service "$r/etc/systemd/system/multi-user.target.wants/kubelet.service"
  # The units the node ships (the systemctl shim refuses units without a file).
  mkdir -p "$r/usr/lib/systemd/system"
  printf '[Unit]\nDescription=Kubernetes Kubelet\n[Service]\nExecStart=/usr/bin/kubelet\n' > "$r/usr/lib/systemd/system/kubelet.service"
  printf '[Unit]\nDescription=Container Runtime Interface for OCI (CRI-O)\n[Service]\nExecStart=/usr/bin/crio\n' > "$r/usr/lib/systemd/system/crio.service"
  touch "$r/etc/.updated"
  # The node's container storage, vfs here (no overlay mounts in a sandbox).
  printf '[storage]\ndriver = "vfs"\ngraphroot = "/var/lib/containers/storage"\nrunroot = "/run/containers/storage"\n\n[storage.options]\nadditionalimagestores = []\n' > "$r/etc/containers/storage.conf"
  mkdir -p "$r/var/lib/containers/storage" "$r/run/containers/storage"
  # Static pods: several revisions on disk, the live one not always the newest.
  static_pod "$r" etcd 3 2 4
  static_pod "$r" kube-apiserver 7 6
  static_pod "$r" kube-controller-manager 5 4 6
  static_pod "$r" kube-scheduler 4
  mkdir -p "$r/etc/kubernetes/static-pod-resources/bin"
  echo '#!/bin/sh' > "$r/etc/kubernetes/static-pod-resources/bin/etcdctl"
  mkdir -p "$r/etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs"
  printf 'apiVersion: v1\nkind: Config\nusers: [{name: admin, user: {token: sandbox-token}}]\n' \
    > "$r/etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost.kubeconfig"
  # Machine-config managed files, inside and outside the three trees.
  mkdir -p "$r/opt/sandbox" "$r/var/lib/mco"
  echo 'extra=1' > "$r/opt/sandbox/tool.conf"
  echo 'mco state' > "$r/var/lib/mco/state.json"
  cat > "$r/etc/machine-config-daemon/currentconfig" <<'J'
{"apiVersion":"machineconfiguration.openshift.io/v1","kind":"MachineConfig",
 "metadata":{"name":"rendered-master-0123"},
 "spec":{"config":{"ignition":{"version":"3.2.0"},"storage":{"files":[
  {"path":"/etc/kubernetes/kubelet.conf","mode":420},
  {"path":"/usr/local/bin/configure-ovs.sh","mode":493},
  {"path":"/var/lib/kubelet/config.json","mode":384},
  {"path":"/opt/sandbox/tool.conf","mode":420},
  {"path":"/var/lib/mco/state.json","mode":420}
 ]}}}}
J
}

make_usrlocal() { # $1 root
  local r=$1
  mkdir -p "$r/var/usrlocal/bin" "$r/usr"
  ln -s ../var/usrlocal "$r/usr/local"
  printf '#!/bin/sh\necho configure ovs\n' > "$r/var/usrlocal/bin/configure-ovs.sh"
  printf '#!/bin/sh\necho recover\n' > "$r/var/usrlocal/bin/recover-kubeconfig.sh"
  chmod 0755 "$r/var/usrlocal/bin/"*
}

make_kubelet() { # $1 root
  local k=$1/var/lib/kubelet
  local p=$k/pods/4f2a9c1e-1111-4a3b-9c2d-000000000001
  mkdir -p "$p/volumes/kubernetes.io~empty-dir/cache" "$p/volumes/kubernetes.io~configmap/config/..2024_01_01" \
    "$p/containers/etcd" "$p/plugins" "$k/pki" "$k/device-plugins" "$k/plugins_registry" "$k/empty-dir"
  echo '{"kind":"KubeletConfiguration"}' > "$k/config.json"
  echo "cert" > "$k/pki/kubelet-client-2024.pem"
  ln -s kubelet-client-2024.pem "$k/pki/kubelet-client-current.pem"       # relative
  ln -s /etc/kubernetes/kubelet.conf "$k/kubeconfig-link"                  # absolute, inside the node
  ln -s /nonexistent/outside/node "$k/dangling-outside"                    # points outside
  echo 'data: 1' > "$p/volumes/kubernetes.io~configmap/config/..2024_01_01/data.yaml"
  ln -s ..2024_01_01 "$p/volumes/kubernetes.io~configmap/config/..data"
  ln -s ..data/data.yaml "$p/volumes/kubernetes.io~configmap/config/data.yaml"
  echo "log line" > "$p/containers/etcd/0"
  ln "$p/containers/etcd/0" "$p/containers/etcd/0.hardlink"               # hard link
  mkfifo "$k/device-plugins/kubelet.sock.fifo"
  truncate -s 64M "$k/sparse.img"; echo tail >> "$k/sparse.img"           # sparse
  printf 'x%.0s' $(seq 300) > "$k/plugins_registry/data"
  setfattr -n security.selinux -v "system_u:object_r:container_file_t:s0" "$p/containers/etcd/0"
  setfattr -n security.selinux -v "system_u:object_r:kubelet_var_lib_t:s0" "$k/config.json"
  setfattr -n user.sandbox -v "kept" "$k/config.json"
  setfacl -m u:1000:rx "$k/pki"
  setfacl -d -m g:1000:r "$k/pki"
  chown 1000:1000 "$k/plugins_registry/data"
  chmod 4750 "$k/plugins_registry/data"
  chmod 1777 "$k/empty-dir"
  # A pod volume is a mount of its own, as on a node.
  mount -t tmpfs -o size=4m tmpfs "$p/volumes/kubernetes.io~empty-dir/cache"
  echo "in a pod volume" > "$p/volumes/kubernetes.io~empty-dir/cache/volatile"
}

# The node's etcd scripts: cluster-backup.sh and cluster-restore.sh in
# /usr/local/bin, etcd-common-tools next to etcd.env, and the restore-etcd pod
# manifest the restore script installs (stand-ins, see scripts/shims/).
install_etcd_scripts() { # $1 root
  local r=$1 cm=$1/etc/kubernetes/static-pod-resources/etcd-certs/configmaps
  mkdir -p "$r/var/usrlocal/bin" "$cm/etcd-scripts" "$cm/restore-etcd-pod"
  install -m 0755 "$here/shims/cluster-backup.sh" "$here/shims/cluster-restore.sh" "$r/var/usrlocal/bin/"
  install -m 0644 "$here/shims/etcd-common-tools" "$cm/etcd-scripts/etcd-common-tools"
  cat > "$cm/restore-etcd-pod/pod.yaml" <<'POD'
apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: openshift-etcd
  # the restore pod's static uid (cluster-etcd-operator bindata/etcd/restore-pod.yaml)
  uid: 55aed6ab-58f5-4ae2-bf1c-54be36669b8a
  labels: {app: etcd, k8s-app: etcd, etcd: "true", revision: "3"}
spec:
  volumes:
  - {name: data-dir, hostPath: {path: /var/lib/etcd}}
  - {name: backup-dir, hostPath: {path: /var/lib/etcd-backup}}
POD
}

# Profiles: the sandbox made to disagree with us.
#   default  as the tests were written against.
#   minimal  none of the optional files and programs: no
#            /etc/containers/storage.conf, no machine-config-daemon/currentconfig,
#            no /etc/tmpfiles.d, no cluster-backup.sh/cluster-restore.sh, no
#            rpm-ostree, and /run/ostree-booted absent (as in the hub's Job).
#            (skopeo is the machine's own and stays on PATH.)
#   rhcos    what an RHCOS node has: the above files, rpm-ostree, the etcd
#            scripts (cluster-backup.sh, cluster-restore.sh, etcd-common-tools,
#            the restore-etcd pod) and /run/ostree-booted. The Job's exact
#            mounts are built by the tests (tests/profiles.rs).
apply_profile() { # $1 sandbox dir $2 profile
  local d=$1 r=$1/root
  echo "$2" > "$d/ctl/state/profile"
  case $2 in
    minimal)
      rm -f "$r/etc/containers/storage.conf" "$r/etc/machine-config-daemon/currentconfig" \
        "$r/run/ostree-booted" "$d/ctl/bin/rpm-ostree" \
        "$r/var/usrlocal/bin/cluster-backup.sh" "$r/var/usrlocal/bin/cluster-restore.sh"
      rm -rf "$r/etc/tmpfiles.d" ;;
    rhcos)
      install_etcd_scripts "$r"
      # /var a mount of its own, as ostree-prepare-root makes it (the
      # stateroot's var bind-mounted over the deployment's /var:
      # ostreedev/ostree src/switchroot/ostree-prepare-root.c): a rename
      # between /etc (or /usr) and /var fails with EXDEV there, as on a
      # node. --rbind keeps the mounts below /var (the kubelet's tmpfs).
      mount --rbind "$r/var" "$r/var" ;;
  esac
}

install_shims() { # $1 sandbox dir
  local c=$1/ctl
  mkdir -p "$c/bin" "$c/lib" "$c/state/active" "$c/state/enabled" "$c/state/oc"
  cp "$here/shims/lib.sh" "$here/shims/bootfs.sh" "$here/shims/sandbox_ostree.py" "$c/lib/"
  for s in systemctl crictl crio setenforce getenforce oc rpm-ostree; do
    install -m 0755 "$here/shims/$s" "$c/bin/$s"
  done
  touch "$c/calls.log"
}

boot() { # $1 sandbox dir, $2 deployment index (default 0): what a boot does to the sandbox's state
  local d=$1 st=$1/ctl/state
  # shellcheck source=/dev/null
  . "$d/ctl/lib/lib.sh"
  etcd_stop
  rm -f "$st/active/"* "$st/reboot-requested"
  : > "$st/containers"
  cat /proc/sys/kernel/random/uuid > "$d/root/proc/sys/kernel/random/boot_id"
  # /run is emptied by a boot. The sandbox has no ostree-finalize-staged: a
  # staged deployment is not finalized, its record goes with /run.
  if [ -f "$d/root/run/ostree/staged-deployment" ]; then
    rm -f "$d/root/run/ostree/staged-deployment" "$d/root/run/ostree/staged-deployment-locked"
    echo "sandbox: the staged deployment was not finalized (no ostree-finalize-staged here)" >&2
  fi
  # The default deployment (index 0) is what the bootloader boots; the
  # kernel gets its BLS entry's options, ostree= among them, as on a node.
  # Another index is a one-time choice in the boot menu.
  /usr/bin/python3 - "$d/root" "$d/root/proc/cmdline" "${2:-0}" > "$st/booted" <<'PY'
import sys, gi
gi.require_version("OSTree", "1.0")
from gi.repository import Gio, OSTree
s = OSTree.Sysroot.new(Gio.File.new_for_path(sys.argv[1])); s.load(None)
d = s.get_deployments()[int(sys.argv[3])]
print(d.get_osname(), d.get_csum(), d.get_deployserial())
opts = d.get_bootconfig().get("options") or ""
with open(sys.argv[2], "w") as f:
    f.write("BOOT_IMAGE=(hd0,gpt3)%s %s\n" % (d.get_bootconfig().get("linux") or "", opts))
PY
  cat "$st/selinux-boot" 2>/dev/null > "$st/selinux" || echo Enforcing > "$st/selinux"
  local u
  for u in "$st/enabled/"*; do [ -e "$u" ] && touch "$st/active/$(basename "$u")"; done
  reconcile
}

create() { # $1 dir $2 profile
  local d=$1
  need ostree etcd etcdctl openssl setfattr setfacl curl /usr/bin/python3 mkfs.ext4 unshare mountpoint
  /usr/bin/python3 -c 'import gi; gi.require_version("OSTree", "1.0")' 2>/dev/null \
    || die "libostree python bindings missing (run scripts/install-deps.sh)"
  [ "$(id -u)" -eq 0 ] || die "must run as root (mounts, xattrs, device nodes)"
  [ ! -e "$d/root" ] || die "$d/root exists already"
  mkdir -p "$d/root"
  d=$(cd "$d" && pwd)
  local r=$d/root
  install_shims "$d"
  mkdir -p "$r/run" "$r/proc/sys/kernel/random" "$r/var/lib/etcd" "$r/var/recovery" "$r/tmp"
  chmod 0700 "$r/var/lib/etcd"
  touch "$r/run/ostree-booted"
  # OS: a real sysroot with two deployments of rhcos, the newer one the default.
  # ostree works on the node root as its sysroot, as on the node and in
  # TALM's jail: /ostree -> sysroot/ostree, /boot the boot file system.
  mkdir -p "$r/sysroot"
  ostree admin init-fs "$r/sysroot" >/dev/null
  ln -s sysroot/ostree "$r/ostree"
  if [ "$2" = rhcos ]; then
    boot_fs "$d"
  else
    ln -s sysroot/boot "$r/boot"   # the default profile: /boot is /sysroot/boot
  fi
  ostree admin --sysroot="$r" os-init rhcos >/dev/null
  make_commit "$r/sysroot" 416.94.202405141654-0
  make_commit "$r/sysroot" 416.94.202406251923-0
  boot_rw "$r" ostree admin --sysroot="$r" deploy --os=rhcos rhcos/416.94.202405141654-0 >/dev/null
  boot_rw "$r" ostree admin --sysroot="$r" deploy --os=rhcos rhcos/416.94.202406251923-0 >/dev/null
  make_etc "$r"
  make_usrlocal "$r"
  make_kubelet "$r"
  # etcd: TLS certs where the node keeps them, and the node's etcd.env.
  make_certs "$r/etc/kubernetes/static-pod-resources/etcd-certs"
  local cp pp mp
  cp=$(free_port); pp=$(free_port); mp=$(free_port)
  [ "$cp" != "$pp" ] && [ "$pp" != "$mp" ] && [ "$cp" != "$mp" ] || { cp=$(free_port); pp=$(free_port); mp=$(free_port); }
  printf 'CLIENT_PORT=%s\nPEER_PORT=%s\nMETRICS_PORT=%s\n' "$cp" "$pp" "$mp" > "$d/ctl/state/ports"
  local envd=$r/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-scripts
  mkdir -p "$envd"
  cat > "$envd/etcd.env" <<ENV
export ALL_ETCD_ENDPOINTS="https://127.0.0.1:$cp"
export ETCDCTL_API="3"
export ETCDCTL_CACERT="/etc/kubernetes/static-pod-certs/configmaps/etcd-serving-ca/ca-bundle.crt"
export ETCDCTL_CERT="/etc/kubernetes/static-pod-certs/secrets/etcd-all-certs/etcd-peer-sno.crt"
export ETCDCTL_ENDPOINTS="https://127.0.0.1:$cp"
export ETCDCTL_KEY="/etc/kubernetes/static-pod-certs/secrets/etcd-all-certs/etcd-peer-sno.key"
export ETCD_DATA_DIR="/var/lib/etcd"
export ETCD_ELECTION_TIMEOUT="2500"
export ETCD_HEARTBEAT_INTERVAL="500"
export ETCD_IMAGE="quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:0000000000000000000000000000000000000000000000000000000000000000"
export ETCD_INITIAL_CLUSTER_STATE="existing"
export ETCD_QUOTA_BACKEND_BYTES="8589934592"
export NODE_sno_ETCD_NAME="sno"
export NODE_sno_ETCD_URL_HOST="127.0.0.1"
export NODE_sno_IP="127.0.0.1"
export NODE_sno_PEER_URL="https://127.0.0.1:$pp"
ENV
  for k in etcd kubeapiserver kubecontrollermanager kubescheduler; do echo "7 7" > "$d/ctl/state/oc/$k"; done
  # The ClusterVersion, as installed a day ago (openshift/api
  # config/v1/types_cluster_version.go: status.history newest first).
  local installed; installed=$(date -u -d '1 day ago' +%Y-%m-%dT%H:%M:%SZ)
  mkdir -p "$d/ctl/state/objects/clusterversions/_"
  jq -n --arg t "$installed" '{apiVersion: "config.openshift.io/v1", kind: "ClusterVersion",
    metadata: {name: "version"}, spec: {clusterID: "5f1d2a9e-3b7c-4d6a-9e2f-8a4b1c7d3e90", channel: "stable-4.16"},
    status: {desired: {version: "4.16.0"}, history: [{state: "Completed", startedTime: $t, completionTime: $t, version: "4.16.0", image: "quay.io/openshift-release-dev/ocp-release:4.16.0-x86_64", verified: false}]}}' \
    > "$d/ctl/state/objects/clusterversions/_/version.json"
  for u in kubelet.service crio.service; do touch "$d/ctl/state/enabled/$u"; done
  echo Enforcing > "$d/ctl/state/selinux-boot"
  # First boot: etcd starts empty; write the cluster's keys.
  mkdir -p "$r/var/lib/etcd/member"   # etcd's manifest + data dir: the shim starts it
  rmdir "$r/var/lib/etcd/member"
  ( boot "$d" ) || true
  if [ ! -f "$d/ctl/state/etcd.pid" ]; then
    # An empty data dir has no member/ yet: start once so etcd creates it.
    ( . "$d/ctl/lib/lib.sh"; etcd_start; add_container etcd )
  fi
  ( . "$d/ctl/lib/lib.sh"; reconcile )
  local ctl=(etcdctl --endpoints="https://127.0.0.1:$cp"
    --cacert="$r/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-serving-ca/ca-bundle.crt"
    --cert="$r/etc/kubernetes/static-pod-resources/etcd-certs/secrets/etcd-all-certs/etcd-peer-sno.crt"
    --key="$r/etc/kubernetes/static-pod-resources/etcd-certs/secrets/etcd-all-certs/etcd-peer-sno.key")
  for i in $(seq 1 20); do
    ETCDCTL_API=3 "${ctl[@]}" put "/kubernetes.io/configmaps/openshift-config/sandbox-$i" "value-$i" >/dev/null \
      || die "could not write etcd key over TLS on port $cp (see $d/ctl/etcd.log)"
  done
  echo "sandbox: node ready at $r (etcd on https://127.0.0.1:$cp)"
}

teardown() {
  local d=$1
  [ -d "$d" ] || return 0
  d=$(cd "$d" && pwd)
  if [ -f "$d/ctl/lib/lib.sh" ]; then ( . "$d/ctl/lib/lib.sh"; etcd_stop ) || true; fi
  # Unmount everything below the sandbox, deepest first; again while some
  # are left (rhcos: a mount below /var is there twice, one hidden by the
  # /var mount until that goes).
  local i
  for i in 1 2 3 4; do
    awk -v p="$d/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done
    awk -v p="$d/" 'index($2, p) == 1 {f=1} END {exit !f}' /proc/self/mounts || break
  done
  # The boot file system's loop device (rhcos): detached once unmounted
  # (losetup -d on a device still in use marks it to go when released).
  if [ -f "$d/ctl/boot.img" ]; then
    losetup -j "$d/ctl/boot.img" -O NAME -n 2>/dev/null | while read -r l; do losetup -d "$l" 2>/dev/null || true; done
  fi
  chattr -R -i "$d" 2>/dev/null || true
  rm -rf "$d"
}

# Sourced (scripts/vm/image.sh builds the VM guest's node files with these
# functions): define them only.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0
cmd=${1:-}; shift || true
profile=default; dir=
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=${2:?--profile needs a name}; shift 2 ;;
    --profile=*) profile=${1#*=}; shift ;;
    *) if [ -z "$dir" ]; then dir=$1; shift; else break; fi ;;
  esac
done
set -- "$cmd" "$dir" "$@"
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
case $cmd in
  create)
    case $profile in default|minimal|rhcos) ;; *) die "unknown profile '$profile' (default, minimal, rhcos)";; esac
    create "$dir" "$profile"; apply_profile "$(cd "$dir" && pwd)" "$profile" ;;
  env) d=$(cd "$dir" && pwd); echo "export PATH=\"$d/ctl/bin:\$PATH\""; echo "export SANDBOX_ROOT=\"$d/root\"" ;;
  reboot) d=$(cd "$dir" && pwd); boot "$d" "${3:-0}"; echo "sandbox: rebooted, boot id $(cat "$d/root/proc/sys/kernel/random/boot_id")" ;;
  teardown) teardown "$dir" ;;
  etcd-scripts) d=$(cd "$dir" && pwd); install_etcd_scripts "$d/root"; echo "sandbox: cluster-backup.sh and cluster-restore.sh installed in /usr/local/bin" ;;
  images)
    d=$(cd "$dir" && pwd); r=$d/root; need buildah
    b=(buildah --root "$r/var/lib/containers/storage" --runroot "$r/run/containers/storage" --storage-driver vfs)
    : > "$d/ctl/state/images"
    for img in etcd operator; do
      ctx=$(mktemp -d)
      head -c 200000 /dev/urandom > "$ctx/$img.bin"; echo "$img" > "$ctx/name"
      printf 'FROM scratch\nCOPY %s.bin name /\n' "$img" > "$ctx/Containerfile"
      ref=quay.io/openshift-release-dev/ocp-v4.0-art-dev:$img-sandbox
      "${b[@]}" bud -q --isolation chroot -t "$ref" "$ctx" >/dev/null || die "buildah could not build $ref"
      rm -rf "$ctx"
      echo "$img $ref" >> "$d/ctl/state/images"
    done
    echo "sandbox: images built into $r/var/lib/containers/storage" ;;
  upgrade-os)
    d=$(cd "$dir" && pwd); v=${3:?upgrade-os needs a version}; os=${4:-rhcos}
    [ -d "$d/root/sysroot/ostree/deploy/$os" ] || ostree admin --sysroot="$d/root" os-init "$os" >/dev/null
    make_commit "$d/root/sysroot" "$v"
    boot_rw "$d/root" ostree admin --sysroot="$d/root" deploy --retain --os="$os" "rhcos/$v" >/dev/null
    echo "sandbox: deployed $os $v as the default; reboot to boot it" ;;
  cluster-upgrade)
    d=$(cd "$dir" && pwd); v=${3:?cluster-upgrade needs a version}; st=${4:?cluster-upgrade needs Completed or Partial}
    case $st in Completed|Partial) ;; *) die "state must be Completed or Partial, not '$st'" ;; esac
    f=$d/ctl/state/objects/clusterversions/_/version.json
    [ -f "$f" ] || die "no ClusterVersion in $f"
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    # The entry before gets its completionTime (upstream: "usually the
    # started time of the next update") when it had none.
    jq --arg v "$v" --arg s "$st" --arg t "$now" '
      .status.history = [{state: $s, startedTime: $t, completionTime: (if $s == "Completed" then $t else null end),
        version: $v, image: ("quay.io/openshift-release-dev/ocp-release:" + $v + "-x86_64"), verified: true}]
        + [(.status.history // [])[] | .completionTime //= $t]
      | .status.desired.version = $v' "$f" > "$f.new" && mv "$f.new" "$f"
    echo "sandbox: cluster upgrade to $v recorded ($st)" ;;
  job)
    d=$(cd "$dir" && pwd); shift 2
    bin=${UPGRADE_RECOVERY_BIN:-}
    if [ -z "$bin" ]; then
      bin=$(cd "$(dirname "$0")/.." && pwd)/target/x86_64-unknown-linux-gnu/release/upgrade-recovery
      [ -x "$bin" ] || bin=$(command -v upgrade-recovery) || die "no binary: build it (scripts/build-static.sh) or set UPGRADE_RECOVERY_BIN"
    fi
    jail=${SANDBOX_JAIL:-$d/job-host}; mkdir -p "$jail"
    # The Job's volumes as TALM's template mounts them
    # (openshift-kni/cluster-group-upgrades-operator
    # controllers/templates/backup-templates.go: /host an emptyDir, the
    # hostPaths one by one, /host/boot read-only), each a bind mount in a
    # mount namespace of the Job's own.
    exec unshare -m --propagation private bash -euc '
J=$0; SB=$1; R=$1/root; BIN=$2; shift 2
mount -t tmpfs -o mode=0755 tmpfs "$J"
m() { # host path, path below /host, [ro]: a hostPath volume
  [ -e "$1" ] || return 0
  if [ -d "$1" ]; then mkdir -p "$J$2"; else mkdir -p "$(dirname "$J$2")"; touch "$J$2"; fi
  mount --rbind "$1" "$J$2"
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$J$2"; fi
}
mkdir -p "$R/var/tmp" "$R/var/recovery" "$R/tmp"
m "$R/boot" /boot ro
m /dev/log /dev/log
m "$R/etc" /etc
mkdir -p "$J/proc"; mount -t proc -o ro proc "$J/proc"
mount --bind "$R/proc/cmdline" "$J/proc/cmdline" 2>/dev/null || true
mount --bind "$R/proc/sys/kernel/random/boot_id" "$J/proc/sys/kernel/random/boot_id"
m "$R/run" /run
m "$R/sysroot" /sysroot
m "$R/tmp" /tmp
m /usr/bin /usr/bin ro; m /usr/lib /usr/lib ro; m /usr/lib64 /usr/lib64 ro; m /usr/libexec /usr/libexec ro
m "$R/usr/local" /usr/local ro
m /usr/share/containers /usr/share/containers ro
m "$R/var/lib" /var/lib
m "$R/var/recovery" /var/recovery
m "$R/var/tmp" /var/tmp
m /sys/fs/cgroup /sys/fs/cgroup ro
m "$SB" "$SB"
PATH="$SB/ctl/bin:/usr/bin" exec "$BIN" launchBackup --host-dir "$J" --min-free 0 "$@"
' "$jail" "$d" "$bin" "$@" ;;
  stage-os)
    # `ostree admin deploy --stage` needs a booted host, which a sandbox is
    # not; the staged state is made as libostree records it
    # (ostreedev/ostree src/libostree/ostree-sysroot-deploy.c,
    # ostree_sysroot_stage_tree_with_options): the deployment's directory
    # with no boot entry, and /run/ostree/staged-deployment, a GVariant a{sv}
    # with "target" and "merge-deployment" ({name, osname, bootcsum},
    # serialize_deployment_to_variant).
    d=$(cd "$dir" && pwd); v=${3:?stage-os needs a version}
    make_commit "$d/root/sysroot" "$v"
    boot_rw "$d/root" ostree admin --sysroot="$d/root" deploy --retain --os=rhcos "rhcos/$v" >/dev/null
    mkdir -p "$d/root/run/ostree"
    boot_rw "$d/root" /usr/bin/python3 - "$d/root" "$d/ctl/state/booted" <<'PY'
import sys, gi
gi.require_version("OSTree", "1.0")
from gi.repository import Gio, GLib, OSTree
root = sys.argv[1]
s = OSTree.Sysroot.new(Gio.File.new_for_path(root)); s.load(None)
deps = s.get_deployments()
new, rest = deps[0], deps[1:]
booted = open(sys.argv[2]).read().split()
merge = next((d for d in rest if [d.get_osname(), d.get_csum(), str(d.get_deployserial())] == booted), rest[0])
def ser(d):
    return GLib.Variant("a{sv}", {
        "name": GLib.Variant("s", "%s.%d" % (d.get_csum(), d.get_deployserial())),
        "osname": GLib.Variant("s", d.get_osname()),
        "bootcsum": GLib.Variant("s", d.get_bootcsum())})
# The boot entry goes, the directory stays (no cleanup).
opts = OSTree.SysrootWriteDeploymentsOpts(); opts.do_postclean = False
s.write_deployments_with_options(rest, opts, None)
state = GLib.Variant("a{sv}", {"target": ser(new), "merge-deployment": ser(merge)})
with open(root + "/run/ostree/staged-deployment", "wb") as f:
    f.write(state.get_data_as_bytes().get_data())
print("sandbox: staged rhcos %s.%d" % (new.get_csum(), new.get_deployserial()))
PY
    ;;
  *) die "unknown command '$cmd' (create, env, reboot, teardown, upgrade-os, stage-os, cluster-upgrade)" ;;
esac
