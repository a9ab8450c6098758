#!/usr/bin/env python3
"""Day-2 operations against their plain-docker equivalents, side by side in one run.

- backup of a 1 GiB named volume: `fleet backup` against
  `docker run --rm -v VOL:/v fleetflow-test/busybox tar c /v | zstd -3`
- restore of it: `fleet restore --yes` (which verifies the whole file first) against
  `zstd -dc | docker run --rm -i -v VOL:/v busybox sh -c 'empty /v; tar x'`
- `fleet exec <stage> db true` against `docker exec CONTAINER true` (hyperfine)

The stage is local; its services are stopped during the volume runs, so both sides copy a volume
nobody writes. Runs alternate tool by tool. The volume is half random bytes (incompressible) and
half repeated text (compressible).

Needs: docker, zstd, hyperfine, the local busybox image (scripts/build-busybox-image.sh), and a
release build of fleet. Usage: bench/ops.py [--runs N] [--bin target/release/fleet]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

IMAGE = "fleetflow-test/busybox:latest"


def sh(cmd, env=None, cwd=None, shell=False):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, shell=shell)
    if p.returncode != 0:
        sys.exit(f"command failed: {cmd}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def timed(cmd, env=None, cwd=None, shell=False):
    t = time.monotonic()
    sh(cmd, env=env, cwd=cwd, shell=shell)
    return time.monotonic() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default="target/release/fleet")
    ap.add_argument("--mib", type=int, default=1024)
    args = ap.parse_args()
    fleet = os.path.abspath(args.bin)
    work = tempfile.mkdtemp(prefix="fleet-bench-ops-")
    project = f"benchops{os.getpid()}"
    with open(os.path.join(work, "fleet.kdl"), "w") as f:
        f.write(f'''project "{project}"
service "db" {{ image "{IMAGE}"; command "sleep" "100000"; stop_signal "SIGKILL"; volumes {{ volume "data" "/data" }} }}
stage "local" {{ service "db" }}
''')
    env = dict(os.environ, NO_COLOR="1", FLEET_LOCK_DIR=os.path.join(work, "locks"))
    vol, container = f"{project}-local-data", f"{project}-local-db"
    half = args.mib // 2
    try:
        sh([fleet, "up", "local"], env=env, cwd=work)
        sh([fleet, "exec", "-T", "local", "db", "sh", "-c",
            f"dd if=/dev/urandom of=/data/random bs=1M count={half} 2>/dev/null; "
            f"yes 'GET /api/v1/items?page=2 200 1234 0.012s' | head -c {half * 1048576} > /data/text"], env=env, cwd=work)
        sh([fleet, "down", "local"], env=env, cwd=work)
        size = args.mib * 1048576
        res = {k: [] for k in ("fleet_backup", "peer_backup", "fleet_restore", "peer_restore")}
        for i in range(args.runs):
            f1, f2 = os.path.join(work, "f.tar"), os.path.join(work, "p.tar.zst")
            for p in (f1, f2):
                if os.path.exists(p):
                    os.remove(p)
            res["fleet_backup"].append(timed([fleet, "-q", "backup", "local", "-o", f1], env=env, cwd=work))
            res["peer_backup"].append(timed(f"docker run --rm -v {vol}:/v {IMAGE} tar c /v | zstd -q -3 -o {f2}", shell=True))
            res["fleet_restore"].append(timed([fleet, "-q", "restore", "local", f1, "--yes"], env=env, cwd=work))
            res["peer_restore"].append(timed(
                f"zstd -dc {f2} | docker run --rm -i -v {vol}:/v {IMAGE} sh -c "
                "'rm -rf /v/..?* /v/.[!.]* /v/*; tar x -C /'", shell=True))
            print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in res.items()), file=sys.stderr)
        sizes = (os.path.getsize(f1), os.path.getsize(f2))
        sh([fleet, "up", "local"], env=env, cwd=work)
        hf = os.path.join(work, "hf.json")
        sh(["hyperfine", "-N", "--warmup", "5", "--runs", "40", "--export-json", hf,
            f"{fleet} exec -T local db true", f"docker exec {container} true"], env=env, cwd=work)
        with open(hf) as f:
            exec_res = [r["median"] for r in json.load(f)["results"]]
    finally:
        subprocess.run([fleet, "down", "local", "--destroy", "--volumes", "--yes"], env=env, cwd=work, capture_output=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    mb = size / 1e6
    print(f"volume: {args.mib} MiB (half random, half text); files: fleet {sizes[0] / 1e6:.0f} MB, peer {sizes[1] / 1e6:.0f} MB")
    print("| operation | fleet | docker + zstd | ratio (fleet / peer) |")
    print("|---|---|---|---|")
    for op in ("backup", "restore"):
        f, p = med[f"fleet_{op}"], med[f"peer_{op}"]
        print(f"| {op} of a {args.mib} MiB volume | {f:.2f} s ({mb / f:.0f} MB/s) | {p:.2f} s ({mb / p:.0f} MB/s) | {f / p:.2f} |")
    print(f"| exec `true` round trip (median) | {exec_res[0] * 1000:.1f} ms | {exec_res[1] * 1000:.1f} ms (docker exec) | {exec_res[0] / exec_res[1]:.2f} |")


if __name__ == "__main__":
    main()
