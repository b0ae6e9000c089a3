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

# One line of $work/results for the run just made.
show() {
  tail -1 "$work/results" | awk '$5 == -1 { printf "  %-10s FAILED: wrk measured nothing  load %s\n", $1, $6; next }
    { printf "  %-10s %9.0f req/s  %5.2f µs/request  p99 %s ms  errors %s  load %s\n", $1, $2, $3, $4, $5, $6 }'
}

# An engine with $2 enrolled devices; leaves their check-ins in $work/devices-$2.tsv.
engine() {
  bench_engine "$FLOTILLA" "$work/data" "$work/log" "$2" "$work/devices-$2.tsv"
  bench_wrk "$url" "$work/devices-$2.tsv" "$work/wrk" "$1"
  show
  bench_stop
  rm -rf "$work/data"
}

# http-ceiling in mode $1, loaded with the 10,000 devices' check-ins.
ceiling() {
  "$CEILING" "$1" >"$work/url" &
  server=$!
  for _ in $(seq 1 100); do [ -s "$work/url" ] && break; sleep 0.05; done
  [ -s "$work/url" ] || { echo "http-ceiling $1 did not start" >&2; exit 1; }
  bench_wrk "$(head -1 "$work/url")" "$work/devices-10000.tsv" "$work/wrk" "$1"
  show
  bench_stop
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
