#!/usr/bin/env python3
"""A web service's replacement under load: fleet's proxy (start-before-stop, health-gated switch)
against docker-compose recreating the same service published on a port (stop, then start).

Both run the same busybox httpd service on this machine's engine, changing one environment
variable (the version) per run, while a client keeps requesting `/` over HTTP as fast as it can
(one connection per request, 2 s timeout). Per run: the wall time of the `up` that replaces the
service, the requests answered 200 during it, and the requests that failed (no answer, or not
200). Runs alternate tool by tool. fleet's drain is set to 1s (the default 30s is a grace period,
not work).

Needs: docker, docker-compose, the fleetflow-test images (scripts/build-busybox-image.sh,
scripts/build-caddy-image.sh), a build of fleet.
Usage: bench/proxy.py [--runs N] [--bin target/release]
"""
import argparse, os, socket, statistics, subprocess, sys, tempfile, threading, time

IMAGE = "fleetflow-test/busybox:latest"
CMD = "mkdir -p /w && echo $VERSION > /w/index.html && sleep 1 && echo ok > /w/up && exec httpd -f -p 8080 -h /w"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(cmd, env=None, cwd=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if p.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def fetch(port, host):
    """The body of a 200 answer to `GET /`, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        if data.split(b" ", 2)[1] != b"200":
            return None
        return data.split(b"\r\n\r\n", 1)[1].decode().strip()
    except (OSError, IndexError):
        return None


def get(port, host):
    return fetch(port, host) is not None


class Load:
    """Requests in a loop on a thread: counts answers and failures until stopped."""

    def __init__(self, port, host):
        self.port, self.host, self.ok, self.failed, self.stop = port, host, 0, 0, False
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.stop:
            if get(self.port, self.host):
                self.ok += 1
            else:
                self.failed += 1

    def finish(self):
        self.stop = True
        self.thread.join()
        return self.ok, self.failed


def fleet_project(d, port):
    kdl = f'''project "benchproxy"
service "web" {{
    image "{IMAGE}"
    command "sh" "-c" "{CMD}"
    environment {{ VERSION "${{VERSION:-v0}}" }}
    route "shop.test" port=8080 drain="1s"
    stop_signal "SIGKILL"
}}
stage "local" {{
    service "web"
    proxy {{ image "fleetflow-test/caddy:2"; tls #false; http_port {port} }}
}}
'''
    open(os.path.join(d, "fleet.kdl"), "w").write(kdl)


def compose_project(d, port):
    yml = f'''services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "{CMD.replace("$", "$$")}"]
    environment:
      VERSION: ${{VERSION:-v0}}
    ports: ["127.0.0.1:{port}:8080"]
    stop_signal: SIGKILL
'''
    open(os.path.join(d, "docker-compose.yml"), "w").write(yml)


def measure(cmd, cwd, env, port, host):
    """(wall time of the up, until the new version answers, requests served, requests failed):
    the load runs from before the up until the new version answers, so an outage after the tool
    returns is counted too."""
    load = Load(port, host)
    time.sleep(0.5)
    started = time.monotonic()
    sh(cmd, env=env, cwd=cwd)
    took = time.monotonic() - started
    deadline = time.monotonic() + 30
    while fetch(port, host) != env["VERSION"] and time.monotonic() < deadline:
        time.sleep(0.05)
    serving = time.monotonic() - started
    ok, failed = load.finish()
    return took, serving, ok, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default="target/release")
    a = ap.parse_args()
    fleet = os.path.abspath(os.path.join(a.bin, "fleet"))
    results = {"fleet": [], "docker-compose": []}
    with tempfile.TemporaryDirectory() as fd, tempfile.TemporaryDirectory() as cd:
        fport, cport = free_port(), free_port()
        fleet_project(fd, fport)
        compose_project(cd, cport)
        base = dict(os.environ, NO_COLOR="1", FLEET_LOCK_DIR=os.path.join(fd, ".locks"))
        cenv = dict(os.environ, COMPOSE_PROJECT_NAME="benchproxy-compose")
        try:
            sh([fleet, "up", "local"], env=dict(base, VERSION="v0"), cwd=fd)
            sh(["docker-compose", "up", "-d"], env=dict(cenv, VERSION="v0"), cwd=cd)
            time.sleep(2)
            for run in range(1, a.runs + 1):
                v = f"v{run}"
                results["fleet"].append(measure([fleet, "up", "local"], fd, dict(base, VERSION=v), fport, "shop.test"))
                results["docker-compose"].append(
                    measure(["docker-compose", "up", "-d"], cd, dict(cenv, VERSION=v), cport, "localhost")
                )
                # compose's new container answers a second after its start: let it, before the next run.
                time.sleep(2)
        finally:
            subprocess.run([fleet, "down", "local", "--destroy", "--volumes", "--yes"], env=base, cwd=fd,
                           capture_output=True)
            subprocess.run(["docker-compose", "down", "-v"], env=cenv, cwd=cd, capture_output=True)
    print(f"{'tool':22} {'up (s)':>8} {'new serves (s)':>15} {'served':>8} {'failed':>8}")
    for tool, rows in results.items():
        for took, serving, ok, failed in rows:
            print(f"{tool:22} {took:8.2f} {serving:15.2f} {ok:8d} {failed:8d}")
        med = lambda i: statistics.median(r[i] for r in rows)
        print(f"{tool + ' median':22} {med(0):8.2f} {med(1):15.2f} {med(2):8.0f} {med(3):8.0f}")


if __name__ == "__main__":
    main()
