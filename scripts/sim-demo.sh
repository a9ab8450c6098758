#!/usr/bin/env bash
# Try a remote stage without a Sakura Cloud account: starts fleet-sim (the API), then prints what
# to export. Needs root, OpenSSH and Docker.
#   scripts/sim-demo.sh --machines   each server is a real machine: a system container (systemd,
#                                    sshd, user ubuntu, no engine) that gets its engine from
#                                    fleet's startup script and its images copied from here
#   scripts/sim-demo.sh              quicker: an sshd on loopback plays the booted server (it
#                                    reaches this machine's Docker)
#   scripts/sim-demo.sh stop         stop the demo and remove its machines
set -euo pipefail
cd "$(dirname "$0")/.."
demo=.demo
network=fleet-demo
if [ "${1:-}" = stop ]; then
    for pid in "$demo"/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; rm -f "$pid"; done
    for c in $(docker ps -aq --filter label=fleetflow.demo=1); do
        name=$(docker inspect -f '{{.Name}}' "$c" | tr -d /)
        docker rm -f -v "$c" >/dev/null; docker volume rm -f "$name-docker" >/dev/null 2>&1 || true
    done
    docker network rm "$network" >/dev/null 2>&1 || true
    echo "stopped"
    exit 0
fi
machines=false
[ "${1:-}" = --machines ] && machines=true
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
if $machines; then
    image=$(scripts/build-server-image.sh)
    docker network inspect "$network" >/dev/null 2>&1 || docker network create --subnet 172.29.77.0/24 "$network" >/dev/null
    target/debug/fleet-sim --machine-image "$image" --machine-network "$network" --machine-label fleetflow.demo=1 \
        --boot-ms 2000 --shutdown-ms 1000 --disk-copy-ms 3000 > "$dir/sim.out" 2> "$dir/sim.log" &
    user=ubuntu
    server_ssh_port=22
else
    /usr/sbin/sshd -f "$dir/sshd_config"
    target/debug/fleet-sim --ssh-target "127.0.0.1:$sshd_port" --ssh-port "$server_ssh_port" \
        --boot-ms 2000 --shutdown-ms 1000 --disk-copy-ms 3000 > "$dir/sim.out" 2> "$dir/sim.log" &
    user=root
fi
echo $! > "$dir/sim.pid"
for _ in $(seq 50); do grep -q listening "$dir/sim.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$dir/sim.out")
cat > "$dir/env" <<ENV
export SAKURACLOUD_ACCESS_TOKEN=sim-token
export SAKURACLOUD_ACCESS_TOKEN_SECRET=sim-secret
export SAKURACLOUD_API_ROOT_URL=$url/cloud/zone
export FLEET_SAKURA_POLL_MS=500
export FLEET_DEMO_KEY=$dir/id
export FLEET_DEMO_USER=$user
export FLEET_DEMO_SSH_PORT=$server_ssh_port
ENV
cat <<MSG
fleet-sim is serving the Sakura Cloud API on $url$($machines && echo "; servers are machines on docker network $network" || echo ", and sshd plays the booted server").
Walk the ladder:
  source $demo/env
  fleet=target/debug/fleet; f="-f examples/remote/fleet.kdl"
  \$fleet \$f up dev                  # creates the server, boots it, waits for SSH (and, on machines, the engine), starts the containers
  \$fleet \$f status dev
  \$fleet \$f down dev                # containers stop, the server keeps running
  \$fleet \$f down dev --suspend      # powered off: only the disk is billed
  \$fleet \$f up dev                  # boots it again, containers back
  \$fleet \$f down dev --destroy -y   # server and disk deleted
Stop the demo with: scripts/sim-demo.sh stop
MSG
