# RHCOS's /boot in the sandbox, shared by scripts/sandbox.sh and the shims.
#
# On RHCOS /boot is a file system of its own, mounted read-only
# (coreos/fedora-coreos-config overlay.d/05core/usr/lib/systemd/
# system-generators/coreos-boot-mount-generator: `mk_mount /boot ...
# ro,nodev,nosuid`), and the physical root's /sysroot/boot is an empty
# directory (ostreedev/ostree issue 2992: `--sysroot /sysroot` lists no
# deployments there). ostree works on the deployment root, whose /ostree
# links to sysroot/ostree and whose /boot is that file system.

# boot_fs SANDBOX_DIR: make the node's /boot a loop-mounted ext4, read-only.
# `mount -o loop` sets the loop device to detach itself when unmounted; it
# is mounted read-write first (a loop device set up read-only could never be
# remounted read-write), then remounted read-only.
boot_fs() {
  local d=$1 img=$1/ctl/boot.img
  truncate -s 32M "$img"
  mkfs.ext4 -q -F -L boot "$img"
  mkdir -p "$d/root/boot"
  mount -o loop,nodev,nosuid "$img" "$d/root/boot"
  mount -o remount,ro "$d/root/boot"
}

# boot_rw NODE_ROOT CMD...: run CMD with the node's /boot writable in a
# private mount namespace only; the host's mount stays read-only. That is
# what libostree does for its own writes on a booted host (ostreedev/ostree
# src/libostree/ostree-sysroot.c, _ostree_sysroot_ensure_writable, which
# remounts /sysroot and /boot writable in the mount namespace its callers
# (rpm-ostreed, ostree admin) run in).
boot_rw() {
  local r=$1; shift
  if mountpoint -q "$r/boot"; then
    unshare -m --propagation private bash -c 'mount -o remount,rw "$0" && exec "$@"' "$r/boot" "$@"
  else
    "$@"
  fi
}
