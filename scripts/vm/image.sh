#!/usr/bin/env bash
# The guest's disks, shaped like RHCOS: an ostree sysroot (stateroot rhcos)
# with the node booted from deployment rhcos/1, a second commit rhcos/2 to
# upgrade to, /boot on its own disk (mounted read-only, /sysroot/boot empty),
# the node's files as the sandbox makes them (scripts/sandbox.sh's
# functions), the tool installed as the RPM installs it, real kubelet/crio
# units, the shims for oc, crictl, crio and rpm-ostree only.
#   image.sh BASE_DIR BINARY OUT_DIR   -> OUT_DIR/root.img, OUT_DIR/boot.img
set -euo pipefail
base=$1 bin=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
proj=$(cd "$here/../.." && pwd)
g=$here/guest
kver=$(cat "$base/kver")
w=$out/work
cleanup() {
  awk -v p="$w/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
  chattr -R -i "$w" 2>/dev/null || true
  rm -rf "$w"
}
trap cleanup EXIT
cleanup; mkdir -p "$w"
t=$w/tree n=$w/node s=$w/sysroot v=$w/var
cp -a "$base/rootfs" "$t"
# Smaller: no docs, only the kernel modules a virtio guest and the lane use.
rm -rf "$t"/usr/share/{doc,man,info,locale}/* "$t"/var/cache/apt/* "$t"/var/lib/apt/lists/*
m=$t/usr/lib/modules/$kver/kernel
find "$m" -mindepth 1 -maxdepth 1 ! -name fs ! -name drivers ! -name net ! -name lib ! -name crypto -exec rm -rf {} +
find "$m/drivers" -mindepth 1 -maxdepth 1 ! -name virtio ! -name block ! -name md ! -name char -exec rm -rf {} +
find "$m/net" -mindepth 1 -maxdepth 1 ! -name 9p -exec rm -rf {} +
chroot "$t" depmod "$kver"

# The node's files, made by the sandbox's own functions (rhcos profile).
# shellcheck source=../sandbox.sh
. "$proj/scripts/sandbox.sh"
mkdir -p "$n/var/lib/etcd" "$n/var/recovery"
make_etc "$n"; make_usrlocal "$n"; make_kubelet "$n"
install_etcd_scripts "$n"
make_certs "$n/etc/kubernetes/static-pod-resources/etcd-certs"
umount -l "$n/var/lib/kubelet/pods/"*/volumes/kubernetes.io~empty-dir/cache
cat > "$n/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-scripts/etcd.env" <<'ENV'
export ALL_ETCD_ENDPOINTS="https://127.0.0.1:2379"
export ETCDCTL_API="3"
export ETCDCTL_CACERT="/etc/kubernetes/static-pod-certs/configmaps/etcd-serving-ca/ca-bundle.crt"
export ETCDCTL_CERT="/etc/kubernetes/static-pod-certs/secrets/etcd-all-certs/etcd-peer-sno.crt"
export ETCDCTL_ENDPOINTS="https://127.0.0.1:2379"
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
export NODE_sno_PEER_URL="https://127.0.0.1:2380"
ENV
# /etc: the guest's own (users, systemd) plus the node's; the sandbox's unit
# stubs give way to real units.
rm -f "$n/etc/passwd" "$n/etc/group" "$n/usr/lib/systemd/system/"{kubelet,crio}.service
cp -a "$n/etc/." "$t/etc/"
cp -a "$n/opt/." "$t/opt/"   # a machine-config file outside the trees (extras)
printf '127.0.0.1 localhost\n::1 localhost\n' > "$t/etc/hosts"
printf '/dev/vdb /boot ext4 ro,nosuid,nodev 0 0\n' > "$t/etc/fstab"
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$t/etc/machine-id"
echo 'root::0:0:root:/root:/bin/bash' > /dev/null
sed -i 's/^root:[^:]*:/root::/' "$t/etc/shadow"
mkdir -p "$t/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=persistent\n' > "$t/etc/systemd/journald.conf.d/vm.conf"
# etcd 3.5+'s etcdutl (the host's, from scripts/install-deps.sh): the
# native etcd restore (`restore --etcd-restore native`, as the 4.18+
# restore pod) needs `snapshot restore --bump-revision`; Debian 12's etcd
# 3.4 has no etcdutl. The lane's VM_ETCD_NATIVE=1 cycles use it.
e=$(command -v etcdutl) || { echo "image: no etcdutl on this host (scripts/install-deps.sh installs it)" >&2; exit 1; }
install -D -m 0755 "$e" "$t/usr/bin/etcdutl"
# The tool, as `make install PREFIX=/usr` (the RPM's %install) puts it.
install -D -m 0755 "$bin" "$t/usr/bin/upgrade-recovery"
install -D -m 0644 "$proj/packaging/upgrade-recovery-resume.service" "$t/usr/lib/systemd/system/upgrade-recovery-resume.service"
# Real units, the lane's agent, the shims' wrappers.
install -m 0644 "$g/kubelet.service" "$g/crio.service" "$g/vmshim-boot.service" "$g/vm-agent.service" "$t/usr/lib/systemd/system/"
install -d "$t/usr/libexec/vmshim"
install -m 0755 "$g/node-daemon" "$g/boot" "$g/vm-agent" "$g/cut-watch" "$t/usr/libexec/vmshim/"
for x in oc crictl crio rpm-ostree; do install -m 0755 "$g/shim-wrapper" "$t/usr/bin/$x"; done
wants=$t/etc/systemd/system/multi-user.target.wants
mkdir -p "$wants"
for u in kubelet crio vmshim-boot vm-agent; do ln -sfn "/usr/lib/systemd/system/$u.service" "$wants/$u.service"; done
ln -sfn /dev/null "$t/etc/systemd/system/etcd.service"   # the shims run etcd as the static pod
ln -sfn /dev/null "$t/etc/systemd/system/getty@tty1.service"
ln -sfn /dev/null "$t/etc/systemd/system/systemd-timesyncd.service"

# ostree's view of a tree: kernel in /usr/lib/modules, /etc in /usr/etc,
# /var from the stateroot, /usr/local -> ../var/usrlocal as on RHCOS.
cp "$t/boot/vmlinuz-$kver" "$t/usr/lib/modules/$kver/vmlinuz"
cp "$t/boot/initrd.img-$kver" "$t/usr/lib/modules/$kver/initramfs.img"
rm -rf "${t:?}"/boot/* "$t"/vmlinuz* "$t"/initrd.img*
mv "$t/etc" "$t/usr/etc"
mv "$t/var" "$v"; mkdir "$t/var"
rm -rf "${t:?}/usr/local"; ln -s ../var/usrlocal "$t/usr/local"
for d in dev proc sys run tmp; do rm -rf "${t:?}/$d"; mkdir "$t/$d"; done
chmod 1777 "$t/tmp"
mkdir -p "$t/sysroot"; ln -s sysroot/ostree "$t/ostree"

mkdir -p "$s"; ostree admin init-fs "$s" >/dev/null
ostree admin --sysroot="$s" os-init rhcos >/dev/null
commit() { # $1 version
  sed -i "s/^VERSION=.*/VERSION=\"$1\"/; s/^PRETTY_NAME=.*/PRETTY_NAME=\"Debian as RHCOS $1\"/" "$t/usr/lib/os-release"
  echo "os $1" > "$t/usr/lib/vm-os-version"
  ostree --repo="$s/ostree/repo" commit --branch="rhcos/$1" --tree=dir="$t" \
    --add-metadata-string=version="$1" >/dev/null
}
commit 416.94.1
commit 417.94.2
ostree admin --sysroot="$s" deploy --os=rhcos --karg=root=/dev/vda --karg=rw \
  --karg=console=ttyS0 --karg=panic=1 --karg=quiet rhcos/416.94.1 >/dev/null
sv=$s/ostree/deploy/rhcos/var
cp -a "$v/." "$sv/"
mkdir -p "$sv/log/journal"
rsync -aAXH "$n/var/" "$sv/"
chmod 0700 "$sv/lib/etcd"
# The shims and their state (scripts/shims/lib.sh: SB/root is the node's /).
c=$sv/lib/vmshim/ctl
mkdir -p "$c/bin" "$c/lib" "$c/state/oc" "$c/state/active" "$c/state/enabled"
ln -sfn / "$sv/lib/vmshim/root"
cp "$proj/scripts/shims/lib.sh" "$proj/scripts/shims/bootfs.sh" "$proj/scripts/shims/sandbox_ostree.py" "$c/lib/"
for x in crictl crio oc rpm-ostree; do install -m 0755 "$proj/scripts/shims/$x" "$c/bin/$x"; done
printf 'CLIENT_PORT=2379\nPEER_PORT=2380\nMETRICS_PORT=2381\n' > "$c/state/ports"
for k in etcd kubeapiserver kubecontrollermanager kubescheduler; do echo "7 7" > "$c/state/oc/$k"; done
touch "$c/calls.log"

# /boot on its own disk; the sysroot's /boot left empty, as on RHCOS.
mkfs.ext4 -q -L boot -d "$s/boot" "$out/boot.img" 512M
rm -rf "${s:?}"/boot/* "$s"/boot/.[!.]* 2>/dev/null || true
chattr -R -i "$s" 2>/dev/null || true
# 16G: the backup keeps a 10 GiB margin free (--min-free).
mkfs.ext4 -q -L root -d "$s" "$out/root.img" 16G
echo "vm: image: $(du -h --apparent-size "$out/root.img" | cut -f1) root ($(du -h "$out/root.img" | cut -f1) used), boot $(du -h "$out/boot.img" | cut -f1)"
