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
# etcdutl with `snapshot restore --bump-revision --mark-compacted` (etcd
# 3.5+), as OpenShift's restore pod uses it (cluster-etcd-operator
# bindata/etcd/restore-pod.yaml). Debian 12's etcd is 3.4.23, without
# etcdutl; the binary comes from Debian 13's etcd-server package, fetched
# with apt through a private sources list and state (the system's apt
# sources stay as they are), and goes to /usr/local/bin: the sandbox's
# etcd server stays Debian 12's (etcd 3.4 starts on a dir etcdutl 3.5
# restored).
install_etcdutl() {
  if command -v etcdutl >/dev/null 2>&1 && etcdutl snapshot restore --help 2>&1 | grep -q -- --bump-revision; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install etcdutl" >&2
    exit 1
  fi
  local t; t=$(mktemp -d); chmod 755 "$t"
  mkdir -p "$t/lists/partial" "$t/cache/archives/partial"
  # The machine's own Debian mirror (the first URIs: of its sources), else deb.debian.org.
  local mirror
  mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror:-http://deb.debian.org/debian} trixie main" > "$t/sources.list"
  local o=(-o "Dir::Etc::sourcelist=$t/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$t/lists" -o "Dir::Cache=$t/cache")
  apt-get "${o[@]}" update -qq || { sleep 5; apt-get "${o[@]}" update -qq; }
  (cd "$t" && apt-get "${o[@]}" download etcd-server >/dev/null 2>&1)
  dpkg -x "$t"/etcd-server_*.deb "$t/x"
  install -m 0755 "$t/x/usr/bin/etcdutl" /usr/local/bin/etcdutl
  rm -rf "$t"
  echo "install-deps: etcdutl $(etcdutl version | head -1) in /usr/local/bin"
}
install_etcdutl
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
