#!/usr/bin/env bash
# Builds a tiny local image from Debian's static busybox, so examples and tests never pull.
# Usage: scripts/build-busybox-image.sh [IMAGE]   (default fleetflow-test/busybox:latest)
set -euo pipefail
image="${1:-fleetflow-test/busybox:latest}"
if docker image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi
busybox=""
for candidate in /bin/busybox /usr/bin/busybox; do
    # Only a static binary works in an empty root filesystem.
    if [ -x "$candidate" ] && file_out=$(ldd "$candidate" 2>&1 || true) && [[ "$file_out" == *"not a dynamic executable"* || "$file_out" == *"statically linked"* ]]; then
        busybox="$candidate"
        break
    fi
done
if [ -z "$busybox" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's busybox-static (needed to build $image)…" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
        busybox=/bin/busybox
    else
        echo "error: a static busybox is needed to build $image: apt-get install busybox-static" >&2
        exit 1
    fi
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/www" "$root/etc"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'fleetflow test page' > "$root/www/index.html"
tar -C "$root" -c . | docker import --change 'CMD ["sh"]' --change 'ENV PATH=/bin' - "$image" >/dev/null
echo "built $image" >&2
