#!/usr/bin/env python3
"""Shipping a built service: bytes moved to a server after a one-line change in the last layer of a
~100 MB image, fleet (only the layers the server lacks) against `docker save | ssh docker load`
(today's whole-image path), and a converged `fleet up`.

One machine of the rig (fleet-sim machine mode: a system container with its own engine, installed
by fleet's first `up`). Bytes are measured at the server side: the receive counters of the
machine's network interfaces (/proc/net/dev, loopback excluded), SSH and TCP overhead included,
the same way for both tools. Each run changes one line, builds the release once here, then sends
it with the peer (and removes that tag on the server again) and with `fleet up`, so both start
from the same server state: the previous release there.

Needs: root, docker, mmdebstrap (the server image), a debug build of fleet and fleet-sim.
Usage: bench/ship.py [--runs N] [--mb 100] [--bin target/debug]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time, urllib.request

PROJECT = "benchship"


def sh(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def received(machine):
    total = 0
    for line in sh(["docker", "exec", machine, "cat", "/proc/net/dev"]).splitlines():
        if ":" not in line:
            continue
        name, rest = line.split(":", 1)
        if name.strip() != "lo":
            total += int(rest.split()[0])
    return total


def requests(url):
    with urllib.request.urlopen(f"{url}/_sim/requests") as r:
        return sum(json.load(r).values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--bin", default="target/debug")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fleet = os.path.abspath(os.path.join(args.bin, "fleet"))
    sim_bin = os.path.abspath(os.path.join(args.bin, "fleet-sim"))
    sh([os.path.join(root, "scripts/build-busybox-image.sh")])
    server_image = sh(["bash", os.path.join(root, "scripts/build-server-image.sh")]).strip().splitlines()[-1]
    network = None
    for third in range(60, 250):
        name = f"fleetbench-ship-{os.getpid()}"
        if subprocess.run(["docker", "network", "create", "--subnet", f"172.31.{third}.0/24", name],
                          capture_output=True).returncode == 0:
            network = name
            break
    if network is None:
        sys.exit("no free /24 for the bench rig")
    label = f"fleetflow.rig={network}"
    work = tempfile.mkdtemp(prefix="fleet-bench-ship-")
    key = os.path.join(work, "id")
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    os.makedirs(os.path.join(work, "api"))
    with open(os.path.join(work, "api/Dockerfile"), "w") as f:
        f.write("FROM fleetflow-test/busybox:latest\nCOPY big.bin /data/big.bin\nCOPY app.txt /app/app.txt\n"
                'CMD ["sleep", "100000"]\n')
    with open(os.path.join(work, "api/big.bin"), "wb") as f:
        f.write(os.urandom(args.mb * 1024 * 1024))
    with open(os.path.join(work, "api/app.txt"), "w") as f:
        f.write("line 0\n")
    with open(os.path.join(work, "fleet.kdl"), "w") as f:
        f.write(f'project "{PROJECT}"\nproviders {{ sakura-cloud zone="tk1a" }}\n'
                'service "api" { build "./api"; stop_signal "SIGKILL" }\n'
                f'stage "bench" {{\n    server "m1" {{ provider "sakura-cloud"; ssh-key "{key}.pub"; '
                f'ssh user="ubuntu" port=22 identity="{key}" }}\n    service "api"\n}}\n')
    sim = subprocess.Popen(
        [sim_bin, "--listen", "127.0.0.1:0", "--boot-ms", "500", "--shutdown-ms", "200", "--disk-copy-ms", "300",
         "--machine-image", server_image, "--machine-network", network, "--machine-label", label],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "SAKURACLOUD_ACCESS_TOKEN": "sim-token", "SAKURACLOUD_ACCESS_TOKEN_SECRET": "sim-secret"})
    url = sim.stdout.readline().strip().removeprefix("listening on ")
    env = {**os.environ, "SAKURACLOUD_ACCESS_TOKEN": "sim-token", "SAKURACLOUD_ACCESS_TOKEN_SECRET": "sim-secret",
           "SAKURACLOUD_API_ROOT_URL": f"{url}/cloud/zone", "FLEET_SAKURA_POLL_MS": "100",
           "NO_COLOR": "1", "XDG_STATE_HOME": os.path.join(work, "state")}
    try:
        t0 = time.perf_counter()
        sh([fleet, "up", "bench"], cwd=work, env=env)
        print(f"first up (server, engine, build, every layer sent): {time.perf_counter() - t0:.1f} s", flush=True)
        machine = sh(["docker", "ps", "--filter", f"label={label}", "--format", "{{.Names}}"]).split()[0]
        ip = sh(["docker", "inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}",
                 machine]).strip()
        ssh = ["ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", f"ubuntu@{ip}"]
        converged = []
        for _ in range(args.runs):
            b, c, t = received(machine), requests(url), time.perf_counter()
            out = sh([fleet, "up", "bench"], cwd=work, env=env)
            assert "up to date" in out, out
            converged.append((time.perf_counter() - t, received(machine) - b, requests(url) - c))
        changed = {"fleet": [], "peer": []}
        image_mb = 0.0
        for n in range(1, args.runs + 1):
            with open(os.path.join(work, "api/app.txt"), "w") as f:
                f.write(f"line {n}\n")
            sh([fleet, "build", "bench"], cwd=work, env=env)
            image = sh([fleet, "config", "bench", "--format", "json"], cwd=work, env=env)
            image = json.loads(image)["services"][0]["image"]
            image_mb = int(sh(["docker", "image", "inspect", "-f", "{{.Size}}", image]).strip()) / 1e6
            b, t = received(machine), time.perf_counter()
            save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
            subprocess.run(ssh + ["docker", "load"], stdin=save.stdout, capture_output=True, check=True)
            save.wait()
            changed["peer"].append((time.perf_counter() - t, received(machine) - b))
            sh(["docker", "exec", machine, "docker", "rmi", image])
            b, t = received(machine), time.perf_counter()
            sh([fleet, "up", "bench"], cwd=work, env=env)
            changed["fleet"].append((time.perf_counter() - t, received(machine) - b))
        med = lambda rows, i: statistics.median(r[i] for r in rows)
        print(f"\none-line change in the last layer of a {image_mb:.0f} MB image, {args.runs} runs (medians), "
              "bytes received by the server:")
        print("| path | MB received | % of the image | wall s |")
        print("|---|---|---|---|")
        for tool, name in (("fleet", "fleet up (missing layers only)"), ("peer", "docker save | ssh docker load")):
            mb = med(changed[tool], 1) / 1e6
            print(f"| {name} | {mb:.3f} | {100 * mb / image_mb:.2f} % | {med(changed[tool], 0):.2f} |")
        print(f"\nconverged fleet up, {args.runs} runs (medians): {med(converged, 0):.3f} s, "
              f"{med(converged, 1) / 1e3:.1f} kB received by the server, {med(converged, 2):.0f} cloud API request(s)")
    finally:
        subprocess.run([fleet, "down", "bench", "--destroy", "--yes"], cwd=work, env=env, capture_output=True)
        sim.terminate()
        for name in subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True,
                                   text=True).stdout.split():
            cname = subprocess.run(["docker", "inspect", "-f", "{{.Name}}", name], capture_output=True,
                                   text=True).stdout.strip().lstrip("/")
            subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)
            subprocess.run(["docker", "volume", "rm", "-f", f"{cname}-docker"], capture_output=True)
        subprocess.run(["docker", "network", "rm", network], capture_output=True)
        ids = subprocess.run(["docker", "images", "-q", "--filter", f"label=fleetflow.project={PROJECT}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rmi", "-f", *sorted(set(ids))], capture_output=True)


if __name__ == "__main__":
    main()
