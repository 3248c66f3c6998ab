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
echo "== static release build"; scripts/build-static.sh
echo "== cargo test"
# Two test threads: the machines have two cores, and each sandbox runs an etcd.
cargo test --quiet -- --test-threads=2
