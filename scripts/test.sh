#!/usr/bin/env bash
# Runs every test: unit tests, and end-to-end tests against this machine's real Docker engine.
# Needs: the Rust toolchain and a running Docker engine. No registry access: the test image is
# built locally from Debian's busybox-static (installed with apt-get when missing and root).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
    echo "error: no Docker engine is reachable (docker info failed); the end-to-end tests need one" >&2
    exit 1
fi
scripts/build-busybox-image.sh
cargo test --locked --all-targets
