#!/usr/bin/env bash
# Try a remote stage without a Sakura Cloud account: starts fleet-sim (the API) and an sshd on
# loopback that plays the booted server (it reaches this machine's Docker), then prints what to
# export. Needs root (sshd), OpenSSH and Docker.
#   scripts/sim-demo.sh          start, and write .demo/env
#   scripts/sim-demo.sh stop     stop both
set -euo pipefail
cd "$(dirname "$0")/.."
demo=.demo
if [ "${1:-}" = stop ]; then
    for pid in "$demo"/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; rm -f "$pid"; done
    echo "stopped"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "error: run as root (the demo starts sshd)" >&2; exit 1; }
command -v /usr/sbin/sshd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null; }
scripts/build-busybox-image.sh
cargo build --quiet --locked
mkdir -p "$demo" /run/sshd
dir=$(cd "$demo" && pwd)
[ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
[ -f "$dir/id" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/id"
cp "$dir/id.pub" "$dir/authorized_keys"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sshd_port=$(free_port)
server_ssh_port=$(free_port)
cat > "$dir/sshd_config" <<CONF
Port $sshd_port
ListenAddress 127.0.0.1
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/sshd.pid
PasswordAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
AllowStreamLocalForwarding yes
CONF
/usr/sbin/sshd -f "$dir/sshd_config"
target/debug/fleet-sim --ssh-target "127.0.0.1:$sshd_port" --ssh-port "$server_ssh_port" \
    --boot-ms 2000 --shutdown-ms 1000 --disk-copy-ms 3000 > "$dir/sim.out" 2> "$dir/sim.log" &
echo $! > "$dir/sim.pid"
for _ in $(seq 50); do grep -q listening "$dir/sim.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$dir/sim.out")
cat > "$dir/env" <<ENV
export SAKURACLOUD_ACCESS_TOKEN=sim-token
export SAKURACLOUD_ACCESS_TOKEN_SECRET=sim-secret
export SAKURACLOUD_API_ROOT_URL=$url/cloud/zone
export FLEET_SAKURA_POLL_MS=500
export FLEET_DEMO_KEY=$dir/id
export FLEET_DEMO_USER=root
export FLEET_DEMO_SSH_PORT=$server_ssh_port
ENV
cat <<MSG
fleet-sim is serving the Sakura Cloud API on $url, and sshd plays the booted server.
Walk the ladder:
  source $demo/env
  fleet=target/debug/fleet; f="-f examples/remote/fleet.kdl"
  \$fleet \$f up dev                  # creates the server, boots it, waits for SSH, starts the containers
  \$fleet \$f status dev
  \$fleet \$f down dev                # containers stop, the server keeps running
  \$fleet \$f down dev --suspend      # powered off: only the disk is billed
  \$fleet \$f up dev                  # boots it again, containers back
  \$fleet \$f down dev --destroy -y   # server and disk deleted
Stop the demo with: scripts/sim-demo.sh stop
MSG
