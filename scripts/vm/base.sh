#!/usr/bin/env bash
# The guest's base root: Debian 12 from Debian's packages only, everything the
# lane needs installed now (the guest has no network), and a dracut initramfs
# with ostree's module (ostree-prepare-root). Output: $1/rootfs (a directory).
# Called by scripts/vm.sh; its own text is part of the cache key.
set -euo pipefail
out=$1
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
r=$out/rootfs
rm -rf "$r"; mkdir -p "$r"
t0=$(date +%s)
debootstrap --variant=minbase \
  --include=systemd-sysv,udev,kmod,e2fsprogs,dmsetup,procps,util-linux \
  bookworm "$r" "$mirror" > "$out/debootstrap.log" 2>&1 \
  || { tail -20 "$out/debootstrap.log" >&2; exit 1; }
echo "vm: base: debootstrap $(( $(date +%s) - t0 )) s"
# Nothing starts inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$r/usr/sbin/policy-rc.d"; chmod 0755 "$r/usr/sbin/policy-rc.d"
# dracut, not initramfs-tools: only dracut has ostree's initramfs module.
# A small initramfs: only the drivers a virtio guest needs.
mkdir -p "$r/etc/dracut.conf.d"
cat > "$r/etc/dracut.conf.d/vm.conf" <<'C'
hostonly="no"
add_dracutmodules+=" ostree "
drivers="virtio_pci virtio_blk virtio_console ext4 crc32c_generic"
compress="zstd"
C
t0=$(date +%s)
mount --bind /proc "$r/proc"; mount --bind /dev "$r/dev"; mount --bind /sys "$r/sys"
trap 'umount "$r/proc" "$r/dev" "$r/sys" 2>/dev/null || true' EXIT
cp /etc/apt/sources.list.d/debian.sources "$r/etc/apt/sources.list.d/" 2>/dev/null || true
chroot "$r" apt-get update -qq > "$out/apt.log" 2>&1
# The guest's programs: dracut+ostree-boot (boot through ostree-prepare-root),
# ostree and libostree's python bindings (the rpm-ostree shim), etcd with TLS,
# what the shims use (jq, curl), the oracles (rsync, attr, acl), and the
# tool's run-time programs.
DEBIAN_FRONTEND=noninteractive chroot "$r" apt-get install -y -q --no-install-recommends \
  dracut zstd linux-image-amd64 ostree ostree-boot gir1.2-ostree-1.0 python3-gi \
  etcd-server etcd-client openssl jq curl rsync attr acl libcap2-bin tar selinux-utils \
  >> "$out/apt.log" 2>&1 || { tail -30 "$out/apt.log" >&2; exit 1; }
chroot "$r" apt-get clean
echo "vm: base: packages $(( $(date +%s) - t0 )) s"
kver=$(ls "$r/lib/modules" | sort -V | tail -1)
t0=$(date +%s)
chroot "$r" dracut -f --kver "$kver" /boot/initrd.img-"$kver" > "$out/dracut.log" 2>&1 \
  || { tail -30 "$out/dracut.log" >&2; exit 1; }
echo "vm: base: dracut $(( $(date +%s) - t0 )) s ($(du -h "$r/boot/initrd.img-$kver" | cut -f1))"
echo "$kver" > "$out/kver"
