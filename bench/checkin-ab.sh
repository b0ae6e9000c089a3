#!/usr/bin/env bash
# Two builds of the engine side by side under wrk -t1: the check-in load of bench/checkin.sh
# (10,000 enrolled devices, authenticated check-ins of random devices over 64 keep-alive
# connections, bench/checkin.lua), one build after the other in each round, in alternating order
# (A B, B A, A B…), a fresh engine and data dir every run. On a VM whose speed drifts by ±10 %
# from one minute to the next, this is how a change of a few per cent can be told from the drift:
# compare the medians and count the rounds each build won.
#
#   bench/checkin-ab.sh OLD_BINARY NEW_BINARY            # 8 rounds of 8 s
#   ROUNDS=8 DURATION=8 bench/checkin-ab.sh /tmp/flotilla-6b83863 target/release/flotilla
#
# Build the old binary from its commit first (a worktree, or `git checkout` + `cargo build
# --release` + copy). The devices are enrolled by flotilla-load (target/release, built here).
# Prints one line per run and, at the end, each build's worst round, median and range of
# check-ins answered per second, engine CPU per check-in (utime + stime of the engine's process
# over the wrk run) and p99, the load average, and how many rounds each build used less CPU in.
# A run with errors (or one wrk measured nothing in) is shown, left out of the comparison, and
# makes the script exit 1. Everything listens on 127.0.0.1 and is stopped at exit.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
ensure_rust
ensure_packages python3 wrk
[ $# -eq 2 ] && [ -x "$1" ] && [ -x "$2" ] || {
  echo "usage: $0 OLD_BINARY NEW_BINARY (two flotilla executables)" >&2
  exit 2
}
A="$(realpath "$1")"
B="$(realpath "$2")"
DEVICES="${DEVICES:-10000}"
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-8}"
[ "$ROUNDS" -ge 1 ] 2>/dev/null || { echo "ROUNDS must be a number >= 1" >&2; exit 2; }

cd "$ROOT"
say "building flotilla-load"
cargo build --release --locked -p flotilla-sim --bin flotilla-load
LOAD="${CARGO_TARGET_DIR:-$ROOT/target}/release/flotilla-load"

work="$(mktemp -d)"
server=""
trap bench_cleanup EXIT

run() { # $1: label, $2: binary, $3: run number. Appends one result line to $work/results.
  local dir="$work/run-$3"
  bench_engine "$2" "$dir" "$work/log-$3" "$DEVICES" "$work/devices-$3.tsv"
  bench_wrk "$url" "$work/devices-$3.tsv" "$work/wrk-$3" "$1"
  bench_stop
  rm -rf "$dir"
  tail -1 "$work/results" | awk '$5 == -1 { printf "  %-4s FAILED: wrk measured nothing (see %s)  load %s\n", $1, "the engine log", $6; next }
    { printf "  %-4s %9.0f req/s  engine %5.2f µs/check-in  p99 %s ms  errors %s%s  load %s\n", $1, $2, $3, $4, $5, ($5 > 0 ? " (left out)" : ""), $6 }'
}

n=0
for round in $(seq 1 "$ROUNDS"); do
  say "round $round of $ROUNDS"
  if [ $((round % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
  for which in $order; do
    n=$((n + 1))
    if [ "$which" = A ]; then run A "$A" "$n"; else run B "$B" "$n"; fi
  done
done

python3 - "$work/results" "$A" "$B" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
runs = {k: [(float(r[1]), float(r[2]), float(r[3]), int(r[4]), r[5]) for r in rows if r[0] == k] for k in "AB"}
loads = [float(r[5]) for r in rows]
print(f"\nwrk -t1, {len(runs['A'])} rounds, order alternating, load average {min(loads):.2f}–{max(loads):.2f}; "
      f"A = {sys.argv[2]}, B = {sys.argv[3]}")
bad = 0
for k in "AB":
    good = [x for x in runs[k] if x[3] == 0]
    failed = len(runs[k]) - len(good)
    bad += failed
    if not good:
        print(f"  {k}: every run failed or had errors")
        continue
    col = lambda i: [x[i] for x in good]
    print(f"  {k}: worst {min(col(0)):,.0f} req/s, {max(col(1)):.2f} µs per check-in, p99 {max(col(2)):.2f} ms; "
          f"median {statistics.median(col(0)):,.0f} req/s (best {max(col(0)):,.0f}), "
          f"{statistics.median(col(1)):.2f} µs ({min(col(1)):.2f}–{max(col(1)):.2f}), p99 {statistics.median(col(2)):.2f} ms"
          + (f"; {failed} run(s) failed or had errors, left out" if failed else ""))
# Rounds won: only rounds where both runs are clean.
pairs = [(a, b) for a, b in zip(runs["A"], runs["B"]) if a[3] == 0 and b[3] == 0]
b_less = sum(1 for a, b in pairs if b[1] < a[1])
a_less = sum(1 for a, b in pairs if a[1] < b[1])
print(f"  engine CPU per check-in lower: B in {b_less} rounds, A in {a_less}, equal in {len(pairs) - a_less - b_less}"
      f" (of {len(pairs)} clean rounds)")
if bad:
    print(f"FAILED: {bad} run(s) failed or had errors", file=sys.stderr)
    sys.exit(1)
PY
