#!/usr/bin/env python3
"""Converged `up` of a 3-node, 5-service swarm stage against `docker stack deploy` of the same stack.

Both run against the same three machines (fleet-sim machine mode: each server a system container
with its own engine, the swarm formed by fleet's first `up`). fleet runs here and reaches the
nodes over SSH; `docker stack deploy` runs twice: from this machine through
`DOCKER_HOST=ssh://ubuntu@<manager>` (what a user does from a laptop, as fleet does), and on the
manager itself (no SSH at all, the floor). Runs alternate tool by tool. Engine API calls are counted by the engines themselves: dockerd runs
with debug logging on every node and logs one "Calling METHOD /path" line per request, so both
tools are counted the same way, on all nodes.

Needs: root, docker, mmdebstrap (the server image), a build of fleet and fleet-sim (release: what users run).
Usage: bench/swarm.py [--runs N] [--bin target/release] [--baseline OTHER/fleet] [--rig-name NAME] [--keep-seconds S]
(--baseline: an earlier build's fleet, run in the same alternation, for a before/after figure.)
"""
import argparse, os, re, socket, statistics, subprocess, sys, tempfile, time

IMAGE = "fleetflow-test/busybox:latest"
# 5 services: db pinned to node-3, the rest anywhere; all reached by name (dnsrr: no IPVS here).
SERVICES = [
    ("db", 1, [], "node-3"),
    ("cache", 1, [], None),
    ("api", 2, ["db", "cache"], None),
    ("worker", 1, ["db"], None),
    ("web", 2, ["api"], None),
]


def sh(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def fleet_kdl(key):
    out = ['project "benchswarm"', 'providers { sakura-cloud zone="tk1a" }']
    for name, replicas, deps, _ in SERVICES:
        body = [f'image "{IMAGE}"', 'command "sleep" "100000"', 'stop_signal "SIGKILL"', 'endpoint_mode "dnsrr"']
        if replicas != 1:
            body.append(f"replicas {replicas}")
        if deps:
            body.append("depends_on " + " ".join(f'"{d}"' for d in deps))
        out.append(f'service "{name}" {{ {"; ".join(body)} }}')
    servers = []
    for n in (1, 2, 3):
        extra = 'role "manager"; ' if n == 1 else ""
        pinned = [s for s, _, _, where in SERVICES if where == f"node-{n}"]
        if pinned:
            extra += "services " + " ".join(f'"{s}"' for s in pinned) + "; "
        servers.append(
            f'server "node-{n}" {{ provider "sakura-cloud"; ssh-key "{key}.pub"; '
            f'ssh user="ubuntu" port=22 identity="{key}"; {extra}}}'
        )
    out.append('stage "bench" {\n    orchestrator "swarm"\n    ' + "\n    ".join(servers) + "\n    service "
               + " ".join(f'"{s[0]}"' for s in SERVICES) + "\n}")
    return "\n".join(out) + "\n"


def stack_yml():
    out = ['version: "3.8"', "services:"]
    for name, replicas, _, where in SERVICES:
        out += [f"  {name}:", f"    image: {IMAGE}", '    command: ["sleep", "100000"]', "    stop_signal: SIGKILL",
                "    deploy:", f"      replicas: {replicas}", "      endpoint_mode: dnsrr"]
        if where:
            out += ["      placement:", f"        constraints: [node.labels.fleetflow.server == {where}]"]
    return "\n".join(out) + "\n"


def free_subnet(prefix):
    for third in range(60, 250):
        name = f"{prefix}-{os.getpid()}"
        p = subprocess.run(["docker", "network", "create", "--subnet", f"172.31.{third}.0/24", name],
                           capture_output=True, text=True)
        if p.returncode == 0:
            return name
    sys.exit("no free /24 for the bench rig")


def calls_since(machines, since):
    """Engine API requests logged by every node's dockerd since `since` (epoch seconds)."""
    total, mutating = 0, 0
    for m in machines:
        log = sh(["docker", "exec", m, "journalctl", "-u", "docker", "-o", "cat", "--since", f"@{since:.3f}"])
        for line in log.splitlines():
            hit = re.search(r'Calling (GET|POST|PUT|DELETE|HEAD) ', line)
            if hit:
                total += 1
                mutating += hit.group(1) != "GET" and hit.group(1) != "HEAD"
    return total, mutating


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--baseline", help="another fleet binary (an earlier build), run alongside")
    ap.add_argument("--rig-name", default="fleetbench", help="prefix of the rig's docker network and machines")
    ap.add_argument("--keep-seconds", type=int, default=0,
                    help="keep the rig this long after the runs (its work dir and environment are printed)")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fleet = os.path.abspath(os.path.join(args.bin, "fleet"))
    sim_bin = os.path.abspath(os.path.join(args.bin, "fleet-sim"))
    sh([os.path.join(root, "scripts/build-busybox-image.sh")])
    server_image = sh(["bash", os.path.join(root, "scripts/build-server-image.sh")]).strip().splitlines()[-1]
    network = free_subnet(args.rig_name)
    label = f"fleetflow.rig={network}"
    work = tempfile.mkdtemp(prefix="fleet-bench-swarm-")
    key = os.path.join(work, "id")
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    sim = subprocess.Popen(
        [sim_bin, "--listen", "127.0.0.1:0", "--boot-ms", "500", "--shutdown-ms", "200", "--disk-copy-ms", "300",
         "--machine-image", server_image, "--machine-network", network, "--machine-label", label],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "SAKURACLOUD_ACCESS_TOKEN": "sim-token", "SAKURACLOUD_ACCESS_TOKEN_SECRET": "sim-secret"})
    url = sim.stdout.readline().strip().removeprefix("listening on ")
    env = {**os.environ, "SAKURACLOUD_ACCESS_TOKEN": "sim-token", "SAKURACLOUD_ACCESS_TOKEN_SECRET": "sim-secret",
           "SAKURACLOUD_API_ROOT_URL": f"{url}/cloud/zone", "FLEET_SAKURA_POLL_MS": "100",
           "NO_COLOR": "1", "XDG_STATE_HOME": os.path.join(work, "state")}
    with open(os.path.join(work, "fleet.kdl"), "w") as f:
        f.write(fleet_kdl(key))
    try:
        t0 = time.perf_counter()
        sh([fleet, "up", "bench"], cwd=work, env=env)
        print(f"first up (3 servers, engines, swarm, 5 services): {time.perf_counter() - t0:.1f} s", flush=True)
        machines = sh(["docker", "ps", "--filter", f"label={label}", "--format", "{{.Names}}"]).split()
        # Debug logging on every node's engine (one line per API request), then a warm-up of both.
        for m in machines:
            sh(["docker", "exec", m, "sh", "-c", "echo '{\"debug\": true}' > /etc/docker/daemon.json && systemctl restart docker"])
        manager = None
        for m in machines:
            if "true" in sh(["docker", "exec", m, "docker", "info", "-f", "{{.Swarm.ControlAvailable}}"]):
                manager = m
        deadline = time.time() + 120
        while time.time() < deadline:
            ready = sh(["docker", "exec", manager, "docker", "node", "ls", "--format", "{{.Status}}"]).split()
            if ready.count("Ready") == 3:
                break
            time.sleep(1)
        sh([fleet, "up", "bench"], cwd=work, env=env)
        with open(os.path.join(work, "stack.yml"), "w") as f:
            f.write(stack_yml())
        sh(["docker", "cp", os.path.join(work, "stack.yml"), f"{manager}:/root/stack.yml"])
        stack = ["docker", "exec", manager, "docker", "stack", "deploy", "--resolve-image", "never", "-c",
                 "/root/stack.yml", "peer"]
        sh(stack)
        # The same deploy from here through SSH, with the bench key (an `ssh` on PATH that uses it).
        manager_ip = sh(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                         manager]).strip()
        bindir = os.path.join(work, "bin")
        os.makedirs(bindir)
        with open(os.path.join(bindir, "ssh"), "w") as f:
            f.write(f'#!/bin/sh\nexec /usr/bin/ssh -i {key} -o StrictHostKeyChecking=no '
                    f'-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "$@"\n')
        os.chmod(os.path.join(bindir, "ssh"), 0o755)
        ssh_env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "DOCKER_HOST": f"ssh://ubuntu@{manager_ip}"}
        stack_ssh = ["docker", "stack", "deploy", "--resolve-image", "never", "-c",
                     os.path.join(work, "stack.yml"), "peer"]
        sh(stack_ssh, env=ssh_env)
        time.sleep(5)
        tools = ("fleet", "baseline", "stack-ssh", "stack") if args.baseline else ("fleet", "stack-ssh", "stack")
        results = {tool: [] for tool in tools}
        for _ in range(args.runs):
            for tool in tools:
                since = time.time()
                time.sleep(0.05)
                start = time.perf_counter()
                if tool in ("fleet", "baseline"):
                    out = sh([fleet if tool == "fleet" else os.path.abspath(args.baseline), "up", "bench"], cwd=work, env=env)
                    assert "up to date" in out, out
                elif tool == "stack-ssh":
                    sh(stack_ssh, env=ssh_env)
                else:
                    sh(stack)
                wall = time.perf_counter() - start
                time.sleep(0.5)  # the journal flushes
                calls, mutating = calls_since(machines, since)
                results[tool].append((wall, calls, mutating))
        print(f"converged up of a 3-node, 5-service swarm stage, {args.runs} alternating runs (medians), "
              f"load average {open('/proc/loadavg').read().split()[0]}:")
        print("| tool | wall s | Engine API calls (all nodes) | of them mutating |")
        print("|---|---|---|---|")
        names = (("fleet", "fleet up (over SSH from here)"), ("baseline", "fleet up, --baseline build"),
                 ("stack-ssh", "docker stack deploy (DOCKER_HOST=ssh:// from here)"),
                 ("stack", "docker stack deploy (on the manager)"))
        for tool, name in (n for n in names if n[0] in results):
            r = results[tool]
            print(f"| {name} | {statistics.median(x[0] for x in r):.3f} | {statistics.median(x[1] for x in r):.0f} | "
                  f"{statistics.median(x[2] for x in r):.0f} |")
        f = statistics.median(x[0] for x in results["fleet"])
        for tool in ("baseline", "stack-ssh", "stack")[0 if args.baseline else 1:]:
            s = statistics.median(x[0] for x in results[tool])
            print(f"ratio fleet / {tool} (wall): {f / s:.2f}")
        if args.keep_seconds:
            print(f"rig kept for {args.keep_seconds} s: cd {work}; env:", flush=True)
            for k in ("SAKURACLOUD_API_ROOT_URL", "XDG_STATE_HOME"):
                print(f"  {k}={env[k]}", flush=True)
            time.sleep(args.keep_seconds)
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


if __name__ == "__main__":
    main()
