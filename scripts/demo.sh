#!/usr/bin/env bash
# The demo: build the tool, make a sandbox node, and run the main job on it.
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

step "status of the sandbox node"
"$bin" --root "$root" status
