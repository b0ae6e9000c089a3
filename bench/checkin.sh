#!/usr/bin/env bash
# Check-in API under load: `flotilla serve` with 10,000 registered devices, and two load
# generators in turn on the same engine — `flotilla-load` (ours) and `wrk` (independent, with
# bench/checkin.lua replaying the same authenticated check-ins) — each sending check-ins of random
# devices over 64 keep-alive connections on loopback. Floors: ≥ 20,000 requests/s and p99 < 10 ms;
# goals: ≥ 100,000 requests/s (issue 10) and, under wrk, p99 < 2 ms (issue 14), on the project's
# 2-core machine, engine and load generator sharing both cores (nothing is pinned).
#
#   bench/checkin.sh                   # 3 rounds of 10 s against one engine
#   DEVICES=10000 CONNECTIONS=64 DURATION=10 ROUNDS=3 WRK_THREADS="1 2" bench/checkin.sh
#
# wrk runs once per entry of WRK_THREADS (default "1 2"): with one thread it loads the machine as
# flotilla-load does (one generator thread beside the engine's one worker: one runnable thread a
# core); with two, three threads want two cores and the engine's worker waits in the run queue.
# Each run reports how long the engine's threads waited there (/proc/<pid>/task/*/schedstat), the
# measure of that contention.
#
# Each round starts a fresh engine, enrols its devices (the generator keeps their secrets), then
# measures authenticated check-ins. Prints
# each round's report and the worst round against the targets. Everything listens on 127.0.0.1
# and is stopped at exit.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
ensure_rust
ensure_packages python3 wrk
DEVICES="${DEVICES:-10000}"
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
WRK_THREADS="${WRK_THREADS:-1 2}"
# PIN=1 runs the engine on CPU 0 and the load generators on CPU 1 (taskset): the engine's one
# worker and a one-thread generator then never share a core, whatever the scheduler's placement.
ENGINE_CPUS=""
LOAD_CPUS=""
if [ "${PIN:-0}" = 1 ]; then ENGINE_CPUS="taskset -c 0"; LOAD_CPUS="taskset -c 1"; fi

cd "$ROOT"
say "building release binaries"
cargo build --release --locked -p flotilla-cli -p flotilla-sim --bin flotilla --bin flotilla-load
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# CPU ticks of each of the engine's threads, one "tid name ticks" line each (stat fields 14 + 15).
thread_ticks() {
  for f in /proc/"$engine"/task/*/stat; do
    awk '{ sub(/^[^(]*\(/, ""); split($0, a, ") "); split(a[2], b, " "); print FILENAME, a[1], b[12] + b[13] }' "$f" 2>/dev/null
  done
}
# Prints the engine's busiest threads between two thread_ticks snapshots ($1, $2: files).
busiest_threads() {
  python3 - "$1" "$2" "$(getconf CLK_TCK)" <<'PY'
import sys
def read(path):
    out = {}
    for line in open(path):
        f = line.rsplit(" ", 1)
        key, ticks = f[0], int(f[1])
        out[key] = ticks
    return out
a, b, hz = read(sys.argv[1]), read(sys.argv[2]), int(sys.argv[3])
by_name = {}
for key, t in b.items():
    name = key.split(" ", 1)[1]
    by_name[name] = by_name.get(name, 0) + t - a.get(key, 0)
busy = sorted(((t, n) for n, t in by_name.items() if t > 0), reverse=True)[:4]
print("  engine threads: " + ", ".join(f"{n} {t / hz:.2f} s" for t, n in busy))
PY
}

# Inter-processor interrupts so far, all CPUs: rescheduling (RES) and function-call (CAL, which
# also carries queued remote wake-ups); under a VM each is an exit.
ipis() { awk '/^ *(RES|CAL):/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { printf "%.0f\n", s }' /proc/interrupts; }

# Nanoseconds the engine's threads have waited in a run queue, summed (schedstat's second field).
runq_wait() { cat /proc/"$engine"/task/*/schedstat 2>/dev/null | awk '{s += $2} END {printf "%.0f\n", s}'; }

start_engine() { # $1: the round; a fresh data dir each round
  $ENGINE_CPUS "$BIN/flotilla" serve --data-dir "$work/data-$1" --http 127.0.0.1:0 --admin 127.0.0.1:0 --mqtt off --no-mdns \
    --https off --mqtt-tls-listen off --log warn >"$work/flotilla-$1.log" 2>&1 &
  engine=$!
  pids+=("$engine")
  wait_for_runtime "$work/data-$1" "$work/flotilla-$1.log"
  device_url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["device_url"])' "$work/data-$1/runtime.json")"
}

for round in $(seq 1 "$ROUNDS"); do
  say "round $round of $ROUNDS: a fresh engine, $DEVICES devices, $CONNECTIONS connections, ${DURATION} s"
  # Devices enrol on their first check-in and keep their secret in the generator's memory, so
  # each round starts a fresh engine (a fresh data dir) and enrols its devices anew: every round
  # measures the same 10,000 registered devices.
  start_engine "$round"
  cut -d' ' -f1 /proc/loadavg >"$work/load-$round.txt"
  # Exit 1 with a report means some requests failed: the summary shows them, so go on.
  wait_before="$(runq_wait)"
  thread_ticks >"$work/threads-before"
  ipis_before="$(ipis)"
  $LOAD_CPUS "$BIN/flotilla-load" --url "$device_url" --devices "$DEVICES" --connections "$CONNECTIONS" \
    --duration "${DURATION}s" --pid "$engine" --save-devices "$work/devices-$round.tsv" --json \
    >"$work/round-$round.json" || [ -s "$work/round-$round.json" ]
  python3 - "$work/round-$round.json" "$(( $(runq_wait) - wait_before ))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
waited = int(sys.argv[2])
m, l = r["measured"], r["measured"]["latency_ms"]
# Nothing answered: no percentiles (null), shown as such and counted as the worst.
l = l or {k: float("inf") for k in ("p50", "p90", "p99", "p99_9", "max")}
print(f"  registration of {r['devices']:,} devices: {r['registration']['seconds']:.2f} s, {r['registration']['errors']} errors")
print(f"  {m['requests']:,} requests in {m['seconds']:.1f} s, {m['errors']} errors: {m['throughput']:,.0f} req/s; "
      f"latency p50 {l['p50']:.2f} / p90 {l['p90']:.2f} / p99 {l['p99']:.2f} / p99.9 {l['p99_9']:.2f} / max {l['max']:.2f} ms")
for name in ("engine", "generator"):
    p = r.get(name)
    if p:
        print(f"  {name:<9} CPU {p['cpu_seconds']:.2f} s ({p['cpu_seconds'] * 1e6 / max(m['requests'], 1):.1f} µs per request), "
              f"RSS {p['rss_kib'] / 1024:.1f} MiB (peak {p['peak_rss_kib'] / 1024:.1f} MiB)")
print(f"  engine threads waited {waited / 1e9:.2f} s in the run queue (with registration; "
      f"{waited / 1e3 / max(m['requests'], 1):.1f} µs per measured request)")
PY
  thread_ticks >"$work/threads-after"
  busiest_threads "$work/threads-before" "$work/threads-after"
  echo "  inter-processor interrupts (RES + CAL), enrolment included: $(( $(ipis) - ipis_before ))"
  # The same engine, the same devices and bodies, driven by wrk.
  for t in $WRK_THREADS; do
    out="$work/wrk-$round-t$t.txt"
    cut -d' ' -f1 /proc/loadavg >"$work/load-$round-t$t.txt"
    cpu_before="$(awk '{print $14 + $15}' "/proc/$engine/stat")"
    wait_before="$(runq_wait)"
    thread_ticks >"$work/threads-before"
    ipis_before="$(ipis)"
    # wrk's own CPU time (getrusage of the child): a load generator short of CPU queues
    # responses in its sockets, and that shows as latency it attributes to the server.
    python3 -c 'import resource, subprocess, sys
out = subprocess.run(sys.argv[2:], stdout=subprocess.PIPE, text=True).stdout
sys.stdout.write(out)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{r.ru_utime + r.ru_stime:.3f}")' "$work/wrk-cpu" \
      $LOAD_CPUS wrk -t"$t" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s -s "$ROOT/bench/checkin.lua" "$device_url" \
      -- "$work/devices-$round.tsv" | grep '^RESULT' >"$out"
    cpu_after="$(awk '{print $14 + $15}' "/proc/$engine/stat")"
    echo "$(( cpu_after - cpu_before )) $(getconf CLK_TCK) $(( $(runq_wait) - wait_before )) $(cat "$work/wrk-cpu")" >>"$out"
    python3 - "$out" "$t" <<'PY'
import sys
lines = open(sys.argv[1]).read().split("\n")
_, req, err, secs, p50, p90, p99, p999, mx = lines[0].split()
ticks, hz, waited, wrk_cpu = lines[1].split()
ticks, hz, waited, wrk_cpu = int(ticks), int(hz), int(waited), float(wrk_cpu)
req, err, secs = int(req), int(err), float(secs)
print(f"  wrk -t{sys.argv[2]}: {req:,} requests in {secs:.1f} s, {err} errors: {(req - err) / secs:,.0f} req/s; "
      f"latency p50 {float(p50):.2f} / p90 {float(p90):.2f} / p99 {float(p99):.2f} / p99.9 {float(p999):.2f} / max {float(mx):.2f} ms")
print(f"  engine    CPU {ticks / hz:.2f} s ({ticks / hz * 1e6 / max(req, 1):.1f} µs per request); "
      f"its threads waited {waited / 1e9:.2f} s in the run queue ({waited / 1e3 / max(req, 1):.1f} µs per request)")
print(f"  wrk       CPU {wrk_cpu:.2f} s ({wrk_cpu * 1e6 / max(req, 1):.1f} µs per request, {wrk_cpu / secs:.0%} of a core)")
PY
    thread_ticks >"$work/threads-after"
    busiest_threads "$work/threads-before" "$work/threads-after"
    echo "  inter-processor interrupts (RES + CAL): $(( $(ipis) - ipis_before ))"
  done
  # The next round's engine runs alone.
  if [ "$round" -lt "$ROUNDS" ]; then kill "$engine" 2>/dev/null || true; wait "$engine" 2>/dev/null || true; fi
done

registered="$("$BIN/flotilla" devices list --json --data-dir "$work/data-$ROUNDS" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
python3 - "$work" "$ROUNDS" "$registered" "$DEVICES" $WRK_THREADS <<'PY'
import json, sys
work, rounds, registered, devices = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
threads = sys.argv[5:]
rs = [json.load(open(f"{work}/round-{i}.json")) for i in range(1, rounds + 1)]
loads = [open(f"{work}/load-{i}.txt").read().strip() for i in range(1, rounds + 1)]
wrk_loads = {t: [open(f"{work}/load-{i}-t{t}.txt").read().strip() for i in range(1, rounds + 1)] for t in threads}
def wrk(i, t):
    lines = open(f"{work}/wrk-{i}-t{t}.txt").read().split("\n")
    first, second = lines[0].split(), lines[1].split()
    req, err, secs = int(first[1]), int(first[2]), float(first[3])
    return {"rps": (req - err) / secs, "p99": float(first[6]), "errors": err, "wait_us": int(second[2]) / 1e3 / max(req, 1),
            "wrk_us": float(second[3]) * 1e6 / max(req, 1)}
runs = {t: [wrk(i, t) for i in range(1, rounds + 1)] for t in threads}
worst_rps = min(r["measured"]["throughput"] for r in rs)
worst_p99 = max((r["measured"]["latency_ms"] or {"p99": float("inf")})["p99"] for r in rs)
errors = sum(r["measured"]["errors"] for r in rs)
ws = [w for t in threads for w in runs[t]]
wrk_errors = sum(w["errors"] for w in ws)
# The goals are judged on wrk with one thread (the machine loaded as flotilla-load loads it).
main = runs[threads[0]]
wrk_rps = min(w["rps"] for w in main)
wrk_p99 = max(w["p99"] for w in main)
rss = max(r["engine"]["peak_rss_kib"] for r in rs if r.get("engine")) / 1024
mark = lambda ok: "ok" if ok else "MISSED"
print()
print(f"Authenticated check-ins of {devices:,} enrolled devices ({registered:,} in the last round's inventory), "
      f"{rs[0]['connections']} connections, {rounds} rounds; worst round of each tool (1-minute load average "
      f"before each of its runs). In every round the tools run in this order on one engine: flotilla-load "
      f"enrols the devices the others replay, so it goes first; compare builds with bench/checkin-ab.sh.")
print(f"  flotilla-load  {worst_rps:10,.0f} req/s  p99 {worst_p99:6.2f} ms  errors {errors}  (load {', '.join(loads)})")
for t in threads:
    r = runs[t]
    print(f"  wrk -t{t:<8} {min(w['rps'] for w in r):10,.0f} req/s  p99 {max(w['p99'] for w in r):6.2f} ms  "
          f"errors {sum(w['errors'] for w in r)}  engine run-queue wait {max(w['wait_us'] for w in r):.1f} µs/request  "
          f"wrk CPU {max(w['wrk_us'] for w in r):.1f} µs/request  (load {', '.join(wrk_loads[t])})")
floor = min(worst_rps, wrk_rps) >= 20000 and max(worst_p99, wrk_p99) < 10 and errors + wrk_errors == 0
print(f"  floor: >= 20,000 req/s, p99 < 10 ms, no errors, both tools      {mark(floor)}")
print(f"  goal (issue 10): >= 100,000 req/s, both tools                   {mark(min(worst_rps, wrk_rps) >= 100000)}")
print(f"  goal (issue 14): wrk -t{threads[0]} p99 < 2 ms at >= 100,000 req/s          {mark(wrk_p99 < 2 and wrk_rps >= 100000)}")
print(f"  engine peak RSS {rss:.1f} MiB")
sys.exit(0 if floor and registered >= devices else 1)
PY
