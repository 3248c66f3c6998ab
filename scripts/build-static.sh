#!/usr/bin/env bash
# The static-pie release binary; fails unless `file` and `ldd` say it is static.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release --target x86_64-unknown-linux-gnu
bin=target/x86_64-unknown-linux-gnu/release/upgrade-recovery
desc=$(file -b "$bin")
case $desc in
  *"static-pie linked"*|*"statically linked"*) ;;
  *) echo "build-static: $bin is not static: $desc" >&2; exit 1 ;;
esac
# The test seams (Cargo feature fault-injection) and the docs generator
# (feature docs) are not in the shipped binary.
for s in UPGRADE_RECOVERY_CRASH_AT UPGRADE_RECOVERY_SYNC_LOG clap_mangen clap_complete; do
  if strings "$bin" | grep -q "$s"; then
    echo "build-static: $bin contains $s (built with a test or docs feature)" >&2; exit 1
  fi
done
if ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "build-static: ldd lists shared libraries for $bin" >&2; ldd "$bin" >&2; exit 1
fi
echo "build-static: $bin ($(du -h "$bin" | cut -f1), ${desc%%,*}, static)"
