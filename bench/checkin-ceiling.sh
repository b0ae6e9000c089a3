#!/usr/bin/env bash
# What is left between the check-in and issue 14's ≥ 100k req/s under wrk -t1, measured in one
# run: four servers under the same wrk load (-t1, 64 connections, the authenticated check-ins of
# bench/checkin.lua), their order rotating from round to round, a fresh process each run:
#   engine-10k  the release engine, 10,000 enrolled devices (what bench/checkin.sh measures)
#   engine-1k   the same with 1,000: the difference is what a device's state falling out of the
#               CPU's caches costs (the upper bound of what a cache-friendly device entry could save)
#   hyper       bench/http-ceiling: a constant answer through hyper configured as the device server
#   raw         bench/http-ceiling: the same answer from a bare loop on httparse (no timers): the
#               difference to `hyper` is what leaving hyper could save
#
#   bench/checkin-ceiling.sh                 # 4 rounds of 8 s
#   ROUNDS=6 DURATION=10 bench/checkin-ceiling.sh
#
# Prints one line per run, then per server its worst round, median and range of requests/s,
# server CPU per request (utime + stime over the wrk run) and p99, and the load average. A run
# with errors (or one wrk measured nothing in) is shown, left out, and makes the script exit 1.
# Everything listens on 127.0.0.1 and is stopped at exit. Results: docs/performance.md (tenth look).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
ensure_rust
ensure_packages python3 wrk
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-4}"
[ "$ROUNDS" -ge 1 ] 2>/dev/null || { echo "ROUNDS must be a number >= 1" >&2; exit 2; }

cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
say "building the engine, flotilla-load and http-ceiling (release)"
cargo build --release --locked -p flotilla-cli -p flotilla-sim --bin flotilla --bin flotilla-load
(cd bench/http-ceiling && CARGO_TARGET_DIR="$TARGET" cargo build --release --locked)
FLOTILLA="$TARGET/release/flotilla"
LOAD="$TARGET/release/flotilla-load"
CEILING="$TARGET/release/http-ceiling"

work="$(mktemp -d)"
server=""
trap bench_cleanup EXIT

# wrk against $2 (pid $3) with devices file $4; appends "label req/s cpu_us p99 errors load".
measure() {
  local label="$1" url="$2" pid="$3" devices="$4" load ticks0 ticks1
  load="$(cut -d' ' -f1 /proc/loadavg)"
  ticks0="$(cpu_ticks "$pid")"
  { wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s -s bench/checkin.lua "$url" -- "$devices" || true; } \
    | { grep '^RESULT' || true; } >"$work/wrk"
  ticks1="$(cpu_ticks "$pid" 2>/dev/null || echo "$ticks0")"
  python3 - "$label" "$work/wrk" "$((ticks1 - ticks0))" "$(getconf CLK_TCK)" "$load" >>"$work/results" <<'PY'
import sys
label, path, ticks, hz, load = sys.argv[1:]
f = open(path).read().split()
if len(f) != 9 or int(f[1]) == 0:
    print(label, 0, 0, 0, -1, load)
else:
    print(label, int(f[1]) / float(f[3]), int(ticks) / int(hz) * 1e6 / int(f[1]), f[6], f[2], load)
PY
  tail -1 "$work/results" | awk '$5 == -1 { printf "  %-10s FAILED: wrk measured nothing  load %s\n", $1, $6; next }
    { printf "  %-10s %9.0f req/s  %5.2f µs/request  p99 %s ms  errors %s  load %s\n", $1, $2, $3, $4, $5, $6 }'
}

# An engine with $2 enrolled devices; leaves their check-ins in $work/devices-$2.tsv.
engine() {
  local label="$1" devices="$2" dir="$work/data"
  "$FLOTILLA" serve --data-dir "$dir" --http 127.0.0.1:0 --admin 127.0.0.1:0 --mqtt off --no-mdns \
    --https off --mqtt-tls-listen off --log warn >"$work/log" 2>&1 &
  server=$!
  wait_for_runtime "$dir" "$work/log"
  local url
  url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["device_url"])' "$dir/runtime.json")"
  "$LOAD" --url "$url" --devices "$devices" --connections "$CONNECTIONS" --duration 2s \
    --save-devices "$work/devices-$devices.tsv" --json >/dev/null || [ -s "$work/devices-$devices.tsv" ]
  measure "$label" "$url" "$server" "$work/devices-$devices.tsv"
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
  rm -rf "$dir"
}

# http-ceiling in mode $1, loaded with the 10,000 devices' check-ins.
ceiling() {
  "$CEILING" "$1" >"$work/url" &
  server=$!
  for _ in $(seq 1 100); do [ -s "$work/url" ] && break; sleep 0.05; done
  [ -s "$work/url" ] || { echo "http-ceiling $1 did not start" >&2; exit 1; }
  measure "$1" "$(head -1 "$work/url")" "$server" "$work/devices-10000.tsv"
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
  : >"$work/url"
}

servers=(engine-10k hyper engine-1k raw)
for round in $(seq 1 "$ROUNDS"); do
  say "round $round of $ROUNDS"
  for k in 0 1 2 3; do
    s="${servers[$(((k + round - 1) % 4))]}"
    # Round 1 starts with engine-10k, whose enrolled devices' requests the others replay.
    case "$s" in
      engine-10k) engine "$s" 10000 ;;
      engine-1k) engine "$s" 1000 ;;
      *) ceiling "$s" ;;
    esac
  done
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
loads = [float(r[5]) for r in rows]
print(f"\nwrk -t1, authenticated check-in requests, rotating order; load average {min(loads):.2f}–{max(loads):.2f}")
bad = 0
for name in ("engine-10k", "engine-1k", "hyper", "raw"):
    runs = [(float(r[1]), float(r[2]), float(r[3]), int(r[4])) for r in rows if r[0] == name]
    good = [x for x in runs if x[3] == 0]
    bad += len(runs) - len(good)
    if not good:
        print(f"  {name:10} every run failed or had errors")
        continue
    rps, cpu, p99 = ([x[i] for x in good] for i in range(3))
    print(f"  {name:10} worst {min(rps):9,.0f} req/s  median {statistics.median(rps):9,.0f}  "
          f"CPU {statistics.median(cpu):5.2f} µs/request ({min(cpu):.2f}–{max(cpu):.2f})  p99 ≤ {max(p99):.2f} ms  "
          f"({len(good)} runs)")
if bad:
    print(f"FAILED: {bad} run(s) failed or had errors", file=sys.stderr)
    sys.exit(1)
PY
