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
# The machine tests mostly wait (guests booting, apt inside them, an idle window running out), so
# they run beside the rest instead of after it: build once, then both at once.
cargo test --locked --all-targets --no-run
machines_log=$(mktemp)
trap 'rm -f "$machines_log"' EXIT
cargo test --locked --test machines -- --test-threads 3 >"$machines_log" 2>&1 &
machines_pid=$!
others=(--lib --bins)
for t in tests/*.rs; do
    name=$(basename "$t" .rs)
    [ "$name" = machines ] || others+=(--test "$name")
done
status=0
cargo test --locked "${others[@]}" || status=$?
machines_status=0
wait "$machines_pid" || machines_status=$?
echo "---- tests/machines.rs (ran alongside) ----"
cat "$machines_log"
if [ "$status" -ne 0 ] || [ "$machines_status" -ne 0 ]; then
    echo "error: tests failed (others: exit $status, machines: exit $machines_status)" >&2
    exit 1
fi
