#!/usr/bin/env bash
# Builds a pebble (ACME test CA, RFC 8555) image from Debian's pebble binary, so the HTTPS tests
# never pull. Its HTTPS certificate and key are not in the image: the test makes them for the
# address it runs pebble at and mounts them at /certs (cert.pem, key.pem).
# Usage: scripts/build-pebble-image.sh [IMAGE]   (default fleetflow-test/pebble:latest)
set -euo pipefail
image="${1:-fleetflow-test/pebble:latest}"
if docker image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi
if ! command -v pebble >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's pebble (needed to build $image)…" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble >/dev/null
    else
        echo "error: pebble is needed to build $image: apt-get install pebble" >&2
        exit 1
    fi
fi
pebble_bin=$(command -v pebble)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/etc/pebble" "$root/certs" "$root/tmp"
cp "$pebble_bin" "$root/usr/bin/pebble"
# Copy exactly what ldd names (Debian's Go binaries may link libc).
for lib in $(ldd "$pebble_bin" 2>/dev/null | grep -oE '/[^ ]+' || true); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cat > "$root/etc/pebble/config.json" <<'JSON'
{
  "pebble": {
    "listenAddress": "0.0.0.0:14000",
    "managementListenAddress": "0.0.0.0:15000",
    "certificate": "/certs/cert.pem",
    "privateKey": "/certs/key.pem",
    "httpPort": 80,
    "tlsPort": 443,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
JSON
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/bin' \
    --change 'ENV PEBBLE_VA_ALWAYS_VALID=1' \
    --change 'ENV PEBBLE_VA_NOSLEEP=1' \
    --change 'EXPOSE 14000 15000' \
    --change 'CMD ["pebble", "-config", "/etc/pebble/config.json"]' \
    - "$image" >/dev/null
echo "built $image" >&2
