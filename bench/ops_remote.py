#!/usr/bin/env python3
"""Backup and restore of a 1 GiB volume of a *remote* stage against the plain ssh equivalent,
side by side in one run (bench/ops.py does the local stage).

The server is a machine of the rig (fleet-sim machine mode: a system container with sshd and its
own engine, on a network of its own). Both sides go from this machine over SSH to that server:

- backup: `fleet backup dev -o FILE` against
  `ssh ubuntu@SERVER docker run --rm -v VOL:/v busybox tar c /v | zstd -3 -o FILE`
- restore: `fleet restore dev FILE --yes` (verifies the whole file first) against
  `zstd -dc FILE | ssh ubuntu@SERVER docker run --rm -i -v VOL:/v busybox sh -c 'empty /v; tar x -C /'`

The service is stopped during the volume runs (`fleet down dev` keeps the server and its volume),
so both sides copy a volume nobody writes. Runs alternate tool by tool. The volume is half random
bytes (incompressible) and half repeated text (compressible), as in bench/ops.py.

Needs: root, docker, zstd, mmdebstrap (the server image), the busybox image, and a release build
of fleet and fleet-sim. Usage: bench/ops_remote.py [--runs N] [--bin target/release] [--mib 1024]
"""
import argparse, os, statistics, subprocess, sys, tempfile, time

IMAGE = "fleetflow-test/busybox:latest"
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]


def sh(cmd, shell=False, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, shell=shell, **kw)
    if p.returncode != 0:
        sys.exit(f"command failed: {cmd}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def timed(cmd, shell=False, **kw):
    t = time.monotonic()
    sh(cmd, shell=shell, **kw)
    return time.monotonic() - t


def free_network():
    name = f"fleetbench-ops-{os.getpid()}"
    for third in range(60, 250):
        p = subprocess.run(["docker", "network", "create", "--subnet", f"172.31.{third}.0/24", name],
                           capture_output=True, text=True)
        if p.returncode == 0:
            return name
    sys.exit("no free /24 for the bench rig")


def start_sim(sim_bin, server_image, network, label):
    creds = {"SAKURACLOUD_ACCESS_TOKEN": "sim-token", "SAKURACLOUD_ACCESS_TOKEN_SECRET": "sim-secret"}
    sim = subprocess.Popen(
        [sim_bin, "--listen", "127.0.0.1:0", "--boot-ms", "500", "--shutdown-ms", "200", "--disk-copy-ms", "300",
         "--machine-image", server_image, "--machine-network", network, "--machine-label", label],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, **creds})
    url = sim.stdout.readline().strip().removeprefix("listening on ")
    return sim, {**creds, "SAKURACLOUD_API_ROOT_URL": f"{url}/cloud/zone", "FLEET_SAKURA_POLL_MS": "100"}


def kdl(project, key):
    return f'''project "{project}"
providers {{ sakura-cloud zone="tk1a" }}
service "db" {{ image "{IMAGE}"; command "sleep" "100000"; stop_signal "SIGKILL"; volumes {{ volume "data" "/data" }} }}
stage "dev" {{
    server "m1" {{ provider "sakura-cloud"; ssh-key "{key}.pub"; ssh user="ubuntu" port=22 identity="{key}" }}
    service "db"
}}
'''


def measure(fleet, work, env, ssh, vol, runs):
    res = {k: [] for k in ("fleet_backup", "peer_backup", "fleet_restore", "peer_restore")}
    f1, f2 = os.path.join(work, "f.tar"), os.path.join(work, "p.tar.zst")
    for i in range(runs):
        for p in (f1, f2):
            if os.path.exists(p):
                os.remove(p)
        res["fleet_backup"].append(timed([fleet, "-q", "backup", "dev", "-o", f1], env=env, cwd=work))
        res["peer_backup"].append(timed(f"{ssh} docker run --rm -v {vol}:/v {IMAGE} tar c /v | zstd -q -3 -o {f2}",
                                        shell=True))
        res["fleet_restore"].append(timed([fleet, "-q", "restore", "dev", f1, "--yes"], env=env, cwd=work))
        res["peer_restore"].append(timed(
            f"zstd -dc {f2} | {ssh} docker run --rm -i -v {vol}:/v {IMAGE} sh -c "
            "\"'rm -rf /v/..?* /v/.[!.]* /v/*; tar x -C /'\"", shell=True))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in res.items()), file=sys.stderr)
    return res, (os.path.getsize(f1), os.path.getsize(f2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--mib", type=int, default=1024)
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fleet = os.path.abspath(os.path.join(args.bin, "fleet"))
    server_image = sh(["bash", os.path.join(root, "scripts/build-server-image.sh")]).strip().splitlines()[-1]
    network = free_network()
    label = f"fleetflow.rig={network}"
    work = tempfile.mkdtemp(prefix="fleet-bench-ops-remote-")
    key = os.path.join(work, "id")
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    sim, sim_env = start_sim(os.path.abspath(os.path.join(args.bin, "fleet-sim")), server_image, network, label)
    project = f"benchopsr{os.getpid()}"
    with open(os.path.join(work, "fleet.kdl"), "w") as f:
        f.write(kdl(project, key))
    env = {**os.environ, **sim_env, "NO_COLOR": "1", "XDG_STATE_HOME": os.path.join(work, "state"),
           "FLEET_LOCK_DIR": os.path.join(work, "locks")}
    half = args.mib // 2
    try:
        sh([fleet, "up", "dev"], env=env, cwd=work)
        machine = sh(["docker", "ps", "--filter", f"label={label}", "--format", "{{.Names}}"]).split()[0]
        ip = sh(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", machine]).strip()
        ssh = " ".join(["ssh", "-i", key, *SSH_OPTS, f"ubuntu@{ip}"])
        sh([fleet, "exec", "-T", "dev", "db", "sh", "-c",
            f"dd if=/dev/urandom of=/data/random bs=1M count={half} 2>/dev/null; "
            f"yes 'GET /api/v1/items?page=2 200 1234 0.012s' | head -c {half * 1048576} > /data/text"], env=env, cwd=work)
        sh([fleet, "down", "dev"], env=env, cwd=work)
        res, sizes = measure(fleet, work, env, ssh, f"{project}-dev-data", args.runs)
    finally:
        subprocess.run([fleet, "down", "dev", "--destroy", "--yes"], env=env, cwd=work, capture_output=True)
        sim.terminate()
        for name in subprocess.run(["docker", "ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}"],
                                   capture_output=True, text=True).stdout.split():
            subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)
            subprocess.run(["docker", "volume", "rm", "-f", f"{name}-docker"], capture_output=True)
        subprocess.run(["docker", "network", "rm", network], capture_output=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    mb = args.mib * 1048576 / 1e6
    print(f"volume: {args.mib} MiB (half random, half text) on a rig server; files: fleet {sizes[0] / 1e6:.0f} MB, "
          f"peer {sizes[1] / 1e6:.0f} MB")
    print("| operation (remote stage, over SSH) | fleet | ssh + docker + zstd | ratio (fleet / peer) |")
    print("|---|---|---|---|")
    for op in ("backup", "restore"):
        f, p = med[f"fleet_{op}"], med[f"peer_{op}"]
        print(f"| {op} of a {args.mib} MiB volume | {f:.2f} s ({mb / f:.0f} MB/s) | {p:.2f} s ({mb / p:.0f} MB/s) "
              f"| {f / p:.2f} |")


if __name__ == "__main__":
    main()
