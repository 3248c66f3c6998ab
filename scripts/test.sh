#!/usr/bin/env bash
# All the tests, as CI runs them: dependencies, format, lints, unit and
# integration tests (real ostree, etcd, mounts: needs root), and the static
# release build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "test.sh: run as root (sandbox nodes mount, mknod, set xattrs)" >&2; exit 1; }
scripts/install-deps.sh
echo "== cargo fmt --check"; cargo fmt --all -- --check
echo "== cargo clippy -- -D warnings"; cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo clippy --features testing"; cargo clippy --all-targets --quiet --features testing -- -D warnings
echo "== static release build"; scripts/build-static.sh
echo "== make install DESTDIR"
d=$(mktemp -d); make -s install DESTDIR="$d" PREFIX=/usr >/dev/null
for f in usr/bin/upgrade-recovery usr/share/man/man1/upgrade-recovery-restore.1 \
  usr/share/bash-completion/completions/upgrade-recovery usr/lib/systemd/system/upgrade-recovery-resume.service; do
  [ -e "$d/$f" ] || { echo "make install did not install $f" >&2; exit 1; }
done
rm -rf "$d"
echo "== dm-log-writes replayer (scripts/vm/dmlog-replay.py selftest)"
/usr/bin/python3 scripts/vm/dmlog-replay.py selftest >/dev/null
echo "== cargo test"
# Two test threads: the machines have two cores, and each sandbox runs an etcd.
# The binary the tests run has the fault points and generate-docs (feature
# testing); tests/common refuses to compile without it.
cargo test --quiet --features testing -- --test-threads=2
# The VM lane's short run (issue 24, docs/vm.md): real reboots and power cuts
# in a QEMU guest; image cached in /var/cache/upgrade-recovery-vm. Opt-in
# (VM_LANE=1) until it runs within CI's time: one procedure and five cuts
# measured about 40 min on 2 cores, and cuts in the cluster phase do not
# reach their instant yet (docs/vm.md, "Not done").
if [ "${VM_LANE:-0}" != 0 ]; then
  echo "== VM lane (scripts/vm.sh ci)"; scripts/vm.sh ci
fi
