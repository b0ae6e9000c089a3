# Shared helpers of the scripts in this folder. Sourced, not run.
# Everything here is idempotent: running a script twice does nothing the second time.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# ensure_packages PKG...: installs the Debian packages that are missing (needs root or sudo).
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_rust: the toolchain must be there (rustup); rustfmt and clippy are added if missing.
ensure_rust() {
  command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
  if command -v rustup >/dev/null; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  fi
}

# ensure_desktop_deps: what the desktop app (Tauri 2 on WebKitGTK) needs to build and run, plus
# Xvfb and WebKitWebDriver for its end-to-end test.
ensure_desktop_deps() {
  ensure_packages pkg-config build-essential ca-certificates python3 \
    libwebkit2gtk-4.1-dev libgtk-3-dev librsvg2-dev \
    xvfb webkit2gtk-driver
}

# ensure_tauri_driver: tauri-driver (the WebDriver bridge of the desktop e2e test) in ~/.cargo/bin.
ensure_tauri_driver() {
  local bin="${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver"
  [ -x "$bin" ] && return 0
  command -v tauri-driver >/dev/null && return 0
  say "installing tauri-driver (cargo install)"
  cargo install tauri-driver --version "^2" --locked
}

# ensure_ui: ui/node_modules (npm ci) and the built UI in ui/dist, each redone only when stale.
ensure_ui() {
  local ui="$ROOT/ui"
  [ -f "$ui/package.json" ] || { echo "no UI sources in $ui" >&2; return 1; }
  if [ ! -d "$ui/node_modules" ] || [ "$ui/package-lock.json" -nt "$ui/node_modules" ]; then
    say "installing the UI's npm packages (npm ci)"
    (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error) && touch "$ui/node_modules"
  fi
  local newest_src=""
  if [ -d "$ui/dist" ]; then
    newest_src="$(find "$ui/src" "$ui/index.html" "$ui/package.json" "$ui"/vite.config.* -newer "$ui/dist" -print -quit 2>/dev/null || true)"
  fi
  if [ ! -d "$ui/dist" ] || [ -n "$newest_src" ]; then
    say "building the UI (npm run build)"
    (cd "$ui" && npm run build --silent) && touch "$ui/dist"
  fi
}

# ensure_open_files N: raises this shell's open-files limit to N (as far as the hard limit allows);
# fails with what to do when the hard limit is lower. Large simulated fleets need a socket (and a
# listener) per device.
ensure_open_files() {
  local need="$1"
  [ "$(ulimit -n)" = unlimited ] && return 0
  if [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  fi
  [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] || {
    echo "open files limit is $(ulimit -n), $need needed: raise the hard limit (ulimit -Hn)" >&2
    return 1
  }
}

# wait_for_runtime DATA_DIR LOG: waits up to 15 s for a `flotilla serve` started on DATA_DIR to
# write runtime.json; on failure prints LOG (the engine's output) and fails.
wait_for_runtime() {
  local data="$1" log="$2"
  for _ in $(seq 1 300); do [ -f "$data/runtime.json" ] && return 0; sleep 0.05; done
  cat "$log" >&2
  return 1
}

# cpu_ticks PID: utime + stime of the process, in clock ticks (read after the name in parentheses,
# which may hold spaces).
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' /proc/"$1"/stat; }

# bench_cleanup: the benchmarks' EXIT trap: stops the server whose pid is in $server (when set),
# waits for every child and removes the scratch directory $work.
bench_cleanup() {
  if [ -n "${server:-}" ]; then kill "$server" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "${work:?}"
}

# bench_engine BINARY DIR LOG DEVICES FILE: `flotilla serve` on loopback (MQTT, mDNS and TLS off)
# with DEVICES devices enrolled by flotilla-load ($LOAD), their check-ins saved to FILE for
# bench/checkin.lua; sets $server (its pid) and $url (its device server).
bench_engine() {
  local bin="$1" dir="$2" log="$3" devices="$4" file="$5"
  "$bin" serve --data-dir "$dir" --http 127.0.0.1:0 --admin 127.0.0.1:0 --mqtt off --no-mdns \
    --https off --mqtt-tls-listen off --log warn >"$log" 2>&1 &
  server=$!
  wait_for_runtime "$dir" "$log"
  url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["device_url"])' "$dir/runtime.json")"
  # flotilla-load exits 1 when some of its requests failed: the devices it saved are enough.
  "$LOAD" --url "$url" --devices "$devices" --connections "$CONNECTIONS" --duration 2s \
    --save-devices "$file" --json >/dev/null || [ -s "$file" ]
}

# bench_wrk URL FILE OUT LABEL: wrk -t1 ($CONNECTIONS connections, $DURATION s) replaying FILE's
# check-ins through bench/checkin.lua against the server $server, then appends to $work/results
# "LABEL req/s cpu_µs_per_request p99_ms errors load" (the server's utime + stime over the run;
# the 1-minute load average before it), or "LABEL 0 0 0 -1 load" when wrk measured nothing (a
# dead server leaves no RESULT line and no /proc entry). wrk's own RESULT line goes to OUT.
bench_wrk() {
  local load ticks0 ticks1
  load="$(cut -d' ' -f1 /proc/loadavg)"
  ticks0="$(cpu_ticks "$server")"
  { wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s -s "$ROOT/bench/checkin.lua" "$1" -- "$2" || true; } \
    | { grep '^RESULT' || true; } >"$3"
  ticks1="$(cpu_ticks "$server" 2>/dev/null || echo "$ticks0")"
  python3 - "$4" "$3" "$((ticks1 - ticks0))" "$(getconf CLK_TCK)" "$load" >>"$work/results" <<'PY'
import sys
label, path, ticks, hz, load = sys.argv[1:]
fields = open(path).read().split()
if len(fields) != 9 or int(fields[1]) == 0:
    print(label, 0, 0, 0, -1, load)  # nothing answered: a failed run, not a number
    sys.exit(0)
_, requests, errors, secs, p50, p90, p99, p999, mx = fields
# wrk's `requests` counts completed responses (4xx/5xx among them), socket errors not at all: the
# scripts leave a run with errors out of their comparisons.
print(label, int(requests) / float(secs), int(ticks) / int(hz) * 1e6 / int(requests), p99, errors, load)
PY
}

# bench_stop: stops the server $server and forgets it.
bench_stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}

# ensure_py_venv: a Python virtual environment with the test tools of tests/requirements.txt
# (from PyPI), in $CARGO_TARGET_DIR/py-venv; prints its python. Reinstalled when the list changes.
ensure_py_venv() {
  ensure_packages python3 python3-venv
  local target="${CARGO_TARGET_DIR:-$ROOT/target}"
  case "$target" in /*) ;; *) target="$ROOT/$target" ;; esac
  local venv="$target/py-venv" req="$ROOT/tests/requirements.txt"
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
    say "setting up the Python test tools ($req)" >&2
    rm -rf "$venv"
    # `set -e` does not reach inside the $(…) this runs in: a failure must remove the venv (or the
    # next run would take it for current) and be returned.
    python3 -m venv "$venv" >&2 &&
      "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2 ||
      { rm -rf "$venv"; echo "cannot set up the Python test tools from $req" >&2; return 1; }
    cp "$req" "$venv/requirements.txt"
  fi
  echo "$venv/bin/python"
}
