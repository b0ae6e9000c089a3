#!/usr/bin/env bash
# `flotilla serve` start-up and idle footprint: time from exec to the admin API answering /health,
# and resident memory after it has idled. Runs RUNS times (default 10) and prints each and the
# worst. Release build; loopback only; mDNS on (as a user would run it).
#
#   bench/idle.sh            RUNS=20 IDLE=5 bench/idle.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
ensure_rust
ensure_packages python3
RUNS="${RUNS:-10}"
IDLE="${IDLE:-3}"
cd "$ROOT"
say "building release binary"
cargo build --release --locked -p flotilla-cli --bin flotilla
exec python3 - "${CARGO_TARGET_DIR:-$ROOT/target}/release/flotilla" "$RUNS" "$IDLE" <<'PY'
import json, os, subprocess, sys, tempfile, time, urllib.request

binary, runs, idle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

ready_ms, rss = [], []
for i in range(runs):
    with tempfile.TemporaryDirectory() as d:
        # First run of a data dir creates keys and the database; measure that one too.
        t0 = time.perf_counter()
        p = subprocess.Popen([binary, "serve", "--data-dir", d, "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0", "--log", "warn"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runtime = os.path.join(d, "runtime.json")
        url = None
        while time.perf_counter() - t0 < 10:
            try:
                url = json.load(open(runtime))["admin_url"]
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except Exception:
                time.sleep(0.001)
        ready = (time.perf_counter() - t0) * 1000
        time.sleep(idle)
        r = rss_kib(p.pid)
        p.terminate(); p.wait(timeout=10)
        ready_ms.append(ready); rss.append(r)
        print(f"run {i+1:2}: ready in {ready:6.1f} ms, RSS after {idle:.0f} s idle {r/1024:5.1f} MiB")
print(f"\nworst of {runs}: ready in {max(ready_ms):.1f} ms (median {sorted(ready_ms)[len(ready_ms)//2]:.1f} ms); "
      f"idle RSS {max(rss)/1024:.1f} MiB (median {sorted(rss)[len(rss)//2]/1024:.1f} MiB)")
print("targets: ready < 300 ms, idle RSS < 40 MB")
PY
