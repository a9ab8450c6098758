#!/usr/bin/env bash
# Builds a proxy image laid out like the official `caddy:2` image from Debian's caddy binary, so
# tests never pull: /usr/bin/caddy, /etc/caddy/Caddyfile, XDG_CONFIG_HOME=/config,
# XDG_DATA_HOME=/data, workdir /srv, CMD caddy run. Busybox gives it `sh` and `wget`, as the
# official (Alpine) image has: fleet probes a new container's health path with `wget` from
# inside the proxy container.
# Usage: scripts/build-caddy-image.sh [IMAGE]   (default fleetflow-test/caddy:2)
set -euo pipefail
image="${1:-fleetflow-test/caddy:2}"
if docker image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi
need() {
    if command -v "$1" >/dev/null; then return 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's $2 (needed to build $image)…" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    else
        echo "error: $1 is needed to build $image: apt-get install $2" >&2
        exit 1
    fi
}
need caddy caddy
if ! [ -x /bin/busybox ] || ! ldd /bin/busybox 2>&1 | grep -qE 'not a dynamic|statically linked'; then
    scripts_dir=$(dirname "$0")
    "$scripts_dir/build-busybox-image.sh" >/dev/null
fi
caddy_bin=$(command -v caddy)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/usr/bin" "$root/etc/caddy" "$root/etc/ssl/certs" "$root/config" "$root/data" "$root/srv" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$caddy_bin" "$root/usr/bin/caddy"
# Debian's caddy is dynamically linked (libc, libzstd): copy exactly what ldd names.
for lib in $(ldd "$caddy_bin" | grep -oE '/[^ ]+'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
cat > "$root/etc/caddy/Caddyfile" <<'CADDY'
:80 {
	respond "caddy is running"
}
CADDY
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/bin:/bin' \
    --change 'ENV XDG_CONFIG_HOME=/config' \
    --change 'ENV XDG_DATA_HOME=/data' \
    --change 'WORKDIR /srv' \
    --change 'EXPOSE 80 443 443/udp 2019' \
    --change 'CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]' \
    - "$image" >/dev/null
echo "built $image" >&2
