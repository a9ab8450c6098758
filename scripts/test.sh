#!/usr/bin/env bash
# Runs every test: unit tests, and end-to-end tests against this machine's real Docker engine.
# Needs: the Rust toolchain and a running Docker engine (plus OpenSSH, mmdebstrap and docker-compose, installed here when missing). No registry access: the test image is
# built locally from Debian's busybox-static (installed with apt-get when missing and root).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
    echo "error: no Docker engine is reachable (docker info failed); the end-to-end tests need one" >&2
    exit 1
fi
scripts/build-busybox-image.sh
# The machine rig: the Debian image fleet-sim boots as servers (built once per machine, ~1 min).
scripts/build-server-image.sh >/dev/null
# Remote-stage tests run a real OpenSSH server on loopback as the "booted server".
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's openssh-server and openssh-client (needed by the remote-stage tests)…" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
    else
        echo "error: the remote-stage tests need sshd and ssh: apt-get install openssh-server openssh-client" >&2
        exit 1
    fi
fi
# `fleet import compose` is checked against what docker-compose itself runs from the same file.
if ! command -v docker-compose >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's docker-compose (the import tests compare against it)…" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
    else
        echo "error: the import tests need docker-compose: apt-get install docker-compose" >&2
        exit 1
    fi
fi
# The proxy tests: images from Debian's caddy and pebble (the scripts install the packages when
# missing), and openssl to make pebble's HTTPS certificate.
scripts/build-caddy-image.sh
scripts/build-pebble-image.sh
if ! command -v openssl >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's openssl (the proxy tests make a CA with it)…" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
    else
        echo "error: the proxy tests need openssl: apt-get install openssl" >&2
        exit 1
    fi
fi
# The machine-rig tests (every test file that boots machines: it uses `MachineRig`) mostly wait
# (guests booting, apt inside them, an idle window running out), so they run beside the rest
# instead of after it: build once, then all at once, each rig file in its own process.
cargo test --locked --all-targets --no-run
logs_dir=$(mktemp -d)
trap 'rm -rf "$logs_dir"' EXIT
rig_pids=()
rig_names=()
others=(--lib --bins)
for t in tests/*.rs; do
    name=$(basename "$t" .rs)
    if grep -q 'MachineRig' "$t"; then
        threads=2
        [ "$name" = machines ] && threads=3
        cargo test --locked --test "$name" -- --test-threads "$threads" >"$logs_dir/$name.log" 2>&1 &
        rig_pids+=($!)
        rig_names+=("$name")
    else
        others+=(--test "$name")
    fi
done
status=0
cargo test --locked "${others[@]}" || status=$?
failed=()
for i in "${!rig_pids[@]}"; do
    name=${rig_names[$i]}
    rc=0
    wait "${rig_pids[$i]}" || rc=$?
    echo "---- tests/$name.rs (machine rig, ran alongside) ----"
    cat "$logs_dir/$name.log"
    [ "$rc" -eq 0 ] || failed+=("$name (exit $rc)")
done
if [ "$status" -ne 0 ] || [ "${#failed[@]}" -ne 0 ]; then
    echo "error: tests failed (others: exit $status; machine rig: ${failed[*]:-none})" >&2
    exit 1
fi
