#!/usr/bin/env bash
# Firmware serving throughput: Flotilla's device server against nginx (Debian) serving the same
# 3.9 MiB image, 100 concurrent clients on loopback downloading it in a loop (wrk).
#
#   bench/serve-vs-nginx.sh            # 2 rounds of 15 s per server
#   DURATION=30 ROUNDS=3 CONNECTIONS=100 bench/serve-vs-nginx.sh
#
# Prints both figures and the ratio. Everything listens on 127.0.0.1 and is stopped at exit.
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
"$BIN/flotilla" serve --data-dir "$work/data" --http 127.0.0.1:0 --admin 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 --no-mdns --log warn >"$work/flotilla.log" 2>&1 &
pids+=($!)
wait_for_runtime "$work/data" "$work/flotilla.log"
sha="$("$BIN/flotilla" firmware import "$work/www/fw.bin" --data-dir "$work/data" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["firmware"]["sha256"])')"
# A per-job token URL: the path devices really use.
flotilla_url="$(curl -sf -X POST -H "Authorization: Bearer $(cat "$work/data/admin-token")" -H 'content-type: application/json' \
  -d '{"job":"bench","ttl_secs":86400}' "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin_url"])' "$work/data/runtime.json")/api/v1/firmware/$sha/download-link" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])')"

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

declare -A sum_mibs sum_rps
for name in nginx flotilla; do sum_mibs[$name]=0; sum_rps[$name]=0; done
echo
printf '%-8s %-6s %12s %10s %8s %9s\n' server round "MiB/s" "req/s" errors "p99 ms"
for round in $(seq 1 "$ROUNDS"); do
  for name in nginx flotilla; do
    url="$nginx_url"; [ "$name" = flotilla ] && url="$flotilla_url"
    read -r mibs rps errors p99 < <(run "$name" "$url")
    printf '%-8s %-6s %12s %10s %8s %9s\n' "$name" "$round" "$mibs" "$rps" "$errors" "$p99"
    sum_mibs[$name]="$(python3 -c "print(${sum_mibs[$name]} + $mibs)")"
    sum_rps[$name]="$(python3 -c "print(${sum_rps[$name]} + $rps)")"
  done
done
python3 - "$ROUNDS" "${sum_mibs[nginx]}" "${sum_mibs[flotilla]}" "$CONNECTIONS" "$SIZE" "$DURATION" <<'PY'
import sys
rounds, n, f, conns, size, dur = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
n, f = n / rounds, f / rounds
print()
print(f"Serving a {size}-byte image to {conns} concurrent clients on loopback, {rounds} x {dur} s each:")
print(f"  nginx     {n:10.1f} MiB/s")
print(f"  flotilla  {f:10.1f} MiB/s")
print(f"  ratio flotilla/nginx = {f / n:.2f}")
PY
echo
echo "flotilla metrics after the run:"
curl -sf "${flotilla_url%%/fw/*}/metrics" | grep -E '^flotilla_(downloads_total|download_bytes_total|active_transfers|download_errors_total)'
