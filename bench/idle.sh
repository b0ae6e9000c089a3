#!/usr/bin/env bash
# `flotilla serve` start-up and idle footprint: time from exec to the admin API answering /health,
# and resident memory after it has idled. Runs RUNS times (default 10) and prints each, the
# worst and the load average; a run that never gets ready or exits counts as a failure, not a
# figure. Exits 1 on a failed run or a missed target. Release build; loopback only; mDNS on (as a
# user would run it).
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
READY_LIMIT_S = 10
TARGET_READY_MS, TARGET_RSS_MIB = 300, 40 * 1000 * 1000 / 1024 / 1024  # 40 MB

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS (the process is gone)")

def load():
    return open("/proc/loadavg").read().split()[0]

ready_ms, rss, loads, failures = [], [], [], []
for i in range(runs):
    with tempfile.TemporaryDirectory() as d:
        loads.append(float(load()))
        # First run of a data dir creates keys and the database; measure that one too.
        t0 = time.perf_counter()
        p = subprocess.Popen([binary, "serve", "--data-dir", d, "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0", "--https", "127.0.0.1:0", "--mqtt-tls-listen", "127.0.0.1:0", "--log", "warn"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        runtime = os.path.join(d, "runtime.json")
        ready = None
        while time.perf_counter() - t0 < READY_LIMIT_S and p.poll() is None:
            try:
                url = json.load(open(runtime))["admin_url"]
                urllib.request.urlopen(url + "/health", timeout=1).read()
                ready = (time.perf_counter() - t0) * 1000
                break
            except Exception:
                time.sleep(0.001)
        if ready is None:
            # Never ready, or exited: a failed run, not a figure.
            p.kill()
            err = p.communicate(timeout=10)[1].decode(errors="replace").strip().splitlines()[-3:]
            failures.append(f"run {i+1}: not ready within {READY_LIMIT_S} s (exit {p.returncode}): {' / '.join(err)}")
            print(f"run {i+1:2}: FAILED — {failures[-1]}")
            continue
        time.sleep(idle)
        if p.poll() is not None:
            failures.append(f"run {i+1}: exited with {p.returncode} while idle")
            print(f"run {i+1:2}: FAILED — {failures[-1]}")
            continue
        r = rss_kib(p.pid)
        p.terminate()
        code = p.wait(timeout=10)
        if code not in (0, -15):
            failures.append(f"run {i+1}: stopped with {code}")
        ready_ms.append(ready); rss.append(r)
        print(f"run {i+1:2}: ready in {ready:6.1f} ms, RSS after {idle:.0f} s idle {r/1024:5.1f} MiB (load average {loads[-1]:.2f})")
if not ready_ms:
    sys.exit("every run failed: " + "; ".join(failures))
worst_ready, worst_rss = max(ready_ms), max(rss) / 1024
print(f"\nworst of {len(ready_ms)} (load average {min(loads):.2f}–{max(loads):.2f}): ready in {worst_ready:.1f} ms "
      f"(median {sorted(ready_ms)[len(ready_ms)//2]:.1f} ms); idle RSS {worst_rss:.1f} MiB "
      f"(median {sorted(rss)[len(rss)//2]/1024:.1f} MiB)")
ok_ready, ok_rss = worst_ready < TARGET_READY_MS, worst_rss < TARGET_RSS_MIB
print(f"targets: ready < {TARGET_READY_MS} ms {'ok' if ok_ready else 'MISSED'}, "
      f"idle RSS < 40 MB ({TARGET_RSS_MIB:.1f} MiB) {'ok' if ok_rss else 'MISSED'}")
if failures:
    print("FAILED runs:\n  " + "\n  ".join(failures), file=sys.stderr)
sys.exit(0 if ok_ready and ok_rss and not failures else 1)
PY
