#!/usr/bin/env python3
"""Side-by-side benchmark: the same 10-service stack through `fleet` and Debian's docker-compose.

Runs alternate (fleet, compose, fleet, compose, ...) so machine noise hits both alike, and prints
medians and ratios (fleet / compose; below 1.0 means fleet is faster) for:
  fresh up, converged up, down (containers stop at once), down (PID 1 ignores SIGTERM),
plus peak RSS of each tool. Needs: docker, docker-compose, the fleet binary (built in release).
Usage: bench/compare.py [--runs N] [--fleet target/release/fleet] [--prefix bench] [--up-only]
  --prefix names the two projects (<prefix>f, <prefix>c), so two people on one engine do not collide;
  --up-only skips the SIGTERM-ignoring pass (the one that takes seconds of grace per run).
The engine floor row is the same fresh up done with the least work any client can ask of the
engine (every container created at once, then started at once, over raw Engine API calls): what
neither tool can go under on this engine.
"""
import argparse, http.client, json, os, shutil, socket, statistics, subprocess, sys, tempfile, threading, time

IMAGE = "fleetflow-test/busybox:latest"
GRACE = 2  # seconds of stop grace for the SIGTERM-ignoring case

# 10 services, dependency depth 3: 4 bases, 3 middles, 2 fronts, 1 edge.
SERVICES = {
    "db1": [], "db2": [], "cache1": [], "cache2": [],
    "api1": ["db1", "cache1"], "api2": ["db2", "cache2"], "worker": ["db1"],
    "web1": ["api1"], "web2": ["api2"],
    "edge": ["web1", "web2"],
}

def fleet_kdl(project, stop_at_once):
    out = [f'project "{project}"']
    for name, deps in SERVICES.items():
        body = [f'image "{IMAGE}"', 'command "sleep" "100000"']
        if deps:
            body.append("depends_on " + " ".join(f'"{d}"' for d in deps))
        body.append('stop_signal "SIGKILL"' if stop_at_once else f"stop_timeout {GRACE}")
        out.append(f'service "{name}" {{ {"; ".join(body)} }}')
    out.append('stage "bench" { service ' + " ".join(f'"{n}"' for n in SERVICES) + " }")
    return "\n".join(out) + "\n"

def compose_yml(stop_at_once):
    out = ['version: "2.4"', "services:"]
    for name, deps in SERVICES.items():
        out += [f"  {name}:", f"    image: {IMAGE}", '    command: ["sleep", "100000"]']
        if deps:
            out.append("    depends_on: [" + ", ".join(deps) + "]")
        out.append("    stop_signal: SIGKILL" if stop_at_once else f"    stop_grace_period: {GRACE}s")
    return "\n".join(out) + "\n"

def timed(cmd, cwd, env):
    """Wall seconds and peak RSS (KiB) of one command; fails loudly on a non-zero exit."""
    start = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    rss = int(p.stderr.strip().splitlines()[-1])
    return wall, rss

class EngineConnection(http.client.HTTPConnection):
    """One HTTP connection to the local engine's socket (what every client of the Engine API uses)."""

    def __init__(self, path="/var/run/docker.sock"):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def engine(method, url, body=None):
    conn = EngineConnection()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, url, json.dumps(body) if body is not None else None, headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    if r.status >= 300 and r.status != 304:
        sys.exit(f"engine {method} {url}: {r.status} {data[:200]!r}")
    return json.loads(data) if data else None


def parallel(jobs):
    errors = []
    def run(job):
        try:
            job()
        except BaseException as e:  # sys.exit in a thread: carry it to the caller
            errors.append(e)
    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def floor_up(project):
    """The engine's floor for the same fresh up: one network, every container created at once and
    started at once, no dependency order, no check after start. No client can do less work."""
    net = f"{project}-net"
    engine("POST", "/networks/create", {"Name": net, "Driver": "bridge"})
    def create(name):
        return lambda: engine("POST", f"/containers/create?name={project}-{name}",
                              {"Image": IMAGE, "Cmd": ["sleep", "100000"], "StopSignal": "SIGKILL",
                               "HostConfig": {"NetworkMode": net}})
    parallel([create(n) for n in SERVICES])
    parallel([(lambda n=n: engine("POST", f"/containers/{project}-{n}/start")) for n in SERVICES])


def floor_destroy(project):
    for n in SERVICES:
        subprocess.run(["docker", "rm", "-f", f"{project}-{n}"], capture_output=True)
    subprocess.run(["docker", "network", "rm", f"{project}-net"], capture_output=True)


def timed_floor(project):
    floor_destroy(project)
    start = time.perf_counter()
    floor_up(project)
    wall = time.perf_counter() - start
    floor_destroy(project)
    return wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--fleet", default="target/release/fleet")
    ap.add_argument("--prefix", default="bench")
    ap.add_argument("--up-only", action="store_true")
    ap.add_argument("--converged", type=int, default=3, help="converged ups per run (each is cheap)")
    args = ap.parse_args()
    fleet = os.path.abspath(args.fleet)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([os.path.join(root, "scripts/build-busybox-image.sh")], check=True)
    if not shutil.which("docker-compose"):
        sys.exit("docker-compose is needed (apt-get install docker-compose)")
    env = dict(os.environ, NO_COLOR="1")

    results = {}  # (scenario, tool) -> [seconds]
    rss = {"fleet": 0, "compose": 0}
    fp, cp = args.prefix + "f", args.prefix + "c"
    for stop_at_once in (True,) if args.up_only else (True, False):
        kind = "stops at once" if stop_at_once else f"ignores SIGTERM ({GRACE}s grace)"
        with tempfile.TemporaryDirectory() as fd, tempfile.TemporaryDirectory() as cd:
            open(os.path.join(fd, "fleet.kdl"), "w").write(fleet_kdl(fp, stop_at_once))
            open(os.path.join(cd, "docker-compose.yml"), "w").write(compose_yml(stop_at_once))
            tools = {
                "fleet": dict(cwd=fd, up=[fleet, "up", "bench"], down=[fleet, "down", "bench"],
                              destroy=[fleet, "down", "bench", "--destroy", "--yes"]),
                "compose": dict(cwd=cd, up=["docker-compose", "-p", cp, "up", "-d"],
                                down=["docker-compose", "-p", cp, "stop"],
                                destroy=["docker-compose", "-p", cp, "down"]),
            }
            for _ in range(args.runs):
                for tool, t in tools.items():
                    subprocess.run(t["destroy"], cwd=t["cwd"], env=env, capture_output=True)
                    scenarios = [("fresh up", "up"), ("converged up", "up"), (f"down, {kind}", "down")]
                    if not stop_at_once:
                        scenarios = [("fresh up", "up"), (f"down, {kind}", "down")]
                    for label, step in scenarios:
                        if not stop_at_once and label == "fresh up":
                            timed(t[step], t["cwd"], env)  # setup only; measured in the first pass
                            continue
                        for _ in range(args.converged if label == "converged up" else 1):
                            wall, peak = timed(t[step], t["cwd"], env)
                            results.setdefault((label, tool), []).append(wall)
                            rss[tool] = max(rss[tool], peak)
                    subprocess.run(t["destroy"], cwd=t["cwd"], env=env, capture_output=True)
                if stop_at_once:
                    results.setdefault(("fresh up", "floor"), []).append(timed_floor(args.prefix + "x"))

    print(f"{'operation':40} {'fleet s':>9} {'compose s':>10} {'ratio':>7}  spread (min-max) fleet | compose")
    labels = []
    for (label, _tool) in results:
        if label not in labels:
            labels.append(label)
    for label in labels:
        f = statistics.median(results[(label, "fleet")])
        c = statistics.median(results[(label, "compose")])
        fr, cr = results[(label, "fleet")], results[(label, "compose")]
        spread = f"{min(fr):.3f}-{max(fr):.3f} | {min(cr):.3f}-{max(cr):.3f}"
        print(f"{label:40} {f:9.3f} {c:10.3f} {f / c:7.3f}  {spread}")
    floor = results[("fresh up", "floor")]
    f = statistics.median(results[("fresh up", "fleet")])
    c = statistics.median(results[("fresh up", "compose")])
    fl = statistics.median(floor)
    print(f"{'fresh up, engine floor (no order, no check)':40} {fl:9.3f} {'':10} {fl / c:7.3f}  {min(floor):.3f}-{max(floor):.3f}")
    print(f"  fleet above the floor: {f - fl:.3f} s; compose above it: {c - fl:.3f} s; "
          f"0.6 x compose would be {0.6 * c:.3f} s")
    print(f"{'peak RSS (MiB)':40} {rss['fleet'] / 1024:9.1f} {rss['compose'] / 1024:10.1f} {rss['fleet'] / rss['compose']:7.3f}")
    print(f"medians of {args.runs} alternating runs; ratio = fleet / docker-compose")

if __name__ == "__main__":
    main()
