#!/usr/bin/env bash
# Idempotent install of every Debian package the tests and the demo need.
# Safe to run again: packages already present are skipped.
set -euo pipefail
pkgs=(
  ostree gir1.2-ostree-1.0 python3-gi   # real sysroots; libostree for the rpm-ostree shim
  etcd-server etcd-client               # real etcd with TLS
  openssl rsync attr acl libcap2-bin    # certs, the restore oracle, xattrs/ACLs/caps
  zstd xfsprogs e2fsprogs util-linux file  # reference tar|zstd, loop fs, unshare, static check
  protobuf-compiler libprotobuf-dev     # etcd-client crate build (gRPC protos)
  jq procps psmisc time curl
  buildah uidmap skopeo                 # the Job image; container images in the backup
  inotify-tools                         # kill a backup at the instant a backup path changes
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# etcd-server's package may start a system etcd on 2379; the sandbox uses its own.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi
echo "install-deps: done"
