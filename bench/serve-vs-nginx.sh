#!/usr/bin/env bash
# Firmware serving throughput: Flotilla's device server against nginx (Debian) serving the same
# 3.9 MiB image, 100 concurrent clients on loopback downloading it in a loop (wrk) — over HTTP,
# and from Flotilla over HTTPS too (its self-signed certificate, TLS as devices negotiate it),
# all in the same run. Goals: Flotilla HTTP ≥ 1× nginx… as measured; HTTPS ≥ 0.8× HTTP (issue 12).
#
#   bench/serve-vs-nginx.sh            # 2 rounds of 15 s per server (order reversed in the second)
#   DURATION=30 ROUNDS=3 CONNECTIONS=100 bench/serve-vs-nginx.sh
#
# Prints every round with the load average before it, the worst round of each server, and the
# ratios with the goals judged; a round with errors is left out of the ratios and, like a missed
# goal, makes the script exit 1. Everything listens on 127.0.0.1 and is stopped at exit.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
ensure_rust
ensure_packages nginx wrk python3 curl
DURATION="${DURATION:-15}"
ROUNDS="${ROUNDS:-2}"
CONNECTIONS="${CONNECTIONS:-100}"
SIZE="${SIZE:-4089446}"

cd "$ROOT"
say "building release binaries"
cargo build --release --locked -p flotilla-cli -p flotilla-imagegen --bins
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$work/www"
"$BIN/flotilla-imagegen" --chip esp32 --version 1.0.0 --project bench --size "$SIZE" --out "$work/www/fw.bin" >/dev/null

say "starting flotilla serve"
"$BIN/flotilla" serve --data-dir "$work/data" --http 127.0.0.1:0 --https 127.0.0.1:0 --admin 127.0.0.1:0 \
  --mqtt-listen 127.0.0.1:0 --mqtt-tls-listen off --no-mdns --log warn >"$work/flotilla.log" 2>&1 &
pids+=($!)
wait_for_runtime "$work/data" "$work/flotilla.log"
sha="$("$BIN/flotilla" firmware import "$work/www/fw.bin" --data-dir "$work/data" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["firmware"]["sha256"])')"
# A per-job token URL: the path devices really use.
flotilla_url="$(curl -sf -X POST -H "Authorization: Bearer $(cat "$work/data/admin-token")" -H 'content-type: application/json' \
  -d '{"job":"bench","ttl_secs":86400}' "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin_url"])' "$work/data/runtime.json")/api/v1/firmware/$sha/download-link" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])')"

# The same token URL on the HTTPS listener.
https_base="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["device_https_url"])' "$work/data/runtime.json")"
flotilla_https_url="$https_base/fw/${flotilla_url#*/fw/}"

say "starting nginx"
nginx_port="$(free_port)"
cat >"$work/nginx.conf" <<CONF
user root;
worker_processes $(nproc);
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
daemon on;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:$nginx_port;
    root $work/www;
    location / { }
  }
}
CONF
nginx -c "$work/nginx.conf"
nginx_url="http://127.0.0.1:$nginx_port/fw.bin"

# Sanity: both serve the same bytes.
cmp <(curl -sf "$nginx_url") <(curl -sf "$flotilla_url") || { echo "servers disagree on the bytes" >&2; exit 1; }
cmp <(curl -sf "$nginx_url") <(curl -sfk "$flotilla_https_url") || { echo "HTTPS serves other bytes" >&2; exit 1; }

cat >"$work/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT %.1f %.2f %d %d\n", summary.bytes / secs / 1048576, summary.requests / secs,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    latency:percentile(99) / 1000))
end
LUA

run() { # name url → "MiB/s req/s errors p99ms"
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 30s -s "$work/report.lua" "$2" | awk '/^RESULT/ {print $2, $3, $4, $5}'
}

servers=(nginx flotilla flotilla-https)
echo
printf '%-15s %-6s %12s %10s %8s %9s   %s\n' server round "MiB/s" "req/s" errors "p99 ms" "(load average before the run)"
: >"$work/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
  # The order alternates from round to round (nginx first, then last): the machine warms up and
  # the load average climbs during a round, and a fixed order would hand that to one server.
  order=("${servers[@]}")
  if [ $((round % 2)) -eq 0 ]; then order=(flotilla-https flotilla nginx); fi
  for name in "${order[@]}"; do
    case "$name" in
      nginx) url="$nginx_url" ;;
      flotilla) url="$flotilla_url" ;;
      flotilla-https) url="$flotilla_https_url" ;;
    esac
    load="$(cut -d' ' -f1 /proc/loadavg)"
    read -r mibs rps errors p99 < <(run "$name" "$url") || true
    # wrk printed no result (a server that died): a failed run, recorded as such.
    [ -n "${p99:-}" ] || { mibs=0 rps=0 errors=-1 p99=-; }
    printf '%-15s %-6s %12s %10s %8s %9s   load %s\n' "$name" "$round" "$mibs" "$rps" "$errors" "$p99" "$load"
    echo "$name $round $mibs $errors $load" >>"$work/rounds.txt"
  done
done
status=0
python3 - "$work/rounds.txt" "$CONNECTIONS" "$SIZE" "$DURATION" "$ROUNDS" <<'PY' || status=$?
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
conns, size, dur, rounds = sys.argv[2:6]
by = {}
for name, rnd, mibs, errors, load in rows:
    by.setdefault(name, {})[int(rnd)] = (float(mibs), int(errors))
loads = [float(r[4]) for r in rows]
worst = {n: min(v[0] for v in r.values()) for n, r in by.items()}
# A round with errors (or one wrk measured nothing in, -1) counts in no ratio: its MiB/s includes
# broken transfers. The script fails instead.
bad = {n: sum(1 for m, e in r.values() if e != 0) for n, r in by.items()}
clean = [i for i in sorted(by["nginx"]) if all(by[n][i][1] == 0 for n in by)]
ratio = lambda a, b: [by[a][i][0] / by[b][i][0] for i in clean if by[b][i][0] > 0]
print()
print(f"Serving a {size}-byte image to {conns} concurrent clients on loopback (wrk -t2), {rounds} rounds x {dur} s each, "
      f"load average {min(loads):.2f}–{max(loads):.2f}; worst round:")
for n in ("nginx", "flotilla", "flotilla-https"):
    print(f"  {n:<15} {worst[n]:10.1f} MiB/s   rounds with errors {bad[n]}")
fn, hh = ratio("flotilla", "nginx"), ratio("flotilla-https", "flotilla")
mark = lambda ok: "ok" if ok else "MISSED"
if fn and hh:
    print(f"  flotilla/nginx, per round: {', '.join(f'{x:.2f}' for x in fn)} (worst {min(fn):.2f}; goal >= 1.00: {mark(min(fn) >= 1.0)})")
    print(f"  HTTPS/HTTP, per round:     {', '.join(f'{x:.2f}' for x in hh)} (worst {min(hh):.2f}; goal >= 0.80: {mark(min(hh) >= 0.8)})")
failed = sum(bad.values())
if failed:
    print(f"FAILED: {failed} run(s) with errors, left out of the ratios", file=sys.stderr)
sys.exit(0 if not failed and fn and hh and min(fn) >= 1.0 and min(hh) >= 0.8 else 1)
PY
echo
echo "flotilla metrics after the run:"
curl -sf "${flotilla_url%%/fw/*}/metrics" | grep -E '^flotilla_(downloads_total|download_bytes_total|active_transfers|download_errors_total)' || true
exit "$status"
