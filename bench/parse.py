#!/usr/bin/env python3
"""Reading a large fleet.kdl: `fleet validate` on generated files of 1,000 and 4,000 services,
side by side with `docker-compose config` on the equivalent docker-compose.yml (both parse and
validate the whole file and touch no engine). Runs alternate; prints the median wall time and
the peak RSS of each, and the ratio fleet / compose. Target: 1,000 services in under 50 ms and
20 MB. Needs: the fleet binary (release), /usr/bin/time; docker-compose is optional.
Usage: bench/parse.py [--runs N] [--fleet target/release/fleet]
"""
import argparse, os, shutil, statistics, subprocess, tempfile


def write(dir_, n):
    kdl = ['project "big"']
    yml = ["services:"]
    for i in range(n):
        dep = f'; depends_on "s{i-1}"' if i % 10 else ""
        kdl.append(
            f'service "s{i}" {{ image "busybox:1.36"; command "sleep 1000"; '
            f'ports {{ port host={10000 + i} container=80 }}; environment {{ A "1"; B "${{B:-x}}" }}{dep} }}'
        )
        yml += [f"  s{i}:", "    image: busybox:1.36", "    command: sleep 1000",
                f"    ports: ['{10000 + i}:80']", "    environment: {A: '1', B: '${B:-x}'}"]
        if i % 10:
            yml.append(f"    depends_on: [s{i-1}]")
    kdl.append('stage "local" {')
    kdl += [f'    service "s{i}"' for i in range(n)]
    kdl.append("}")
    open(os.path.join(dir_, "fleet.kdl"), "w").write("\n".join(kdl) + "\n")
    open(os.path.join(dir_, "docker-compose.yml"), "w").write("\n".join(yml) + "\n")


def measure(cmd, cwd):
    """(seconds, peak RSS in MiB) of one run, from /usr/bin/time."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{cmd} failed: {out.stderr[-500:]}")
    secs, kb = out.stderr.strip().splitlines()[-1].split()
    return float(secs), int(kb) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--fleet", default="target/release/fleet")
    args = ap.parse_args()
    fleet = os.path.abspath(args.fleet)
    compose = shutil.which("docker-compose")
    print(f"{'services':>8}  {'fleet s':>8} {'MiB':>6}  {'compose s':>9} {'MiB':>6}  ratio")
    for n in (1000, 4000):
        with tempfile.TemporaryDirectory() as d:
            write(d, n)
            f, c = [], []
            for _ in range(args.runs):
                f.append(measure([fleet, "validate"], d))
                if compose:
                    c.append(measure([compose, "config", "-q"], d))
            ft, fm = statistics.median(x[0] for x in f), max(x[1] for x in f)
            line = f"{n:>8}  {ft:>8.3f} {fm:>6.1f}"
            if c:
                ct, cm = statistics.median(x[0] for x in c), max(x[1] for x in c)
                line += f"  {ct:>9.3f} {cm:>6.1f}  {ft / ct if ct else float('nan'):.3f}"
            print(line)


if __name__ == "__main__":
    main()
