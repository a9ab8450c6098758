#!/usr/bin/env bash
# Builds the image fleet-sim boots as a "server": Debian bookworm from mmdebstrap (Debian's
# package; it uses this machine's apt sources, so no mirror is named here), systemd as PID 1,
# openssh-server, sudo, a login user `ubuntu` in the sudo group with a locked password (so
# `sudo -n` fails, as on a cloud archive where no password was set), and NO container engine.
# Each machine makes its own SSH host keys at first boot, and runs the startup scripts fleet-sim
# put in /var/lib/fleetflow-sim/startup (Sakura's "notes") once, as root, logging to
# /var/log/fleetflow-startup.log.
# The .deb files of docker.io are downloaded into apt's cache (not installed): the engine is still
# installed by the real bootstrap at first boot, but several rig machines booting at once do not
# all fetch the same 60 MB from the mirror (CI time, and a mirror that throttles).
#
# The image is tagged by a hash of this script, so it is built once per machine and rebuilt only
# when this recipe changes. Prints the tag. Usage: scripts/build-server-image.sh
set -euo pipefail
recipe_hash=$(sha256sum "$0" | cut -c1-12)
image="fleetflow-test/server:$recipe_hash"
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi
if ! command -v mmdebstrap >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's mmdebstrap (needed to build $image)…" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
    else
        echo "error: mmdebstrap is needed to build $image: apt-get install mmdebstrap" >&2
        exit 1
    fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat > "$work/fleetflow-hostkeys.service" <<'UNIT'
[Unit]
Description=SSH host keys of this machine (made at first boot, never shared by machines)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
[Install]
WantedBy=multi-user.target
UNIT

cat > "$work/fleetflow-startup.service" <<'UNIT'
[Unit]
Description=Startup scripts of the disk's configuration (Sakura notes), once, as root
After=network.target
ConditionPathExists=!/var/lib/fleetflow-sim/startup/.done
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'for s in /var/lib/fleetflow-sim/startup/*; do [ -f "$s" ] || continue; echo "== $s"; /bin/bash "$s"; echo "== exit $?"; done >>/var/log/fleetflow-startup.log 2>&1; touch /var/lib/fleetflow-sim/startup/.done'
RemainAfterExit=yes
[Install]
WantedBy=multi-user.target
UNIT

echo "building $image with mmdebstrap (about a minute)…" >&2
mmdebstrap --quiet --variant=minbase \
    --include=systemd-sysv,openssh-server,sudo,iproute2,procps,ca-certificates,dbus,curl \
    --customize-hook="copy-in $work/fleetflow-hostkeys.service $work/fleetflow-startup.service /etc/systemd/system/" \
    --customize-hook='chroot "$1" systemctl enable fleetflow-hostkeys.service fleetflow-startup.service ssh.service' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    --customize-hook='mkdir -p "$1"/var/lib/fleetflow-sim/startup' \
    --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash --groups sudo ubuntu' \
    --customize-hook='chroot "$1" passwd --lock ubuntu' \
    --customize-hook='mkdir -p "$1"/home/ubuntu/.ssh && chmod 700 "$1"/home/ubuntu/.ssh && chroot "$1" chown -R ubuntu:ubuntu /home/ubuntu/.ssh' \
    --customize-hook='echo "PasswordAuthentication no" > "$1"/etc/ssh/sshd_config.d/fleetflow.conf' \
    --customize-hook='rm -f "$1"/etc/machine-id && touch "$1"/etc/machine-id' \
    --customize-hook='chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get install --download-only -y -qq docker.io >/dev/null' \
    --skip=cleanup/apt/cache \
    bookworm "$work/root.tar"
docker import \
    --change 'CMD ["/lib/systemd/systemd"]' \
    --change 'ENV container=docker' \
    "$work/root.tar" "$image" >/dev/null
echo "built $image" >&2
echo "$image"
