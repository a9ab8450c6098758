#!/usr/bin/env bash
# Brings the bundled example stage up on this machine's Docker, with no registry access:
# the example's image is built locally from Debian's busybox-static first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-busybox-image.sh
cargo build --quiet --locked
fleet=target/debug/fleet
$fleet -f examples/hello/fleet.kdl up local
$fleet -f examples/hello/fleet.kdl status local
echo
echo "The web service answers on http://127.0.0.1:8080 — try: curl -s 127.0.0.1:8080"
echo "Take it down again with: $fleet -f examples/hello/fleet.kdl down local --destroy --yes"
